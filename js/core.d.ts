// Types shared by the browser (index.js), worker (worker.js) and Node (node.js) entry points.

/** Codes thrown by the wasm module (the crate's `Error::code()`). */
export type RustErrorCode =
  | 'BAD_MAGIC' | 'UNSUPPORTED_VERSION' | 'TRUNCATED' | 'CORRUPT' | 'UNSUPPORTED_TENSOR_TYPE'
  | 'UNSUPPORTED_ARCHITECTURE' | 'MISSING_TENSOR' | 'BAD_TENSOR' | 'MISSING_KEY' | 'WRONG_TYPE'
  | 'TOKENIZER' | 'CONTEXT_OVERFLOW' | 'INVALID_ARGUMENT' | 'IO' | 'NO_ADAPTER' | 'MISSING_LIMIT'
  | 'MISSING_FEATURE' | 'DEVICE_LOST' | 'OUT_OF_MEMORY' | 'SHADER' | 'GPU' | 'BAD_RECEIPT'
  | 'UNSUPPORTED_RECEIPT_VERSION' | 'ABORTED' | 'BUSY' | 'PANIC';
/** Codes of errors raised by the JavaScript layer. */
export type JsErrorCode =
  | 'NETWORK' | 'QUOTA' | 'INTEGRITY' | 'FREED' | 'WORKER_GONE' | 'ABORTED' | 'KEYSTORE' | 'CRYPTO';
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
 * wasm: `'convert'` (an encoder's checkpoint converted: 0/1 then 1/1), `'hash'` (bytes hashed),
 * `'upload'` (tensors converted or uploaded), `'compile'` (WebGPU: 0/1 then 1/1 around the
 * kernels' warm-up), `'verify'` (tokens, or an embedding receipt's texts, re-executed) and
 * `'embed'` (texts embedded).
 */
export type ProgressStage =
  | 'download' | 'cache' | 'read' | 'convert' | 'hash' | 'upload' | 'compile' | 'verify' | 'embed';

/** The files of an encoder's checkpoint: model.safetensors, config.json, tokenizer.json. */
export type EncoderFile = 'model' | 'config' | 'tokenizer';

export interface Progress {
  stage: ProgressStage;
  loaded: number;
  /** Unknown (undefined) while reading a stream with no length before the GGUF header is in. */
  total: number | undefined;
  /** Loading an encoder: which of its files the reading stages are about. */
  file?: EncoderFile;
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
  /**
   * A private receipt: salted commitments to the prompt and output instead of their text and
   * token ids; the result's `opening` reveals them to whoever should re-execute it.
   */
  private?: boolean;
  /**
   * Sign the receipt: `true`, the device key (`Engine.deviceKey()`, kept in IndexedDB); `false`,
   * unsigned; or a `CryptoKeyPair` of ECDSA P-256 keys. Default: `true` where IndexedDB and
   * `crypto.subtle` exist (pages and workers in a secure context), `false` under Node.js.
   * `sign: true` without IndexedDB throws `KEYSTORE`, without `crypto.subtle` `CRYPTO`, and a
   * value of another kind `INVALID_ARGUMENT`, synchronously, before the generation starts. A pair
   * whose public key does not match its private key leaves the receipt unsigned (`signError`:
   * `CRYPTO`).
   */
  sign?: boolean | CryptoKeyPair;
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

/**
 * A receipt's signature (docs/RECEIPT.md): ECDSA P-256 with SHA-256 over the 32 bytes of
 * `receiptSigningMessage` (they depend on `final` only), outside the sealed core.
 */
export interface ReceiptSignature {
  alg: 'ES256';
  /** base64url (no padding) of the SEC1 uncompressed public key, 65 bytes (WebCrypto's `raw` export). */
  key: string;
  /** Hex of the first 8 bytes of SHA-256 of those 65 bytes (16 characters). */
  fingerprint: string;
  /** base64url (no padding) of r‖s, 64 bytes (what WebCrypto's ECDSA `sign` returns). */
  value: string;
}

/** A receipt as the CLI writes it (docs/RECEIPT.md; version 2). */
export interface Receipt {
  version: number;
  mode: string;
  numerics: string;
  model: { file_sha256: string; tensors_root: string; tokenizer: string; chat_template?: string; [key: string]: unknown };
  /** Absent in a private receipt (`commitments` instead). */
  prompt?: { text: string } | { messages: ChatMessage[] };
  prompt_ids?: number[];
  sampling: { temperature_q16: number; top_k: number; top_p_q16: number; seed: string; max_tokens: number; stop: string[]; eog: number[] };
  tokens?: number[];
  /** base64url of 32 bytes per generated token. */
  steps: string;
  finish: string;
  output?: string;
  /** A private receipt: salted commitments to the prompt and the output (hex). */
  commitments?: { prompt: string; output: string };
  sections: Record<string, string>;
  chain: string;
  final: string;
  signature?: ReceiptSignature;
  meta: { engine: string; backend: string; adapter?: string | null; prefill_ms: number; decode_ms: number; [key: string]: unknown };
  [key: string]: unknown;
}

/** What a private receipt commits to, revealed: give it to `verify` to re-execute the receipt. */
export interface Opening {
  version: 2;
  kind: 'opening';
  salt: string;
  prompt: unknown;
  tokens: number[];
  output: string;
  [key: string]: unknown;
}

export interface GenerationResult {
  text: string;
  finish: 'eog' | 'length' | 'stop' | 'aborted';
  tokens: number[];
  /** null with `receipt: false`. Signed (its `signature`) unless `sign` was false or signing failed. */
  receipt: Receipt | null;
  /** A private receipt's opening; null otherwise. */
  opening: Opening | null;
  /** The per-layer digests behind each step's root (binary, magic "EPTR"); null without a receipt. */
  trace: Uint8Array | null;
  timings: Timings;
  /**
   * Why the receipt is unsigned although signing was asked for (`KEYSTORE`, `QUOTA`, `CRYPTO`):
   * the receipt is kept, unsigned. null otherwise.
   */
  signError: { code: ErrorCode; message: string } | null;
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
  /**
   * `'signature'` (`what`: `'key'`, `'fingerprint'` or `'value'`), `'opening'` (`what`:
   * `'prompt'` or `'output'`: the opening does not match the commitment), `'step'` (`step`: a
   * step's layer root differs, and no trace names the layer), `'layer'` (with a trace: `step`
   * and `layer`), and the others as in version 1.
   */
  kind:
    | 'hash' | 'signature' | 'opening' | 'step' | 'format' | 'numerics' | 'model' | 'prompt' | 'layer'
    | 'token' | 'finish' | 'output' | 'context';
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
  /** Re-executed with no findings. False for a private receipt given without its opening. */
  ok: boolean;
  /**
   * Whether the receipt was re-executed. False for a private receipt without its opening: then
   * only its hashes, its signature and the model were checked (`report` says so).
   */
  reexecuted: boolean;
  /**
   * The fingerprint of a valid signature's key (16 hex digits: 64 bits, for display), or null
   * (unsigned, or the signature failed). To decide whom to trust, compare `signerKey`.
   */
  signer: string | null;
  /**
   * The full public key of a valid signature: base64url (no padding) of its 65-byte SEC1 form
   * (WebCrypto's `exportKey('raw')`), or null with `signer`. Compare this, not `signer`, with the
   * keys you trust (`Engine.deviceKey()`'s `jwk` is the same key).
   */
  signerKey: string | null;
  /** One line: "verified: …" or "NOT verified: …". */
  report: string;
  findings: string[];
  stepsMatched: number;
  divergence?: Divergence | null;
}

export interface VerifyOptions {
  onProgress?: (progress: Progress) => void;
  signal?: AbortSignal;
}

/** `verify` of a generation receipt. */
export interface ReceiptVerifyOptions extends VerifyOptions {
  /** A private receipt's opening (the object or its JSON): without it, it is not re-executed. */
  opening?: Opening | string;
  /** The receipt's trace: a step whose root differs is then named down to its layer. */
  trace?: Uint8Array;
}

/** A receipt in any of its forms: the object, its JSON, or its binary form (magic "EPRC"). */
export type ReceiptInput = Receipt | string | Uint8Array;

/** The device key: its public key as a JWK and its fingerprint (as in `ReceiptSignature`). */
export interface DeviceKey {
  jwk: { kty: 'EC'; crv: 'P-256'; x: string; y: string };
  fingerprint: string;
  /** When it was made (milliseconds since the epoch). */
  createdAt: number;
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
  verify(receipt: ReceiptInput, options?: ReceiptVerifyOptions): Promise<VerifyResult>;
  /** Releases the model; later calls throw `FREED`. */
  free(): void;
}

// ---- Embeddings ----

/** One source file of an encoder. */
export interface EncoderFileInfo {
  /** Lowercase hex SHA-256 of the file. */
  sha256: string;
  bytes: number;
}

export interface EmbedderInfo {
  architecture: 'bert';
  layers: number;
  /** The vectors' length (384 for all-MiniLM-L6-v2). */
  dimensions: number;
  heads: number;
  vocabSize: number;
  /** The model's positions: the most word pieces a text can have. */
  maxPositions: number;
  /** Word pieces per text unless `maxTokens` says otherwise (256). */
  defaultMaxTokens: number;
  /** Texts per forward pass (32): the event loop runs between two. */
  batch: number;
  backend: 'cpu';
  /** The converted model's SHA-256 (a receipt's `model.file_sha256`) and length. */
  sha256: string;
  bytes: number;
  files: Record<EncoderFile, EncoderFileInfo>;
  threads: number;
  backendReason: string;
  /** As `EngineInfo.cache`, for the three files together. */
  cache?: { status: 'hit' | 'stored' | 'off' | 'failed'; error?: { code: string; message: string } };
}

export interface EmbedOptions {
  /** Word pieces per text, `[CLS]` and `[SEP]` included (default 256); longer texts are truncated. */
  maxTokens?: number;
  /** Make a receipt (default true). */
  receipt?: boolean;
  /** Stage `'embed'`: texts embedded, after each batch of 32. */
  onProgress?: (progress: Progress) => void;
  /** Checked between batches: rejects with `ABORTED`; the embedder stays usable. */
  signal?: AbortSignal;
}

/** An embedding receipt as the CLI writes it (docs/RECEIPT.md, "Embedding receipts"). */
export interface EmbeddingReceipt {
  version: number;
  kind: 'embedding';
  numerics: string;
  model: { file_sha256: string; tensors_root: string; tokenizer: string; chat_template: string };
  max_tokens: number;
  /** Per text: the text, its word pieces, its vector's digest. */
  texts: { text: string; ids: number[]; vector: string }[];
  root: string;
  made_by: string;
}

export interface EmbedResult {
  /** One L2-normalized vector per text, in order. */
  vectors: Float32Array[];
  /** null with `receipt: false`. */
  receipt: EmbeddingReceipt | null;
}

export interface EmbedDivergence {
  kind: 'root' | 'numerics' | 'model' | 'ids' | 'vector';
  /** `'model'`: which commitment differs. */
  field?: string;
  /** `'ids'`, `'vector'`: the text's index in the receipt, and the text. */
  index?: number;
  text?: string;
  message: string;
}

export interface EmbedVerifyResult {
  ok: boolean;
  /** One line, as the CLI prints: "verified: N texts re-embedded bit for bit" or "NOT verified: …". */
  report: string;
  /** Every failed check, in the CLI's order. */
  findings: string[];
  divergences: EmbedDivergence[];
  /** The verdict: the first finding that names a text, else the first one. */
  divergence?: EmbedDivergence;
  texts: number;
  /** Texts re-embedded to the same word pieces and vector (0 when the model or numerics differ). */
  textsMatched: number;
}

/** The methods of a loaded encoder (`Embedder` in the browser and in Node). */
export class BaseEmbedder {
  protected constructor();
  info(): EmbedderInfo;
  /** Word pieces as the encoder sees the text: `[CLS] … [SEP]`, at most `maxTokens` (default 256). */
  tokenize(text: string, options?: { maxTokens?: number }): Uint32Array;
  /** A string is one text. */
  embed(texts: string | string[], options?: EmbedOptions): Promise<EmbedResult>;
  /** Re-embeds the receipt's texts; `BAD_RECEIPT` for a receipt that is not an embedding one. */
  verify(receipt: EmbeddingReceipt | string, options?: VerifyOptions): Promise<EmbedVerifyResult>;
  /** Releases the encoder (running calls reject with `ABORTED`); later calls throw `FREED`. */
  free(): void;
}

/** Cosine similarity (double-precision sums); 0 when either vector is all zeros. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number;
