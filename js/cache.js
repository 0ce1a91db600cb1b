// The model cache in the Origin Private File System: folder `edgeproof-cache`, one
// `<sha256>.gguf` per model (an encoder's files: `<sha256>.safetensors`, `<sha256>.json`) and
// `index.json` mapping each URL to its entry. A download is
// written to `tmp-<random>` and renamed only once the engine has loaded it (so the file is
// complete and parsed) and its sha256 matched; on any failure the temporary file goes.
import { EdgeproofError } from './core.js';

const FOLDER = 'edgeproof-cache';
const INDEX = 'index.json';

async function folder(create) {
  const root = await navigator.storage.getDirectory();
  return root.getDirectoryHandle(FOLDER, { create });
}

async function readIndex(dir) {
  try {
    const file = await (await dir.getFileHandle(INDEX)).getFile();
    return JSON.parse(await file.text());
  } catch {
    return {}; // none yet (or unreadable: rebuilt by the next store)
  }
}

async function writeIndex(dir, index) {
  const writable = await (await dir.getFileHandle(INDEX, { create: true })).createWritable();
  await writable.write(JSON.stringify(index));
  await writable.close();
}

// Index updates are read-modify-write: one at a time, across tabs where Web Locks exist.
let queue = Promise.resolve();
function locked(fn) {
  if (globalThis.navigator?.locks) return navigator.locks.request('edgeproof-cache', fn);
  const run = queue.then(fn);
  queue = run.catch(() => {});
  return run;
}

async function removeIfThere(dir, name, options) {
  try {
    await dir.removeEntry(name, options);
  } catch (e) {
    if (e?.name !== 'NotFoundError') throw e;
  }
}

/** The cached file for `url` (and `sha256`, when the caller expects one), or null. */
export async function cachedFile(url, sha256) {
  try {
    const dir = await folder(false);
    const entry = (await readIndex(dir))[url];
    if (!entry || (sha256 && sha256.toLowerCase() !== entry.sha256)) return null;
    const file = await (await dir.getFileHandle(entry.file ?? `${entry.sha256}.gguf`)).getFile();
    return file.size === entry.bytes ? file : null;
  } catch {
    return null; // no OPFS, no folder, or the file was removed behind the index's back
  }
}

async function quotaError(needed, cause) {
  const estimate = await navigator.storage.estimate?.().catch(() => null);
  const room = estimate ? `; navigator.storage.estimate(): ${estimate.usage} of ${estimate.quota} bytes used` : '';
  return new EdgeproofError(
    'QUOTA',
    `caching the model needs ${needed ?? 'its size in'} bytes of storage, more than the origin has left${room}; it loads without caching`,
    { cause },
  );
}

/** A download being written to `tmp-<random>`; every method swallows its failures. */
class TempFile {
  #dir;
  #name;
  #handle;
  #writable;
  #total;
  #bytes = 0;
  #failed = false;

  constructor(dir, name, handle, writable, total) {
    this.#dir = dir;
    this.#name = name;
    this.#handle = handle;
    this.#writable = writable;
    this.#total = total;
  }

  /** Why the file was not kept (`QUOTA` for a full origin), or null. */
  error = null;

  /** Caching is best effort: a failure (a full quota) is kept in `error` and the load goes on. */
  async #fail(e) {
    if (this.#failed) return;
    this.#failed = true;
    this.error =
      e?.name === 'QuotaExceededError'
        ? await quotaError(this.#total, e)
        : new EdgeproofError('IO', `caching the model failed: ${e?.message ?? e}`, { cause: e });
    console.warn(this.error);
    await this.discard();
  }

  async write(chunk) {
    if (this.#failed) return;
    try {
      await this.#writable.write(chunk);
      this.#bytes += chunk.byteLength;
    } catch (e) {
      await this.#fail(e);
    }
  }

  /**
   * Renames the file to `<sha256>.<ext>` and records `url` in the index (with the file's name
   * unless it is a `.gguf`: an encoder's files are `.safetensors` and `.json`).
   */
  async commit(url, sha256, ext = 'gguf') {
    if (this.#failed) return;
    try {
      await this.#writable.close();
      const name = `${sha256}.${ext}`;
      const there = await this.#dir.getFileHandle(name).then(() => true, () => false);
      if (there) await removeIfThere(this.#dir, this.#name); // the same bytes, from another URL
      else if (this.#handle.move) await this.#handle.move(name);
      else {
        const target = await this.#dir.getFileHandle(name, { create: true });
        await (await this.#handle.getFile()).stream().pipeTo(await target.createWritable());
        await removeIfThere(this.#dir, this.#name);
      }
      const bytes = this.#bytes;
      await locked(async () => {
        const index = await readIndex(this.#dir);
        index[url] = { sha256, bytes, url, storedAt: Date.now(), ...(ext === 'gguf' ? {} : { file: name }) };
        await writeIndex(this.#dir, index);
      });
    } catch (e) {
      await this.#fail(e);
    }
  }

  async discard() {
    await this.#writable.abort().catch(() => {});
    await removeIfThere(this.#dir, this.#name).catch(() => {});
  }
}

/** A temporary file for a download of `total` bytes, or null where OPFS is unavailable. */
export async function tempFile(total) {
  try {
    const dir = await folder(true);
    const name = `tmp-${crypto.randomUUID()}`;
    const handle = await dir.getFileHandle(name, { create: true });
    return new TempFile(dir, name, handle, await handle.createWritable(), total);
  } catch (e) {
    console.warn('edgeproof: the OPFS cache is unavailable; loading without it', e);
    return null;
  }
}

/** `Engine.cache`: what the OPFS cache holds. */
export const cache = {
  /** @returns {Promise<{ key: string, url: string, bytes: number, storedAt: number }[]>} */
  async list() {
    let dir;
    try {
      dir = await folder(false);
    } catch {
      return [];
    }
    return Object.values(await readIndex(dir)).map(({ sha256, url, bytes, storedAt }) => ({
      key: sha256,
      url,
      bytes,
      storedAt,
    }));
  },

  /** Removes the model whose sha256 is `key` (and every URL recorded for it). */
  async delete(key) {
    await locked(async () => {
      let dir;
      try {
        dir = await folder(false);
      } catch {
        return;
      }
      const index = await readIndex(dir);
      const files = new Set([`${key}.gguf`]);
      for (const [url, entry] of Object.entries(index)) {
        if (entry.sha256 !== key) continue;
        if (entry.file) files.add(entry.file);
        delete index[url];
      }
      for (const name of files) await removeIfThere(dir, name);
      await writeIndex(dir, index);
    });
  },

  /** Removes every cached model, the index and stray temporary files. */
  async clear() {
    await locked(async () => {
      const root = await navigator.storage.getDirectory();
      await removeIfThere(root, FOLDER, { recursive: true });
    });
  },
};
