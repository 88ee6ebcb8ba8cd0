// One state machine: its graph, its executions, and one execution followed live — each state
// lights up as the history reaches it (executionUpdates subscription), with the history below.

import { gql, subscribe } from "../gql.js";
import { h, replace, table, time, json, errorBox } from "../dom.js";
import { canWrite } from "../session.js";
import { assignedVariables, drawGraph, stateProgress } from "./graph.js";
import { execLink } from "./machines.js";

const MACHINE = `query($name: String!) {
  stateMachine(name: $name) { name arn type status description definition executionCount
    graph { nodes { id type label end parent queryLanguage } edges { from to kind label } } }
  executions(stateMachine: $name, limit: 20) { arn name stateMachine status startDate stopDate }
}`;
const EXECUTION = `query($arn: String!) { execution(arn: $arn) {
  arn name stateMachine status input output error cause startDate stopDate parentExecutionArn
  mapRuns { arn stateMachine status startDate stopDate itemCounts }
  history(limit: 1000) { id type timestamp details } } }`;
const UPDATES = `subscription($arn: String) { executionUpdates(arn: $arn) {
  execution { arn name stateMachine status output error cause startDate stopDate }
  events { id type timestamp details } } }`;
const START = `mutation($name: String!, $input: JSON) { startExecution(stateMachine: $name, input: $input) { arn stateMachine } }`;

export async function render(root, { name, execution }) {
  const data = await gql(MACHINE, { name });
  const machine = data.stateMachine;
  if (!machine) {
    replace(root, h("h1", {}, "Not found"), h("p", {}, `No state machine named ${name}.`));
    return null;
  }
  const arn = execution || data.executions[0]?.arn || null;
  const { svg, nodes } = drawGraph(machine.graph, `${machine.name} as a graph`);
  const detail = h("section", { class: "execution", "aria-live": "polite", "aria-labelledby": "exec-title" });
  // A "<machine>/<label>" machine is a distributed Map's: only its Map Run starts executions.
  const mapRunMachine = machine.name.includes("/");
  const startForm = machine.type === "STANDARD" && canWrite() && !mapRunMachine ? startExecutionForm(machine) : null;

  replace(
    root,
    h("h1", {}, machine.name, " ", h("span", { class: "badge" }, machine.type)),
    machine.description ? h("p", { class: "muted" }, machine.description) : null,
    h("div", { class: "graph-wrap" }, svg),
    startForm,
    detail,
    table(
      "Executions",
      ["Execution", "Status", "Started", "Stopped"],
      data.executions.map((e) =>
        h("tr", { class: e.arn === arn ? "selected" : null, "data-arn": e.arn },
          h("td", {}, h("a", { href: execLink(e), "aria-current": e.arn === arn ? "true" : null }, e.name)),
          h("td", {}, h("span", { class: `status status-${e.status}` }, e.status)),
          h("td", {}, time(e.startDate)), h("td", {}, time(e.stopDate)))),
    ),
  );
  if (!arn) {
    replace(detail, h("p", { class: "muted" }, "No executions yet."));
    return null;
  }
  return follow(arn, detail, nodes);
}

function startExecutionForm(machine) {
  const input = h("textarea", { id: "exec-input", rows: 3, spellcheck: "false" }, "{}");
  const status = h("p", { role: "alert", class: "error" });
  return h(
    "form",
    {
      class: "card start",
      onsubmit: async (event) => {
        event.preventDefault();
        let value;
        try {
          value = JSON.parse(input.value || "{}");
        } catch (err) {
          status.textContent = `Input is not JSON: ${err.message}`;
          return;
        }
        try {
          const { startExecution } = await gql(START, { name: machine.name, input: value });
          location.hash = execLink(startExecution);
        } catch (err) {
          status.textContent = err.message;
        }
      },
    },
    h("label", { for: "exec-input" }, "Input (JSON)"),
    input,
    h("button", { type: "submit", class: "mutation" }, "Start execution"),
    status,
  );
}

function follow(arn, detail, nodes) {
  let events = [];
  let current = null;
  const paint = () => {
    const progress = stateProgress(events);
    for (const [label, groups] of nodes) {
      for (const g of groups) {
        g.classList.remove("active", "done", "failed");
        const state = progress.get(label);
        if (state) g.classList.add(state);
      }
    }
    const e = current;
    if (!e) return;
    const row = document.querySelector(`tr[data-arn="${CSS.escape(e.arn)}"]`);
    const listed = row?.querySelector(".status");
    if (listed) {
      listed.textContent = e.status;
      listed.className = `status status-${e.status}`;
      replace(row.cells[3], time(e.stopDate)); // the list follows the live execution's end too
    }
    replace(
      detail,
      h("h2", { id: "exec-title" }, "Execution ", e.name, " ",
        h("span", { class: `status status-${e.status}`, "data-testid": "execution-status" }, e.status)),
      h("dl", { class: "facts" },
        h("dt", {}, "Started"), h("dd", {}, time(e.startDate)),
        h("dt", {}, "Stopped"), h("dd", {}, time(e.stopDate)),
        e.parentExecutionArn ? [h("dt", {}, "Started by"), h("dd", {}, parentLink(e.parentExecutionArn))] : null,
        e.error ? [h("dt", {}, "Error"), h("dd", {}, `${e.error}: ${e.cause || ""}`)] : null),
      e.output ? h("details", {}, h("summary", {}, "Output"), json(e.output)) : null,
      variablesTable(events),
      mapRunsTable(e.mapRuns),
      table("History", ["#", "Type", "When", "State"],
        events.map((ev) => h("tr", {}, h("td", { class: "num" }, ev.id), h("td", {}, ev.type), h("td", {}, time(ev.timestamp)),
          h("td", {}, stateName(ev))))),
    );
  };
  const load = async () => {
    const { execution } = await gql(EXECUTION, { arn });
    if (!execution) throw new Error(`No execution ${arn}`);
    current = execution;
    events = execution.history;
    paint();
  };
  let stop = () => {};
  const begin = () => {
    stop = subscribe(UPDATES, { arn }, {
      next: ({ executionUpdates: update }) => {
        current = { ...(current || {}), ...update.execution };
        const seen = new Set(events.map((e) => e.id));
        events = events.concat(update.events.filter((e) => !seen.has(e.id))).sort((a, b) => a.id - b.id);
        // ids run 1, 2, 3…: a hole means the stream began before our query saw it all
        if (events.some((e, i) => e.id !== i + 1)) load().catch(() => {});
        else paint();
      },
      complete: () => load().catch(() => {}),
      onReconnect: () => load().catch(() => {}),
      error: (err) => detail.append(errorBox(err)),
    });
  };
  begin(); // subscribe first, then read: nothing falls between the two (ids are deduped)
  load().catch((err) => replace(detail, errorBox(err)));
  return () => stop();
}

/** A distributed Map's runs: their items' progress, and a link to the run's executions. */
function mapRunsTable(runs) {
  if (!runs?.length) return null;
  return table("Map Runs", ["Map Run", "Status", "Items succeeded", "Failed", "Total"],
    runs.map((run) => h("tr", { "data-map-run": run.arn },
      h("td", {}, h("a", { href: `#/machines/${encodeURIComponent(run.stateMachine)}` }, run.stateMachine)),
      h("td", {}, h("span", { class: `status status-${run.status}` }, run.status)),
      h("td", { class: "num" }, run.itemCounts.succeeded),
      h("td", { class: "num" }, run.itemCounts.failed + run.itemCounts.timedOut + run.itemCounts.aborted),
      h("td", { class: "num" }, run.itemCounts.total))));
}

/** A link to the execution whose startExecution task started this one (its ARN names its
 * machine: arn:aws:states:<region>:<account>:execution:<machine>:<name>). */
function parentLink(arn) {
  const [, , , , , , stateMachine, name] = arn.split(":");
  return h("a", { href: execLink({ arn, stateMachine }) }, `${stateMachine} / ${name}`);
}

function variablesTable(events) {
  const variables = assignedVariables(events);
  if (!variables.size) return null;
  return table("Variables", ["Name", "Value", "Assigned by"],
    [...variables].map(([name, v]) => h("tr", { "data-variable": name },
      h("th", { scope: "row" }, `$${name}`),
      h("td", {}, h("code", {}, JSON.stringify(v.value)), v.truncated ? " (truncated)" : ""),
      h("td", {}, v.state))));
}

function stateName(event) {
  const d = event.details || {};
  return d.stateEnteredEventDetails?.name || d.stateExitedEventDetails?.name || "";
}
