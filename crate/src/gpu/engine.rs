//! A model on the GPU behind [`crate::engine::Engine`], as `ExactModel` / `ExactSession`
//! are on the CPU: the same logits bit for bit.

use super::{GpuContext, GpuOps, GpuWeight};
use crate::backend::exact::IMat;
use crate::error::Result;
use crate::gguf::Gguf;
use crate::model::{forward, Config, Weights};
use std::rc::Rc;

/// Hyper-parameters and device weights of a model (uploaded once).
pub struct GpuModel {
    pub cfg: Config,
    pub weights: Weights<GpuWeight>,
    pub ctx: Rc<GpuContext>,
}

impl GpuModel {
    /// Upload `gguf`'s weights to `ctx`'s device.
    pub fn load(gguf: &Gguf, ctx: Rc<GpuContext>) -> Result<GpuModel> {
        let cfg = Config::from_metadata(gguf.metadata())?;
        let weights = Weights::load(gguf, &cfg, |t| GpuWeight::from_view(&ctx, t))?;
        ctx.check()?;
        Ok(GpuModel { cfg, weights, ctx })
    }

    /// [`GpuModel::load`] on a new device (blocking; native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_blocking(gguf: &Gguf, opts: super::GpuOptions) -> Result<GpuModel> {
        GpuModel::load(gguf, Rc::new(GpuContext::new_blocking(opts)?))
    }

    /// A fresh session (empty KV cache) over this model.
    pub fn session(&self) -> Result<GpuSession<'_>> {
        Ok(GpuSession { model: self, ops: GpuOps::new(Rc::clone(&self.ctx), &self.cfg)? })
    }
}

pub struct GpuSession<'a> {
    model: &'a GpuModel,
    ops: GpuOps,
}

impl GpuSession<'_> {
    /// Record the residual stream after every block from now on (for the receipts' digests).
    pub fn record_residuals(&mut self) {
        self.ops.record_residuals();
    }

    /// The residual streams recorded since the last call: per forward pass, one per block.
    pub async fn take_residuals_async(&mut self) -> Result<Vec<IMat>> {
        self.ops.take_residuals_async().await
    }

    /// The exact logits of rows `out_rows`, in their integer form.
    pub async fn eval_exact_async(
        &mut self,
        ids: &[u32],
        pos0: usize,
        out_rows: std::ops::Range<usize>,
    ) -> Result<IMat> {
        let m = self.model;
        let y = forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, out_rows)?;
        self.ops.download_async(&y).await
    }

    /// The greedy next token after `ids` (the argmax of the last row's logits, ties to the
    /// lowest id): the only value read back.
    pub async fn next_greedy_async(&mut self, ids: &[u32], pos0: usize) -> Result<u32> {
        let m = self.model;
        let n = ids.len();
        let y = forward(&mut self.ops, &m.cfg, &m.weights, ids, pos0, n.saturating_sub(1)..n)?;
        let ids = self.ops.argmax_async(&y).await?;
        ids.first().copied().ok_or_else(|| crate::error::Error::Gpu("argmax of no row".into()))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuSession<'_> {
    pub fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        pollster::block_on(self.take_residuals_async())
    }

    pub fn eval_exact(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<IMat> {
        pollster::block_on(self.eval_exact_async(ids, pos0, out_rows))
    }

    pub fn next_greedy(&mut self, ids: &[u32], pos0: usize) -> Result<u32> {
        pollster::block_on(self.next_greedy_async(ids, pos0))
    }
}

/// Native only: [`Engine::eval`] blocks on the readback.
#[cfg(not(target_arch = "wasm32"))]
impl crate::engine::Engine for GpuSession<'_> {
    fn config(&self) -> &Config {
        &self.model.cfg
    }

    /// The exact logits converted to f32 (exactly: 24-bit mantissas), as `ExactSession` does.
    fn eval(&mut self, ids: &[u32], pos0: usize, out_rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        Ok(self.eval_exact(ids, pos0, out_rows)?.to_f32())
    }
}
