// Queues and workers: depth, demand and live workers over time from the scaling decisions (a
// marker where the autoscaler changed its mind), followed live; the worker registry below; then
// the SQS-compatible queues (same store) with their counts, and the Scheduler's schedules.

import { gql, subscribe } from "../gql.js";
import { h, replace, table, time, ago } from "../dom.js";
import { chart, color } from "../chart.js";

const QUERY = `{
  workQueues { name desired updatedAt }
  workers(includeGone: true) { id hostname queues concurrency backend state alive currentTask active held tasksDone startedAt heartbeatAt }
  scalingDecisions(limit: 500) { id queue decidedAt previous desired queued reserved running liveWorkers busyWorkers reason backend error }
  sqsQueues { name fifo visible inFlight delayed deadLetterQueue maxReceiveCount }
  schedules(limit: 50) { name group expression timezone state nextFireAt targetArn }
}`;
const LIVE = `subscription { scalingDecisions { id queue decidedAt previous desired queued reserved running liveWorkers busyWorkers reason backend error } }`;

export async function render(root) {
  const data = await gql(QUERY);
  const decisions = data.scalingDecisions.slice().reverse(); // oldest first
  const charts = h("div", { class: "charts" });
  const log = h("div");
  replace(
    root,
    h("h1", {}, "Queues and workers"),
    table("Autoscaled queues", ["Queue", "Desired workers", "Updated"],
      data.workQueues.map((q) => h("tr", {}, h("td", {}, q.name), h("td", { class: "num" }, q.desired), h("td", {}, time(q.updatedAt))))),
    charts,
    table("Workers", ["Worker", "Queues", "State", "Heartbeat", "Active / held", "Done", "Backend"],
      data.workers.map((w) => h("tr", { class: w.alive ? null : "gone" },
        h("td", {}, h("code", {}, w.id), h("div", { class: "muted" }, w.hostname)),
        h("td", {}, w.queues.join(", ")),
        h("td", {}, h("span", { class: `status status-${w.state}` }, w.state), w.currentTask ? h("div", { class: "muted" }, w.currentTask) : null),
        h("td", {}, ago(w.heartbeatAt)),
        h("td", { class: "num" }, `${w.active} / ${w.held}`),
        h("td", { class: "num" }, w.tasksDone),
        h("td", {}, w.backend)))),
    log,
    table("SQS queues", ["Queue", "Visible", "In flight", "Delayed", "Dead letters to"],
      data.sqsQueues.map((q) => h("tr", {},
        h("td", {}, q.name, q.fifo ? h("span", { class: "muted" }, " FIFO") : null),
        h("td", { class: "num" }, q.visible),
        h("td", { class: "num" }, q.inFlight),
        h("td", { class: "num" }, q.delayed),
        h("td", {}, q.deadLetterQueue ? `${q.deadLetterQueue} after ${q.maxReceiveCount} receives` : "—")))),
    table("Schedules", ["Schedule", "Expression", "State", "Next fire", "Target"],
      data.schedules.map((s) => h("tr", {},
        h("td", {}, s.name, h("div", { class: "muted" }, s.group)),
        h("td", {}, h("code", {}, s.expression), s.timezone !== "UTC" ? h("div", { class: "muted" }, s.timezone) : null),
        h("td", {}, h("span", { class: `status status-${s.state}` }, s.state)),
        h("td", {}, time(s.nextFireAt)),
        h("td", {}, h("code", {}, s.targetArn))))),
  );
  const plots = new Map();
  const draw = () => {
    for (const p of plots.values()) p.destroy();
    plots.clear();
    replace(charts);
    const queues = [...new Set([...data.workQueues.map((q) => q.name), ...decisions.map((d) => d.queue)])];
    if (!queues.length) charts.append(h("p", { class: "muted" }, "No scaling decisions yet."));
    for (const queue of queues) {
      const rows = decisions.filter((d) => d.queue === queue);
      const box = h("figure", { class: "chart", "aria-label": `Queue ${queue} over time` });
      charts.append(box);
      const xs = rows.map((d) => new Date(d.decidedAt).getTime() / 1000);
      const changed = rows.map((d) => (d.desired !== d.previous ? d.desired : null));
      plots.set(queue, chart(box, {
        title: `${queue}: depth, demand and workers`,
        series: [
          { label: "queued", stroke: color(0), width: 2 },
          { label: "running", stroke: color(4) },
          { label: "desired", stroke: color(1), width: 2, dash: [6, 4] },
          { label: "live workers", stroke: color(2), width: 2 },
          { label: "decision", stroke: color(3), width: 0, points: { show: true, size: 9, fill: color(3) } },
        ],
        data: [xs, rows.map((d) => d.queued), rows.map((d) => d.running), rows.map((d) => d.desired), rows.map((d) => d.liveWorkers), changed],
      }));
      box.append(h("figcaption", { class: "muted" }, rows.length ? `Last decision: ${rows[rows.length - 1].reason}` : "No decisions yet"));
    }
    replace(log, table("Latest scaling decisions", ["When", "Queue", "Workers", "Queued", "Reason"],
      decisions.slice(-20).reverse().map((d) => h("tr", {}, h("td", {}, time(d.decidedAt)), h("td", {}, d.queue),
        h("td", { class: "num" }, `${d.previous} → ${d.desired}`), h("td", { class: "num" }, d.queued), h("td", {}, d.reason, d.error ? h("div", { class: "error" }, d.error) : null)))));
  };
  draw();
  const seen = new Set(decisions.map((d) => d.id));
  const stop = subscribe(LIVE, {}, {
    next: ({ scalingDecisions: d }) => {
      if (seen.has(d.id)) return;
      seen.add(d.id);
      decisions.push(d);
      if (decisions.length > 2000) decisions.splice(0, decisions.length - 2000);
      draw();
    },
    onReconnect: async () => {
      const again = await gql(QUERY).catch(() => null);
      for (const d of again ? again.scalingDecisions.slice().reverse() : []) if (!seen.has(d.id)) { seen.add(d.id); decisions.push(d); }
      decisions.sort((a, b) => a.decidedAt.localeCompare(b.decidedAt));
      draw();
    },
  });
  return () => {
    stop();
    for (const p of plots.values()) p.destroy();
  };
}
