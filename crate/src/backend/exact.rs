//! The exact CPU implementation of [`Ops`]: integer-only arithmetic from
//! [`crate::numerics`], weights kept as their GGUF quantized values. Its results
//! are the bits every other exact backend must reproduce (see `docs/NUMERICS.md`).

use crate::error::{Error, Result};
use crate::gguf::{SharedBytes, TensorView};
use crate::model::{AttnParams, Config, Ops, RopeKind};
use crate::numerics::{
    align_terms, bitlen, f16_parts, f32_const, f32_parts, gated_mant, gelu_arg, normalize, quantize_block_scaled,
    rope_cos_sin, rshr, rsqrt, shl, sigmoid_q16, silu_arg,
};
use crate::quant::{scale_min_k4, TensorType};
use attention::{attend_rows, attention_checked, LayerCache};
use batched::{matmul, matmuls, CHUNK};
use rayon::prelude::*;
use std::collections::HashMap;
use widen::Widened;

mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod batched;
mod encoder;
mod rowdot;
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
mod v128;
mod widen;

/// Activations: each row is i32 mantissas and one exponent, value = m · 2^e.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IMat {
    pub rows: usize,
    pub cols: usize,
    pub m: Vec<i32>,
    pub e: Vec<i32>,
}

impl IMat {
    pub fn zeros(rows: usize, cols: usize) -> IMat {
        IMat { rows, cols, m: vec![0; rows * cols], e: vec![0; rows] }
    }
    pub fn row(&self, i: usize) -> &[i32] {
        &self.m[i * self.cols..(i + 1) * self.cols]
    }
    /// The values as f64 (exact: mantissas have at most 31 bits), for measurements only.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.rows).flat_map(|i| self.row(i).iter().map(move |&m| ldexp(m as f64, self.e[i]))).collect()
    }
    /// The values as f32: exact for 24-bit mantissas within f32's exponent range.
    pub fn to_f32(&self) -> Vec<f32> {
        // Each value through its exact f64 (logits are up to 10^7 values): one scale per row,
        // in a loop compiled for AVX2 too.
        #[inline(always)]
        fn body(x: &IMat) -> Vec<f32> {
            let mut out = Vec::with_capacity(x.m.len());
            for i in 0..x.rows {
                let e = x.e[i];
                match pow2(e) {
                    // ldexp's own multiply.
                    Some(s) => out.extend(x.row(i).iter().map(|&m| (m as f64 * s) as f32)),
                    None => out.extend(x.row(i).iter().map(|&m| ldexp(m as f64, e) as f32)),
                }
            }
            out
        }
        let x = self;
        with_avx2!(body(x: &IMat) -> Vec<f32>)
    }
    /// Index of the largest value of row `i` (one exponent per row: compares mantissas); ties to the lowest.
    pub fn argmax_row(&self, i: usize) -> Option<u32> {
        let r = self.row(i);
        (0..r.len()).max_by(|&a, &b| r[a].cmp(&r[b]).then(b.cmp(&a))).map(|j| j as u32)
    }
}

/// Scales of one 32-element weight block: element k is
/// `a[k / 16] · q_k · 2^ea + b · 2^eb` (the two halves differ only for Q6_K).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockScale {
    pub a: [i32; 2],
    pub ea: i32,
    pub b: i32,
    pub eb: i32,
}

/// A weight matrix `[rows, cols]` in integer form.
pub enum MatrixData {
    /// Quantized types: the GGUF blocks themselves, shared with the file (no copy),
    /// decoded into int8 values and [`BlockScale`]s block by block as they are used.
    Blocks { ty: TensorType, raw: SharedBytes },
    /// F16 / F32: each element its own mantissa and exponent.
    Elems { m: Vec<i32>, e: Vec<i32> },
}

pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: MatrixData,
    /// The largest exponent of any scale (or element): fixes the matmul accumulator grid.
    pub max_exp: i32,
    /// The rows widened for batches, [`CHUNK`] rows a piece, when kept ([`ExactWeight::keep_widened`]).
    widened: Option<Vec<Widened>>,
}

/// A weight in the exact backend's representation.
pub enum ExactWeight {
    Matrix(Matrix),
    /// A 1-D weight (norms): mantissas with |m| < 2^30 and one shared exponent.
    Vector {
        m: Vec<i32>,
        e: i32,
    },
}

/// Longest matrix row (and norm group): keeps every i64 accumulator below 2^62.
pub const MAX_COLS: usize = 16_384;

fn bad(t: &TensorView, msg: impl Into<String>) -> Error {
    Error::BadTensor { name: t.info.name.clone(), msg: msg.into() }
}

/// Decode one GGUF block into int8 values and its 32-element scales; `None` on an Inf/NaN scale.
fn decode_block(ty: TensorType, b: &[u8], q: &mut [i8], sc: &mut [BlockScale]) -> Option<()> {
    block_scales(ty, b, sc)?;
    block_values(ty, b, q);
    Some(())
}

/// One GGUF block's 32-element scales; `None` on an Inf/NaN scale.
fn block_scales(ty: TensorType, b: &[u8], sc: &mut [BlockScale]) -> Option<()> {
    let f16 = |i: usize| f16_parts(u16::from_le_bytes([b[i], b[i + 1]]));
    let plain = |(m, e): (i32, i32)| BlockScale { a: [m, m], ea: e, b: 0, eb: e };
    let with_min = |(m, e): (i32, i32), (mm, me): (i32, i32)| BlockScale { a: [m, m], ea: e, b: mm, eb: me };
    match ty {
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => sc[0] = plain(f16(0)?),
        TensorType::Q4_1 | TensorType::Q5_1 => sc[0] = with_min(f16(0)?, f16(2)?),
        TensorType::Q4K | TensorType::Q5K => {
            let ((dm, de), (mm, me)) = (f16(0)?, f16(2)?);
            for (j, s) in sc.iter_mut().enumerate().take(8) {
                let (sv, mn) = scale_min_k4(j, &b[4..16]);
                let a = dm * sv as i32;
                *s = BlockScale { a: [a, a], ea: de, b: -(mm * mn as i32), eb: me };
            }
        }
        TensorType::Q6K => {
            let (dm, de) = f16(208)?;
            for (j, s) in sc.iter_mut().enumerate().take(8) {
                let (h, r) = (j / 4, j % 4);
                let a = |k: usize| dm * b[192 + 8 * h + 2 * r + k] as i8 as i32;
                *s = BlockScale { a: [a(0), a(1)], ea: de, b: 0, eb: de };
            }
        }
        TensorType::F32 | TensorType::F16 => unreachable!("element types are not blocks"),
    }
    Some(())
}

/// A decoded value's type: `i8` and `i16` (the batched matmul's widened form) take the value q,
/// the stored bits less the type's offset; `u8` takes the stored bits, q plus the offset (the
/// batched matmul's byte form).
trait Quant: Copy {
    fn of(stored: u8, off: u8) -> Self;
}

impl Quant for i8 {
    #[inline(always)]
    fn of(stored: u8, off: u8) -> i8 {
        stored.wrapping_sub(off) as i8
    }
}

impl Quant for i16 {
    #[inline(always)]
    fn of(stored: u8, off: u8) -> i16 {
        stored.wrapping_sub(off) as i8 as i16
    }
}

impl Quant for u8 {
    #[inline(always)]
    fn of(stored: u8, _: u8) -> u8 {
        stored
    }
}

/// What type `ty` stores for a value q: `q + value_offset(ty)` (Q8_0 stores int8).
fn value_offset(ty: TensorType) -> u8 {
    match ty {
        TensorType::Q4_0 => 8,
        TensorType::Q5_0 => 16,
        TensorType::Q6K => 32,
        _ => 0,
    }
}

/// One GGUF block's values (`q`: `ty.block_len()` of them) as int8, widened to i16, or as
/// stored ([`Quant`]): one loop per type over fixed-size views, which the compiler vectorizes.
#[inline(always)]
fn block_values<T: Quant>(ty: TensorType, b: &[u8], q: &mut [T]) {
    let off = value_offset(ty);
    let v = |x: u8| T::of(x, off);
    match ty {
        TensorType::Q4_0 | TensorType::Q4_1 => {
            let at = if ty == TensorType::Q4_0 { 2 } else { 4 };
            let (Some(qs), Some(q)) = (b[at..].first_chunk::<16>(), q.first_chunk_mut::<32>()) else { return };
            for j in 0..16 {
                q[j] = v(qs[j] & 0xF);
                q[j + 16] = v(qs[j] >> 4);
            }
        }
        TensorType::Q5_0 | TensorType::Q5_1 => {
            let min = ty == TensorType::Q5_1;
            let at = if min { 4 } else { 2 };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let (Some(qs), Some(q)) = (b[at + 4..].first_chunk::<16>(), q.first_chunk_mut::<32>()) else { return };
            for j in 0..16 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                q[j] = v((qs[j] & 0xF) | h0);
                q[j + 16] = v((qs[j] >> 4) | h1);
            }
        }
        TensorType::Q8_0 => {
            let (Some(qs), Some(q)) = (b[2..].first_chunk::<32>(), q.first_chunk_mut::<32>()) else { return };
            for j in 0..32 {
                q[j] = v(qs[j]);
            }
        }
        TensorType::Q4K | TensorType::Q5K => {
            let five = ty == TensorType::Q5K;
            let at = if five { 48 } else { 16 };
            let (Some(qs), Some(q)) = (b[at..].first_chunk::<128>(), q.first_chunk_mut::<256>()) else { return };
            let qh = if five { b[16..].first_chunk::<32>() } else { None };
            for g in 0..4 {
                for l in 0..32 {
                    let byte = qs[32 * g + l];
                    let (mut lo, mut hi) = (byte & 0xF, byte >> 4);
                    if let Some(qh) = qh {
                        lo |= ((qh[l] >> (2 * g)) & 1) << 4;
                        hi |= ((qh[l] >> (2 * g + 1)) & 1) << 4;
                    }
                    q[64 * g + l] = v(lo);
                    q[64 * g + 32 + l] = v(hi);
                }
            }
        }
        TensorType::Q6K => {
            let (Some(ql), Some(qh), Some(q)) =
                (b.first_chunk::<128>(), b[128..].first_chunk::<64>(), q.first_chunk_mut::<256>())
            else {
                return;
            };
            for j in 0..8 {
                let (h, r) = (j / 4, j % 4);
                for l in 0..32 {
                    let lo = ql[64 * h + l + 32 * (r % 2)];
                    let lo = if r >= 2 { lo >> 4 } else { lo & 0xF };
                    let hi = (qh[32 * h + l] >> (2 * r)) & 3;
                    q[32 * j + l] = v(lo | (hi << 4));
                }
            }
        }
        TensorType::F32 | TensorType::F16 => unreachable!("element types are not blocks"),
    }
}

/// Decode every block once: validates the scales (`None` on an Inf/NaN) and finds the
/// largest scale exponent (0 for no blocks).
fn blocks_max_exp(ty: TensorType, data: &[u8]) -> Option<i32> {
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    let (mut q, mut sc) = ([0i8; 256], [BlockScale::default(); 8]);
    let mut max_exp = i32::MIN;
    for b in data.chunks_exact(bb) {
        decode_block(ty, b, &mut q[..bl], &mut sc[..bl / 32])?;
        max_exp = sc[..bl / 32].iter().fold(max_exp, |m, s| m.max(s.ea).max(s.eb));
    }
    Some(if max_exp == i32::MIN { 0 } else { max_exp })
}

impl Matrix {
    fn from_view(t: &TensorView) -> Result<Matrix> {
        let (rows, cols, ty) = (t.info.n_rows(), t.info.row_len(), t.info.ty);
        let n = rows * cols;
        let data = match ty {
            TensorType::F32 | TensorType::F16 => {
                let bb = ty.block_bytes();
                let mut m = Vec::with_capacity(n);
                let mut e = Vec::with_capacity(n);
                for c in t.data.chunks_exact(bb) {
                    let p = if ty == TensorType::F32 {
                        f32_parts(u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    } else {
                        f16_parts(u16::from_le_bytes([c[0], c[1]]))
                    };
                    let (pm, pe) = p.ok_or_else(|| bad(t, "Inf or NaN element"))?;
                    m.push(pm);
                    e.push(pe);
                }
                MatrixData::Elems { m, e }
            }
            _ => {
                let max_exp = blocks_max_exp(ty, t.data).ok_or_else(|| bad(t, "Inf or NaN block scale"))?;
                return Ok(Matrix {
                    rows,
                    cols,
                    data: MatrixData::Blocks { ty, raw: t.shared() },
                    max_exp,
                    widened: None,
                });
            }
        };
        let max_exp = match &data {
            MatrixData::Elems { e, .. } => e.iter().copied().max(),
            MatrixData::Blocks { .. } => None,
        };
        Ok(Matrix { rows, cols, data, max_exp: max_exp.unwrap_or(0), widened: None })
    }

    /// GGUF block `g` of row `r`, decoded: int8 values and one scale per 32 elements.
    /// Blocks were validated at load, so a scale that fails to decode cannot occur; it reads as zero.
    fn block(
        &self,
        ty: TensorType,
        raw: &[u8],
        r: usize,
        g: usize,
        q: &mut [i8; 256],
        sc: &mut [BlockScale; 8],
    ) -> usize {
        let (bl, bb) = (ty.block_len(), ty.block_bytes());
        let at = (r * (self.cols / bl) + g) * bb;
        if decode_block(ty, &raw[at..at + bb], &mut q[..bl], &mut sc[..bl / 32]).is_none() {
            q[..bl].fill(0);
        }
        bl
    }

    /// Row `r` as terms per element (value = sum of mantissa · 2^exponent).
    fn row_terms(&self, r: usize) -> Vec<[(i64, i32); 2]> {
        let c = self.cols;
        match &self.data {
            MatrixData::Blocks { ty, raw } => {
                let (mut q, mut sc) = ([0i8; 256], [BlockScale::default(); 8]);
                let mut terms = Vec::with_capacity(c);
                for g in 0..c / ty.block_len() {
                    let bl = self.block(*ty, raw, r, g, &mut q, &mut sc);
                    terms.extend((0..bl).map(|k| {
                        let s = &sc[k / 32];
                        [(s.a[(k % 32) / 16] as i64 * q[k] as i64, s.ea), (s.b as i64, s.eb)]
                    }));
                }
                terms
            }
            MatrixData::Elems { m, e } => (0..c).map(|k| [(m[r * c + k] as i64, e[r * c + k]), (0, 0)]).collect(),
        }
    }
}

impl ExactWeight {
    /// Convert a GGUF tensor: 1-D tensors become norm vectors, others matrices.
    pub fn from_view(t: TensorView) -> Result<ExactWeight> {
        let cols = t.info.row_len();
        if cols > MAX_COLS {
            return Err(bad(&t, format!("rows of {cols} exceed the exact mode's {MAX_COLS}")));
        }
        let is_vector = t.info.dims.len() == 1;
        if !is_vector && !cols.is_multiple_of(32) {
            return Err(bad(&t, format!("rows of {cols} are not whole blocks of 32")));
        }
        let mat = Matrix::from_view(&t)?;
        if is_vector {
            let mut m = vec![0i32; cols];
            let e = align_terms(&mat.row_terms(0), 30, &mut m);
            return Ok(ExactWeight::Vector { m, e });
        }
        Ok(ExactWeight::Matrix(mat))
    }

    /// Keep a quantized matrix's rows widened for batches (i16 or byte values and f64 scales,
    /// about 2.5 or 1.5 bytes per weight) instead of widening them again in every batched
    /// product: for small models that embed short texts, where widening would cost more than
    /// the products.
    pub fn keep_widened(&mut self) {
        if let ExactWeight::Matrix(m) = self {
            if let MatrixData::Blocks { ty, raw } = &m.data {
                let row_bytes = m.cols / ty.block_len() * ty.block_bytes();
                let pieces = raw
                    .chunks(CHUNK * row_bytes)
                    .map(|rows| {
                        let mut w = Widened::default();
                        w.fill(*ty, rows, row_bytes);
                        w
                    })
                    .collect();
                m.widened = Some(pieces);
            }
        }
    }

    fn matrix(&self) -> &Matrix {
        match self {
            ExactWeight::Matrix(m) => m,
            ExactWeight::Vector { .. } => panic!("a 1-D weight used as a matrix"),
        }
    }

    fn vector(&self) -> (&[i32], i32) {
        match self {
            ExactWeight::Vector { m, e } => (m, *e),
            ExactWeight::Matrix(_) => panic!("a matrix used as a norm weight"),
        }
    }
}

/// Rows quantized to int8 in blocks of at most 32 (per `seg`-wide segment), with block exponents.
struct QRows {
    q: Vec<i8>,
    /// Block exponents: row exponent + block shift − 7.
    e: Vec<i32>,
    /// Block integer scales: a block's values are `q · s · 2^e`.
    s: Vec<i32>,
    /// Block sums of q (for the min terms).
    sum: Vec<i32>,
    /// Per row, the largest block exponent.
    emax: Vec<i32>,
    /// Blocks per row.
    nb: usize,
}

/// `f(i, mantissas, exponent)` on each row of `out`: on rayon's threads for a batch, inline for
/// one row (a decode step, where handing a row to the pool costs more than it saves). Rows are
/// independent, so the bits do not depend on which thread does which.
fn each_row(out: &mut IMat, f: impl Fn(usize, &mut [i32], &mut i32) + Sync + Send) {
    if out.cols == 0 {
        return;
    }
    if out.rows > 1 {
        out.m.par_chunks_mut(out.cols).zip(out.e.par_iter_mut()).enumerate().for_each(|(i, (m, e))| f(i, m, e));
    } else {
        out.m.chunks_mut(out.cols).zip(out.e.iter_mut()).enumerate().for_each(|(i, (m, e))| f(i, m, e));
    }
}

/// Rows quantized to scaled int8 blocks ([`quantize_block_scaled`]) of 32 within each
/// `seg`-wide segment (the matmul's whole row, attention's heads).
fn quantize_rows(x: &IMat, seg: usize) -> QRows {
    let nbs = seg.div_ceil(32);
    let nb = x.cols / seg * nbs;
    let mut r = QRows {
        q: vec![0; x.m.len()],
        e: vec![0; x.rows * nb],
        s: vec![1; x.rows * nb],
        sum: vec![0; x.rows * nb],
        emax: vec![0; x.rows],
        nb,
    };
    if x.cols == 0 || nb == 0 {
        return r;
    }
    let row = |i: usize, out: QRow| quantize_row(x.row(i), x.e[i], seg, out);
    let cols = x.cols;
    if x.rows > 1 {
        (
            r.q.par_chunks_mut(cols),
            r.e.par_chunks_mut(nb),
            r.s.par_chunks_mut(nb),
            r.sum.par_chunks_mut(nb),
            r.emax.par_iter_mut(),
        )
            .into_par_iter()
            .enumerate()
            .for_each(|(i, t)| row(i, t));
    } else {
        let rows = r.q.chunks_mut(cols).zip(r.e.chunks_mut(nb)).zip(r.s.chunks_mut(nb)).zip(r.sum.chunks_mut(nb));
        for (i, ((((q, e), s), sum), emax)) in rows.zip(r.emax.iter_mut()).enumerate() {
            row(i, (q, e, s, sum, emax));
        }
    }
    r
}

/// One row's share of a [`QRows`]: values, block exponents, scales and sums, largest exponent.
type QRow<'a> = (&'a mut [i8], &'a mut [i32], &'a mut [i32], &'a mut [i32], &'a mut i32);

/// One row of [`quantize_rows`] (mantissas `xm` at exponent `xe`), compiled for AVX2 too,
/// where a block's quantization vectorizes.
fn quantize_row(xm: &[i32], xe: i32, seg: usize, out: QRow) {
    #[inline(always)]
    fn body(xm: &[i32], xe: i32, seg: usize, (q, e, s, sum, emax): QRow) {
        let mut b = 0;
        for (ms, qs) in xm.chunks(seg).zip(q.chunks_mut(seg)) {
            for (mb, qb) in ms.chunks(32).zip(qs.chunks_mut(32)) {
                let (t, sc) = quantize_block_scaled(mb, qb);
                s[b] = sc;
                e[b] = xe + t as i32 - 7;
                sum[b] = qb.iter().map(|&v| v as i32).sum();
                b += 1;
            }
        }
        *emax = e.iter().copied().max().unwrap_or(xe);
    }
    with_avx2!(body(xm: &[i32], xe: i32, seg: usize, out: QRow))
}

/// f16 bits to (mantissa, exponent) as [`f16_parts`], without branches: blocks were validated
/// at load, so there is no Inf or NaN here.
#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> (i32, i32) {
    let bits = u16::from_le_bytes([b[i], b[i + 1]]) as i32;
    let (e, frac) = ((bits >> 10) & 31, bits & 1023);
    let m = frac | ((e != 0) as i32) << 10;
    let neg = -(bits >> 15);
    ((m ^ neg) - neg, e.max(1) - 25)
}

/// `ldexp(m, e)`: for an exponent in f64's normal range one multiply by 2^e built from its
/// bits (the same result, one rounding of m·2^e), else the call.
#[inline(always)]
fn ldexp(m: f64, e: i32) -> f64 {
    match pow2(e) {
        Some(s) => m * s,
        None => libm::ldexp(m, e),
    }
}

/// 2^e as a normal f64, from its bits; `None` outside f64's normal exponents.
#[inline(always)]
fn pow2(e: i32) -> Option<f64> {
    (-1022..=1023).contains(&e).then(|| f64::from_bits(((e + 1023) as u64) << 52))
}

/// Per position, (cos, sin) in Q30 of each pair.
type RopeTable = Vec<Vec<(i32, i32)>>;

/// The exact op set, owning the KV cache and the RoPE tables built so far.
pub struct ExactOps {
    cache: Vec<LayerCache>,
    /// Keyed by (base bits, head size).
    rope: HashMap<(u32, usize), RopeTable>,
    /// The residual stream after each block, when recording.
    residuals: Option<Vec<IMat>>,
}

impl ExactOps {
    pub fn new(cfg: &Config) -> ExactOps {
        ExactOps {
            cache: (0..cfg.n_layer).map(|_| LayerCache::default()).collect(),
            rope: HashMap::new(),
            residuals: None,
        }
    }

    /// Ops with no KV cache: for encoders ([`crate::model::bert::EncoderOps`]).
    pub fn encoder() -> ExactOps {
        ExactOps { cache: Vec::new(), rope: HashMap::new(), residuals: None }
    }

    /// Keep the residual stream after each block from now on (see [`ExactOps::take_residuals`]).
    pub fn record_residuals(&mut self) {
        self.residuals.get_or_insert_with(Vec::new);
    }

    /// The residual streams recorded since the last call, one per block and forward pass, in order.
    pub fn take_residuals(&mut self) -> Vec<IMat> {
        self.residuals.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

/// The per-layer residual digest (`docs/NUMERICS.md`): SHA-256 over the tag, the layer, the
/// position of the first row, the row count and width, then per row its exponent and its
/// mantissas, all little-endian 32-bit. Rows `rows` of `x` sit at positions `pos..`.
pub fn residual_digest(layer: usize, pos: usize, x: &IMat, rows: std::ops::Range<usize>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((RESIDUAL_TAG.len() as u32).to_le_bytes());
    h.update(RESIDUAL_TAG);
    for v in [layer, pos, rows.len(), x.cols] {
        h.update((v as u32).to_le_bytes());
    }
    // Each row's bytes in one update: four bytes at a time cost more in the hasher's buffering
    // than in its compression.
    let mut bytes = Vec::with_capacity(4 * (x.cols + 1));
    for i in rows {
        bytes.clear();
        bytes.extend_from_slice(&x.e[i].to_le_bytes());
        bytes.extend(x.row(i).iter().flat_map(|m| m.to_le_bytes()));
        h.update(&bytes);
    }
    h.finalize().into()
}

/// Domain separation of [`residual_digest`].
pub const RESIDUAL_TAG: &[u8] = b"edgeproof residual v2";

impl Ops for ExactOps {
    type Act = IMat;
    type W = ExactWeight;

    /// Rows dequantized exactly (mantissa · q · 2^exp per term), summed on one grid, normalized.
    fn embed(&mut self, w: &ExactWeight, ids: &[u32]) -> Result<IMat> {
        let w = w.matrix();
        let mut x = IMat::zeros(ids.len(), w.cols);
        for (i, &t) in ids.iter().enumerate() {
            if t as usize >= w.rows {
                return Err(Error::InvalidArgument(format!("token id {t} is outside the vocabulary of {}", w.rows)));
            }
            x.e[i] = align_terms(
                &w.row_terms(t as usize),
                crate::numerics::ROW_BITS,
                &mut x.m[i * w.cols..(i + 1) * w.cols],
            );
        }
        Ok(x)
    }

    /// Mantissa times the f32's mantissa (exact product below 2^48), normalized.
    fn scale(&mut self, x: &mut IMat, s: f32) {
        let (sm, se) = f32_const(s).unwrap_or((0, 0));
        let cols = x.cols;
        for i in 0..x.rows {
            let acc: Vec<i64> = x.row(i).iter().map(|&m| m as i64 * sm as i64).collect();
            x.e[i] = normalize(&acc, x.e[i] + se, &mut x.m[i * cols..(i + 1) * cols]);
        }
    }

    /// Per group: S = Σm² (u64), mean = floor(S'/n) with S rescaled to 61 bits, plus eps on a
    /// common 61-bit grid, integer rsqrt; y = rshr(m·r, bitlen(max |m|) + 8)·w; groups aligned to
    /// the row's largest exponent (rshr), normalized.
    fn rms_norm(&mut self, x: &IMat, w: &ExactWeight, group: usize, eps: f32) -> IMat {
        let (wm, we) = w.vector();
        assert_eq!(wm.len(), group, "norm weight of {} for groups of {group}", wm.len());
        let (em, ee) = f32_const(eps).unwrap_or((0, 0));
        let mut out = IMat::zeros(x.rows, x.cols);
        each_row(&mut out, |i, om, oe| {
            let mut acc = vec![0i64; x.cols];
            let gexp: Vec<Option<i32>> = x
                .row(i)
                .chunks_exact(group)
                .zip(acc.chunks_exact_mut(group))
                .map(|(gm, ga)| rms_group(gm, x.e[i], group as u64, (em as i64, ee), Some((wm, we)), ga))
                .collect();
            let emax = gexp.iter().flatten().copied().max().unwrap_or(0);
            for (ga, ge) in acc.chunks_exact_mut(group).zip(&gexp) {
                if let Some(ge) = ge {
                    ga.iter_mut().for_each(|v| *v = shl(*v, ge - emax));
                }
            }
            *oe = normalize(&acc, emax, om);
        });
        out
    }

    fn matmul(&mut self, x: &IMat, w: &ExactWeight) -> IMat {
        matmul(x, w.matrix())
    }

    fn matmuls<const N: usize>(&mut self, x: &IMat, ws: [&ExactWeight; N]) -> [IMat; N] {
        matmuls(x, ws.map(|w| w.matrix()))
    }

    /// x·c − y·s and x·s + y·c with Q30 cos/sin, exact in i64 at exponent e − 30, normalized.
    fn rope(&mut self, x: &mut IMat, pos0: usize, head_dim: usize, base: f32, kind: RopeKind) {
        let table = self.rope.entry((base.to_bits(), head_dim)).or_default();
        while table.len() < pos0 + x.rows {
            table.push(rope_cos_sin(base, head_dim, table.len()));
        }
        let (half, table) = (head_dim / 2, &*table);
        each_row(x, |i, row, e| {
            let cs = &table[pos0 + i];
            let mut acc = vec![0i64; row.len()];
            for (h, ah) in row.chunks_exact(head_dim).zip(acc.chunks_exact_mut(head_dim)) {
                for (t, &(c, s)) in cs.iter().enumerate() {
                    let (a, b) = match kind {
                        RopeKind::Norm => (2 * t, 2 * t + 1),
                        RopeKind::Neox => (t, t + half),
                    };
                    let (x0, x1, c, s) = (h[a] as i64, h[b] as i64, c as i64, s as i64);
                    ah[a] = x0 * c - x1 * s;
                    ah[b] = x0 * s + x1 * c;
                }
            }
            *e = normalize(&acc, *e - 30, row);
        });
    }

    fn attention(&mut self, q: &IMat, k: &IMat, v: &IMat, pos0: usize, p: AttnParams) -> Result<IMat> {
        let scale = attention_checked(&p)?;
        let c = self
            .cache
            .get_mut(p.layer)
            .ok_or_else(|| Error::InvalidArgument(format!("layer {} has no cache", p.layer)))?;
        let (hd, kv_dim) = (p.head_dim, p.n_head_kv * p.head_dim);
        let cached = c.kq.len() / kv_dim;
        if pos0 > cached {
            return Err(Error::InvalidArgument(format!("position {pos0} skips past the {cached} cached positions")));
        }
        // Re-evaluating from an earlier position drops what followed it.
        let kv_blocks = p.n_head_kv * hd.div_ceil(32);
        c.kq.truncate(pos0 * kv_dim);
        c.vq.truncate(pos0 * kv_dim);
        for blocks in [&mut c.ke, &mut c.ks, &mut c.ve, &mut c.vs] {
            blocks.truncate(pos0 * kv_blocks);
        }
        c.append(k, v, hd);
        let visible = |i: usize| {
            let pos = pos0 + i;
            (p.window.map_or(0, |w| (pos + 1).saturating_sub(w)), pos)
        };
        Ok(attend_rows(q, c, &p, scale, visible))
    }

    /// silu(g) (mantissa units of g) times u's mantissa, at exponent e_g + e_u, normalized.
    fn swiglu(&mut self, gate: &IMat, up: &IMat) -> IMat {
        gated(gate, up, silu_arg)
    }

    fn geglu(&mut self, gate: &IMat, up: &IMat) -> IMat {
        gated(gate, up, gelu_arg)
    }

    /// Both rows on the grid 32 bits below the larger exponent (exact unless the exponents differ
    /// by more than 32, then rshr), summed, normalized. An all-zero row adds nothing.
    fn add(&mut self, x: &mut IMat, y: IMat) {
        each_row(x, |i, xr, xe| {
            let yr = y.row(i);
            if yr.iter().all(|&v| v == 0) {
                return;
            }
            if xr.iter().all(|&v| v == 0) {
                xr.copy_from_slice(yr);
                *xe = y.e[i];
                return;
            }
            add_on_grid(xr, xe, yr, y.e[i]);
        });
    }

    fn residual(&mut self, _layer: usize, x: &IMat) {
        if let Some(r) = &mut self.residuals {
            r.push(x.clone());
        }
    }

    fn rows(&mut self, x: &IMat, rows: std::ops::Range<usize>) -> IMat {
        IMat {
            rows: rows.len(),
            cols: x.cols,
            m: x.m[rows.start * x.cols..rows.end * x.cols].to_vec(),
            e: x.e[rows].to_vec(),
        }
    }
}

/// One RMSNorm group `gm` (exponent `e`) into `ga`: S = Σm² (u64), mean = floor(S'/n) with S
/// rescaled to 61 bits, plus `eps` on a common 61-bit grid, integer rsqrt; `rshr(m·r,
/// bitlen(max |m|) + 8)`, times the weight's mantissa when there is one. Returns the group's
/// exponent, `None` (and zeros) when the mean and eps are both 0. `n` 1 and no eps is the L2 norm.
fn rms_group(
    gm: &[i32],
    e: i32,
    n: u64,
    (em, ee): (i64, i32),
    w: Option<(&[i32], i32)>,
    ga: &mut [i64],
) -> Option<i32> {
    let s: u64 = gm.iter().map(|&m| (m as i64 * m as i64) as u64).sum();
    let s1 = bitlen(s) as i32 - 61;
    let mean = (shl(s as i64, -s1) as u64 / n) as i64;
    let terms = [(mean, 2 * e + s1), (em, ee)];
    let top = terms.iter().filter(|t| t.0 != 0).map(|&(m, x)| x + bitlen(m as u64) as i32).max();
    let Some(top) = top else {
        ga.iter_mut().for_each(|v| *v = 0);
        return None;
    };
    let grid = top - 61;
    let v: i64 = terms.iter().map(|&(m, x)| shl(m, x - grid)).sum();
    let (r, re) = rsqrt(v as u64, grid);
    // Keep 24 bits of the group's largest m·r (< 2^(bits + 32)), however small the group.
    let gmax = gm.iter().map(|m| m.unsigned_abs()).max().unwrap_or(0);
    let sh = bitlen(gmax as u64) + 8;
    match w {
        Some((wm, we)) => {
            for ((a, &m), &wv) in ga.iter_mut().zip(gm).zip(wm) {
                *a = rshr(m as i64 * r as i64, sh) * wv as i64;
            }
            Some(e + re + sh as i32 + we)
        }
        None => {
            for (a, &m) in ga.iter_mut().zip(gm) {
                *a = rshr(m as i64 * r as i64, sh);
            }
            Some(e + re + sh as i32)
        }
    }
}

/// `x += y` for rows with mantissas below 2^30: both on the grid 32 bits below the larger
/// exponent (exact unless the exponents differ by more than 32, then rshr), summed, normalized.
fn add_on_grid(xr: &mut [i32], xe: &mut i32, yr: &[i32], ye: i32) {
    let g = (*xe).max(ye) - 32;
    let acc: Vec<i64> = xr.iter().zip(yr).map(|(&a, &b)| shl(a as i64, *xe - g) + shl(b as i64, ye - g)).collect();
    *xe = normalize(&acc, g, xr);
}

fn gated(gate: &IMat, up: &IMat, arg: impl Fn(i32, i32) -> i64 + Sync + Send) -> IMat {
    let mut out = IMat::zeros(gate.rows, gate.cols);
    each_row(&mut out, |i, om, oe| {
        let eg = gate.e[i];
        // The sigmoids' arguments, then the sigmoids in place (four at a time with AVX2).
        let mut acc: Vec<i64> = gate.row(i).iter().map(|&g| arg(g, eg)).collect();
        sigmoids(&mut acc);
        for ((a, &g), &u) in acc.iter_mut().zip(gate.row(i)).zip(up.row(i)) {
            *a = gated_mant(g, *a) * u as i64;
        }
        *oe = normalize(&acc, eg + up.e[i], om);
    });
    out
}

/// `v[i] = sigmoid_q16(v[i])`: the AVX2 kernel where the CPU has it (the same integers).
fn sigmoids(v: &mut [i64]) {
    #[cfg(target_arch = "x86_64")]
    let v = avx2::sigmoids(v);
    v.iter_mut().for_each(|y| *y = sigmoid_q16(*y));
}

#[cfg(test)]
mod tests {
    use super::*;

    // `assert_same` and `i16s` serve the submodules' tests too.

    /// Panics at the first index where `got` (the vector kernels) and `want` (the portable
    /// ones) differ.
    pub(super) fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
            panic!("{what}: first difference at index {i}: vector {:?}, scalar {:?}", got[i], want[i]);
        }
    }

    /// Seeded random i16 values in `-lim..=lim`.
    pub(super) fn i16s(rng: &mut crate::tiny::SplitMix64, n: usize, lim: i16) -> Vec<i16> {
        (0..n).map(|_| (rng.next_u64() % (2 * lim as u64 + 1)) as i16 - lim).collect()
    }

    /// `to_f32`'s row scale gives each value's `ldexp(m, e) as f32`, bit for bit, from the
    /// subnormal and overflowing ends of f32 (and past f64's normal range) to ordinary rows.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn to_f32_equals_ldexp_per_value() {
        let mut rng = crate::tiny::SplitMix64(29);
        let es = [-1100, -1060, -1022, -200, -170, -150, -40, 0, 90, 100, 1023, 1030];
        let mut x = IMat::zeros(es.len(), 37);
        x.e.copy_from_slice(&es);
        x.m.iter_mut().for_each(|m| *m = (rng.next_u64() as i32) >> (rng.next_u64() % 31));
        let want: Vec<u32> = (0..x.rows)
            .flat_map(|i| x.row(i).iter().map(move |&m| (ldexp(m as f64, es[i]) as f32).to_bits()))
            .collect();
        let got: Vec<u32> = x.to_f32().iter().map(|v| v.to_bits()).collect();
        assert_same("to_f32", &got, &want);
    }

    /// [`sigmoids`] (four lanes at a time with AVX2) equals [`sigmoid_q16`] on every argument
    /// inside the saturation and on random ones beyond it, in slices that leave each remainder.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn sigmoids_equal_sigmoid_q16_on_the_whole_domain() {
        use crate::numerics::SIGMOID_SAT_Q16;
        let mut rng = crate::tiny::SplitMix64(9);
        let far = (0..4096).map(|_| (rng.next_u64() as i64) >> (rng.next_u64() % 40 + 20));
        let ys: Vec<i64> = (-SIGMOID_SAT_Q16 - 64..=SIGMOID_SAT_Q16 + 64).chain(far).collect();
        let want: Vec<i64> = ys.iter().map(|&y| sigmoid_q16(y)).collect();
        for cut in [0, 1, 2, 3] {
            let mut got = ys[cut..].to_vec();
            sigmoids(&mut got);
            assert_same(&format!("sigmoids from {cut}"), &got, &want[cut..]);
        }
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn f16_at_equals_f16_parts_on_every_finite_value() {
        for bits in 0..=u16::MAX {
            if let Some(want) = f16_parts(bits) {
                assert_eq!(f16_at(&bits.to_le_bytes(), 0), want, "f16 bits {bits:#06x}");
            }
        }
    }
}
