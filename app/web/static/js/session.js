// The API key lives in sessionStorage: it survives reloads, not the closing of the tab.
// Display preferences (units) live in localStorage.

const KEY = "smokehouse.apiKey";
const ROLE = "smokehouse.role";
const UNITS = "smokehouse.units";

export const getKey = () => sessionStorage.getItem(KEY);
export const getRole = () => sessionStorage.getItem(ROLE);
export const canWrite = () => getRole() === "admin";

export async function login(key) {
  const response = await fetch("/ui/session", { headers: { "x-api-key": key } });
  if (response.status === 401) throw new Error("That API key is not valid.");
  if (!response.ok) throw new Error(`The server answered HTTP ${response.status}.`);
  const who = await response.json();
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(ROLE, who.role);
  return who;
}

export function logout() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ROLE);
}

export const getUnits = () => (localStorage.getItem(UNITS) === "F" ? "F" : "C");
export const setUnits = (units) => localStorage.setItem(UNITS, units === "F" ? "F" : "C");
