// The JavaScript layer alone (js/core.js through js/node.js) on a stand-in for the wasm glue
// (mock-wasm.mjs): generation and abort rules, source reading and its error codes, the
// Embedder's sources, aborts and receipts' dispatch. Needs
// neither the Rust build nor a browser.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { repo } from './harness.mjs';

let Engine, Embedder, verifyReceipt, cosine, receiptToBytes, receiptFromBytes, signReceipt, mock, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgeproof-core-'));
  for (const f of readdirSync(join(repo, 'js'))) if (f.endsWith('.js')) copyFileSync(join(repo, 'js', f), join(dir, f));
  copyFileSync(join(repo, 'pkg-tests/web/mock-wasm.mjs'), join(dir, 'edgeproof_wasm.js'));
  writeFileSync(join(dir, 'edgeproof_wasm_bg.wasm'), '');
  ({ Engine, Embedder, verifyReceipt, cosine, receiptToBytes, receiptFromBytes, signReceipt } = await import(pathToFileURL(join(dir, 'node.js'))));
  mock = await import(pathToFileURL(join(dir, 'edgeproof_wasm.js')));
});

const MODEL = Uint8Array.from([...'GGUF'].map((c) => c.charCodeAt(0)).concat([8, 0, 0, 0]));
const code = (p) => Promise.resolve().then(p).then(() => 'no error', (e) => e.code);
async function* chunks(...parts) {
  for (const p of parts) yield Uint8Array.from(p);
}

test('iterating streams every token; result holds them all', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 5 });
  const seen = [];
  for await (const t of g) seen.push(t.token);
  const r = await g.result;
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(r.tokens, seen);
  assert.equal(r.finish, 'length');
  engine.free();
});

test('result resolves without iterating, and an iterator started later still gets every token', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 4 });
  const r = await g.result;
  assert.equal(r.tokens.length, 4);
  const seen = [];
  for await (const t of g) seen.push(t.token);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  // Iterating and awaiting result at once: each token once, in order.
  const h = engine.generate('hi', { maxTokens: 6 });
  const both = [];
  const [, r2] = await Promise.all([(async () => { for await (const t of h) both.push(t.token); })(), h.result]);
  assert.deepEqual(both, [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(r2.tokens, both);
});

test('BUSY is thrown synchronously until the generation finished', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 2 });
  assert.throws(() => engine.generate('again'), { code: 'BUSY' });
  await assert.rejects(engine.verify({}), { code: 'BUSY' });
  await g.result;
  assert.equal((await engine.generate('again', { maxTokens: 1 }).result).tokens.length, 1);
  assert.throws(() => engine.generate('x'.repeat(300)), { code: 'CONTEXT_OVERFLOW' });
});

test('break, an AbortSignal and an aborted signal all finish the generation as aborted', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 100 });
  for await (const t of g) if (t.token === 2) break;
  assert.equal((await g.result).finish, 'aborted');

  const controller = new AbortController();
  const h = engine.generate('hi', { maxTokens: 100, signal: controller.signal });
  const seen = [];
  for await (const t of h) {
    seen.push(t.token);
    if (t.token === 3) controller.abort();
  }
  const r = await h.result;
  assert.equal(r.finish, 'aborted');
  assert.ok(seen.length >= 3 && seen.length < 100);
  assert.deepEqual(r.tokens, seen, 'the iterator gets every token the result has');

  // Aborted without anyone iterating or awaiting: finished all the same, BUSY released.
  const other = new AbortController();
  const lone = engine.generate('hi', { maxTokens: 100, signal: other.signal });
  other.abort();
  assert.equal((await lone.result).finish, 'aborted');
  assert.equal((await engine.generate('hi', { maxTokens: 1, signal: AbortSignal.abort() }).result).finish, 'aborted');
});

test('free() mid-generation finishes it before the wasm engine goes; later calls throw FREED', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 100 });
  await g.next();
  mock.calls.length = 0;
  engine.free();
  assert.equal((await g.result).finish, 'aborted');
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(mock.calls, ['finish', 'engine.free']);
  assert.throws(() => engine.info(), { code: 'FREED' });
  assert.throws(() => engine.generate('hi'), { code: 'FREED' });
  await assert.rejects(engine.verify({}), { code: 'FREED' });
});

test('loading: progress, early header errors, stream failures, aborts, sha256', async () => {
  const progress = [];
  const engine = await Engine.load(chunks([71, 71, 85, 70], [8, 0], [0, 0]), { onProgress: (p) => progress.push(p) });
  assert.deepEqual(engine.info().backend, 'cpu');
  assert.deepEqual(progress.filter((p) => p.stage === 'read').map((p) => [p.loaded, p.total]), [[4, undefined], [6, 8], [8, 8]]);
  assert.ok(progress.some((p) => p.stage === 'hash'));

  mock.calls.length = 0;
  assert.equal(await code(() => Engine.load(chunks([1, 2, 3, 4], [5]))), 'BAD_MAGIC');
  assert.deepEqual(mock.calls, ['loader.free']);
  assert.equal(await code(() => Engine.load(MODEL.subarray(0, 6))), 'TRUNCATED');
  async function* failing() {
    yield MODEL.subarray(0, 4);
    throw new Error('connection reset');
  }
  assert.equal(await code(() => Engine.load(failing())), 'NETWORK');
  assert.equal(await code(() => Engine.load(MODEL, { signal: AbortSignal.abort() })), 'ABORTED');
  const controller = new AbortController();
  const onProgress = (p) => p.stage === 'hash' && controller.abort();
  assert.equal(await code(() => Engine.load(MODEL, { signal: controller.signal, onProgress })), 'ABORTED');
  assert.equal(await code(() => Engine.load(MODEL, { sha256: 'cd'.repeat(32) })), 'INTEGRITY');
  assert.equal(await code(() => Engine.load(MODEL, { sha256: 'AB'.repeat(32) })), 'no error');
  assert.equal(await code(() => Engine.load(join(repo, 'no-such-model.gguf'))), 'IO');
  assert.equal(await code(() => Engine.load(42)), 'INVALID_ARGUMENT');
});

const ENCODER = { model: Uint8Array.of(1, 2, 3), config: Uint8Array.of(123, 125), tokenizer: Uint8Array.of(123, 125) };

test('Embedder: sources, per-file progress, the CPU under Node, coded errors', async () => {
  const progress = [];
  const embedder = await Embedder.load({ ...ENCODER }, { onProgress: (p) => progress.push(p) });
  const read = progress.filter((p) => p.stage === 'read');
  assert.deepEqual(read.map((p) => p.file), ['config', 'tokenizer', 'model']);
  assert.ok(progress.some((p) => p.stage === 'convert'));
  assert.equal(embedder.info().backend, 'cpu');
  const { vectors, receipt } = await embedder.embed(['ab', 'c']);
  assert.deepEqual(vectors.map((v) => [...v]), [[2, 97, 1, 0], [1, 99, 1, 0]]);
  assert.equal(receipt.kind, 'embedding');
  assert.equal((await embedder.embed('one string', { receipt: false })).receipt, null);
  assert.equal(await code(() => embedder.embed([1, 2])), 'INVALID_ARGUMENT');
  assert.equal(await code(() => embedder.embed(['x'], { maxTokens: 1 })), 'INVALID_ARGUMENT');
  assert.equal(await code(() => embedder.verify({ version: 1, tokens: [] })), 'BAD_RECEIPT');
  assert.equal(await code(() => embedder.verify('not json')), 'BAD_RECEIPT');

  // Node has no WebGPU: the CPU, as Engine.load there, and the info says why.
  const onCpu = await Embedder.load({ ...ENCODER }, { backend: 'webgpu' });
  assert.equal(onCpu.info().backend, 'cpu');
  assert.match(onCpu.info().backendReason, /Node\.js has no WebGPU/);
  onCpu.free();
  mock.calls.length = 0;
  assert.equal(await code(() => Embedder.load({ model: ENCODER.model, config: ENCODER.config })), 'INVALID_ARGUMENT');
  assert.equal(await code(() => Embedder.load({ ...ENCODER, tokenizer: new Uint8Array(0) })), 'TRUNCATED');
  assert.deepEqual(mock.calls.at(-1), 'encoderLoader.free');
  assert.equal(await code(() => Embedder.load(join(repo, 'no-such-encoder'))), 'IO');
  assert.equal(await code(() => Embedder.load(42)), 'INVALID_ARGUMENT');
  assert.equal(cosine([1, 0], [1, 0]), 1);
  assert.equal(cosine([1, 0], [0, 2]), 0);
  assert.throws(() => cosine([1], [1, 2]), { code: 'INVALID_ARGUMENT' });
});

test('Embedder: an abort between batches rejects ABORTED and the next embed works; free() waits', async () => {
  const embedder = await Embedder.load({ ...ENCODER });
  const texts = Array.from({ length: 100 }, (_, i) => `text ${i}`);
  const controller = new AbortController();
  const done = [];
  const aborted = await code(() => embedder.embed(texts, {
    signal: controller.signal,
    onProgress: (p) => {
      done.push(p.loaded);
      if (p.loaded === 32) controller.abort();
    },
  }));
  assert.equal(aborted, 'ABORTED');
  assert.deepEqual(done, [32]);
  const { vectors } = await embedder.embed(texts);
  assert.equal(vectors.length, 100);

  const running = embedder.embed(texts);
  mock.calls.length = 0;
  embedder.free();
  assert.equal(await code(() => running), 'ABORTED');
  await new Promise((resolve) => setTimeout(resolve));
  assert.deepEqual(mock.calls, ['encoder.free']);
  assert.throws(() => embedder.info(), { code: 'FREED' });
  await assert.rejects(embedder.embed(['x']), { code: 'FREED' });
});

test('verifyReceipt sends an embedding receipt to an Embedder, others to an Engine', async () => {
  const r = await verifyReceipt({ kind: 'embedding', texts: [{ text: 'a' }] }, { ...ENCODER });
  assert.equal(r.report, 'verified: 1 texts (mock)');
  const g = await verifyReceipt({ tokens: [] }, MODEL);
  assert.equal(g.report, 'verified: mock');
  const engine = await Engine.load(MODEL);
  assert.equal(await code(() => engine.verify({ kind: 'embedding' })), 'BAD_RECEIPT');
});

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const P256 = { name: 'ECDSA', namedCurve: 'P-256' };

test('sign: a CryptoKeyPair signs the receipt (ES256 over receiptSigningMessage); Node signs nothing by default', async () => {
  const engine = await Engine.load(MODEL);
  const plain = await engine.generate('hi', { maxTokens: 2 }).result;
  assert.equal(plain.receipt.signature, undefined, 'Node: unsigned by default');
  assert.equal(plain.signError, null);

  const pair = await crypto.subtle.generateKey(P256, false, ['sign', 'verify']);
  const signed = await engine.generate('hi', { maxTokens: 2, sign: pair }).result;
  const sig = signed.receipt.signature;
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', raw));
  assert.equal(sig.alg, 'ES256');
  assert.equal(sig.key, b64url(raw));
  assert.equal(sig.fingerprint, Buffer.from(digest.subarray(0, 8)).toString('hex'));
  assert.match(sig.value, /^[A-Za-z0-9_-]{86}$/, '64 bytes, base64url without padding');
  const { signature: _, ...core } = signed.receipt;
  const message = mock.receiptSigningMessage(JSON.stringify(core));
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, pair.publicKey, Buffer.from(sig.value, 'base64url'), message);
  assert.equal(ok, true, 'the signature checks with WebCrypto over receiptSigningMessage');

  // signReceipt: the same signature over the same receipt's core (ECDSA is randomized: verify it).
  const again = await signReceipt(plain.receipt, pair);
  assert.equal(again.signature.fingerprint, sig.fingerprint);
  assert.equal(plain.receipt.signature, undefined, 'signReceipt returns a copy');
  const checked = await engine.verify(signed.receipt);
  assert.equal(checked.signer, sig.fingerprint);
  assert.equal(checked.signerKey, sig.key, 'verify gives the full key next to the fingerprint');
  assert.equal((await engine.verify(plain.receipt)).signerKey, null);

  // A receipt whose hashes do not match its fields is not signed: BAD_RECEIPT (from wasm).
  await assert.rejects(signReceipt({ ...plain.receipt, tokens: [7, 7] }, pair), { code: 'BAD_RECEIPT' });
  await assert.rejects(signReceipt(JSON.stringify({ ...plain.receipt, final: '00'.repeat(32) }), pair), { code: 'BAD_RECEIPT' });

  // Options checked before the generation starts.
  assert.throws(() => engine.generate('hi', { sign: true }), { code: 'KEYSTORE' });
  assert.throws(() => engine.generate('hi', { sign: 'yes' }), { code: 'INVALID_ARGUMENT' });
  const rsa = await crypto.subtle.generateKey({ name: 'RSASSA-PKCS1-v1_5', modulusLength: 1024, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-256' }, false, ['sign', 'verify']);
  assert.throws(() => engine.generate('hi', { sign: rsa }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(signReceipt(plain.receipt), { code: 'KEYSTORE' });
  assert.equal((await engine.generate('hi', { maxTokens: 1 }).result).tokens.length, 1, 'not BUSY after a refused option');
  engine.free();
});

test('private passes through; verify takes the opening, the trace and the binary form', async () => {
  const engine = await Engine.load(MODEL);
  mock.calls.length = 0;
  const r = await engine.generate('hi', { maxTokens: 2, private: true }).result;
  assert.equal(mock.calls[0], 'start({"prompt":"hi","maxTokens":2,"private":true})');
  assert.ok(r.receipt.commitments && r.opening?.kind === 'opening', JSON.stringify(r));
  assert.ok(r.trace instanceof Uint8Array);

  mock.calls.length = 0;
  const without = await engine.verify(r.receipt);
  assert.equal(without.reexecuted, false);
  const withOpening = await engine.verify(JSON.stringify(r.receipt), { opening: r.opening, trace: r.trace });
  assert.equal(withOpening.reexecuted, true);
  await engine.verify(r.receipt, { opening: JSON.stringify(r.opening) });
  assert.deepEqual(mock.calls, ['verify(-, -)', `verify(${JSON.stringify(r.opening)}, 4)`, `verify(${JSON.stringify(r.opening)}, -)`]);

  const bytes = await receiptToBytes(r.receipt);
  assert.equal(Buffer.from(bytes.subarray(0, 4)).toString(), 'EPRC');
  assert.deepEqual(await receiptFromBytes(bytes), r.receipt);
  assert.deepEqual(await receiptFromBytes(Buffer.from(bytes)), r.receipt, 'a Buffer is bytes too');
  assert.equal((await engine.verify(bytes, { opening: r.opening })).reexecuted, true);
  assert.equal((await verifyReceipt(bytes, MODEL, { opening: r.opening })).reexecuted, true);
  assert.equal(await code(() => receiptFromBytes(Uint8Array.of(1, 2, 3, 4))), 'BAD_RECEIPT');
  assert.equal(await code(() => engine.verify(r.receipt, { trace: 'not bytes' })), 'INVALID_ARGUMENT');
  assert.equal(await code(() => engine.verify(r.receipt, { opening: 42 })), 'INVALID_ARGUMENT');
  assert.equal(await code(() => engine.verify(42)), 'BAD_RECEIPT');
  engine.free();
});

test("sign: a pair whose public key does not match its private key is refused (CRYPTO), not signed", async () => {
  const engine = await Engine.load(MODEL);
  const a = await crypto.subtle.generateKey(P256, false, ['sign', 'verify']);
  const b = await crypto.subtle.generateKey(P256, false, ['sign', 'verify']);
  const mixed = { privateKey: a.privateKey, publicKey: b.publicKey };
  const warn = console.warn;
  console.warn = () => {};
  try {
    const r = await engine.generate('hi', { maxTokens: 2, sign: mixed }).result;
    assert.equal(r.receipt.signature, undefined, 'left unsigned');
    assert.equal(r.signError?.code, 'CRYPTO');
    assert.match(r.signError.message, /public key does not match its private key/);
  } finally {
    console.warn = warn;
  }
  const plain = await engine.generate('hi', { maxTokens: 2 }).result;
  await assert.rejects(signReceipt(plain.receipt, mixed), (e) => e.code === 'CRYPTO' && /does not match/.test(e.message));
  assert.ok((await signReceipt(plain.receipt, a)).signature, 'the matching pair signs');

  // The public key must be usable to check the signature: refused before the generation starts.
  const noVerify = await crypto.subtle.generateKey(P256, false, ['sign']);
  assert.throws(() => engine.generate('hi', { sign: noVerify }), { code: 'INVALID_ARGUMENT' });
  engine.free();
});

// A stand-in for IndexedDB, enough for keys.js: open (optionally blocked until release()), one
// object store, get and put in a transaction that completes after the get's callback.
function fakeIndexedDB({ blocked = false, putThrows = null } = {}) {
  const state = { closed: 0, records: new Map(), release: null };
  const later = (fn) => setTimeout(fn);
  const connection = () => ({
    close: () => state.closed++,
    createObjectStore() {},
    transaction() {
      const tx = {
        error: null,
        done: false,
        abort() {
          if (tx.done) throw new DOMException('finished', 'InvalidStateError');
          tx.done = true;
          later(() => tx.onabort?.());
        },
        objectStore: () => store,
      };
      const store = {
        get(key) {
          const req = {};
          later(() => {
            if (tx.done) return;
            req.result = state.records.get(key);
            req.onsuccess?.();
            if (!tx.done) {
              tx.done = true;
              later(() => tx.oncomplete?.());
            }
          });
          return req;
        },
        put(value, key) {
          if (putThrows) throw putThrows;
          state.records.set(key, value);
        },
      };
      return tx;
    },
  });
  const open = () => {
    const req = {};
    const succeed = () => {
      req.result = connection();
      req.onupgradeneeded?.();
      req.onsuccess?.();
    };
    later(() => {
      if (!blocked) return succeed();
      state.release = succeed;
      req.onblocked?.();
    });
    return req;
  };
  return { state, open };
}

test('device key: a blocked open closes the connection that opens later; a failed put keeps its cause (KEYSTORE)', async () => {
  const keys = await import(pathToFileURL(join(dir, 'keys.js')));
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'indexedDB');
  const use = (fake) => Object.defineProperty(globalThis, 'indexedDB', { value: fake, configurable: true, writable: true });
  try {
    const blocked = fakeIndexedDB({ blocked: true });
    use(blocked);
    await assert.rejects(keys.deviceKeyPair(), (e) => e.code === 'KEYSTORE' && /blocked/.test(e.message));
    blocked.state.release(); // the other tab closed: the open request succeeds after all
    assert.equal(blocked.state.closed, 1, 'the late connection is closed');

    const cause = new DOMException('CryptoKey could not be cloned', 'DataCloneError');
    const unclonable = fakeIndexedDB({ putThrows: cause });
    use(unclonable);
    await assert.rejects(keys.deviceKeyPair(), (e) => e.code === 'KEYSTORE' && e.cause === cause && /storing the device key: CryptoKey could not be cloned/.test(e.message));
    assert.equal(unclonable.state.closed, 1);
    assert.equal(unclonable.state.records.size, 0);

    const fine = fakeIndexedDB();
    use(fine);
    const pair = await keys.deviceKeyPair();
    assert.equal(fine.state.records.get(keys.DEVICE_KEY), pair, 'stored, once a call succeeds (earlier failures are not cached)');
    assert.equal(fine.state.closed, 1);
    const engine = await Engine.load(MODEL);
    const signed = await signReceipt((await engine.generate('hi', { maxTokens: 1 }).result).receipt, pair);
    assert.equal(signed.signature.fingerprint, (await keys.deviceKey()).fingerprint);
    engine.free();
  } finally {
    if (saved) Object.defineProperty(globalThis, 'indexedDB', saved);
    else delete globalThis.indexedDB;
  }
});

// Last: a panic leaves the module unusable for every later test.
test('a panic inside a step rejects the pending call with PANIC, and every later call', async () => {
  const engine = await Engine.load(MODEL);
  const g = engine.generate('hi', { maxTokens: 5 });
  mock.panicNextStep();
  await assert.rejects(g.next(), (e) => e.code === 'PANIC' && /mock/.test(e.message));
  assert.equal(await code(() => engine.tokenize('x')), 'PANIC');
});
