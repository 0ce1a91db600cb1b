//! The JavaScript boundary (wasm32 only): converts JS values to the engine's types and back,
//! and the crate's [`Error`] into a JS `Error` with a stable `code`. Logic stays in the engine;
//! the async iterator, `AbortSignal`, caching and the Worker are the JS layer in `js/`
//! (`js/WASM_CONTRACT.md` lists what this module exports).

use crate::backend::exact::{ExactOps, IMat};
use crate::engine::{Generation, Model, Session};
use crate::error::{Error, Result};
use crate::gguf::{GgufStream, Metadata};
use crate::gpu::{GpuContext, GpuOps, GpuOptions};
use crate::receipt::{
    engine_name, hash_findings, layer_digests, random_salt, seal, signing_message, trace_from_bytes, trace_to_bytes,
    verify_async, ChatMessage, Divergence, FinishReason, Fut, Hash, Meta, ModelCommitment, Opening, Prompt, Receipt,
    Recording, Request, ResidualHistory,
};
use crate::sampling::{SamplingParams, DEFAULT_TOP_K, DEFAULT_TOP_P};
use crate::tokenizer::Tokenizer;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use js_sys::{Function, Object, Reflect};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

mod embed;
#[cfg(feature = "threads")]
mod threads;

/// A JS `Error` with `code` set.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

type JsResult<T> = std::result::Result<T, JsValue>;

fn to_js<T: Serialize>(v: &T) -> Result<JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| Error::InvalidArgument(e.to_string()))
}

thread_local! {
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static ON_PANIC: RefCell<Option<Function>> = const { RefCell::new(None) };
}

/// Start the threaded build's pool of `n` threads (call once, from a worker); the threads then
/// running. The single-threaded build has none to start: 1.
#[wasm_bindgen(js_name = startThreads)]
pub async fn start_threads(n: usize) -> JsResult<usize> {
    #[cfg(feature = "threads")]
    return threads::start(n).await;
    #[cfg(not(feature = "threads"))]
    {
        let _ = n;
        Ok(1)
    }
}

/// A panic (a bug: input never panics) is logged, kept (`lastPanic`) and handed to
/// `on_panic(message)` before the module traps: a panic inside an async export would otherwise
/// leave its promise pending forever, and the JS layer rejects its pending calls with `PANIC`.
#[wasm_bindgen(js_name = setPanicHook)]
pub fn set_panic_hook(on_panic: Option<Function>) {
    ON_PANIC.with(|f| *f.borrow_mut() = on_panic);
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        web_sys_console_error(&msg);
        PANIC.with(|p| *p.borrow_mut() = Some(msg.clone()));
        ON_PANIC.with(|f| {
            if let Ok(f) = f.try_borrow() {
                if let Some(f) = f.as_ref() {
                    let _ = f.call1(&JsValue::NULL, &msg.into());
                }
            }
        });
    }));
}

/// The message of the panic that trapped the module, if one did.
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    PANIC.with(|p| p.borrow().clone())
}

/// The 32 bytes a receipt's signature signs (ECDSA P-256 with SHA-256 over them):
/// `H("edgeproof receipt signature", final)`. The receipt must parse and its hashes match its
/// fields (`BAD_RECEIPT`).
#[wasm_bindgen(js_name = receiptSigningMessage)]
pub fn receipt_signing_message(receipt_json: &str) -> JsResult<Vec<u8>> {
    let r = Receipt::from_json(receipt_json).map_err(js_error)?;
    // Sign only what the receipt's fields give: a key vouches for the fields, not a bare hash.
    if let Some(d) = hash_findings(&r).first() {
        return Err(js_error(Error::BadReceipt(format!("{d}: refusing to sign"))));
    }
    Ok(signing_message(&r.final_hash).to_vec())
}

/// A receipt's binary form (version 2).
#[wasm_bindgen(js_name = receiptToBytes)]
pub fn receipt_to_bytes(receipt_json: &str) -> JsResult<Vec<u8>> {
    Receipt::from_json(receipt_json).and_then(|r| r.to_bytes()).map_err(js_error)
}

/// A binary receipt's JSON.
#[wasm_bindgen(js_name = receiptFromBytes)]
pub fn receipt_from_bytes(bytes: &[u8]) -> JsResult<String> {
    Receipt::from_bytes(bytes).and_then(|r| r.to_json()).map_err(js_error)
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_console_error(s: &str);
}

/// Let the event loop run (progress painted, abort messages delivered): a `setTimeout(0)`.
async fn yield_now() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let set_timeout =
            Reflect::get(&js_sys::global(), &"setTimeout".into()).ok().and_then(|f| f.dyn_into::<Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&JsValue::NULL, &resolve, &0.into());
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Optional JS callbacks: progress `(stage, loaded, total)` and `aborted() → boolean`.
struct Callbacks {
    progress: Option<Function>,
    aborted: Option<Function>,
}

impl Callbacks {
    fn progress(&self, stage: &str, loaded: f64, total: f64) {
        if let Some(f) = &self.progress {
            let _ = f.call3(&JsValue::NULL, &stage.into(), &loaded.into(), &total.into());
        }
    }

    fn check(&self, what: &str) -> Result<()> {
        match &self.aborted {
            Some(f) if f.call0(&JsValue::NULL).ok().and_then(|v| v.as_bool()) == Some(true) => {
                Err(Error::Aborted(what.into()))
            }
            _ => Ok(()),
        }
    }
}

/// Bytes of a model file as they arrive, parsed while they stream (`GgufStream`): a bad
/// header fails at once, so a download can stop early.
#[wasm_bindgen]
pub struct ModelLoader {
    stream: GgufStream,
}

#[wasm_bindgen]
impl ModelLoader {
    #[wasm_bindgen(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> ModelLoader {
        ModelLoader { stream: GgufStream::new() }
    }

    pub fn push(&mut self, chunk: &[u8]) -> JsResult<()> {
        self.stream.push(chunk).map_err(js_error)
    }

    pub fn received(&self) -> f64 {
        self.stream.bytes_received() as f64
    }

    /// The file's length, once its header is known.
    pub fn expected(&self) -> Option<f64> {
        self.stream.expected_len().map(|n| n as f64)
    }
}

/// A model loaded on one backend.
enum AnyModel {
    Cpu(Rc<Model<ExactOps>>),
    Gpu(Rc<Model<GpuOps>>),
}

enum AnySession {
    Cpu(Session<ExactOps>),
    Gpu(Box<Session<GpuOps>>),
}

impl AnyModel {
    fn cfg(&self) -> &crate::model::Config {
        match self {
            AnyModel::Cpu(m) => &m.cfg,
            AnyModel::Gpu(m) => &m.cfg,
        }
    }

    fn session(&self) -> Result<AnySession> {
        let mut s = match self {
            AnyModel::Cpu(m) => AnySession::Cpu(m.session()?),
            AnyModel::Gpu(m) => AnySession::Gpu(Box::new(m.session()?)),
        };
        s.rec().record_residuals();
        Ok(s)
    }
}

impl AnySession {
    fn rec(&mut self) -> &mut dyn Recording {
        match self {
            AnySession::Cpu(s) => s,
            AnySession::Gpu(s) => &mut **s,
        }
    }
}

/// A [`Recording`] engine that lets the event loop run before each forward pass, so that a
/// long verification on the CPU still paints progress and sees an abort.
struct Yielding<'a>(&'a mut dyn Recording);

impl crate::engine::Engine for Yielding<'_> {
    fn config(&self) -> &crate::model::Config {
        self.0.config()
    }
    fn eval(&mut self, ids: &[u32], pos0: usize, rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        self.0.eval(ids, pos0, rows)
    }
    fn next_token(&mut self, ids: &[u32], pos0: usize, params: &SamplingParams, step: u64) -> Result<u32> {
        self.0.next_token(ids, pos0, params, step)
    }
}

impl Recording for Yielding<'_> {
    fn exact(&self) -> bool {
        self.0.exact()
    }
    fn record_residuals(&mut self) {
        self.0.record_residuals()
    }
    fn eval_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        rows: std::ops::Range<usize>,
    ) -> Fut<'a, (Vec<f32>, Vec<IMat>)> {
        Box::pin(async move {
            yield_now().await;
            self.0.eval_recorded(ids, pos0, rows).await
        })
    }
    fn next_token_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        params: &'a SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Fut<'a, (u32, Vec<IMat>)> {
        self.0.next_token_recorded(ids, pos0, params, step, residuals)
    }
    fn backend(&self) -> (String, Option<String>) {
        self.0.backend()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    name: String,
    architecture: String,
    context_length: usize,
    vocab_size: usize,
    layers: usize,
    backend: &'static str,
    adapter: Option<String>,
    sha256: String,
    bytes: f64,
    limits: Option<Limits>,
    /// Threads the CPU path runs on: rayon's pool in the threaded build, else 1.
    threads: usize,
}

/// What the GPU backend asks of the adapter: the WebGPU defaults at most.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    max_storage_buffer_binding_size: f64,
    max_buffer_size: f64,
    dot4_i8_packed: bool,
    split_k: bool,
}

/// What a generation asks for, as JavaScript gives it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsRequest {
    prompt: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    seed: Option<Seed>,
    stop: Option<Vec<String>>,
    receipt: Option<bool>,
    /// A private receipt: salted commitments, and an opening beside it.
    private: Option<bool>,
}

/// A seed as a number (up to 2^53) or a decimal string (any u64).
#[derive(Deserialize)]
#[serde(untagged)]
enum Seed {
    Num(f64),
    Str(String),
}

impl Seed {
    fn value(&self) -> Result<u64> {
        match self {
            Seed::Num(v) if *v >= 0.0 && v.fract() == 0.0 && *v <= 9_007_199_254_740_991.0 => Ok(*v as u64),
            Seed::Str(s) => s.parse().map_err(|_| Error::InvalidArgument(format!("seed {s:?}"))),
            Seed::Num(v) => {
                Err(Error::InvalidArgument(format!("seed {v}: a whole number from 0 to 2^53, or a string")))
            }
        }
    }
}

/// A running generation.
struct Running {
    req: Request,
    g: Generation,
    receipt: bool,
    layers: Vec<Vec<Hash>>,
    start_ms: f64,
    first_ms: Option<f64>,
    /// A step failed: the KV cache cannot be trusted for the next turn.
    failed: bool,
}

/// The chat state between turns.
#[derive(Default)]
struct State {
    /// The tokens whose keys and values the session's cache holds, in order.
    cached: Vec<u32>,
    /// Their residual rows (for the next receipt's prompt digests).
    history: ResidualHistory,
    running: Option<Running>,
}

struct Shared {
    meta: Metadata,
    tok: Tokenizer,
    commitment: ModelCommitment,
    model: AnyModel,
    info: Info,
    state: RefCell<State>,
    /// Taken out while a step runs (never borrowed across an await).
    session: RefCell<Option<AnySession>>,
}

/// A loaded model and its chat session.
#[wasm_bindgen(js_name = WasmEngine)]
pub struct WasmEngine {
    s: Rc<Shared>,
}

/// Load a model from a [`ModelLoader`] that has all its bytes, on `'cpu'` or `'webgpu'`.
#[wasm_bindgen(js_name = loadEngine)]
pub async fn load_engine(
    loader: ModelLoader,
    backend: String,
    on_progress: Option<Function>,
    aborted: Option<Function>,
) -> JsResult<WasmEngine> {
    let cb = Callbacks { progress: on_progress, aborted };
    load(loader, &backend, &cb).await.map(|s| WasmEngine { s: Rc::new(s) }).map_err(js_error)
}

async fn load(loader: ModelLoader, backend: &str, cb: &Callbacks) -> Result<Shared> {
    let gguf = loader.stream.finish()?;
    let bytes = gguf.file_bytes().len() as f64;
    let commitment = ModelCommitment::of(&gguf, |p| cb.progress("hash", (p as f64 * bytes).round(), bytes))?;
    cb.check("load")?;
    yield_now().await;
    let meta = gguf.metadata().clone();
    let tok = Tokenizer::from_metadata(&meta)?;
    let upload = |done: usize, total: usize| cb.progress("upload", done as f64, total as f64);
    let (model, limits) = match backend {
        "cpu" => (AnyModel::Cpu(Rc::new(Model::load_with(&gguf, (), upload)?)), None),
        "webgpu" => {
            let ctx = Rc::new(GpuContext::new(GpuOptions::default()).await?);
            cb.check("load")?;
            let m = Rc::new(Model::load_with(&gguf, Rc::clone(&ctx), upload)?);
            // One decode step compiles the kernels now rather than in the first generation.
            cb.progress("compile", 0.0, 1.0);
            let mut warm = m.session()?;
            warm.next_token_async(&[0], 0, &SamplingParams::greedy(), 0, false).await?;
            cb.progress("compile", 1.0, 1.0);
            let limits = Limits {
                max_storage_buffer_binding_size: ctx.max_binding as f64,
                max_buffer_size: crate::gpu::MAX_BUFFER as f64,
                dot4_i8_packed: ctx.dot4_packed,
                split_k: ctx.split_k,
            };
            (AnyModel::Gpu(m), Some(limits))
        }
        other => return Err(Error::InvalidArgument(format!("backend {other:?}: 'cpu' or 'webgpu'"))),
    };
    cb.check("load")?;
    let cfg = model.cfg();
    let mut session = model.session()?;
    let adapter = session.rec().backend().1;
    let info = Info {
        name: meta.get_str("general.name").unwrap_or_default().to_string(),
        architecture: meta.get_str("general.architecture").unwrap_or_default().to_string(),
        context_length: cfg.ctx_len,
        vocab_size: cfg.n_vocab,
        layers: cfg.n_layer,
        backend: if limits.is_some() { "webgpu" } else { "cpu" },
        adapter,
        sha256: hex::encode(commitment.file_sha256),
        bytes,
        limits,
        threads: rayon::current_num_threads(),
    };
    Ok(Shared { meta, tok, commitment, model, info, state: RefCell::default(), session: RefCell::new(Some(session)) })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepOut {
    token: i64,
    text: String,
    done: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    prompt_tokens: usize,
    /// Prompt tokens evaluated: the rest were in the KV cache from the previous turn.
    evaluated_prompt_tokens: usize,
    cached_tokens: usize,
    generated_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

#[wasm_bindgen(js_class = WasmEngine)]
impl WasmEngine {
    pub fn info(&self) -> JsResult<JsValue> {
        to_js(&self.s.info).map_err(js_error)
    }

    /// Token ids of `text` (BOS as the model's metadata says; special tokens not parsed).
    pub fn tokenize(&self, text: &str) -> JsResult<Vec<u32>> {
        self.s.tok.encode(text, true, false).map_err(js_error)
    }

    pub fn detokenize(&self, ids: &[u32]) -> JsResult<String> {
        self.s.tok.decode(ids).map_err(js_error)
    }

    /// Begin a generation (see `js/WASM_CONTRACT.md`); `BUSY` while one is unfinished.
    pub fn start(&self, request: JsValue) -> JsResult<()> {
        self.start_inner(request).map_err(js_error)
    }

    /// One step: the prompt's forward pass first, then one token each.
    pub fn step(&self) -> js_sys::Promise {
        let s = Rc::clone(&self.s);
        wasm_bindgen_futures::future_to_promise(async move {
            let taken = s.session.borrow_mut().take();
            let mut session = taken.ok_or_else(|| js_error(Error::Busy("a step is running".into())))?;
            let out = step(&s, &mut session).await;
            *s.session.borrow_mut() = Some(session);
            match out {
                Ok(o) => to_js(&o).map_err(js_error),
                Err(e) => {
                    if let Some(run) = s.state.borrow_mut().running.as_mut() {
                        run.failed = true;
                        run.g.stop.abort();
                    }
                    Err(js_error(e))
                }
            }
        })
    }

    /// End the running generation now (finish `aborted`).
    pub fn abort(&self) {
        if let Some(run) = self.s.state.borrow_mut().running.as_mut() {
            run.g.stop.abort();
        }
    }

    /// End the generation and return its text, finish reason, tokens, receipt and timings.
    pub fn finish(&self) -> JsResult<JsValue> {
        self.finish_inner().map_err(js_error)
    }

    /// Verify a receipt by re-executing it on this model and backend (a fresh session), with a
    /// private receipt's opening (JSON) and a trace (its bytes) when given.
    pub fn verify(
        &self,
        receipt_json: String,
        opening_json: Option<String>,
        trace: Option<Vec<u8>>,
        on_progress: Option<Function>,
        aborted: Option<Function>,
    ) -> js_sys::Promise {
        let s = Rc::clone(&self.s);
        wasm_bindgen_futures::future_to_promise(async move {
            let cb = Callbacks { progress: on_progress, aborted };
            verify(&s, &receipt_json, opening_json.as_deref(), trace.as_deref(), &cb).await.map_err(js_error)
        })
    }
}

impl WasmEngine {
    fn start_inner(&self, request: JsValue) -> Result<()> {
        let s = &self.s;
        let mut st = s.state.borrow_mut();
        if st.running.is_some() {
            return Err(Error::Busy("a generation is running: finish it (or abort it) first".into()));
        }
        let r: JsRequest =
            serde_wasm_bindgen::from_value(request).map_err(|e| Error::InvalidArgument(format!("request: {e}")))?;
        let prompt = match (r.prompt, r.messages) {
            (Some(p), None) => Prompt::Text(p),
            (None, Some(m)) => Prompt::Messages(m),
            _ => return Err(Error::InvalidArgument("give exactly one of prompt and messages".into())),
        };
        let seed = r.seed.as_ref().map(Seed::value).transpose()?.unwrap_or(0);
        let params = SamplingParams::new(
            r.temperature.unwrap_or(0.0),
            r.top_k.unwrap_or(DEFAULT_TOP_K),
            r.top_p.unwrap_or(DEFAULT_TOP_P),
            seed,
        )?;
        let salt = if r.private.unwrap_or(false) { Some(random_salt()?) } else { None };
        let req =
            Request { prompt, params, max_tokens: r.max_tokens.unwrap_or(256), stop: r.stop.unwrap_or_default(), salt };
        let ids = req.prompt.ids(&s.meta, &s.tok)?;
        // Reuse the cache for the common prefix whose residual rows are known too.
        let common = st.cached.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        let cached = common.min(st.history.len());
        let g =
            Generation::new(ids, cached, s.model.cfg(), req.max_tokens as usize, params, &req.stop, s.tok.eog_ids())?;
        st.running = Some(Running {
            req,
            g,
            receipt: r.receipt.unwrap_or(true),
            layers: Vec::new(),
            start_ms: js_sys::Date::now(),
            first_ms: None,
            failed: false,
        });
        Ok(())
    }

    fn finish_inner(&self) -> Result<JsValue> {
        let s = &self.s;
        // Where the receipt was made, as `receipt::generate` records it.
        let (backend, adapter) = match s.session.borrow_mut().as_mut() {
            Some(session) => session.rec().backend(),
            None => return Err(Error::Busy("a step is running: await it first".into())),
        };
        let mut st = s.state.borrow_mut();
        let mut run = st.running.take().ok_or_else(|| Error::InvalidArgument("no generation to finish".into()))?;
        run.g.stop.abort();
        if run.failed {
            st.cached.clear();
            st.history.truncate(0);
        } else {
            st.cached = run.g.evaluated();
            let n = st.cached.len();
            st.history.truncate(n);
        }
        let end = js_sys::Date::now();
        let first = run.first_ms.unwrap_or(end);
        let (p, n) = (run.g.prompt.len(), run.g.tokens.len());
        let receipt = if run.receipt && !run.failed {
            let meta = Meta {
                engine: engine_name(),
                backend,
                adapter,
                prefill_ms: first - run.start_ms,
                decode_ms: end - first,
            };
            let r: Receipt = seal(&run.req, &s.commitment, s.tok.eog_ids(), &run.g, run.layers, meta)?;
            Some(r)
        } else {
            None
        };
        let per_s = |k: usize, ms: f64| if ms > 0.0 { k as f64 * 1e3 / ms } else { 0.0 };
        let evaluated = p - run.g.cached;
        let timings = Timings {
            prompt_tokens: p,
            evaluated_prompt_tokens: evaluated,
            cached_tokens: run.g.cached,
            generated_tokens: n,
            prefill_ms: first - run.start_ms,
            decode_ms: end - first,
            prefill_tokens_per_s: per_s(evaluated, first - run.start_ms),
            decode_tokens_per_s: per_s(n.saturating_sub(1), end - first),
        };
        // Ended above (aborted if it was still running).
        let finish = run.g.stop.finish.map_or(FinishReason::Aborted, FinishReason::from).as_str();
        let out = Object::new();
        let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
        let js = |e: JsValue| Error::InvalidArgument(format!("{e:?}"));
        set("text", run.g.stop.text.clone().into()).map_err(js)?;
        set("finish", finish.into()).map_err(js)?;
        set("tokens", to_js(&run.g.tokens)?).map_err(js)?;
        let (receipt, opening, trace) = match receipt {
            Some(r) => (
                js_sys::JSON::parse(&r.to_json()?).map_err(js)?,
                match &r.opening {
                    Some(o) => js_sys::JSON::parse(&o.to_json()).map_err(js)?,
                    None => JsValue::NULL,
                },
                js_sys::Uint8Array::from(&trace_to_bytes(r.trace.as_deref().unwrap_or_default())[..]).into(),
            ),
            None => (JsValue::NULL, JsValue::NULL, JsValue::NULL),
        };
        set("receipt", receipt).map_err(js)?;
        set("opening", opening).map_err(js)?;
        set("trace", trace).map_err(js)?;
        set("timings", to_js(&timings)?).map_err(js)?;
        Ok(out.into())
    }
}

async fn step(s: &Shared, session: &mut AnySession) -> Result<StepOut> {
    let (ids, pos0, n, params) = {
        let st = s.state.borrow();
        let run = st.running.as_ref().ok_or_else(|| Error::InvalidArgument("no generation: call start".into()))?;
        if run.g.done() {
            return Ok(StepOut { token: -1, text: String::new(), done: true });
        }
        let (ids, pos0, n) = run.g.input();
        (ids.to_vec(), pos0, n, run.g.params)
    };
    let (t, res) = session.rec().next_token_recorded(&ids, pos0, &params, n, true).await?;
    let mut guard = s.state.borrow_mut();
    let st = &mut *guard;
    let run = st.running.as_mut().ok_or_else(|| Error::InvalidArgument("the generation went away".into()))?;
    if run.g.done() {
        // Aborted while this pass ran: its token is not part of the generation.
        return Ok(StepOut { token: -1, text: String::new(), done: true });
    }
    if n == 0 {
        st.history.truncate(pos0);
        if st.history.len() != pos0 {
            return Err(Error::InvalidArgument("the residual history lost track of the cache".into()));
        }
    }
    st.history.append(&res)?;
    run.layers.push(if n == 0 { st.history.digests(0) } else { layer_digests(&res, pos0) });
    run.first_ms.get_or_insert_with(js_sys::Date::now);
    let text = run.g.push(Some(&s.tok), t)?;
    Ok(StepOut { token: t as i64, text, done: run.g.done() })
}

/// A finding as a JS object: `kind` and its fields, and the sentence.
fn divergence(d: &Divergence) -> serde_json::Value {
    use serde_json::json;
    let mut v = match d {
        Divergence::Hash { what } => json!({ "kind": "hash", "what": what }),
        Divergence::Signature { what } => json!({ "kind": "signature", "what": what }),
        Divergence::Opening { what } => json!({ "kind": "opening", "what": what }),
        Divergence::Sampling { what } => json!({ "kind": "sampling", "what": what }),
        Divergence::Step { step } => json!({ "kind": "step", "step": step }),
        Divergence::Format { what } => json!({ "kind": "format", "what": what }),
        Divergence::Numerics => json!({ "kind": "numerics" }),
        Divergence::Model { field } => json!({ "kind": "model", "field": field }),
        Divergence::Prompt { index } => json!({ "kind": "prompt", "index": index }),
        Divergence::Layer { step, layer } => json!({ "kind": "layer", "step": step, "layer": layer }),
        Divergence::Token { step, committed, recomputed } => {
            json!({ "kind": "token", "step": step, "committed": committed, "recomputed": recomputed })
        }
        Divergence::Finish { committed, recomputed, at } => json!({
            "kind": "finish", "committed": committed.as_str(), "recomputed": recomputed.map(|r| r.as_str()), "at": at
        }),
        Divergence::Output => json!({ "kind": "output" }),
        Divergence::Context { len, ctx } => json!({ "kind": "context", "len": len, "ctx": ctx }),
    };
    v["message"] = d.to_string().into();
    v
}

async fn verify(
    s: &Shared,
    json: &str,
    opening: Option<&str>,
    trace: Option<&[u8]>,
    cb: &Callbacks,
) -> Result<JsValue> {
    if s.state.borrow().running.is_some() {
        return Err(Error::Busy("a generation is running: verify after it ends".into()));
    }
    let mut r = Receipt::from_json(json)?;
    r.opening = opening.map(Opening::from_json).transpose()?;
    if let Some(t) = trace {
        r.attach_trace(trace_from_bytes(t)?)?;
    }
    let mut session = s.model.session()?;
    let n = r.steps.len() as f64;
    let mut progress = |_: &str, p: f32| {
        cb.progress("verify", (p as f64 * n).round(), n);
        cb.check("verification")
    };
    let rep = verify_async(&r, &s.meta, &s.tok, &s.commitment, &mut Yielding(session.rec()), &mut progress).await?;
    let out = serde_json::json!({
        "ok": rep.verified(),
        "reexecuted": rep.reexecuted,
        "signer": rep.signer,
        // The whole key (the fingerprint is for display): SEC1, unpadded base64url.
        "signerKey": rep.signer.as_ref().and(r.signature.as_ref()).map(|s| B64.encode(s.key)),
        "report": rep.verdict(),
        "findings": rep.findings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "stepsMatched": rep.steps_matched,
        "divergence": rep.findings.first().map(divergence),
    });
    to_js(&out)
}
