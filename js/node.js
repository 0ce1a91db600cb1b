// Node.js (>= 18): the same Engine and Embedder on the wasm CPU path, loading model files from disk.
import { webcrypto } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { initSync } from './edgeproof_wasm.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BaseEngine,
  EdgeproofError,
  ModelSource,
  asError,
  fromBytes,
  initWasm,
  loadWasm,
  responseSource,
  signWith,
  sourceOf,
  throwIfAborted,
  toBytes,
  useSubtle,
  verifyWith,
} from './core.js';
import { BaseEmbedder, encoderParts, folderUrl, loadEncoderWasm } from './embed.js';

export { EdgeproofError, ERROR_CODES, Generation } from './core.js';
export { cosine } from './embed.js';

// Node 18 has WebCrypto only here (globalThis.crypto came in Node 19).
useSubtle(globalThis.crypto?.subtle ?? webcrypto.subtle);

// Node's fetch cannot read file: URLs, so the .wasm is read and compiled synchronously.
const ready = () => initWasm(() => initSync({ module: readFileSync(new URL('./edgeproof_wasm_bg.wasm', import.meta.url)) }));

/** A path, file: URL or http(s): URL; anything else goes to `sourceOf`. */
async function nodeSource(source, signal) {
  const href = source instanceof URL ? source.href : source;
  if (typeof href === 'string' && /^https?:/i.test(href)) {
    let response;
    try {
      response = await fetch(href, { signal });
    } catch (e) {
      throw asError(e, 'NETWORK', `fetching ${href} failed`);
    }
    return responseSource(response, signal);
  }
  if (typeof source === 'string' || source instanceof URL) {
    let size;
    try {
      ({ size } = await stat(source));
    } catch (e) {
      throw asError(e, 'IO', `reading ${href}`);
    }
    const stream = createReadStream(source, { highWaterMark: 1 << 22, signal });
    return new ModelSource(stream, { total: size, readCode: 'IO' });
  }
  return sourceOf(source, signal);
}

/** A model loaded on the CPU under Node.js. */
export class Engine extends BaseEngine {
  /**
   * Loads a model from a path, `file:` or `http(s):` URL, `Uint8Array`/`Buffer`,
   * `ArrayBuffer`, or async iterable of Uint8Array. Options: `onProgress`, `signal`, `sha256`.
   * @returns {Promise<Engine>}
   */
  static async load(source, opts = {}) {
    throwIfAborted(opts.signal);
    await ready();
    const wasm = await loadWasm(await nodeSource(source, opts.signal), 'cpu', opts);
    return new Engine(wasm, { backendReason: 'Node.js has no WebGPU here: the wasm CPU path' });
  }
}

/** A file in the encoder's folder: a path, a `file:` URL or an `http(s):` URL. */
function inFolder(base, name) {
  const href = base instanceof URL ? base.href : base;
  if (/^https?:/i.test(href)) return new URL(name, folderUrl(href)).href;
  return join(/^file:/i.test(href) ? fileURLToPath(href) : href, name);
}

/** A sentence encoder loaded on the CPU under Node.js. */
export class Embedder extends BaseEmbedder {
  /**
   * Loads a BERT checkpoint: its folder (a path, `file:` or `http(s):` URL) holding
   * model.safetensors, config.json and tokenizer.json, or `{ model, config, tokenizer }`, each
   * a path, URL, bytes or async iterable of chunks. Options: `onProgress`, `signal`.
   * @returns {Promise<Embedder>}
   */
  static async load(source, opts = {}) {
    throwIfAborted(opts.signal);
    await ready();
    const parts = encoderParts(source, inFolder);
    const open = async (file) => ({ source: await nodeSource(parts[file], opts.signal) });
    const wasm = await loadEncoderWasm(open, 'cpu', opts);
    return new Embedder(wasm, { backendReason: 'Node.js has no WebGPU here: the wasm CPU path' });
  }
}

/**
 * Verifies `receipt` (object or JSON) against the model at `source` (as `Engine.load`; an
 * embedding receipt against the encoder, as `Embedder.load`).
 */
export function verifyReceipt(receipt, source, opts = {}) {
  return verifyWith((s, o) => Engine.load(s, o), receipt, source, opts, (s, o) => Embedder.load(s, o));
}

/** A receipt's binary form (a Uint8Array, magic "EPRC") from the receipt object or its JSON. */
export async function receiptToBytes(receipt) {
  await ready();
  return toBytes(receipt);
}

/** A binary receipt (Uint8Array, Buffer or ArrayBuffer) as the receipt object. */
export async function receiptFromBytes(bytes) {
  await ready();
  return fromBytes(bytes);
}

/**
 * The receipt (an object, its JSON or its binary form) signed by `keyPair`, a CryptoKeyPair of
 * ECDSA P-256 keys (`crypto.subtle`): a copy with `signature` set. Node keeps no device key.
 */
export async function signReceipt(receipt, keyPair) {
  await ready();
  if (!keyPair) throw new EdgeproofError('KEYSTORE', 'Node.js keeps no device key: pass a CryptoKeyPair');
  return signWith(receipt, keyPair);
}
