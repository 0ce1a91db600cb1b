// The package tests' model files and a CLI receipt, made by the native CLI:
//   node pkg-tests/web/fixtures.mjs DIR
// tiny.gguf (the tiny llama model with SmolLM2's tokenizer), tiny-seed8.gguf (other weights),
// tiny-truncated.gguf (its first 70 %), tiny-q2k.gguf (one tensor rewritten as Q2_K, a type
// edgeproof does not support, with correctly sized data), cli-receipt.json, smollm2.gguf
// (a link to SmolLM2-135M-Instruct in the model cache), minilm/ (links to all-MiniLM-L6-v2's
// files in the model cache) and three broken copies of it: broken-encoder-corrupt/ (a
// safetensors file whose header is not JSON), broken-encoder-truncated/ (its first MiB) and
// broken-encoder-missing/ (no model.safetensors).
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const CLI = join(repo, 'target/release/edgeproof');
export const CLI_PROMPT = 'The capital of France is';

function smollm2() {
  if (process.env.EDGEPROOF_SMOLLM2) return process.env.EDGEPROOF_SMOLLM2;
  const out = execFileSync(join(repo, 'scripts/fetch-models.sh'), ['smollm2'], { encoding: 'utf8' });
  const path = out.match(/^smollm2=(.*)$/m)?.[1];
  if (!path) throw new Error(`scripts/fetch-models.sh smollm2 printed no smollm2=PATH line:\n${out}`);
  return path;
}

/** all-MiniLM-L6-v2's folder (model.safetensors, config.json, tokenizer.json) in the model cache. */
function minilm() {
  if (process.env.EDGEPROOF_MINILM) return process.env.EDGEPROOF_MINILM;
  const out = execFileSync(join(repo, 'scripts/fetch-models.sh'), ['minilm'], { encoding: 'utf8' });
  const path = out.match(/^minilm=(.*)$/m)?.[1];
  if (!path) throw new Error(`scripts/fetch-models.sh minilm printed no minilm=PATH line:\n${out}`);
  return path;
}

const ENCODER_FILES = ['model.safetensors', 'config.json', 'tokenizer.json'];

/** `dir` made afresh, with links to `files` of the folder `from`. */
function linkFolder(dir, from, files) {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    if (!existsSync(join(from, f))) throw new Error(`${join(from, f)} is missing: scripts/fetch-models.sh minilm`);
    symlinkSync(join(from, f), join(dir, f));
  }
}

/** The first `n` bytes of a file. */
function head(path, n) {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    return buf.subarray(0, readSync(fd, buf, 0, n, 0));
  } finally {
    closeSync(fd);
  }
}

// GGUF metadata value types of a fixed size (ggml's GGUF spec; crate/src/gguf.rs reads the same).
const SCALAR_SIZE = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
const STRING = 8;
const ARRAY = 9;
const Q2_K = 10;
const Q2_K_BLOCK = { elements: 256, bytes: 84 };

/** Parses a GGUF v2/v3 header: its metadata bytes (kept as they are) and tensor infos. */
function parseHeader(buf) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const u32 = () => ((pos += 4), view.getUint32(pos - 4, true));
  const u64 = () => ((pos += 8), Number(view.getBigUint64(pos - 8, true)));
  const str = () => {
    const n = u64();
    pos += n;
    return buf.subarray(pos - n, pos).toString('utf8');
  };
  const skip = (type) => {
    if (type === STRING) str();
    else if (type === ARRAY) {
      const inner = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skip(inner);
    } else pos += SCALAR_SIZE[type];
  };
  if (buf.subarray(0, 4).toString('latin1') !== 'GGUF') throw new Error('not a GGUF file');
  pos = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kvStart = pos;
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const type = u32();
    if (key === 'general.alignment') alignment = view.getUint32(pos, true);
    skip(type);
  }
  const kvBytes = buf.subarray(kvStart, pos);
  const tensors = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const dims = Array.from({ length: u32() }, u64);
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(pos / alignment) * alignment;
  // Each tensor's bytes run to the next tensor's offset (or the end of the file).
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  byOffset.forEach((t, i) => {
    const end = i + 1 < byOffset.length ? byOffset[i + 1].offset : buf.length - dataStart;
    t.data = buf.subarray(dataStart + t.offset, dataStart + end);
  });
  return { version, nKv, kvBytes, tensors, alignment };
}

/** A copy of the GGUF `buf` whose tensor `name` is Q2_K (zero blocks), offsets laid anew. */
export function withQ2K(buf, name) {
  const h = parseHeader(buf);
  const target = h.tensors.find((t) => t.name === name);
  if (!target) throw new Error(`no tensor ${name}`);
  const n = target.dims.reduce((a, b) => a * b, 1);
  if (target.dims[0] % Q2_K_BLOCK.elements) throw new Error(`${name}'s rows are not a multiple of 256`);
  target.type = Q2_K;
  target.data = Buffer.alloc((n / Q2_K_BLOCK.elements) * Q2_K_BLOCK.bytes);

  const align = (x) => Math.ceil(x / h.alignment) * h.alignment;
  let offset = 0;
  for (const t of h.tensors) {
    t.offset = offset;
    offset = align(offset + t.data.length);
  }
  const parts = [];
  const u32 = (x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x); parts.push(b); };
  const u64 = (x) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(x)); parts.push(b); };
  parts.push(Buffer.from('GGUF', 'latin1'));
  u32(h.version);
  u64(h.tensors.length);
  u64(h.nKv);
  parts.push(h.kvBytes);
  for (const t of h.tensors) {
    const nameBytes = Buffer.from(t.name, 'utf8');
    u64(nameBytes.length);
    parts.push(nameBytes);
    u32(t.dims.length);
    t.dims.forEach(u64);
    u32(t.type);
    u64(t.offset);
  }
  const header = Buffer.concat(parts);
  const dataStart = align(header.length);
  const out = Buffer.alloc(dataStart + offset);
  header.copy(out);
  for (const t of h.tensors) t.data.copy(out, dataStart + t.offset);
  return out;
}

/** Writes the fixtures into `dir` (made if needed); returns their paths. */
export function makeFixtures(dir) {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing: build it with cargo build --release -p edgeproof --bin edgeproof`);
  }
  mkdirSync(dir, { recursive: true });
  const tokenizer = smollm2();
  const f = fixturePaths(dir);
  // Its progress goes to stderr: kept out of the test output, and in the error if it fails.
  const cli = (...args) => execFileSync(CLI, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  cli('tiny', '--arch', 'llama', '--tokenizer-from', tokenizer, '--out', f.tiny);
  cli('tiny', '--arch', 'llama', '--tokenizer-from', tokenizer, '--seed', '8', '--out', f.tinySeed8);
  const tiny = readFileSync(f.tiny);
  writeFileSync(f.truncated, tiny.subarray(0, Math.floor(tiny.length * 0.7)));
  writeFileSync(f.q2k, withQ2K(tiny, 'blk.0.ffn_down.weight'));
  cli('generate', '--model', f.tiny, '--prompt', CLI_PROMPT, '--max-tokens', '8', '--receipt', f.cliReceipt);
  // SmolLM2 itself, served beside them (a link, not a copy of its 98 MB).
  rmSync(f.smollm2, { force: true });
  symlinkSync(tokenizer, f.smollm2);
  // MiniLM (links, not copies of its 87 MB), and broken copies for the error codes.
  const encoder = minilm();
  linkFolder(f.minilm, encoder, ENCODER_FILES);
  linkFolder(f.encoderCorrupt, encoder, ['config.json', 'tokenizer.json']);
  const header = Buffer.from('not a JSON header at all', 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(join(f.encoderCorrupt, 'model.safetensors'), Buffer.concat([length, header, Buffer.alloc(64)]));
  linkFolder(f.encoderTruncated, encoder, ['config.json', 'tokenizer.json']);
  writeFileSync(join(f.encoderTruncated, 'model.safetensors'), head(join(encoder, 'model.safetensors'), 1 << 20));
  linkFolder(f.encoderMissing, encoder, ['config.json', 'tokenizer.json']);
  return f;
}

/** The fixtures' paths in `dir` (made by makeFixtures). */
export function fixturePaths(dir) {
  return {
    dir,
    tiny: join(dir, 'tiny.gguf'),
    tinySeed8: join(dir, 'tiny-seed8.gguf'),
    truncated: join(dir, 'tiny-truncated.gguf'),
    q2k: join(dir, 'tiny-q2k.gguf'),
    cliReceipt: join(dir, 'cli-receipt.json'),
    smollm2: join(dir, 'smollm2.gguf'),
    minilm: join(dir, 'minilm'),
    minilmModel: join(dir, 'minilm/model.safetensors'),
    encoderCorrupt: join(dir, 'broken-encoder-corrupt'),
    encoderTruncated: join(dir, 'broken-encoder-truncated'),
    encoderMissing: join(dir, 'broken-encoder-missing'),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node pkg-tests/web/fixtures.mjs DIR');
    process.exit(2);
  }
  makeFixtures(resolve(dir));
  console.log(`fixtures in ${dir}`);
}
