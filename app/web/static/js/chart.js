// uPlot (vendored, global `uPlot`) with the few options every chart here shares: sized to its
// container (and resized with it), time on x, a legend for screen readers too.

const COLORS = ["#d9480f", "#1971c2", "#2f9e44", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
export const color = (i) => COLORS[i % COLORS.length];

export function chart(container, { title, series, data, height = 260, hooks = {}, yLabel = "" }) {
  const style = getComputedStyle(container);
  const padding = parseFloat(style.paddingLeft) + parseFloat(style.paddingRight);
  const width = () => Math.max(240, (container.clientWidth || 600) - padding);
  const plot = new uPlot(
    {
      title,
      width: width(),
      height,
      series: [{ label: "time" }, ...series],
      axes: [{}, { label: yLabel }],
      scales: { x: { time: true } },
      legend: { live: true },
      hooks,
    },
    data,
    container,
  );
  const observer = new ResizeObserver(() => plot.setSize({ width: width(), height }));
  observer.observe(container);
  return {
    plot,
    destroy() {
      observer.disconnect();
      plot.destroy();
    },
  };
}
