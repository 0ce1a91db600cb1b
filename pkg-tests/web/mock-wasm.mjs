// A stand-in for the wasm glue (pkg/edgeproof_wasm.js) that follows js/WASM_CONTRACT.md, for
// core.test.mjs: it checks the JavaScript layer's rules (one step at a time, finish() never
// during a step, BUSY until finish()) without Rust or a browser. A "model" is any bytes
// starting with "GGUF"; its expected length is its 5th byte. Receipts: `final` is SHA-256 of the
// other fields' JSON (signature left out), the signing message SHA-256 of `final` (BAD_RECEIPT
// when `final` does not match the fields, as the wasm module refuses to sign such a receipt); the
// binary form is "EPRC" then the JSON's UTF-8.
import { createHash } from 'node:crypto';

const coded = (code, message) => Object.assign(new Error(message), { code });
const tick = () => new Promise((resolve) => setTimeout(resolve));

export const calls = [];

export default async function init() {}
export function initSync() {}
let onPanic = null;
let panicking = false;
export function setPanicHook(hook) {
  onPanic = hook;
}
/** The next step panics as Rust would: the hook runs, then the step's promise never settles. */
export function panicNextStep() {
  panicking = true;
}
export function lastPanic() {
  return undefined;
}

function parse(json) {
  try {
    return JSON.parse(json);
  } catch (e) {
    throw coded('BAD_RECEIPT', `not JSON: ${e.message}`);
  }
}

/** The mock's `final`: SHA-256 (hex) of the receipt's fields but `final` and `signature`. */
function seal(receipt) {
  const { final: _, signature: __, ...fields } = receipt;
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex');
}

export function receiptSigningMessage(json) {
  const receipt = parse(json);
  if (receipt.final !== seal(receipt)) throw coded('BAD_RECEIPT', 'final: the receipt does not hash to it (mock)');
  return new Uint8Array(createHash('sha256').update(`signature ${receipt.final}`).digest());
}

export function receiptToBytes(json) {
  parse(json);
  return new Uint8Array(Buffer.concat([Buffer.from('EPRC'), Buffer.from(json)]));
}

export function receiptFromBytes(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new Error('mock: receiptFromBytes takes a Uint8Array');
  if (Buffer.from(bytes.subarray(0, 4)).toString('latin1') !== 'EPRC') throw coded('BAD_RECEIPT', 'not a binary receipt');
  return Buffer.from(bytes.subarray(4)).toString('utf8');
}

export class ModelLoader {
  #head = []; // the first 5 bytes
  #n = 0;
  push(chunk) {
    this.#head.push(...chunk.subarray(0, 5 - this.#head.length));
    this.#n += chunk.length;
    if (this.#head.length >= 4 && String.fromCharCode(...this.#head.slice(0, 4)) !== 'GGUF') {
      throw coded('BAD_MAGIC', 'not a GGUF file');
    }
  }
  received() {
    return this.#n;
  }
  expected() {
    return this.#head.length > 4 ? this.#head[4] : undefined;
  }
  free() {
    calls.push('loader.free');
  }
}

export async function loadEngine(loader, backend, onProgress, aborted) {
  const total = loader.expected();
  if (loader.received() < total) throw coded('TRUNCATED', `${loader.received()} of ${total} bytes`);
  for (let i = 0; i <= 2; i++) {
    if (aborted?.()) throw coded('ABORTED', 'aborted');
    onProgress?.('hash', i, 2);
    await tick();
  }
  return new WasmEngine(backend, total);
}

export class WasmEngine {
  #backend;
  #bytes;
  #run = null;
  #stepping = false;

  constructor(backend, bytes) {
    this.#backend = backend;
    this.#bytes = bytes;
  }

  info() {
    return { backend: this.#backend, bytes: this.#bytes, sha256: 'ab'.repeat(32), contextLength: 256 };
  }

  tokenize(text) {
    return Uint32Array.from(text, (c) => c.charCodeAt(0));
  }

  detokenize(ids) {
    return String.fromCharCode(...ids);
  }

  start(request) {
    if (this.#run) throw coded('BUSY', 'a generation runs');
    if ((request.prompt ?? '').length > 256) throw coded('CONTEXT_OVERFLOW', 'too long');
    const known = ['prompt', 'messages', 'maxTokens', 'temperature', 'topK', 'topP', 'seed', 'stop', 'receipt', 'private'];
    const unknown = Object.keys(request).filter((k) => !known.includes(k));
    if (unknown.length) throw coded('INVALID_ARGUMENT', `request: unknown field ${unknown[0]}`); // deny_unknown_fields
    calls.push(`start(${JSON.stringify(request)})`);
    this.#run = { max: request.maxTokens ?? 256, tokens: [], aborted: false, done: false, private: !!request.private };
  }

  async step() {
    if (this.#stepping) throw new Error('mock: step() while a step runs');
    const run = this.#run;
    if (!run) throw new Error('mock: step() without start()');
    this.#stepping = true;
    if (panicking) {
      onPanic?.('panicked at src/web/mod.rs: mock');
      return new Promise(() => {});
    }
    await tick();
    this.#stepping = false;
    if (run.done || run.aborted) return { token: -1, text: '', done: (run.done = true) };
    const token = run.tokens.length + 1;
    run.tokens.push(token);
    run.done = run.tokens.length >= run.max;
    return { token, text: `t${token} `, done: run.done };
  }

  abort() {
    if (this.#run && !this.#run.done) this.#run.aborted = true;
  }

  finish() {
    if (this.#stepping) throw new Error('mock: finish() during a step');
    const run = this.#run;
    this.#run = null;
    calls.push('finish');
    const text = run.tokens.map((t) => `t${t} `).join('');
    const finish = run.aborted ? 'aborted' : 'length';
    const receipt = run.private
      ? { version: 2, finish, commitments: { prompt: 'p', output: 'o' } }
      : { version: 2, finish, tokens: run.tokens };
    receipt.final = seal(receipt);
    const opening = run.private ? { version: 2, kind: 'opening', salt: 's', output: text } : null;
    return { text, finish, tokens: run.tokens, receipt, opening, trace: Uint8Array.of(69, 80, 84, 82), timings: {} };
  }

  /** `ok` unless the receipt says `mockFail`; not re-executed for commitments without an opening. */
  async verify(json, opening, trace, onProgress, aborted) {
    if (this.#run) throw coded('BUSY', 'a generation runs');
    if (typeof json !== 'string') throw new Error('mock: verify takes the receipt as JSON');
    if (opening !== undefined && typeof opening !== 'string') throw new Error('mock: verify takes the opening as JSON');
    if (trace !== undefined && !(trace instanceof Uint8Array)) throw new Error('mock: verify takes the trace as a Uint8Array');
    const r = parse(json);
    calls.push(`verify(${opening ?? '-'}, ${trace ? trace.length : '-'})`);
    onProgress?.('verify', 0, 1);
    await tick();
    if (aborted?.()) throw coded('ABORTED', 'aborted');
    const reexecuted = !r.commitments || opening !== undefined;
    return {
      ok: reexecuted,
      reexecuted,
      signer: r.signature?.fingerprint ?? null,
      signerKey: r.signature?.key ?? null,
      report: reexecuted ? 'verified: mock' : 'NOT re-executed (mock): no opening',
      findings: [],
      stepsMatched: 0,
      divergence: null,
    };
  }

  free() {
    if (this.#stepping) throw new Error('mock: free() during a step');
    calls.push('engine.free');
  }
}

// Embeddings: an "encoder" is any three non-empty files; a text's vector is
// [length, first char code, 1, 0] (not normalized: the JS layer does not care).
export class EncoderLoader {
  #bytes = { model: 0, config: 0, tokenizer: 0 };
  constructor(backend) {
    if (backend === 'webgpu') throw coded('MISSING_FEATURE', 'embeddings on WebGPU: not yet');
    if (!['cpu', 'auto'].includes(backend)) throw coded('INVALID_ARGUMENT', `backend ${backend}`);
    calls.push(`encoderLoader(${backend})`);
  }
  push(file, chunk) {
    this.#bytes[file] += chunk.length;
  }
  received(file) {
    return this.#bytes[file];
  }
  expected() {
    return undefined;
  }
  end(file) {
    if (!this.#bytes[file]) throw coded('TRUNCATED', `${file} is empty`);
  }
  free() {
    calls.push('encoderLoader.free');
  }
}

export async function loadEncoder(loader, onProgress, aborted) {
  onProgress?.('convert', 0, 1);
  await tick();
  if (aborted?.()) throw coded('ABORTED', 'aborted');
  onProgress?.('convert', 1, 1);
  return new WasmEncoder();
}

export class WasmEncoder {
  info() {
    return { backend: 'cpu', dimensions: 4, files: { model: { sha256: 'cd'.repeat(32) } } };
  }

  tokenize(text) {
    return Uint32Array.from([101, ...Array.from(text, (c) => c.charCodeAt(0)), 102]);
  }

  async embed(texts, maxTokens, receipt, onProgress, aborted) {
    const vectors = [];
    for (let at = 0; at < texts.length || at === 0; at += 32) {
      await tick();
      if (aborted?.()) throw coded('ABORTED', 'aborted: embedding');
      for (const t of texts.slice(at, at + 32)) vectors.push(Float32Array.of(t.length, t.charCodeAt(0) || 0, 1, 0));
      onProgress?.('embed', vectors.length, texts.length);
      if (!texts.length) break;
    }
    return { vectors, receipt: receipt ? { kind: 'embedding', max_tokens: maxTokens ?? 256, texts: texts.map((text) => ({ text })) } : null };
  }

  async verify(json, onProgress) {
    const r = JSON.parse(json);
    onProgress?.('verify', r.texts.length, r.texts.length);
    await tick();
    return { ok: true, report: `verified: ${r.texts.length} texts (mock)`, findings: [], divergences: [], texts: r.texts.length, textsMatched: r.texts.length };
  }

  free() {
    calls.push('encoder.free');
  }
}
