// The threaded build's pool (crate/src/web/threads.rs): `n − 1` workers instantiate the module
// on its shared memory and wait; the calling thread, a worker itself, is the pool's first thread.

/** Starts the pool of `n` threads for `glue` (the threaded build's wasm-bindgen glue, initialized). */
export async function startThreads(glue, n) {
  const [module, memory] = glue.threadModule();
  await Promise.all(
    Array.from({ length: n - 1 }, () => {
      const worker = new Worker(new URL('./edgeproof-thread.js', import.meta.url), { type: 'module' });
      return new Promise((resolve, reject) => {
        worker.addEventListener('message', resolve, { once: true });
        worker.addEventListener('error', (e) => reject(new Error(`a thread's worker failed: ${e.message ?? 'error event'}`)), { once: true });
        worker.postMessage({ module, memory });
      });
    }),
  );
  glue.buildThreadPool(n);
}
