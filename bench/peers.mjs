// The peers benchmark in Chromium (scripts/bench-peers.sh runs it): edgeproof through its npm
// package (the wasm CPU path; WebGPU with --webgpu) against wllama (llama.cpp in wasm) with 1
// and 2 threads (its WebGPU path too with --webgpu), on the same model files, the same prompt
// (about 128 tokens) and 128 greedy tokens; rounds interleaved, medians of --runs (default 3).
// The page is cross-origin isolated (COOP/COEP), so wllama can use threads. Prints a Markdown
// table and writes JSON to --out.
//
//   node bench/peers.mjs --models DIR [--runs 3] [--tokens 128] [--webgpu] [--only REGEX] [--out FILE]
// --only keeps the configurations whose name matches (e.g. --only edgeproof).
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../pkg-tests/web/harness.mjs';
import { startDemoServer } from '../www/serve.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const RUNS = Number(arg('--runs', 3));
const TOKENS = Number(arg('--tokens', 128));
const MODELS = ['SmolLM2-135M-Instruct.Q4_1.gguf', 'gemma-3-270m-q4_k_m.gguf'];

// About 128 tokens of plain English for both tokenizers.
const PROMPT = `The history of the printing press begins in the fifteenth century, when Johannes \
Gutenberg combined movable metal type, oil-based ink and a wooden press adapted from those used \
to make wine. Books had been copied by hand for centuries, a slow and expensive craft that kept \
written knowledge in the hands of monasteries, universities and the very rich. Within fifty \
years of the first printed Bible, presses were running in more than two hundred cities across \
Europe, and millions of volumes had been produced. Pamphlets, maps, calendars and scientific \
treatises spread faster than ever before, and the way people learned, argued and`;

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN;
};

const server = await startDemoServer({
  models: arg('--models'),
  site: join(here, 'page'),
  mounts: [['/wllama/', join(here, 'node_modules/@wllama/wllama/esm')]],
  csp: false,
});
const browser = await launchChromium();

/** One measurement in a fresh page (its own memory), or the error it ended with. */
async function measure(fn, params) {
  const page = await browser.newPage();
  try {
    await page.goto(server.url);
    await page.waitForFunction(() => window.ready === true);
    const isolated = await page.evaluate(() => crossOriginIsolated);
    return { isolated, ...(await page.evaluate(({ fn, params }) => window[fn](params), { fn, params })) };
  } catch (e) {
    return { error: String(e.message ?? e).split('\n')[0] };
  } finally {
    await page.close();
  }
}

const only = new RegExp(arg('--only', ''));
const configs = [
  { name: 'edgeproof, wasm CPU, 1 thread', fn: 'runEdgeproof', params: { backend: 'cpu' } },
  { name: 'edgeproof, wasm CPU, 2 threads', fn: 'runEdgeproof', params: { backend: 'cpu', threads: 2 } },
  ...(process.argv.includes('--webgpu') ? [{ name: 'edgeproof, WebGPU', fn: 'runEdgeproof', params: { backend: 'webgpu' } }] : []),
  { name: 'wllama, 1 thread', fn: 'runWllama', params: { threads: 1 } },
  { name: 'wllama, 2 threads', fn: 'runWllama', params: { threads: 2 } },
];
// wllama's WebGPU path needs shader-f16 (SwiftShader has none): measured with --webgpu only.
if (process.argv.includes('--webgpu')) configs.push({ name: 'wllama, WebGPU', fn: 'runWllama', params: { threads: 2, gpu: true } });
configs.splice(0, configs.length, ...configs.filter((c) => only.test(c.name)));

const results = [];
for (const file of MODELS) {
  const model = `/models/${file}`;
  const runs = configs.map(() => []);
  for (let r = 0; r < RUNS; r++) {
    for (const [i, c] of configs.entries()) {
      const m = await measure(c.fn, { ...c.params, model, prompt: PROMPT, maxTokens: TOKENS });
      console.error(`${basename(file)} · ${c.name} · run ${r + 1}: ${JSON.stringify(m)}`);
      runs[i].push(m);
    }
  }
  for (const [i, c] of configs.entries()) {
    const ok = runs[i].filter((m) => !m.error && Number.isFinite(m.decodeTps));
    const pick = (k) => median(ok.map((m) => m[k]));
    results.push({
      model: file,
      config: c.name,
      runs: ok.length,
      error: ok.length ? undefined : runs[i][0]?.error,
      loadMs: pick('loadMs'),
      ttftMs: pick('ttftMs'),
      prefillTps: pick('prefillTps'),
      decodeTps: pick('decodeTps'),
      promptTokens: pick('promptTokens'),
      generated: pick('generated'),
    });
  }
}
await browser.close();
await server.close();

const f = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const lines = [
  '| model | configuration | load s | time to first token s | prefill tok/s | decode tok/s | prompt / generated tokens | edgeproof ÷ best wllama (prefill, decode) |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
];
for (const r of results) {
  let ratio = '';
  if (r.config.startsWith('edgeproof') && !r.error) {
    const peers = results.filter((p) => p.model === r.model && p.config.startsWith('wllama') && !p.error);
    const best = (k) => Math.max(...peers.map((p) => p[k]).filter(Number.isFinite));
    ratio = peers.length ? `${f(r.prefillTps / best('prefillTps'), 2)}×, ${f(r.decodeTps / best('decodeTps'), 2)}×` : 'no peer ran';
  }
  const name = r.model.replace(/\.gguf$/, '');
  lines.push(r.error
    ? `| ${name} | ${r.config} | did not run: ${r.error.replace(/\|/g, '/')} | | | | | |`
    : `| ${name} | ${r.config} | ${f(r.loadMs / 1000, 2)} | ${f(r.ttftMs / 1000, 2)} | ${f(r.prefillTps)} | ${f(r.decodeTps)} | ${r.promptTokens} / ${r.generated} | ${ratio} |`);
}
console.log(lines.join('\n'));
if (arg('--out')) writeFileSync(arg('--out'), JSON.stringify(results, null, 2));
