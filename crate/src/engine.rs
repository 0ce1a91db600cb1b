//! A loaded model behind one interface, whatever its numerics and backend:
//! evaluate tokens at a position, get logits back.

use crate::backend::exact::{ExactOps, ExactWeight, IMat};
use crate::backend::f32::{F32Weight, RefF32};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::model::{forward, Config, Weights};
use crate::sampling::{sample, SamplingParams, StopMatcher};
use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Something that turns tokens into next-token logits, keeping its own KV cache.
pub trait Engine {
    fn config(&self) -> &Config;
    /// Evaluate `ids` at positions `pos0..`, replacing whatever the cache held from `pos0` on.
    /// Returns the logits of rows `out_rows`, flattened `[rows, n_vocab]`.
    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>>;

    /// Evaluate `ids` at `pos0..` and pick the next token from the last row's logits with
    /// [`sample`] (RNG step `step`). Backends that can pick on the device override it, so that
    /// a token costs one small readback instead of a logits row.
    fn next_token(&mut self, ids: &[u32], pos0: usize, params: &SamplingParams, step: u64) -> Result<u32> {
        sample_last(self, ids, pos0, params, step)
    }
}

/// [`Engine::next_token`] on the CPU: the last row's logits read back, then [`sample`].
fn sample_last<E: Engine + ?Sized>(
    e: &mut E,
    ids: &[u32],
    pos0: usize,
    params: &SamplingParams,
    step: u64,
) -> Result<u32> {
    let n = ids.len();
    let logits = e.eval(ids, pos0, n.saturating_sub(1)..n)?;
    sample(&logits, params, step)
}

/// Hyper-parameters and f32 weights of a model.
pub struct RefModel {
    pub cfg: Config,
    pub weights: Weights<F32Weight>,
}

impl RefModel {
    pub fn load(gguf: &Gguf) -> Result<RefModel> {
        let cfg = Config::from_metadata(gguf.metadata())?;
        let weights = Weights::load(gguf, &cfg, F32Weight::from_view)?;
        Ok(RefModel { cfg, weights })
    }

    /// A fresh session (empty KV cache) over this model.
    pub fn session(&self) -> RefSession<'_> {
        RefSession { model: self, ops: RefF32::new(&self.cfg) }
    }
}

pub struct RefSession<'a> {
    model: &'a RefModel,
    ops: RefF32,
}

impl Engine for RefSession<'_> {
    fn config(&self) -> &Config {
        &self.model.cfg
    }

    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let m = self.model;
        let logits = forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, out_rows)?;
        Ok(logits.data)
    }
}

/// Hyper-parameters and integer weights of a model, for the exact mode.
pub struct ExactModel {
    pub cfg: Config,
    pub weights: Weights<ExactWeight>,
}

impl ExactModel {
    pub fn load(gguf: &Gguf) -> Result<ExactModel> {
        let cfg = Config::from_metadata(gguf.metadata())?;
        let weights = Weights::load(gguf, &cfg, ExactWeight::from_view)?;
        Ok(ExactModel { cfg, weights })
    }

    /// A fresh session (empty KV cache) over this model.
    pub fn session(&self) -> ExactSession<'_> {
        ExactSession { model: self, ops: ExactOps::new(&self.cfg) }
    }
}

pub struct ExactSession<'a> {
    model: &'a ExactModel,
    ops: ExactOps,
}

impl ExactSession<'_> {
    /// Record the residual stream after every block from now on (for the receipts' digests).
    pub fn record_residuals(&mut self) {
        self.ops.record_residuals();
    }

    /// The residual streams recorded since the last call: per forward pass, one per block.
    pub fn take_residuals(&mut self) -> Vec<IMat> {
        self.ops.take_residuals()
    }

    /// Like [`Engine::eval`], with the logits in their exact integer form.
    pub fn eval_exact(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<IMat> {
        let m = self.model;
        forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, out_rows)
    }
}

impl Engine for ExactSession<'_> {
    fn config(&self) -> &Config {
        &self.model.cfg
    }

    /// The exact logits converted to f32 (exactly: 24-bit mantissas), so argmax is unchanged.
    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        Ok(self.eval_exact(ids, pos0, out_rows)?.to_f32())
    }
}

/// Hyper-parameters and device-resident weights of a model, for the exact mode on WebGPU
/// (native: blocking on the device; the browser drives [`crate::gpu::GpuOps`] asynchronously).
#[cfg(not(target_arch = "wasm32"))]
pub struct GpuModel {
    pub cfg: Config,
    pub weights: Weights<crate::gpu::GpuWeight>,
    pub ctx: std::rc::Rc<crate::gpu::GpuContext>,
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuModel {
    /// Upload the weights once.
    pub fn load(gguf: &Gguf, ctx: std::rc::Rc<crate::gpu::GpuContext>) -> Result<GpuModel> {
        let cfg = Config::from_metadata(gguf.metadata())?;
        let weights = Weights::load(gguf, &cfg, |t| crate::gpu::GpuWeight::from_view(&ctx, t))?;
        // The uploads are queue writes: make them land now, not in the first step.
        ctx.finish_writes()?;
        Ok(GpuModel { cfg, weights, ctx })
    }

    /// A fresh session (empty KV cache on the device).
    pub fn session(&self) -> Result<GpuSession<'_>> {
        Ok(GpuSession { model: self, ops: crate::gpu::GpuOps::new(self.ctx.clone(), &self.cfg)? })
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct GpuSession<'a> {
    model: &'a GpuModel,
    ops: crate::gpu::GpuOps,
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuSession<'_> {
    /// Like [`Engine::eval`], with the logits in their exact integer form (one readback).
    pub fn eval_exact(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<IMat> {
        let m = self.model;
        let y = forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, out_rows)?;
        self.ops.check()?;
        self.ops.download(&y)
    }

    pub fn record_residuals(&mut self) {
        self.ops.record_residuals();
    }

    pub fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        self.ops.take_residuals()
    }

    /// The adapter's name and backend.
    pub fn adapter(&self) -> String {
        let a = &self.model.ctx.adapter;
        format!("{} ({:?})", a.name, a.backend)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Engine for GpuSession<'_> {
    fn config(&self) -> &Config {
        &self.model.cfg
    }

    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        Ok(self.eval_exact(ids, pos0, out_rows)?.to_f32())
    }

    /// Picked on the device by the sampler kernels, greedy or seeded: 8 bytes read back
    /// ([`GpuSession::pick`]).
    fn next_token(&mut self, ids: &[u32], pos0: usize, params: &SamplingParams, step: u64) -> Result<u32> {
        Ok(self.pick(ids, pos0, params, step, false)?.0)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuSession<'_> {
    /// [`Engine::next_token`], and with `residuals` the residual streams recorded since the
    /// last take, read back together with the token.
    pub fn pick(
        &mut self,
        ids: &[u32],
        pos0: usize,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        let m = self.model;
        let n = ids.len();
        let y = forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, n.saturating_sub(1)..n)?;
        self.ops.check()?;
        pollster::block_on(self.ops.next_token_async(&y, params, step, residuals))
    }
}

pub use crate::sampling::argmax;

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// This end-of-generation token was produced (it is not part of the output).
    Eog(u32),
    /// `max_tokens` were produced.
    Length,
    /// The callback asked to stop.
    Stopped,
}

/// Greedy decoding: [`generate`] with [`SamplingParams::greedy`].
pub fn generate_greedy(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    eog: &[u32],
    on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<(Vec<u32>, Finish)> {
    generate(engine, prompt, max_tokens, &SamplingParams::greedy(), eog, on_token)
}

/// Evaluate the prompt, then repeatedly append the token [`sample`] picks
/// (step `i` of the RNG for the `i`-th generated token).
/// `on_token` sees each new token; returning `false` stops.
pub fn generate(
    engine: &mut dyn Engine,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    eog: &[u32],
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<(Vec<u32>, Finish)> {
    if prompt.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    let ctx = engine.config().ctx_len;
    if prompt.len() > ctx {
        return Err(Error::ContextOverflow { len: prompt.len(), ctx });
    }
    let mut out = Vec::new();
    if max_tokens == 0 {
        return Ok((out, Finish::Length));
    }
    let mut next = engine.next_token(prompt, 0, params, 0)?;
    let mut pos = prompt.len();
    loop {
        if eog.contains(&next) {
            return Ok((out, Finish::Eog(next)));
        }
        out.push(next);
        if !on_token(next)? {
            return Ok((out, Finish::Stopped));
        }
        if out.len() >= max_tokens || pos >= ctx {
            return Ok((out, Finish::Length));
        }
        next = engine.next_token(&[next], pos, params, out.len() as u64)?;
        pos += 1;
    }
}

/// [`generate`] with the tokens decoded to text as they come, ended also by the first stop
/// string (the text stops before it). `on_text` sees each piece (possibly empty: one call per
/// token, then one for the held-back tail). Returns the tokens, why it ended, and the text.
pub fn generate_text(
    engine: &mut dyn Engine,
    tok: &Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    params: &SamplingParams,
    stop: &[String],
    mut on_text: impl FnMut(&str) -> Result<()>,
) -> Result<(Vec<u32>, Finish, String)> {
    let mut dec = StreamDecoder::new(tok);
    let mut stops = StopMatcher::new(stop);
    let mut output = String::new();
    let (tokens, finish) = generate(engine, prompt, max_tokens, params, tok.eog_ids(), |t| {
        let (text, stopped) = stops.push(&dec.push(t)?);
        on_text(&text)?;
        output.push_str(&text);
        Ok(!stopped)
    })?;
    if finish != Finish::Stopped {
        let tail = stops.push(&dec.finish()).0 + &stops.finish();
        on_text(&tail)?;
        output.push_str(&tail);
    }
    Ok((tokens, finish, output))
}
