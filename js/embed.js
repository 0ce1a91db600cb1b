// Sentence embeddings, shared by the browser (index.js), the worker (worker.js) and Node
// (node.js): reading a BERT checkpoint's three files into the wasm EncoderLoader, and the
// Embedder around the wasm WasmEncoder (js/WASM_CONTRACT.md, "Embeddings").
import { EncoderLoader, loadEncoder } from './edgeproof_wasm.js';
import {
  EdgeproofError,
  asError,
  call,
  callAsync,
  hasPanicked,
  parseReceipt,
  pump,
  rustProgress,
  throwIfAborted,
} from './core.js';

/** The checkpoint's files: the key of each in a source object, and its name in a folder. */
export const ENCODER_FILES = Object.freeze({
  model: 'model.safetensors',
  config: 'config.json',
  tokenizer: 'tokenizer.json',
});

// The small files first: a wrong config.json or tokenizer.json fails before the weights come.
const ORDER = ['config', 'tokenizer', 'model'];

/**
 * `{ model, config, tokenizer }` from an Embedder source: a folder (string or URL: each file is
 * `join(folder, name)`) or an object with those three keys.
 */
export function encoderParts(source, join) {
  if (typeof source === 'string' || source instanceof URL) {
    return Object.fromEntries(Object.entries(ENCODER_FILES).map(([key, name]) => [key, join(source, name)]));
  }
  if (source && typeof source === 'object' && !ArrayBuffer.isView(source) && !(source instanceof ArrayBuffer)) {
    const missing = Object.keys(ENCODER_FILES).filter((key) => source[key] === undefined || source[key] === null);
    if (!missing.length) return { model: source.model, config: source.config, tokenizer: source.tokenizer };
    throw new EdgeproofError('INVALID_ARGUMENT', `the encoder source lacks ${missing.join(', ')}: give { model, config, tokenizer }`);
  }
  throw new EdgeproofError(
    'INVALID_ARGUMENT',
    `an encoder source is the checkpoint's folder (a URL or path) or { model, config, tokenizer }, not ${Object.prototype.toString.call(source)}`,
  );
}

/** The folder `base` (a URL) with a trailing slash, so that file names resolve inside it. */
export function folderUrl(base, relativeTo) {
  const url = new URL(base, relativeTo);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/**
 * Reads the three files into an EncoderLoader and loads it on `backend`. `open(file)` (file:
 * 'config', 'tokenizer', 'model', in that order) resolves `{ source, tee }`: a ModelSource and an
 * optional `tee(chunk)` (the OPFS cache). Progress: the reading stage of each file (with `file`),
 * then 'convert', 'hash' and 'upload' from wasm. The backend is checked before anything is read.
 * @returns {Promise<import('./edgeproof_wasm.js').WasmEncoder>}
 */
export async function loadEncoderWasm(open, backend, { onProgress, signal } = {}) {
  throwIfAborted(signal);
  const loader = call(() => new EncoderLoader(backend));
  let loaded = false;
  try {
    for (const file of ORDER) {
      const { source, tee } = await open(file);
      const sink = {
        push: (chunk) => loader.push(file, chunk),
        received: () => loader.received(file),
        expected: () => loader.expected(file),
      };
      await pump(source, sink, { onProgress, signal, file }, tee);
      loader.end(file); // config.json and tokenizer.json are read now; a short file is TRUNCATED
    }
    loaded = true; // loadEncoder consumes the loader
    return await callAsync(() => loadEncoder(loader, rustProgress(onProgress), () => !!signal?.aborted));
  } catch (e) {
    throw asError(e);
  } finally {
    if (!loaded && !hasPanicked()) loader.free();
  }
}

function checkTexts(texts) {
  if (typeof texts === 'string') return [texts];
  if (Array.isArray(texts) && texts.every((t) => typeof t === 'string')) return texts;
  throw new EdgeproofError('INVALID_ARGUMENT', 'embed() takes a string or an array of strings');
}

function checkMaxTokens(maxTokens) {
  if (maxTokens === undefined) return undefined;
  if (Number.isInteger(maxTokens) && maxTokens >= 2 && maxTokens <= 0xffffffff) return maxTokens;
  throw new EdgeproofError('INVALID_ARGUMENT', `maxTokens ${maxTokens}: a whole number, at least 2 ([CLS] and [SEP])`);
}

/** A loaded sentence encoder. The browser's and Node's `Embedder` extend it with `load()`. */
export class BaseEmbedder {
  #wasm;
  #extra;
  #freed = false;
  #running = new Set();
  /** Calls run one after another: a WebGPU encoder takes one batch at a time. */
  #queue = Promise.resolve();

  /** Use `Embedder.load()`. */
  constructor(wasm, extra = {}) {
    this.#wasm = wasm;
    this.#extra = extra;
  }

  #live() {
    if (this.#freed) throw new EdgeproofError('FREED', 'this embedder was freed');
    return this.#wasm;
  }

  /** The encoder and backend (`WasmEncoder.info()`), plus `backendReason` and `cache`. */
  info() {
    return { ...call(() => this.#live().info()), ...this.#extra };
  }

  /** Word pieces of `text` as the encoder sees it: `[CLS] … [SEP]`, at most `maxTokens` (256). */
  tokenize(text, { maxTokens } = {}) {
    const wasm = this.#live();
    if (typeof text !== 'string') throw new EdgeproofError('INVALID_ARGUMENT', 'tokenize() takes a string');
    return call(() => wasm.tokenize(text, checkMaxTokens(maxTokens)));
  }

  /** Runs a wasm call that polls `aborted()` after those before it, so that `free()` can wait for it. */
  async #track(start) {
    const run = this.#queue.then(() => callAsync(start));
    this.#queue = run.catch(() => {});
    this.#running.add(run);
    try {
      return await run;
    } catch (e) {
      throw asError(e);
    } finally {
      this.#running.delete(run);
    }
  }

  /**
   * One vector per text (`Float32Array`s, L2-normalized) and the receipt (`receipt: false`:
   * null). Batches of 32 texts; between two the event loop runs, and an aborted `signal`
   * rejects with `ABORTED` (the embedder stays usable).
   */
  async embed(texts, { maxTokens, receipt = true, onProgress, signal } = {}) {
    const wasm = this.#live();
    const list = checkTexts(texts);
    const max = checkMaxTokens(maxTokens);
    throwIfAborted(signal);
    return this.#track(() =>
      wasm.embed(list, max, receipt !== false, rustProgress(onProgress), () => this.#freed || !!signal?.aborted),
    );
  }

  /** Re-embeds the texts of an embedding receipt (an object or its JSON) and compares. */
  async verify(receipt, { onProgress, signal } = {}) {
    const wasm = this.#live();
    throwIfAborted(signal);
    const kind = parseReceipt(receipt).kind;
    if (kind !== 'embedding') {
      throw new EdgeproofError('BAD_RECEIPT', 'not an embedding receipt (kind is not "embedding"): verify it with an Engine');
    }
    const json = typeof receipt === 'string' ? receipt : JSON.stringify(receipt);
    return this.#track(() => wasm.verify(json, rustProgress(onProgress), () => this.#freed || !!signal?.aborted));
  }

  /** Releases the encoder once running calls have stopped (they reject with `ABORTED`); later calls throw `FREED`. */
  free() {
    if (this.#freed) return;
    this.#freed = true;
    Promise.allSettled([...this.#running]).then(() => hasPanicked() || this.#wasm.free());
  }
}

/**
 * The cosine similarity of two vectors (arrays or typed arrays of the same length), summed in
 * double precision; 0 when either is all zeros. Embedder vectors are L2-normalized, so this is
 * their dot product.
 */
export function cosine(a, b) {
  if (!a || !b || a.length !== b.length) {
    throw new EdgeproofError('INVALID_ARGUMENT', `cosine() of vectors of lengths ${a?.length} and ${b?.length}`);
  }
  let dot = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? dot / Math.sqrt(aa * bb) : 0;
}
