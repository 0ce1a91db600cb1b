import type {
  BaseEmbedder, BaseEngine, DeviceKey, EmbeddingReceipt, EmbedVerifyResult, Opening, Progress, Receipt,
  ReceiptInput, VerifyResult,
} from './core.js';

export * from './core.js';

export type ModelSource =
  | string
  | URL
  | Response
  | Blob
  | ArrayBuffer
  | ArrayBufferView
  | ReadableStream<Uint8Array>;

export interface LoadOptions {
  /**
   * `'auto'` (the default): WebGPU on a hardware adapter, else the wasm CPU path (also on
   * CPU or fallback adapters such as SwiftShader, which are slower). `'webgpu'` rejects with
   * `NO_ADAPTER` where there is none.
   */
  backend?: 'auto' | 'webgpu' | 'cpu';
  onProgress?: (progress: Progress) => void;
  /** Cancels the download and the load: rejects with `ABORTED`. */
  signal?: AbortSignal;
  /** URL sources: keep the file in the Origin Private File System and load it from there next time. */
  cache?: boolean;
  /** Expected lowercase hex SHA-256 of the file: `INTEGRITY` when it differs. */
  sha256?: string;
  /**
   * Threads of the wasm CPU path. Only `WorkerEngine` on a cross-origin-isolated page runs
   * more than one (the threaded build); the default there is one per core, at most 8.
   * `1` keeps the single-threaded build.
   */
  threads?: number;
}

export interface SupportsInfo {
  webgpu: boolean;
  adapter: {
    name: string;
    vendor: string;
    architecture: string;
    description: string;
    isFallback: boolean;
    /** A software adapter (SwiftShader, llvmpipe, lavapipe, WARP) or a fallback one. */
    isCpu: boolean;
  } | null;
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
  } | null;
  features: {
    /** WGSL language feature `packed_4x8_integer_dot_product`. */
    packed4x8IntegerDotProduct: boolean;
    subgroups: boolean;
    timestampQuery: boolean;
    shaderF16: boolean;
  };
  crossOriginIsolated: boolean;
  /** SharedArrayBuffer usable (cross-origin isolated): `WorkerEngine` runs the wasm CPU path on several threads. */
  threads: boolean;
}

export interface CacheEntry {
  /** The file's SHA-256 (lowercase hex). */
  key: string;
  url: string;
  bytes: number;
  /** Milliseconds since the epoch. */
  storedAt: number;
}

export interface ModelCache {
  list(): Promise<CacheEntry[]>;
  /** Removes the model whose SHA-256 is `key`. */
  delete(key: string): Promise<void>;
  /** Removes every cached model and stray temporary files. */
  clear(): Promise<void>;
}

/** A model loaded in this thread. */
export class Engine extends BaseEngine {
  static supports(): Promise<SupportsInfo>;
  /**
   * The device key (`sign: true`): an ECDSA P-256 key pair made on first use, its private key
   * non-extractable, kept in IndexedDB (database `edgeproof-keys`, store `keys`, record `device`).
   * Rejects with `KEYSTORE` (no IndexedDB, or it failed), `QUOTA` (no room) or `CRYPTO` (no
   * `crypto.subtle`: not a secure context).
   */
  static deviceKey(): Promise<DeviceKey>;
  static load(source: ModelSource, options?: LoadOptions): Promise<Engine>;
  static readonly cache: ModelCache;
}

/** One file of an encoder: a URL, `Response`, `Blob`, bytes or `ReadableStream`. */
export type EncoderFileSource = ModelSource;

/**
 * An encoder's checkpoint: the URL of its folder (holding model.safetensors, config.json and
 * tokenizer.json), or its three files.
 */
export type EncoderSource =
  | string
  | URL
  | { model: EncoderFileSource; config: EncoderFileSource; tokenizer: EncoderFileSource };

export interface EmbedderLoadOptions {
  /** `'auto'` (the default: WebGPU on a hardware adapter, else the wasm CPU path, as `Engine.load`), `'webgpu'` or `'cpu'`: the same vectors on each. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  /** Reading stages carry `file`; then `'convert'`, `'hash'`, `'upload'`. */
  onProgress?: (progress: Progress) => void;
  /** Cancels the downloads and the load: rejects with `ABORTED`. */
  signal?: AbortSignal;
  /** URL files: keep them in the Origin Private File System and load them from there next time. */
  cache?: boolean;
  /** `WorkerEmbedder` on a cross-origin-isolated page: threads of the wasm CPU path (as `LoadOptions.threads`). */
  threads?: number;
}

/** A sentence encoder (BERT: all-MiniLM-L6-v2) loaded in this thread, in exact integer numerics. */
export class Embedder extends BaseEmbedder {
  static load(source: EncoderSource, options?: EmbedderLoadOptions): Promise<Embedder>;
  /** The OPFS cache (the same as `Engine.cache`). */
  static readonly cache: ModelCache;
}

export interface VerifyReceiptOptions extends LoadOptions {
  /** A private receipt's opening (the object or its JSON): without it, it is not re-executed. */
  opening?: Opening | string;
  /** The receipt's trace: a step whose root differs is then named down to its layer. */
  trace?: Uint8Array;
}

/**
 * Loads the model from `source`, verifies the receipt by re-execution, frees the model. An
 * embedding receipt (`kind: 'embedding'`) is verified by an Embedder loaded from `source`.
 */
export function verifyReceipt(
  receipt: EmbeddingReceipt,
  source: EncoderSource,
  options?: EmbedderLoadOptions,
): Promise<EmbedVerifyResult>;
export function verifyReceipt(
  receipt: ReceiptInput,
  source: ModelSource,
  options?: VerifyReceiptOptions,
): Promise<VerifyResult>;
export function verifyReceipt(
  receipt: string,
  source: EncoderSource,
  options?: EmbedderLoadOptions,
): Promise<EmbedVerifyResult>;

/** A receipt's binary form (magic "EPRC"), from the receipt or its JSON. */
export function receiptToBytes(receipt: Receipt | string): Promise<Uint8Array>;
/** A binary receipt as the receipt object; `BAD_RECEIPT` when the bytes are not one. */
export function receiptFromBytes(bytes: Uint8Array | ArrayBuffer): Promise<Receipt>;
/**
 * A copy of the receipt with `signature` set (replacing any), by `keyPair` (ECDSA P-256) or by
 * default the device key. `BAD_RECEIPT` when the receipt's hashes do not match its fields;
 * `CRYPTO` when `keyPair`'s public key does not match its private key.
 */
export function signReceipt(receipt: ReceiptInput, keyPair?: CryptoKeyPair): Promise<Receipt>;
