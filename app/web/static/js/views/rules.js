// Rules of a bus with their patterns and targets, and the events each recently matched.

import { gql } from "../gql.js";
import { h, replace, table, time, json } from "../dom.js";
import { canWrite } from "../session.js";

const QUERY = `query($bus: String!) {
  buses { name ruleCount }
  rules(bus: $bus) { name bus state description eventPattern managedBy updatedAt scheduleExpression nextFireAt
    targets { id arn }
    recentEvents(limit: 10) { id source detailType receivedAt } }
}`;
const TOGGLE = (op) => `mutation($name: String!, $bus: String!) { ${op}(name: $name, bus: $bus) { name state } }`;

export async function render(root, params, bus = "default") {
  const data = await gql(QUERY, { bus });
  const picker = h("select", { id: "bus", onchange: (e) => render(root, params, e.target.value) },
    data.buses.map((b) => h("option", { value: b.name, selected: b.name === bus }, `${b.name} (${b.ruleCount})`)));
  replace(
    root,
    h("h1", {}, "Rules"),
    h("p", {}, h("label", { for: "bus" }, "Bus "), picker),
    data.rules.length ? null : h("p", { class: "muted" }, "No rules on this bus."),
    data.rules.map((rule) => ruleCard(rule, () => render(root, params, bus))),
  );
}

function ruleCard(rule, refresh) {
  const toggle = canWrite()
    ? h("button", {
        type: "button",
        class: "mutation",
        onclick: async () => {
          await gql(TOGGLE(rule.state === "ENABLED" ? "disableRule" : "enableRule"), { name: rule.name, bus: rule.bus });
          refresh();
        },
      }, rule.state === "ENABLED" ? "Disable" : "Enable")
    : null;
  return h(
    "article",
    { class: "card rule", "aria-labelledby": `rule-${rule.name}` },
    h("h2", { id: `rule-${rule.name}` }, rule.name, " ", h("span", { class: `status status-${rule.state}` }, rule.state), " ", toggle),
    rule.description ? h("p", { class: "muted" }, rule.description) : null,
    h("p", { class: "muted" }, rule.managedBy ? `Declared in ${rule.managedBy}` : "Created through the API"),
    rule.scheduleExpression
      ? h("p", {}, "Schedule ", h("code", {}, rule.scheduleExpression), " — next tick ", time(rule.nextFireAt))
      : h("details", {}, h("summary", {}, "Event pattern"), json(rule.eventPattern)),
    h("p", {}, "Targets: ", rule.targets.map((t, i) => [i ? ", " : "", h("code", {}, t.arn)])),
    table("Recent events", ["Received", "Source", "Detail type", "Id"],
      rule.recentEvents.map((e) => h("tr", {}, h("td", {}, time(e.receivedAt)), h("td", {}, e.source), h("td", {}, e.detailType), h("td", {}, h("code", {}, e.id))))),
  );
}
