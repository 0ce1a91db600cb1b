// WorkerEngine: the same receipts from a Web Worker, tokens and progress as messages, and
// pending calls rejected with WORKER_GONE when the worker goes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MODELS, TIMEOUT, setup } from './harness.mjs';

let h;
before(async () => {
  h = await setup();
});
after(() => h?.close());

const SEEDED = { maxTokens: 8, temperature: 0.8, seed: 7 };

test('a seeded generation through WorkerEngine gives the receipt the page gives', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, opts }) => {
      const { Engine } = await import('/pkg/index.js');
      const { WorkerEngine } = await import('/pkg/worker.js');
      const { collect } = await import('/helpers.js');
      const local = await Engine.load(model, { backend: 'cpu' });
      const here = await local.generate('Once upon a time', opts).result;
      local.free();

      const stages = new Set();
      // The package's own worker (edgeproof-worker.js); a Response is read here, its chunks transferred.
      const engine = await WorkerEngine.load(undefined, await fetch(model), {
        backend: 'cpu',
        onProgress: (p) => stages.add(p.stage),
      });
      const run = await collect(engine.generate('Once upon a time', opts));
      let busy;
      const running = engine.generate('Hello', { maxTokens: 2 });
      try {
        engine.generate('Hello again');
      } catch (e) {
        busy = e.code;
      }
      await running.result;
      const out = {
        here,
        run,
        busy,
        stages: [...stages],
        info: await engine.info(),
        verified: await engine.verify(here.receipt),
        ids: [...(await engine.tokenize('Hello'))],
      };
      out.back = await engine.detokenize(out.ids);
      engine.free();
      out.afterFree = await engine.info().then(() => 'no error', (e) => e.code);
      return out;
    }, { model: MODELS.tiny, opts: SEEDED });
    assert.equal(r.run.result.receipt.final, r.here.receipt.final);
    assert.deepEqual(r.run.tokens.map((t) => t.token), r.here.tokens);
    assert.equal(r.busy, 'BUSY');
    assert.ok(r.stages.includes('download') && r.stages.includes('hash'), `${r.stages}`);
    assert.equal(r.info.backend, 'cpu');
    assert.equal(r.verified.ok, true, r.verified.report);
    assert.equal(r.back, 'Hello');
    assert.equal(r.afterFree, 'FREED');
  }));

// The pages here are cross-origin isolated: WorkerEngine runs the threaded build (pkg/mt/).
test('on an isolated page WorkerEngine runs on several threads with the receipts of one thread', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, tiny, opts }) => {
      const { WorkerEngine } = await import('/pkg/worker.js');
      const run = async (threads, o) => {
        const engine = await WorkerEngine.load(undefined, model, { backend: 'cpu', threads });
        const out = { info: await engine.info(), result: await engine.generate('Once upon a time', o).result };
        out.verified = await engine.verify(out.result.receipt);
        engine.free();
        return out;
      };
      const out = {};
      for (const [name, o] of Object.entries({ greedy: { maxTokens: 12 }, seeded: opts })) {
        out[name] = { one: await run(1, o), three: await run(3, o) };
      }
      out.isolated = crossOriginIsolated;
      // WebGPU from the threaded build's worker (wgpu over shared memory).
      const gpu = await WorkerEngine.load(undefined, tiny, { backend: 'webgpu', threads: 2 });
      const cpu = await WorkerEngine.load(undefined, tiny, { backend: 'cpu', threads: 1 });
      out.gpu = { info: await gpu.info(), final: (await gpu.generate('Once upon a time', opts).result).receipt.final };
      out.cpu = (await cpu.generate('Once upon a time', opts).result).receipt.final;
      gpu.free();
      cpu.free();
      return out;
    }, { model: MODELS.smollm2, tiny: MODELS.tiny, opts: SEEDED });
    assert.equal(r.isolated, true);
    for (const [name, { one, three }] of Object.entries({ greedy: r.greedy, seeded: r.seeded })) {
      assert.equal(one.info.threads, 1, name);
      assert.equal(three.info.threads, 3, name);
      assert.equal(three.result.receipt.final, one.result.receipt.final, `${name}: threads change no bit`);
      assert.deepEqual(three.result.receipt.tokens, one.result.receipt.tokens, name);
      assert.equal(three.verified.ok, true, three.verified.report);
    }
    assert.deepEqual([r.gpu.info.backend, r.gpu.info.threads], ['webgpu', 2]);
    assert.equal(r.gpu.final, r.cpu, 'WebGPU in the threaded worker gives the CPU receipt');
  }));

test('a worker of the page own that serves the threaded build (edgeproof/mt/worker) runs on threads', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { WorkerEngine } = await import('/pkg/worker.js');
      const engine = await WorkerEngine.load('/mt-worker.js', model, { backend: 'cpu', threads: 2 });
      const out = { info: await engine.info(), result: await engine.generate('Once upon a time', { maxTokens: 4 }).result };
      engine.free();
      return out;
    }, MODELS.tiny);
    assert.equal(r.info.threads, 2);
    assert.equal(r.result.receipt.tokens.length, 4);
  }));

test('on a page that is not cross-origin isolated WorkerEngine runs on one thread', { timeout: TIMEOUT }, (t) =>
  h.page(
    t,
    async (page) => {
      const r = await page.evaluate(async (model) => {
        const { WorkerEngine } = await import('/pkg/worker.js');
        const engine = await WorkerEngine.load(undefined, model, { backend: 'cpu', threads: 4 });
        const out = { isolated: crossOriginIsolated, info: await engine.info() };
        out.result = await engine.generate('Once upon a time', { maxTokens: 4 }).result;
        engine.free();
        return out;
      }, MODELS.tiny);
      assert.equal(r.isolated, false);
      assert.equal(r.info.threads, 1);
      assert.equal(r.result.generatedTokens ?? r.result.receipt.tokens.length, 4);
    },
    { path: '/plain/' },
  ));

test('an AbortSignal crosses to the worker: the generation finishes aborted', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { WorkerEngine } = await import('/pkg/worker.js');
      const { collect } = await import('/helpers.js');
      const engine = await WorkerEngine.load(undefined, model, { backend: 'cpu' });
      const controller = new AbortController();
      const run = await collect(engine.generate('Once upon a time', { maxTokens: 200, signal: controller.signal }), {
        onToken: (_, n) => n === 2 && controller.abort(),
      });
      const verified = await engine.verify(run.result.receipt);
      engine.free();
      return { finish: run.result.finish, n: run.tokens.length, verified };
    }, MODELS.tiny);
    assert.equal(r.finish, 'aborted');
    assert.ok(r.n >= 2 && r.n < 200, `${r.n} tokens`);
    assert.equal(r.verified.ok, true, r.verified.report);
  }));

test('freeing (terminating) the worker mid-generation rejects pending calls with WORKER_GONE', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { WorkerEngine } = await import('/pkg/worker.js');
      const engine = await WorkerEngine.load(undefined, model, { backend: 'cpu' });
      const generation = engine.generate('Once upon a time', { maxTokens: 200 });
      const first = await generation.next();
      const verifying = engine.verify('{}');
      engine.free();
      const code = (p) => p.then(() => 'no error', (e) => e.code);
      return {
        first: first.done,
        next: await code(generation.next()),
        result: await code(generation.result),
        verify: await code(verifying),
        later: await code(engine.tokenize('x')),
      };
    }, MODELS.tiny);
    assert.equal(r.first, false);
    assert.equal(r.next, 'WORKER_GONE');
    assert.equal(r.result, 'WORKER_GONE');
    assert.equal(r.verify, 'WORKER_GONE');
    assert.equal(r.later, 'FREED');
  }));

test('a worker that dies (an error event) rejects pending calls with WORKER_GONE', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { WorkerEngine } = await import('/pkg/worker.js');
      const worker = new Worker('/crash-worker.js', { type: 'module' });
      const engine = await WorkerEngine.load(worker, new Blob([await (await fetch(model)).arrayBuffer()]), { backend: 'cpu' });
      const generation = engine.generate('Once upon a time', { maxTokens: 200 });
      await generation.next();
      worker.postMessage('crash');
      return generation.result.then(() => 'no error', (e) => `${e.code}: ${e.message}`);
    }, MODELS.tiny);
    assert.match(r, /^WORKER_GONE: /);
  }));
