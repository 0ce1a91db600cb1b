// The browser API: Engine.supports(), Engine.load() (URL with an optional OPFS cache,
// Response, Blob, bytes, stream), generation, verification; Embedder.load() (a BERT checkpoint's
// folder or files), embeddings and their receipts. docs/API.md describes it.
import init, * as glue from './edgeproof_wasm.js';
import { cache, cachedFile, tempFile } from './cache.js';
import {
  BaseEngine,
  EdgeproofError,
  ModelSource,
  fromBytes,
  initWasm,
  loadWasm,
  asError,
  responseSource,
  sourceOf,
  streamChunks,
  signWith,
  throwIfAborted,
  toBytes,
  verifyWith,
} from './core.js';
import { deviceKey, deviceKeyPair, hasKeystore, keystoreMissing } from './keys.js';

import { BaseEmbedder, encoderParts, folderUrl, loadEncoderWasm } from './embed.js';

export { EdgeproofError, ERROR_CODES, Generation } from './core.js';
export { cosine } from './embed.js';

// `init()` with no argument finds the .wasm next to the glue through import.meta.url. In a
// worker, the threaded build (mt/, which WorkerEngine loads where the page is cross-origin
// isolated) then starts its pool, once; a page's thread may not block, so it stays on its own.
const ready = (threads) =>
  initWasm(async () => {
    await init();
    if (typeof WorkerGlobalScope !== 'undefined') await glue.startThreads(threads ?? defaultThreads());
  });

/** One thread per core, at most 8 (memory bandwidth, not cores, bounds a decode step beyond). */
function defaultThreads() {
  return Math.max(1, Math.min(globalThis.navigator?.hardwareConcurrency ?? 1, 8));
}

// Software rasterizers that expose WebGPU on the CPU: slower than the wasm CPU path.
const CPU_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|software|basic render|warp/i;

/** What this browser offers, from `navigator.gpu` directly (no download). */
async function supports() {
  const gpu = globalThis.navigator?.gpu;
  const adapter = gpu ? await gpu.requestAdapter().catch(() => null) : null;
  const info = adapter?.info ?? {};
  const isFallback = !!(info.isFallbackAdapter ?? adapter?.isFallbackAdapter);
  const names = [info.vendor, info.architecture, info.device, info.description].filter(Boolean);
  const l = adapter?.limits;
  return {
    webgpu: !!adapter,
    adapter: adapter && {
      name: [info.vendor, info.architecture].filter(Boolean).join(' ') || info.description || 'unknown',
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      description: info.description ?? '',
      isFallback,
      isCpu: isFallback || names.some((n) => CPU_ADAPTER.test(n)),
    },
    limits: l
      ? {
          maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
          maxBufferSize: l.maxBufferSize,
          maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
          maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        }
      : null,
    features: {
      packed4x8IntegerDotProduct: !!gpu?.wgslLanguageFeatures?.has('packed_4x8_integer_dot_product'),
      subgroups: !!adapter?.features.has('subgroups'),
      timestampQuery: !!adapter?.features.has('timestamp-query'),
      shaderF16: !!adapter?.features.has('shader-f16'),
    },
    crossOriginIsolated: globalThis.crossOriginIsolated === true,
    // Whether WorkerEngine can run the wasm CPU path on several threads (shared memory).
    threads: globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer === 'function',
  };
}

/** `'auto'` → the backend to load on, and a sentence saying why. */
async function chooseBackend(backend) {
  if (backend === 'cpu') return { backend, reason: "backend 'cpu' was requested" };
  if (backend === 'webgpu') {
    if (!globalThis.navigator?.gpu) {
      throw new EdgeproofError(
        'NO_ADAPTER',
        "backend 'webgpu' was requested, but this browser has no navigator.gpu (WebGPU unsupported or off, or not a secure context)",
      );
    }
    return { backend, reason: "backend 'webgpu' was requested" };
  }
  if (backend !== 'auto') {
    throw new EdgeproofError('INVALID_ARGUMENT', `backend must be 'auto', 'webgpu' or 'cpu', not ${String(backend)}`);
  }
  const { webgpu, adapter } = await supports();
  if (!globalThis.navigator?.gpu) return { backend: 'cpu', reason: 'WebGPU is not available here (no navigator.gpu): the wasm CPU path' };
  if (!webgpu) return { backend: 'cpu', reason: 'navigator.gpu.requestAdapter() found no adapter: the wasm CPU path' };
  if (adapter.isCpu) {
    return {
      backend: 'cpu',
      reason: `the WebGPU adapter (${adapter.name}) runs on the CPU, slower than the wasm CPU path`,
    };
  }
  return { backend: 'webgpu', reason: `a hardware WebGPU adapter (${adapter.name})` };
}

function isUrl(source) {
  return typeof source === 'string' || source instanceof URL;
}

async function fetchModel(url, signal) {
  try {
    return await fetch(url, { signal });
  } catch (e) {
    throw asError(e, 'NETWORK', `fetching ${url} failed`);
  }
}

/** A URL: from the OPFS cache when `cache` and it is there, else fetched (and stored). */
async function loadUrl(source, backend, opts) {
  const url = new URL(source, globalThis.location?.href).href;
  const { signal, sha256 } = opts;
  if (opts.cache) {
    const file = await cachedFile(url, sha256);
    if (file) {
      const source = new ModelSource(streamChunks(file.stream(), signal), { stage: 'cache', total: file.size });
      return { wasm: await loadWasm(source, backend, opts), cache: { status: 'hit' } };
    }
  }
  const response = await fetchModel(url, signal);
  const model = responseSource(response, signal);
  const temp = opts.cache ? await tempFile(model.total) : null;
  let wasm;
  try {
    wasm = await loadWasm(model, backend, opts, temp && ((chunk) => temp.write(chunk)));
  } catch (e) {
    await temp?.discard();
    throw e;
  }
  await temp?.commit(url, wasm.info().sha256);
  if (!opts.cache) return { wasm, cache: { status: 'off' } };
  const error = temp ? temp.error : new EdgeproofError('IO', 'the Origin Private File System is unavailable here');
  return { wasm, cache: error ? { status: 'failed', error: { code: error.code, message: error.message } } : { status: 'stored' } };
}

// `sign` defaults to the device key where IndexedDB and crypto.subtle are there.
const SIGNING = Object.freeze({ auto: hasKeystore, missing: keystoreMissing, deviceKeyPair });

/** A model loaded in this thread. */
export class Engine extends BaseEngine {
  /** What the browser offers (WebGPU adapter, limits, features), before any download. */
  static supports = supports;

  /**
   * The device key receipts are signed with: `{ jwk, fingerprint, createdAt }` (the public key),
   * made and stored in IndexedDB on first use (keys.js).
   */
  static deviceKey = deviceKey;

  /** The OPFS model cache: `list()`, `delete(key)`, `clear()`. */
  static cache = cache;

  /**
   * Loads a model: a URL (string or URL), `Response`, `Blob`/`File`, `ArrayBuffer`,
   * `Uint8Array` or `ReadableStream<Uint8Array>`. See docs/API.md for the options.
   * @returns {Promise<Engine>}
   */
  static async load(source, opts = {}) {
    const { backend = 'auto', signal } = opts;
    throwIfAborted(signal);
    const [choice] = await Promise.all([chooseBackend(backend), ready(opts.threads)]);
    const { wasm, cache } = isUrl(source)
      ? await loadUrl(source, choice.backend, opts)
      : { wasm: await loadWasm(sourceOf(source, signal), choice.backend, opts), cache: { status: 'off' } };
    return new Engine(wasm, { backendReason: choice.reason, cache }, SIGNING);
  }
}

const EXTENSIONS = { model: 'safetensors', config: 'json', tokenizer: 'json' };

/**
 * The three files of an encoder source, each read from OPFS (`cache` and there), fetched (and
 * written to a temporary OPFS file when `cache`), or read from a Blob, bytes or a stream.
 * `load(open)` loads them; the temporary files are kept once it succeeded, else removed.
 */
async function withEncoderFiles(source, opts, load) {
  const { signal } = opts;
  const parts = encoderParts(source, (base, name) => new URL(name, folderUrl(base, globalThis.location?.href)).href);
  const temps = []; // { file, url, temp }
  const open = async (file) => {
    const part = parts[file];
    if (!isUrl(part)) return { source: sourceOf(part, signal) };
    const url = new URL(part, globalThis.location?.href).href;
    if (opts.cache) {
      const cached = await cachedFile(url);
      if (cached) {
        return { source: new ModelSource(streamChunks(cached.stream(), signal), { stage: 'cache', total: cached.size }) };
      }
    }
    const model = responseSource(await fetchModel(url, signal), signal);
    if (!opts.cache) return { source: model };
    const temp = await tempFile(model.total);
    temps.push({ file, url, temp });
    return { source: model, tee: temp && ((chunk) => temp.write(chunk)) };
  };
  let wasm;
  try {
    wasm = await load(open);
  } catch (e) {
    await Promise.all(temps.map(({ temp }) => temp?.discard()));
    throw e;
  }
  const files = wasm.info().files;
  await Promise.all(temps.map(({ file, url, temp }) => temp?.commit(url, files[file].sha256, EXTENSIONS[file])));
  if (!opts.cache || !Object.values(parts).some(isUrl)) return { wasm, cache: { status: 'off' } };
  const failed = temps.map(({ temp }) => (temp ? temp.error : new EdgeproofError('IO', 'the Origin Private File System is unavailable here'))).find(Boolean);
  if (failed) return { wasm, cache: { status: 'failed', error: { code: failed.code, message: failed.message } } };
  return { wasm, cache: { status: temps.length ? 'stored' : 'hit' } };
}

/** A sentence encoder (all-MiniLM-L6-v2 and other BERT checkpoints) loaded in this thread. */
export class Embedder extends BaseEmbedder {
  /** The OPFS cache (shared with `Engine.cache`). */
  static cache = cache;

  /**
   * Loads a BERT checkpoint: its folder's URL (holding model.safetensors, config.json and
   * tokenizer.json) or `{ model, config, tokenizer }`, each a URL, `Response`, `Blob`,
   * `ArrayBuffer`, typed array or `ReadableStream`. See docs/API.md for the options.
   * @returns {Promise<Embedder>}
   */
  static async load(source, opts = {}) {
    const { backend = 'auto', signal } = opts;
    throwIfAborted(signal);
    const [choice] = await Promise.all([chooseBackend(backend), ready(opts.threads)]);
    const { wasm, cache } = await withEncoderFiles(source, opts, (open) => loadEncoderWasm(open, choice.backend, opts));
    return new Embedder(wasm, { backendReason: choice.reason, cache });
  }
}

/**
 * Loads the model from `source` (as `Engine.load`, same options; for an embedding receipt, the
 * encoder as `Embedder.load`), verifies `receipt` by re-execution, frees the model.
 */
export function verifyReceipt(receipt, source, opts = {}) {
  return verifyWith((s, o) => Engine.load(s, o), receipt, source, opts, (s, o) => Embedder.load(s, o));
}

/** A receipt's binary form (a Uint8Array, magic "EPRC") from the receipt object or its JSON. */
export async function receiptToBytes(receipt) {
  await ready();
  return toBytes(receipt);
}

/** A binary receipt (Uint8Array or ArrayBuffer) as the receipt object. */
export async function receiptFromBytes(bytes) {
  await ready();
  return fromBytes(bytes);
}

/**
 * The receipt (an object, its JSON or its binary form) signed by `keyPair` (a CryptoKeyPair of
 * ECDSA P-256 keys; by default the device key): a copy with `signature` set (replaced).
 */
export async function signReceipt(receipt, keyPair) {
  await ready();
  return signWith(receipt, keyPair ?? (await deviceKeyPair()));
}
