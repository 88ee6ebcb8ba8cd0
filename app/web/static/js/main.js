// Hash routing, login and the frame around the views. Each view is a module with
// `render(root, params)` that returns a cleanup function (unsubscribe, stop timers).

import { AuthError, socket } from "./gql.js";
import { h, replace, errorBox } from "./dom.js";
import { getKey, getRole, login, logout } from "./session.js";

const ROUTES = [
  [/^#\/grill(?:\/cook\/(\d+))?$/, () => import("./views/grill.js"), (m) => ({ cookId: m[1] && Number(m[1]) })],
  [/^#\/rules$/, () => import("./views/rules.js"), () => ({})],
  [/^#\/dead-letters$/, () => import("./views/deadletters.js"), () => ({})],
  [/^#\/machines$/, () => import("./views/machines.js"), () => ({})],
  [/^#\/machines\/([^/]+)(?:\/(.+))?$/, () => import("./views/machine.js"), (m) => ({ name: decodeURIComponent(m[1]), execution: m[2] && decodeURIComponent(m[2]) })],
  [/^#\/queues$/, () => import("./views/queues.js"), () => ({})],
  [/^#\/jobs$/, () => import("./views/jobs.js"), () => ({})],
];

const main = document.getElementById("main");
let cleanup = null;

function showLogin(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "current-password", required: true });
  const status = h("p", { role: "alert", class: "error" }, message || "");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in"),
    h("p", {}, "Use an API key from SMOKEHOUSE_ACCESS_KEYS (or the one `smokehouse run` printed)."),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Log in"),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await login(input.value.trim());
      route();
    } catch (err) {
      status.textContent = err.message;
    }
  });
  replace(main, form);
  input.focus();
}

function frame() {
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  const role = getRole();
  document.getElementById("role").textContent = role === "admin" ? "admin" : "viewer (read-only)";
  document.body.classList.toggle("read-only", role !== "admin");
  for (const link of document.querySelectorAll("#nav a")) {
    const here = location.hash.startsWith(link.getAttribute("href"));
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  if (!getKey()) return showLogin();
  if (!location.hash || location.hash === "#" || location.hash === "#/") {
    location.replace("#/grill");
    return;
  }
  frame();
  const found = ROUTES.map(([re, load, params]) => [location.hash.match(re), load, params]).find(([m]) => m);
  if (!found) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/grill" }, "Back to the grill")));
    return;
  }
  const [match, load, params] = found;
  const token = {};
  route.current = token;
  try {
    const view = await load();
    if (route.current !== token) return;
    const root = h("div", { class: "view" });
    replace(main, root);
    cleanup = (await view.render(root, params(match))) || null;
  } catch (err) {
    if (err instanceof AuthError) {
      logout();
      return showLogin(err.message);
    }
    replace(main, errorBox(err));
  }
}

socket.onState((state) => {
  const live = document.getElementById("live");
  live.textContent = { live: "● live", connecting: "connecting…", reconnecting: "reconnecting…", unauthorized: "key refused", idle: "" }[state] ?? state;
  live.dataset.state = state;
});

document.getElementById("logout").addEventListener("click", () => {
  socket.close(true);
  logout();
  location.hash = "#/grill";
  route();
});
window.addEventListener("hashchange", route);
window.smokehouse = { socket }; // for tests and the curious: smokehouse.socket.close() drops the link
route();

// Installable, and opens without the server: the service worker keeps the app shell (browsers
// allow one on https:// and on localhost only; on plain http over a LAN the page works as before).
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("/sw.js").catch(() => {});
}
