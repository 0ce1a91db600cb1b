import type {
  BaseEmbedder, BaseEngine, EmbeddingReceipt, EmbedVerifyResult, Progress, Receipt, VerifyResult,
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

/** A model loaded on the CPU (wasm) under Node.js. */
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
export function verifyReceipt(
  receipt: Receipt | string,
  source: NodeModelSource,
  options?: NodeLoadOptions,
): Promise<VerifyResult>;
export function verifyReceipt(
  receipt: string,
  source: NodeEncoderSource,
  options?: NodeEmbedderLoadOptions,
): Promise<EmbedVerifyResult>;
