// The dashboard's service worker: the app shell opens at once, and when the server cannot be
// reached the page still opens and says so. Served at /sw.js (scope "/") with CACHE set to a
// hash of the shell's files, so an upgraded server installs a fresh copy of the shell.
//
// Only the shell is cached -- the page, its CSS, scripts and icons. GraphQL, logins and every
// other request go to the network untouched: no data, token or answer is ever cached.

const CACHE = "__CACHE__";
const SHELL = __SHELL__;
const PAGE_TIMEOUT_MS = 3000;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("smokehouse-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  if (request.mode === "navigate" && url.pathname === "/") {
    event.respondWith(pageFirst(request)); // an upgrade shows at once; offline, the cached page
  } else if (SHELL.includes(url.pathname)) {
    event.respondWith(caches.match(request).then((hit) => hit || fetch(request)));
  }
});

async function pageFirst(request) {
  const cached = caches.match("/");
  try {
    const fresh = await Promise.race([
      fetch(request),
      new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), PAGE_TIMEOUT_MS)),
    ]);
    if (fresh.ok) (await caches.open(CACHE)).put("/", fresh.clone());
    return fresh;
  } catch {
    return (await cached) || Response.error();
  }
}
