// Types shared by the browser (index.js), worker (worker.js) and Node (node.js) entry points.

/** Codes thrown by the wasm module (the crate's `Error::code()`). */
export type RustErrorCode =
  | 'BAD_MAGIC' | 'UNSUPPORTED_VERSION' | 'TRUNCATED' | 'CORRUPT' | 'UNSUPPORTED_TENSOR_TYPE'
  | 'UNSUPPORTED_ARCHITECTURE' | 'MISSING_TENSOR' | 'BAD_TENSOR' | 'MISSING_KEY' | 'WRONG_TYPE'
  | 'TOKENIZER' | 'CONTEXT_OVERFLOW' | 'INVALID_ARGUMENT' | 'IO' | 'NO_ADAPTER' | 'MISSING_LIMIT'
  | 'MISSING_FEATURE' | 'DEVICE_LOST' | 'OUT_OF_MEMORY' | 'SHADER' | 'GPU' | 'BAD_RECEIPT'
  | 'UNSUPPORTED_RECEIPT_VERSION' | 'ABORTED' | 'BUSY' | 'PANIC';
/** Codes of errors raised by the JavaScript layer. */
export type JsErrorCode = 'NETWORK' | 'QUOTA' | 'INTEGRITY' | 'FREED' | 'WORKER_GONE' | 'ABORTED';
export type ErrorCode = RustErrorCode | JsErrorCode;

/** Every code an error from this package can carry. */
export const ERROR_CODES: readonly ErrorCode[];

/** Errors raised by the JavaScript layer; errors from wasm are `Error`s with the same `code`. */
export class EdgeproofError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly code: ErrorCode;
}

/**
 * `'download'` (network), `'cache'` (OPFS), `'read'` (Blob, bytes, stream, file), then from
 * wasm: `'hash'` (bytes hashed), `'upload'` (tensors converted or uploaded), `'compile'`
 * (WebGPU: 0/1 then 1/1 around the kernels' warm-up), and `'verify'` (tokens re-executed).
 */
export type ProgressStage = 'download' | 'cache' | 'read' | 'hash' | 'upload' | 'compile' | 'verify';

export interface Progress {
  stage: ProgressStage;
  loaded: number;
  /** Unknown (undefined) while reading a stream with no length before the GGUF header is in. */
  total: number | undefined;
}

export type Backend = 'cpu' | 'webgpu';

export interface EngineInfo {
  name: string;
  architecture: string;
  contextLength: number;
  vocabSize: number;
  layers: number;
  backend: Backend;
  adapter: string | null;
  /** Lowercase hex SHA-256 of the model file. */
  sha256: string;
  bytes: number;
  /** WebGPU: what the backend uses of the adapter (binding and buffer sizes, kernel variants). */
  limits: Record<string, number | boolean> | null;
  /** Threads of the wasm CPU path: more than 1 only in the threaded build (`LoadOptions.threads`). */
  threads: number;
  /** Why this backend (e.g. "the WebGPU adapter (google swiftshader) runs on the CPU, …"). */
  backendReason: string;
  /**
   * URL sources only (`'off'` otherwise): `'hit'` (read from the OPFS cache), `'stored'` (kept for
   * next time), `'off'` (`cache` not asked for) or `'failed'` with why (`QUOTA`: the origin's
   * storage is full; the model loaded anyway).
   */
  cache?: { status: 'hit' | 'stored' | 'off' | 'failed'; error?: { code: string; message: string } };
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface GenerateOptions {
  /** Default 256. */
  maxTokens?: number;
  /** 0 (the default) is greedy. */
  temperature?: number;
  /** Default 40 (as the CLI); 0: off. Greedy decoding ignores it (commits 0). */
  topK?: number;
  /** Default 0.95 (as the CLI); 1: off. Greedy decoding ignores it (commits 1). */
  topP?: number;
  /** Sampling seed (u64; a decimal string or bigint for values past 2^53). */
  seed?: number | string | bigint;
  /** The text ends before the first of these strings. */
  stop?: string | string[];
  /** Ends the generation: the iterator ends and `result` resolves with finish `'aborted'`. */
  signal?: AbortSignal;
  /** Make a receipt (default true). */
  receipt?: boolean;
}

export interface Token {
  token: number;
  text: string;
}

export interface Timings {
  promptTokens: number;
  /** Prompt tokens evaluated: the others (`cachedTokens`) came from the previous generation's KV cache. */
  evaluatedPromptTokens: number;
  cachedTokens: number;
  generatedTokens: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerS: number;
  decodeTokensPerS: number;
  [key: string]: number;
}

/** A receipt as the CLI writes it (docs/RECEIPT.md). */
export interface Receipt {
  version: number;
  mode: string;
  final: string;
  chain: string;
  tokens: number[];
  finish: string;
  output: string;
  [key: string]: unknown;
}

export interface GenerationResult {
  text: string;
  finish: 'eog' | 'length' | 'stop' | 'aborted';
  tokens: number[];
  /** null with `receipt: false`. */
  receipt: Receipt | null;
  timings: Timings;
}

/**
 * A running generation: `for await (const { token, text } of generation)`, and `result`.
 * Breaking out of the loop aborts it.
 */
export interface GenerationLike extends AsyncIterableIterator<Token> {
  /** Resolves once the generation ended; awaiting it without iterating runs it to the end. */
  readonly result: Promise<GenerationResult>;
}

export class Generation implements GenerationLike {
  private constructor();
  readonly result: Promise<GenerationResult>;
  next(): Promise<IteratorResult<Token, undefined>>;
  return(value?: unknown): Promise<IteratorResult<Token, undefined>>;
  [Symbol.asyncIterator](): this;
}

export interface Divergence {
  kind: 'hash' | 'format' | 'numerics' | 'model' | 'prompt' | 'layer' | 'token' | 'finish' | 'output' | 'context';
  what?: string;
  field?: string;
  index?: number;
  step?: number;
  layer?: number;
  committed?: unknown;
  recomputed?: unknown;
  at?: number;
  message: string;
}

export interface VerifyResult {
  ok: boolean;
  /** One line: "verified: …" or "NOT verified: …". */
  report: string;
  findings: string[];
  stepsMatched: number;
  divergence?: Divergence;
}

export interface VerifyOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

/** The methods of a loaded model (`Engine` in the browser and in Node). */
export class BaseEngine {
  protected constructor();
  info(): EngineInfo;
  tokenize(text: string): Uint32Array;
  detokenize(ids: ArrayLike<number>): string;
  /**
   * A prompt (string) or a chat (messages). Throws `BUSY` synchronously while a previous
   * generation has not finished (iterated to its end, broken out of, aborted and its
   * `result` settled).
   */
  generate(input: string | ChatMessage[], options?: GenerateOptions): Generation;
  /** Re-executes the receipt on this model and backend; `BUSY` while a generation runs. */
  verify(receipt: Receipt | string, options?: VerifyOptions): Promise<VerifyResult>;
  /** Releases the model; later calls throw `FREED`. */
  free(): void;
}
