// GitLab CI jobs: a timeline of each job's statuses (received → running → finished) with the
// runner (EC2 instance or container) started for it, the live runners and the profiles.
// There is no subscription for jobs: the view re-reads every few seconds while it is open.

import { gql } from "../gql.js";
import { h, replace, table, time } from "../dom.js";
import { canWrite } from "../session.js";

const QUERY = `{
  ciJobs(limit: 50) { gitlab jobId project name stage ref status phase profile tags ranOn error
    createdAt finishedAt timeline { status at runner }
    runner { name kind state instanceType market providerId runningMinutes costHint } }
  ciRunners(includeStopped: true, limit: 50) { name kind profile state providerId instanceType market
    jobId error createdAt startedAt stoppedAt runningMinutes costHint }
}`;
const PROFILES = `{ runnerProfiles { name kind tags default maxConcurrent live instanceTypes spot image } }`;
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
      table("Jobs", ["Job", "Status", "Runner", "Profile", "Created"],
        data.ciJobs.map((j) => h("tr", {},
          h("td", {}, `#${j.jobId} ${j.name}`, h("div", { class: "muted" }, [j.project, j.ref, j.stage].filter(Boolean).join(" · "))),
          h("td", {}, h("span", { class: `status status-${j.status}` }, j.status), h("div", { class: "muted" }, j.phase), j.error ? h("div", { class: "error" }, j.error) : null),
          h("td", {}, j.runner ? [h("code", {}, j.runner.name), h("div", { class: "muted" }, `${j.runner.state} · ${j.runner.costHint}`)] : j.ranOn || "—"),
          h("td", {}, j.profile || "—", j.tags ? h("div", { class: "muted" }, j.tags.join(", ")) : null),
          h("td", {}, time(j.createdAt))))),
      table("Runners", ["Runner", "Kind", "State", "Job", "Cost", canWrite() ? "Action" : "Stopped"],
        data.ciRunners.map((r) => h("tr", {},
          h("td", {}, h("code", {}, r.name), r.providerId ? h("div", { class: "muted" }, r.providerId) : null),
          h("td", {}, r.kind, r.instanceType ? h("div", { class: "muted" }, `${r.instanceType} ${r.market || ""}`) : null),
          h("td", {}, h("span", { class: `status status-${r.state}` }, r.state), r.error ? h("div", { class: "error" }, r.error) : null),
          h("td", { class: "num" }, `#${r.jobId}`),
          h("td", {}, r.costHint),
          h("td", {}, canWrite() && ["launching", "running"].includes(r.state)
            ? h("button", { type: "button", class: "mutation secondary", onclick: async () => { await gql(TERMINATE, { name: r.name }); draw(); } }, "Terminate")
            : time(r.stoppedAt))))),
      table("Profiles", ["Profile", "Kind", "Tags", "Live / max", "Runs on"],
        profiles.map((p) => h("tr", {},
          h("td", {}, p.name, p.default ? h("span", { class: "badge" }, "default") : null),
          h("td", {}, p.kind), h("td", {}, p.tags.join(", ")),
          h("td", { class: "num" }, `${p.live} / ${p.maxConcurrent}`),
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
