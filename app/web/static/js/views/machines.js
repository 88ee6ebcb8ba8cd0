// State machines: every machine with its type and execution count, and the latest executions.

import { gql } from "../gql.js";
import { h, replace, table, time } from "../dom.js";

const QUERY = `{
  stateMachines { name type status description managedBy executionCount updatedAt }
  executions(limit: 20) { arn name stateMachine status startDate stopDate }
}`;

export const execLink = (e) => `#/machines/${encodeURIComponent(e.stateMachine)}/${encodeURIComponent(e.arn)}`;

export async function render(root) {
  const data = await gql(QUERY);
  replace(
    root,
    h("h1", {}, "State machines"),
    table(
      "Machines",
      ["Name", "Type", "Status", "Executions", "Managed by", "Updated"],
      data.stateMachines.map((m) =>
        h("tr", {},
          h("td", {}, h("a", { href: `#/machines/${encodeURIComponent(m.name)}` }, m.name), m.description ? h("div", { class: "muted" }, m.description) : null),
          h("td", {}, m.type), h("td", {}, m.status), h("td", { class: "num" }, m.executionCount),
          h("td", {}, m.managedBy || "API"), h("td", {}, time(m.updatedAt)))),
    ),
    table(
      "Latest executions",
      ["Execution", "Machine", "Status", "Started", "Stopped"],
      data.executions.map((e) =>
        h("tr", {},
          h("td", {}, h("a", { href: execLink(e) }, e.name)), h("td", {}, e.stateMachine),
          h("td", {}, h("span", { class: `status status-${e.status}` }, e.status)),
          h("td", {}, time(e.startDate)), h("td", {}, time(e.stopDate)))),
    ),
  );
}
