import type {
  BaseEmbedder, BaseEngine, EmbeddingReceipt, EmbedVerifyResult, Opening, Progress, Receipt, ReceiptInput,
  VerifyResult,
} from './core.js';

export * from './core.js';

/** A path, `file:` or `http(s):` URL, bytes, or an async iterable of byte chunks. */
export type NodeModelSource = string | URL | ArrayBuffer | ArrayBufferView | AsyncIterable<Uint8Array>;

export interface NodeLoadOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
  /** Expected lowercase hex SHA-256 of the file: `INTEGRITY` when it differs. */
  sha256?: string;
}

/**
 * A model loaded on the CPU (wasm) under Node.js. Node keeps no device key: receipts are unsigned
 * unless `sign` is a CryptoKeyPair (`crypto.subtle`); `sign: true` throws `KEYSTORE`.
 */
export class Engine extends BaseEngine {
  static load(source: NodeModelSource, options?: NodeLoadOptions): Promise<Engine>;
}

/**
 * An encoder's checkpoint: its folder (a path, `file:` or `http(s):` URL) holding
 * model.safetensors, config.json and tokenizer.json, or its three files.
 */
export type NodeEncoderSource =
  | string
  | URL
  | { model: NodeModelSource; config: NodeModelSource; tokenizer: NodeModelSource };

export interface NodeEmbedderLoadOptions {
  /** `'cpu'` (the default). `'webgpu'` rejects with `MISSING_FEATURE`. */
  backend?: 'auto' | 'cpu' | 'webgpu';
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

/** A sentence encoder loaded on the CPU (wasm) under Node.js. */
export class Embedder extends BaseEmbedder {
  static load(source: NodeEncoderSource, options?: NodeEmbedderLoadOptions): Promise<Embedder>;
}

/** An embedding receipt (`kind: 'embedding'`) is verified by an Embedder loaded from `source`. */
export function verifyReceipt(
  receipt: EmbeddingReceipt,
  source: NodeEncoderSource,
  options?: NodeEmbedderLoadOptions,
): Promise<EmbedVerifyResult>;
export interface NodeVerifyReceiptOptions extends NodeLoadOptions {
  /** A private receipt's opening (the object or its JSON): without it, it is not re-executed. */
  opening?: Opening | string;
  /** The receipt's trace: a step whose root differs is then named down to its layer. */
  trace?: Uint8Array;
}

/** `receipt`: the object, its JSON, or its binary form (a Uint8Array or Buffer). */
export function verifyReceipt(
  receipt: ReceiptInput,
  source: NodeModelSource,
  options?: NodeVerifyReceiptOptions,
): Promise<VerifyResult>;
export function verifyReceipt(
  receipt: string,
  source: NodeEncoderSource,
  options?: NodeEmbedderLoadOptions,
): Promise<EmbedVerifyResult>;

/** A receipt's binary form (magic "EPRC"), from the receipt or its JSON. */
export function receiptToBytes(receipt: Receipt | string): Promise<Uint8Array>;
/** A binary receipt (a Uint8Array, Buffer or ArrayBuffer) as the receipt object. */
export function receiptFromBytes(bytes: Uint8Array | ArrayBuffer): Promise<Receipt>;
/**
 * A copy of the receipt with `signature` set by `keyPair` (ECDSA P-256); without one, `KEYSTORE`.
 * `BAD_RECEIPT` when the receipt's hashes do not match its fields; `CRYPTO` when `keyPair`'s
 * public key does not match its private key.
 */
export function signReceipt(receipt: ReceiptInput, keyPair: CryptoKeyPair): Promise<Receipt>;
