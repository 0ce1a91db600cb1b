// A thread of the threaded build's pool (crate/src/web/threads.rs): a worker running
// edgeproof-thread.js on this module's shared memory. wasm-bindgen copies this file to
// snippets/edgeproof-<hash>/src/web/, four folders below the glue and edgeproof-thread.js.
export function spawnThread(module, memory) {
  const worker = new Worker(new URL('../../../../edgeproof-thread.js', import.meta.url), { type: 'module' });
  return new Promise((resolve, reject) => {
    worker.addEventListener('message', () => resolve(), { once: true });
    worker.addEventListener('error', (e) => reject(new Error(`a thread's worker failed: ${e.message ?? 'error event'}`)), { once: true });
    worker.postMessage({ module, memory });
  });
}
