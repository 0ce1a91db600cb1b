// Driven by bench/embed-peers.mjs through page.evaluate, one configuration per page: `load*`
// loads the encoder and runs one warm-up pass of each batch size; then `timed(size)` runs the
// sentences once in batches of `size` (1: one call per sentence; 32: calls of 32), timed with
// performance.now(), and returns sentences per second and the vectors (checked by the driver
// against the reference). The driver interleaves the configurations' timed passes.

let embed = null; // (texts) => Promise<vectors>
let texts = [];
let free = () => {};

/** The sentences in batches of `size`: the vectors, in order, and the seconds. */
async function pass(size) {
  const vectors = [];
  const t0 = performance.now();
  for (let i = 0; i < texts.length; i += size) vectors.push(...(await embed(texts.slice(i, i + size))));
  return { seconds: (performance.now() - t0) / 1000, vectors };
}

async function warmUp() {
  await pass(32);
  await pass(1);
}

window.timed = async (size) => {
  const { seconds, vectors } = await pass(size);
  return { sps: texts.length / seconds, vectors: vectors.map((v) => Array.from(v)) };
};

window.release = () => free();

// transformers.js (onnxruntime-web) on the ONNX export of the same weights (bench/minilm_onnx.py):
// device 'wasm' (threads: onnxruntime-web's numThreads) or 'webgpu'.
window.loadTransformers = async ({ texts: t, device, threads }) => {
  texts = t;
  const { pipeline, env } = await import('/transformers/transformers.web.js');
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = '/onnx-models/'; // a path: transformers.js checks local files only for non-URL paths
  env.useBrowserCache = false;
  env.backends.onnx.wasm.wasmPaths = `${location.origin}/ort/`;
  env.backends.onnx.wasm.numThreads = threads;
  const t0 = performance.now();
  const extractor = await pipeline('feature-extraction', 'all-MiniLM-L6-v2', { device, dtype: 'fp32' });
  const loadMs = performance.now() - t0;
  embed = async (batch) => (await extractor(batch, { pooling: 'mean', normalize: true })).tolist();
  free = () => extractor.dispose();
  await warmUp();
  // onnxruntime-web's value once initialized (it lowers it to 1 on a page that is not isolated).
  const used = env.backends.onnx.wasm.numThreads;
  return { loadMs, threads: used, device, version: env.version, ort: env.backends.onnx.versions?.web };
};

// edgeproof's npm package (pkg/): Embedder on this page (1 thread), WorkerEmbedder with `threads`.
window.loadEdgeproof = async ({ texts: t, backend, threads, model }) => {
  texts = t;
  const pkg = await import('/pkg/index.js');
  // HOOK: the Embedder is new in the package; an older pkg/ lacks it.
  if (!pkg.Embedder) throw new Error('pkg/index.js has no Embedder: rebuild it with scripts/build-pkg.sh');
  const t0 = performance.now();
  let embedder;
  if (threads) {
    const { WorkerEmbedder } = await import('/pkg/worker.js');
    embedder = await WorkerEmbedder.load(null, model, { backend, threads });
  } else {
    embedder = await pkg.Embedder.load(model, { backend });
  }
  const loadMs = performance.now() - t0;
  embed = async (batch) => (await embedder.embed(batch, { receipt: false })).vectors;
  free = () => embedder.free();
  await warmUp();
  const info = await embedder.info();
  return { loadMs, threads: info.threads ?? threads ?? 1, backend: info.backend };
};

window.ready = true;
