// The login exchanges the access key for a session token (POST /auth/session); only the token
// is kept, in sessionStorage (it survives reloads, not the closing of the tab), and only the token
// is sent afterwards. It expires (SMOKEHOUSE_SESSION_TTL_SECONDS) and dies when the key rotates;
// a 401 then shows the login again. The key itself is never stored.
// Display preferences (units) live in localStorage.

const TOKEN = "smokehouse.session";
const ROLE = "smokehouse.role";
const UNITS = "smokehouse.units";

export const getKey = () => sessionStorage.getItem(TOKEN);
export const getRole = () => sessionStorage.getItem(ROLE);
export const canWrite = () => getRole() === "admin";
export const authHeaders = (token = getKey()) => (token ? { authorization: `Bearer ${token}` } : {});

export async function login(key) {
  const { request } = await import("./gql.js");
  const response = await request("/auth/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ key }),
  });
  if (response.status === 401 || response.status === 422) {
    throw new Error("That API key is not valid.");
  }
  if (!response.ok) throw new Error(`The server answered HTTP ${response.status}.`);
  const who = await response.json();
  sessionStorage.setItem(TOKEN, who.token);
  sessionStorage.setItem(ROLE, who.role);
  return who;
}

export function logout() {
  sessionStorage.removeItem(TOKEN);
  sessionStorage.removeItem(ROLE);
}

export const getUnits = () => (localStorage.getItem(UNITS) === "F" ? "F" : "C");
export const setUnits = (units) => localStorage.setItem(UNITS, units === "F" ? "F" : "C");
