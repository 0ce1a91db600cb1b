// The test server: the built package at /pkg/, the test pages at /, the Vite consumer app's
// build at /consumer/, model files at /models/NAME (CORS), /cut/NAME (half of the file,
// then the connection is destroyed), and /__requests (how often each path was asked for).
// Pages get COOP/COEP headers, so they are cross-origin isolated, except under /plain/ (the
// same paths without those headers: pages without shared memory).
//
//   node pkg-tests/web/server.mjs MODELS_DIR     (prints its URL; for trying pages by hand)
import { createReadStream, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileAt, inside, TYPES } from '../../www/serve.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, '../..');


/**
 * Starts the server on 127.0.0.1 (a random port).
 * @returns {Promise<{ url: string, requests: (path: string) => number, close: () => Promise<void> }>}
 */
export async function startServer({ models, pkg = join(repo, 'pkg'), consumer = join(repo, 'pkg-tests/consumer/dist') }) {
  const counts = new Map();
  const roots = [
    ['/pkg/', pkg],
    ['/models/', resolve(models)],
    ['/consumer/', consumer],
    ['/', join(here, 'pages')],
  ];

  const server = createServer((req, res) => {
    let path = new URL(req.url, 'http://x').pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    const plain = path.startsWith('/plain/');
    if (plain) path = path.slice('/plain'.length);
    const headers = {
      'Cache-Control': 'no-store',
      ...(plain ? {} : { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }),
      'Cross-Origin-Resource-Policy': 'cross-origin',
      'Access-Control-Allow-Origin': '*',
    };
    if (path === '/__requests') {
      res.writeHead(200, { ...headers, 'Content-Type': 'application/json' });
      return res.end(JSON.stringify(Object.fromEntries(counts)));
    }
    if (path.startsWith('/cut/')) {
      const file = inside(resolve(models), path.slice('/cut/'.length));
      const st = file && fileAt(file);
      if (!st) return notFound(res, headers);
      res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': st.size });
      // Half of the announced bytes, then the connection goes: a download cut midway.
      const half = readFileSync(file).subarray(0, Math.floor(st.size / 2));
      res.write(half, () => req.socket.destroy());
      return;
    }
    for (const [prefix, root] of roots) {
      if (!path.startsWith(prefix)) continue;
      let file = inside(root, path.slice(prefix.length));
      if (file && fileAt(join(file, 'index.html'))) file = join(file, 'index.html');
      const st = file && fileAt(file);
      if (!st) return notFound(res, headers);
      res.writeHead(200, {
        ...headers,
        'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
        'Content-Length': st.size,
      });
      if (req.method === 'HEAD') return res.end();
      return createReadStream(file).pipe(res);
    }
    notFound(res, headers);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests: (path) => counts.get(path) ?? 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((ok) => server.close(() => ok()));
    },
  };
}

function notFound(res, headers) {
  res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' });
  res.end('not found');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const models = process.argv[2];
  if (!models) {
    console.error('usage: node pkg-tests/web/server.mjs MODELS_DIR');
    process.exit(2);
  }
  const { url } = await startServer({ models });
  console.log(url);
}
