// Sentence embeddings (all-MiniLM-L6-v2) through the package: in Chromium (the page's thread
// and a Worker) and under Node the vectors are the native CLI's bit for bit (the bytes of each
// Float32Array), alone and in a batch, and the receipts are the CLI's (the same root); receipts
// verify across Chromium and the CLI; a tampered one names the text; progress while loading and
// embedding; an abort between batches leaves the embedder usable; coded errors; the OPFS cache.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI } from './fixtures.mjs';
import { MODELS, TIMEOUT, artifacts, repo, setup } from './harness.mjs';

// 40 texts: two batches of 32 (the receipt is assembled across them), accents and CJK, an empty
// text, and one longer than the default 256 word pieces (truncated).
const BASE = [
  'The cat sits on the mat.',
  'Paris is the capital of France.',
  'A quick brown fox jumps over the lazy dog.',
  'Café au lait, crème brûlée and a naïve résumé.',
  '東京は日本の首都です。',
  'How do I reset my password?',
  'Photosynthesis turns light into chemical energy in plants.',
  'The stock market fell sharply on Monday.',
];
const LONG = Array.from({ length: 120 }, (_, i) => `word${i} is here`).join(' ');
const TEXTS = [
  ...BASE,
  '',
  LONG,
  ...Array.from({ length: 30 }, (_, i) => `${BASE[i % BASE.length]} (variant ${i}, with number ${i * 37})`),
];

let h, node, cli;

/** The CLI's vectors and receipt for `texts` (and where the receipt is). */
function embedWithCli(name, texts) {
  const file = join(artifacts, `embed-cli-${name}.json`);
  const out = execFileSync(CLI, ['embed', '--model', h.fixtures.minilm, ...texts, '--receipt', file], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 1 << 28,
  });
  return { vectors: JSON.parse(out).vectors, receipt: JSON.parse(readFileSync(file, 'utf8')), file };
}

/** The CLI's verdict on a receipt file: its exit status and its report line. */
function verifyWithCli(file) {
  const r = spawnSync(CLI, ['verify', file, '--model', h.fixtures.minilm], { encoding: 'utf8' });
  return { status: r.status, report: r.stdout.trim(), stderr: r.stderr };
}

/** Float32 bytes of the CLI's vector `v` (JSON numbers, printed as the shortest f32 decimals). */
const cliBytes = (v) => Buffer.from(Float32Array.from(v).buffer);

/** Asserts that every vector (base64 of its Float32Array bytes) equals the CLI's, bit for bit. */
function assertSameVectors(got, want, what) {
  assert.equal(got.length, want.length, `${what}: ${got.length} vectors, the CLI made ${want.length}`);
  got.forEach((b64, i) => {
    const bytes = Buffer.from(b64, 'base64');
    const expected = cliBytes(want[i]);
    if (!bytes.equals(expected)) {
      const mine = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      const j = mine.findIndex((x, k) => x !== Math.fround(want[i][k]));
      assert.fail(`${what}: vector ${i} (${JSON.stringify(TEXTS[i]?.slice(0, 40))}) differs from the CLI's at [${j}]: ${mine[j]} vs ${want[i][j]}`);
    }
  });
}

// Runs in the page: the base64 of a Float32Array's bytes (Playwright returns JSON only).
const PAGE_HELPERS = `
  globalThis.b64 = (v) => {
    const u = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    let s = '';
    for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000));
    return btoa(s);
  };
`;

before(async () => {
  h = await setup();
  node = await import(pathToFileURL(join(repo, 'pkg/node.js')));
  cli = embedWithCli('batch', TEXTS);
});
after(() => h?.close());

test('Chromium: MiniLM loads with progress; vectors and receipt are the CLI’s, alone and in a batch; receipts verify both ways', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    await page.evaluate(PAGE_HELPERS);
    const r = await page.evaluate(async ({ model, texts, cliReceipt }) => {
      const { Embedder, cosine, verifyReceipt } = await import('/pkg/index.js');
      const load = [];
      const embedder = await Embedder.load(model, { onProgress: (p) => load.push(p) });
      const info = embedder.info();
      const progress = [];
      const batch = await embedder.embed(texts, { onProgress: (p) => progress.push(p) });
      const alone = [];
      for (const text of texts.slice(0, 10)) alone.push(b64((await embedder.embed([text])).vectors[0]));
      const verifyProgress = [];
      const verified = await embedder.verify(batch.receipt, { onProgress: (p) => verifyProgress.push(p) });
      const fromCli = await verifyReceipt(JSON.stringify(cliReceipt), model);
      const ids = [...embedder.tokenize(texts[0])];
      return {
        load, info, progress, verifyProgress, verified, fromCli, ids,
        vectors: batch.vectors.map(b64),
        alone,
        receipt: batch.receipt,
        norm: cosine(batch.vectors[0], batch.vectors[0]),
        related: cosine(batch.vectors[1], batch.vectors[10 + 1]), // the same sentence, a variant
        unrelated: cosine(batch.vectors[1], batch.vectors[7]),
      };
    }, { model: MODELS.minilm, texts: TEXTS, cliReceipt: cli.receipt });

    // Loading: each file read with its name, then the conversion, the hash, the weights.
    const files = r.load.filter((p) => p.stage === 'download');
    assert.deepEqual([...new Set(files.map((p) => p.file))], ['config', 'tokenizer', 'model']);
    const model = files.filter((p) => p.file === 'model');
    assert.ok(model.length > 2, `${model.length} download events for model.safetensors`);
    assert.equal(model.at(-1).loaded, r.info.files.model.bytes);
    for (const stage of ['convert', 'hash', 'upload']) assert.ok(r.load.some((p) => p.stage === stage), `no '${stage}' progress`);
    assert.equal(r.info.backend, 'cpu');
    assert.equal(r.info.dimensions, 384);
    assert.equal(r.info.sha256, cli.receipt.model.file_sha256);
    assert.match(r.info.files.model.sha256, /^[0-9a-f]{64}$/);

    // Embedding: progress after each batch of 32.
    assert.deepEqual(r.progress.map((p) => [p.stage, p.loaded, p.total]), [['embed', 32, 40], ['embed', 40, 40]]);
    assertSameVectors(r.vectors, cli.vectors, 'a batch of 40 in Chromium');
    assertSameVectors(r.alone, cli.vectors.slice(0, 10), 'one text at a time in Chromium');
    assert.equal(r.receipt.root, cli.receipt.root, 'the receipt of the batch is the CLI’s');
    assert.deepEqual(r.receipt.texts, cli.receipt.texts);
    assert.deepEqual(r.ids, cli.receipt.texts[0].ids);
    assert.equal(cli.receipt.texts[9].ids.length, 256, 'the long text is truncated at 256 word pieces');
    assert.ok(Math.abs(r.norm - 1) < 1e-6, `|v|² = ${r.norm}`);
    assert.ok(r.related > r.unrelated, `cosine ${r.related} (variant) vs ${r.unrelated} (unrelated)`);

    // Verification: in Chromium, of Chromium's and of the CLI's receipts, and by the CLI.
    assert.equal(r.verified.ok, true, r.verified.report);
    assert.equal(r.verified.report, 'verified: 40 texts re-embedded bit for bit');
    assert.equal(r.verified.textsMatched, 40);
    assert.ok(r.verifyProgress.some((p) => p.stage === 'verify'));
    assert.equal(r.fromCli.ok, true, r.fromCli.report);
    const file = join(artifacts, 'embed-chromium-receipt.json');
    writeFileSync(file, JSON.stringify(r.receipt, null, 2));
    const verdict = verifyWithCli(file);
    assert.equal(verdict.status, 0, `${verdict.report}\n${verdict.stderr}`);
    assert.equal(verdict.report, r.verified.report);
  }));

test('a tampered embedding receipt fails, naming the text, as the CLI does', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const vector = structuredClone(cli.receipt);
    vector.texts[3].vector = vector.texts[3].vector.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    const text = structuredClone(cli.receipt);
    text.texts[5].text = 'Something else entirely.';
    text.root = '0'.repeat(64); // and a root that no longer matches either
    const r = await page.evaluate(async ({ model, receipts }) => {
      const { Embedder } = await import('/pkg/index.js');
      const embedder = await Embedder.load(model);
      const out = [];
      for (const receipt of receipts) out.push(await embedder.verify(receipt));
      return out;
    }, { model: MODELS.minilm, receipts: [vector, text] });
    const [v, x] = r;
    assert.equal(v.ok, false);
    assert.deepEqual(v.divergence, { kind: 'vector', index: 3, text: TEXTS[3], message: 'text 3: vector differs' });
    assert.deepEqual(v.divergences.map((d) => d.kind), ['root', 'vector']);
    assert.equal(v.textsMatched, 39);
    assert.equal(x.ok, false);
    assert.equal(x.divergence.kind, 'ids');
    assert.equal(x.divergence.index, 5);
    assert.equal(x.divergence.text, 'Something else entirely.');
    assert.match(x.report, /^NOT verified: the receipt's root does not match its contents; text 5: word pieces differ$/);
    // The CLI says the same.
    for (const [name, receipt, mine] of [['vector', vector, v], ['text', text, x]]) {
      const file = join(artifacts, `embed-tampered-${name}.json`);
      writeFileSync(file, JSON.stringify(receipt, null, 2));
      const verdict = verifyWithCli(file);
      assert.equal(verdict.status, 1, verdict.report);
      assert.equal(verdict.report, mine.report);
    }
  }));

test('an abort between batches rejects ABORTED; the next embed works and gives the same vectors', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    await page.evaluate(PAGE_HELPERS);
    const r = await page.evaluate(async ({ model, texts }) => {
      const { Embedder } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      const embedder = await Embedder.load(model);
      const many = Array.from({ length: 4 }, () => texts).flat(); // 160 texts: 5 batches
      const controller = new AbortController();
      const seen = [];
      const aborted = await codeOf(() => embedder.embed(many, {
        signal: controller.signal,
        onProgress: (p) => {
          seen.push(p.loaded);
          controller.abort();
        },
      }));
      const again = await embedder.embed(texts.slice(0, 8));
      const already = await codeOf(() => embedder.embed(texts, { signal: AbortSignal.abort() }));
      return { aborted, seen, already, vectors: again.vectors.map(b64) };
    }, { model: MODELS.minilm, texts: TEXTS });
    assert.equal(r.aborted.code, 'ABORTED', r.aborted.message);
    assert.deepEqual(r.seen, [32], 'it stopped after the batch running when the signal fired');
    assert.equal(r.already.code, 'ABORTED');
    assertSameVectors(r.vectors, cli.vectors.slice(0, 8), 'the embed after an abort');
  }));

test('WebGPU (SwiftShader): the CLI’s vectors and receipt; \'auto\' picks the CPU on a CPU adapter', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    await page.evaluate(PAGE_HELPERS);
    const r = await page.evaluate(async ({ model, texts }) => {
      const { Embedder } = await import('/pkg/index.js');
      const gpu = await Embedder.load(model, { backend: 'webgpu' });
      // Overlapping calls run one after another.
      const [batch, one] = await Promise.all([gpu.embed(texts), gpu.embed([texts[2]])]);
      const alone = b64(one.vectors[0]);
      const verified = await gpu.verify(batch.receipt);
      const out = { info: gpu.info(), vectors: batch.vectors.map(b64), alone, receipt: batch.receipt, verified };
      gpu.free();
      const auto = await Embedder.load(model);
      out.auto = { backend: auto.info().backend, reason: auto.info().backendReason };
      auto.free();
      return out;
    }, { model: MODELS.minilm, texts: TEXTS.slice(0, 4) });
    assert.equal(r.info.backend, 'webgpu');
    assertSameVectors(r.vectors, cli.vectors.slice(0, 4), 'a batch of 4 on WebGPU');
    assertSameVectors([r.alone], [cli.vectors[2]], 'one text on WebGPU');
    assert.deepEqual(r.receipt.texts, cli.receipt.texts.slice(0, 4));
    assert.equal(r.verified.ok, true, r.verified.report);
    assert.equal(r.auto.backend, 'cpu', r.auto.reason);
    assert.match(r.auto.reason, /runs on the CPU/);
  }));

test('coded errors: a missing file, a corrupt or truncated safetensors file, bad arguments', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async (m) => {
      const { Embedder } = await import('/pkg/index.js');
      const { codeOf } = await import('/helpers.js');
      const embedder = await Embedder.load(m.minilm);
      const out = {
        missing: await codeOf(() => Embedder.load(m.encoderMissing)),
        corrupt: await codeOf(() => Embedder.load(m.encoderCorrupt)),
        truncated: await codeOf(() => Embedder.load(m.encoderTruncated)),
        badConfig: await codeOf(() => Embedder.load({ model: `${m.minilm}model.safetensors`, config: `${m.minilm}tokenizer.json`, tokenizer: `${m.minilm}tokenizer.json` })),
        incomplete: await codeOf(() => Embedder.load({ model: `${m.minilm}model.safetensors` })),
        notTexts: await codeOf(() => embedder.embed([1, 2, 3])),
        maxTokens: await codeOf(() => embedder.embed(['x'], { maxTokens: 1 })),
        generationReceipt: await codeOf(() => embedder.verify({ version: 1, tokens: [1] })),
        notJson: await codeOf(() => embedder.verify('{ not json')),
      };
      embedder.free();
      out.freed = await codeOf(() => embedder.embed(['x']));
      return out;
    }, MODELS);
    assert.equal(r.missing.code, 'NETWORK', r.missing.message);
    assert.match(r.missing.message, /404.*broken-encoder-missing\/model\.safetensors/);
    assert.equal(r.corrupt.code, 'CORRUPT', r.corrupt.message);
    assert.match(r.corrupt.message, /safetensors header/);
    assert.equal(r.truncated.code, 'TRUNCATED', r.truncated.message);
    assert.equal(r.badConfig.code, 'UNSUPPORTED_ARCHITECTURE', r.badConfig.message);
    assert.equal(r.incomplete.code, 'INVALID_ARGUMENT');
    assert.equal(r.notTexts.code, 'INVALID_ARGUMENT');
    assert.equal(r.maxTokens.code, 'INVALID_ARGUMENT');
    assert.equal(r.generationReceipt.code, 'BAD_RECEIPT');
    assert.equal(r.notJson.code, 'BAD_RECEIPT');
    assert.equal(r.freed.code, 'FREED');
  }));

test('the OPFS cache: stored, then read without a request; a cut download leaves nothing', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    const path = `${MODELS.minilm}model.safetensors`;
    const before = h.server.requests(path);
    const r = await page.evaluate(async (model) => {
      const { Embedder } = await import('/pkg/index.js');
      const { codeOf, cacheFolder } = await import('/helpers.js');
      const cut = await codeOf(() => Embedder.load({
        model: model.replace('/models/', '/cut/') + 'model.safetensors',
        config: `${model}config.json`,
        tokenizer: `${model}tokenizer.json`,
      }, { cache: true }));
      const afterCut = { list: await Embedder.cache.list(), folder: await cacheFolder() };
      const runs = [];
      for (let i = 0; i < 2; i++) {
        const stages = new Set();
        const embedder = await Embedder.load(model, { cache: true, onProgress: (p) => stages.add(p.stage) });
        runs.push({ stages: [...stages], cache: embedder.info().cache, vector: [...(await embedder.embed(['cached'])).vectors[0]] });
        embedder.free();
      }
      const list = await Embedder.cache.list();
      await Embedder.cache.clear();
      return { cut, afterCut, runs, list, cleared: await cacheFolder() };
    }, MODELS.minilm);
    assert.equal(r.cut.code, 'NETWORK', r.cut.message);
    assert.deepEqual(r.afterCut, { list: [], folder: [] }, 'a cut download leaves no file and no entry');
    const [first, second] = r.runs;
    assert.equal(first.cache.status, 'stored');
    assert.ok(first.stages.includes('download'));
    assert.equal(second.cache.status, 'hit');
    assert.ok(second.stages.includes('cache') && !second.stages.includes('download'), `${second.stages}`);
    assert.deepEqual(second.vector, first.vector);
    assert.equal(h.server.requests(path), before + 1, 'the second load made no request');
    assert.deepEqual(r.list.map((e) => e.url.split('/').pop()).sort(), ['config.json', 'model.safetensors', 'tokenizer.json']);
    assert.deepEqual(r.cleared, []);
  }));

test('WorkerEmbedder (threads, and one thread) gives the CLI’s vectors; verify and abort cross', { timeout: TIMEOUT }, (t) =>
  h.page(t, async (page) => {
    await page.evaluate(PAGE_HELPERS);
    const r = await page.evaluate(async ({ model, texts }) => {
      const { WorkerEmbedder } = await import('/pkg/worker.js');
      const { codeOf } = await import('/helpers.js');
      const out = {};
      for (const threads of [undefined, 1]) {
        const stages = new Set();
        const embedder = await WorkerEmbedder.load(undefined, model, { threads, onProgress: (p) => stages.add(p.stage) });
        const controller = new AbortController();
        const aborted = await codeOf(() => embedder.embed([...texts, ...texts, ...texts, ...texts, ...texts], {
          signal: controller.signal,
          onProgress: () => controller.abort(),
        }));
        const { vectors, receipt } = await embedder.embed(texts);
        out[threads ?? 'default'] = {
          stages: [...stages],
          info: await embedder.info(),
          aborted,
          vectors: vectors.map(b64),
          isFloat32: vectors.every((v) => v instanceof Float32Array),
          root: receipt.root,
          verified: await embedder.verify(receipt),
          ids: [...(await embedder.tokenize(texts[0]))],
        };
        embedder.free();
        out[threads ?? 'default'].afterFree = (await codeOf(() => embedder.info())).code;
      }
      return out;
    }, { model: MODELS.minilm, texts: TEXTS });
    for (const [name, w] of Object.entries(r)) {
      assert.ok(w.stages.includes('download') && w.stages.includes('convert'), `${name}: ${w.stages}`);
      assert.equal(w.aborted.code, 'ABORTED', `${name}: ${w.aborted.message}`);
      assert.ok(w.isFloat32);
      assertSameVectors(w.vectors, cli.vectors, `WorkerEmbedder (threads: ${name})`);
      assert.equal(w.root, cli.receipt.root);
      assert.equal(w.verified.ok, true, w.verified.report);
      assert.deepEqual(w.ids, cli.receipt.texts[0].ids);
      assert.equal(w.afterFree, 'FREED');
    }
    assert.ok(r.default.info.threads > 1, `the isolated page's worker ran ${r.default.info.threads} thread(s)`);
    assert.equal(r[1].info.threads, 1);
  }));

test('Node: the same vectors and receipt from the folder; receipts verify with verifyReceipt', { timeout: TIMEOUT }, async () => {
  const stages = new Set();
  const embedder = await node.Embedder.load(h.fixtures.minilm, { onProgress: (p) => stages.add(p.stage) });
  const { vectors, receipt } = await embedder.embed(TEXTS);
  embedder.free();
  assert.ok(stages.has('read') && stages.has('convert') && stages.has('hash'), `${[...stages]}`);
  assertSameVectors(vectors.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')), cli.vectors, 'Node');
  assert.equal(receipt.root, cli.receipt.root);
  const verified = await node.verifyReceipt(readFileSync(cli.file, 'utf8'), h.fixtures.minilm);
  assert.equal(verified.ok, true, verified.report);
  // Bytes, not paths, and a generation receipt refused.
  const bytes = await node.Embedder.load({
    model: readFileSync(join(h.fixtures.minilm, 'model.safetensors')),
    config: join(h.fixtures.minilm, 'config.json'),
    tokenizer: pathToFileURL(join(h.fixtures.minilm, 'tokenizer.json')),
  });
  assert.equal(bytes.info().sha256, cli.receipt.model.file_sha256);
  await assert.rejects(bytes.verify(JSON.parse(readFileSync(h.fixtures.cliReceipt, 'utf8'))), { code: 'BAD_RECEIPT' });
  bytes.free();
});
