// The grill view (phone-first): a card per probe, a live chart of the current cook with targets
// and alarm bands, ETA and stall, an alarm banner with Acknowledge, °C/°F, and cook history with
// a chart per past cook and CSV export. Live data comes from the `readings` and `alarms`
// subscriptions; after a dropped connection the view re-queries what it missed (catch-up).

import { gql, subscribe } from "../gql.js";
import { h, replace, time, ago, duration, errorBox, table } from "../dom.js";
import { canWrite, getUnits, setUnits } from "../session.js";
import { chart, color } from "../chart.js";

const PROBE = `deviceId probeId name role calibrationOffsetC targetC highC lowC setpointC pitBandC
  lastTempC lastStatus lastRateCPerMin lastTs etaSeconds stalled`;
const ALARM = `id deviceId probeId kind state message value threshold openedAt acknowledgedAt clearedAt silencedUntil`;
const DEVICES = `{ devices { id name availability lastSeenAt notifyTargets { id display }
  probes { ${PROBE} } currentCook { id name startedAt lastReadingAt } openAlarms { ${ALARM} } } }`;
const DEVICE = `query($id: ID!) { device(id: $id) { id name availability lastSeenAt
  probes { ${PROBE} } currentCook { id name startedAt lastReadingAt } openAlarms { ${ALARM} } } }`;
const READINGS = `query($id: ID!, $start: DateTime!, $end: DateTime!, $max: Int!) {
  readings(deviceId: $id, start: $start, end: $end, maxPoints: $max) { probeId columns { ts tempC } } }`;
const COOKS = `query($id: ID) { cooks(deviceId: $id, limit: 20) { id name startedAt endedAt lastReadingAt } }`;
const COOK = `query($id: Int!, $max: Int!) { cook(id: $id) { id deviceId name startedAt endedAt lastReadingAt
  alarms { id probeId kind message openedAt acknowledgedAt clearedAt notifications { action at outcome targets } }
  readings(maxPoints: $max) { probeId columns { ts tempC minC maxC } } } }`;
const LIVE_READINGS = `subscription($id: ID!) { readings(deviceId: $id) {
  deviceId seq ts cookId probes { probeId tempC status rateCPerMin } } }`;
const LIVE_ALARMS = `subscription($id: ID) { alarms(deviceId: $id) { ${ALARM} } }`;
const LIVE_DEVICES = `subscription { deviceChanges { deviceId probeIds } }`;
const ACK = `mutation($id: Int!) { acknowledgeAlarm(id: $id) { ${ALARM} } }`;
const SILENCE = `mutation($id: Int!) { silenceAlarm(id: $id, minutes: 15) { ${ALARM} } }`;
const UPDATE_PROBE = `mutation($d: ID!, $p: String!, $input: ProbeSettingsInput!) {
  updateProbe(deviceId: $d, probeId: $p, input: $input) { ${PROBE} } }`;
const START_COOK = `mutation($id: ID!, $name: String) { startCook(deviceId: $id, name: $name) { id } }`;
const NOTIFY_FIELDS = `id notifyTargets { id display }`;
const ADD_NOTIFY = `mutation($d: ID!, $url: String!) { addNotifyUrl(deviceId: $d, url: $url) { ${NOTIFY_FIELDS} } }`;
const REMOVE_NOTIFY = `mutation($d: ID!, $t: String!) { removeNotifyUrl(deviceId: $d, targetId: $t) { ${NOTIFY_FIELDS} } }`;
const TEST_NOTIFY = `mutation($d: ID!, $t: String) { sendTestNotification(deviceId: $d, targetId: $t) { outcome detail } }`;
const END_COOK = `mutation($id: ID!) { endCook(deviceId: $id) { id } }`;
const DEVICE_KEY = "smokehouse.device";
const WINDOW_SECONDS = 3 * 3600; // without a cook: the last three hours

// --- units ----------------------------------------------------------------------------------

const toUnit = (c, units = getUnits()) => (c === null || c === undefined ? null : units === "F" ? c * 1.8 + 32 : c);
const deltaUnit = (c, units = getUnits()) => (c === null || c === undefined ? null : units === "F" ? c * 1.8 : c);
export const formatTemp = (c, units = getUnits()) => (c === null || c === undefined ? "—" : `${toUnit(c, units).toFixed(1)} °${units}`);

// --- series: aligned columns for uPlot ---------------------------------------------------------

/** A series' `columns` (parallel arrays, as the API sends them) as a list of {ts, tempC}. */
export const toPoints = ({ ts, tempC }) => ts.map((t, i) => ({ ts: t, tempC: tempC[i] }));

/** Merge per-probe series (`columns` from the API, or `points` kept live) into uPlot's aligned
 * form: [xs, ys(probe 1), ys(probe 2)…]. */
export function align(series, probeIds) {
  const rows = new Map(); // epoch seconds → {probeId: °C}
  const put = (ts, tempC, probeId) => {
    const x = Date.parse(ts) / 1000;
    if (!rows.has(x)) rows.set(x, {});
    rows.get(x)[probeId] = tempC;
  };
  for (const s of series) {
    if (s.columns) s.columns.ts.forEach((ts, i) => put(ts, s.columns.tempC[i], s.probeId));
    else for (const p of s.points) put(p.ts, p.tempC, s.probeId);
  }
  const xs = [...rows.keys()].sort((a, b) => a - b);
  return { xs, ys: Object.fromEntries(probeIds.map((id) => [id, xs.map((x) => rows.get(x)[id] ?? null)])) };
}

function csv(cook, series) {
  const ids = series.map((s) => s.probeId);
  const { xs, ys } = align(series, ids);
  const lines = [["time", ...ids.map((id) => `${id}_c`)].join(",")];
  xs.forEach((x, i) => lines.push([new Date(x * 1000).toISOString(), ...ids.map((id) => (ys[id][i] ?? ""))].join(",")));
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  return h("a", { class: "button", href: URL.createObjectURL(blob), download: `cook-${cook.id}.csv` }, "Export CSV");
}

// --- chart with targets and alarm bands ---------------------------------------------------------

function probeChart(container, title, probes, aligned) {
  const units = getUnits();
  const lines = probes.map((p, i) => ({ probe: p, stroke: color(i) }));
  const drawLimits = (u) => {
    const ctx = u.ctx;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    const y = (c) => u.valToPos(toUnit(c, units), "y", true);
    for (const { probe, stroke } of lines) {
      const given = (v) => v !== null && v !== undefined;
      ctx.fillStyle = "rgba(224, 49, 49, 0.08)"; // alarm zones: above high, below low
      if (given(probe.highC)) ctx.fillRect(left, top, width, Math.max(0, y(probe.highC) - top));
      if (given(probe.lowC)) ctx.fillRect(left, y(probe.lowC), width, Math.max(0, top + height - y(probe.lowC)));
      if (probe.setpointC !== null && probe.setpointC !== undefined && probe.pitBandC) {
        ctx.fillStyle = "rgba(47, 158, 68, 0.10)";
        const a = y(probe.setpointC + probe.pitBandC), b = y(probe.setpointC - probe.pitBandC);
        ctx.fillRect(left, Math.min(a, b), width, Math.abs(b - a));
      }
      if (probe.targetC !== null && probe.targetC !== undefined) {
        ctx.strokeStyle = stroke;
        ctx.setLineDash([8, 5]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(left, y(probe.targetC));
        ctx.lineTo(left + width, y(probe.targetC));
        ctx.stroke();
      }
    }
    ctx.restore();
  };
  const data = [aligned.xs, ...probes.map((p) => aligned.ys[p.probeId].map((c) => toUnit(c, units)))];
  return chart(container, {
    title,
    yLabel: `°${units}`,
    series: lines.map(({ probe, stroke }) => ({
      label: probe.name || probe.probeId,
      stroke,
      width: 2,
      spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} °${units}`),
    })),
    data,
    hooks: { drawAxes: [drawLimits] },
  });
}

// --- the view -------------------------------------------------------------------------------

export async function render(root, { cookId }) {
  if (cookId) return renderCook(root, cookId);
  let devices;
  try {
    ({ devices } = await gql(DEVICES));
  } catch (err) {
    if (/Cannot query field/.test(err.message)) {
      replace(root, h("h1", {}, "Grill"), h("p", { class: "muted" }, "This server has no thermometer API yet."));
      return null;
    }
    throw err;
  }
  if (!devices.length) return waitForFirst(root, { cookId });
  const wanted = localStorage.getItem(DEVICE_KEY);
  const device = devices.find((d) => d.id === wanted) || devices[0];
  return new GrillView(root, device, devices).start();
}

// No thermometer yet: say so, and open the grill the moment one reports (or, after a lost
// connection, when one has meanwhile), without a reload.
function waitForFirst(root, params) {
  replace(root, h("h1", {}, "Grill"), h("p", { class: "muted", role: "status" },
    "No thermometer has reported yet. Start the Pi publisher (device/) or its simulator and its readings appear here."));
  let inner = null;
  let stopped = false;
  const open = async () => {
    if (inner || stopped) return;
    inner = () => {};
    const cleanup = await render(root, params);
    if (stopped) { if (cleanup) cleanup(); return; }
    inner = cleanup || (() => {});
  };
  const stop = subscribe(LIVE_DEVICES, {}, {
    next: () => { stop(); open(); },
    onReconnect: async () => {
      const again = await gql(DEVICES).catch(() => null);
      if (again && again.devices.length) { stop(); open(); }
    },
    error: () => {},
  });
  return () => { stopped = true; stop(); if (inner) inner(); };
}

class GrillView {
  constructor(root, device, devices) {
    this.root = root;
    this.device = device;
    this.devices = devices;
    this.probes = new Map(device.probes.map((p) => [p.probeId, p]));
    this.alarms = new Map(device.openAlarms.map((a) => [a.id, a]));
    this.series = new Map(); // probeId → [{ts, tempC}]
    this.lastTs = null;
    this.stops = [];
    this.plot = null;
  }

  start() {
    const d = this.device;
    this.cards = h("div", { class: "probes", role: "list" });
    this.banner = h("div", { class: "alarms", "aria-live": "assertive" });
    this.chartBox = h("figure", { class: "chart", "aria-label": "Temperatures of this cook" });
    this.cookLine = h("p", { class: "cook" });
    this.status = h("p", { class: "muted", role: "status" });
    const unitButton = h("button", { type: "button", class: "units", "aria-pressed": getUnits() === "F" ? "true" : "false",
      onclick: () => { setUnits(getUnits() === "F" ? "C" : "F"); unitButton.textContent = `°${getUnits() === "F" ? "C" : "F"}`;
        unitButton.setAttribute("aria-pressed", getUnits() === "F" ? "true" : "false"); this.paint(); this.paintSettings(); this.redrawChart(); } },
      `°${getUnits() === "F" ? "C" : "F"}`);
    unitButton.setAttribute("aria-label", "Switch between °C and °F");
    this.pickerBox = h("span", { class: "device-picker" });
    this.history = h("section", { "aria-labelledby": "history-title" });
    this.settings = canWrite() ? h("section", { "aria-labelledby": "settings-title" }) : null;
    this.notify = canWrite() ? h("section", { "aria-labelledby": "notify-title" }) : null;
    replace(
      this.root,
      h("div", { class: "grill-head" },
        h("h1", {}, d.name || d.id), this.pickerBox, unitButton),
      this.status,
      this.banner,
      this.cards,
      this.cookLine,
      this.chartBox,
      this.settings,
      this.notify,
      this.history,
    );
    this.paintPicker();
    this.paint();
    this.paintSettings();
    this.paintNotify();
    this.live();
    this.loadReadings().catch((err) => this.chartBox.append(errorBox(err)));
    this.loadHistory().catch(() => {});
    const ticker = setInterval(() => this.paintStatus(), 10000);
    return () => {
      clearInterval(ticker);
      for (const stop of this.stops) stop();
      if (this.plot) this.plot.destroy();
    };
  }

  // Where this thermometer's alarms go (admins): Apprise URLs, shown masked once added.
  paintNotify(message = "") {
    if (!this.notify) return;
    const d = this.device;
    const status = h("p", { role: "status" }, message);
    const run = async (work) => {
      try {
        status.textContent = await work();
      } catch (err) {
        status.textContent = err.message;
      }
    };
    const test = (target) => run(async () => {
      status.textContent = "Sending a test notification…";
      const { sendTestNotification: r } = await gql(TEST_NOTIFY, { d: d.id, t: target ? target.id : null });
      return r.outcome === "sent" ? `Test notification sent. ${r.detail}` : `Not sent (${r.outcome}): ${r.detail}`;
    });
    const changed = (text) => (device) => { d.notifyTargets = device.notifyTargets; this.paintNotify(text); return text; };
    const input = h("input", { id: "notify-url", name: "url", autocomplete: "off", inputmode: "url", spellcheck: "false",
      placeholder: "ntfy://my-topic", required: true });
    const form = h("form", { class: "card notify", onsubmit: (event) => {
      event.preventDefault();
      run(async () => changed("Added.")((await gql(ADD_NOTIFY, { d: d.id, url: input.value.trim() })).addNotifyUrl));
    } },
      h("p", { class: "muted" }, "Alarms (target reached, too hot, stall…) are sent to every URL here. Any ",
        h("a", { href: "https://github.com/caronc/apprise/wiki", rel: "noopener" }, "Apprise URL"), " works: ntfy, Telegram, e-mail, Home Assistant…"),
      (d.notifyTargets || []).length
        ? h("ul", { class: "targets" }, d.notifyTargets.map((t) => h("li", {},
          h("code", {}, t.display), " ",
          h("button", { type: "button", class: "mutation secondary", "aria-label": `Send a test to ${t.display}`, onclick: () => test(t) }, "Test"), " ",
          h("button", { type: "button", class: "mutation secondary", "aria-label": `Remove ${t.display}`,
            onclick: () => run(async () => changed("Removed.")((await gql(REMOVE_NOTIFY, { d: d.id, t: t.id })).removeNotifyUrl)) }, "Remove"))))
        : h("p", {}, "No notification targets yet."),
      h("p", { class: "field" }, h("label", { for: "notify-url" }, "Apprise URL"), input),
      h("p", {}, h("button", { type: "submit", class: "mutation" }, "Add"), " ",
        (d.notifyTargets || []).length ? h("button", { type: "button", class: "mutation", onclick: () => test(null) }, "Send a test notification") : null),
      status);
    replace(this.notify, h("h2", { id: "notify-title" }, "Notifications"), form);
  }

  // A second thermometer that starts reporting joins the picker at once.
  paintPicker() {
    const d = this.device;
    replace(this.pickerBox, this.devices.length > 1
      ? [h("label", { for: "device", class: "sr-only" }, "Thermometer"),
        h("select", { id: "device", onchange: (e) => { localStorage.setItem(DEVICE_KEY, e.target.value); location.reload(); } },
          this.devices.map((x) => h("option", { value: x.id, selected: x.id === d.id }, x.name || x.id)))]
      : null);
  }

  async deviceChanged({ deviceId }) {
    if (this.devices.some((x) => x.id === deviceId)) return; // a new probe: its readings add it
    const again = await gql(DEVICES).catch(() => null);
    if (!again) return;
    this.devices = again.devices;
    this.paintPicker();
  }

  live() {
    const id = this.device.id;
    this.stops.push(subscribe(LIVE_DEVICES, {}, {
      next: ({ deviceChanges }) => this.deviceChanged(deviceChanges),
      error: () => {},
    }));
    this.stops.push(subscribe(LIVE_READINGS, { id }, {
      next: ({ readings }) => this.reading(readings),
      onReconnect: () => this.catchUp(),
      error: (err) => this.status.replaceChildren(errorBox(err)),
    }));
    this.stops.push(subscribe(LIVE_ALARMS, { id }, {
      next: ({ alarms }) => this.alarm(alarms),
      error: () => {},
    }));
  }

  reading(update) {
    if (update.cookId && this.device.currentCook?.id !== update.cookId) {
      this.device.currentCook = { ...(this.device.currentCook || {}), id: update.cookId, startedAt: this.device.currentCook?.startedAt || update.ts };
    }
    for (const p of update.probes) {
      const probe = this.probes.get(p.probeId) || { probeId: p.probeId, name: p.probeId, role: "food" };
      Object.assign(probe, { lastTempC: p.tempC, lastStatus: p.status, lastRateCPerMin: p.rateCPerMin, lastTs: update.ts });
      if (probe.targetC !== null && probe.targetC !== undefined && p.rateCPerMin > 0 && p.tempC !== null) {
        probe.etaSeconds = probe.targetC > p.tempC ? ((probe.targetC - p.tempC) / p.rateCPerMin) * 60 : 0;
      }
      this.probes.set(p.probeId, probe);
    }
    this.device.lastSeenAt = update.ts;
    this.device.availability = "online";
    this.addPoints(update.ts, update.probes.map((p) => ({ probeId: p.probeId, tempC: p.tempC })));
    this.paint();
  }

  alarm(alarm) {
    if (alarm.state === "cleared") this.alarms.delete(alarm.id);
    else this.alarms.set(alarm.id, alarm);
    this.paintAlarms();
  }

  /** After a reconnect: the device as it stands now, and the readings since the last one seen. */
  async catchUp() {
    const { device } = await gql(DEVICE, { id: this.device.id });
    if (!device) return;
    Object.assign(this.device, device);
    for (const p of device.probes) this.probes.set(p.probeId, p);
    this.alarms = new Map(device.openAlarms.map((a) => [a.id, a]));
    const since = this.lastTs || this.windowStart();
    const { readings } = await gql(READINGS, { id: this.device.id, start: since, end: new Date(Date.now() + 60000).toISOString(), max: 1000 });
    const rows = new Map();
    for (const s of readings) for (const p of toPoints(s.columns)) {
      if (this.lastTs && p.ts <= this.lastTs) continue;
      if (!rows.has(p.ts)) rows.set(p.ts, []);
      rows.get(p.ts).push({ probeId: s.probeId, tempC: p.tempC });
    }
    for (const ts of [...rows.keys()].sort()) this.addPoints(ts, rows.get(ts), false);
    this.redrawChart();
    this.paint();
  }

  windowStart() {
    const cook = this.device.currentCook;
    return cook ? cook.startedAt : new Date(Date.now() - WINDOW_SECONDS * 1000).toISOString();
  }

  async loadReadings() {
    const { readings } = await gql(READINGS, {
      id: this.device.id, start: this.windowStart(), end: new Date(Date.now() + 60000).toISOString(), max: 1000,
    });
    for (const s of readings) {
      const known = this.series.get(s.probeId) || [];
      const have = new Set(known.map((p) => p.ts));
      const points = toPoints(s.columns);
      this.series.set(s.probeId, [...points.filter((p) => !have.has(p.ts)), ...known].sort((a, b) => a.ts.localeCompare(b.ts)));
      for (const p of points) if (!this.lastTs || p.ts > this.lastTs) this.lastTs = p.ts;
    }
    this.redrawChart();
  }

  addPoints(ts, points, redraw = true) {
    for (const p of points) {
      const list = this.series.get(p.probeId) || [];
      if (list.length && list[list.length - 1].ts >= ts) continue; // a duplicate (at-least-once)
      list.push({ ts, tempC: p.tempC });
      if (list.length > 5000) list.splice(0, list.length - 5000);
      this.series.set(p.probeId, list);
    }
    if (!this.lastTs || ts > this.lastTs) this.lastTs = ts;
    if (redraw) this.redrawChart();
  }

  redrawChart() {
    if (this.pending) return;
    this.pending = requestAnimationFrame(() => {
      this.pending = null;
      const probes = [...this.probes.values()];
      const aligned = align([...this.series].map(([probeId, points]) => ({ probeId, points })), probes.map((p) => p.probeId));
      if (this.plot && this.plot.units === getUnits() && this.plot.count === probes.length) {
        this.plot.plot.setData([aligned.xs, ...probes.map((p) => aligned.ys[p.probeId].map((c) => toUnit(c)))]);
        return;
      }
      if (this.plot) this.plot.destroy();
      this.chartBox.replaceChildren();
      if (!aligned.xs.length) {
        this.chartBox.append(h("p", { class: "muted" }, "No readings in this cook yet."));
        this.plot = null;
        return;
      }
      this.plot = probeChart(this.chartBox, "This cook", probes, aligned);
      this.plot.units = getUnits();
      this.plot.count = probes.length;
    });
  }

  paint() {
    this.paintStatus();
    this.paintAlarms();
    const probes = [...this.probes.values()];
    replace(this.cards, probes.map((p, i) => probeCard(p, i)));
    const cook = this.device.currentCook;
    const controls = canWrite()
      ? cook
        ? h("button", { type: "button", class: "mutation", onclick: () => this.mutate(END_COOK, { id: this.device.id }) }, "End cook")
        : h("button", { type: "button", class: "mutation", onclick: () => this.mutate(START_COOK, { id: this.device.id, name: null }) }, "Start cook")
      : null;
    replace(this.cookLine, cook ? ["Cook ", h("strong", {}, cook.name || `#${cook.id}`), " since ", time(cook.startedAt), " "] : "No cook running. ", controls);
  }

  paintStatus() {
    const d = this.device;
    replace(this.status, h("span", { class: `status status-${d.availability || "unknown"}` }, d.availability || "availability unknown"), " · last reading ", ago(d.lastSeenAt));
  }

  paintAlarms() {
    const open = [...this.alarms.values()].filter((a) => a.state !== "cleared").sort((a, b) => b.openedAt.localeCompare(a.openedAt));
    replace(this.banner, open.map((a) => {
      const acked = a.state === "acknowledged";
      return h("div", { class: `alarm ${acked ? "acked" : ""}`, role: "alert", "data-alarm": a.id, "data-kind": a.kind },
        h("strong", {}, a.kind.replace(/_/g, " ")), " ", a.message,
        getUnits() === "F" && a.value !== null && a.value !== undefined ? ` (${formatTemp(a.value)})` : "", // messages say °C
        " ", h("span", { class: "muted" }, acked ? "acknowledged" : ""),
        canWrite() && !acked ? h("button", { type: "button", class: "mutation", onclick: () => this.ack(a, ACK) }, "Acknowledge") : null,
        canWrite() && !a.silencedUntil ? h("button", { type: "button", class: "mutation secondary", onclick: () => this.ack(a, SILENCE) }, "Silence 15 min") : null);
    }));
  }

  async ack(alarm, mutation) {
    try {
      const data = await gql(mutation, { id: alarm.id });
      this.alarm(data.acknowledgeAlarm || data.silenceAlarm);
    } catch (err) {
      this.banner.append(errorBox(err));
    }
  }

  async mutate(mutation, variables) {
    try {
      await gql(mutation, variables);
      const { device } = await gql(DEVICE, { id: this.device.id });
      Object.assign(this.device, device);
      this.series.clear();
      this.lastTs = null;
      this.paint();
      await this.loadReadings();
      await this.loadHistory();
    } catch (err) {
      this.cookLine.append(errorBox(err));
    }
  }

  /** Admins set a probe's name, role, target and alarm limits (in the unit shown). Built once,
   * not on every reading, so typing is never interrupted. */
  paintSettings(selected) {
    if (!this.settings) return;
    const probes = [...this.probes.values()];
    if (!probes.length) return;
    const probe = this.probes.get(selected || this.selectedProbe) || probes[0];
    this.selectedProbe = probe.probeId;
    const units = getUnits();
    const field = (name, label, value, delta = false) => {
      const shown = value === null || value === undefined ? "" : (delta ? deltaUnit(value) : toUnit(value)).toFixed(1);
      return h("p", { class: "field" }, h("label", { for: `probe-${name}` }, `${label} (°${units})`),
        h("input", { id: `probe-${name}`, name, type: "number", step: "0.1", inputmode: "decimal", value: shown }));
    };
    const status = h("p", { role: "status" });
    const form = h("form", { class: "card probe-settings", onsubmit: async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      const number = (name, delta = false) => {
        const raw = String(data.get(name) ?? "").trim();
        if (raw === "") return null;
        const v = Number(raw);
        return units === "F" ? (delta ? v / 1.8 : (v - 32) / 1.8) : v;
      };
      const input = {
        name: String(data.get("name") || probe.probeId), role: String(data.get("role")),
        targetC: number("targetC"), highC: number("highC"), lowC: number("lowC"),
        setpointC: number("setpointC"), pitBandC: number("pitBandC", true),
      };
      try {
        const { updateProbe } = await gql(UPDATE_PROBE, { d: this.device.id, p: probe.probeId, input });
        this.probes.set(updateProbe.probeId, { ...this.probes.get(updateProbe.probeId), ...updateProbe });
        status.textContent = `Saved ${updateProbe.name}.`;
        if (this.plot) this.plot.count = -1; // limits changed: draw the chart again
        this.paint();
        this.redrawChart();
      } catch (err) {
        status.textContent = err.message;
      }
    } },
      h("p", { class: "field" }, h("label", { for: "probe-pick" }, "Probe"),
        h("select", { id: "probe-pick", onchange: (e) => this.paintSettings(e.target.value) },
          probes.map((p) => h("option", { value: p.probeId, selected: p.probeId === probe.probeId }, p.name || p.probeId)))),
      h("p", { class: "field" }, h("label", { for: "probe-name" }, "Name"), h("input", { id: "probe-name", name: "name", value: probe.name || "" })),
      h("p", { class: "field" }, h("label", { for: "probe-role" }, "Role"),
        h("select", { id: "probe-role", name: "role" }, ["food", "pit", "ambient"].map((r) => h("option", { value: r, selected: r === probe.role }, r)))),
      field("targetC", "Target", probe.targetC),
      field("highC", "High alarm", probe.highC),
      field("lowC", "Low alarm", probe.lowC),
      field("setpointC", "Pit setpoint", probe.setpointC),
      field("pitBandC", "Pit band ±", probe.pitBandC, true),
      h("button", { type: "submit", class: "mutation" }, "Save probe"),
      status);
    replace(this.settings, h("h2", { id: "settings-title" }, "Probe settings"), form);
  }

  async loadHistory() {
    const { cooks } = await gql(COOKS, { id: this.device.id });
    replace(this.history, h("h2", { id: "history-title" }, "Cook history"),
      table("Past cooks", ["Cook", "Started", "Ended", "Length"], cooks.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `#/grill/cook/${c.id}` }, c.name || `Cook #${c.id}`)),
        h("td", {}, time(c.startedAt)), h("td", {}, c.endedAt ? time(c.endedAt) : "running"),
        h("td", {}, duration((Date.parse(c.endedAt || c.lastReadingAt) - Date.parse(c.startedAt)) / 1000))))));
  }
}

function probeCard(p, index) {
  const status = p.lastStatus || "unknown";
  const eta = p.targetC !== null && p.targetC !== undefined && p.lastTempC !== null && p.lastTempC !== undefined && p.lastTempC >= p.targetC
    ? "at target" : p.etaSeconds !== null && p.etaSeconds !== undefined ? `ETA ${duration(p.etaSeconds)}` : null;
  const rate = p.lastRateCPerMin === null || p.lastRateCPerMin === undefined ? null
    : `${deltaUnit(p.lastRateCPerMin) >= 0 ? "+" : ""}${deltaUnit(p.lastRateCPerMin).toFixed(1)} °${getUnits()}/min`;
  return h("div", { class: `probe probe-${status}`, role: "listitem", "data-probe": p.probeId, style: `--probe-color: ${color(index)}`, "aria-label": `${p.name || p.probeId}` },
    h("header", {}, h("span", { class: "name" }, p.name || p.probeId), h("span", { class: "role" }, p.role)),
    h("p", { class: "temp", "data-testid": `temp-${p.probeId}` }, status === "ok" || p.lastTempC !== null ? formatTemp(p.lastTempC) : "—"),
    status !== "ok" ? h("p", { class: "probe-status" }, `probe ${status}`) : null,
    h("dl", {},
      p.targetC !== null && p.targetC !== undefined ? [h("dt", {}, "Target"), h("dd", {}, formatTemp(p.targetC))] : null,
      p.setpointC !== null && p.setpointC !== undefined ? [h("dt", {}, "Setpoint"), h("dd", {}, formatTemp(p.setpointC))] : null,
      rate ? [h("dt", {}, "Rate"), h("dd", {}, rate)] : null,
      eta ? [h("dt", {}, "Time"), h("dd", {}, eta)] : null),
    p.stalled ? h("p", { class: "stall", role: "status" }, "Stalled") : null);
}

// What went off during a cook, and where each notification went (targets come masked).
function alarmHistory(alarms, probes) {
  const probeName = (id) => (probes.find((p) => p.probeId === id) || {}).name || id;
  const notified = (a) => a.notifications.length
    ? a.notifications.map((n) => h("div", {}, `${n.action === "open" ? "Opened" : "Cleared"}: ${n.outcome}`,
      n.targets.length ? [" → ", n.targets.map((t, i) => [i ? ", " : "", h("code", {}, t)])] : null))
    : "—";
  return table("Alarms during this cook", ["Alarm", "Opened", "Acknowledged", "Cleared", "Notified"],
    alarms.map((a) => h("tr", { dataset: { alarm: a.id } },
      h("td", {}, a.message, a.probeId ? h("div", { class: "muted" }, probeName(a.probeId)) : null),
      h("td", {}, time(a.openedAt)),
      h("td", {}, time(a.acknowledgedAt)),
      h("td", {}, time(a.clearedAt)),
      h("td", {}, notified(a)))));
}

async function renderCook(root, cookId) {
  const { cook } = await gql(COOK, { id: cookId, max: 1000 });
  if (!cook) {
    replace(root, h("h1", {}, "Not found"), h("p", {}, `No cook #${cookId}.`));
    return null;
  }
  const { device } = await gql(DEVICE, { id: cook.deviceId });
  const probes = cook.readings.map((s) => (device?.probes || []).find((p) => p.probeId === s.probeId) || { probeId: s.probeId, name: s.probeId });
  const box = h("figure", { class: "chart", "aria-label": `Temperatures of cook ${cook.id}` });
  const exportLink = h("span");
  replace(root,
    h("p", {}, h("a", { href: "#/grill" }, "← Back to the grill")),
    h("h1", {}, cook.name || `Cook #${cook.id}`),
    h("p", {}, time(cook.startedAt), " – ", cook.endedAt ? time(cook.endedAt) : "running", " · ", exportLink),
    box,
    alarmHistory(cook.alarms, probes));
  const plot = cook.readings.length ? probeChart(box, cook.name || `Cook #${cook.id}`, probes, align(cook.readings, probes.map((p) => p.probeId))) : null;
  if (!plot) box.append(h("p", { class: "muted" }, "This cook has no readings."));
  // the CSV has more points than the chart needs (up to 10,000 per probe)
  gql(COOK, { id: cookId, max: 10000 }).then(({ cook: full }) => replace(exportLink, csv(full, full.readings)), (err) => replace(exportLink, errorBox(err)));
  return () => plot && plot.destroy();
}
