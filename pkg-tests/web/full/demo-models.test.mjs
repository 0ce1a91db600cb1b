// check-full: the demo page with the real models, as a user drives it: a two-turn chat with
// SmolLM2 (the second turn reuses the first's KV cache) and a Gemma 3 completion, each answer's
// receipt verified by re-execution. Screenshots: target/pkg-tests/demo-full-*.png.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDemoServer } from '../../../www/serve.mjs';
import { artifacts, checkPackage, launchChromium, repo } from '../harness.mjs';

const LONG = 1_200_000;
let server;
let browser;
let page;

before(async () => {
  checkPackage();
  const out = execFileSync(join(repo, 'scripts/fetch-models.sh'), ['smollm2', 'gemma3'], { encoding: 'utf8' });
  const smollm2 = out.match(/^smollm2=(.*)$/m)?.[1];
  assert.ok(smollm2 && out.includes('gemma3='), `scripts/fetch-models.sh smollm2 gemma3 printed:\n${out}`);
  server = await startDemoServer({ models: dirname(smollm2) });
  browser = await launchChromium();
  mkdirSync(artifacts, { recursive: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(server.url);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

async function load(match) {
  await page.waitForSelector(`#model-select option[value*="${match}"]`, { state: 'attached' });
  const value = await page.$eval(`#model-select option[value*="${match}"]`, (o) => o.value);
  await page.selectOption('#model-select', value);
  await page.click('#load');
  await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: LONG });
  assert.equal(await page.textContent('#model-error'), '');
}

async function ask(text, maxTokens) {
  const before = await page.$$eval('.msg.assistant[data-finish]', (l) => l.length);
  await page.$eval('#max-tokens', (e, v) => { e.value = String(v); }, maxTokens);
  await page.fill('#prompt', text);
  await page.click('#send');
  await page.waitForFunction((n) => document.querySelectorAll('.msg.assistant[data-finish]').length > n, before, { timeout: LONG });
  return { answer: await page.textContent('.msg.assistant:last-child .text'), speed: await page.textContent('#speed') };
}

async function verifyLast() {
  const last = '.msg.assistant:last-child';
  await page.click(`${last} .badge`);
  await page.click('#receipt-verify');
  await page.waitForSelector(`${last} .badge:not([data-verdict=pending])`, { timeout: LONG });
  const verdict = await page.getAttribute(`${last} .badge`, 'data-verdict');
  const status = await page.textContent('#receipt-status');
  await page.keyboard.press('Escape');
  assert.equal(verdict, 'verified', status);
}

test('SmolLM2: a two-turn chat, the second turn from the KV cache, both receipts verify', { timeout: LONG }, async () => {
  await load('SmolLM2');
  const one = await ask('What is the capital of France?', 24);
  assert.ok(one.answer.trim(), 'an answer');
  await verifyLast();
  const two = await ask('And of Italy?', 24);
  const [, prompt, evaluated] = two.speed.match(/prompt (\d+) tokens \((\d+) evaluated\)/) ?? [];
  assert.ok(Number(evaluated) < Number(prompt) / 2, `the second turn evaluated ${evaluated} of ${prompt} prompt tokens`);
  await verifyLast();
  await page.screenshot({ path: join(artifacts, 'demo-full-smollm2.png'), fullPage: true });
});

test('Gemma 3: a completion whose receipt verifies', { timeout: LONG }, async () => {
  await load('gemma-3');
  assert.equal(await page.$eval('input[name=mode]:checked', (e) => e.value), 'complete');
  const r = await ask('The three primary colours are', 16);
  assert.ok(r.answer.trim(), 'a completion');
  await verifyLast();
  await page.screenshot({ path: join(artifacts, 'demo-full-gemma3.png'), fullPage: true });
});
