// The demo page (www/) end to end, as a user drives it: load the tiny model, chat one turn
// with tokens streaming in, verify the answer's receipt, drop a tampered receipt, stop a
// generation midway, make a private receipt and verify it with its opening, search three pasted documents privately (MiniLM) and verify the
// embeddings' receipt, reload offline (the service worker and OPFS) and chat and search again,
// and no request leaves the origin. Screenshots: target/pkg-tests/demo-*.png.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startDemoServer } from '../../www/serve.mjs';
import { artifacts, checkPackage, launchChromium, fixtures, TIMEOUT } from './harness.mjs';

let server;
let browser;
let page;
const outside = [];

before(async () => {
  const f = fixtures();
  checkPackage();
  server = await startDemoServer({ models: f.dir });
  browser = await launchChromium();
  mkdirSync(artifacts, { recursive: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const origin = new URL(server.url).origin;
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('blob:') && !url.startsWith('data:')) outside.push(url);
  });
  await page.goto(server.url);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

const shot = (name) => page.screenshot({ path: join(artifacts, `demo-${name}.png`), fullPage: true });
const state = () => page.evaluate(() => document.body.dataset.state);

async function setMaxTokens(n) {
  await page.$eval('#max-tokens', (e, v) => { e.value = String(v); }, n);
}

test('the demo loads the tiny model with progress and chats one turn, tokens streaming', { timeout: TIMEOUT }, async () => {
  await page.waitForSelector('#model-select option[value="/models/tiny.gguf"]', { state: 'attached' });
  await page.selectOption('#model-select', '/models/tiny.gguf');
  await page.selectOption('#backend-select', 'cpu');
  const stages = page.evaluate(() => new Promise((done) => {
    const seen = new Set();
    const obs = new MutationObserver(() => {
      seen.add(document.querySelector('#progress-text').textContent.split(':')[0]);
      if (document.body.dataset.state === 'ready') {
        obs.disconnect();
        done([...seen]);
      }
    });
    obs.observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  }));
  await page.click('#load');
  const seen = await stages;
  assert.ok(seen.includes('Downloading') || seen.includes('Reading from this browser'), `progress stages: ${seen}`);
  assert.ok(seen.includes('Hashing'), `progress stages: ${seen}`);
  assert.match(await page.textContent('#backend'), /CPU/);
  await setMaxTokens(24);
  await page.fill('#prompt', 'Hello there');
  await page.click('#send');
  await page.waitForSelector('.msg.assistant[data-finish]', { timeout: TIMEOUT });
  const updates = Number(await page.getAttribute('.msg.assistant', 'data-updates'));
  assert.ok(updates >= 3, `the answer was drawn in ${updates} updates: tokens did not stream`);
  assert.ok(await page.textContent('.msg.assistant .text'), 'an answer');
  assert.equal(await page.getAttribute('.msg.assistant .badge', 'data-verdict'), 'pending');
  await shot('chat');
});

test('the receipt panel shows the commitments and verifies by re-execution', { timeout: TIMEOUT }, async () => {
  await page.click('.msg.assistant .badge');
  const fields = await page.textContent('#receipt-fields');
  for (const k of ['final', 'model file sha256', 'prompt section', 'sampling section', 'backend', 'timings']) {
    assert.ok(fields.includes(k), `receipt panel lacks ${k}`);
  }
  // Signed by the device key (the default in a page's worker), and the panel says by which.
  assert.match(fields, /signed by [0-9a-f]{16}/, 'the receipt panel names its signer');
  await page.click('#receipt-verify');
  await page.waitForSelector('.msg.assistant .badge:not([data-verdict=pending])', { timeout: TIMEOUT });
  assert.equal(await page.getAttribute('.msg.assistant .badge', 'data-verdict'), 'verified');
  assert.match(await page.textContent('#receipt-status'), /^verified/);
  await shot('receipt');
  await page.keyboard.press('Escape');
});

test('a dropped tampered receipt fails and names the divergence; the CLI’s receipt verifies', { timeout: TIMEOUT }, async () => {
  const receipt = await page.evaluate(() => document.querySelector('.msg.assistant .badge').receipt);
  const tampered = { ...receipt, tokens: [...receipt.tokens] };
  tampered.tokens[1] = (tampered.tokens[1] + 1) % 40;
  await page.setInputFiles('#receipt-file', {
    name: 'tampered.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(tampered)),
  });
  await page.waitForSelector('#drop-result[data-verdict]', { timeout: TIMEOUT });
  assert.equal(await page.getAttribute('#drop-result', 'data-verdict'), 'failed');
  assert.match(await page.textContent('#drop-result'), /NOT verified: .*(hash|token)/);
  // The untampered one passes.
  await page.$eval('#drop-result', (e) => e.removeAttribute('data-verdict'));
  await page.setInputFiles('#receipt-file', {
    name: 'receipt.json', mimeType: 'application/json', buffer: Buffer.from(JSON.stringify(receipt)),
  });
  await page.waitForSelector('#drop-result[data-verdict]', { timeout: TIMEOUT });
  assert.equal(await page.getAttribute('#drop-result', 'data-verdict'), 'verified');
  // A receipt the native CLI made for the same model.
  await page.$eval('#drop-result', (e) => e.removeAttribute('data-verdict'));
  await page.setInputFiles('#receipt-file', fixtures().cliReceipt);
  await page.waitForSelector('#drop-result[data-verdict]', { timeout: TIMEOUT });
  assert.equal(await page.getAttribute('#drop-result', 'data-verdict'), 'verified', await page.textContent('#drop-result'));
  await shot('drop');
});

test('stop midway: finish aborted, a receipt that verifies, and the chat goes on', { timeout: TIMEOUT }, async () => {
  await setMaxTokens(200);
  await page.fill('#prompt', 'Tell me a long story');
  await page.click('#send');
  const last = '.msg.assistant:last-child';
  await page.waitForFunction((sel) => Number(document.querySelector(sel)?.dataset.updates) >= 2, last, { timeout: TIMEOUT });
  await page.click('#stop');
  await page.waitForSelector(`${last}[data-finish]`, { timeout: TIMEOUT });
  assert.equal(await page.getAttribute(last, 'data-finish'), 'aborted');
  const receipt = await page.evaluate((sel) => document.querySelector(`${sel} .badge`).receipt, last);
  assert.equal(receipt.finish, 'aborted');
  assert.ok(receipt.tokens.length < 200);
  await page.click(`${last} .badge`);
  await page.click('#receipt-verify');
  await page.waitForSelector(`${last} .badge:not([data-verdict=pending])`, { timeout: TIMEOUT });
  assert.equal(await page.getAttribute(`${last} .badge`, 'data-verdict'), 'verified');
  await page.keyboard.press('Escape');
  assert.equal(await state(), 'ready');
  await setMaxTokens(4);
  await page.fill('#prompt', 'And then?');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant[data-finish]').length === 3, null, { timeout: TIMEOUT });
  assert.ok(await page.textContent('.msg.assistant:last-child .text'), 'the turn after a stop is not empty');
});

test('a private receipt holds no text and verifies with the opening the page keeps', { timeout: TIMEOUT }, async () => {
  await page.$eval('#private-receipt', (e) => { e.checked = true; });
  await setMaxTokens(6);
  await page.fill('#prompt', 'My secret question');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelectorAll('.msg.assistant[data-finish]').length === 4, null, { timeout: TIMEOUT });
  const last = '.msg.assistant:last-child';
  const { receipt, opening, answer } = await page.evaluate((sel) => {
    const b = document.querySelector(`${sel} .badge`);
    return { receipt: b.receipt, opening: b.opening, answer: document.querySelector(`${sel} .text`).textContent };
  }, last);
  assert.ok(receipt.commitments && !receipt.prompt && !receipt.tokens && !('output' in receipt), 'a private receipt');
  assert.ok(!JSON.stringify(receipt).includes('secret'), 'the prompt is not in the receipt');
  assert.equal(opening.output, answer);
  assert.equal(opening.prompt.messages.at(-1).content, 'My secret question');
  await page.click(`${last} .badge`);
  assert.match(await page.textContent('#receipt-fields'), /private \(commitment/);
  await page.click('#receipt-verify');
  await page.waitForSelector(`${last} .badge:not([data-verdict=pending])`, { timeout: TIMEOUT });
  assert.equal(await page.getAttribute(`${last} .badge`, 'data-verdict'), 'verified', await page.textContent('#receipt-status'));
  await page.keyboard.press('Escape');
  await page.$eval('#private-receipt', (e) => { e.checked = false; });
});

// Three small documents of two passages each (blank lines split them).
const DOCS = [
  'Mars is the fourth planet from the Sun. Its surface is covered in iron oxide dust, which gives it a reddish colour.\n\nMars has two small moons, Phobos and Deimos.',
  'The Eiffel Tower was built for the 1889 World Fair in Paris.\n\nIt is about 330 metres tall and was the tallest structure in the world until 1930.',
  'Sourdough bread rises thanks to wild yeast and lactic acid bacteria.\n\nA starter must be fed with flour and water every day.',
];
const searchState = () => page.getAttribute('#search-panel', 'data-state');

/** Pastes the documents, embeds them; the progress texts seen until the panel is indexed. */
async function indexDocuments(docs) {
  for (const doc of docs) {
    await page.fill('#doc-text', doc);
    await page.click('#doc-add');
  }
  const seen = page.evaluate(() => new Promise((done) => {
    const stages = new Set();
    const panel = document.querySelector('#search-panel');
    const obs = new MutationObserver(() => {
      const text = document.querySelector('#search-progress-text').textContent;
      if (text) stages.add(text.split(':')[0]);
      if (['indexed', 'idle'].includes(panel.dataset.state) && document.querySelector('#search-progress').hidden) {
        obs.disconnect();
        done([...stages]);
      }
    });
    obs.observe(panel, { subtree: true, childList: true, characterData: true, attributes: true });
  }));
  await page.click('#index');
  const stages = await seen;
  assert.equal(await page.textContent('#search-error'), '');
  assert.equal(await searchState(), 'indexed');
  return stages;
}

async function searchFor(query) {
  await page.fill('#query', query);
  await page.click('#search');
  // The ranking of this query (#results says which query it shows), not the previous one's.
  await page.waitForFunction((q) => document.querySelector('#results').dataset.query === q, query, { timeout: TIMEOUT });
  return page.$$eval('#results li', (lis) => lis.map((li) => ({ score: Number(li.dataset.score), text: li.querySelector('.text').textContent })));
}

test('private search: three pasted documents embedded with progress, the right passage first, a receipt that verifies', { timeout: TIMEOUT }, async () => {
  await page.waitForFunction(() => document.querySelector('#encoder-name').textContent === 'minilm');
  const stages = await indexDocuments(DOCS);
  assert.deepEqual(await page.$$eval('#doc-list li .name', (e) => e.map((x) => x.textContent)), ['pasted 1', 'pasted 2', 'pasted 3']);
  for (const stage of ['Downloading model', 'Converting', 'Hashing', 'Embedding']) {
    assert.ok(stages.includes(stage), `search progress: ${stages}`);
  }
  assert.match(await page.textContent('#index-info'), /^6 passages from 3 documents/);

  const results = await searchFor('What gives Mars its red colour?');
  assert.match(results[0].text, /iron oxide dust/);
  for (let i = 1; i < results.length; i++) assert.ok(results[i - 1].score >= results[i].score, `scores in order: ${results.map((r) => r.score)}`);
  assert.ok(results[0].score > 0.5 && results[0].score <= 1, `${results[0].score}`);
  assert.match((await searchFor('What makes sourdough rise?'))[0].text, /wild yeast/);
  assert.equal(await page.getAttribute('#search-receipt', 'data-verdict'), 'pending');

  await page.click('#search-receipt');
  const fields = await page.textContent('#search-receipt-fields');
  for (const k of ['passages root', 'model file sha256', 'numerics', 'query root']) assert.ok(fields.includes(k), `the receipt view lacks ${k}`);
  assert.equal(await page.$$eval('#search-receipt-ranked li', (e) => e.length), 5);
  await page.click('#search-receipt-verify');
  await page.waitForSelector('#search-receipt-status[data-verdict]', { timeout: TIMEOUT });
  assert.equal(await page.getAttribute('#search-receipt-status', 'data-verdict'), 'verified', await page.textContent('#search-receipt-status'));
  assert.match(await page.textContent('#search-receipt-status'), /^passages: verified: 6 texts re-embedded bit for bit · query: verified: 1 texts/);
  assert.equal(await page.getAttribute('#search-receipt', 'data-verdict'), 'verified');
  await shot('search-receipt');
  await page.keyboard.press('Escape');
  await shot('search');
});

test('offline, the page reloads and loads the model it kept, and chats', { timeout: TIMEOUT }, async () => {
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.context().setOffline(true);
  try {
    await page.reload();
    await page.waitForSelector('#model-select option[value="/models/tiny.gguf"]', { state: 'attached' });
    await page.selectOption('#model-select', '/models/tiny.gguf');
    await page.selectOption('#backend-select', 'cpu');
    await page.click('#load');
    await page.waitForFunction(() => ['ready', 'idle'].includes(document.body.dataset.state) && document.querySelector('#model-info').textContent, null, { timeout: TIMEOUT });
    assert.equal(await page.textContent('#model-error'), '');
    await setMaxTokens(4);
    await page.fill('#prompt', 'Offline?');
    await page.click('#send');
    await page.waitForSelector('.msg.assistant[data-finish]', { timeout: TIMEOUT });
    assert.ok(await page.textContent('.msg.assistant .text'), 'an answer offline');
  } finally {
    await page.context().setOffline(false);
  }
});

test('offline, private search loads the encoder it kept and searches', { timeout: TIMEOUT }, async () => {
  await page.context().setOffline(true);
  try {
    await page.reload();
    await page.waitForFunction(() => document.querySelector('#encoder-name').textContent === 'minilm');
    const stages = await indexDocuments(DOCS.slice(0, 2));
    assert.ok(stages.includes('Reading from this browser model') && !stages.includes('Downloading model'), `${stages}`);
    assert.match((await searchFor('How tall is the Eiffel Tower?'))[0].text, /Eiffel|330 metres/);
  } finally {
    await page.context().setOffline(false);
  }
});

test('the page works at phone width and made no request to another host', { timeout: TIMEOUT }, async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('phone');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone screen`);
  assert.deepEqual(outside, [], 'requests to other hosts');
});
