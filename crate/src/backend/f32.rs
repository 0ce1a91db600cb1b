//! The plain f32 reference: weights dequantized to f32, f32 activations.
//! It is the accuracy yardstick for the exact mode, not a verifiable path.

use crate::error::{Error, Result};
use crate::gguf::TensorView;
use crate::model::bert::{check_segments, EncoderOps};
use crate::model::{AttnParams, Config, Ops, RopeKind};
use rayon::prelude::*;
use std::ops::Range;

/// A row-major matrix of activations.
#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Mat {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// A dequantized weight: `rows` outputs of `cols` inputs (GGUF dims `[cols, rows]`).
pub struct F32Weight {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl F32Weight {
    pub fn from_view(t: TensorView) -> Result<F32Weight> {
        Ok(F32Weight { rows: t.info.n_rows(), cols: t.info.row_len(), data: t.to_f32()? })
    }
    fn row(&self, j: usize) -> &[f32] {
        &self.data[j * self.cols..(j + 1) * self.cols]
    }
}

/// Dot product with independent lanes so the compiler can vectorize it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `x · wᵀ`: `[n, k] × [m, k]ᵀ → [n, m]`, threaded over blocks of weight rows.
pub fn matmul(x: &Mat, w: &F32Weight) -> Mat {
    let (n, k, m) = (x.rows, x.cols, w.rows);
    debug_assert_eq!(k, w.cols);
    let mut out = Mat::zeros(n, m);
    if n == 1 {
        out.data.par_chunks_mut(64).enumerate().for_each(|(b, o)| {
            for (jj, oj) in o.iter_mut().enumerate() {
                *oj = dot(w.row(b * 64 + jj), &x.data);
            }
        });
        return out;
    }
    // Each task computes a block of outᵀ = w_block · xᵀ with matrixmultiply, then we transpose.
    const BLOCK: usize = 128;
    let mut out_t = vec![0f32; m * n];
    out_t.par_chunks_mut(BLOCK * n).enumerate().for_each(|(b, ct)| {
        let r = ct.len() / n;
        let a = &w.data[b * BLOCK * k..];
        // SAFETY: a is r×k with strides (k, 1); xᵀ is k×n with strides (1, k); ct is r×n with
        // strides (n, 1); every slice is at least as long as those shapes need.
        unsafe {
            matrixmultiply::sgemm(
                r,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                x.data.as_ptr(),
                1,
                k as isize,
                0.0,
                ct.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    });
    for j in 0..m {
        for i in 0..n {
            out.data[i * m + j] = out_t[j * n + i];
        }
    }
    out
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// Each row of `q` attends, head by head, to the positions `lo..=hi` of `kc`, `vc` that
/// `visible(row)` gives.
fn attend_rows(
    q: &Mat,
    kc: &[f32],
    vc: &[f32],
    p: &AttnParams,
    visible: impl Fn(usize) -> (usize, usize) + Sync,
) -> Mat {
    let (hd, group) = (p.head_dim, p.n_head / p.n_head_kv);
    let kv_dim = p.n_head_kv * hd;
    let mut out = Mat::zeros(q.rows, p.n_head * hd);
    out.data.par_chunks_mut(hd).enumerate().for_each(|(ih, o)| {
        let (i, h) = (ih / p.n_head, ih % p.n_head);
        let (lo, hi) = visible(i);
        let qh = &q.row(i)[h * hd..(h + 1) * hd];
        let kvo = (h / group) * hd;
        let mut s: Vec<f32> =
            (lo..=hi).map(|j| p.scale * dot(qh, &kc[j * kv_dim + kvo..j * kv_dim + kvo + hd])).collect();
        let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for e in s.iter_mut() {
            *e = (*e - mx).exp();
            sum += *e;
        }
        for (e, j) in s.iter().zip(lo..=hi) {
            let wgt = e / sum;
            for (od, vd) in o.iter_mut().zip(&vc[j * kv_dim + kvo..j * kv_dim + kvo + hd]) {
                *od += wgt * vd;
            }
        }
    });
    out
}

/// The KV cache of one layer: `len` positions of `kv_dim` values each.
#[derive(Default)]
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
}

/// The f32 op set, owning the KV cache.
pub struct RefF32 {
    cache: Vec<LayerCache>,
}

impl RefF32 {
    pub fn new(cfg: &Config) -> RefF32 {
        RefF32 { cache: (0..cfg.n_layer).map(|_| LayerCache::default()).collect() }
    }

    /// Ops with no KV cache: for encoders ([`EncoderOps`]).
    pub fn encoder() -> RefF32 {
        RefF32 { cache: Vec::new() }
    }
}

impl Ops for RefF32 {
    type Act = Mat;
    type W = F32Weight;

    fn embed(&mut self, w: &F32Weight, ids: &[u32]) -> Result<Mat> {
        let mut x = Mat::zeros(ids.len(), w.cols);
        for (i, &t) in ids.iter().enumerate() {
            if t as usize >= w.rows {
                return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary of {}", w.rows)));
            }
            x.data[i * w.cols..(i + 1) * w.cols].copy_from_slice(w.row(t as usize));
        }
        Ok(x)
    }

    fn scale(&mut self, x: &mut Mat, s: f32) {
        x.data.iter_mut().for_each(|v| *v *= s);
    }

    fn rms_norm(&mut self, x: &Mat, w: &F32Weight, group: usize, eps: f32) -> Mat {
        let mut y = x.clone();
        for g in y.data.chunks_exact_mut(group) {
            let ms = g.iter().map(|v| v * v).sum::<f32>() / group as f32;
            let r = 1.0 / (ms + eps).sqrt();
            for (v, wv) in g.iter_mut().zip(&w.data) {
                *v = *v * r * wv;
            }
        }
        y
    }

    fn matmul(&mut self, x: &Mat, w: &F32Weight) -> Mat {
        matmul(x, w)
    }

    fn rope(&mut self, x: &mut Mat, pos0: usize, head_dim: usize, base: f32, kind: RopeKind) {
        let half = head_dim / 2;
        let freqs: Vec<f64> = (0..half).map(|t| (base as f64).powf(-2.0 * t as f64 / head_dim as f64)).collect();
        let cols = x.cols;
        for (i, row) in x.data.chunks_exact_mut(cols).enumerate() {
            let pos = (pos0 + i) as f64;
            let cs: Vec<(f32, f32)> = freqs.iter().map(|f| ((pos * f).cos() as f32, (pos * f).sin() as f32)).collect();
            for head in row.chunks_exact_mut(head_dim) {
                for (t, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = match kind {
                        RopeKind::Norm => (2 * t, 2 * t + 1),
                        RopeKind::Neox => (t, t + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * c - x1 * s;
                    head[b] = x0 * s + x1 * c;
                }
            }
        }
    }

    fn attention(&mut self, q: &Mat, k: &Mat, v: &Mat, pos0: usize, p: AttnParams) -> Result<Mat> {
        let kv_dim = p.n_head_kv * p.head_dim;
        let c = self
            .cache
            .get_mut(p.layer)
            .ok_or_else(|| Error::InvalidArgument(format!("layer {} has no cache", p.layer)))?;
        let cached = c.k.len() / kv_dim;
        if pos0 > cached {
            return Err(Error::InvalidArgument(format!("position {pos0} skips past the {cached} cached positions")));
        }
        // Re-evaluating from an earlier position drops what followed it.
        c.k.truncate(pos0 * kv_dim);
        c.v.truncate(pos0 * kv_dim);
        c.k.extend_from_slice(&k.data);
        c.v.extend_from_slice(&v.data);
        let visible = |i: usize| {
            let pos = pos0 + i;
            (p.window.map_or(0, |w| (pos + 1).saturating_sub(w)), pos)
        };
        Ok(attend_rows(q, &c.k, &c.v, &p, visible))
    }

    fn swiglu(&mut self, gate: &Mat, up: &Mat) -> Mat {
        let data = gate.data.iter().zip(&up.data).map(|(g, u)| silu(*g) * u).collect();
        Mat { rows: gate.rows, cols: gate.cols, data }
    }

    fn geglu(&mut self, gate: &Mat, up: &Mat) -> Mat {
        let data = gate.data.iter().zip(&up.data).map(|(g, u)| gelu_tanh(*g) * u).collect();
        Mat { rows: gate.rows, cols: gate.cols, data }
    }

    fn add(&mut self, x: &mut Mat, y: Mat) {
        x.data.iter_mut().zip(&y.data).for_each(|(a, b)| *a += b);
    }

    fn rows(&mut self, x: &Mat, rows: std::ops::Range<usize>) -> Mat {
        Mat { rows: rows.len(), cols: x.cols, data: x.data[rows.start * x.cols..rows.end * x.cols].to_vec() }
    }
}

impl EncoderOps for RefF32 {
    fn add_bias(&mut self, x: &mut Mat, b: &F32Weight) {
        for row in x.data.chunks_exact_mut(x.cols) {
            row.iter_mut().zip(&b.data).for_each(|(v, b)| *v += b);
        }
    }

    fn layer_norm(&mut self, x: &Mat, w: &F32Weight, b: &F32Weight, eps: f32) -> Mat {
        let mut y = x.clone();
        let n = x.cols as f32;
        for row in y.data.chunks_exact_mut(x.cols) {
            let mean = row.iter().sum::<f32>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let r = 1.0 / (var + eps).sqrt();
            for ((v, wv), bv) in row.iter_mut().zip(&w.data).zip(&b.data) {
                *v = (*v - mean) * r * wv + bv;
            }
        }
        y
    }

    fn gelu(&mut self, x: &Mat) -> Mat {
        let data = x.data.iter().map(|&v| 0.5 * v * (1.0 + libm::erff(v * std::f32::consts::FRAC_1_SQRT_2))).collect();
        Mat { rows: x.rows, cols: x.cols, data }
    }

    fn attention_segments(&mut self, q: &Mat, k: &Mat, v: &Mat, segs: &[Range<usize>], p: AttnParams) -> Result<Mat> {
        check_segments(segs, q.rows)?;
        let mut of_row = vec![0; q.rows];
        for (si, s) in segs.iter().enumerate() {
            of_row[s.clone()].fill(si);
        }
        Ok(attend_rows(q, &k.data, &v.data, &p, |i| (segs[of_row[i]].start, segs[of_row[i]].end - 1)))
    }

    fn mean_pool_l2(&mut self, x: &Mat, segs: &[Range<usize>]) -> Mat {
        let mut out = Mat::zeros(segs.len(), x.cols);
        for (o, s) in out.data.chunks_exact_mut(x.cols).zip(segs) {
            for r in s.clone() {
                o.iter_mut().zip(x.row(r)).for_each(|(a, v)| *a += v / s.len() as f32);
            }
            let norm = o.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            o.iter_mut().for_each(|v| *v /= norm);
        }
        out
    }
}
