// The Engine and the Embedder from a Web Worker. `serveWorker()` runs inside a module worker
// (see edgeproof-worker.js); `WorkerEngine` and `WorkerEmbedder` are its main-thread side, with
// the Engine's and Embedder's methods, async. Messages: the main thread sends `{ edgeproof: 1,
// id, type, ... }` (type: load, chunk, end, generate, verify, tokenize, detokenize, info, abort;
// embedder.load, embedder.embed, embedder.verify, embedder.tokenize, embedder.info); the worker
// answers `{ edgeproof: 1, id, kind, value }` (kind: progress, token, done, error).
import { EdgeproofError, sourceOf, ModelSource, throwIfAborted } from './core.js';
import { ENCODER_FILES, encoderParts, folderUrl } from './embed.js';
import { Embedder, Engine } from './index.js';
import { deviceKey } from './keys.js';

export { cosine } from './embed.js';
export { EdgeproofError, ERROR_CODES, receiptFromBytes, receiptToBytes, signReceipt } from './index.js';

const TAG = 1;

function serializeError(e) {
  return { code: e?.code, message: e?.message ?? String(e) };
}

function deserializeError({ code, message }) {
  return new EdgeproofError(code, message);
}

/** An async iterable fed from outside: chunks in the worker, tokens on the main thread. */
class Channel {
  #items = [];
  #waiting = [];
  #ended = false;
  #error = null;

  push(item) {
    if (this.#ended) return;
    const waiter = this.#waiting.shift();
    if (waiter) waiter.resolve({ value: item, done: false });
    else this.#items.push(item);
  }

  end(error = null) {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    for (const waiter of this.#waiting.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  next() {
    if (this.#items.length) return Promise.resolve({ value: this.#items.shift(), done: false });
    if (this.#ended) {
      const error = this.#error;
      this.#error = null; // thrown once, then the iterator is done
      return error ? Promise.reject(error) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/**
 * Serves one Engine and one Embedder to the main thread's `WorkerEngine` and `WorkerEmbedder`;
 * call it in a module worker. Messages without the package's tag are left to the worker's other
 * listeners.
 */
export function serveWorker(scope = globalThis) {
  let engine = null;
  let embedder = null;
  const controllers = new Map(); // id → AbortController of a running call
  const streams = new Map(); // id → Channel of a load whose bytes come from the main thread

  const reply = (id, kind, value, transfer = []) => scope.postMessage({ edgeproof: TAG, id, kind, value }, transfer);

  function run(m, signal, onProgress) {
    switch (m.type) {
      case 'load': {
        let source = m.source;
        if (m.stream) {
          const chunks = new Channel();
          streams.set(m.id, chunks);
          signal.addEventListener('abort', () => chunks.end(new EdgeproofError('ABORTED', 'aborted')));
          source = new ModelSource(chunks, m.stream);
        }
        return Engine.load(source, { ...m.opts, onProgress, signal }).then((e) => {
          engine?.free();
          engine = e;
          return e.info();
        });
      }
      case 'generate':
        return generate(m, signal);
      case 'verify':
        return live().verify(m.receipt, { opening: m.opening, trace: m.trace, onProgress, signal });
      case 'tokenize':
        return live().tokenize(m.text);
      case 'detokenize':
        return live().detokenize(m.ids);
      case 'info':
        return live().info();
      case 'embedder.load':
        return Embedder.load(m.source, { ...m.opts, onProgress, signal }).then((e) => {
          embedder?.free();
          embedder = e;
          return e.info();
        });
      case 'embedder.embed':
        return liveEmbedder().embed(m.texts, { ...m.opts, onProgress, signal });
      case 'embedder.verify':
        return liveEmbedder().verify(m.receipt, { onProgress, signal });
      case 'embedder.tokenize':
        return liveEmbedder().tokenize(m.text, m.opts);
      case 'embedder.info':
        return liveEmbedder().info();
      default:
        throw new EdgeproofError('INVALID_ARGUMENT', `unknown message type ${m.type}`);
    }
  }

  function live() {
    if (!engine) throw new EdgeproofError('FREED', 'no model is loaded in this worker');
    return engine;
  }

  function liveEmbedder() {
    if (!embedder) throw new EdgeproofError('FREED', 'no encoder is loaded in this worker');
    return embedder;
  }

  async function generate(m, signal) {
    const generation = live().generate(m.input, { ...m.opts, signal });
    for await (const token of generation) reply(m.id, 'token', token);
    return generation.result;
  }

  async function handle(m) {
    const controller = new AbortController();
    controllers.set(m.id, controller);
    const onProgress = m.progress ? (p) => reply(m.id, 'progress', p) : undefined;
    try {
      const value = await run(m, controller.signal, onProgress);
      // Vectors' and traces' buffers are transferred, not copied.
      const transfer =
        m.type === 'embedder.embed' ? value.vectors.map((v) => v.buffer) : m.type === 'generate' && value.trace ? [value.trace.buffer] : [];
      reply(m.id, 'done', value, transfer);
    } catch (e) {
      reply(m.id, 'error', serializeError(e));
    } finally {
      controllers.delete(m.id);
      streams.delete(m.id);
    }
  }

  scope.addEventListener('message', ({ data: m }) => {
    if (m?.edgeproof !== TAG) return;
    if (m.type === 'abort') controllers.get(m.id)?.abort();
    else if (m.type === 'chunk') streams.get(m.id)?.push(m.chunk);
    else if (m.type === 'end') streams.get(m.id)?.end();
    else handle(m);
  });
}

/** Copies a view's bytes out unless it spans its whole buffer, which is then transferred. */
function ownBuffer(bytes) {
  const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
  return whole ? bytes.buffer : bytes.slice().buffer;
}

/** A generation running in the worker: tokens arrive as messages. */
class WorkerGeneration {
  #tokens = new Channel();
  #abort;

  constructor(result, abort) {
    this.#abort = abort;
    /** @type {Promise<object>} */
    this.result = result;
    result.then(
      () => this.#tokens.end(),
      (e) => this.#tokens.end(e),
    );
    result.catch(() => {}); // the iterator reports the error too
  }

  /** @internal */
  token(token) {
    this.#tokens.push(token);
  }

  next() {
    return this.#tokens.next();
  }

  /** `break`: aborts the generation in the worker and waits for it to finish. */
  async return(value) {
    this.#abort();
    await this.result.catch(() => {});
    return { value, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/**
 * The main thread's end of a worker serving `serveWorker()`: calls by id, their progress, tokens
 * and results; when the worker dies or is terminated, every pending and later call rejects.
 */
class Port {
  #worker;
  #calls = new Map(); // id → { resolve, reject, onProgress, onToken }
  #nextId = 1;
  /** The error pending and later calls get once the worker is gone (null while it lives). */
  gone = null;

  constructor(worker) {
    this.#worker = worker;
    worker.addEventListener('message', ({ data: m }) => {
      if (m?.edgeproof === TAG) this.#receive(m);
    });
    worker.addEventListener('error', (e) => {
      this.end(new EdgeproofError('WORKER_GONE', `the worker failed: ${e.message ?? 'error event'}`));
    });
    worker.addEventListener('messageerror', () => {
      this.end(new EdgeproofError('WORKER_GONE', 'a message from the worker could not be read'));
    });
  }

  #receive({ id, kind, value }) {
    const call = this.#calls.get(id);
    if (!call) return;
    if (kind === 'progress') call.onProgress?.(value);
    else if (kind === 'token') call.onToken?.(value);
    else {
      this.#calls.delete(id);
      if (kind === 'done') call.resolve(value);
      else call.reject(deserializeError(value));
    }
  }

  /** Terminates the worker; every pending and later call rejects with `error`. */
  end(error) {
    if (this.gone) return;
    this.gone = error;
    this.#worker.terminate();
    for (const call of this.#calls.values()) call.reject(error);
    this.#calls.clear();
  }

  post(message, transfer = []) {
    this.#worker.postMessage({ edgeproof: TAG, ...message }, transfer);
  }

  /** Sends a call; `signal` aborts it in the worker. Returns `[id, promise]`. */
  call(message, { signal, onProgress, onToken } = {}, transfer) {
    if (this.gone) throw this.gone;
    const id = this.#nextId++;
    const abort = () => this.post({ type: 'abort', id });
    const promise = new Promise((resolve, reject) => {
      this.#calls.set(id, { resolve, reject, onProgress, onToken });
    });
    this.post({ ...message, id, progress: !!onProgress }, transfer);
    if (signal?.aborted) abort();
    else if (signal) {
      signal.addEventListener('abort', abort, { once: true });
      const done = () => signal.removeEventListener('abort', abort);
      promise.then(done, done);
    }
    return [id, promise];
  }

  /** `call(...)[1]`, or a rejection once the worker is gone. */
  request(message, options, transfer) {
    if (this.gone) return Promise.reject(this.gone);
    return this.call(message, options, transfer)[1];
  }

  /** For `free()`: terminates the worker (pending calls: `WORKER_GONE`; later ones: `FREED`). */
  free(what) {
    this.end(new EdgeproofError('WORKER_GONE', 'the worker was terminated by free()'));
    this.gone = new EdgeproofError('FREED', `this ${what} was freed`);
  }
}

/**
 * `worker` as given (a Worker), a new module worker from its URL, or the package's own
 * edgeproof-worker.js: the threaded build's where shared memory is there (cross-origin
 * isolation) unless `threads: 1`.
 */
function startWorker(worker, opts) {
  if (worker instanceof Worker) return worker;
  const threaded = opts.threads !== 1 && globalThis.crossOriginIsolated === true;
  // Written out so that bundlers see the workers and emit them.
  return worker
    ? new Worker(worker, { type: 'module' })
    : threaded
      ? new Worker(new URL('./mt/edgeproof-worker.js', import.meta.url), { type: 'module' })
      : new Worker(new URL('./edgeproof-worker.js', import.meta.url), { type: 'module' });
}

/** An Engine living in a Web Worker; its methods are the Engine's, async. */
export class WorkerEngine {
  #port;
  #generation = null;

  /** `Engine.deviceKey()`: the origin's device key (the same one the worker signs with). */
  static deviceKey = deviceKey;

  /**
   * Starts `worker` (a Worker running `serveWorker()`, its script URL, or by default the
   * package's edgeproof-worker.js) and loads `source` in it, as `Engine.load`.
   * @returns {Promise<WorkerEngine>}
   */
  static async load(worker, source, opts = {}) {
    const engine = new WorkerEngine(startWorker(worker, opts));
    try {
      await engine.#load(source, opts);
    } catch (e) {
      engine.free();
      throw e;
    }
    return engine;
  }

  constructor(worker) {
    this.#port = new Port(worker);
  }

  async #load(source, { onProgress, signal, ...opts }) {
    throwIfAborted(signal);
    const rest = { signal, onProgress };
    const port = this.#port;
    if (typeof source === 'string' || source instanceof URL) {
      // Relative URLs are the page's, not the worker script's.
      return port.call({ type: 'load', source: new URL(source, location.href).href, opts }, rest)[1];
    }
    if (source instanceof Blob) return port.call({ type: 'load', source, opts }, rest)[1];
    if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
      const buffer = source instanceof ArrayBuffer ? source : ownBuffer(new Uint8Array(source.buffer, source.byteOffset, source.byteLength));
      return port.call({ type: 'load', source: buffer, opts }, rest, [buffer])[1];
    }
    // Response or ReadableStream: read here, chunks transferred to the worker.
    const model = sourceOf(source, signal);
    const [id, loaded] = port.call({ type: 'load', stream: { stage: model.stage, total: model.total }, opts }, rest);
    let settled = false; // the worker gave up early (a bad header): stop reading
    loaded.then(() => (settled = true), () => (settled = true));
    try {
      for await (const chunk of model.chunks) {
        if (settled || port.gone) break;
        const buffer = ownBuffer(chunk);
        port.post({ type: 'chunk', id, chunk: new Uint8Array(buffer) }, [buffer]);
      }
      port.post({ type: 'end', id });
    } catch (e) {
      port.post({ type: 'abort', id });
      loaded.catch(() => {});
      throw e.code ? e : new EdgeproofError('NETWORK', `reading the model failed: ${e.message}`, { cause: e });
    }
    return loaded;
  }

  /** `Engine.generate` in the worker; throws `BUSY` synchronously while one runs. */
  generate(input, { signal, ...opts } = {}) {
    if (this.#port.gone) throw this.#port.gone;
    if (this.#generation) throw new EdgeproofError('BUSY', 'a generation is running on this engine');
    let generation;
    const [id, result] = this.#port.call({ type: 'generate', input, opts }, { signal, onToken: (t) => generation.token(t) });
    generation = new WorkerGeneration(result, () => this.#port.post({ type: 'abort', id }));
    this.#generation = generation;
    const done = () => {
      if (this.#generation === generation) this.#generation = null;
    };
    result.then(done, done);
    return generation;
  }

  /** `Engine.verify` in the worker: `receipt` an object, its JSON or its binary form. */
  verify(receipt, { opening, trace, onProgress, signal } = {}) {
    return this.#port.request({ type: 'verify', receipt, opening, trace }, { onProgress, signal });
  }

  tokenize(text) {
    return this.#port.request({ type: 'tokenize', text });
  }

  detokenize(ids) {
    return this.#port.request({ type: 'detokenize', ids: Uint32Array.from(ids) });
  }

  info() {
    return this.#port.request({ type: 'info' });
  }

  /** Terminates the worker: pending calls reject with `WORKER_GONE`, later ones with `FREED`. */
  free() {
    this.#port.free('engine');
  }
}

/**
 * One part of an encoder source, ready to cross to the worker (with the buffers to transfer):
 * URLs resolved against the page, Blobs as they are, bytes transferred, a `Response` or
 * `ReadableStream` read here into a Blob.
 */
async function crossable(part, signal) {
  if (typeof part === 'string' || part instanceof URL) return [new URL(part, location.href).href, []];
  if (part instanceof Blob) return [part, []];
  if (part instanceof ArrayBuffer || ArrayBuffer.isView(part)) {
    const buffer = part instanceof ArrayBuffer ? part : ownBuffer(new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
    return [buffer, [buffer]];
  }
  const source = sourceOf(part, signal); // Response (HTTP errors are NETWORK) or ReadableStream
  const chunks = [];
  for await (const chunk of source.chunks) chunks.push(chunk);
  return [new Blob(chunks), []];
}

/** An Embedder living in a Web Worker; its methods are the Embedder's, async. */
export class WorkerEmbedder {
  #port;

  /**
   * Starts `worker` (as `WorkerEngine.load`) and loads the encoder `source` in it, as
   * `Embedder.load`.
   * @returns {Promise<WorkerEmbedder>}
   */
  static async load(worker, source, opts = {}) {
    const embedder = new WorkerEmbedder(startWorker(worker, opts));
    try {
      await embedder.#load(source, opts);
    } catch (e) {
      embedder.free();
      throw e;
    }
    return embedder;
  }

  constructor(worker) {
    this.#port = new Port(worker);
  }

  async #load(source, { onProgress, signal, ...opts }) {
    throwIfAborted(signal);
    const parts = encoderParts(source, (base, name) => new URL(name, folderUrl(base, location.href)).href);
    const crossing = {};
    const transfer = [];
    for (const key of Object.keys(ENCODER_FILES)) {
      const [value, buffers] = await crossable(parts[key], signal);
      crossing[key] = value;
      transfer.push(...buffers);
    }
    return this.#port.request({ type: 'embedder.load', source: crossing, opts }, { signal, onProgress }, transfer);
  }

  /** `Embedder.embed` in the worker: `{ vectors, receipt }` (the vectors' buffers transferred). */
  embed(texts, { signal, onProgress, ...opts } = {}) {
    return this.#port.request({ type: 'embedder.embed', texts, opts }, { signal, onProgress });
  }

  verify(receipt, { onProgress, signal } = {}) {
    return this.#port.request({ type: 'embedder.verify', receipt }, { onProgress, signal });
  }

  tokenize(text, opts = {}) {
    return this.#port.request({ type: 'embedder.tokenize', text, opts });
  }

  info() {
    return this.#port.request({ type: 'embedder.info' });
  }

  /** Terminates the worker: pending calls reject with `WORKER_GONE`, later ones with `FREED`. */
  free() {
    this.#port.free('embedder');
  }
}
