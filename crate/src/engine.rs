//! A loaded model behind one interface, whatever its numerics and backend: one [`Model`]
//! and [`Session`] pair generic over the [`Backend`] (the op set, its weights and how results
//! come back), and one generation loop ([`Generation`], [`StopState`]) shared by the CLI,
//! the receipts, the verifier and the JavaScript API.

use crate::backend::busy::Busy;
use crate::backend::exact::{ExactOps, ExactWeight, IMat};
use crate::backend::f32::{F32Weight, RefF32};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorView};
use crate::model::{forward, Config, Ops, Weights};
use crate::sampling::{sample, SamplingParams, StopMatcher};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use std::future::Future;
use std::rc::Rc;

/// Something that turns tokens into next-token logits, keeping its own KV cache.
pub trait Engine {
    fn config(&self) -> &Config;
    /// Evaluate `ids` at positions `pos0..`, replacing whatever the cache held from `pos0` on.
    /// Returns the logits of rows `out_rows`, flattened `[rows, n_vocab]`.
    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>>;

    /// Evaluate `ids` at `pos0..` and pick the next token from the last row's logits with
    /// [`sample`] (RNG step `step`). Backends that can pick on the device do, so that a token
    /// costs one small readback instead of a logits row.
    fn next_token(&mut self, ids: &[u32], pos0: usize, params: &SamplingParams, step: u64) -> Result<u32>;
}

/// One implementation of the op set: where its weights live and how a forward pass's results
/// come back. Reading back is async because the browser's GPU cannot block; the CPU's futures
/// are ready at once.
#[allow(async_fn_in_trait)]
pub trait Backend: Ops + Sized {
    /// What weights are loaded onto: nothing for the CPU, the device for the GPU.
    type Device: Clone;
    /// Whether this is the exact mode (receipts need it).
    const EXACT: bool;
    /// Whether the forward pass runs on rayon's threads (the CPU backends).
    const THREADS: bool = true;
    fn weight(dev: &Self::Device, t: TensorView) -> Result<Self::W>;
    /// Rearrange the loaded weights for this backend (the GPU stacks products of one input).
    fn prepare(_dev: &Self::Device, _w: &mut Weights<Self::W>) -> Result<()> {
        Ok(())
    }
    /// A fresh op set (empty KV cache).
    fn ops(dev: &Self::Device, cfg: &Config) -> Result<Self>;
    /// "cpu" or "gpu", and the adapter's name.
    fn describe(dev: &Self::Device) -> (&'static str, Option<String>);
    /// The logits rows of `y` (a forward pass's output, consumed) as f32.
    async fn logits(&mut self, y: Self::Act) -> Result<Vec<f32>>;
    /// Keep the residual stream after every block from now on (exact backends).
    fn record_residuals(&mut self) {}
    /// The residual streams recorded since the last take: per forward pass, one per block.
    async fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        Ok(Vec::new())
    }
    /// The token [`sample`] picks from the last row of `y` (RNG step `step`) and, with
    /// `residuals`, the residual streams recorded since the last take.
    async fn pick(
        &mut self,
        y: Self::Act,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        let rows = self.n_rows(&y).max(1);
        let logits = self.logits(y).await?;
        let n = logits.len();
        let n_vocab = n / rows;
        let t = sample(&logits[n - n_vocab..], params, step)?;
        Ok((t, if residuals { self.take_residuals().await? } else { Vec::new() }))
    }
    /// Rows of an activation.
    fn n_rows(&self, y: &Self::Act) -> usize;
}

/// The exact backends' logits in their integer form.
#[allow(async_fn_in_trait)]
pub trait ExactBackend: Backend {
    async fn exact_logits(&mut self, y: Self::Act) -> Result<IMat>;
}

impl Backend for RefF32 {
    type Device = ();
    const EXACT: bool = false;
    fn weight(_: &(), t: TensorView) -> Result<F32Weight> {
        F32Weight::from_view(t)
    }
    fn ops(_: &(), cfg: &Config) -> Result<RefF32> {
        Ok(RefF32::new(cfg))
    }
    fn describe(_: &()) -> (&'static str, Option<String>) {
        ("cpu", None)
    }
    async fn logits(&mut self, y: Self::Act) -> Result<Vec<f32>> {
        Ok(y.data)
    }
    fn n_rows(&self, y: &Self::Act) -> usize {
        y.rows
    }
}

impl Backend for ExactOps {
    type Device = ();
    const EXACT: bool = true;
    fn weight(_: &(), t: TensorView) -> Result<ExactWeight> {
        ExactWeight::from_view(t)
    }
    fn ops(_: &(), cfg: &Config) -> Result<ExactOps> {
        Ok(ExactOps::new(cfg))
    }
    fn describe(_: &()) -> (&'static str, Option<String>) {
        ("cpu", None)
    }
    /// Exact logits converted to f32 exactly (24-bit mantissas), so argmax is unchanged.
    async fn logits(&mut self, y: IMat) -> Result<Vec<f32>> {
        Ok(y.to_f32())
    }
    fn record_residuals(&mut self) {
        ExactOps::record_residuals(self)
    }
    async fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        Ok(ExactOps::take_residuals(self))
    }
    fn n_rows(&self, y: &IMat) -> usize {
        y.rows
    }
}

impl ExactBackend for ExactOps {
    async fn exact_logits(&mut self, y: IMat) -> Result<IMat> {
        Ok(y)
    }
}

impl Backend for crate::gpu::GpuOps {
    type Device = Rc<crate::gpu::GpuContext>;
    const EXACT: bool = true;
    const THREADS: bool = false;
    fn weight(dev: &Self::Device, t: TensorView) -> Result<crate::gpu::GpuWeight> {
        crate::gpu::GpuWeight::from_view(dev, t)
    }
    fn prepare(dev: &Self::Device, w: &mut Weights<crate::gpu::GpuWeight>) -> Result<()> {
        crate::gpu::stack_products(dev, w)
    }
    fn ops(dev: &Self::Device, cfg: &Config) -> Result<Self> {
        crate::gpu::GpuOps::new(Rc::clone(dev), cfg)
    }
    fn describe(dev: &Self::Device) -> (&'static str, Option<String>) {
        let a = &dev.adapter;
        ("gpu", Some(format!("{} ({:?})", a.name, a.backend)))
    }
    async fn logits(&mut self, y: Self::Act) -> Result<Vec<f32>> {
        Ok(self.exact_logits(y).await?.to_f32())
    }
    fn record_residuals(&mut self) {
        crate::gpu::GpuOps::record_residuals(self)
    }
    async fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        self.take_residuals_async().await
    }
    /// Picked on the device by the sampler kernels: the token and the residual streams in
    /// one readback.
    async fn pick(
        &mut self,
        y: Self::Act,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        self.check()?;
        self.next_token_async(&y, params, step, residuals).await
    }
    fn n_rows(&self, y: &Self::Act) -> usize {
        y.rows
    }
}

impl ExactBackend for crate::gpu::GpuOps {
    async fn exact_logits(&mut self, y: Self::Act) -> Result<IMat> {
        self.check()?;
        self.download_async(&y).await
    }
}

/// Hyper-parameters and weights of a model on a backend's device.
pub struct Model<B: Backend> {
    pub cfg: Config,
    pub weights: Weights<B::W>,
    pub device: B::Device,
}

/// The f32 reference, the exact mode on the CPU, the exact mode on WebGPU.
pub type RefModel = Model<RefF32>;
pub type ExactModel = Model<ExactOps>;
pub type GpuModel = Model<crate::gpu::GpuOps>;

impl<B: Backend> Model<B> {
    /// Convert (or upload) every weight; `progress(done, total)` after each tensor.
    pub fn load_with(gguf: &Gguf, device: B::Device, mut progress: impl FnMut(usize, usize)) -> Result<Model<B>> {
        let cfg = Config::from_metadata(gguf.metadata())?;
        let total = gguf.header.tensors.len();
        let mut done = 0;
        let mut weights = Weights::load(gguf, &cfg, |t| {
            let w = B::weight(&device, t);
            done += 1;
            progress(done, total);
            w
        })?;
        B::prepare(&device, &mut weights)?;
        Ok(Model { cfg, weights, device })
    }

    /// A fresh session (empty KV cache) over this model.
    pub fn session(self: &Rc<Self>) -> Result<Session<B>> {
        Ok(Session { model: Rc::clone(self), ops: B::ops(&self.device, &self.cfg)? })
    }
}

impl Model<RefF32> {
    pub fn load(gguf: &Gguf) -> Result<Rc<RefModel>> {
        Ok(Rc::new(Model::load_with(gguf, (), |_, _| {})?))
    }
}

impl Model<ExactOps> {
    pub fn load(gguf: &Gguf) -> Result<Rc<ExactModel>> {
        Ok(Rc::new(Model::load_with(gguf, (), |_, _| {})?))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Model<crate::gpu::GpuOps> {
    /// Upload the weights once, and wait for the uploads (queue writes) to land now rather
    /// than in the first step.
    pub fn load(gguf: &Gguf, ctx: Rc<crate::gpu::GpuContext>) -> Result<Rc<GpuModel>> {
        let m = Model::load_with(gguf, Rc::clone(&ctx), |_, _| {})?;
        ctx.finish_writes()?;
        Ok(Rc::new(m))
    }
}

/// A model with its KV cache: what generates.
pub struct Session<B: Backend> {
    model: Rc<Model<B>>,
    ops: B,
}

impl<B: Backend> Session<B> {
    /// Where it runs: backend and adapter.
    pub fn describe(&self) -> (&'static str, Option<String>) {
        B::describe(&self.model.device)
    }

    pub fn record_residuals(&mut self) {
        self.ops.record_residuals();
    }

    pub async fn take_residuals_async(&mut self) -> Result<Vec<IMat>> {
        self.ops.take_residuals().await
    }

    fn forward(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<B::Act> {
        let _busy = if B::THREADS { Busy::start() } else { None };
        let m = &*self.model;
        forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, out_rows)
    }

    /// [`Engine::eval`], async.
    pub async fn eval_async(&mut self, ids: &[u32], pos0: usize, rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let y = self.forward(ids, pos0, rows)?;
        self.ops.logits(y).await
    }

    /// [`Engine::next_token`], async, and with `residuals` the residual streams recorded since
    /// the last take (read back together with the token where the backend can).
    pub async fn next_token_async(
        &mut self,
        ids: &[u32],
        pos0: usize,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        let n = ids.len();
        let y = self.forward(ids, pos0, n.saturating_sub(1)..n)?;
        self.ops.pick(y, params, step, residuals).await
    }

    pub fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        block_on(self.ops.take_residuals())?
    }

    /// [`Session::next_token_async`], blocking.
    pub fn pick(
        &mut self,
        ids: &[u32],
        pos0: usize,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        block_on(self.next_token_async(ids, pos0, params, step, residuals))?
    }
}

impl<B: ExactBackend> Session<B> {
    /// Like [`Engine::eval`], with the logits in their exact integer form.
    pub async fn eval_exact_async(&mut self, ids: &[u32], pos0: usize, rows: std::ops::Range<usize>) -> Result<IMat> {
        let y = self.forward(ids, pos0, rows)?;
        self.ops.exact_logits(y).await
    }

    pub fn eval_exact(&mut self, ids: &[u32], pos0: usize, rows: std::ops::Range<usize>) -> Result<IMat> {
        block_on(self.eval_exact_async(ids, pos0, rows))?
    }
}

impl<B: Backend> Engine for Session<B> {
    fn config(&self) -> &Config {
        &self.model.cfg
    }

    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        block_on(self.eval_async(ids, pos0, out_rows))?
    }

    fn next_token(&mut self, ids: &[u32], pos0: usize, params: &SamplingParams, step: u64) -> Result<u32> {
        Ok(block_on(self.next_token_async(ids, pos0, params, step, false))??.0)
    }
}

/// Run a backend's future to completion where blocking is allowed: natively, waiting on the
/// device; in wasm32, only futures that are ready at once (the CPU's), since the browser's
/// GPU answers on the event loop (use the async methods there).
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(pollster::block_on(f))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => Ok(v),
            std::task::Poll::Pending => {
                Err(Error::InvalidArgument("the browser's GPU is asynchronous: use the async API".into()))
            }
        }
    }
}

pub use crate::sampling::argmax;

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// This end-of-generation token was produced (it is not part of the output).
    Eog(u32),
    /// `max_tokens` were produced, or the context is full.
    Length,
    /// The output text reached a stop string (the text ends before it).
    Stop,
    /// The caller ended it.
    Aborted,
}

/// Where a generation stands: the text shown so far (held back while a character or a stop
/// string is incomplete) and whether and why it has ended. Generation and the verifier's
/// replay both go through it, so they cannot disagree on where a generation ends.
pub struct StopState {
    dec: StreamDecoder,
    stops: StopMatcher,
    eog: Vec<u32>,
    max_tokens: usize,
    /// Most tokens the context has room for: each but the last is evaluated after the prompt.
    room: usize,
    n: usize,
    /// The output text so far.
    pub text: String,
    pub finish: Option<Finish>,
}

impl StopState {
    pub fn new(prompt_len: usize, ctx_len: usize, max_tokens: usize, stop: &[String], eog: &[u32]) -> StopState {
        StopState {
            dec: StreamDecoder::default(),
            stops: StopMatcher::new(stop),
            eog: eog.to_vec(),
            max_tokens,
            room: (ctx_len + 1).saturating_sub(prompt_len),
            n: 0,
            text: String::new(),
            finish: (max_tokens == 0).then_some(Finish::Length),
        }
    }

    /// A sampled token: returns the text it makes safe to show, and ends the generation on an
    /// end-of-generation id, a stop string, `max_tokens` or a full context. Without a
    /// tokenizer, only ids and counts end it and there is no text.
    pub fn push(&mut self, tok: Option<&Tokenizer>, id: u32) -> Result<String> {
        if self.finish.is_some() {
            return Err(Error::InvalidArgument("the generation has ended".into()));
        }
        self.n += 1;
        if self.eog.contains(&id) {
            self.finish = Some(Finish::Eog(id));
            return Ok(self.flush());
        }
        let piece = match tok {
            Some(tok) => self.dec.push(tok, id)?,
            None => String::new(),
        };
        let (text, stopped) = self.stops.push(&piece);
        self.text.push_str(&text);
        if stopped {
            self.finish = Some(Finish::Stop);
            return Ok(text);
        }
        if self.n >= self.max_tokens || self.n >= self.room {
            self.finish = Some(Finish::Length);
            return Ok(text + &self.flush());
        }
        Ok(text)
    }

    /// End the generation now, unless it has ended: returns the text held back until now.
    pub fn abort(&mut self) -> String {
        if self.finish.is_some() {
            return String::new();
        }
        self.finish = Some(Finish::Aborted);
        self.flush()
    }

    /// Tokens pushed so far.
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn flush(&mut self) -> String {
        let tail = self.stops.push(&self.dec.finish()).0 + &self.stops.finish();
        self.text.push_str(&tail);
        tail
    }
}

/// One generation, step by step: which tokens the next forward pass evaluates, and what the
/// sampled tokens make. The caller runs the passes (blocking or async, on any backend).
pub struct Generation {
    pub prompt: Vec<u32>,
    /// Leading prompt tokens already in the KV cache (a previous turn's), not evaluated again.
    pub cached: usize,
    pub params: SamplingParams,
    pub stop: StopState,
    /// Every sampled token, the end-of-generation id included.
    pub tokens: Vec<u32>,
}

impl Generation {
    /// Checks that the prompt is not empty and fits the context.
    pub fn new(
        prompt: Vec<u32>,
        cached: usize,
        cfg: &Config,
        max_tokens: usize,
        params: SamplingParams,
        stop: &[String],
        eog: &[u32],
    ) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("empty prompt".into()));
        }
        if prompt.len() > cfg.ctx_len {
            return Err(Error::ContextOverflow { len: prompt.len(), ctx: cfg.ctx_len });
        }
        let stop = StopState::new(prompt.len(), cfg.ctx_len, max_tokens, stop, eog);
        Ok(Generation { cached: cached.min(prompt.len() - 1), prompt, params, stop, tokens: Vec::new() })
    }

    pub fn done(&self) -> bool {
        self.stop.finish.is_some()
    }

    /// The next forward pass: the tokens to evaluate, the position of the first, the RNG step.
    pub fn input(&self) -> (&[u32], usize, u64) {
        match self.tokens.last() {
            None => (&self.prompt[self.cached..], self.cached, 0),
            Some(t) => (std::slice::from_ref(t), self.prompt.len() + self.tokens.len() - 1, self.tokens.len() as u64),
        }
    }

    /// The token that pass picked: returns its text.
    pub fn push(&mut self, tok: Option<&Tokenizer>, id: u32) -> Result<String> {
        let text = self.stop.push(tok, id)?;
        self.tokens.push(id);
        Ok(text)
    }

    /// The tokens whose keys and values are in the cache now (what a next turn can reuse).
    pub fn evaluated(&self) -> Vec<u32> {
        let n = self.tokens.len().saturating_sub(1);
        self.prompt.iter().chain(&self.tokens[..n]).copied().collect()
    }
}

/// Greedy decoding: [`generate`] with [`SamplingParams::greedy`].
pub fn generate_greedy(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    eog: &[u32],
) -> Result<(Vec<u32>, Finish)> {
    generate(engine, prompt, max_tokens, &SamplingParams::greedy(), eog)
}

/// Evaluate the prompt, then repeatedly append the token [`sample`] picks (step `i` of the
/// RNG for the `i`-th generated token), until an `eog` id or `max_tokens`. Returns the tokens
/// (the end-of-generation id left out).
pub fn generate(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    eog: &[u32],
) -> Result<(Vec<u32>, Finish)> {
    let g = run(engine, None, prompt, max_tokens, params, &[], eog, |_| Ok(()))?;
    finished(g)
}

/// [`generate`] with the tokens decoded to text as they come, ended also by the first stop
/// string (the text stops before it). `on_text` sees each token's piece (possibly empty).
/// Returns the tokens (the end-of-generation id left out), why it ended, and the text.
pub fn generate_text(
    engine: &mut dyn Engine,
    tok: &Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    stop: &[String],
    on_text: impl FnMut(&str) -> Result<()>,
) -> Result<(Vec<u32>, Finish, String)> {
    let mut g = run(engine, Some(tok), prompt, max_tokens, params, stop, tok.eog_ids(), on_text)?;
    let text = std::mem::take(&mut g.stop.text);
    let (tokens, finish) = finished(g)?;
    Ok((tokens, finish, text))
}

#[allow(clippy::too_many_arguments)]
fn run(
    engine: &mut dyn Engine,
    tok: Option<&Tokenizer>,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    stop: &[String],
    eog: &[u32],
    mut on_text: impl FnMut(&str) -> Result<()>,
) -> Result<Generation> {
    let mut g = Generation::new(prompt.to_vec(), 0, engine.config(), max_tokens, *params, stop, eog)?;
    while !g.done() {
        let (ids, pos0, step) = g.input();
        let t = engine.next_token(ids, pos0, params, step)?;
        on_text(&g.push(tok, t)?)?;
    }
    Ok(g)
}

fn finished(mut g: Generation) -> Result<(Vec<u32>, Finish)> {
    let finish = g.stop.finish.ok_or_else(|| Error::InvalidArgument("generation has not ended".into()))?;
    if let Finish::Eog(_) = finish {
        g.tokens.pop();
    }
    Ok((g.tokens, finish))
}
