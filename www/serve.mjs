// The demo's server: the page (www/) at /, the built package (pkg/) at /pkg/, and the model
// files of a folder at /models/NAME with a listing at /models/index.json (the .gguf files) and
// /models/encoders.json (the sub-folders holding an encoder's model.safetensors, config.json and
// tokenizer.json). Every response carries a Content-Security-Policy that allows no host but this
// one, and COOP/COEP (the page is cross-origin isolated).
//
//   node www/serve.mjs [--models DIR] [--port N]    (prints the page's address)
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = resolve(fileURLToPath(new URL('.', import.meta.url)));
const repo = resolve(here, '..');

export const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
};

/** Same origin only; wasm compilation needs 'wasm-unsafe-eval'. */
export const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

/** `root` joined with the URL path `rest`, or null when it would leave `root`. */
export function inside(root, rest) {
  let path;
  try {
    path = normalize(join(root, decodeURIComponent(rest)));
  } catch {
    return null;
  }
  return path === root || path.startsWith(root + sep) ? path : null;
}

/** The file's stats, or null when `path` is not a file. */
export function fileAt(path) {
  try {
    const st = statSync(path);
    return st.isFile() ? st : null;
  } catch {
    return null;
  }
}

/** The .gguf files of `dir`, by name. */
export function listModels(dir) {
  let names = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.gguf')).sort();
  } catch {
    return [];
  }
  return names.map((name) => ({ name, url: `/models/${encodeURIComponent(name)}`, bytes: statSync(join(dir, name)).size }));
}

const ENCODER_FILES = ['model.safetensors', 'config.json', 'tokenizer.json'];

/** The sub-folders of `dir` that hold an encoder's three files, by name. */
export function listEncoders(dir) {
  let names = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names
    .map((name) => ({ name, files: ENCODER_FILES.map((f) => fileAt(join(dir, name, f))) }))
    .filter(({ files }) => files.every(Boolean))
    .map(({ name, files }) => ({
      name,
      url: `/models/${encodeURIComponent(name)}/`,
      bytes: files.reduce((sum, st) => sum + st.size, 0),
    }));
}

/**
 * Starts the server on 127.0.0.1 (`port` 0: any free one). `onRequest(path, host)` sees every
 * request (the end-to-end test counts them). `mounts` (`[prefix, folder]`, checked first) and
 * `site` (the folder at `/`) let the benchmark harness serve its own page; `csp: false` drops
 * the policy (a peer's worker is a blob: URL).
 * @returns {Promise<{ url: string, close: () => Promise<void> }>}
 */
export function startDemoServer({ models, port = 0, pkg = join(repo, 'pkg'), onRequest, mounts = [], site = here, csp = true } = {}) {
  const roots = [
    ...mounts.map(([prefix, dir]) => [prefix, resolve(dir)]),
    ['/pkg/', resolve(pkg)],
    ['/models/', models ? resolve(models) : null],
    ['/', resolve(site)],
  ];
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    onRequest?.(path, req.headers.host);
    const headers = {
      ...(csp ? { 'Content-Security-Policy': CSP } : {}),
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'X-Content-Type-Options': 'nosniff',
      'Cache-Control': 'no-cache',
    };
    if (path === '/models/index.json' || path === '/models/encoders.json') {
      const list = path === '/models/index.json' ? listModels : listEncoders;
      res.writeHead(200, { ...headers, 'Content-Type': 'application/json' });
      res.end(JSON.stringify(models ? list(models) : []));
      return;
    }
    const [prefix, root] = roots.find(([p]) => path.startsWith(p));
    let file = root && inside(root, path.slice(prefix.length) || 'index.html');
    if (file && prefix === '/' && file.endsWith('serve.mjs')) file = null;
    const st = file && fileAt(file);
    if (!st) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
      res.end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, {
      ...headers,
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': st.size,
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      const url = `http://127.0.0.1:${server.address().port}/`;
      ok({ url, close: () => new Promise((done) => server.close(() => done())) });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const { url } = await startDemoServer({ models: arg('--models'), port: Number(arg('--port') ?? 0) });
  console.log(url);
}
