// Dead-lettered deliveries with the error that killed them; admins can redrive one.

import { gql } from "../gql.js";
import { h, replace, table, time, json } from "../dom.js";
import { canWrite } from "../session.js";

const QUERY = `query($all: Boolean!) { deadLetters(limit: 100, includeRedriven: $all) {
  id deliveryId eventId bus ruleName targetId errorCode errorMessage attempts createdAt redrivenAt
  delivery { targetArn event { source detailType envelope } } } }`;
const REDRIVE = `mutation($id: Int!) { redriveDeadLetter(id: $id) { id status } }`;

export async function render(root, params, all = false) {
  const { deadLetters } = await gql(QUERY, { all });
  const status = h("p", { role: "status" });
  const redrive = (letter) =>
    h("button", {
      type: "button",
      class: "mutation",
      disabled: letter.redrivenAt ? true : null,
      onclick: async () => {
        try {
          const { redriveDeadLetter } = await gql(REDRIVE, { id: letter.id });
          status.textContent = `Dead letter ${letter.id} redriven: delivery ${redriveDeadLetter.id} is ${redriveDeadLetter.status}.`;
          await render(root, params, all);
          root.prepend(status);
        } catch (err) {
          status.textContent = err.message;
        }
      },
    }, "Redrive");
  const showAll = h("input", { type: "checkbox", id: "show-redriven", checked: all, onchange: (e) => render(root, params, e.target.checked) });
  replace(
    root,
    h("h1", {}, "Dead letters"),
    h("p", {}, showAll, h("label", { for: "show-redriven" }, " Show redriven ones too")),
    status,
    table("Dead-lettered deliveries", ["Id", "Rule → target", "Error", "Attempts", "When", canWrite() ? "Action" : "Redriven"],
      deadLetters.map((d) =>
        h("tr", {},
          h("td", { class: "num" }, d.id),
          h("td", {}, `${d.bus}/${d.ruleName} → ${d.targetId}`, h("div", { class: "muted" }, h("code", {}, d.delivery?.targetArn || ""))),
          h("td", {}, h("strong", {}, d.errorCode), " ", d.errorMessage,
            d.delivery?.event ? h("details", {}, h("summary", {}, "Event"), json(d.delivery.event.envelope)) : null),
          h("td", { class: "num" }, d.attempts),
          h("td", {}, time(d.createdAt)),
          h("td", {}, canWrite() ? redrive(d) : time(d.redrivenAt))))),
  );
}
