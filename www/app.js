// The demo page: a chat whose every answer carries a receipt, and a private search over the
// user's documents. The models run in Web Workers (WorkerEngine, WorkerEmbedder) so the page
// never freezes; the package is imported as an app would. `document.body.dataset.state` (idle,
// loading, ready, generating, verifying), each answer's `data-updates` / `data-finish`, and the
// search panel's `data-state` (idle, loading, indexing, indexed, searching, verifying) let the
// end-to-end test follow along.
import { Engine, cosine } from './pkg/index.js';
import { WorkerEmbedder, WorkerEngine } from './pkg/worker.js';

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
  convert: 'Converting', embed: 'Embedding',
};
const COUNTED = new Set(['upload', 'compile', 'verify', 'convert', 'embed']);

/** Draws `{ stage, loaded, total, file }` into a progress block (`box`, its `fill` and `text`). */
function drawProgress(box, fill, text, { stage, loaded, total, file }) {
  box.hidden = false;
  const frac = total ? Math.min(1, loaded / total) : 0;
  fill.style.width = `${(frac * 100).toFixed(1)}%`;
  const amount = COUNTED.has(stage) ? `${loaded} / ${total ?? '?'}` : `${mb(loaded)}${total ? ` of ${mb(total)}` : ''}`;
  text.textContent = `${STAGES[stage] ?? stage}${file ? ` ${file}` : ''}: ${amount}`;
}

function showProgress(p) {
  drawProgress(ui.progress, ui.fill, ui.progressText, p);
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
    private: $('private-receipt').checked,
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
    if (res.receipt) li.append(badge(res.receipt, res.opening));
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

/** The receipt badge of an answer (with a private receipt's opening): not yet verified,
 * verified, or failed. */
function badge(receipt, opening) {
  const b = el('button', { type: 'button', className: 'badge pending', textContent: 'receipt · not yet verified' });
  b.dataset.verdict = 'pending';
  b.receipt = receipt;
  b.opening = opening ?? undefined;
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
    // A private receipt holds commitments instead of the prompt and the tokens.
    ['prompt', !r.prompt ? `private (commitment ${r.commitments?.prompt ?? '?'})`
      : 'text' in r.prompt ? r.prompt.text : r.prompt.messages.map((m) => `${m.role}: ${m.content}`).join('\n')],
    ['prompt tokens', r.prompt_ids ? String(r.prompt_ids.length) : 'private'],
    ['tokens', String(r.tokens?.length ?? Math.floor((r.steps?.length ?? 0) * 3 / 128))], ['finish', r.finish],
    ['signature', r.signature ? `signed by ${r.signature.fingerprint}` : 'unsigned'],
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
async function verify(receipt, opening, where, onProgress) {
  if (where === 'same') return state.engine.verify(receipt, { opening, onProgress });
  const other = await WorkerEngine.load(undefined, state.source, { backend: where, cache: typeof state.source === 'string' && ui.cache.checked, onProgress });
  try {
    return await other.verify(receipt, { opening, onProgress });
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
    const res = await verify(b.receipt, b.opening, $('receipt-verify-backend').value, (p) => {
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

/** The shown receipt as a file; a private one's opening as a second file, to give only to
 * whoever should re-execute it. */
function download() {
  const b = state.shown;
  if (!b) return;
  const save = (obj, name) => {
    const url = URL.createObjectURL(new Blob([JSON.stringify(obj, null, 2)], { type: 'application/json' }));
    el('a', { href: url, download: name }).click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  const tag = b.receipt.final.slice(0, 12);
  save(b.receipt, `receipt-${tag}.json`);
  if (b.opening) save(b.opening, `opening-${tag}.json`);
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

// ---- Private search: documents → passages → vectors (WorkerEmbedder), a query ranked by cosine ----

const search = {
  panel: $('search-panel'), text: $('doc-text'), add: $('doc-add'), files: $('doc-files'), list: $('doc-list'),
  build: $('index'), cancel: $('index-cancel'), progress: $('search-progress'), fill: $('search-fill'),
  progressText: $('search-progress-text'), info: $('index-info'), error: $('search-error'), query: $('query'),
  go: $('search'), results: $('results'), badge: $('search-receipt'), dialog: $('search-dialog'),
  status: $('search-receipt-status'), fields: $('search-receipt-fields'), ranked: $('search-receipt-ranked'),
  encoder: null, // { name, url } from /models/encoders.json
  embedder: null,
  docs: [], // { name, text }
  index: null, // { passages: { doc, text }[], vectors, receipt } once embedded
  last: null, // { query, vector, receipt, ranked: { i, score }[] }: the ranking shown
  abort: null,
};

// Passages stay under this many word pieces (the model reads 256 at most), cut at sentence ends.
const PASSAGE_PIECES = 200;

function setSearchState(s) {
  search.panel.dataset.state = s;
  const busy = ['loading', 'indexing', 'searching', 'verifying'].includes(s);
  search.build.disabled = busy || !search.encoder || !search.docs.length;
  search.cancel.hidden = !['loading', 'indexing'].includes(s);
  search.query.disabled = !search.index || busy;
  search.go.disabled = !search.index || busy;
}

function showSearchProgress(p) {
  drawProgress(search.progress, search.fill, search.progressText, p);
}

async function listEncoders() {
  const encoders = await fetch('/models/encoders.json').then((r) => (r.ok ? r.json() : [])).catch(() => []);
  search.encoder = encoders.find((e) => /minilm/i.test(e.name)) ?? encoders[0] ?? null;
  if (search.encoder) $('encoder-name').textContent = search.encoder.name;
  else search.info.textContent = 'No encoder is served here (scripts/fetch-models.sh minilm puts all-MiniLM-L6-v2 beside the models).';
  setSearchState(search.panel.dataset.state);
}

function addDocument(name, text) {
  if (!text.trim()) return;
  search.docs.push({ name, text });
  search.index = null; // the passages changed: embed again before searching
  search.info.textContent = '';
  showDocuments();
  setSearchState('idle');
}

function showDocuments() {
  search.list.replaceChildren(
    ...search.docs.map((d, i) => {
      const remove = el('button', { type: 'button', className: 'ghost', textContent: 'remove' });
      remove.addEventListener('click', () => {
        search.docs.splice(i, 1);
        search.index = null;
        showDocuments();
        setSearchState('idle');
      });
      const words = d.text.split(/\s+/).filter(Boolean).length;
      return el('li', {}, el('span', { className: 'name', textContent: d.name, title: d.name }), el('span', { className: 'muted', textContent: `${words} words` }), remove);
    }),
  );
}

/** Sentences of a paragraph: each ends at ., ! or ? (with closing quotes or brackets). */
function sentences(paragraph) {
  return (paragraph.match(/[^.!?]+(?:[.!?]+["'”’)\]]*|$)/g) ?? [paragraph]).map((x) => x.trim()).filter(Boolean);
}

/**
 * A document's passages: its paragraphs (split at blank lines); a paragraph longer than
 * PASSAGE_PIECES word pieces is cut at sentence ends into pieces under it (a single longer
 * sentence stays whole: the model truncates it).
 */
async function passagesOf(text, pieces) {
  const out = [];
  for (const paragraph of text.split(/\n\s*\n/).map((p) => p.replace(/\s+/g, ' ').trim()).filter(Boolean)) {
    if ((await pieces(paragraph)) <= PASSAGE_PIECES) {
      out.push(paragraph);
      continue;
    }
    let current = '';
    let n = 0;
    for (const sentence of sentences(paragraph)) {
      const k = await pieces(sentence);
      if (current && n + k > PASSAGE_PIECES) {
        out.push(current);
        current = '';
        n = 0;
      }
      current = current ? `${current} ${sentence}` : sentence;
      n += k;
    }
    if (current) out.push(current);
  }
  return out;
}

/** The embedder, loaded once (into OPFS too, for offline use), with its progress. */
async function embedder(signal) {
  if (search.embedder) return search.embedder;
  setSearchState('loading');
  const loaded = await WorkerEmbedder.load(undefined, search.encoder.url, { cache: true, onProgress: showSearchProgress, signal });
  search.embedder = loaded;
  return loaded;
}

async function buildIndex() {
  if (!search.encoder || !search.docs.length) return;
  search.error.textContent = '';
  search.results.replaceChildren();
  search.badge.hidden = true;
  search.last = null;
  const abort = new AbortController();
  search.abort = abort;
  try {
    const emb = await embedder(abort.signal);
    setSearchState('indexing');
    // Word pieces without [CLS] and [SEP]; 512 counts past the limit in any case.
    const pieces = async (t) => (await emb.tokenize(t, { maxTokens: 512 })).length - 2;
    const passages = [];
    for (const d of search.docs) for (const text of await passagesOf(d.text, pieces)) passages.push({ doc: d.name, text });
    showSearchProgress({ stage: 'embed', loaded: 0, total: passages.length });
    const started = performance.now();
    const { vectors, receipt } = await emb.embed(passages.map((p) => p.text), { onProgress: showSearchProgress, signal: abort.signal });
    search.index = { passages, vectors, receipt };
    const secs = (performance.now() - started) / 1000;
    search.info.textContent = `${passages.length} passages from ${search.docs.length} documents, embedded here in ${secs.toFixed(1)} s`
      + ` · receipt root ${receipt.root.slice(0, 12)}…`;
    setSearchState('indexed');
    search.query.focus();
  } catch (e) {
    search.error.textContent = explain(e);
    setSearchState('idle');
  } finally {
    search.abort = null;
    search.progress.hidden = true;
  }
}

async function runSearch(ev) {
  ev?.preventDefault();
  const query = search.query.value.trim();
  if (!query || !search.embedder || !search.index) return;
  delete search.results.dataset.query; // set again once this query's ranking is shown
  setSearchState('searching');
  try {
    const { vectors: [vector], receipt } = await search.embedder.embed([query]);
    const ranked = search.index.vectors
      .map((v, i) => ({ i, score: cosine(vector, v) }))
      .sort((a, b) => b.score - a.score || a.i - b.i);
    search.last = { query, vector, receipt, ranked: ranked.slice(0, 5), verdict: 'pending' };
    showResults();
    setSearchState('indexed');
  } catch (e) {
    search.error.textContent = explain(e);
    setSearchState('indexed');
  }
}

function showResults() {
  const { ranked } = search.last;
  search.results.replaceChildren(
    ...ranked.map(({ i, score }, rank) => {
      const p = search.index.passages[i];
      const li = el('li', {},
        el('div', { className: 'meta' },
          el('span', { className: 'score', textContent: score.toFixed(3) }),
          el('span', { textContent: `#${rank + 1}` }),
          el('span', { className: 'doc', textContent: `${p.doc} · passage ${i + 1}` })),
        el('p', { className: 'text', textContent: p.text }));
      li.dataset.score = String(score);
      li.dataset.passage = String(i);
      return li;
    }),
  );
  search.results.dataset.query = search.last.query;
  setSearchVerdict('pending');
  search.badge.hidden = false;
}

function setSearchVerdict(verdict) {
  search.last.verdict = verdict;
  search.badge.dataset.verdict = verdict;
  search.badge.className = `badge ${{ pending: 'pending', verified: 'ok', failed: 'bad' }[verdict]}`;
  search.badge.textContent = {
    pending: 'embeddings’ receipt · not yet verified', verified: 'embeddings’ receipt · verified ✓', failed: 'embeddings’ receipt · failed ✗',
  }[verdict];
}

function openSearchReceipt() {
  const { receipt } = search.index;
  const q = search.last.receipt;
  const rows = [
    ['passages root', receipt.root], ['passages', String(receipt.texts.length)],
    ['model file sha256', receipt.model.file_sha256], ['tensors root', receipt.model.tensors_root],
    ['tokenizer', receipt.model.tokenizer], ['numerics', receipt.numerics],
    ['max word pieces', String(receipt.max_tokens)], ['made by', receipt.made_by],
    ['query', search.last.query], ['query root', q.root], ['query vector sha256', q.texts[0].vector],
  ];
  search.fields.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { textContent: k }), el('dd', { textContent: v })]));
  search.ranked.replaceChildren(
    ...search.last.ranked.map(({ i, score }) => {
      const t = receipt.texts[i];
      return el('li', {}, `${score.toFixed(3)} · text ${i} of the receipt · ${t.ids.length} word pieces · vector `,
        el('code', { textContent: t.vector }), ` · “${t.text.length > 80 ? `${t.text.slice(0, 80)}…` : t.text}”`);
    }),
  );
  search.status.removeAttribute('data-verdict');
  search.status.textContent = {
    pending: 'Not yet verified: re-embedding the passages and the query checks every vector behind the ranking.',
    verified: 'Verified by re-embedding.', failed: 'Verification failed.',
  }[search.last.verdict];
  search.dialog.showModal();
}

async function verifySearch() {
  if (!search.last || !search.embedder) return;
  setSearchState('verifying');
  search.status.removeAttribute('data-verdict');
  try {
    const onProgress = (p) => { search.status.textContent = `${STAGES[p.stage] ?? p.stage}: ${p.loaded} / ${p.total ?? '?'}`; };
    const passages = await search.embedder.verify(search.index.receipt, { onProgress });
    const query = await search.embedder.verify(search.last.receipt, { onProgress });
    const ok = passages.ok && query.ok;
    setSearchVerdict(ok ? 'verified' : 'failed');
    search.status.dataset.verdict = ok ? 'verified' : 'failed';
    search.status.textContent = `passages: ${passages.report} · query: ${query.report}`;
  } catch (e) {
    search.status.dataset.verdict = 'error';
    search.status.textContent = explain(e);
  } finally {
    setSearchState('indexed');
  }
}

function downloadSearchReceipt() {
  if (!search.last) return;
  const body = JSON.stringify({ passages: search.index.receipt, query: search.last.receipt }, null, 2);
  const url = URL.createObjectURL(new Blob([body], { type: 'application/json' }));
  el('a', { href: url, download: `embeddings-${search.index.receipt.root.slice(0, 12)}.json` }).click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function addFiles(files) {
  for (const f of files) addDocument(f.name, await f.text());
}

search.add.addEventListener('click', () => {
  addDocument(`pasted ${search.docs.length + 1}`, search.text.value);
  search.text.value = '';
});
search.files.addEventListener('change', (e) => {
  addFiles([...(e.target.files ?? [])]);
  e.target.value = '';
});
search.text.addEventListener('dragover', (e) => {
  e.preventDefault();
  search.panel.classList.add('over');
});
search.text.addEventListener('dragleave', () => search.panel.classList.remove('over'));
search.text.addEventListener('drop', (e) => {
  search.panel.classList.remove('over');
  if (!e.dataTransfer?.files?.length) return; // dropped text goes into the box as usual
  e.preventDefault();
  addFiles([...e.dataTransfer.files]);
});
search.build.addEventListener('click', buildIndex);
search.cancel.addEventListener('click', () => search.abort?.abort());
$('query-form').addEventListener('submit', runSearch);
search.badge.addEventListener('click', openSearchReceipt);
$('search-receipt-verify').addEventListener('click', verifySearch);
$('search-receipt-download').addEventListener('click', downloadSearchReceipt);

setState('idle');
setSearchState('idle');
listEncoders();
// Offline reloads: the page's files from the service worker, the models from OPFS.
navigator.serviceWorker?.register('sw.js').catch((e) => console.warn('no offline reloads:', e));
listModels();
showCache();
Engine.supports().then((s) => {
  if (!s.webgpu) ui.pill.title = 'WebGPU is absent: the CPU path runs the model.';
}).catch(() => {});
