// SmolLM2-135M-Instruct in Chromium: the wasm CPU path and WebGPU (SwiftShader) make the same
// receipts, greedy and seeded, and those equal the native CLI's for the same requests (the
// same `final` hash). A short prompt and few tokens: SwiftShader runs the kernels on the CPU.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CLI } from './fixtures.mjs';
import { artifacts, MODELS, setup } from './harness.mjs';

let h;
before(async () => {
  h = await setup();
});
after(() => h?.close());

const PROMPT = 'The capital of France is';
const MAX = 3;
const SEEDED = { temperature: 0.8, topK: 40, topP: 0.95, seed: 5 };

function cliReceipt(name, args) {
  const out = join(artifacts, `smollm2-cli-${name}.json`);
  execFileSync(CLI, ['generate', '--model', h.fixtures.smollm2, '--prompt', PROMPT, '--max-tokens', String(MAX), ...args, '--receipt', out], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return JSON.parse(readFileSync(out, 'utf8'));
}

test('SmolLM2: CPU and WebGPU give the CLI’s receipts, greedy and seeded', { timeout: 900_000 }, (t) =>
  h.page(t, async (page) => {
    const r = await page.evaluate(async ({ model, prompt, max, seeded }) => {
      const { Engine } = await import('/pkg/index.js');
      const out = {};
      for (const backend of ['cpu', 'webgpu']) {
        const engine = await Engine.load(model, { backend });
        const greedy = await engine.generate(prompt, { maxTokens: max }).result;
        const sampled = await engine.generate(prompt, { maxTokens: max, ...seeded }).result;
        out[backend] = { backend: engine.info().backend, greedy: greedy.receipt, seeded: sampled.receipt };
        engine.free();
      }
      return out;
    }, { model: MODELS.smollm2, prompt: PROMPT, max: MAX, seeded: SEEDED });
    const cli = {
      greedy: cliReceipt('greedy', []),
      seeded: cliReceipt('seeded', ['--temperature', '0.8', '--top-k', '40', '--top-p', '0.95', '--seed', '5']),
    };
    assert.equal(r.webgpu.backend, 'webgpu');
    for (const kind of ['greedy', 'seeded']) {
      assert.equal(r.cpu[kind].tokens.length, MAX, `${kind}: ${r.cpu[kind].tokens}`);
      assert.equal(r.cpu[kind].final, cli[kind].final, `${kind}: wasm CPU ${r.cpu[kind].tokens} vs CLI ${cli[kind].tokens}`);
      assert.equal(r.webgpu[kind].final, cli[kind].final, `${kind}: WebGPU ${r.webgpu[kind].tokens} vs CLI ${cli[kind].tokens}`);
    }
    assert.notEqual(cli.greedy.final, cli.seeded.final);
  }));
