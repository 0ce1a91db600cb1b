import type { BaseEngine, Progress, VerifyResult, Receipt } from './core.js';

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

export function verifyReceipt(
  receipt: Receipt | string,
  source: NodeModelSource,
  options?: NodeLoadOptions,
): Promise<VerifyResult>;
