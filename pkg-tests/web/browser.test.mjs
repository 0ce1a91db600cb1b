// The package in headless Chromium: loading with progress, streaming, receipts and their
// verification, both backends, abort, BUSY, chat KV reuse, coded errors, the OPFS cache.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { MODELS, TIMEOUT, setup } from './harness.mjs';

let h;
before(async () => {
  h = await setup();
});
after(() => h?.close());

const PROMPT = 'Once upon a time';

test('a URL loads with progress; a greedy generation streams, and its receipt verifies', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const { collect } = await import('/helpers.js');
      const progress = [];
      const engine = await Engine.load(model, { backend: 'cpu', onProgress: (p) => progress.push(p) });
      const info = engine.info();
      const run = await collect(engine.generate(prompt, { maxTokens: 16 }));
      const verified = await engine.verify(run.result.receipt);
      // A result awaited without iterating drains the steps itself.
      const drained = await engine.generate(prompt, { maxTokens: 4 }).result;
      const ids = engine.tokenize(prompt);
      return { progress, info, run, verified, drained, ids: [...ids], back: engine.detokenize(ids) };
    }, { model: MODELS.tiny, prompt: PROMPT });

    const stages = new Set(r.progress.map((p) => p.stage));
    for (const stage of ['download', 'hash', 'upload']) assert.ok(stages.has(stage), `no '${stage}' progress: ${[...stages]}`);
    assert.ok(!stages.has('compile'), "'compile' is WebGPU's stage, not the CPU's");
    const download = r.progress.filter((p) => p.stage === 'download');
    for (const p of r.progress) assert.ok(p.total === undefined || p.loaded <= p.total, `loaded > total: ${JSON.stringify(p)}`);
    assert.equal(download.at(-1).loaded, download.at(-1).total, 'the download ends at its total');
    assert.equal(download.at(-1).total, r.info.bytes);

    assert.equal(r.info.backend, 'cpu');
    assert.match(r.info.sha256, /^[0-9a-f]{64}$/);
    assert.equal(r.info.contextLength, 256);
    assert.match(r.info.backendReason, /cpu/i);

    const { tokens, beforeResult, result } = r.run;
    assert.equal(result.finish, 'length');
    assert.equal(tokens.length, 16);
    assert.ok(beforeResult >= 2, `only ${beforeResult} tokens arrived before result resolved`);
    assert.deepEqual(result.tokens, tokens.map((t) => t.token));
    assert.equal(result.text, tokens.map((t) => t.text).join(''));
    assert.equal(result.receipt.finish, result.finish);
    assert.equal(result.timings.generatedTokens, 16);
    assert.equal(r.verified.ok, true, r.verified.report);
    assert.equal(r.verified.stepsMatched, 16);

    assert.equal(r.drained.tokens.length, 4);
    assert.deepEqual(r.drained.tokens, result.tokens.slice(0, 4), 'greedy: the same first tokens');
    assert.equal(r.back, PROMPT);
  }));

test("supports() sees SwiftShader as a CPU adapter, and 'auto' picks the wasm CPU path", { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const supports = await Engine.supports();
      const engine = await Engine.load(model);
      const info = engine.info();
      engine.free();
      return { supports, info };
    }, MODELS.tiny);
    assert.equal(r.supports.webgpu, true);
    assert.equal(r.supports.adapter.isCpu, true, JSON.stringify(r.supports.adapter));
    assert.equal(r.supports.crossOriginIsolated, true, 'the test server sends COOP/COEP');
    assert.ok(r.supports.limits.maxStorageBufferBindingSize > 0);
    assert.equal(r.supports.features.subgroups, true);
    assert.equal(r.info.backend, 'cpu');
    assert.match(r.info.backendReason, /swiftshader/i);
  }));

test('the CPU and WebGPU backends give the same receipts, greedy and seeded', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const out = {};
      for (const backend of ['cpu', 'webgpu']) {
        const stages = new Set();
        const engine = await Engine.load(model, { backend, onProgress: (p) => stages.add(p.stage) });
        const greedy = await engine.generate(prompt, { maxTokens: 8 }).result;
        const seeded = await engine.generate(prompt, { maxTokens: 8, temperature: 0.8, seed: 7 }).result;
        out[backend] = { info: engine.info(), stages: [...stages], greedy, seeded };
        if (backend === 'webgpu') out.crossCheck = await engine.verify(out.cpu.seeded.receipt);
        engine.free();
      }
      return out;
    }, { model: MODELS.tiny, prompt: PROMPT });
    assert.equal(r.webgpu.info.backend, 'webgpu');
    assert.ok(r.webgpu.stages.includes('compile'), `stages: ${r.webgpu.stages}`);
    assert.equal(r.webgpu.greedy.receipt.final, r.cpu.greedy.receipt.final);
    assert.equal(r.webgpu.seeded.receipt.final, r.cpu.seeded.receipt.final);
    assert.notEqual(r.cpu.seeded.receipt.final, r.cpu.greedy.receipt.final);
    assert.equal(r.crossCheck.ok, true, r.crossCheck.report);
  }));

test('aborting a generation after 3 tokens finishes it with a receipt that verifies', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const { collect } = await import('/helpers.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const controller = new AbortController();
      const run = await collect(engine.generate(prompt, { maxTokens: 64, signal: controller.signal }), {
        onToken: (_, n) => n === 3 && controller.abort(),
      });
      const verified = await engine.verify(run.result.receipt);
      // Breaking out of the loop aborts too.
      const broken = engine.generate(prompt, { maxTokens: 64 });
      for await (const _ of broken) break;
      const afterBreak = await broken.result;
      const next = await engine.generate('The capital of France is', { maxTokens: 4 }).result;
      return { run, verified, afterBreak, next };
    }, { model: MODELS.tiny, prompt: PROMPT });
    assert.equal(r.run.result.finish, 'aborted');
    assert.ok(r.run.tokens.length >= 3 && r.run.tokens.length < 64, `${r.run.tokens.length} tokens`);
    assert.deepEqual(r.run.result.tokens, r.run.tokens.map((t) => t.token));
    assert.equal(r.run.result.receipt.finish, 'aborted');
    assert.equal(r.verified.ok, true, r.verified.report);
    assert.equal(r.afterBreak.finish, 'aborted');
    assert.equal(r.next.tokens.length, 4);
    assert.notEqual(r.next.text, '');
  }));

test('aborting a load rejects with ABORTED, during the download and during the load in wasm', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      const at = async (stage) => {
        const controller = new AbortController();
        const onProgress = (p) => p.stage === stage && controller.abort();
        return codeOf(() => Engine.load(model, { backend: 'cpu', signal: controller.signal, onProgress }));
      };
      return { download: await at('download'), hash: await at('hash') };
    }, MODELS.tiny);
    assert.equal(r.download.code, 'ABORTED', r.download.message);
    assert.equal(r.hash.code, 'ABORTED', r.hash.message);
  }));

test('a download cut midway fails with NETWORK and leaves nothing in the cache', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf, cacheFolder } = await import('/helpers.js');
      const cut = await codeOf(() => Engine.load(model.replace('/models/', '/cut/'), { backend: 'cpu', cache: true }));
      const listed = await Engine.cache.list();
      const folder = await cacheFolder();
      const missing = await codeOf(() => Engine.load('/models/no-such.gguf', { backend: 'cpu' }));
      const engine = await Engine.load(model, { backend: 'cpu', cache: true });
      return { cut, listed, folder, missing, sha256: engine.info().sha256, afterwards: await Engine.cache.list() };
    }, MODELS.tiny);
    assert.ok(['NETWORK', 'TRUNCATED'].includes(r.cut.code), `${r.cut.code}: ${r.cut.message}`);
    assert.deepEqual(r.listed, []);
    assert.deepEqual(r.folder.filter((n) => n.startsWith('tmp-')), [], `OPFS: ${r.folder}`);
    assert.equal(r.missing.code, 'NETWORK');
    assert.match(r.missing.message, /404/);
    assert.deepEqual(r.afterwards.map((e) => e.key), [r.sha256]);
  }));

test('a second generate while one runs throws BUSY synchronously', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const { receipt } = await engine.generate('Hi', { maxTokens: 2 }).result;
      const first = engine.generate('Hello', { maxTokens: 4 });
      let busy;
      try {
        engine.generate('Hello again', { maxTokens: 4 });
      } catch (e) {
        busy = e.code;
      }
      const verifyBusy = await engine.verify(receipt).then(() => 'no error', (e) => e.code);
      const result = await first.result;
      const second = await engine.generate('Hello again', { maxTokens: 4 }).result;
      return { busy, verifyBusy, first: result.tokens.length, second: second.tokens.length };
    }, MODELS.tiny);
    assert.equal(r.busy, 'BUSY');
    assert.equal(r.verifyBusy, 'BUSY');
    assert.equal(r.first, 4);
    assert.equal(r.second, 4);
  }));

test("a chat's second turn reuses the first turn's KV cache and its receipt verifies", { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const turn1 = [{ role: 'user', content: 'What is the capital of France?' }];
      const one = await engine.generate(turn1, { maxTokens: 8 }).result;
      const turn2 = [...turn1, { role: 'assistant', content: one.text }, { role: 'user', content: 'And of Italy?' }];
      const two = await engine.generate(turn2, { maxTokens: 8 }).result;
      return { one, two, verified: await engine.verify(two.receipt) };
    }, MODELS.tiny);
    const t2 = r.two.timings;
    assert.ok(r.two.receipt.prompt.messages, 'a chat receipt commits the messages');
    assert.equal(r.one.timings.evaluatedPromptTokens, r.one.timings.promptTokens, 'turn 1 evaluates its whole prompt');
    assert.ok(t2.evaluatedPromptTokens < t2.promptTokens, JSON.stringify(t2));
    if ('cachedTokens' in t2) assert.equal(t2.evaluatedPromptTokens, t2.promptTokens - t2.cachedTokens);
    assert.equal(r.verified.ok, true, r.verified.report);
  }));

test('a malformed receipt fails with BAD_RECEIPT', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine, verifyReceipt } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const { receipt } = await engine.generate('Hi', { maxTokens: 2 }).result;
      return {
        notJson: await codeOf(() => engine.verify('{"version": 1,')),
        unknownField: await codeOf(() => engine.verify({ ...receipt, extra: true })),
        badHash: await codeOf(() => engine.verify({ ...receipt, final: 'xyz' })),
        early: await codeOf(() => verifyReceipt('not json', '/models/never-fetched.gguf')),
      };
    }, MODELS.tiny);
    for (const [what, e] of Object.entries(r)) assert.equal(e.code, 'BAD_RECEIPT', `${what}: ${e.message}`);
    assert.equal(h.server.requests('/models/never-fetched.gguf'), 0, 'a malformed receipt fails before the download');
  }));

test('a receipt verified against another model is not verified: divergence kind model', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, other }) => {
      const { Engine, verifyReceipt } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const { receipt } = await engine.generate('Hi', { maxTokens: 4 }).result;
      return verifyReceipt(JSON.stringify(receipt), other, { backend: 'cpu' });
    }, { model: MODELS.tiny, other: MODELS.tinySeed8 });
    assert.equal(r.ok, false);
    assert.equal(r.divergence?.kind, 'model', JSON.stringify(r));
    assert.match(r.report, /^NOT verified/);
  }));

test('a receipt with one token changed is not verified', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const { receipt } = await engine.generate('Hi', { maxTokens: 6 }).result;
      const tampered = structuredClone(receipt);
      tampered.tokens[2] = (tampered.tokens[2] + 1) % engine.info().vocabSize;
      return { honest: await engine.verify(receipt), tampered: await engine.verify(tampered) };
    }, MODELS.tiny);
    assert.equal(r.honest.ok, true, r.honest.report);
    assert.equal(r.tampered.ok, false, r.tampered.report);
    assert.ok(r.tampered.divergence, 'a failed verification names its divergence');
  }));

test('a truncated model file fails with TRUNCATED', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      return codeOf(() => Engine.load(model, { backend: 'cpu' }));
    }, MODELS.truncated);
    assert.equal(r.code, 'TRUNCATED', r.message);
  }));

test('a tensor of an unsupported type fails with UNSUPPORTED_TENSOR_TYPE', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      return codeOf(() => Engine.load(model, { backend: 'cpu' }));
    }, MODELS.q2k);
    assert.equal(r.code, 'UNSUPPORTED_TENSOR_TYPE', r.message);
    assert.match(r.message, /Q2_K/);
  }));

test("backend 'webgpu' without navigator.gpu fails with NO_ADAPTER", { timeout: TIMEOUT }, (t) =>
  h.page(
    t,
    async (page) => {
      const r = await page.evaluate(async (model) => {
        const { Engine } = await import('/pkg/index.js');
        const { codeOf } = await import('/helpers.js');
        const webgpu = await codeOf(() => Engine.load(model, { backend: 'webgpu' }));
        const auto = await Engine.load(model);
        return { gpu: 'gpu' in navigator, webgpu, supports: await Engine.supports(), auto: auto.info() };
      }, MODELS.tiny);
      assert.equal(r.gpu, false);
      assert.equal(r.webgpu.code, 'NO_ADAPTER', r.webgpu.message);
      assert.equal(r.supports.webgpu, false);
      assert.equal(r.supports.adapter, null);
      assert.equal(r.auto.backend, 'cpu');
      assert.match(r.auto.backendReason, /navigator\.gpu/);
    },
    { initScript: () => delete Navigator.prototype.gpu },
  ));

test('a prompt longer than the context fails with CONTEXT_OVERFLOW', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const words = Array.from({ length: 400 }, (_, i) => ['river', 'stone', 'lantern', 'orchard'][i % 4]).join(' ');
      const overflow = await codeOf(() => engine.generate(words, { maxTokens: 4 }));
      const after = await engine.generate('Hello', { maxTokens: 2 }).result;
      return { overflow, promptTokens: engine.tokenize(words).length, after: after.tokens.length };
    }, MODELS.tiny);
    assert.ok(r.promptTokens > 256, `${r.promptTokens} tokens`);
    assert.equal(r.overflow.code, 'CONTEXT_OVERFLOW', r.overflow.message);
    assert.equal(r.after, 2, 'the engine works after a refused prompt');
  }));

test('the OPFS cache: the second load reads OPFS and makes no request', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const load = () =>
      page.evaluate(async (model) => {
        const { Engine } = await import('/pkg/index.js');
        const stages = new Set();
        const engine = await Engine.load(model, { backend: 'cpu', cache: true, onProgress: (p) => stages.add(p.stage) });
        const info = engine.info();
        engine.free();
        return { stages: [...stages], sha256: info.sha256, bytes: info.bytes, cache: info.cache, list: await Engine.cache.list() };
      }, MODELS.tiny);
    const first = await load();
    assert.equal(first.cache.status, 'stored');
    const requests = h.server.requests(MODELS.tiny);
    const second = await load();
    assert.ok(first.stages.includes('download'), `${first.stages}`);
    assert.equal(h.server.requests(MODELS.tiny), requests, 'the second load made a request');
    assert.ok(second.stages.includes('cache') && !second.stages.includes('download'), `${second.stages}`);
    assert.equal(second.sha256, first.sha256);
    assert.equal(second.cache.status, 'hit');
    assert.equal(second.list.length, 1);
    assert.equal(second.list[0].key, first.sha256);
    assert.equal(second.list[0].bytes, first.bytes);
    assert.ok(second.list[0].url.endsWith(MODELS.tiny));

    const r = await page.evaluate(async (model) => {
      const { Engine } = await import('/pkg/index.js');
      const { codeOf, cacheFolder } = await import('/helpers.js');
      const wrongHash = await codeOf(() => Engine.load(model, { backend: 'cpu', cache: true, sha256: '0'.repeat(64) }));
      await Engine.cache.clear();
      return { wrongHash, list: await Engine.cache.list(), folder: await cacheFolder() };
    }, MODELS.tiny);
    assert.equal(r.wrongHash.code, 'INTEGRITY', r.wrongHash.message);
    assert.deepEqual(r.list, []);
    assert.deepEqual(r.folder, []);
  }));

test('a full storage quota: the model loads anyway, info says QUOTA with the bytes needed, nothing stays', { timeout: TIMEOUT }, (t) =>
  h.page(
    t,
    async (page) => {
      const r = await page.evaluate(async (model) => {
        const { Engine } = await import('/pkg/index.js');
        const { cacheFolder } = await import('/helpers.js');
        const engine = await Engine.load(model, { backend: 'cpu', cache: true });
        const info = engine.info();
        const text = (await engine.generate('Hi', { maxTokens: 2 }).result).text;
        engine.free();
        return { cache: info.cache, bytes: info.bytes, text, list: await Engine.cache.list(), folder: await cacheFolder() };
      }, MODELS.tiny);
      assert.equal(r.cache.status, 'failed');
      assert.equal(r.cache.error.code, 'QUOTA');
      assert.match(r.cache.error.message, new RegExp(`needs ${r.bytes} bytes`));
      assert.ok(r.text.length > 0, 'the model works without the cache');
      assert.deepEqual(r.list, []);
      assert.deepEqual(r.folder.filter((n) => n.startsWith('tmp-')), [], 'a temporary file stayed');
    },
    {
      // Every OPFS write fails as a full origin's does.
      initScript: () => {
        FileSystemWritableFileStream.prototype.write = async () => {
          throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        };
      },
    },
  ));
