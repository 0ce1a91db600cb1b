//! The exact op set on the GPU: activations stay in device buffers (i32 mantissas and one
//! exponent per row, as [`IMat`]); weights are uploaded once as their GGUF bytes.

use super::{Buf, GpuContext, GpuWeight, Kernel};
use crate::backend::exact::IMat;
use crate::error::{Error, Result};
use crate::model::{AttnParams, Config, Ops, RopeKind};
use crate::numerics::{attention_scale, exp2_table, f32_const, phi_table, rope_cos_sin, ROW_BITS};
use crate::sampling::SamplingParams;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

mod encoder;

/// Activation rows on the device: `m` holds `rows × cols` i32 mantissas, `e` one i32 exponent per row.
/// Written once by the op that makes it, or by the first consumer when it is made [`Lazy`],
/// then only read.
pub struct GpuAct {
    pub rows: usize,
    pub cols: usize,
    pub m: Buf,
    pub e: Buf,
    /// Unique per activation value (its buffers are reused once it is dropped; an add in
    /// place gives it a new one).
    id: u64,
    lazy: RefCell<Option<Lazy>>,
    /// An add recorded but not run: `m`, `e` still hold the row before it, and these
    /// accumulators are to be added to it in place (add_norm.wgsl), by the RMSNorm that reads it
    /// next (one dispatch for both) or, before any other read, alone ([`GpuOps::settle`]).
    add: RefCell<Option<Lazy>>,
}

/// An activation's accumulators that no kernel has normalized into its `m`, `e` yet
/// (normalize.wgsl's input): the first consumer that can (quantize.wgsl, add.wgsl, rope.wgsl)
/// does it itself, saving a dispatch; any other has [`GpuOps::ready`] record normalize.wgsl first.
#[derive(Clone)]
struct Lazy {
    /// Shared by products of one input (q, k, v; gate, up), each at its columns.
    acc: Rc<Buf>,
    gexp: Rc<Buf>,
    group: usize,
    ng: usize,
    bias: i32,
    /// Row stride and first column in `acc`.
    stride: usize,
    col0: usize,
    /// RoPE still to apply (rope.wgsl) to the normalized values: attention takes q and k this
    /// way and runs it with their quantization (attn_in.wgsl); any other consumer has it
    /// recorded first ([`GpuOps::unrope`]).
    rope: Option<Rope>,
}

/// A RoPE recorded but not run: its (cos, sin) rows, head size and pairing.
#[derive(Clone)]
struct Rope {
    cs: wgpu::Buffer,
    head_dim: usize,
    neox: bool,
}

/// What [`GpuOps::fuse`] gives a consumer; the accumulators stay out of the pool until it is
/// dropped, after the consumer's dispatch is recorded.
struct Fused {
    params: [u32; 7],
    acc: wgpu::Buffer,
    gexp: wgpu::Buffer,
    _hold: Option<Lazy>,
}

impl Lazy {
    /// Accumulators of their own (`rows × cols`), one exponent per group of `group` columns.
    fn own(acc: Buf, gexp: Rc<Buf>, cols: usize, group: usize, bias: i32) -> Lazy {
        Lazy { acc: Rc::new(acc), gexp, group, ng: cols / group, bias, stride: cols, col0: 0, rope: None }
    }

    /// norm_row.wgsl's parameters (norm, group, ng, bits, bias, stride, col0) as a consumer
    /// passes them.
    fn params(&self) -> [u32; 7] {
        [1, self.group, self.ng, ROW_BITS as usize, self.bias as usize, self.stride, self.col0].map(|v| v as u32)
    }
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl GpuAct {
    fn new(rows: usize, cols: usize, m: Buf, e: Buf) -> GpuAct {
        GpuAct { rows, cols, m, e, id: next_id(), lazy: RefCell::new(None), add: RefCell::new(None) }
    }
}

/// The scaled int8 blocks of an activation, as matmul.wgsl reads them.
struct Quantized {
    act: u64,
    xq: Buf,
    xblk: Buf,
    /// Also the group exponent of the products' lazy outputs.
    emax: Rc<Buf>,
}

/// One layer's KV cache: per position, K then V as packed int8 words, and per block
/// (exponent, scale, Σq, 0), for `cap` positions of which `len` are filled.
struct KvCache {
    words: Buf,
    blocks: Buf,
    cap: usize,
    len: usize,
}

/// matmul.wgsl's tile for `n` x rows: (x rows, outputs, invocations per tile). On a CPU
/// adapter one invocation makes a tile: a decode step loads each x block once for 8 outputs
/// (about a fifth faster on lavapipe than once per output), prefill decodes each weight
/// sub-block once for 4 x rows. With `split_k`, for GPUs, invocations share a tile's blocks,
/// so that a decode step's 576 outputs still make thousands of invocations.
fn matmul_tile(n: usize, split_k: bool) -> (u32, u32, u32) {
    match (n == 1, split_k) {
        (true, false) => (1, 8, 1),
        (false, false) => (4, 1, 1),
        (true, true) => (1, 1, 16),
        (false, true) => (4, 1, 4),
    }
}

/// The attention geometry the kernel supports, matching shapes, and the scale as `(m, e)`.
fn attention_checked(q: &GpuAct, k: &GpuAct, v: &GpuAct, p: &AttnParams) -> Result<(i32, i32)> {
    let hd = p.head_dim;
    let (kv_dim, q_cols) = (p.n_head_kv * hd, p.n_head * hd);
    // Blocks start on word boundaries: heads of a multiple of 4 (every model here).
    if hd > 256 || hd == 0 || !hd.is_multiple_of(4) || p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
        return Err(Error::InvalidArgument(format!(
            "GPU attention: {} heads, {} KV heads of {hd}",
            p.n_head, p.n_head_kv
        )));
    }
    let n = q.rows;
    if (q.cols, k.cols, v.cols) != (q_cols, kv_dim, kv_dim) || k.rows != n || v.rows != n {
        return Err(Error::InvalidArgument(format!(
            "attention of q {}×{}, k {}×{}, v {}×{}",
            q.rows, q.cols, k.rows, k.cols, v.rows, v.cols
        )));
    }
    attention_scale(p.scale).ok_or_else(|| Error::InvalidArgument(format!("attention scale {}", p.scale)))
}

/// The KV cache's words and blocks per position (kv_cache.wgsl): K's then V's.
fn cache_per_pos(p: &AttnParams) -> (usize, usize) {
    (p.n_head_kv * p.head_dim / 2, 2 * p.n_head_kv * p.head_dim.div_ceil(32))
}

/// Where position `j`'s K (`kv` 0) or V (`kv` 1) words and blocks start in the cache
/// (kv_cache.wgsl's `cache_word`, `cache_blk` for KV head 0).
fn cache_at(p: &AttnParams, j: usize, kv: usize) -> (usize, usize) {
    let (w, b) = cache_per_pos(p);
    ((2 * j + kv) * w / 2, (2 * j + kv) * b / 2)
}

/// What attn_in.wgsl needs when `q` and `k` have their RoPE pending and `q`, `k`, `v` are still
/// lazy in one shared buffer (a decoder's products): per product (col0, group, ng, bias), the
/// buffer's row stride, the buffers and the RoPE. `None` otherwise (or rows past its 1 024).
#[allow(clippy::type_complexity)]
fn attn_in(
    q: &GpuAct,
    k: &GpuAct,
    v: &GpuAct,
    hd: usize,
) -> Option<([[u32; 4]; 3], usize, wgpu::Buffer, wgpu::Buffer, Rope)> {
    let (lq, lk, lv) = (q.lazy.borrow(), k.lazy.borrow(), v.lazy.borrow());
    let (lq, lk, lv) = (lq.as_ref()?, lk.as_ref()?, lv.as_ref()?);
    let (rq, rk) = (lq.rope.as_ref()?, lk.rope.as_ref()?);
    let shared = |l: &Lazy| Rc::ptr_eq(&l.acc, &lq.acc) && Rc::ptr_eq(&l.gexp, &lq.gexp) && l.stride == lq.stride;
    let same_rope = rq.cs == rk.cs && rq.neox == rk.neox && rq.head_dim == hd && rk.head_dim == hd;
    if !(shared(lk) && shared(lv) && lv.rope.is_none() && same_rope && q.cols <= 1024 && k.cols <= 1024) {
        return None;
    }
    let part = |l: &Lazy| [l.col0, l.group, l.ng, l.bias as usize].map(|v| v as u32);
    Some(([part(lq), part(lk), part(lv)], lq.stride, (**lq.acc).clone(), (**lq.gexp).clone(), rq.clone()))
}

/// Segments per dispatch of attention.wgsl and pool_l2.wgsl: their bounds travel in the
/// parameter block, 64 words.
pub const MAX_SEGMENTS: usize = 63;

/// `bounds` (segment starts, then the end) as the kernels' 64-word array, zero-padded.
fn segment_bounds(bounds: &[u32]) -> [u32; MAX_SEGMENTS + 1] {
    let mut b = [0; MAX_SEGMENTS + 1];
    b[..bounds.len()].copy_from_slice(bounds);
    b
}

/// The exact op set on a [`GpuContext`]. Ops of the [`crate::model::Ops`] trait cannot
/// return errors: they are kept and returned by [`GpuOps::check`] and by readbacks.
pub struct GpuOps {
    pub ctx: Rc<GpuContext>,
    caches: Vec<Option<KvCache>>,
    pub(crate) exp2: Buf,
    /// The same table as a uniform block (attn_step.wgsl, whose storage bindings are full).
    exp2_u: wgpu::Buffer,
    /// The encoders' Φ table (`numerics::phi_table`), in Q30.
    phi: Buf,
    /// Ops recorded since the last submission.
    enc: Option<wgpu::CommandEncoder>,
    /// The last activation quantized for a matrix product: q, k and v (and gate and up)
    /// multiply the same one.
    quantized: Option<Quantized>,
    /// Device copies of the residual stream after each block, when recording.
    residuals: Option<Vec<GpuAct>>,
    /// Bound where a kernel's lazy input has no accumulators (`norm` 0).
    none: Buf,
    /// Bound where a kernel does not write its quantized rows (writable bindings may not alias).
    sinks: [Buf; 3],
    /// (cos, sin) in Q30 per position, keyed by (base bits, head size): built on the CPU.
    rope: HashMap<(u32, usize), Vec<[i32; 2]>>,
    /// The rows of those tables last uploaded, keyed by (base bits, head size, first
    /// position, rows): every layer of a forward pass binds the same ones.
    rope_rows: HashMap<(u32, usize, usize, usize), Buf>,
}

fn i32_bytes(v: &[i32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

impl GpuOps {
    pub fn new(ctx: Rc<GpuContext>, cfg: &Config) -> Result<GpuOps> {
        GpuOps::with_layers(ctx, cfg.n_layer)
    }

    /// Ops with no KV cache: for encoders ([`crate::model::bert::EncoderOps`]).
    pub fn encoder(ctx: Rc<GpuContext>) -> Result<GpuOps> {
        GpuOps::with_layers(ctx, 0)
    }

    fn with_layers(ctx: Rc<GpuContext>, n_layer: usize) -> Result<GpuOps> {
        let t: Vec<u32> = exp2_table().iter().map(|&v| v as u32).collect();
        let exp2 = ctx.storage_init("exp2", bytemuck::cast_slice(&t))?;
        let mut t4 = t.clone();
        t4.resize(t.len().next_multiple_of(4), 0);
        let exp2_u = ctx.buffer_with("exp2", bytemuck::cast_slice(&t4), wgpu::BufferUsages::UNIFORM);
        let none = ctx.storage_init("none", &[0; 16])?;
        let sinks = [
            ctx.storage_init("sink", &[0; 16])?,
            ctx.storage_init("sink", &[0; 16])?,
            ctx.storage_init("sink", &[0; 16])?,
        ];
        let t: Vec<u32> = phi_table().iter().map(|&v| v as u32).collect();
        let phi = ctx.storage_init("phi", bytemuck::cast_slice(&t))?;
        Ok(GpuOps {
            none,
            sinks,
            ctx,
            caches: (0..n_layer).map(|_| None).collect(),
            exp2,
            exp2_u,
            phi,
            enc: None,
            quantized: None,
            residuals: None,
            rope: HashMap::new(),
            rope_rows: HashMap::new(),
        })
    }

    /// The first error since the last check (the ops of the `Ops` trait defer theirs).
    pub fn check(&self) -> Result<()> {
        self.ctx.check()
    }

    pub fn upload(&self, x: &IMat) -> Result<GpuAct> {
        Ok(GpuAct::new(
            x.rows,
            x.cols,
            self.ctx.storage_init("act.m", i32_bytes(&x.m))?,
            self.ctx.storage_init("act.e", i32_bytes(&x.e))?,
        ))
    }

    /// Keep the residual stream after each block from now on (see [`GpuOps::take_residuals`]),
    /// as `ExactOps::record_residuals` does: copies stay on the device until taken.
    pub fn record_residuals(&mut self) {
        self.residuals.get_or_insert_with(Vec::new);
    }

    /// The residual streams recorded since the last call, one per block and forward pass, in
    /// order, read back together.
    pub async fn take_residuals_async(&mut self) -> Result<Vec<IMat>> {
        let acts = self.residuals.as_mut().map(std::mem::take).unwrap_or_default();
        self.read_acts(&[], &acts.iter().collect::<Vec<_>>()).await.map(|(_, mats)| mats)
    }

    /// [`GpuOps::take_residuals_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_residuals(&mut self) -> Result<Vec<IMat>> {
        pollster::block_on(self.take_residuals_async())
    }

    /// Read activations back (submitting the ops recorded so far).
    pub async fn download_async(&mut self, x: &GpuAct) -> Result<IMat> {
        let (_, mut mats) = self.read_acts(&[], &[x]).await?;
        mats.pop().ok_or_else(|| Error::Gpu("readback of nothing".into()))
    }

    /// Submit the ops recorded so far with copies of `words` u32s from the start of each of
    /// `small` and of the activations `acts`, and read those back with one mapping.
    pub(crate) async fn read_acts(
        &mut self,
        small: &[(&wgpu::Buffer, usize)],
        acts: &[&GpuAct],
    ) -> Result<(Vec<Vec<u32>>, Vec<IMat>)> {
        self.recorded(|s, enc| s.ready(enc, acts))?;
        let mut parts: Vec<(&wgpu::Buffer, u64)> = small.iter().map(|&(b, words)| (b, words as u64 * 4)).collect();
        for a in acts {
            parts.push((&a.m, (a.rows * a.cols * 4) as u64));
            parts.push((&a.e, (a.rows * 4) as u64));
        }
        // The ops recorded so far and the copies out go in one submission.
        let bytes = self.ctx.read_after_async(self.enc.take(), &parts).await?;
        let (head, tail) = bytes.split_at(small.len());
        let words = head.iter().map(|b| bytemuck::pod_collect_to_vec(b)).collect();
        let mats = acts
            .iter()
            .zip(tail.chunks_exact(2))
            .map(|(a, me)| IMat {
                rows: a.rows,
                cols: a.cols,
                m: bytemuck::pod_collect_to_vec(&me[0]),
                e: bytemuck::pod_collect_to_vec(&me[1]),
            })
            .collect();
        Ok((words, mats))
    }

    /// The token after the last row of `logits` ([`GpuOps::sample_async`]) and, with
    /// `residuals`, the residual streams recorded since the last take, all with one readback.
    pub async fn next_token_async(
        &mut self,
        logits: &GpuAct,
        params: &SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Result<(u32, Vec<IMat>)> {
        let acts = match (residuals, self.residuals.as_mut()) {
            (true, Some(r)) => std::mem::take(r),
            _ => Vec::new(),
        };
        let row = logits.rows.checked_sub(1).ok_or_else(|| Error::InvalidArgument("no logits to pick from".into()))?;
        self.sample_with_async(logits, row, params, step, &acts.iter().collect::<Vec<_>>()).await
    }

    /// [`GpuOps::download_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download(&mut self, x: &GpuAct) -> Result<IMat> {
        pollster::block_on(self.download_async(x))
    }

    fn act(&self, rows: usize, cols: usize) -> Result<GpuAct> {
        Ok(GpuAct::new(
            rows,
            cols,
            self.ctx.storage("act.m", (rows * cols * 4) as u64)?,
            self.ctx.storage("act.e", (rows * 4) as u64)?,
        ))
    }

    /// 64-bit accumulators for `rows × cols` values and `groups` exponents per row.
    fn acc(&self, rows: usize, cols: usize, groups: usize) -> Result<(Buf, Buf)> {
        Ok((self.ctx.storage("acc", (rows * cols * 8) as u64)?, self.ctx.storage("acc.e", (rows * groups * 4) as u64)?))
    }

    /// An activation whose values are `acc` (`rows × cols` 64-bit accumulators) with one exponent
    /// per group of `group` columns in `gexp` (plus `bias`), normalized later ([`Lazy`]).
    fn lazy(&self, acc: Buf, gexp: Rc<Buf>, rows: usize, cols: usize, group: usize, bias: i32) -> Result<GpuAct> {
        let out = self.act(rows, cols)?;
        *out.lazy.borrow_mut() = Some(Lazy::own(acc, gexp, cols, group, bias));
        Ok(out)
    }

    /// Record normalize.wgsl for each of `acts` still [`Lazy`], so that kernels may read them.
    pub(crate) fn ready(&self, enc: &mut wgpu::CommandEncoder, acts: &[&GpuAct]) -> Result<()> {
        for x in acts {
            self.settle(enc, x)?;
            let lazy = x.lazy.borrow_mut().take();
            if let Some(l) = lazy.map(|l| self.unrope(enc, x, l)).transpose()? {
                let p =
                    [x.cols, l.group, l.ng, ROW_BITS as usize, l.bias as usize, 0, l.stride, l.col0].map(|v| v as u32);
                let bufs = [&**l.acc, &**l.gexp, &*x.m, &*x.e];
                self.ctx.dispatch(enc, Kernel::Normalize, &p, &bufs, [x.rows as u32, 1, 1])?;
            }
        }
        Ok(())
    }

    /// A fused consumer's view of `x`: normalize_row.wgsl's parameters and the accumulators to
    /// bind (`x` then counts as normalized: the consumer writes its `m`, `e`), or `norm` 0 and a
    /// placeholder when `x` is ready.
    fn fuse(&self, enc: &mut wgpu::CommandEncoder, x: &GpuAct) -> Result<Fused> {
        self.settle(enc, x)?;
        let lazy = x.lazy.borrow_mut().take().map(|l| self.unrope(enc, x, l)).transpose()?;
        let (params, acc, gexp) = match &lazy {
            Some(l) => (l.params(), (**l.acc).clone(), (**l.gexp).clone()),
            None => ([0; 7], (*self.none).clone(), (*self.none).clone()),
        };
        Ok(Fused { params, acc, gexp, _hold: lazy })
    }

    /// `l` (the lazy values of `x`) with its pending RoPE, if any, recorded: rope.wgsl
    /// normalizes them (into scratch rows) and rotates them into new accumulators.
    fn unrope(&self, enc: &mut wgpu::CommandEncoder, x: &GpuAct, mut l: Lazy) -> Result<Lazy> {
        let Some(r) = l.rope.take() else {
            return Ok(l);
        };
        let (rows, cols) = (x.rows, x.cols);
        let input = self.act(rows, cols)?;
        let (acc, gexp) = self.acc(rows, cols, 1)?;
        let mut p = vec![cols as u32, rows as u32, r.head_dim as u32];
        p.extend(l.params());
        let bufs = [&*input.m, &*input.e, &r.cs, &*acc, &*gexp, &**l.acc, &**l.gexp];
        self.ctx.dispatch(enc, Kernel::Rope { neox: r.neox }, &p, &bufs, [rows as u32, 1, 1])?;
        Ok(Lazy::own(acc, Rc::new(gexp), cols, cols, 0))
    }

    /// Record `x`'s pending add, if any, alone (add_norm.wgsl without its norm): `x` then holds
    /// the sum.
    fn settle(&self, enc: &mut wgpu::CommandEncoder, x: &GpuAct) -> Result<()> {
        let pending = x.add.borrow_mut().take();
        match pending {
            Some(y) => self.add_norm(enc, x, &y, None, false),
            None => Ok(()),
        }
    }

    /// Record add_norm.wgsl: `x += y` in place (`y` still accumulators); with `norm` (the norm
    /// weight, eps and where to quantize) also the RMSNorm of the sum, one group per row, into
    /// y's accumulators, which nothing else may hold. With `y_only`, `x` has no values yet: it
    /// gets y's.
    fn add_norm(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuAct,
        y: &Lazy,
        norm: Option<(&GpuWeight, f32, &Quantized)>,
        y_only: bool,
    ) -> Result<()> {
        let (wm, we, eps, q) = match norm {
            Some((GpuWeight::Vector { m, e, .. }, eps, q)) => (&**m, *e, eps, Some(q)),
            Some(_) => return Err(Error::InvalidArgument("a matrix used as a norm weight".into())),
            None => (&*self.none, 0, 0.0, None),
        };
        let (em, ee) = f32_const(eps).unwrap_or((0, 0));
        let mut p = vec![x.cols as u32];
        p.extend(&y.params()[1..]);
        p.extend([norm.is_some() as u32, y_only as u32, em as u32, ee as u32, we as u32]);
        let [xq, xblk, emax] = self.quantized_bufs(q);
        let bufs = [&*x.m, &*x.e, &**y.acc, &**y.gexp, wm, xq, xblk, emax];
        self.ctx.dispatch(enc, Kernel::AddNorm, &p, &bufs, [x.rows as u32, 1, 1])
    }

    /// Record into the pending command encoder: ops are submitted together at the next
    /// [`GpuOps::flush`] (a readback flushes), not one submission each.
    pub(crate) fn recorded<T>(&mut self, f: impl FnOnce(&Self, &mut wgpu::CommandEncoder) -> Result<T>) -> Result<T> {
        let mut enc = self.enc.take().unwrap_or_else(|| self.ctx.encoder());
        let r = f(self, &mut enc);
        self.enc = Some(enc);
        r
    }

    /// Submit the ops recorded so far.
    pub fn flush(&mut self) {
        if let Some(enc) = self.enc.take() {
            self.ctx.submit(enc);
        }
    }

    pub fn try_matmul(&mut self, x: &GpuAct, w: &GpuWeight) -> Result<GpuAct> {
        self.try_matmuls(x, &[w])?.pop().ok_or_else(|| Error::Gpu("matmul made no product".into()))
    }

    /// `x` times each of `ws` (q, k, v; gate, up), quantized once, the products' accumulators in
    /// one buffer (row stride the sum of their widths), each product at its columns: consumers of
    /// both (gated_acc.wgsl) bind it once.
    pub fn try_matmuls(&mut self, x: &GpuAct, ws: &[&GpuWeight]) -> Result<Vec<GpuAct>> {
        let mut mats = Vec::with_capacity(ws.len());
        for w in ws {
            let GpuWeight::Matrix { rows, cols, ty, max_exp, chunks } = w else {
                return Err(Error::InvalidArgument("a 1-D weight used as a matrix".into()));
            };
            if x.cols != *cols {
                return Err(Error::InvalidArgument(format!("matmul of {}-wide rows by a {cols}-wide weight", x.cols)));
            }
            mats.push((*rows, *ty, *max_exp, chunks));
        }
        let (n, k, nb) = (x.rows, x.cols, x.cols / 32);
        let total: usize = mats.iter().map(|m| m.0).sum();
        let limit = self.ctx.max_binding as usize;
        if mats.len() > 1 && n * total * 8 > limit {
            return ws.iter().map(|w| self.try_matmul(x, w)).collect();
        }
        let q = match self.quantized.take() {
            Some(q) if q.act == x.id => q,
            _ => {
                let q = Quantized { act: x.id, ..self.quantized_bufs_for(n, k)? };
                self.recorded(|s, enc| s.quantize(enc, x, k, (&*q.xq, k / 4, 0), (&*q.xblk, nb, 0), &q.emax))?;
                q
            }
        };
        let q = self.quantized.insert(q);
        let (xq, xblk, emax) = ((*q.xq).clone(), (*q.xblk).clone(), Rc::clone(&q.emax));
        // Outputs too large for one binding (prefill logits over a large vocabulary, one weight)
        // are made in batches of rows, each bound as a range of the output buffer (256-byte
        // aligned offsets: rows of a multiple of 64 outputs).
        let batch = if n * total * 8 <= limit { n } else { limit / (total * 8) };
        if batch == 0 || (batch < n && !total.is_multiple_of(64)) {
            return Err(Error::MissingLimit {
                name: "max_storage_buffer_binding_size (matmul accumulators)".into(),
                need: (n * total * 8) as u64,
                have: limit as u64,
            });
        }
        let acc = Rc::new(self.ctx.storage("acc", (batch * total * 8) as u64)?);
        let outs = if batch == n {
            mats.iter().map(|&(m, ..)| self.act(n, m)).collect::<Result<Vec<_>>>()?
        } else {
            let m = self.ctx.storage_large("act.m", (n * total * 4) as u64)?;
            vec![GpuAct::new(n, total, m, self.ctx.storage("act.e", (n * 4) as u64)?)]
        };
        let (x_rows, outputs, lanes) = matmul_tile(n, self.ctx.split_k);
        // Dispatches: runs of weights stacked in one buffer (stack_products) are one, up to three
        // weights each (matmul.wgsl's segments, each with its own grid); other chunks one each.
        let mut runs: Vec<Vec<(usize, usize)>> = Vec::new();
        for (wi, &(_, ty, _, chunks)) in mats.iter().enumerate() {
            for (ci, c) in chunks.iter().enumerate() {
                let joins = runs.last().and_then(|r| r.last()).is_some_and(|&(pw, pc)| {
                    let (pm, pty, _, pch) = mats[pw];
                    let p = &pch[pc];
                    chunks.len() == 1 && pch.len() == 1 && pty == ty && *p.buf == *c.buf && p.at + pm == c.at
                }) && runs.last().is_some_and(|r| r.len() < 3);
                match runs.last_mut() {
                    Some(r) if joins => r.push((wi, ci)),
                    _ => runs.push(vec![(wi, ci)]),
                }
            }
        }
        // Each weight's first output column.
        let starts: Vec<usize> = mats.iter().scan(0, |a, m| Some(std::mem::replace(a, *a + m.0))).collect();
        self.recorded(|s, enc| {
            for r0 in (0..n).step_by(batch) {
                let b = batch.min(n - r0);
                for run in &runs {
                    let (w0, c0) = run[0];
                    let (_, ty, _, chunks) = mats[w0];
                    let c = &chunks[c0];
                    let kernel = Kernel::Matmul { ty, x_rows, outputs, lanes };
                    // Per segment (a weight of the run): where it ends among the run's outputs, its grid.
                    let mut ends = [0usize; 3];
                    let mut exps = [0i32; 3];
                    let mut rows = 0;
                    for (i, &(wi, ci)) in run.iter().enumerate() {
                        rows += mats[wi].3[ci].rows;
                        ends[i] = rows;
                        exps[i] = mats[wi].2;
                    }
                    for i in run.len()..3 {
                        (ends[i], exps[i]) = (rows, exps[run.len() - 1]);
                    }
                    let first = starts[w0] + c.row0;
                    let p = [
                        k,
                        nb,
                        rows,
                        first,
                        total,
                        b,
                        exps[0] as usize,
                        r0,
                        c.at,
                        ends[0],
                        ends[1],
                        exps[1] as usize,
                        exps[2] as usize,
                    ]
                    .map(|v| v as u32);
                    // matmul.wgsl: 64 invocations per workgroup; past 65 535, workgroups go on along z.
                    let tiles = rows.div_ceil(outputs as usize).div_ceil(64 / lanes as usize);
                    let z = tiles.div_ceil(super::MAX_WORKGROUPS as usize);
                    let groups = [tiles.div_ceil(z) as u32, b.div_ceil(x_rows as usize) as u32, z as u32];
                    s.ctx.dispatch(enc, kernel, &p, &[&c.buf, &xq, &xblk, &emax, &acc], groups)?;
                }
                if batch == n {
                    // One batch: its consumers normalize it.
                    break;
                }
                let (out, max_exp) = (&outs[0], mats[0].2);
                let p = [total, total, 1, ROW_BITS as usize, (max_exp - 8) as usize, r0, total, 0].map(|v| v as u32);
                let om = wgpu::BufferBinding {
                    buffer: &out.m,
                    offset: (r0 * total * 4) as u64,
                    size: std::num::NonZeroU64::new((b * total * 4) as u64),
                };
                let bufs = vec![
                    acc.as_entire_binding(),
                    emax.as_entire_binding(),
                    wgpu::BindingResource::Buffer(om),
                    out.e.as_entire_binding(),
                ];
                s.ctx.dispatch_bound(enc, Kernel::Normalize, &p, bufs, [b as u32, 1, 1])?;
            }
            Ok(())
        })?;
        if batch == n {
            for ((out, &(m, _, max_exp, _)), &col0) in outs.iter().zip(&mats).zip(&starts) {
                let (acc, gexp) = (Rc::clone(&acc), Rc::clone(&emax));
                *out.lazy.borrow_mut() =
                    Some(Lazy { acc, gexp, group: m, ng: 1, bias: max_exp - 8, stride: total, col0, rope: None });
            }
        }
        Ok(outs)
    }

    pub fn try_embed(&mut self, w: &GpuWeight, ids: &[u32]) -> Result<GpuAct> {
        let GpuWeight::Matrix { rows, cols, ty, chunks, .. } = w else {
            return Err(Error::InvalidArgument("a 1-D weight used as an embedding".into()));
        };
        if let Some(&t) = ids.iter().find(|&&t| t as usize >= *rows) {
            return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary of {rows}")));
        }
        let (n, cols) = (ids.len(), *cols);
        let (acc, gexp) = self.acc(n, cols, 1)?;
        self.recorded(|s, enc| {
            for c in chunks {
                // (row within the chunk, output row) of this chunk's tokens.
                let sel: Vec<u32> = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, &t)| (c.row0..c.row0 + c.rows).contains(&(t as usize)))
                    .flat_map(|(i, &t)| [t - c.row0 as u32, i as u32])
                    .collect();
                if sel.is_empty() {
                    continue;
                }
                let sel_buf = s.ctx.storage_init("ids", bytemuck::cast_slice(&sel))?;
                let groups = [(sel.len() / 2) as u32, 1, 1];
                s.ctx.dispatch(enc, Kernel::Embed(*ty), &[cols as u32], &[&c.buf, &sel_buf, &acc, &gexp], groups)?;
            }
            Ok(())
        })?;
        self.lazy(acc, Rc::new(gexp), n, cols, cols, 0)
    }

    pub fn try_rms_norm(&mut self, x: &GpuAct, w: &GpuWeight, group: usize, eps: f32) -> Result<GpuAct> {
        let GpuWeight::Vector { len, m: wm, e: we } = w else {
            return Err(Error::InvalidArgument("a matrix used as a norm weight".into()));
        };
        if *len != group || group == 0 || !x.cols.is_multiple_of(group) {
            return Err(Error::InvalidArgument(format!("norm weight of {len} for groups of {group} in {}", x.cols)));
        }
        if let Some(h) = self.try_add_norm(x, w, group, eps)? {
            return Ok(h);
        }
        let (em, ee) = f32_const(eps).unwrap_or((0, 0));
        let ng = x.cols / group;
        let (acc, gexp) = self.acc(x.rows, x.cols, ng)?;
        // One group per row (a decoder's norms before a product): the row is also quantized for
        // the product, which then needs no quantize dispatch.
        let q = if ng == 1 { self.quantized_rows(x.rows, x.cols)? } else { None };
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            let p =
                [x.cols, group, ng, em as usize, ee as usize, *we as usize, q.is_some() as usize, ROW_BITS as usize];
            let groups = [ng as u32, x.rows as u32, 1];
            let [xq, xblk, emax] = s.quantized_bufs(q.as_ref());
            let bufs = [&*x.m, &*x.e, wm, &*acc, &*gexp, xq, xblk, emax];
            s.ctx.dispatch(enc, Kernel::RmsNorm, &p.map(|v| v as u32), &bufs, groups)
        })?;
        let out = self.lazy(acc, Rc::new(gexp), x.rows, x.cols, group, 0)?;
        self.keep_quantized(q, &out);
        Ok(out)
    }

    /// The RMSNorm of `x` (one group per row) run with `x`'s pending add, in one dispatch
    /// (add_norm.wgsl), when the added accumulators are one product's alone: the norm is written
    /// over them. When `x` itself is still accumulators of its own (an embedding, a product),
    /// add_norm.wgsl writes them normalized into `x` as normalize.wgsl would, then the norm.
    /// `None` (nothing recorded) otherwise.
    fn try_add_norm(&mut self, x: &GpuAct, w: &GpuWeight, group: usize, eps: f32) -> Result<Option<GpuAct>> {
        let cols = x.cols;
        if group != cols || !cols.is_multiple_of(32) {
            return Ok(None);
        }
        let (y, y_only) = match (&*x.add.borrow(), &*x.lazy.borrow()) {
            (Some(y), _) => (y.clone(), false),
            (None, Some(y)) => (y.clone(), true),
            _ => return Ok(None),
        };
        if y.stride != cols || y.col0 != 0 || y.ng != 1 || y.rope.is_some() {
            return Ok(None);
        }
        // The cached quantization of the product's input shares its exponents (emax); the
        // norm's quantization replaces it below.
        if self.quantized.as_ref().is_some_and(|q| Rc::ptr_eq(&q.emax, &y.gexp)) {
            self.quantized = None;
        }
        // Held by `x` and `y` here: by nothing else.
        if Rc::strong_count(&y.acc) > 2 || Rc::strong_count(&y.gexp) > 2 {
            return Ok(None);
        }
        x.add.borrow_mut().take();
        x.lazy.borrow_mut().take();
        let q = Quantized { act: 0, ..self.quantized_bufs_for(x.rows, cols)? };
        self.recorded(|s, enc| s.add_norm(enc, x, &y, Some((w, eps, &q)), y_only))?;
        let out = self.act(x.rows, cols)?;
        *out.lazy.borrow_mut() = Some(Lazy { group: cols, ng: 1, bias: 0, ..y });
        self.keep_quantized(Some(q), &out);
        Ok(Some(out))
    }

    /// Buffers for `rows` × `cols` quantized by the op that makes them (quant_row.wgsl): `None`
    /// where a row is not whole blocks of 32.
    fn quantized_rows(&self, rows: usize, cols: usize) -> Result<Option<Quantized>> {
        if cols == 0 || !cols.is_multiple_of(32) {
            return Ok(None);
        }
        self.quantized_bufs_for(rows, cols).map(Some)
    }

    /// Buffers for `rows` × `cols` quantized in blocks of 32 (matmul.wgsl's x).
    fn quantized_bufs_for(&self, rows: usize, cols: usize) -> Result<Quantized> {
        Ok(Quantized {
            act: 0,
            xq: self.ctx.storage("xq", (rows * cols) as u64)?,
            xblk: self.ctx.storage("xblk", (rows * (cols / 32) * 16) as u64)?,
            emax: Rc::new(self.ctx.storage("emax", (rows * 4) as u64)?),
        })
    }

    /// What a kernel binds for its quantized rows: `q`'s buffers, or the sinks.
    fn quantized_bufs<'a>(&'a self, q: Option<&'a Quantized>) -> [&'a wgpu::Buffer; 3] {
        match q {
            Some(q) => [&q.xq, &q.xblk, &q.emax],
            None => [&self.sinks[0], &self.sinks[1], &self.sinks[2]],
        }
    }

    /// `q`, written with `out`, is what a product of `out` binds.
    fn keep_quantized(&mut self, q: Option<Quantized>, out: &GpuAct) {
        if let Some(q) = q {
            self.quantized = Some(Quantized { act: out.id, ..q });
        }
    }

    /// An element-wise op over the activations `acts` (bound as `inputs`) writing accumulators
    /// and one exponent per row: its output is [`Lazy`].
    #[allow(clippy::too_many_arguments)]
    fn elementwise(
        &mut self,
        kernel: Kernel,
        p: &[u32],
        acts: &[&GpuAct],
        inputs: &[&wgpu::Buffer],
        rows: usize,
        cols: usize,
        width: usize,
    ) -> Result<GpuAct> {
        let (acc, gexp) = self.acc(rows, cols, 1)?;
        self.recorded(|s, enc| {
            s.ready(enc, acts)?;
            let mut bufs = inputs.to_vec();
            bufs.extend([&*acc, &*gexp]);
            s.ctx.dispatch(enc, kernel, p, &bufs, [width.div_ceil(64) as u32, rows as u32, 1])
        })?;
        self.lazy(acc, Rc::new(gexp), rows, cols, cols, 0)
    }

    pub fn try_scale(&mut self, x: &GpuAct, s: f32) -> Result<GpuAct> {
        let (sm, se) = f32_const(s).unwrap_or((0, 0));
        let p = [x.cols as u32, x.rows as u32, sm as u32, se as u32];
        self.elementwise(Kernel::Scale, &p, &[x], &[&x.m, &x.e], x.rows, x.cols, x.cols)
    }

    pub fn try_rope(&mut self, x: &GpuAct, pos0: usize, head_dim: usize, base: f32, kind: RopeKind) -> Result<GpuAct> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) || !x.cols.is_multiple_of(head_dim) {
            return Err(Error::InvalidArgument(format!("rope of heads of {head_dim} in rows of {}", x.cols)));
        }
        let half = head_dim / 2;
        let key = (base.to_bits(), head_dim, pos0, x.rows);
        if !self.rope_rows.contains_key(&key) {
            let table = self.rope.entry((base.to_bits(), head_dim)).or_default();
            while table.len() < (pos0 + x.rows) * half {
                let pos = table.len() / half;
                table.extend(rope_cos_sin(base, head_dim, pos).into_iter().map(|(c, s)| [c, s]));
            }
            let rows = &table[pos0 * half..(pos0 + x.rows) * half];
            let cs = self.ctx.storage_init("rope", bytemuck::cast_slice(rows))?;
            // A new forward pass: the last one's rows are not needed again.
            self.rope_rows.retain(|k, _| k.2 == pos0);
            self.rope_rows.insert(key, cs);
        }
        let cs: wgpu::Buffer = (*self.rope_rows[&key]).clone();
        let neox = kind == RopeKind::Neox;
        // On values still lazy, the RoPE waits for its consumer: attention runs it with the
        // quantization of q and k (attn_in.wgsl), anything else has it recorded first.
        let pending = match &*x.lazy.borrow() {
            Some(l) if l.rope.is_none() => Some(Lazy {
                acc: Rc::clone(&l.acc),
                gexp: Rc::clone(&l.gexp),
                rope: Some(Rope { cs: cs.clone(), head_dim, neox }),
                ..*l
            }),
            _ => None,
        };
        if let Some(l) = pending {
            let out = self.act(x.rows, x.cols)?;
            *out.lazy.borrow_mut() = Some(l);
            return Ok(out);
        }
        let kernel = Kernel::Rope { neox };
        let (acc, gexp) = self.acc(x.rows, x.cols, 1)?;
        self.recorded(|s, enc| {
            // x is usually a product's output, which rope.wgsl normalizes itself.
            let f = s.fuse(enc, x)?;
            let mut p = vec![x.cols as u32, x.rows as u32, head_dim as u32];
            p.extend(f.params);
            let bufs = [&*x.m, &*x.e, &cs, &*acc, &*gexp, &f.acc, &f.gexp];
            s.ctx.dispatch(enc, kernel, &p, &bufs, [x.rows as u32, 1, 1])
        })?;
        self.lazy(acc, Rc::new(gexp), x.rows, x.cols, x.cols, 0)
    }

    fn try_gated(&mut self, gate: &GpuAct, up: &GpuAct, gelu: bool) -> Result<GpuAct> {
        if (gate.rows, gate.cols) != (up.rows, up.cols) {
            return Err(Error::InvalidArgument(format!(
                "gate {}×{} and up {}×{}",
                gate.rows, gate.cols, up.rows, up.cols
            )));
        }
        let exp2 = self.exp2.clone();
        // A decoder's gate and up products share one accumulator buffer: gated_acc.wgsl
        // normalizes both on the fly, two dispatches fewer.
        let shared = match (&*gate.lazy.borrow(), &*up.lazy.borrow()) {
            (Some(g), Some(u)) if Rc::ptr_eq(&g.acc, &u.acc) && Rc::ptr_eq(&g.gexp, &u.gexp) => {
                let p = [gate.cols, g.stride, ROW_BITS as usize, g.col0, g.group, g.ng, g.bias as usize]
                    .into_iter()
                    .chain([u.col0, u.group, u.ng, u.bias as usize])
                    .map(|v| v as u32)
                    .collect::<Vec<_>>();
                Some((p, (**g.acc).clone(), (**g.gexp).clone()))
            }
            _ => None,
        };
        if let Some((mut p, nacc, ngexp)) = shared {
            let (acc, gexp) = self.acc(gate.rows, gate.cols, 1)?;
            // Quantized too, for the down product.
            let q = self.quantized_rows(gate.rows, gate.cols)?;
            p.push(q.is_some() as u32);
            self.recorded(|s, enc| {
                let [xq, xblk, emax] = s.quantized_bufs(q.as_ref());
                let bufs = [&nacc, &ngexp, &exp2, &*acc, &*gexp, xq, xblk, emax];
                s.ctx.dispatch(enc, Kernel::GatedAcc { gelu }, &p, &bufs, [gate.rows as u32, 1, 1])
            })?;
            let out = self.lazy(acc, Rc::new(gexp), gate.rows, gate.cols, gate.cols, 0)?;
            self.keep_quantized(q, &out);
            return Ok(out);
        }
        let p = [gate.cols as u32, gate.rows as u32];
        let bufs = [&gate.m, &gate.e, &up.m, &up.e, &exp2];
        self.elementwise(Kernel::Gated { gelu }, &p, &[gate, up], &bufs, gate.rows, gate.cols, gate.cols)
    }

    pub fn try_add(&mut self, x: &GpuAct, y: &GpuAct) -> Result<GpuAct> {
        if (x.rows, x.cols) != (y.rows, y.cols) {
            return Err(Error::InvalidArgument(format!("add of {}×{} and {}×{}", x.rows, x.cols, y.rows, y.cols)));
        }
        let out = self.act(x.rows, x.cols)?;
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            // y is usually a matrix product's output, which add.wgsl normalizes itself.
            let f = s.fuse(enc, y)?;
            let mut p = vec![x.cols as u32];
            p.extend(f.params);
            let bufs: [&wgpu::Buffer; 8] = [&x.m, &x.e, &y.m, &y.e, &out.m, &out.e, &f.acc, &f.gexp];
            s.ctx.dispatch(enc, Kernel::Add, &p, &bufs, [x.rows as u32, 1, 1])?;
            Ok(out)
        })
    }

    /// `x += y`. When `y` is still accumulators, the add is only noted: its first reader runs it
    /// in place (an RMSNorm with it, in one dispatch); otherwise add.wgsl runs now.
    pub fn try_add_in_place(&mut self, x: &mut GpuAct, y: &GpuAct) -> Result<()> {
        if (x.rows, x.cols) != (y.rows, y.cols) {
            return Err(Error::InvalidArgument(format!("add of {}×{} and {}×{}", x.rows, x.cols, y.rows, y.cols)));
        }
        let pending = y.lazy.borrow().as_ref().filter(|l| l.rope.is_none()).cloned();
        match pending {
            Some(l) => {
                self.recorded(|s, enc| s.ready(enc, &[x]))?;
                *x.add.borrow_mut() = Some(l);
                x.id = next_id();
            }
            None => *x = self.try_add(x, y)?,
        }
        Ok(())
    }

    pub fn try_rows(&mut self, x: &GpuAct, rows: std::ops::Range<usize>) -> Result<GpuAct> {
        if rows.start > rows.end || rows.end > x.rows {
            return Err(Error::InvalidArgument(format!("rows {rows:?} of {}", x.rows)));
        }
        let out = self.act(rows.len(), x.cols)?;
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            let (c, r0, n) = (x.cols as u64 * 4, rows.start as u64, rows.len() as u64);
            if n > 0 {
                enc.copy_buffer_to_buffer(&x.m, r0 * c, &out.m, 0, n * c);
                enc.copy_buffer_to_buffer(&x.e, r0 * 4, &out.e, 0, n * 4);
            }
            Ok(out)
        })
    }

    /// The index of each row's largest value (ties to the lowest), read back: the only
    /// readback a greedy decode step needs.
    pub async fn argmax_async(&mut self, x: &GpuAct) -> Result<Vec<u32>> {
        let out = self.ctx.storage("argmax", (x.rows * 4) as u64)?;
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            s.ctx.dispatch(enc, Kernel::Argmax, &[x.cols as u32], &[&x.m, &out], [x.rows as u32, 1, 1])
        })?;
        let (mut words, _) = self.read_acts(&[(&out, x.rows)], &[]).await?;
        Ok(words.pop().unwrap_or_default())
    }

    /// [`GpuOps::argmax_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn argmax(&mut self, x: &GpuAct) -> Result<Vec<u32>> {
        pollster::block_on(self.argmax_async(x))
    }

    /// Record quantize.wgsl: rows of `x` to scaled int8 blocks within `seg`-wide segments,
    /// output row r at word `q_base + r·q_stride` and block `b_base + r·b_stride`.
    #[allow(clippy::too_many_arguments)]
    fn quantize(
        &self,
        enc: &mut wgpu::CommandEncoder,
        x: &GpuAct,
        seg: usize,
        (q, q_stride, q_base): (&wgpu::Buffer, usize, usize),
        (blk, b_stride, b_base): (&wgpu::Buffer, usize, usize),
        emax: &wgpu::Buffer,
    ) -> Result<()> {
        // x is usually still accumulators (a product's output, RoPE's), which quantize.wgsl
        // normalizes itself.
        let f = self.fuse(enc, x)?;
        let mut p = [x.cols, seg, q_stride, q_base, b_stride, b_base].map(|v| v as u32).to_vec();
        p.extend(f.params);
        let bufs = [&*x.m, &*x.e, q, blk, emax, &f.acc, &f.gexp];
        self.ctx.dispatch(enc, Kernel::Quantize, &p, &bufs, [x.rows as u32, 1, 1])
    }

    /// Append `k`, `v` at `pos0` to the layer's cache (dropping what followed `pos0`), then
    /// attention of `q` over it.
    pub fn try_attention(&mut self, q: &GpuAct, k: &GpuAct, v: &GpuAct, pos0: usize, p: AttnParams) -> Result<GpuAct> {
        let scale = attention_checked(q, k, v, &p)?;
        let n = q.rows;
        let (cw, cb) = self.cache_for(&p, pos0, n)?;
        // Scores of every visible position, per row and head; sized for the cache's capacity,
        // so that decode steps until it grows reuse one buffer.
        let cap = self.caches[p.layer].as_ref().map_or(pos0 + n, |c| c.cap);
        self.attend(q, k, v, (&cw, &cb, pos0), cap, &p, scale, &[])
    }

    /// Quantize `k`, `v` into the cache buffers at position `pos0`, and `q`, then record
    /// attention.wgsl: causal (with `p.window`) when `bounds` is empty, else within the segments
    /// whose first rows (and the end) `bounds` lists. `npos`: the scores' stride per row and head.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &mut self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        (cw, cb, pos0): (&wgpu::Buffer, &wgpu::Buffer, usize),
        npos: usize,
        p: &AttnParams,
        (sm, se): (i32, i32),
        bounds: &[u32],
    ) -> Result<GpuAct> {
        let (n, hd) = (q.rows, p.head_dim);
        let (kv_dim, q_cols, nbh) = (p.n_head_kv * hd, p.n_head * hd, hd.div_ceil(32));
        let (pos_words, pos_blocks) = cache_per_pos(p);
        let scores = self.ctx.storage("attn.scores", (n * p.n_head * npos * 8) as u64)?;
        let (acc, gexp) = self.acc(n, q_cols, p.n_head)?;
        let whole = if bounds.is_empty() { attn_in(q, k, v, hd) } else { None };
        let window = p.window.unwrap_or(0);
        let attn = [hd, nbh, p.n_head, p.n_head / p.n_head_kv, kv_dim, pos0, window, npos].map(|v| v as u32);
        if let (Some((parts, stride, nacc, ngexp, rope)), 1) = (&whole, n) {
            // A decode step: q, k, v into attention and the attention, one dispatch, which
            // quantizes q into workgroup memory.
            self.recorded(|s, enc| {
                let mut prm = attn.to_vec();
                prm.extend([sm as u32, se as u32, 0]);
                let rest = [*stride, ROW_BITS as usize, q_cols, 0, 0];
                prm.extend(rest.map(|v| v as u32));
                prm.extend(parts.iter().flatten());
                let bufs = [nacc, ngexp, &rope.cs, cw, cb, &scores, &acc, &gexp, &s.exp2_u];
                s.ctx.dispatch(enc, Kernel::AttnStep { neox: rope.neox }, &prm, &bufs, [p.n_head as u32, 1, 1])
            })?;
            return self.lazy(acc, Rc::new(gexp), n, q_cols, hd, 0);
        }
        let q8 = self.ctx.storage("attn.q", (n * q_cols) as u64)?;
        let qblk = self.ctx.storage("attn.qblk", (n * p.n_head * nbh * 16) as u64)?;
        let emax = self.ctx.storage("attn.emax", (n * 4) as u64)?;
        let exp2 = self.exp2.clone();
        self.recorded(|s, enc| {
            if let Some((parts, stride, nacc, ngexp, rope)) = &whole {
                let mut prm =
                    [*stride, ROW_BITS as usize, hd, nbh, q_cols, kv_dim, p.n_head, pos0].map(|v| v as u32).to_vec();
                prm.extend(parts.iter().flatten());
                let bufs = [nacc, ngexp, &rope.cs, cw, cb, &q8, &qblk];
                s.ctx.dispatch(enc, Kernel::AttnIn { neox: rope.neox }, &prm, &bufs, [n as u32, 1, 1])?;
            } else {
                for (kv, x) in [k, v].into_iter().enumerate() {
                    let (w0, b0) = cache_at(p, pos0, kv);
                    s.quantize(enc, x, hd, (cw, pos_words, w0), (cb, pos_blocks, b0), &emax)?;
                }
                s.quantize(enc, q, hd, (&q8, q_cols / 4, 0), (&qblk, p.n_head * nbh, 0), &emax)?;
            }
            let mut prm = attn.to_vec();
            prm.extend([sm as u32, se as u32, bounds.len().saturating_sub(1) as u32, 0]);
            prm.extend(segment_bounds(bounds));
            let bufs = [&q8, &qblk, cw, cb, &exp2, &scores, &acc, &gexp];
            s.ctx.dispatch(enc, Kernel::Attention, &prm, &bufs, [p.n_head as u32, n as u32, 1])
        })?;
        self.lazy(acc, Rc::new(gexp), n, q_cols, hd, 0)
    }

    /// The cache of `p.layer`, holding `pos0 + n` positions (growing by doubling, copying the
    /// `pos0` positions kept; re-evaluation drops the rest): its word and block buffers.
    fn cache_for(&mut self, p: &AttnParams, pos0: usize, n: usize) -> Result<(wgpu::Buffer, wgpu::Buffer)> {
        let (layer, (pos_words, pos_blocks)) = (p.layer, cache_per_pos(p));
        let slot =
            self.caches.get(layer).ok_or_else(|| Error::InvalidArgument(format!("layer {layer} has no cache")))?;
        let cached = slot.as_ref().map_or(0, |c| c.len);
        if pos0 > cached {
            return Err(Error::InvalidArgument(format!("position {pos0} skips past the {cached} cached positions")));
        }
        let len = pos0 + n;
        let old_cap = slot.as_ref().map_or(0, |c| c.cap);
        if old_cap < len {
            let cap = len.max(2 * old_cap).max(16);
            let words = self.ctx.storage("kv.words", (cap * pos_words * 4) as u64)?;
            let blocks = self.ctx.storage("kv.blocks", (cap * pos_blocks * 16) as u64)?;
            if let Some(old) = self.caches[layer].take() {
                if pos0 > 0 {
                    self.recorded(|_, enc| {
                        enc.copy_buffer_to_buffer(&old.words, 0, &words, 0, (pos0 * pos_words * 4) as u64);
                        enc.copy_buffer_to_buffer(&old.blocks, 0, &blocks, 0, (pos0 * pos_blocks * 16) as u64);
                        Ok(())
                    })?;
                }
            }
            self.caches[layer] = Some(KvCache { words, blocks, cap, len });
        }
        match self.caches[layer].as_mut() {
            Some(c) => {
                c.len = len;
                Ok((c.words.clone(), c.blocks.clone()))
            }
            None => Err(Error::InvalidArgument(format!("layer {layer} has no cache"))),
        }
    }

    pub fn try_swiglu(&mut self, gate: &GpuAct, up: &GpuAct) -> Result<GpuAct> {
        self.try_gated(gate, up, false)
    }

    pub fn try_geglu(&mut self, gate: &GpuAct, up: &GpuAct) -> Result<GpuAct> {
        self.try_gated(gate, up, true)
    }

    /// The result of an op that failed before reaching the GPU: the error is kept for
    /// [`GpuOps::check`] and the value is an empty activation of the right shape.
    fn keep(&self, r: Result<GpuAct>, rows: usize, cols: usize) -> GpuAct {
        r.unwrap_or_else(|e| {
            self.ctx.defer(e);
            let dummy = |label| {
                self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                })
            };
            GpuAct::new(rows, cols, Buf::owned(dummy("failed.m")), Buf::owned(dummy("failed.e")))
        })
    }
}

impl Ops for GpuOps {
    type Act = GpuAct;
    type W = GpuWeight;

    fn embed(&mut self, w: &GpuWeight, ids: &[u32]) -> Result<GpuAct> {
        self.try_embed(w, ids)
    }

    fn scale(&mut self, x: &mut GpuAct, s: f32) {
        let r = self.try_scale(x, s);
        *x = self.keep(r, x.rows, x.cols);
    }

    fn rms_norm(&mut self, x: &GpuAct, w: &GpuWeight, group: usize, eps: f32) -> GpuAct {
        let r = self.try_rms_norm(x, w, group, eps);
        self.keep(r, x.rows, x.cols)
    }

    fn matmul(&mut self, x: &GpuAct, w: &GpuWeight) -> GpuAct {
        let r = self.try_matmul(x, w);
        self.keep(r, x.rows, w.out_len())
    }

    fn matmuls<const N: usize>(&mut self, x: &GpuAct, ws: [&GpuWeight; N]) -> [GpuAct; N] {
        let mut outs = match self.try_matmuls(x, &ws) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        }
        .into_iter();
        ws.map(|w| {
            let r = outs.next().unwrap_or_else(|| Err(Error::Gpu("matmul made no product".into())));
            self.keep(r, x.rows, w.out_len())
        })
    }

    fn rope(&mut self, x: &mut GpuAct, pos0: usize, head_dim: usize, base: f32, kind: RopeKind) {
        let r = self.try_rope(x, pos0, head_dim, base, kind);
        *x = self.keep(r, x.rows, x.cols);
    }

    fn attention(&mut self, q: &GpuAct, k: &GpuAct, v: &GpuAct, pos0: usize, p: AttnParams) -> Result<GpuAct> {
        self.try_attention(q, k, v, pos0, p)
    }

    fn swiglu(&mut self, gate: &GpuAct, up: &GpuAct) -> GpuAct {
        let r = self.try_swiglu(gate, up);
        self.keep(r, gate.rows, gate.cols)
    }

    fn geglu(&mut self, gate: &GpuAct, up: &GpuAct) -> GpuAct {
        let r = self.try_geglu(gate, up);
        self.keep(r, gate.rows, gate.cols)
    }

    fn add(&mut self, x: &mut GpuAct, y: GpuAct) {
        if let Err(e) = self.try_add_in_place(x, &y) {
            self.ctx.defer(e);
        }
    }

    fn rows(&mut self, x: &GpuAct, rows: std::ops::Range<usize>) -> GpuAct {
        let n = rows.len();
        let r = self.try_rows(x, rows);
        self.keep(r, n, x.cols)
    }

    fn residual(&mut self, _layer: usize, x: &GpuAct) {
        if self.residuals.is_some() {
            let copy = self.rows(x, 0..x.rows);
            self.residuals.get_or_insert_with(Vec::new).push(copy);
        }
    }
}
