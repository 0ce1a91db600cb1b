// The demo page: a chat whose every answer carries a receipt. The model runs in a Web Worker
// (WorkerEngine) so the page never freezes; the package is imported as an app would.
// `document.body.dataset.state` (idle, loading, ready, generating, verifying) and each
// answer's `data-updates` / `data-finish` let the end-to-end test follow along.
import { Engine } from './pkg/index.js';
import { WorkerEngine } from './pkg/worker.js';

const $ = (id) => document.getElementById(id);
function el(tag, props = {}, ...kids) {
  const e = Object.assign(document.createElement(tag), props);
  e.append(...kids);
  return e;
}

const ui = {
  models: $('model-select'), url: $('model-url'), file: $('model-file'), backend: $('backend-select'),
  cache: $('use-cache'), load: $('load'), cancelLoad: $('cancel-load'), progress: $('progress'),
  fill: $('progress-fill'), progressText: $('progress-text'), info: $('model-info'), error: $('model-error'),
  pill: $('backend'), messages: $('messages'), prompt: $('prompt'), send: $('send'), stop: $('stop'),
  speed: $('speed'), cacheList: $('cache-list'), dialog: $('receipt-dialog'), fields: $('receipt-fields'),
  receiptStatus: $('receipt-status'), dropResult: $('drop-result'),
};

const state = {
  engine: null,
  /** What the engine was loaded from (a fresh worker loads it again to verify elsewhere). */
  source: null,
  history: [],
  running: null,
  /** The receipt shown in the dialog and its answer's badge. */
  shown: null,
};

function setState(s) {
  document.body.dataset.state = s;
  const ready = s === 'ready';
  ui.prompt.disabled = !state.engine || s === 'loading';
  ui.send.disabled = !ready;
  ui.load.disabled = s === 'loading' || s === 'generating';
  ui.cancelLoad.hidden = s !== 'loading';
  ui.stop.hidden = s !== 'generating';
  ui.send.hidden = s === 'generating';
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
const STAGES = {
  download: 'Downloading', cache: 'Reading from this browser', read: 'Reading', hash: 'Hashing',
  upload: 'Preparing weights', compile: 'Compiling kernels', verify: 'Re-executing',
};

function showProgress({ stage, loaded, total }) {
  ui.progress.hidden = false;
  const frac = total ? Math.min(1, loaded / total) : 0;
  ui.fill.style.width = `${(frac * 100).toFixed(1)}%`;
  const amount = stage === 'upload' || stage === 'compile' || stage === 'verify'
    ? `${loaded} / ${total ?? '?'}`
    : `${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`;
  ui.progressText.textContent = `${STAGES[stage] ?? stage}: ${amount}`;
}

async function listModels() {
  const models = await fetch('/models/index.json').then((r) => (r.ok ? r.json() : [])).catch(() => []);
  ui.models.replaceChildren(
    ...models.map((m) => el('option', { value: m.url, textContent: `${m.name} (${mb(m.bytes)})` })),
  );
  const smol = models.find((m) => /smollm2/i.test(m.name));
  if (smol) ui.models.value = smol.url;
  if (!models.length) ui.models.append(el('option', { value: '', textContent: 'no bundled model' }));
}

async function showCache() {
  const entries = await Engine.cache.list().catch(() => []);
  ui.cacheList.replaceChildren(
    ...entries.map((e) => {
      const remove = el('button', { type: 'button', className: 'ghost', textContent: 'remove' });
      remove.addEventListener('click', async () => {
        await Engine.cache.delete(e.key);
        showCache();
      });
      return el('li', {}, `${e.url.split('/').pop()} · ${mb(e.bytes)} · ${e.key.slice(0, 12)}… `, remove);
    }),
  );
  if (!entries.length) ui.cacheList.append(el('li', { className: 'muted', textContent: 'none' }));
}

let loadAbort = null;

async function load(ev) {
  ev.preventDefault();
  const file = ui.file.files?.[0];
  const source = file ?? (ui.url.value.trim() || ui.models.value);
  if (!source) {
    ui.error.textContent = 'Choose a model, a URL or a file.';
    return;
  }
  state.engine?.free();
  state.engine = null;
  state.history = [];
  ui.messages.replaceChildren();
  ui.error.textContent = '';
  ui.info.textContent = '';
  loadAbort = new AbortController();
  setState('loading');
  try {
    const engine = await WorkerEngine.load(undefined, source, {
      backend: ui.backend.value,
      cache: typeof source === 'string' && ui.cache.checked,
      onProgress: showProgress,
      signal: loadAbort.signal,
    });
    state.engine = engine;
    state.source = source;
    const info = await engine.info();
    ui.pill.textContent = info.backend === 'webgpu' ? `WebGPU · ${info.adapter || 'GPU'}` : 'CPU (wasm)';
    ui.pill.title = info.backendReason;
    ui.info.textContent = `${info.name || info.architecture} · ${info.layers} layers · context ${info.contextLength} · `
      + `${mb(info.bytes)} · sha256 ${info.sha256.slice(0, 16)}… — ${info.backendReason}`;
    if (info.cache?.status === 'failed') ui.error.textContent = `Not kept for offline use: ${info.cache.error.message}`;
    document.querySelector(`input[name=mode][value=${/gemma/i.test(info.name + info.architecture) ? 'complete' : 'chat'}]`).checked = true;
    setState('ready');
    ui.prompt.focus();
  } catch (e) {
    ui.error.textContent = explain(e);
    setState('idle');
  } finally {
    ui.progress.hidden = true;
    showCache();
  }
}

function explain(e) {
  const hints = {
    NO_ADAPTER: 'WebGPU is not available in this browser: choose the CPU backend.',
    MISSING_LIMIT: 'This GPU cannot hold the model’s buffers: choose the CPU backend.',
    OUT_OF_MEMORY: 'The model does not fit this device’s memory.',
    QUOTA: 'This browser’s storage is full: the model was not kept.',
    NETWORK: 'The download failed.',
    ABORTED: 'Cancelled.',
  };
  return `${hints[e?.code] ?? ''} ${e?.message ?? e}${e?.code ? ` (${e.code})` : ''}`.trim();
}

function settings() {
  const num = (id, d) => (Number.isFinite(Number($(id).value)) ? Number($(id).value) : d);
  return {
    temperature: num('temperature', 0),
    topK: num('top-k', 0),
    topP: num('top-p', 1),
    seed: String(Math.max(0, Math.floor(num('seed', 0)))),
    maxTokens: Math.max(1, Math.floor(num('max-tokens', 256))),
  };
}

function addMessage(role, text) {
  const body = el('div', { className: 'text', textContent: text });
  const li = el('li', { className: `msg ${role}` }, el('span', { className: 'who', textContent: role }), body);
  ui.messages.append(li);
  li.scrollIntoView({ block: 'end' });
  return li;
}

async function ask(ev) {
  ev?.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || !state.engine || state.running) return;
  ui.prompt.value = '';
  const chat = document.querySelector('input[name=mode]:checked').value === 'chat';
  let input = text;
  if (chat) {
    state.history.push({ role: 'user', content: text });
    input = [...state.history];
  }
  addMessage(chat ? 'user' : 'prompt', text);
  const li = addMessage('assistant', '');
  const body = li.querySelector('.text');
  li.classList.add('streaming');
  li.dataset.updates = '0';
  const abort = new AbortController();
  state.running = abort;
  setState('generating');
  const started = performance.now();
  let first = 0;
  let n = 0;
  try {
    const gen = state.engine.generate(input, { ...settings(), signal: abort.signal });
    for await (const { text: piece } of gen) {
      n += 1;
      first ||= performance.now();
      if (piece) {
        body.textContent += piece;
        li.dataset.updates = String(Number(li.dataset.updates) + 1);
        li.scrollIntoView({ block: 'end' });
      }
      const secs = (performance.now() - first) / 1000;
      ui.speed.textContent = `prefill ${((first - started) / 1000).toFixed(1)} s · decode ${n > 1 && secs > 0 ? ((n - 1) / secs).toFixed(1) : '–'} tok/s`;
    }
    const res = await gen.result;
    body.textContent = res.text;
    li.dataset.finish = res.finish;
    if (chat) state.history.push({ role: 'assistant', content: res.text });
    const t = res.timings;
    ui.speed.textContent = `prompt ${t.promptTokens} tokens (${t.evaluatedPromptTokens} evaluated): `
      + `prefill ${t.prefillTokensPerS.toFixed(1)} tok/s · ${t.generatedTokens} tokens: decode ${t.decodeTokensPerS.toFixed(1)} tok/s`
      + (res.finish === 'aborted' ? ' · stopped' : '');
    if (res.receipt) li.append(badge(res.receipt));
  } catch (e) {
    li.classList.add('failed');
    body.textContent += `\n[${explain(e)}]`;
    if (chat) state.history.pop();
  } finally {
    li.classList.remove('streaming');
    state.running = null;
    setState(state.engine ? 'ready' : 'idle');
  }
}

/** The receipt badge of an answer: not yet verified, verified, or failed. */
function badge(receipt) {
  const b = el('button', { type: 'button', className: 'badge pending', textContent: 'receipt · not yet verified' });
  b.dataset.verdict = 'pending';
  b.receipt = receipt;
  b.addEventListener('click', () => openReceipt(b));
  return b;
}

function setVerdict(b, result) {
  b.dataset.verdict = result.ok ? 'verified' : 'failed';
  b.className = `badge ${result.ok ? 'ok' : 'bad'}`;
  b.textContent = result.ok ? 'receipt · verified ✓' : 'receipt · failed ✗';
}

function openReceipt(b) {
  state.shown = b;
  const r = b.receipt;
  const s = r.sampling;
  const q16 = (v) => (v / 65536).toFixed(4);
  const rows = [
    ['final', r.final], ['chain', r.chain], ['model file sha256', r.model.file_sha256],
    ['tensors root', r.model.tensors_root], ['tokenizer', r.model.tokenizer],
    ['prompt section', r.sections.prompt], ['sampling section', r.sections.sampling],
    ['prompt', 'text' in r.prompt ? r.prompt.text : r.prompt.messages.map((m) => `${m.role}: ${m.content}`).join('\n')],
    ['prompt tokens', String(r.prompt_ids.length)], ['tokens', String(r.tokens.length)], ['finish', r.finish],
    ['parameters', `temperature ${q16(s.temperature_q16)}, top-k ${s.top_k}, top-p ${q16(s.top_p_q16)}, seed ${s.seed}, max ${s.max_tokens}`],
    ['backend', `${r.meta.backend}${r.meta.adapter ? ` · ${r.meta.adapter}` : ''}`],
    ['timings', `prefill ${r.meta.prefill_ms.toFixed(0)} ms · decode ${r.meta.decode_ms.toFixed(0)} ms`],
    ['engine', r.meta.engine], ['numerics', r.numerics],
  ];
  ui.fields.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { textContent: k }), el('dd', { textContent: v })]));
  ui.receiptStatus.textContent = { pending: 'Not yet verified.', verified: 'Verified by re-execution.', failed: 'Verification failed.' }[b.dataset.verdict];
  ui.dialog.showModal();
}

/** Verify on the loaded engine, or in a fresh worker on another backend. */
async function verify(receipt, where, onProgress) {
  if (where === 'same') return state.engine.verify(receipt, { onProgress });
  const other = await WorkerEngine.load(undefined, state.source, { backend: where, cache: typeof state.source === 'string' && ui.cache.checked, onProgress });
  try {
    return await other.verify(receipt, { onProgress });
  } finally {
    other.free();
  }
}

async function verifyShown() {
  const b = state.shown;
  if (!b || !state.engine) return;
  setState('verifying');
  ui.receiptStatus.textContent = 'Re-executing…';
  try {
    const res = await verify(b.receipt, $('receipt-verify-backend').value, (p) => {
      ui.receiptStatus.textContent = `${STAGES[p.stage] ?? p.stage}: ${p.loaded} / ${p.total ?? '?'}`;
    });
    setVerdict(b, res);
    ui.receiptStatus.textContent = res.report;
  } catch (e) {
    ui.receiptStatus.textContent = explain(e);
  } finally {
    setState('ready');
  }
}

function download() {
  const r = state.shown?.receipt;
  if (!r) return;
  const url = URL.createObjectURL(new Blob([JSON.stringify(r, null, 2)], { type: 'application/json' }));
  const a = el('a', { href: url, download: `receipt-${r.final.slice(0, 12)}.json` });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function verifyFile(file) {
  ui.dropResult.className = '';
  if (!state.engine) {
    ui.dropResult.textContent = 'Load the model the receipt names first.';
    return;
  }
  setState('verifying');
  ui.dropResult.textContent = `Re-executing ${file.name}…`;
  try {
    const res = await state.engine.verify(await file.text(), {
      onProgress: (p) => { ui.dropResult.textContent = `${STAGES[p.stage] ?? p.stage}: ${p.loaded} / ${p.total ?? '?'}`; },
    });
    ui.dropResult.className = res.ok ? 'good' : 'error';
    ui.dropResult.dataset.verdict = res.ok ? 'verified' : 'failed';
    ui.dropResult.textContent = res.ok ? `✓ ${res.report}` : `✗ ${res.report}${res.divergence ? ` (${res.divergence.kind})` : ''}`;
  } catch (e) {
    ui.dropResult.className = 'error';
    ui.dropResult.dataset.verdict = 'error';
    ui.dropResult.textContent = explain(e);
  } finally {
    setState('ready');
  }
}

$('load-form').addEventListener('submit', load);
ui.cancelLoad.addEventListener('click', () => loadAbort?.abort());
$('ask-form').addEventListener('submit', ask);
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) ask(e);
});
ui.stop.addEventListener('click', () => state.running?.abort());
$('new-chat').addEventListener('click', () => {
  if (state.running) return;
  state.history = [];
  ui.messages.replaceChildren();
});
$('cache-clear').addEventListener('click', async () => {
  await Engine.cache.clear();
  showCache();
});
$('receipt-verify').addEventListener('click', verifyShown);
$('receipt-download').addEventListener('click', download);
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer?.files?.[0];
  if (f) verifyFile(f);
});
drop.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') $('receipt-file').click();
});
$('receipt-file').addEventListener('change', (e) => {
  const f = e.target.files?.[0];
  if (f) verifyFile(f);
});

setState('idle');
// Offline reloads: the page's files from the service worker, the models from OPFS.
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn('no offline reloads:', e));
listModels();
showCache();
Engine.supports().then((s) => {
  if (!s.webgpu) ui.pill.title = 'WebGPU is absent: the CPU path runs the model.';
}).catch(() => {});
