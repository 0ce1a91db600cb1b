// One measurement per call, driven by bench/peers.mjs through page.evaluate: load a model,
// run the prompt's prefill and the greedy decode, and report load time, time to first token,
// and prefill / decode tokens per second, as each engine counts them.
import { Engine } from '/pkg/index.js';
import { WorkerEngine } from '/pkg/worker.js';
import { Wllama } from '/wllama/index.js';

// `threads`: in a WorkerEngine (the threaded build with more than one), else on this page.
window.runEdgeproof = async ({ model, backend, threads, prompt, maxTokens }) => {
  const t0 = performance.now();
  const engine = threads ? await WorkerEngine.load(null, model, { backend, threads }) : await Engine.load(model, { backend });
  const loadMs = performance.now() - t0;
  const t1 = performance.now();
  let first = 0;
  const gen = engine.generate(prompt, { maxTokens, receipt: false });
  for await (const _ of gen) first ||= performance.now();
  const { timings } = await gen.result;
  const info = await engine.info();
  engine.free();
  return {
    backend: info.backend,
    threads: info.threads,
    adapter: info.adapter,
    loadMs,
    ttftMs: first - t1,
    promptTokens: timings.promptTokens,
    generated: timings.generatedTokens,
    prefillTps: timings.prefillTokensPerS,
    decodeTps: timings.decodeTokensPerS,
  };
};

window.runWllama = async ({ model, threads, gpu, prompt, maxTokens }) => {
  const wllama = new Wllama({ default: '/wllama/wasm/wllama.wasm' }, { suppressNativeLog: true });
  const t0 = performance.now();
  await wllama.loadModelFromUrl(new URL(model, location.href).href, {
    n_threads: threads,
    n_ctx: 1024,
    n_batch: 512,
    n_gpu_layers: gpu ? 999 : 0,
  });
  const loadMs = performance.now() - t0;
  const t1 = performance.now();
  let first = 0;
  let timings;
  await wllama.createCompletion({
    prompt,
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
    stream: true,
    onData: (chunk) => {
      first ||= performance.now();
      if (chunk.timings) timings = chunk.timings;
    },
  });
  await wllama.exit();
  return {
    threads,
    loadMs,
    ttftMs: first - t1,
    promptTokens: timings?.prompt_n,
    generated: timings?.predicted_n,
    prefillTps: timings?.prompt_per_second,
    decodeTps: timings?.predicted_per_second,
  };
};

window.ready = true;
