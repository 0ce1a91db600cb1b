// `scripts/run.sh --once`: serve the demo, drive it in headless Chromium as a user would
// (load the default model, ask one question, verify the answer's receipt by re-execution),
// print the answer, the speed and the verdict. Exit status 1 when the receipt does not verify.
//
//   node www/once.mjs --models DIR [--prompt TEXT] [--max-tokens N] [--backend auto|cpu|webgpu]
// playwright-core is a dev dependency of pkg-tests/ (scripts/run.sh installs it).
import { launchChromium } from '../pkg-tests/web/harness.mjs';
import { startDemoServer } from './serve.mjs';


const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const prompt = arg('--prompt', 'What is the capital of France? Answer in one sentence.');
const maxTokens = arg('--max-tokens', '48');

const outside = [];
const server = await startDemoServer({ models: arg('--models') });
const browser = await launchChromium();
let ok = false;
try {
  const page = await browser.newPage();
  const origin = new URL(server.url).origin;
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) outside.push(r.url());
  });
  page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
  await page.goto(server.url);
  await page.waitForFunction(() => document.querySelector('#model-select option[value$=".gguf"]'));
  await page.selectOption('#backend-select', arg('--backend', 'auto'));
  await page.$eval('#max-tokens', (e, v) => { e.value = v; }, maxTokens);
  await page.click('#load');
  await page.waitForFunction(() => ['ready', 'idle'].includes(document.body.dataset.state) && document.querySelector('#model-info').textContent, null, { timeout: 600_000 });
  const loadError = await page.textContent('#model-error');
  if (loadError) throw new Error(`loading the model failed: ${loadError}`);
  console.log(`model: ${await page.textContent('#model-info')}`);
  await page.fill('#prompt', prompt);
  await page.click('#send');
  await page.waitForSelector('.msg.assistant[data-finish]', { timeout: 600_000 });
  const answer = await page.textContent('.msg.assistant .text');
  console.log(`> ${prompt}\n${answer}`);
  console.log(await page.textContent('#speed'));
  await page.click('.msg.assistant .badge');
  await page.click('#receipt-verify');
  await page.waitForSelector('.msg.assistant .badge:not([data-verdict=pending])', { timeout: 600_000 });
  const verdict = await page.getAttribute('.msg.assistant .badge', 'data-verdict');
  console.log(`receipt: ${verdict} (${await page.textContent('#receipt-status')})`);
  if (outside.length) console.log(`requests to other hosts: ${outside.join(', ')}`);
  ok = verdict === 'verified' && outside.length === 0;
} finally {
  await browser.close();
  await server.close();
}
process.exit(ok ? 0 : 1);
