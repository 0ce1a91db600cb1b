// The package as an npm user gets it: `npm pack pkg/`, installed into the Vite app in
// pkg-tests/consumer (`import { Engine } from 'edgeproof'`), `vite build`, then the built
// page loads the tiny model, streams and verifies. Its screenshot: target/pkg-tests/consumer.png.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { MODELS, TIMEOUT, artifacts, repo, setup } from './harness.mjs';

const consumer = join(repo, 'pkg-tests/consumer');
let h;
before(async () => {
  h = await setup();
  mkdirSync(artifacts, { recursive: true });
  const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  // The tarball's name is fixed (package.json points at it): an old install must not stay.
  run('npm', ['pack', join(repo, 'pkg'), '--pack-destination', artifacts, '--silent'], repo);
  rmSync(join(consumer, 'node_modules/edgeproof'), { recursive: true, force: true });
  run('npm', ['install', '--no-package-lock', '--no-audit', '--no-fund', '--prefer-offline'], consumer);
  run(process.execPath, [join(repo, 'pkg-tests/node_modules/vite/bin/vite.js'), 'build', '--logLevel', 'warn'], consumer);
});
after(() => h?.close());

test('a Vite app built against the packed package loads, streams and verifies', { timeout: TIMEOUT }, (t) =>
  h.page(
    t,
    async (page) => {
      await page.waitForFunction(() => window.outcome, null, { timeout: TIMEOUT });
      const outcome = await page.evaluate(() => window.outcome);
      await page.screenshot({ path: join(artifacts, 'consumer.png') });
      assert.equal(outcome.error, undefined, outcome.error);
      assert.equal(outcome.ok, true, outcome.report);
      assert.equal(outcome.streamed, 12);
      assert.equal(outcome.backend, 'cpu', "'auto' on SwiftShader");
    },
    { path: `/consumer/?model=${MODELS.tiny}` },
  ));
