// What the browser entry (index.js), the worker (worker.js) and Node (node.js) share:
// errors, reading a model source into the wasm ModelLoader, and the Engine and Generation
// wrappers around the wasm exports (js/WASM_CONTRACT.md).
import {
  ModelLoader,
  lastPanic,
  loadEngine,
  receiptFromBytes,
  receiptSigningMessage,
  receiptToBytes,
  setPanicHook,
} from './edgeproof_wasm.js';

/** Codes thrown by the wasm module (the crate's `Error::code()`). */
const RUST_CODES = [
  'BAD_MAGIC', 'UNSUPPORTED_VERSION', 'TRUNCATED', 'CORRUPT', 'UNSUPPORTED_TENSOR_TYPE',
  'UNSUPPORTED_ARCHITECTURE', 'MISSING_TENSOR', 'BAD_TENSOR', 'MISSING_KEY', 'WRONG_TYPE', 'TOKENIZER',
  'CONTEXT_OVERFLOW', 'INVALID_ARGUMENT', 'IO', 'NO_ADAPTER', 'MISSING_LIMIT', 'MISSING_FEATURE',
  'DEVICE_LOST', 'OUT_OF_MEMORY', 'SHADER', 'GPU', 'BAD_RECEIPT', 'UNSUPPORTED_RECEIPT_VERSION',
  'ABORTED', 'BUSY', 'PANIC',
];
/** Codes of errors raised by the JavaScript layer itself. */
const JS_CODES = ['NETWORK', 'QUOTA', 'INTEGRITY', 'FREED', 'WORKER_GONE', 'KEYSTORE', 'CRYPTO'];

/** Every `code` an error from this package can carry. */
export const ERROR_CODES = Object.freeze([...RUST_CODES, ...JS_CODES]);

/** An error raised by the JavaScript layer; `code` is one of `ERROR_CODES`. */
export class EdgeproofError extends Error {
  constructor(code, message, options) {
    super(message, options);
    this.name = 'EdgeproofError';
    this.code = code;
  }
}

// Once the module trapped on a Rust panic it is unusable: every later call throws this.
let panic = null;

/**
 * Errors from wasm already carry a `code` and pass unchanged; a trap becomes `PANIC` (with
 * the panic's message); an `AbortError` (fetch, fs streams) becomes `ABORTED`; anything else
 * becomes `code` when one is given.
 */
export function asError(e, code, context) {
  if (typeof e?.code === 'string' && ERROR_CODES.includes(e.code)) return e;
  if (e instanceof WebAssembly.RuntimeError) {
    let message = e.message;
    try {
      message = lastPanic() ?? message;
    } catch {} // the module may be too broken to answer
    panic ??= new EdgeproofError('PANIC', `edgeproof panicked (a bug; load the page again): ${message}`, { cause: e });
    return panic;
  }
  if (e?.name === 'AbortError') return new EdgeproofError('ABORTED', 'aborted', { cause: e });
  if (!code) return e;
  const what = e?.message ?? String(e);
  return new EdgeproofError(code, context ? `${context}: ${what}` : what, { cause: e });
}

// Rejected by the panic hook before the module traps: async calls race it, so that a panic
// inside one (whose promise would never settle) still ends it with PANIC.
let rejectPanicked;
const panicked = new Promise((_, reject) => {
  rejectPanicked = reject;
});
panicked.catch(() => {});

function onPanic(message) {
  panic ??= new EdgeproofError('PANIC', `edgeproof panicked (a bug; load the page again): ${message}`);
  rejectPanicked(panic);
}

/** `call` for wasm's async exports: also settles (PANIC) when the module panics meanwhile. */
export function callAsync(fn) {
  return Promise.race([call(fn), panicked]);
}

/** Runs `fn` (a call into wasm), turning a trap into `PANIC`; refuses once one happened. */
export function call(fn) {
  if (panic) throw panic;
  try {
    return fn();
  } catch (e) {
    throw asError(e);
  }
}

export function throwIfAborted(signal) {
  if (signal?.aborted) throw new EdgeproofError('ABORTED', 'aborted', { cause: signal.reason });
}

let ready = null;
/** Instantiates the wasm module once (`init` differs per environment), then the panic hook. */
export function initWasm(init) {
  ready ??= Promise.resolve()
    .then(init)
    .then(() => setPanicHook(onPanic))
    .catch((e) => {
      ready = null; // a failed fetch of the .wasm may succeed on a later call
      throw e;
    });
  return ready;
}

/**
 * A model's bytes as they arrive: `chunks` (an async iterable of Uint8Array), `stage` (the
 * progress stage that reading reports), `total` (its length when known) and `readCode` (the
 * code a failure to read becomes).
 */
export class ModelSource {
  constructor(chunks, { stage = 'read', total, readCode = 'NETWORK' } = {}) {
    this.chunks = chunks;
    this.stage = stage;
    this.total = total;
    this.readCode = readCode;
  }
}

const SLICE = 1 << 22;

async function* slices(bytes) {
  for (let at = 0; at < bytes.length; at += SLICE) yield bytes.subarray(at, at + SLICE);
}

/** Reads a ReadableStream chunk by chunk; aborting `signal` cancels it. */
export async function* streamChunks(stream, signal) {
  const reader = stream.getReader();
  const cancel = () => reader.cancel().catch(() => {});
  signal?.addEventListener('abort', cancel, { once: true });
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      throwIfAborted(signal); // a cancelled read resolves `done`: not the end of the file
      if (done) {
        finished = true;
        return;
      }
      yield value;
    }
  } finally {
    signal?.removeEventListener('abort', cancel);
    if (!finished) cancel(); // the consumer stopped (a bad header): stop the download too
  }
}

/** A fetch `Response`: HTTP errors are `NETWORK`; `total` is the Content-Length. */
export function responseSource(response, signal) {
  if (!response.ok) {
    throw new EdgeproofError('NETWORK', `HTTP ${response.status} ${response.statusText} for ${response.url}`.trim());
  }
  if (!response.body) throw new EdgeproofError('NETWORK', `no body in the response for ${response.url}`);
  // Content-Length counts encoded bytes: not comparable with the file when compressed.
  const length = Number(response.headers.get('content-length'));
  const total = length > 0 && !response.headers.get('content-encoding') ? length : undefined;
  return new ModelSource(streamChunks(response.body, signal), { stage: 'download', total });
}

/**
 * Every source but a URL: a `ModelSource`, `Response`, `Blob`/`File`, `ArrayBuffer`, typed
 * array, `ReadableStream<Uint8Array>`, or any async iterable of Uint8Array (Node streams).
 */
export function sourceOf(source, signal) {
  if (source instanceof ModelSource) return source;
  if (typeof Response !== 'undefined' && source instanceof Response) return responseSource(source, signal);
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return new ModelSource(streamChunks(source.stream(), signal), { total: source.size });
  }
  if (source instanceof ArrayBuffer) source = new Uint8Array(source);
  if (ArrayBuffer.isView(source)) {
    const bytes = new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
    return new ModelSource(slices(bytes), { total: bytes.length });
  }
  if (typeof ReadableStream !== 'undefined' && source instanceof ReadableStream) {
    return new ModelSource(streamChunks(source, signal));
  }
  if (typeof source?.[Symbol.asyncIterator] === 'function') return new ModelSource(source);
  throw new EdgeproofError('INVALID_ARGUMENT', `not a model source: ${Object.prototype.toString.call(source)}`);
}

/** The `onProgress(stage, loaded, total)` that Rust calls, forwarding `{ stage, loaded, total }`. */
export function rustProgress(onProgress) {
  if (!onProgress) return undefined;
  return (stage, loaded, total) => report(onProgress, stage, loaded, total);
}

/** Whether the module trapped on a panic (then nothing in it may be freed). */
export function hasPanicked() {
  return panic !== null;
}

function report(onProgress, stage, loaded, total, file) {
  try {
    onProgress(file ? { stage, loaded, total, file } : { stage, loaded, total });
  } catch (e) {
    console.error('edgeproof: onProgress threw', e); // a callback's bug must not break the load
  }
}

/**
 * Reads `source` (a ModelSource) into `sink` (`push(chunk)`, which throws on bad bytes,
 * `received()`, `expected()`), reporting progress (with `file` when given). `tee(chunk)` sees
 * each chunk once it was accepted (the OPFS cache writes it); it must not throw. A download
 * shorter than its Content-Length is `NETWORK`. Stops reading (and the download) on failure.
 */
export async function pump(source, sink, { onProgress, signal, file } = {}, tee) {
  const chunks = source.chunks[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      let next;
      try {
        next = await chunks.next();
      } catch (e) {
        throw asError(e, source.readCode, `reading ${file ? `the ${file} file of ` : ''}the model failed`);
      }
      throwIfAborted(signal);
      if (next.done) break;
      sink.push(next.value); // throws as soon as the header is known to be bad
      await tee?.(next.value);
      if (onProgress) {
        const received = sink.received();
        const known = source.total >= received ? source.total : sink.expected();
        report(onProgress, source.stage, received, known, file);
      }
    }
    finished = true;
  } finally {
    if (!finished) chunks.return?.().catch?.(() => {});
  }
  if (source.total !== undefined && source.stage === 'download' && sink.received() < source.total) {
    throw new EdgeproofError(
      'NETWORK',
      `the download${file ? ` of the ${file} file` : ''} ended after ${sink.received()} of ${source.total} bytes (Content-Length)`,
    );
  }
}

/**
 * Streams `source` into a ModelLoader and loads it on `backend` ('cpu' or 'webgpu').
 * `tee(chunk)` sees each chunk once it was accepted (the OPFS cache writes it); it must not
 * throw. `sha256`, when given, must equal the file's hash (`INTEGRITY` otherwise).
 * @returns {Promise<import('./edgeproof_wasm.js').WasmEngine>}
 */
export async function loadWasm(source, backend, { onProgress, signal, sha256 } = {}, tee) {
  throwIfAborted(signal);
  const loader = call(() => new ModelLoader());
  let loaded = false;
  try {
    await pump(source, loader, { onProgress, signal }, tee);
    loaded = true; // loadEngine consumes the loader
    const wasm = await callAsync(() => loadEngine(loader, backend, rustProgress(onProgress), () => !!signal?.aborted));
    const hash = wasm.info().sha256;
    if (sha256 && sha256.toLowerCase() !== hash) {
      wasm.free();
      throw new EdgeproofError('INTEGRITY', `the model's sha256 is ${hash}, expected ${sha256}`);
    }
    return wasm;
  } catch (e) {
    throw asError(e);
  } finally {
    if (!loaded && !panic) loader.free();
  }
}

/**
 * Resolves in a later task. A CPU step resolves in microtasks only: without this, a loop over
 * the tokens would hold the thread, so no abort event, worker message or repaint could come in
 * until the generation ended. (Not `scheduler.yield()`: its continuation runs ahead of other
 * tasks, so a worker's incoming messages would still wait.)
 */
function nextTask() {
  if (typeof setImmediate === 'function') return new Promise((resolve) => setImmediate(resolve));
  return new Promise((resolve) => {
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/** The `request` of `WasmEngine.start` for a prompt (string) or chat (messages). */
function generationRequest(input, opts) {
  let request;
  if (typeof input === 'string') request = { prompt: input };
  else if (Array.isArray(input)) request = { messages: input };
  else throw new EdgeproofError('INVALID_ARGUMENT', 'generate() takes a prompt string or an array of { role, content }');
  for (const key of ['maxTokens', 'temperature', 'topK', 'topP', 'seed', 'receipt', 'private']) {
    if (opts[key] !== undefined) request[key] = opts[key];
  }
  if (opts.stop !== undefined) request.stop = typeof opts.stop === 'string' ? [opts.stop] : opts.stop;
  if (typeof opts.seed === 'bigint') request.seed = opts.seed.toString(); // wasm takes u64 as a string
  return request;
}

/**
 * One running generation: an async iterable of `{ token, text }` (each `next()` runs one
 * `step()` in wasm) with `result`, the promise of `finish()`'s object. Created by
 * `engine.generate()`.
 */
export class Generation {
  #wasm;
  #done; // called once finish() ran: releases the engine
  #signal;
  #onAbort = () => void this.#settle().catch(() => {});
  #log = []; // tokens stepped but not yet handed to the iterator
  #step = null; // the step() running now
  #ended = false; // a step said done, or failed
  #error = null;
  #errorThrown = false;
  #final = null; // the promise of finish()'s object
  #result = null;
  #finalize; // (finish()'s object) => the result (signs its receipt)

  constructor(wasm, request, signal, done, finalize = async (out) => out) {
    call(() => wasm.start(request)); // BUSY, CONTEXT_OVERFLOW, INVALID_ARGUMENT: thrown synchronously
    this.#wasm = wasm;
    this.#done = done;
    this.#finalize = finalize;
    this.#signal = signal;
    if (signal?.aborted) this.#onAbort();
    else signal?.addEventListener('abort', this.#onAbort, { once: true });
  }

  /** Runs one step unless one runs already; steps are never concurrent. */
  #pull() {
    this.#step ??= nextTask()
      .then(() => callAsync(() => this.#wasm.step()))
      .then(
        (s) => {
          this.#step = null;
          if (s.token >= 0) this.#log.push({ token: s.token, text: s.text });
          if (s.done) this.#ended = true;
        },
        (e) => {
          this.#step = null;
          this.#ended = true;
          this.#error = asError(e);
        },
      );
    return this.#step;
  }

  /** Ends the generation (aborting it if it runs) once no step runs, and calls finish(). */
  #settle() {
    this.#final ??= (async () => {
      await null; // not inside generate() itself, when its signal is already aborted
      if (!this.#ended) call(() => this.#wasm.abort());
      while (this.#step) await this.#step;
      try {
        return call(() => this.#wasm.finish());
      } finally {
        this.#signal?.removeEventListener('abort', this.#onAbort);
        this.#done();
      }
    })();
    return this.#final;
  }

  /** No more steps: one said done or failed, or the generation is being finished. */
  get #over() {
    return this.#ended || this.#final !== null;
  }

  async next() {
    while (!this.#log.length && !this.#over) await this.#pull();
    // A step running when the generation was aborted may still bring a token.
    if (!this.#log.length) await this.#settle().catch(() => {}); // a failed finish shows in `result`
    if (this.#log.length) return { value: this.#log.shift(), done: false };
    if (this.#error && !this.#errorThrown) {
      this.#errorThrown = true;
      throw this.#error;
    }
    return { value: undefined, done: true };
  }

  /** `break` out of `for await`: aborts the generation and finishes it. */
  async return(value) {
    await this.#settle().catch(() => {});
    return { value, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  /**
   * `{ text, finish, tokens, receipt, opening, trace, timings, signError }`. Awaiting it without
   * iterating runs the generation to its end; the tokens are still there for an iterator
   * started later. The receipt is signed (the `sign` option) before it resolves.
   */
  get result() {
    this.#result ??= (async () => {
      while (!this.#over) await this.#pull();
      let out;
      try {
        out = await this.#settle();
      } catch (e) {
        throw this.#error ?? e;
      }
      if (this.#error) throw this.#error;
      return this.#finalize(out);
    })();
    return this.#result;
  }

  /** For Engine.free(): finish now, whatever happens. */
  close() {
    return this.#settle().catch(() => {});
  }
}

// ---- Signatures (docs/RECEIPT.md: ECDSA P-256 with SHA-256 over receiptSigningMessage) ----

let subtleImpl = null;

/** Node.js 18 has WebCrypto only as `node:crypto`'s `webcrypto`: node.js hands it in here. */
export function useSubtle(s) {
  subtleImpl = s;
}

/** WebCrypto's `SubtleCrypto`, or undefined (an insecure context). */
export function subtle() {
  return subtleImpl ?? globalThis.crypto?.subtle;
}

function needSubtle() {
  const s = subtle();
  if (!s) {
    throw new EdgeproofError('CRYPTO', 'crypto.subtle is unavailable here (WebCrypto needs a secure context: https:// or http://localhost)');
  }
  return s;
}

/** base64url without padding. */
export function base64url(bytes) {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/**
 * A P-256 public key's SEC1 bytes (65, WebCrypto's `raw` export) and fingerprint: hex of the first
 * 8 bytes of their SHA-256.
 */
export async function publicKeyId(publicKey) {
  const s = needSubtle();
  try {
    const raw = new Uint8Array(await s.exportKey('raw', publicKey));
    const digest = new Uint8Array(await s.digest('SHA-256', raw));
    return { raw, fingerprint: hex(digest.subarray(0, 8)) };
  } catch (e) {
    throw new EdgeproofError('CRYPTO', `reading the public key failed: ${e?.message ?? e}`, { cause: e });
  }
}

function isKeyPair(k) {
  return !!k && typeof k === 'object' && !!k.privateKey && !!k.publicKey;
}

function checkKeyPair(k) {
  const ok = (key, type) => key?.type === type && key.algorithm?.name === 'ECDSA' && key.algorithm?.namedCurve === 'P-256';
  if (!ok(k.privateKey, 'private') || !ok(k.publicKey, 'public')) {
    throw new EdgeproofError('INVALID_ARGUMENT', "sign: a CryptoKeyPair of ECDSA P-256 keys ({ name: 'ECDSA', namedCurve: 'P-256' })");
  }
  // The signature is checked with the public key after signing (signWith): both usages are needed.
  if (!k.privateKey.usages?.includes('sign') || !k.publicKey.usages?.includes('verify')) {
    throw new EdgeproofError('INVALID_ARGUMENT', "sign: the private key needs the 'sign' usage and the public key 'verify' (generateKey(…, ['sign', 'verify']))");
  }
}

/**
 * The receipt (an object, from wasm) with `signature` attached: ECDSA P-256 / SHA-256 by
 * `keyPair` over `receiptSigningMessage(receipt)`. Any signature it had is replaced. Needs the
 * wasm module initialized. Throws `BAD_RECEIPT` (from wasm) for a receipt whose hashes do not
 * match its fields, `CRYPTO` when the signature fails or `keyPair.publicKey` does not check it
 * (the pair's keys do not belong together).
 */
export async function signWith(receipt, keyPair) {
  if (!isKeyPair(keyPair)) throw new EdgeproofError('INVALID_ARGUMENT', 'sign: give a CryptoKeyPair { privateKey, publicKey }');
  checkKeyPair(keyPair);
  const s = needSubtle();
  const { signature: _, ...core } = receiptObject(receipt);
  const message = call(() => receiptSigningMessage(JSON.stringify(core)));
  const { raw, fingerprint } = await publicKeyId(keyPair.publicKey);
  let value;
  try {
    value = new Uint8Array(await s.sign({ name: 'ECDSA', hash: 'SHA-256' }, keyPair.privateKey, message));
  } catch (e) {
    throw new EdgeproofError('CRYPTO', `signing the receipt failed: ${e?.message ?? e}`, { cause: e });
  }
  // A CryptoKeyPair's two keys need not belong together: a signature its publicKey does not
  // check would make a receipt that fails verification. Check it here instead.
  let matches;
  try {
    matches = await s.verify({ name: 'ECDSA', hash: 'SHA-256' }, keyPair.publicKey, value, message);
  } catch (e) {
    throw new EdgeproofError('CRYPTO', `checking the receipt's signature failed: ${e?.message ?? e}`, { cause: e });
  }
  if (!matches) throw new EdgeproofError('CRYPTO', "the key pair's public key does not match its private key");
  return { ...core, signature: { alg: 'ES256', key: base64url(raw), fingerprint, value: base64url(value) } };
}

/**
 * How an engine signs: `auto()` (the default of `sign`: true where a device key can be kept),
 * `missing()` (why `sign: true` cannot work here, a coded error, or null) and `deviceKeyPair()`
 * (the key `sign: true` means).
 */
export const NO_DEVICE_KEY = Object.freeze({
  auto: () => false,
  missing: () => new EdgeproofError('KEYSTORE', 'sign: true needs a device key, kept in IndexedDB, which is not here: pass a CryptoKeyPair as sign'),
  deviceKeyPair: null,
});

/** The key pair (or its promise) a generation signs with, or null: the `sign` option, checked. */
function signingKey(sign, signing) {
  const chosen = sign ?? signing.auto();
  if (chosen === false) return null;
  if (chosen === true) {
    const missing = signing.missing();
    if (missing) throw missing;
    return signing.deviceKeyPair;
  }
  if (!isKeyPair(chosen)) {
    throw new EdgeproofError('INVALID_ARGUMENT', 'sign: true (the device key), false, or a CryptoKeyPair { privateKey, publicKey }');
  }
  checkKeyPair(chosen);
  needSubtle();
  return () => chosen;
}

// ---- Receipts in their forms ----

function isBytes(x) {
  return x instanceof ArrayBuffer || ArrayBuffer.isView(x);
}

function asBytes(x) {
  return x instanceof ArrayBuffer ? new Uint8Array(x) : new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
}

/** A receipt's JSON from an object, its JSON, or its binary form (a Uint8Array). */
export function receiptJson(receipt) {
  if (typeof receipt === 'string') return receipt;
  if (isBytes(receipt)) return call(() => receiptFromBytes(asBytes(receipt)));
  if (!receipt || typeof receipt !== 'object') {
    throw new EdgeproofError('BAD_RECEIPT', 'a receipt is an object, its JSON, or its binary form (a Uint8Array)');
  }
  return JSON.stringify(receipt);
}

/** A receipt as an object, from any of its forms. */
export function receiptObject(receipt) {
  return typeof receipt === 'object' && receipt && !isBytes(receipt) ? receipt : parseReceipt(receiptJson(receipt));
}

/** `receiptToBytes()`: the binary form (magic "EPRC") of a receipt (an object or its JSON). */
export function toBytes(receipt) {
  return call(() => receiptToBytes(receiptJson(receipt)));
}

/** `receiptFromBytes()`: a binary receipt as an object. */
export function fromBytes(bytes) {
  if (!isBytes(bytes)) throw new EdgeproofError('BAD_RECEIPT', 'receiptFromBytes takes a Uint8Array (or ArrayBuffer)');
  return parseReceipt(call(() => receiptFromBytes(asBytes(bytes))));
}

function openingJson(opening) {
  if (opening === undefined || opening === null) return undefined;
  if (typeof opening === 'string') return opening;
  if (typeof opening === 'object' && !isBytes(opening)) return JSON.stringify(opening);
  throw new EdgeproofError('INVALID_ARGUMENT', "opening: a private receipt's opening, as an object or its JSON");
}

function traceBytes(trace) {
  if (trace === undefined || trace === null) return undefined;
  if (isBytes(trace)) return asBytes(trace);
  throw new EdgeproofError('INVALID_ARGUMENT', 'trace: the trace of a receipt, a Uint8Array');
}

/** A loaded model. The browser's and Node's `Engine` extend it with `load()`. */
export class BaseEngine {
  #wasm;
  #extra;
  #signing;
  #freed = false;
  #generation = null;
  #verifying = new Set();

  /** Use `Engine.load()`. `signing`: how `sign` is resolved (`NO_DEVICE_KEY` under Node). */
  constructor(wasm, extra = {}, signing = NO_DEVICE_KEY) {
    this.#wasm = wasm;
    this.#extra = extra;
    this.#signing = signing;
  }

  #live() {
    if (this.#freed) throw new EdgeproofError('FREED', 'this engine was freed');
    return this.#wasm;
  }

  /** The model and backend (`WasmEngine.info()`), plus `backendReason`. */
  info() {
    return { ...call(() => this.#live().info()), ...this.#extra };
  }

  /** Token ids of `text` (no special-token parsing; BOS as the model says). */
  tokenize(text) {
    return call(() => this.#live().tokenize(text));
  }

  detokenize(ids) {
    return call(() => this.#live().detokenize(ids instanceof Uint32Array ? ids : Uint32Array.from(ids)));
  }

  /**
   * Starts a generation; throws `BUSY` (synchronously) while another one has not finished.
   * @returns {Generation}
   */
  generate(input, opts = {}) {
    const wasm = this.#live();
    // INVALID_ARGUMENT, KEYSTORE, CRYPTO: before it starts (nothing to sign without a receipt).
    const key = opts.receipt === false ? null : signingKey(opts.sign, this.#signing);
    const generation = new Generation(
      wasm,
      generationRequest(input, opts),
      opts.signal,
      () => {
        if (this.#generation === generation) this.#generation = null;
      },
      (out) => signResult(out, key),
    );
    this.#generation = generation;
    return generation;
  }

  /**
   * Re-executes `receipt` (an object, its JSON, or its binary form) on this model and backend,
   * with a private receipt's `opening` (object or JSON) and a `trace` (Uint8Array) when given.
   */
  async verify(receipt, { opening, trace, onProgress, signal } = {}) {
    const wasm = this.#live();
    throwIfAborted(signal);
    const json = receiptJson(receipt);
    if (parseReceipt(json).kind === 'embedding') {
      throw new EdgeproofError('BAD_RECEIPT', 'an embedding receipt: verify it with an Embedder (or verifyReceipt)');
    }
    const open = openingJson(opening);
    const bytes = traceBytes(trace);
    const aborted = () => this.#freed || !!signal?.aborted;
    const run = callAsync(() => wasm.verify(json, open, bytes, rustProgress(onProgress), aborted));
    this.#verifying.add(run);
    try {
      return await run;
    } catch (e) {
      throw asError(e);
    } finally {
      this.#verifying.delete(run);
    }
  }

  /**
   * Releases the model. A running generation is aborted and finished, and a running
   * verification aborted, before the wasm memory goes; every later call throws `FREED`.
   */
  free() {
    if (this.#freed) return;
    this.#freed = true;
    const running = [...this.#verifying, this.#generation?.close()];
    Promise.allSettled(running).then(() => panic || this.#wasm.free());
  }
}

/**
 * A generation's result with its receipt signed by `key` (a function resolving the key pair, or
 * null: unsigned). Signing never loses the receipt: on failure it stays unsigned and `signError`
 * says why (`{ code, message }`: KEYSTORE, QUOTA, CRYPTO); otherwise `signError` is null.
 */
async function signResult(out, key) {
  out.signError = null;
  if (!out.receipt || !key) return out;
  try {
    out.receipt = await signWith(out.receipt, await key());
  } catch (e) {
    const error = asError(e, 'CRYPTO');
    out.signError = { code: error.code, message: error.message };
    console.warn(`edgeproof: the receipt was left unsigned: ${error.message}`);
  }
  return out;
}

/** The receipt as an object (parsing its JSON); `BAD_RECEIPT` when it is not JSON. */
export function parseReceipt(receipt) {
  if (typeof receipt !== 'string') return receipt ?? {};
  try {
    return JSON.parse(receipt) ?? {};
  } catch (e) {
    throw new EdgeproofError('BAD_RECEIPT', `the receipt is not JSON: ${e.message}`, { cause: e });
  }
}

/**
 * `verifyReceipt()`: loads the model with `load(source, opts)` (`loadEncoder` for an embedding
 * receipt, whose `kind` is `'embedding'`), verifies, frees. A receipt that is not JSON fails
 * with `BAD_RECEIPT` before anything is downloaded.
 */
export async function verifyWith(load, receipt, source, opts, loadEncoder) {
  const embedding = parseReceipt(receipt).kind === 'embedding';
  const model = await (embedding && loadEncoder ? loadEncoder : load)(source, opts);
  try {
    return await model.verify(receipt, opts);
  } finally {
    model.free();
  }
}
