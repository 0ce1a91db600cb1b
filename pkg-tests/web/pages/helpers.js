// In-page helpers for the tests' page.evaluate calls (Playwright passes only an error's
// message back, so codes are read here).

/** The `code` of what `fn()` throws or rejects with; 'no error' when it succeeds. */
export async function codeOf(fn) {
  try {
    await fn();
    return { code: 'no error' };
  } catch (e) {
    return { code: e?.code ?? `uncoded ${e?.name}`, message: String(e?.message ?? e) };
  }
}

/**
 * Iterates a generation, noting how many tokens came before `result` resolved; returns the
 * tokens and the result (receipt included).
 */
export async function collect(generation, { onToken } = {}) {
  let resolved = false;
  generation.result.then(() => (resolved = true), () => {});
  const tokens = [];
  let beforeResult = 0;
  for await (const t of generation) {
    tokens.push(t);
    if (!resolved) beforeResult++;
    onToken?.(t, tokens.length);
  }
  return { tokens, beforeResult, result: await generation.result };
}

/** The names in the OPFS cache folder (none when it does not exist). */
export async function cacheFolder() {
  const root = await navigator.storage.getDirectory();
  let dir;
  try {
    dir = await root.getDirectoryHandle('edgeproof-cache');
  } catch {
    return [];
  }
  const names = [];
  for await (const name of dir.keys()) names.push(name);
  return names.sort();
}
