// Receipts v2 across implementations: private receipts and their openings, signatures by the
// device key (Chromium, kept in IndexedDB) and by a CLI key file, binary receipts, traces; each
// made on one side (Chromium, the CLI) and verified on the others (the CLI, Node, Chromium),
// naming the same signer. Also: the device key persists and cannot be exported, tampered or
// borrowed signatures fail with kind 'signature', a stripped one verifies unsigned, and a
// private receipt as published carries none of its prompt's or output's text.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI } from './fixtures.mjs';
import { MODELS, TIMEOUT, artifacts, repo, setup } from './harness.mjs';

let h, node, glue;
before(async () => {
  h = await setup();
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: cargo build --release -p edgeproof --bin edgeproof`);
  const help = spawnSync(CLI, ['key', '--help'], { encoding: 'utf8' });
  if (help.status !== 0) throw new Error(`${CLI} has no 'key' command (receipts v2): rebuild it\n${help.stderr}`);
  node = await import(pathToFileURL(join(repo, 'pkg/node.js')));
  for (const name of ['receiptToBytes', 'receiptFromBytes', 'signReceipt']) {
    if (typeof node[name] !== 'function') throw new Error(`pkg/node.js does not export ${name}: run scripts/build-pkg.sh`);
  }
  await node.receiptToBytes('{}').catch(() => {}); // instantiates the wasm module
  glue = await import(pathToFileURL(join(repo, 'pkg/edgeproof_wasm.js')));
});
after(() => h?.close());

// The prompt and the output it gives on the tiny model (greedy) share no text with a receipt's
// field names or values.
const PROMPT = 'The capital of France is';
const ES256 = { name: 'ECDSA', hash: 'SHA-256' };

/** Runs the CLI; returns { status, stdout, stderr } (it does not throw on exit 1). */
function cli(...args) {
  const r = spawnSync(CLI, args, { encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.status === 2) throw new Error(`edgeproof ${args.join(' ')} failed (exit 2):\n${r.stderr}${r.stdout}`);
  return r;
}

const file = (name) => join(artifacts, `receipt-v2-${name}`);

/**
 * Every piece (at least 4 characters) of `text` that `json` contains. Hashes, base64url fields
 * and signatures are random-looking: a short piece made of their alphabet may occur there by
 * chance, so such pieces are looked for with those values blanked, and the whole text's pieces
 * of 8 characters in the JSON as it is.
 */
function leaks(json, text) {
  const blanked = JSON.stringify(JSON.parse(json), (key, v) =>
    typeof v === 'string' && (/^[0-9a-f]{32,}$/.test(v) || ['steps', 'key', 'value', 'fingerprint'].includes(key)) ? '' : v,
  );
  const found = new Set();
  for (let n = 4; n <= text.length; n++) {
    for (let i = 0; i + n <= text.length; i++) {
      const piece = text.slice(i, i + n);
      const randomAlphabet = /^[A-Za-z0-9_-]+$/.test(piece);
      if ((randomAlphabet && n < 8 ? blanked : json).includes(piece)) found.add(piece);
    }
  }
  return [...found];
}

function assertPrivate(receipt, opening) {
  const json = JSON.stringify(receipt);
  for (const field of ['prompt', 'prompt_ids', 'tokens', 'output']) {
    assert.equal(field in receipt, false, `a private receipt has no ${field} field`);
  }
  assert.match(receipt.commitments?.prompt ?? '', /^[0-9a-f]{64}$/, 'commitments.prompt');
  assert.match(receipt.commitments?.output ?? '', /^[0-9a-f]{64}$/, 'commitments.output');
  assert.ok(!/"prompt_ids"|"tokens"/.test(json), 'no prompt_ids or tokens anywhere');
  const prompt = opening.prompt.text ?? opening.prompt.messages.map((m) => m.content).join('\n');
  assert.equal(prompt, PROMPT);
  assert.ok(opening.output.length >= 4, `an output to look for: ${JSON.stringify(opening.output)}`);
  assert.deepEqual(leaks(json, prompt), [], 'pieces of the prompt in the private receipt');
  assert.deepEqual(leaks(json, opening.output), [], 'pieces of the output in the private receipt');
}

/** The fingerprint a signature's `key` gives: hex of the first 8 bytes of SHA-256 of its 65 bytes. */
async function fingerprintOf(key) {
  const raw = Buffer.from(key, 'base64url');
  assert.equal(raw.length, 65);
  return Buffer.from(await crypto.subtle.digest('SHA-256', raw)).subarray(0, 8).toString('hex');
}

let chromiumMade; // the private receipt made in Chromium: { receipt, opening, trace, fingerprint }

test('a private receipt signed by the device key in Chromium verifies with the CLI and under Node, naming the same signer', { timeout: TIMEOUT }, async (t) => {
  const r = await h.page(t, (page) =>
    page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const out = await engine.generate(prompt, { maxTokens: 8, private: true }).result;
      const key = await Engine.deviceKey();
      const verified = await engine.verify(out.receipt, { opening: out.opening, trace: out.trace });
      const unopened = await engine.verify(out.receipt);
      engine.free();
      return { ...out, trace: out.trace && [...out.trace], key, verified, unopened };
    }, { model: MODELS.tiny, prompt: PROMPT }),
  );
  assert.equal(r.signError, null, JSON.stringify(r.signError));
  assert.ok(r.receipt.signature, 'signed by default in a page');
  const fp = r.key.fingerprint;
  assert.match(fp, /^[0-9a-f]{16}$/);
  assert.equal(r.receipt.signature.fingerprint, fp);
  assert.equal(await fingerprintOf(r.receipt.signature.key), fp);
  assert.equal(r.opening.kind, 'opening');
  assert.ok(r.trace?.length > 4, 'a trace');
  assertPrivate(r.receipt, r.opening);
  assert.equal(r.verified.ok, true, r.verified.report);
  assert.equal(r.verified.reexecuted, true);
  assert.equal(r.verified.signer, fp);
  assert.equal(r.unopened.reexecuted, false, r.unopened.report);
  assert.equal(r.unopened.ok, false);
  assert.equal(r.unopened.signer, fp);

  const trace = Uint8Array.from(r.trace);
  assert.equal(Buffer.from(trace.subarray(0, 4)).toString('latin1'), 'EPTR');
  writeFileSync(file('chromium.json'), JSON.stringify(r.receipt, null, 2));
  writeFileSync(file('chromium-opening.json'), JSON.stringify(r.opening));
  writeFileSync(file('chromium.trace'), trace);
  chromiumMade = { receipt: r.receipt, opening: r.opening, trace, fingerprint: fp };

  const native = cli('verify', file('chromium.json'), '--model', h.fixtures.tiny, '--opening', file('chromium-opening.json'), '--trace', file('chromium.trace'));
  assert.equal(native.status, 0, `the CLI: ${native.stdout}${native.stderr}`);
  assert.match(native.stdout, new RegExp(`signed by ${fp}`), native.stdout);
  const nativeUnopened = cli('verify', file('chromium.json'), '--model', h.fixtures.tiny);
  assert.equal(nativeUnopened.status, 1, 'not re-executed: exit 1');
  assert.match(nativeUnopened.stdout, /NOT re-executed/);
  assert.match(nativeUnopened.stdout, new RegExp(fp));

  const underNode = await node.verifyReceipt(r.receipt, h.fixtures.tiny, { opening: r.opening, trace });
  assert.equal(underNode.ok, true, underNode.report);
  assert.equal(underNode.reexecuted, true);
  assert.equal(underNode.signer, fp);
  assert.equal(underNode.stepsMatched, 8);
  const nodeUnopened = await node.verifyReceipt(JSON.stringify(r.receipt), h.fixtures.tiny);
  assert.equal(nodeUnopened.reexecuted, false);
  assert.equal(nodeUnopened.signer, fp);
});

test('a private receipt signed by the CLI verifies in Chromium and under Node with its opening; without it only its signer is named; a binary one verifies too', { timeout: TIMEOUT }, async (t) => {
  const key = file('cli-key.jwk');
  rmSync(key, { force: true }); // key new never overwrites a key file
  const made = execFileSync(CLI, ['key', 'new', key], { encoding: 'utf8' });
  const fp = made.match(/[0-9a-f]{16}/)?.[0];
  assert.ok(fp, `key new printed no fingerprint: ${made}`);
  const [receiptFile, openingFile, traceFile, binFile] = ['cli.json', 'cli-opening.json', 'cli.trace', 'cli.bin'].map(file);
  cli('generate', '--model', h.fixtures.tiny, '--prompt', PROMPT, '--max-tokens', '8', '--receipt', receiptFile, '--private', '--opening', openingFile, '--trace', traceFile, '--sign', key);
  cli('generate', '--model', h.fixtures.tiny, '--prompt', PROMPT, '--max-tokens', '8', '--receipt', binFile, '--binary', '--sign', key);
  const json = readFileSync(receiptFile, 'utf8');
  const openingJson = readFileSync(openingFile, 'utf8');
  const receipt = JSON.parse(json);
  assert.equal(receipt.signature?.fingerprint, fp);
  assertPrivate(receipt, JSON.parse(openingJson));
  const bin = readFileSync(binFile);
  assert.equal(bin.subarray(0, 4).toString('latin1'), 'EPRC');

  const inChromium = await h.page(t, (page) =>
    page.evaluate(async ({ model, json, openingJson, trace, bin }) => {
      const { verifyReceipt, receiptFromBytes } = await import('/pkg/index.js');
      const { WorkerEngine } = await import('/pkg/worker.js');
      const opts = { backend: 'cpu' };
      const opened = await verifyReceipt(json, model, { ...opts, opening: JSON.parse(openingJson) });
      const unopened = await verifyReceipt(json, model, opts);
      const binary = await verifyReceipt(Uint8Array.from(bin), model, opts);
      const fromBytes = await receiptFromBytes(Uint8Array.from(bin));
      // Through a worker: the opening as JSON, the trace as bytes.
      const worker = await WorkerEngine.load(undefined, model, opts);
      const inWorker = await worker.verify(json, { opening: openingJson, trace: Uint8Array.from(trace) });
      const binaryInWorker = await worker.verify(Uint8Array.from(bin));
      worker.free();
      return { opened, unopened, binary, fromBytes, inWorker, binaryInWorker };
    }, { model: MODELS.tiny, json, openingJson, trace: [...readFileSync(traceFile)], bin: [...bin] }),
  );
  for (const [name, v] of Object.entries({ opened: inChromium.opened, inWorker: inChromium.inWorker, binary: inChromium.binary, binaryInWorker: inChromium.binaryInWorker })) {
    assert.equal(v.ok, true, `${name}: ${v.report}`);
    assert.equal(v.reexecuted, true, name);
    assert.equal(v.signer, fp, name);
  }
  assert.equal(inChromium.unopened.ok, false);
  assert.equal(inChromium.unopened.reexecuted, false, inChromium.unopened.report);
  assert.equal(inChromium.unopened.signer, fp);
  assert.match(inChromium.unopened.report, /NOT re-executed/);
  assert.equal(inChromium.fromBytes.signature.fingerprint, fp);

  const opened = await node.verifyReceipt(json, h.fixtures.tiny, { opening: openingJson, trace: readFileSync(traceFile) });
  assert.equal(opened.ok, true, opened.report);
  assert.equal(opened.reexecuted, true);
  assert.equal(opened.signer, fp);
  const unopened = await node.verifyReceipt(receipt, h.fixtures.tiny);
  assert.equal(unopened.ok, false);
  assert.equal(unopened.reexecuted, false);
  assert.equal(unopened.signer, fp);
  assert.match(unopened.report, new RegExp(fp));

  const binary = await node.verifyReceipt(bin, h.fixtures.tiny);
  assert.equal(binary.ok, true, binary.report);
  assert.equal(binary.signer, fp);
  assert.equal(binary.stepsMatched, 8);
  // The binary form round-trips: to an object and back to the same bytes.
  const object = await node.receiptFromBytes(bin);
  assert.equal(object.version, 2);
  assert.deepEqual(Buffer.from(await node.receiptToBytes(object)), bin);
  // A wrong opening is a finding of kind 'opening', not a re-execution of something else.
  const wrong = { ...JSON.parse(openingJson), output: `${JSON.parse(openingJson).output}!` };
  const mismatch = await node.verifyReceipt(receipt, h.fixtures.tiny, { opening: wrong });
  assert.equal(mismatch.ok, false);
  assert.equal(mismatch.divergence?.kind, 'opening', JSON.stringify(mismatch));
});

test('the device key persists across reloads and workers, cannot be exported, and Engine.deviceKey() gives its JWK and fingerprint', { timeout: TIMEOUT }, async (t) => {
  const r = await h.page(t, async (page) => {
    const first = await page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const key = await Engine.deviceKey();
      const engine = await Engine.load(model, { backend: 'cpu' });
      const { receipt } = await engine.generate(prompt, { maxTokens: 4 }).result;
      const unsigned = (await engine.generate(prompt, { maxTokens: 4, sign: false }).result).receipt;
      engine.free();
      // The stored pair, read as the package documents it.
      const record = await new Promise((resolve, reject) => {
        const open = indexedDB.open('edgeproof-keys');
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction('keys').objectStore('keys').get('device');
          get.onsuccess = () => resolve(get.result);
          get.onerror = () => reject(get.error);
        };
      });
      const exports = {};
      for (const format of ['pkcs8', 'jwk']) {
        exports[format] = await crypto.subtle.exportKey(format, record.privateKey).then(() => 'exported', (e) => e.name);
      }
      return {
        key, receipt, unsigned, exports,
        extractable: record.privateKey.extractable,
        usages: record.privateKey.usages,
      };
    }, { model: MODELS.tiny, prompt: PROMPT });
    await page.reload();
    const second = await page.evaluate(async ({ model, prompt }) => {
      const { Engine } = await import('/pkg/index.js');
      const { WorkerEngine } = await import('/pkg/worker.js');
      const key = await Engine.deviceKey();
      const workerKey = await WorkerEngine.deviceKey();
      // The worker signs with the origin's device key too; a CryptoKeyPair crosses to it.
      const worker = await WorkerEngine.load(undefined, model, { backend: 'cpu' });
      const inWorker = await worker.generate(prompt, { maxTokens: 4 }).result;
      const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
      const own = await worker.generate(prompt, { maxTokens: 4, sign: pair }).result;
      const ownRaw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
      worker.free();
      return { key, workerKey, inWorker: inWorker.receipt, traceIsBytes: inWorker.trace instanceof Uint8Array, own: own.receipt, ownRaw: [...ownRaw] };
    }, { model: MODELS.tiny, prompt: PROMPT });
    return { first, second };
  });
  const { first, second } = r;
  const fp = first.key.fingerprint;
  assert.deepEqual(Object.keys(first.key.jwk).sort(), ['crv', 'kty', 'x', 'y']);
  assert.equal(first.key.jwk.crv, 'P-256');
  assert.equal(first.receipt.signature?.fingerprint, fp, 'the default signs with the device key');
  assert.equal(first.unsigned.signature, undefined, 'sign: false');
  assert.equal(first.extractable, false);
  assert.deepEqual(first.usages, ['sign']);
  assert.notEqual(first.exports.pkcs8, 'exported', 'the private key exported as pkcs8');
  assert.notEqual(first.exports.jwk, 'exported', 'the private key exported as JWK');

  assert.equal(second.key.fingerprint, fp, 'the same key after a reload');
  assert.deepEqual(second.key.jwk, first.key.jwk);
  assert.equal(second.workerKey.fingerprint, fp);
  assert.equal(second.inWorker.signature?.fingerprint, fp, 'the worker signs with the same device key');
  assert.equal(second.traceIsBytes, true, "the worker's trace arrives as a Uint8Array");
  assert.equal(second.own.signature?.key, Buffer.from(second.ownRaw).toString('base64url'), 'a CryptoKeyPair crossed to the worker');

  // The JWK is the signature's key: it checks the signature over receiptSigningMessage.
  const publicKey = await crypto.subtle.importKey('jwk', first.key.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  assert.equal(Buffer.from(await crypto.subtle.exportKey('raw', publicKey)).toString('base64url'), first.receipt.signature.key);
  const { signature, ...core } = first.receipt;
  const message = glue.receiptSigningMessage(JSON.stringify(core));
  assert.equal(message.length, 32);
  assert.equal(await crypto.subtle.verify(ES256, publicKey, Buffer.from(signature.value, 'base64url'), message), true);
  for (const receipt of [first.receipt, second.inWorker, second.own]) {
    const v = await node.verifyReceipt(receipt, h.fixtures.tiny);
    assert.equal(v.ok, true, v.report);
    assert.equal(v.signer, receipt.signature.fingerprint);
    assert.equal(v.signerKey, receipt.signature.key, 'signerKey is the whole key');
  }
  assert.equal(first.receipt.signature.key, Buffer.from(await crypto.subtle.exportKey('raw', publicKey)).toString('base64url'));
  // The wasm module signs only a receipt whose hashes match its fields.
  assert.throws(() => glue.receiptSigningMessage(JSON.stringify({ ...core, final: '00'.repeat(32) })), (e) => e.code === 'BAD_RECEIPT' && /refusing to sign/.test(e.message));
});

test("a tampered or borrowed signature fails with kind 'signature'; a stripped one verifies with signer null", { timeout: TIMEOUT }, async (t) => {
  assert.ok(chromiumMade, 'needs the first test’s receipt (run the whole file)');
  const { receipt, opening, fingerprint } = chromiumMade;
  const flip = (s) => (s[5] === 'A' ? 'B' : 'A');
  const value = receipt.signature.value;
  const tamperedValue = { ...receipt, signature: { ...receipt.signature, value: value.slice(0, 5) + flip(value) + value.slice(6) } };
  // Another receipt's signature by the same key: valid, but not over this receipt.
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  const engine = await node.Engine.load(h.fixtures.tiny);
  const other = (await engine.generate('Once upon a time', { maxTokens: 4, sign: pair }).result).receipt;
  const mine = await node.signReceipt(receipt, pair);
  engine.free();
  const borrowed = { ...mine, signature: other.signature };
  const cliBorrowed = { ...receipt, signature: JSON.parse(readFileSync(file('cli.json'), 'utf8')).signature };
  const { signature: _, ...stripped } = receipt;

  const cases = { tamperedValue, borrowed, cliBorrowed };
  for (const [name, r] of Object.entries(cases)) {
    const v = await node.verifyReceipt(r, h.fixtures.tiny, { opening });
    assert.equal(v.ok, false, `${name}: ${v.report}`);
    assert.equal(v.divergence?.kind, 'signature', `${name}: ${JSON.stringify(v.divergence)}`);
    assert.equal(v.signer, null, name);
  }
  const resigned = await node.verifyReceipt(mine, h.fixtures.tiny, { opening });
  assert.equal(resigned.ok, true, resigned.report);
  assert.notEqual(resigned.signer, fingerprint, 're-signed by another key');
  const plain = await node.verifyReceipt(stripped, h.fixtures.tiny, { opening });
  assert.equal(plain.ok, true, plain.report);
  assert.equal(plain.signer, null);
  assert.match(plain.report, /unsigned/);

  // The same verdicts in Chromium and from the CLI.
  const inChromium = await h.page(t, (page) =>
    page.evaluate(async ({ model, cases, stripped, opening }) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      const out = {};
      for (const [name, r] of Object.entries(cases)) out[name] = await engine.verify(r, { opening });
      out.stripped = await engine.verify(stripped, { opening });
      engine.free();
      return out;
    }, { model: MODELS.tiny, cases, stripped, opening }),
  );
  for (const name of Object.keys(cases)) {
    assert.equal(inChromium[name].divergence?.kind, 'signature', `Chromium, ${name}: ${inChromium[name].report}`);
    assert.equal(inChromium[name].signer, null);
  }
  assert.equal(inChromium.stripped.ok, true, inChromium.stripped.report);
  assert.equal(inChromium.stripped.signer, null);
  writeFileSync(file('tampered.json'), JSON.stringify(tamperedValue));
  writeFileSync(file('stripped.json'), JSON.stringify(stripped));
  const native = cli('verify', file('tampered.json'), '--model', h.fixtures.tiny, '--opening', file('chromium-opening.json'));
  assert.equal(native.status, 1, `the CLI verified a tampered signature: ${native.stdout}`);
  const nativePlain = cli('verify', file('stripped.json'), '--model', h.fixtures.tiny, '--opening', file('chromium-opening.json'));
  assert.equal(nativePlain.status, 0, nativePlain.stdout + nativePlain.stderr);
  assert.match(nativePlain.stdout, /unsigned/);
});

test('without IndexedDB receipts go unsigned by default and sign: true is KEYSTORE; a failing store keeps the receipt unsigned with signError', { timeout: TIMEOUT }, async (t) => {
  const noIdb = await h.page(
    t,
    (page) =>
      page.evaluate(async ({ model, prompt }) => {
        const { Engine } = await import('/pkg/index.js');
        const { codeOf } = await import('/helpers.js');
        const engine = await Engine.load(model, { backend: 'cpu' });
        const out = await engine.generate(prompt, { maxTokens: 2 }).result;
        const explicit = await codeOf(() => engine.generate(prompt, { sign: true }));
        const key = await codeOf(() => Engine.deviceKey());
        const invalid = await codeOf(() => engine.generate(prompt, { sign: 'yes' }));
        engine.free();
        return { signature: out.receipt.signature ?? null, signError: out.signError, explicit, key, invalid };
      }, { model: MODELS.tiny, prompt: PROMPT }),
    { initScript: () => Object.defineProperty(globalThis, 'indexedDB', { value: undefined, configurable: true }) },
  );
  assert.equal(noIdb.signature, null, 'unsigned by default without IndexedDB');
  assert.equal(noIdb.signError, null);
  assert.equal(noIdb.explicit.code, 'KEYSTORE', noIdb.explicit.message);
  assert.equal(noIdb.key.code, 'KEYSTORE', noIdb.key.message);
  assert.equal(noIdb.invalid.code, 'INVALID_ARGUMENT');

  // Storage full: IndexedDB refuses with QuotaExceededError.
  const full = await h.page(
    t,
    (page) =>
      page.evaluate(async ({ model, prompt }) => {
        const { Engine } = await import('/pkg/index.js');
        const { codeOf } = await import('/helpers.js');
        const engine = await Engine.load(model, { backend: 'cpu' });
        const out = await engine.generate(prompt, { maxTokens: 2 }).result;
        const key = await codeOf(() => Engine.deviceKey());
        const verified = await engine.verify(out.receipt);
        engine.free();
        return { receipt: out.receipt, signError: out.signError, key, verified };
      }, { model: MODELS.tiny, prompt: PROMPT }),
    {
      initScript: () => {
        IDBFactory.prototype.open = function () {
          throw new DOMException('the quota has been exceeded', 'QuotaExceededError');
        };
      },
    },
  );
  assert.ok(full.receipt, 'the receipt is kept');
  assert.equal(full.receipt.signature, undefined, 'unsigned');
  assert.equal(full.signError?.code, 'QUOTA', JSON.stringify(full.signError));
  assert.equal(full.key.code, 'QUOTA', full.key.message);
  assert.equal(full.verified.ok, true, full.verified.report);
  assert.equal(full.verified.signer, null);
});
