// One thread of the threaded build's pool (started by crate/src/web/threads.js): the module on
// the shared memory, then rayon's worker loop, which blocks this worker for good.
self.addEventListener(
  'message',
  async ({ data: { module, memory } }) => {
    const glue = await import('./edgeproof_wasm.js');
    await glue.default({ module_or_path: module, memory });
    self.postMessage('ready');
    glue.runThread();
  },
  { once: true },
);
