// The embeddings peers benchmark in Chromium: edgeproof's npm package (Embedder, exact integer
// numerics, wasm CPU; WebGPU with --webgpu) against transformers.js (npm @huggingface/transformers,
// onnxruntime-web) on the same all-MiniLM-L6-v2 weights — transformers.js runs the ONNX export that
// bench/minilm_onnx.py writes from model.safetensors — and the same 64 sentences (the first 64
// lines of crate/tests/data/minilm/sentences.txt), at batch 1 (one call per sentence) and batch 32
// (two calls of 32), with 1 and 2 threads. Each configuration lives in its own page (own browser
// context), loaded once and warmed up with one pass of each batch size; then --runs rounds
// (default 3), each timing one pass of batch 1 and one of batch 32 for every configuration in
// turn, so that the machine's load falls on all of them alike; medians. The page is cross-origin
// isolated (COOP/COEP), so both can use threads; every file is served from here (transformers.js
// with env.allowRemoteModels = false and env.localModelPath, onnxruntime-web's wasm from /ort/).
// Every run's vectors are checked against the reference (reference.bin: numpy f64, mean pooling
// + L2). Prints a Markdown table and writes JSON to --out.
//
//   python3 bench/minilm_onnx.py                                   # the ONNX export, checked
//   node bench/embed-peers.mjs [--onnx DIR] [--minilm DIR] [--runs 3] [--webgpu] [--only REGEX] [--out FILE]
// --onnx: bench/minilm_onnx.py's output (default ~/.cache/edgeproof/minilm-onnx), --minilm: the
// safetensors folder (default ~/.cache/edgeproof/all-MiniLM-L6-v2, scripts/fetch-models.sh minilm).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../pkg-tests/web/harness.mjs';
import { startDemoServer } from '../www/serve.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, '..');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const cache = process.env.EDGEPROOF_CACHE ?? join(homedir(), '.cache/edgeproof');
const RUNS = Number(arg('--runs', 3));
const ONNX = resolve(arg('--onnx', join(cache, 'minilm-onnx')));
const MINILM = resolve(arg('--minilm', join(cache, 'all-MiniLM-L6-v2')));
const N = 64;
const DIM = 384;

for (const f of [join(ONNX, 'all-MiniLM-L6-v2/onnx/model.onnx'), join(MINILM, 'model.safetensors')]) {
  if (!existsSync(f)) throw new Error(`${f} is missing: scripts/fetch-models.sh minilm, then python3 bench/minilm_onnx.py`);
}

// The same sentences as the reference: lines kept as they are (trailing spaces included).
const data = join(repo, 'crate/tests/data/minilm');
const texts = readFileSync(join(data, 'sentences.txt'), 'utf8').slice(0, -1).split('\n').slice(0, N);
const refBytes = readFileSync(join(data, 'reference.bin'));
const reference = new Float32Array(refBytes.buffer, refBytes.byteOffset, N * DIM);
const tokens = JSON.parse(readFileSync(join(data, 'reference.json'), 'utf8')).sentence_tokens.slice(0, N);

/** The smallest cosine of `vectors` (arrays) against the reference's first rows, in f64. */
function minCosine(vectors) {
  if (vectors?.length !== N) return NaN;
  let min = Infinity;
  for (let i = 0; i < N; i++) {
    let dot = 0, aa = 0, bb = 0;
    for (let j = 0; j < DIM; j++) {
      const a = vectors[i][j];
      const b = reference[i * DIM + j];
      dot += a * b;
      aa += a * a;
      bb += b * b;
    }
    min = Math.min(min, dot / Math.sqrt(aa * bb));
  }
  return min;
}

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

const server = await startDemoServer({
  models: dirname(MINILM), // edgeproof's Embedder reads /models/all-MiniLM-L6-v2/
  site: join(here, 'embed-page'),
  mounts: [
    ['/transformers/', join(here, 'node_modules/@huggingface/transformers/dist')],
    ['/ort/', join(here, 'node_modules/onnxruntime-web/dist')],
    ['/onnx-models/', ONNX],
  ],
  csp: false,
});
const browser = await launchChromium();

const model = `/models/${basename(MINILM)}/`;
const webgpu = process.argv.includes('--webgpu');
const only = new RegExp(arg('--only', ''));
const configs = [
  { name: 'edgeproof, wasm CPU, 1 thread', fn: 'loadEdgeproof', params: { backend: 'cpu', model } },
  { name: 'edgeproof, wasm CPU, 2 threads', fn: 'loadEdgeproof', params: { backend: 'cpu', threads: 2, model } },
  ...(webgpu ? [{ name: 'edgeproof, WebGPU', fn: 'loadEdgeproof', params: { backend: 'webgpu', model } }] : []),
  { name: 'transformers.js, wasm, 1 thread', fn: 'loadTransformers', params: { device: 'wasm', threads: 1 } },
  { name: 'transformers.js, wasm, 2 threads', fn: 'loadTransformers', params: { device: 'wasm', threads: 2 } },
  ...(webgpu ? [{ name: 'transformers.js, WebGPU', fn: 'loadTransformers', params: { device: 'webgpu', threads: 1 } }] : []),
].filter((c) => only.test(c.name));

const firstLine = (e, log) => [String(e.message ?? e).split('\n')[0], ...log].join('; ');

// Every configuration in its own page (its own context, memory and threads), loaded and warmed
// up once; an idle page's threads sleep.
for (const c of configs) {
  const context = await browser.newContext();
  c.page = await context.newPage();
  c.log = [];
  c.page.on('pageerror', (e) => c.log.push(String(e.message ?? e)));
  c.page.on('crash', () => c.log.push('the page crashed'));
  try {
    await c.page.goto(server.url);
    await c.page.waitForFunction(() => window.ready === true);
    const isolated = await c.page.evaluate(() => crossOriginIsolated);
    c.info = { isolated, ...(await c.page.evaluate(({ fn, params }) => window[fn](params), { fn: c.fn, params: { ...c.params, texts } })) };
  } catch (e) {
    c.error = firstLine(e, c.log);
  }
  console.error(`${c.name} · loaded: ${JSON.stringify(c.info ?? { error: c.error })}`);
}

// The timed passes, interleaved: round by round, each configuration's batch 1 then batch 32.
for (const c of configs) c.runs = [];
for (let r = 0; r < RUNS; r++) {
  for (const c of configs.filter((c) => !c.error)) {
    try {
      const m = {};
      for (const size of [1, 32]) {
        const { sps, vectors } = await c.page.evaluate((size) => window.timed(size), size);
        m[`b${size}Sps`] = sps;
        m[`cosB${size}`] = minCosine(vectors);
      }
      c.runs.push(m);
      console.error(`${c.name} · run ${r + 1}: ${JSON.stringify(m)}`);
    } catch (e) {
      c.error = firstLine(e, c.log);
      console.error(`${c.name} · run ${r + 1}: ${c.error}`);
    }
  }
}
for (const c of configs) await c.page.evaluate(() => window.release()).catch(() => {});
await browser.close();
await server.close();

const range = (xs) => [Math.min(...xs), Math.max(...xs)];
const results = configs.map((c) => {
  const ok = c.runs.filter((m) => Number.isFinite(m.b1Sps) && Number.isFinite(m.b32Sps));
  const pick = (k) => median(ok.map((m) => m[k]));
  return {
    config: c.name,
    runs: ok.length,
    error: ok.length ? undefined : c.error ?? 'no run finished',
    ...c.info,
    b1Sps: pick('b1Sps'),
    b32Sps: pick('b32Sps'),
    b1Range: range(ok.map((m) => m.b1Sps)),
    b32Range: range(ok.map((m) => m.b32Sps)),
    // The worst over every run and both batch sizes.
    minCosine: Math.min(...ok.flatMap((m) => [m.cosB1, m.cosB32])),
    all: c.runs,
  };
});

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
/** A cosine: `1 − 1.7e-12` when it is that close to 1. */
const fc = (c) => (!Number.isFinite(c) ? '–' : 1 - c < 1e-5 ? `1 − ${(1 - c).toExponential(1)}` : c.toFixed(6));
const peers = results.filter((p) => p.config.startsWith('transformers.js') && !p.error);
/** transformers.js's figure `k` for `r`: WebGPU against WebGPU, else wasm on as many threads; else its best. */
const peerOf = (r, k) =>
  (r.backend === 'webgpu' ? peers.find((p) => p.device === 'webgpu') : peers.find((p) => p.device === 'wasm' && p.threads === r.threads))?.[k] ??
  Math.max(...peers.map((p) => p[k]).filter(Number.isFinite));
const lines = [
  `${N} sentences (${tokens.reduce((a, b) => a + b, 0)} tokens, ${Math.min(...tokens)} to ${Math.max(...tokens)} each); sentences/s: median of ${RUNS} interleaved runs (slowest–fastest).`,
  '',
  '| configuration | threads used | load s | batch 1 sentences/s | batch 32 sentences/s | min cosine vs reference | ÷ transformers.js, same backend and threads (batch 1, batch 32) |',
  '| --- | ---: | ---: | ---: | ---: | ---: | --- |',
];
for (const r of results) {
  let ratio = '';
  if (r.config.startsWith('edgeproof') && !r.error) {
    ratio = peers.length ? `${f(r.b1Sps / peerOf(r, 'b1Sps'), 2)}×, ${f(r.b32Sps / peerOf(r, 'b32Sps'), 2)}×` : 'no peer ran';
  }
  lines.push(r.error
    ? `| ${r.config} | did not run: ${r.error.replace(/\|/g, '/').slice(0, 300)} | | | | | |`
    : `| ${r.config} | ${r.threads}${r.isolated ? '' : ' (page not isolated)'} | ${f(r.loadMs / 1000, 2)} | ${f(r.b1Sps)} (${r.b1Range.map((x) => f(x)).join('–')}) | ${f(r.b32Sps)} (${r.b32Range.map((x) => f(x)).join('–')}) | ${fc(r.minCosine)} | ${ratio} |`);
}
console.log(lines.join('\n'));
if (arg('--out')) writeFileSync(arg('--out'), JSON.stringify({ texts: N, tokens, results }, null, 2));
