// The demo's service worker: the page, its script and style, the package and the model lists
// are kept as they were last fetched, so that the page reloads without a network (the models
// themselves are in the Origin Private File System, kept by the package's cache). Network
// first: a reload online always gets the newest files.
const CACHE = 'edgeproof-demo-v1';

// What the first visit loaded before this worker controlled the page: the page's files, the
// package's modules (app.js imports index.js and worker.js, which import the rest) and the
// wasm module, in both builds (the worker loads mt/, the threaded one, where the page is
// cross-origin isolated). A file the package no longer has is skipped, not fatal.
const MODULES = ['index.js', 'worker.js', 'core.js', 'cache.js', 'embed.js', 'keys.js', 'edgeproof-worker.js', 'edgeproof-thread.js',
  'edgeproof_wasm.js', 'edgeproof_wasm_bg.wasm'];
// The model lists: the chat's models and the search panel's encoders.
const LISTS = ['/models/index.json', '/models/encoders.json'];
const SHELL = [
  './', 'index.html', 'app.js', 'style.css', ...LISTS.map((p) => p.slice(1)),
  ...MODULES.map((f) => `pkg/${f}`),
  ...MODULES.map((f) => `pkg/mt/${f}`),
];

self.addEventListener('install', (e) => {
  e.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => Promise.all(SHELL.map((path) => cache.add(path).catch(() => {}))))
      .then(() => self.skipWaiting()),
  );
});
self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (e) => {
  const url = new URL(e.request.url);
  // Model files are large and live in OPFS; other origins are never fetched (the CSP says so).
  const keep = e.request.method === 'GET' && url.origin === location.origin
    && (!url.pathname.startsWith('/models/') || LISTS.includes(url.pathname));
  if (!keep) return;
  e.respondWith(
    fetch(e.request)
      .then(async (response) => {
        if (response.ok) await (await caches.open(CACHE)).put(e.request, response.clone());
        return response;
      })
      .catch(async () => (await caches.match(e.request)) ?? Response.error()),
  );
});
