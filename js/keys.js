// The device key (browser and Web Worker): an ECDSA P-256 key pair made with WebCrypto on first
// use, its private key non-extractable, kept in IndexedDB (CryptoKey objects are structured-
// cloneable, so the key itself is stored, never its bytes): database `edgeproof-keys`, object
// store `keys`, record `device` = `{ privateKey, publicKey, createdAt }`. Every page and worker of
// an origin shares it. Receipts are signed with it (`sign: true`, the default where IndexedDB and
// crypto.subtle exist). docs/API.md, "Signing and the device key".
import { EdgeproofError, publicKeyId, subtle } from './core.js';

export const KEY_DB = 'edgeproof-keys';
export const KEY_STORE = 'keys';
export const DEVICE_KEY = 'device';

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' };

/** Whether this context can hold a device key (IndexedDB and crypto.subtle). */
export function hasKeystore() {
  return !keystoreMissing();
}

/** Why this context cannot hold a device key (`KEYSTORE`, `CRYPTO`), or null when it can. */
export function keystoreMissing() {
  if (typeof indexedDB === 'undefined' || !indexedDB) {
    return new EdgeproofError('KEYSTORE', 'no IndexedDB here to keep a device key: pass a CryptoKeyPair as the sign option');
  }
  if (!subtle()) {
    return new EdgeproofError('CRYPTO', 'crypto.subtle is unavailable here (WebCrypto needs a secure context: https:// or http://localhost)');
  }
  return null;
}

/** A failed IndexedDB request or transaction as a coded error: `QUOTA` when storage is full. */
function storeError(e, what) {
  const message = `${what}: ${e?.message ?? e?.name ?? 'unknown IndexedDB error'}`;
  if (e?.name === 'QuotaExceededError') {
    return new EdgeproofError('QUOTA', `no room in this origin's storage for the device key (${message})`, { cause: e });
  }
  return new EdgeproofError('KEYSTORE', message, { cause: e });
}

function openDb() {
  return new Promise((resolve, reject) => {
    let req;
    try {
      req = indexedDB.open(KEY_DB, 1);
    } catch (e) {
      // SecurityError: storage off for this origin (some private modes, opaque origins).
      reject(storeError(e, `opening the IndexedDB database ${KEY_DB}`));
      return;
    }
    let gaveUp = false;
    req.onupgradeneeded = () => req.result.createObjectStore(KEY_STORE);
    req.onsuccess = () => {
      const db = req.result;
      // Blocked, then opened once the other tab let go: nobody holds this connection, close it.
      if (gaveUp) {
        db.close();
        return;
      }
      db.onversionchange = () => db.close(); // never block another tab's upgrade or delete
      resolve(db);
    };
    req.onerror = () => reject(storeError(req.error, `opening the IndexedDB database ${KEY_DB}`));
    req.onblocked = () => {
      gaveUp = true;
      reject(new EdgeproofError('KEYSTORE', `opening the IndexedDB database ${KEY_DB} is blocked by another tab`));
    };
  });
}

/**
 * Runs `fn(store, out)` in one transaction on the key store; resolves with what `fn` set
 * `out.value` to once the transaction committed. A callback of `fn`'s requests that throws must
 * call `out.fail(error)`: the transaction is aborted and the promise rejects with that error as
 * the coded error's cause (an abort's own `tx.error` is null).
 */
function transact(db, mode, fn, what) {
  return new Promise((resolve, reject) => {
    let tx;
    try {
      tx = db.transaction(KEY_STORE, mode);
    } catch (e) {
      reject(storeError(e, what));
      return;
    }
    const out = {
      value: undefined,
      error: null,
      fail(e) {
        out.error ??= e;
        try {
          tx.abort();
        } catch {} // already finished: onabort or oncomplete settles the promise
        reject(storeError(out.error, what));
      },
    };
    tx.oncomplete = () => (out.error ? reject(storeError(out.error, what)) : resolve(out.value));
    tx.onerror = () => reject(storeError(out.error ?? tx.error, what));
    tx.onabort = () => reject(storeError(out.error ?? tx.error, what));
    try {
      fn(tx.objectStore(KEY_STORE), out);
    } catch (e) {
      out.fail(e);
    }
  });
}

function usable(record) {
  const ok = (k) => k?.type && k.algorithm?.name === 'ECDSA' && k.algorithm?.namedCurve === 'P-256';
  return record && ok(record.privateKey) && ok(record.publicKey) ? record : null;
}

async function loadOrCreate() {
  const missing = keystoreMissing();
  if (missing) throw missing;
  const s = subtle();
  const db = await openDb();
  try {
    const read = (store, out) => {
      const req = store.get(DEVICE_KEY);
      req.onsuccess = () => (out.value = usable(req.result));
    };
    const found = await transact(db, 'readonly', read, 'reading the device key');
    if (found) return found;
    let pair;
    try {
      pair = await s.generateKey(ALGORITHM, false, ['sign', 'verify']);
    } catch (e) {
      throw new EdgeproofError('CRYPTO', `making the device key failed: ${e?.message ?? e}`, { cause: e });
    }
    // Another tab or worker may have made one meanwhile: the first stored wins, in one transaction.
    const record = { privateKey: pair.privateKey, publicKey: pair.publicKey, createdAt: Date.now() };
    return await transact(
      db,
      'readwrite',
      (store, out) => {
        const req = store.get(DEVICE_KEY);
        req.onsuccess = () => {
          const found = usable(req.result);
          if (found) {
            out.value = found;
            return;
          }
          try {
            store.put(record, DEVICE_KEY); // DataCloneError where CryptoKeys cannot be stored
            out.value = record;
          } catch (e) {
            out.fail(e);
          }
        };
      },
      'storing the device key',
    );
  } finally {
    db.close();
  }
}

let pending = null;

/** The device key pair `{ privateKey, publicKey, createdAt }`, made and stored on first use. */
export function deviceKeyPair() {
  pending ??= loadOrCreate().catch((e) => {
    pending = null; // a later call tries again (storage freed, another tab closed)
    throw e;
  });
  return pending;
}

/** `Engine.deviceKey()`: the device key's public JWK and fingerprint (made on first use). */
export async function deviceKey() {
  const pair = await deviceKeyPair();
  const { fingerprint } = await publicKeyId(pair.publicKey);
  let jwk;
  try {
    jwk = await subtle().exportKey('jwk', pair.publicKey);
  } catch (e) {
    throw new EdgeproofError('CRYPTO', `exporting the device's public key failed: ${e?.message ?? e}`, { cause: e });
  }
  return { jwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }, fingerprint, createdAt: pair.createdAt };
}
