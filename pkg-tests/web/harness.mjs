// What every package test file needs: the fixtures, the built package, the test server and
// headless Chromium (Debian's, WebGPU on SwiftShader), each checked with a message saying
// how to get it. Failures leave a screenshot and the page's console in target/pkg-tests/.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { fixturePaths } from './fixtures.mjs';
import { startServer } from './server.mjs';

export const repo = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
export const artifacts = join(repo, 'target/pkg-tests');

/** Model file names under /models/ (the fixtures folder). */
export const MODELS = {
  tiny: '/models/tiny.gguf',
  tinySeed8: '/models/tiny-seed8.gguf',
  truncated: '/models/tiny-truncated.gguf',
  q2k: '/models/tiny-q2k.gguf',
  smollm2: '/models/smollm2.gguf',
  /** all-MiniLM-L6-v2's folder, and broken copies of it. */
  minilm: '/models/minilm/',
  encoderCorrupt: '/models/broken-encoder-corrupt/',
  encoderTruncated: '/models/broken-encoder-truncated/',
  encoderMissing: '/models/broken-encoder-missing/',
};

export function fixtures() {
  const dir = process.env.EDGEPROOF_PKG_FIXTURES;
  if (!dir) {
    throw new Error(
      'EDGEPROOF_PKG_FIXTURES is not set: run scripts/test-pkg.sh, or make them with node pkg-tests/web/fixtures.mjs DIR and set it to DIR',
    );
  }
  const f = fixturePaths(resolve(dir));
  for (const path of Object.values(f)) {
    if (!existsSync(path)) throw new Error(`fixture ${path} is missing: node pkg-tests/web/fixtures.mjs ${dir}`);
  }
  return f;
}

export function checkPackage() {
  for (const file of ['index.js', 'worker.js', 'node.js', 'edgeproof_wasm.js', 'edgeproof_wasm_bg.wasm']) {
    if (!existsSync(join(repo, 'pkg', file))) throw new Error(`pkg/${file} is missing: run scripts/build-pkg.sh`);
  }
}

export function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  try {
    return execFileSync('which', ['chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium is missing: apt-get install chromium (or set CHROMIUM to a Chromium binary)');
  }
}

/** Headless Chromium with WebGPU on SwiftShader (the tests', the demo's and the benchmark's). */
export function launchChromium() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--no-sandbox'],
  });
}

/**
 * Starts the server and Chromium. `page(t, fn, { initScript })` runs `fn(page)` on the blank
 * test page in a fresh browser context (its own OPFS), keeping the evidence if it fails.
 */
export async function setup() {
  const f = fixtures();
  checkPackage();
  const server = await startServer({ models: f.dir });
  const browser = await launchChromium();
  mkdirSync(artifacts, { recursive: true });

  async function page(t, fn, { initScript, path = '/' } = {}) {
    const context = await browser.newContext();
    const p = await context.newPage();
    const log = [];
    p.on('console', (m) => log.push(`[${m.type()}] ${m.text()}`));
    p.on('pageerror', (e) => log.push(`[pageerror] ${e.stack ?? e}`));
    if (initScript) await p.addInitScript(initScript);
    await p.goto(server.url + path);
    try {
      return await fn(p);
    } catch (e) {
      const name = t.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 80);
      await p.screenshot({ path: join(artifacts, `${name}.png`) }).catch(() => {});
      writeFileSync(join(artifacts, `${name}.console.txt`), log.join('\n'));
      e.message += `\n(page console and screenshot: target/pkg-tests/${name}.*)`;
      throw e;
    } finally {
      await context.close();
    }
  }

  return {
    fixtures: f,
    server,
    browser,
    page,
    async close() {
      await browser.close();
      await server.close();
    },
  };
}

/** Per test: past this a hang fails the test instead of the whole run. */
export const TIMEOUT = 240_000;
