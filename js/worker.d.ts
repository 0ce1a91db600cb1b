import type {
  ChatMessage, DeviceKey, EmbedderInfo, EmbeddingReceipt, EmbedOptions, EmbedResult, EmbedVerifyResult, EngineInfo,
  GenerateOptions, GenerationLike, ReceiptInput, ReceiptVerifyOptions, VerifyOptions, VerifyResult,
} from './core.js';
import type { EmbedderLoadOptions, EncoderSource, LoadOptions, ModelSource } from './index.js';

export { EdgeproofError, ERROR_CODES, cosine } from './core.js';
export { receiptFromBytes, receiptToBytes, signReceipt } from './index.js';

/** Serves one Engine and one Embedder to a `WorkerEngine` and a `WorkerEmbedder`; call it inside a module worker. */
export function serveWorker(scope?: typeof globalThis): void;

/**
 * An Engine living in a Web Worker. Its methods are the Engine's, async (the worker answers
 * by message). One engine per worker: `free()` terminates it.
 */
export class WorkerEngine {
  /**
   * `worker`: a Worker running `serveWorker()`, its module URL, or undefined for the
   * package's `edgeproof-worker.js`. URLs, Blobs and bytes cross by postMessage (an
   * `ArrayBuffer`, or the buffer of a view spanning all of it, is transferred: detached
   * here); a `Response` or `ReadableStream` is read here and its chunks transferred.
   */
  static load(worker: Worker | URL | string | undefined, source: ModelSource, options?: LoadOptions): Promise<WorkerEngine>;
  /** `Engine.deviceKey()`: the origin's device key, the one the worker signs with (`sign: true`). */
  static deviceKey(): Promise<DeviceKey>;
  /**
   * Throws `BUSY` synchronously while a generation of this engine has not finished. The worker
   * signs the receipt (`sign`: `true`, its default, is the origin's device key; a `CryptoKeyPair`
   * crosses to the worker); the result's `trace` buffer is transferred.
   */
  generate(input: string | ChatMessage[], options?: GenerateOptions): GenerationLike;
  verify(receipt: ReceiptInput, options?: ReceiptVerifyOptions): Promise<VerifyResult>;
  tokenize(text: string): Promise<Uint32Array>;
  detokenize(ids: ArrayLike<number>): Promise<string>;
  info(): Promise<EngineInfo>;
  /** Terminates the worker: pending calls reject with `WORKER_GONE`, later ones with `FREED`. */
  free(): void;
}

/**
 * An Embedder living in a Web Worker; its methods are the Embedder's, async. One per worker:
 * `free()` terminates it.
 */
export class WorkerEmbedder {
  /**
   * `worker` as for `WorkerEngine.load`. URLs (resolved against the page), Blobs and bytes cross
   * by postMessage (an `ArrayBuffer` is transferred: detached here); a `Response` or
   * `ReadableStream` is read here into a Blob first.
   */
  static load(worker: Worker | URL | string | undefined, source: EncoderSource, options?: EmbedderLoadOptions): Promise<WorkerEmbedder>;
  /** The vectors' buffers are transferred from the worker. */
  embed(texts: string | string[], options?: EmbedOptions): Promise<EmbedResult>;
  verify(receipt: EmbeddingReceipt | string, options?: VerifyOptions): Promise<EmbedVerifyResult>;
  tokenize(text: string, options?: { maxTokens?: number }): Promise<Uint32Array>;
  info(): Promise<EmbedderInfo>;
  /** Terminates the worker: pending calls reject with `WORKER_GONE`, later ones with `FREED`. */
  free(): void;
}
