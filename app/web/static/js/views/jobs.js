// GitLab CI jobs: a timeline of each job's statuses (pending → assigned → running → finished)
// with its queue time and the runner (EC2 instance or container, warm pool or cold) that took
// it, the live runners with their estimated cost, and the profiles with their warm pool, queue
// time and cost over the last 24 hours.
// There is no subscription for jobs: the view re-reads every few seconds while it is open.

import { gql } from "../gql.js";
import { h, replace, table, time } from "../dom.js";
import { canWrite } from "../session.js";

const QUERY = `{
  ciJobs(limit: 50) { gitlab jobId project name stage ref status phase profile tags ranOn error
    createdAt finishedAt timeline { status at runner } secondsToAssigned queueSeconds onDemand retryOf
    runner { name kind state pool instanceType market providerId runningMinutes costHint estimatedCost } }
  ciRunners(includeStopped: true, limit: 50) { name kind profile state pool uses providerId instanceType
    market subnetId jobId error createdAt startedAt stoppedAt runningMinutes costHint estimatedCost }
}`;
const PROFILES = `{ runnerProfiles { name kind tags default maxConcurrent live instanceTypes spot image
  jobs queueSecondsP50 estimatedCost pool { idleCount idle launching maxUse } queueTime { le count } } }`;
const TERMINATE = `mutation($name: String!) { terminateRunner(name: $name) { name state } }`;
const REFRESH_MS = 5000;

export async function render(root) {
  let timer = null;
  const draw = async () => {
    let data;
    let profiles = [];
    try {
      data = await gql(QUERY);
      profiles = await gql(PROFILES).then((d) => d.runnerProfiles, () => []); // a bad profiles file must not hide the jobs
    } catch (err) {
      if (/Cannot query field/.test(err.message)) {
        replace(root, h("h1", {}, "CI jobs"), h("p", { class: "muted" }, "This server has no GitLab runners API."));
        return;
      }
      throw err;
    }
    replace(
      root,
      h("h1", {}, "CI jobs"),
      timeline(data.ciJobs),
      table("Jobs", ["Job", "Status", "Queued", "Runner", "Profile", "Created"],
        data.ciJobs.map((j) => h("tr", {},
          h("td", {}, `#${j.jobId} ${j.name}`, h("div", { class: "muted" }, [j.project, j.ref, j.stage].filter(Boolean).join(" · "))),
          h("td", {}, h("span", { class: `status status-${j.status}` }, j.status), h("div", { class: "muted" }, j.phase),
            j.retryOf ? h("div", { class: "muted" }, `retry of #${j.retryOf} (on demand)`) : null, j.error ? h("div", { class: "error" }, j.error) : null),
          h("td", { class: "num" }, seconds(j.queueSeconds), j.secondsToAssigned != null ? h("div", { class: "muted" }, `assigned ${seconds(j.secondsToAssigned)}`) : null),
          h("td", {}, j.runner ? [h("code", {}, j.runner.name), j.runner.pool ? h("span", { class: "badge" }, "warm") : null,
            h("div", { class: "muted" }, `${j.runner.state} · ${j.runner.costHint}${money(j.runner.estimatedCost)}`)] : j.ranOn || "—"),
          h("td", {}, j.profile || "—", j.tags ? h("div", { class: "muted" }, j.tags.join(", ")) : null),
          h("td", {}, time(j.createdAt))))),
      table("Runners", ["Runner", "Kind", "State", "Job", "Cost", canWrite() ? "Action" : "Stopped"],
        data.ciRunners.map((r) => h("tr", {},
          h("td", {}, h("code", {}, r.name), r.pool ? h("span", { class: "badge" }, `warm · ${r.uses} job${r.uses === 1 ? "" : "s"}`) : null,
            r.providerId ? h("div", { class: "muted" }, [r.providerId, r.subnetId].filter(Boolean).join(" · ")) : null),
          h("td", {}, r.kind, r.instanceType ? h("div", { class: "muted" }, `${r.instanceType} ${r.market || ""}`) : null),
          h("td", {}, h("span", { class: `status status-${r.state}` }, r.state), r.error ? h("div", { class: "error" }, r.error) : null),
          h("td", { class: "num" }, r.jobId != null ? `#${r.jobId}` : "—"),
          h("td", {}, r.costHint, money(r.estimatedCost)),
          h("td", {}, canWrite() && ["launching", "idle", "running"].includes(r.state)
            ? h("button", { type: "button", class: "mutation secondary", onclick: async () => { await gql(TERMINATE, { name: r.name }); draw(); } }, "Terminate")
            : time(r.stoppedAt))))),
      table("Profiles", ["Profile", "Kind", "Tags", "Live / max", "Warm pool", "Queue time (24 h)", "Cost (24 h)", "Runs on"],
        profiles.map((p) => h("tr", {},
          h("td", {}, p.name, p.default ? h("span", { class: "badge" }, "default") : null),
          h("td", {}, p.kind), h("td", {}, p.tags.join(", ")),
          h("td", { class: "num" }, `${p.live} / ${p.maxConcurrent}`),
          h("td", { class: "num" }, p.pool ? `${p.pool.idle} idle of ${p.pool.idleCount}` : "—",
            p.pool && p.pool.launching ? h("div", { class: "muted" }, `${p.pool.launching} launching`) : null),
          h("td", {}, p.jobs ? [`p50 ${seconds(p.queueSecondsP50)} · ${p.jobs} job${p.jobs === 1 ? "" : "s"}`, histogram(p.queueTime)] : "—"),
          h("td", { class: "num" }, p.estimatedCost != null ? p.estimatedCost.toFixed(2) : "—"),
          h("td", {}, p.instanceTypes ? `${p.instanceTypes.join(", ")}${p.spot ? " (spot)" : ""}` : p.image || "—")))),
    );
  };
  await draw();
  timer = setInterval(() => draw().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

/** One row per job: a bar from its creation to its end (or now), a tick at each status. */
function timeline(jobs) {
  if (!jobs.length) return h("p", { class: "muted" }, "No jobs yet: GitLab's job webhooks land here.");
  const now = Date.now();
  const start = Math.min(...jobs.map((j) => Date.parse(j.createdAt)));
  const end = Math.max(now, ...jobs.map((j) => Date.parse(j.finishedAt || j.createdAt)));
  const span = Math.max(1, end - start);
  const pct = (t) => `${(((Date.parse(t) || now) - start) / span) * 100}%`;
  return h("figure", { class: "timeline", "aria-label": "Job timeline" },
    h("figcaption", { class: "muted" }, `From ${new Date(start).toLocaleString()} to ${new Date(end).toLocaleString()}`),
    jobs.slice(0, 30).reverse().map((j) => {
      const left = pct(j.createdAt);
      const width = `calc(${pct(j.finishedAt || new Date(now).toISOString())} - ${left})`;
      return h("div", { class: "lane" },
        h("span", { class: "lane-label" }, `#${j.jobId} ${j.name}`),
        h("span", { class: "lane-track" },
          h("span", { class: `bar status-${j.status}`, style: `left: ${left}; width: max(4px, ${width})`, title: `${j.status} (${j.phase})` }),
          j.timeline.map((e) => h("span", { class: "tick", style: `left: ${pct(e.at)}`, title: `${e.status} at ${new Date(e.at).toLocaleTimeString()}${e.runner ? ` on ${e.runner}` : ""}` }))));
    }));
}

function seconds(value) {
  if (value == null) return "—";
  return value < 60 ? `${value.toFixed(1)} s` : `${(value / 60).toFixed(1)} min`;
}

function money(value) {
  return value == null ? "" : ` · ≈ ${value.toFixed(4)}`;
}

/** A tiny bar per queue-time bucket (the GraphQL buckets are cumulative). */
function histogram(buckets) {
  const counts = buckets.map((b, i) => b.count - (i ? buckets[i - 1].count : 0));
  const top = Math.max(1, ...counts);
  const label = (b) => (b.le == null ? "more" : `≤ ${seconds(b.le)}`);
  return h("div", { class: "histogram", role: "img", "aria-label": buckets.map((b, i) => `${label(b)}: ${counts[i]}`).join(", ") },
    counts.map((c, i) => h("span", { class: "histogram-bar", style: `height: ${(c / top) * 100}%`, title: `${label(buckets[i])}: ${c}` })));
}
