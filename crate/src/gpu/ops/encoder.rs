//! The encoder ops ([`EncoderOps`]) on the GPU: the same bits as `backend/exact/encoder.rs`.

use super::{attention_checked, cache_per_pos, segment_bounds, GpuAct, GpuOps, GpuWeight, Kernel, MAX_SEGMENTS};
use crate::error::{Error, Result};
use crate::model::bert::{check_segments, EncoderOps};
use crate::model::AttnParams;
use crate::numerics::{f32_const, ROW_BITS};
use std::ops::Range;
use std::rc::Rc;

/// The segments' bounds (each start, then the end), checking that they tile `0..rows` in order
/// and that one dispatch can take them.
fn bounds(segs: &[Range<usize>], rows: usize) -> Result<Vec<u32>> {
    if segs.is_empty() || segs.len() > MAX_SEGMENTS {
        return Err(Error::InvalidArgument(format!("{} segments (1 to {MAX_SEGMENTS} per batch)", segs.len())));
    }
    check_segments(segs, rows)?;
    Ok(std::iter::once(0).chain(segs.iter().map(|s| s.end as u32)).collect())
}

fn vector(w: &GpuWeight, len: usize, what: &str) -> Result<(wgpu::Buffer, i32)> {
    match w {
        GpuWeight::Vector { len: l, m, e } if *l == len => Ok(((**m).clone(), *e)),
        _ => Err(Error::InvalidArgument(format!("{what}: not a vector of {len}"))),
    }
}

impl GpuOps {
    pub fn try_add_bias(&mut self, x: &GpuAct, b: &GpuWeight) -> Result<GpuAct> {
        let (bm, be) = vector(b, x.cols, "bias")?;
        let out = self.act(x.rows, x.cols)?;
        self.recorded(|s, enc| {
            // x is usually a product's output, which add_bias.wgsl normalizes itself.
            let f = s.fuse(enc, x)?;
            let mut p = vec![x.cols as u32, be as u32];
            p.extend(f.params);
            let bufs = [&*x.m, &*x.e, &bm, &*out.m, &*out.e, &f.acc, &f.gexp];
            s.ctx.dispatch(enc, Kernel::AddBias, &p, &bufs, [x.rows as u32, 1, 1])?;
            Ok(out)
        })
    }

    pub fn try_layer_norm(&mut self, x: &GpuAct, w: &GpuWeight, b: &GpuWeight, eps: f32) -> Result<GpuAct> {
        let (wm, we) = vector(w, x.cols, "LayerNorm weight")?;
        let (em, ee) = f32_const(eps).unwrap_or((0, 0));
        let eps_n2 = em as u64 * (x.cols * x.cols) as u64;
        let (acc, gexp) = self.acc(x.rows, x.cols, 1)?;
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            let p = [x.cols as u32, eps_n2 as u32, (eps_n2 >> 32) as u32, ee as u32, we as u32];
            s.ctx.dispatch(enc, Kernel::LayerNorm, &p, &[&x.m, &x.e, &wm, &acc, &gexp], [x.rows as u32, 1, 1])
        })?;
        let y = self.lazy(acc, Rc::new(gexp), x.rows, x.cols, x.cols, 0)?;
        self.try_add_bias(&y, b)
    }

    pub fn try_gelu(&mut self, x: &GpuAct) -> Result<GpuAct> {
        let p = [x.cols as u32, x.rows as u32];
        let phi = self.phi.clone();
        self.elementwise(Kernel::Gelu, &p, &[x], &[&x.m, &x.e, &phi], x.rows, x.cols, x.cols)
    }

    pub fn try_attention_segments(
        &mut self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        segs: &[Range<usize>],
        p: AttnParams,
    ) -> Result<GpuAct> {
        let scale = attention_checked(q, k, v, &p)?;
        let b = bounds(segs, q.rows)?;
        // The batch's own k and v, one position per row.
        let (pos_words, pos_blocks) = cache_per_pos(&p);
        let cw = self.ctx.storage("enc.kv.words", (q.rows * pos_words * 4) as u64)?;
        let cb = self.ctx.storage("enc.kv.blocks", (q.rows * pos_blocks * 16) as u64)?;
        let npos = segs.iter().map(|s| s.len()).max().unwrap_or(1);
        self.attend(q, k, v, (&cw, &cb, 0), npos, &p, scale, &b)
    }

    pub fn try_mean_pool_l2(&mut self, x: &GpuAct, segs: &[Range<usize>]) -> Result<GpuAct> {
        let b = bounds(segs, x.rows)?;
        let (acc, gexp) = self.acc(segs.len(), x.cols, 1)?;
        self.recorded(|s, enc| {
            s.ready(enc, &[x])?;
            let mut p = vec![x.cols as u32, segs.len() as u32, 0, 0];
            p.extend(segment_bounds(&b));
            s.ctx.dispatch(enc, Kernel::PoolL2, &p, &[&x.m, &x.e, &acc, &gexp], [segs.len() as u32, 1, 1])
        })?;
        self.lazy(acc, Rc::new(gexp), segs.len(), x.cols, x.cols, 0)
    }
}

impl EncoderOps for GpuOps {
    fn add_bias(&mut self, x: &mut GpuAct, b: &GpuWeight) {
        let r = self.try_add_bias(x, b);
        *x = self.keep(r, x.rows, x.cols);
    }

    fn layer_norm(&mut self, x: &GpuAct, w: &GpuWeight, b: &GpuWeight, eps: f32) -> GpuAct {
        let r = self.try_layer_norm(x, w, b, eps);
        self.keep(r, x.rows, x.cols)
    }

    fn gelu(&mut self, x: &GpuAct) -> GpuAct {
        let r = self.try_gelu(x);
        self.keep(r, x.rows, x.cols)
    }

    fn attention_segments(
        &mut self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        segs: &[Range<usize>],
        p: AttnParams,
    ) -> Result<GpuAct> {
        self.try_attention_segments(q, k, v, segs, p)
    }

    fn mean_pool_l2(&mut self, x: &GpuAct, segs: &[Range<usize>]) -> GpuAct {
        let r = self.try_mean_pool_l2(x, segs);
        self.keep(r, segs.len(), x.cols)
    }
}

const _: () = assert!(ROW_BITS == 24, "add_bias.wgsl, layer_norm.wgsl and pool_l2.wgsl normalize to 24 bits");
