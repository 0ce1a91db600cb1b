// Receipts cross runtimes: made in Chromium, verified under Node (pkg/node.js) and by the
// native CLI; made by the CLI, verified in Chromium and under Node.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CLI, CLI_PROMPT } from './fixtures.mjs';
import { MODELS, TIMEOUT, artifacts, repo, setup } from './harness.mjs';

let h, node;
before(async () => {
  h = await setup();
  node = await import(pathToFileURL(join(repo, 'pkg/node.js')));
});
after(() => h?.close());

const OPTS = { maxTokens: 8, temperature: 0.8, seed: 7 };

test('a receipt made in Chromium verifies under Node and with the CLI; Node makes the same one', { timeout: TIMEOUT }, async (t) => {
  const receipt = await h.page(t, (page) =>
    page.evaluate(async ({ model, prompt, opts }) => {
      const { Engine } = await import('/pkg/index.js');
      const engine = await Engine.load(model, { backend: 'cpu' });
      return (await engine.generate(prompt, opts).result).receipt;
    }, { model: MODELS.tiny, prompt: CLI_PROMPT, opts: OPTS }),
  );
  const file = join(artifacts, 'chromium-receipt.json');
  writeFileSync(file, JSON.stringify(receipt, null, 2));

  const stages = new Set();
  const verified = await node.verifyReceipt(receipt, h.fixtures.tiny, { onProgress: (p) => stages.add(p.stage) });
  assert.equal(verified.ok, true, verified.report);
  assert.ok(stages.has('read') && stages.has('hash'), `${[...stages]}`);

  // Exit status 0: verified (it throws otherwise, with the CLI's output).
  execFileSync(CLI, ['verify', file, '--model', h.fixtures.tiny], { stdio: 'pipe' });

  const engine = await node.Engine.load(readFileSync(h.fixtures.tiny));
  const generation = engine.generate(CLI_PROMPT, OPTS);
  const tokens = [];
  for await (const { token } of generation) tokens.push(token);
  const { receipt: again } = await generation.result;
  engine.free();
  assert.equal(again.final, receipt.final);
  assert.deepEqual(tokens, receipt.tokens);
});

test('a receipt made by the CLI verifies in Chromium and under Node', { timeout: TIMEOUT }, async (t) => {
  const json = readFileSync(h.fixtures.cliReceipt, 'utf8');
  const inChromium = await h.page(t, (page) =>
    page.evaluate(async ({ json, model }) => {
      const { verifyReceipt } = await import('/pkg/index.js');
      return verifyReceipt(json, model, { backend: 'cpu' });
    }, { json, model: MODELS.tiny }),
  );
  assert.equal(inChromium.ok, true, inChromium.report);
  const underNode = await node.verifyReceipt(json, h.fixtures.tiny);
  assert.equal(underNode.ok, true, underNode.report);
  assert.equal(underNode.stepsMatched, 8);
});
