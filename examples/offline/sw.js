// The page's files, for loading it offline: each GET goes to the network first and to the
// cache when the network fails; every answer is cached for the next time. Messages (POST)
// are not touched: they fail while offline, and the page keeps them queued.
const CACHE = "orchestrator-offline-example";

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll([
        "./",
        "index.html",
        "pkg/orchestrator_offline_example.js",
        "pkg/orchestrator_offline_example_bg.wasm",
      ]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  if (event.request.method !== "GET") {
    return;
  }
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        return response;
      })
      .catch(() => caches.match(event.request).then((hit) => hit || Response.error())),
  );
});
