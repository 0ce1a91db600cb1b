//! The exact CPU implementation of [`Ops`]: integer-only arithmetic from
//! [`crate::numerics`], weights kept as their GGUF quantized values. Its results
//! are the bits every other exact backend must reproduce (see `docs/NUMERICS.md`).

use crate::error::{Error, Result};
use crate::gguf::{SharedBytes, TensorView};
use crate::model::{AttnParams, Config, Ops, RopeKind};
use crate::numerics::{
    align_terms, attention_scale, bitlen, dot_i8, exp2_q20, f16_parts, f32_const, f32_parts, gelu_mant, normalize,
    quantize_block_scaled, rope_cos_sin, rshr, rsqrt, shl, silu_mant, LOG2E_Q30,
};
use crate::quant::{scale_min_k4, TensorType};
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

#[cfg(target_arch = "x86_64")]
mod avx2;
mod encoder;

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
        self.to_f64().into_iter().map(|v| v as f32).collect()
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

/// One GGUF block's values (`q`: `ty.block_len()` of them) as int8, or widened (the batched
/// matmul's i16): one loop per type over fixed-size views, which the compiler vectorizes.
fn block_values<T: From<i8> + Copy>(ty: TensorType, b: &[u8], q: &mut [T]) {
    let v = |x: u8| T::from(x as i8);
    match ty {
        TensorType::Q4_0 | TensorType::Q4_1 => {
            let (off, at) = if ty == TensorType::Q4_0 { (8, 2) } else { (0, 4) };
            let (Some(qs), Some(q)) = (b[at..].first_chunk::<16>(), q.first_chunk_mut::<32>()) else { return };
            for j in 0..16 {
                q[j] = v((qs[j] & 0xF).wrapping_sub(off));
                q[j + 16] = v((qs[j] >> 4).wrapping_sub(off));
            }
        }
        TensorType::Q5_0 | TensorType::Q5_1 => {
            let min = ty == TensorType::Q5_1;
            let at = if min { 4 } else { 2 };
            let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let (Some(qs), Some(q)) = (b[at + 4..].first_chunk::<16>(), q.first_chunk_mut::<32>()) else { return };
            let off = if min { 0 } else { 16 };
            for j in 0..16 {
                let h0 = (((qh >> j) << 4) & 0x10) as u8;
                let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                q[j] = v(((qs[j] & 0xF) | h0).wrapping_sub(off));
                q[j + 16] = v(((qs[j] >> 4) | h1).wrapping_sub(off));
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
                    q[32 * j + l] = v((lo | (hi << 4)).wrapping_sub(32));
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
    /// about 2.5 or 1.5 bytes per weight) instead of widening them again in every batched product: for small
    /// models that embed short texts, where widening would cost more than the products.
    pub fn keep_widened(&mut self) {
        if let ExactWeight::Matrix(m) = self {
            if let MatrixData::Blocks { ty, raw } = &m.data {
                let row_bytes = m.cols / ty.block_len() * ty.block_bytes();
                let pieces = raw
                    .chunks(CHUNK * row_bytes)
                    .map(|rows| {
                        let mut w = Widened::default();
                        w.fill(*ty, rows);
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
    let row = |i: usize, (q, e, s, sum, emax): (&mut [i8], &mut [i32], &mut [i32], &mut [i32], &mut i32)| {
        let mut b = 0;
        for (ms, qs) in x.row(i).chunks(seg).zip(q.chunks_mut(seg)) {
            for (mb, qb) in ms.chunks(32).zip(qs.chunks_mut(32)) {
                let (t, sc) = quantize_block_scaled(mb, qb);
                s[b] = sc;
                e[b] = x.e[i] + t as i32 - 7;
                sum[b] = qb.iter().map(|&v| v as i32).sum();
                b += 1;
            }
        }
        *emax = e.iter().copied().max().unwrap_or(x.e[i]);
    };
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

/// One sub-block's terms: `t1` at the scale exponent `e1` and the min term `t2` at `e2`
/// (both before adding the x block exponent).
#[derive(Clone, Copy, Default)]
struct Terms {
    t1: i64,
    e1: i32,
    t2: i64,
    e2: i32,
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

/// 128-bit lane operations for the kernels in [`dots`], [`grid4`] and [`dots4_v128`], which are
/// written once over them: SSE2 here on x86_64 (part of the architecture), simd128 on wasm32
/// (the build enables it, `.cargo/config.toml`). Each helper is the same lane operation on
/// both: integer lanes wrap alike, and the f64 ones are single IEEE operations, correctly
/// rounded, with no fused multiply-add on either architecture; so both give the same bits.
#[cfg(target_arch = "x86_64")]
mod v128 {
    use std::arch::x86_64::*;

    /// Integer lanes (i8, i16, i32 or i64, as the operation reads them).
    pub type I = __m128i;
    /// Two f64 lanes.
    pub type F = __m128d;

    /// The 16 bytes at element `at` of `a` (unaligned).
    #[inline(always)]
    pub fn load<T: Copy, const N: usize>(a: &[T; N], at: usize) -> I {
        let s = &a[at..at + 16 / size_of::<T>()];
        // SAFETY: `s` holds 16 bytes (the slice above is bounds-checked).
        unsafe { _mm_loadu_si128(s.as_ptr() as *const I) }
    }

    /// Elements `at`, `at + 1` of `a`.
    #[inline(always)]
    pub fn load_f<const N: usize>(a: &[f64; N], at: usize) -> F {
        let s = &a[at..at + 2];
        // SAFETY: `s` holds two f64.
        unsafe { _mm_loadu_pd(s.as_ptr()) }
    }

    #[inline(always)]
    pub fn zero() -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setzero_si128() }
    }

    #[inline(always)]
    pub fn splat8(v: i8) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_epi8(v) }
    }

    #[inline(always)]
    pub fn splat16(v: i16) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_epi16(v) }
    }

    #[inline(always)]
    pub fn i16s(a: [i16; 8]) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setr_epi16(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]) }
    }

    #[inline(always)]
    pub fn and(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(a, b) }
    }

    #[inline(always)]
    pub fn or(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_or_si128(a, b) }
    }

    #[inline(always)]
    pub fn sub16(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_epi16(a, b) }
    }

    /// Low 16 bits of the i16 products.
    #[inline(always)]
    pub fn mul16(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_mullo_epi16(a, b) }
    }

    /// All ones in the i16 lanes where `a == b`.
    #[inline(always)]
    pub fn eq16(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_cmpeq_epi16(a, b) }
    }

    #[inline(always)]
    pub fn shl16<const N: i32>(a: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_slli_epi16::<N>(a) }
    }

    /// u16 lanes shifted right by `n` (< 16).
    #[inline(always)]
    pub fn srl16(a: I, n: u32) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_srl_epi16(a, _mm_cvtsi32_si128(n as i32)) }
    }

    #[inline(always)]
    pub fn add32(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_epi32(a, b) }
    }

    #[inline(always)]
    pub fn sub32(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_epi32(a, b) }
    }

    #[inline(always)]
    pub fn shl32<const N: i32>(a: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_slli_epi32::<N>(a) }
    }

    /// i32 lane k: a[2k]·b[2k] + a[2k+1]·b[2k+1] over i16 lanes (`pmaddwd`).
    #[inline(always)]
    pub fn madd(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_madd_epi16(a, b) }
    }

    #[inline(always)]
    pub fn add64(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_epi64(a, b) }
    }

    /// The i8 lanes sign-extended to i16: the low eight, the high eight (each byte duplicated,
    /// then shifted right arithmetically).
    #[inline(always)]
    pub fn widen_i8(v: I) -> (I, I) {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { (_mm_srai_epi16::<8>(_mm_unpacklo_epi8(v, v)), _mm_srai_epi16::<8>(_mm_unpackhi_epi8(v, v))) }
    }

    /// The u8 lanes zero-extended to i16: the low eight, the high eight.
    #[inline(always)]
    pub fn widen_u8(v: I) -> (I, I) {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let z = _mm_setzero_si128();
            (_mm_unpacklo_epi8(v, z), _mm_unpackhi_epi8(v, z))
        }
    }

    /// Each byte's low nibble.
    #[inline(always)]
    pub fn lo_nibbles(v: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(v, _mm_set1_epi8(0x0F)) }
    }

    /// Each byte's high nibble.
    #[inline(always)]
    pub fn hi_nibbles(v: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(_mm_srli_epi16::<4>(v), _mm_set1_epi8(0x0F)) }
    }

    /// The sum of the i32 lanes.
    #[inline(always)]
    pub fn hsum(v: I) -> i32 {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let s = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
        }
    }

    /// Lane r of the result is the sum of the i32 lanes of `d[r]`.
    #[inline(always)]
    pub fn transpose_sum(d0: I, d1: I, d2: I, d3: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let s01 = _mm_add_epi32(_mm_unpacklo_epi32(d0, d1), _mm_unpackhi_epi32(d0, d1));
            let s23 = _mm_add_epi32(_mm_unpacklo_epi32(d2, d3), _mm_unpackhi_epi32(d2, d3));
            _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23))
        }
    }

    /// The i64 lanes.
    #[inline(always)]
    pub fn i64s(v: I) -> [i64; 2] {
        let mut l = [0i64; 2];
        // SAFETY: `l` holds 16 bytes.
        unsafe { _mm_storeu_si128(l.as_mut_ptr() as *mut I, v) };
        l
    }

    #[inline(always)]
    pub fn zero_f() -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setzero_pd() }
    }

    #[inline(always)]
    pub fn splat_f(v: f64) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_pd(v) }
    }

    /// Lanes (`lo`, `hi`).
    #[inline(always)]
    pub fn pair_f(lo: f64, hi: f64) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set_pd(hi, lo) }
    }

    /// The f64 with bits `lo`, `hi`.
    #[inline(always)]
    pub fn from_bits(lo: u64, hi: u64) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_castsi128_pd(_mm_set_epi64x(hi as i64, lo as i64)) }
    }

    /// The f64 lanes' bits as i64 lanes.
    #[inline(always)]
    pub fn to_bits(v: F) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_castpd_si128(v) }
    }

    /// i32 lanes 0 and 1 as f64 (exact).
    #[inline(always)]
    pub fn cvt_lo(v: I) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_cvtepi32_pd(v) }
    }

    /// i32 lanes 2 and 3 as f64 (exact).
    #[inline(always)]
    pub fn cvt_hi(v: I) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_cvtepi32_pd(_mm_shuffle_epi32::<0b11_10_11_10>(v)) }
    }

    #[inline(always)]
    pub fn mul_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_mul_pd(a, b) }
    }

    #[inline(always)]
    pub fn add_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_pd(a, b) }
    }

    #[inline(always)]
    pub fn sub_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_pd(a, b) }
    }
}

/// [`v128`] with wasm32's simd128: the same lane operations (`i32x4_dot_i16x8` is `pmaddwd`,
/// the f64x2 operations are IEEE's, unfused).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod v128 {
    use std::arch::wasm32::*;

    pub type I = v128;
    pub type F = v128;

    #[inline(always)]
    pub fn load<T: Copy, const N: usize>(a: &[T; N], at: usize) -> I {
        let s = &a[at..at + 16 / size_of::<T>()];
        // SAFETY: `s` holds 16 bytes; v128_load has no alignment requirement.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn load_f<const N: usize>(a: &[f64; N], at: usize) -> F {
        let s = &a[at..at + 2];
        // SAFETY: `s` holds 16 bytes; v128_load has no alignment requirement.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn zero() -> I {
        i64x2_splat(0)
    }

    #[inline(always)]
    pub fn splat8(v: i8) -> I {
        i8x16_splat(v)
    }

    #[inline(always)]
    pub fn splat16(v: i16) -> I {
        i16x8_splat(v)
    }

    #[inline(always)]
    pub fn i16s(a: [i16; 8]) -> I {
        i16x8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
    }

    #[inline(always)]
    pub fn and(a: I, b: I) -> I {
        v128_and(a, b)
    }

    #[inline(always)]
    pub fn or(a: I, b: I) -> I {
        v128_or(a, b)
    }

    #[inline(always)]
    pub fn sub16(a: I, b: I) -> I {
        i16x8_sub(a, b)
    }

    #[inline(always)]
    pub fn mul16(a: I, b: I) -> I {
        i16x8_mul(a, b)
    }

    #[inline(always)]
    pub fn eq16(a: I, b: I) -> I {
        i16x8_eq(a, b)
    }

    #[inline(always)]
    pub fn shl16<const N: i32>(a: I) -> I {
        i16x8_shl(a, N as u32)
    }

    #[inline(always)]
    pub fn srl16(a: I, n: u32) -> I {
        u16x8_shr(a, n)
    }

    #[inline(always)]
    pub fn add32(a: I, b: I) -> I {
        i32x4_add(a, b)
    }

    #[inline(always)]
    pub fn sub32(a: I, b: I) -> I {
        i32x4_sub(a, b)
    }

    #[inline(always)]
    pub fn shl32<const N: i32>(a: I) -> I {
        i32x4_shl(a, N as u32)
    }

    #[inline(always)]
    pub fn madd(a: I, b: I) -> I {
        i32x4_dot_i16x8(a, b)
    }

    #[inline(always)]
    pub fn add64(a: I, b: I) -> I {
        i64x2_add(a, b)
    }

    #[inline(always)]
    pub fn widen_i8(v: I) -> (I, I) {
        (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v))
    }

    #[inline(always)]
    pub fn widen_u8(v: I) -> (I, I) {
        (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v))
    }

    #[inline(always)]
    pub fn lo_nibbles(v: I) -> I {
        v128_and(v, u8x16_splat(0x0F))
    }

    /// u8 lanes shifted right by 4: no mask needed.
    #[inline(always)]
    pub fn hi_nibbles(v: I) -> I {
        u8x16_shr(v, 4)
    }

    #[inline(always)]
    pub fn hsum(v: I) -> i32 {
        let s = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        i32x4_extract_lane::<0>(i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s)))
    }

    #[inline(always)]
    pub fn transpose_sum(d0: I, d1: I, d2: I, d3: I) -> I {
        let s01 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d0, d1), i32x4_shuffle::<2, 6, 3, 7>(d0, d1));
        let s23 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d2, d3), i32x4_shuffle::<2, 6, 3, 7>(d2, d3));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(s01, s23), i32x4_shuffle::<2, 3, 6, 7>(s01, s23))
    }

    #[inline(always)]
    pub fn i64s(v: I) -> [i64; 2] {
        [i64x2_extract_lane::<0>(v), i64x2_extract_lane::<1>(v)]
    }

    #[inline(always)]
    pub fn zero_f() -> F {
        f64x2_splat(0.0)
    }

    #[inline(always)]
    pub fn splat_f(v: f64) -> F {
        f64x2_splat(v)
    }

    #[inline(always)]
    pub fn pair_f(lo: f64, hi: f64) -> F {
        f64x2(lo, hi)
    }

    #[inline(always)]
    pub fn from_bits(lo: u64, hi: u64) -> F {
        u64x2(lo, hi)
    }

    #[inline(always)]
    pub fn to_bits(v: F) -> I {
        v
    }

    #[inline(always)]
    pub fn cvt_lo(v: I) -> F {
        f64x2_convert_low_i32x4(v)
    }

    #[inline(always)]
    pub fn cvt_hi(v: I) -> F {
        f64x2_convert_low_i32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v))
    }

    #[inline(always)]
    pub fn mul_f(a: F, b: F) -> F {
        f64x2_mul(a, b)
    }

    #[inline(always)]
    pub fn add_f(a: F, b: F) -> F {
        f64x2_add(a, b)
    }

    #[inline(always)]
    pub fn sub_f(a: F, b: F) -> F {
        f64x2_sub(a, b)
    }
}

/// Integer dot products of weight bytes against int8 activations widened to i16. Integer
/// sums are exact in any order, so the vector ([`v128`]) and the portable ([`dots::scalar`])
/// versions give the same bits. `V` picks the vector version where there is one (x86_64,
/// wasm32 with simd128); the tests compare the two.
mod dots {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    use super::v128::*;

    /// Σ (qs[j] as i8)·x[j].
    #[inline(always)]
    pub fn q8<const V: bool>(qs: &[u8; 32], x: &[i16; 32]) -> i32 {
        #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
        if V {
            return hsum(q8_v(qs, x));
        }
        scalar::q8(qs, x)
    }

    /// Σ lo(qs[j])·x[j] + hi(qs[j])·x[16 + j].
    #[inline(always)]
    pub fn nibbles<const V: bool>(qs: &[u8; 16], x: &[i16; 32]) -> i32 {
        #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
        if V {
            return hsum(nibbles_v(qs, x));
        }
        scalar::nibbles(qs, x)
    }

    /// Σ nibble(qs[j])·x[j], taking the high nibbles when `hi`.
    #[inline(always)]
    pub fn half_nibbles<const V: bool>(qs: &[u8; 32], x: &[i16; 32], hi: bool) -> i32 {
        #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
        if V {
            return hsum(half_nibbles_v(qs, x, hi));
        }
        scalar::half_nibbles(qs, x, hi)
    }

    /// Σ x[j] over the positions whose bit is set in `qh`.
    #[inline(always)]
    pub fn bits<const V: bool>(qh: u32, x: &[i16; 32]) -> i32 {
        #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
        if V {
            return hsum(bits_v(qh, x));
        }
        scalar::bits(qh, x)
    }

    /// The portable versions, on every target: the reference the vector ones are tested
    /// against, and the kernels where there is no vector unit.
    pub mod scalar {
        pub fn q8(qs: &[u8; 32], x: &[i16; 32]) -> i32 {
            (0..32).map(|j| qs[j] as i8 as i32 * x[j] as i32).sum()
        }

        pub fn nibbles(qs: &[u8; 16], x: &[i16; 32]) -> i32 {
            (0..16).map(|j| (qs[j] & 0xF) as i32 * x[j] as i32 + (qs[j] >> 4) as i32 * x[16 + j] as i32).sum()
        }

        pub fn half_nibbles(qs: &[u8; 32], x: &[i16; 32], hi: bool) -> i32 {
            let sh = if hi { 4 } else { 0 };
            (0..32).map(|j| ((qs[j] >> sh) & 0xF) as i32 * x[j] as i32).sum()
        }

        pub fn bits(qh: u32, x: &[i16; 32]) -> i32 {
            (0..32).map(|j| ((qh >> j) & 1) as i32 * x[j] as i32).sum()
        }

        /// As [`super::q6k_v`], summed (the row paths decode Q6_K through `decode_block`
        /// instead; this is the tests' reference).
        #[cfg_attr(not(test), allow(dead_code))]
        pub fn q6k(ql: &[u8; 128], qh: &[u8; 64], sc: &[u8; 16], j: usize, x: &[i16; 32]) -> i32 {
            let (h, r) = ((j / 4) & 1, j % 4);
            (0..32)
                .map(|i| {
                    let lo = (ql[64 * h + 32 * (r % 2) + i] >> (4 * (r / 2))) & 0xF;
                    let hi = (qh[32 * h + i] >> (2 * r)) & 3;
                    let q = (lo | hi << 4) as i32 - 32;
                    sc[2 * j + i / 16] as i8 as i32 * q * x[i] as i32
                })
                .sum()
        }
    }

    /// [`q8`] before its horizontal sum: four i32 lanes that sum to the dot.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn q8_v(qs: &[u8; 32], x: &[i16; 32]) -> I {
        let ((w0, w1), (w2, w3)) = (widen_i8(load(qs, 0)), widen_i8(load(qs, 16)));
        add32(add32(madd(w0, load(x, 0)), madd(w1, load(x, 8))), add32(madd(w2, load(x, 16)), madd(w3, load(x, 24))))
    }

    /// [`nibbles`] before its horizontal sum.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn nibbles_v(qs: &[u8; 16], x: &[i16; 32]) -> I {
        let v = load(qs, 0);
        let ((l0, l1), (h0, h1)) = (widen_u8(lo_nibbles(v)), widen_u8(hi_nibbles(v)));
        add32(add32(madd(l0, load(x, 0)), madd(l1, load(x, 8))), add32(madd(h0, load(x, 16)), madd(h1, load(x, 24))))
    }

    /// [`half_nibbles`] before its horizontal sum.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn half_nibbles_v(qs: &[u8; 32], x: &[i16; 32], hi: bool) -> I {
        let mut acc = zero();
        for h in 0..2 {
            let v = load(qs, 16 * h);
            let (n0, n1) = widen_u8(if hi { hi_nibbles(v) } else { lo_nibbles(v) });
            acc = add32(acc, madd(n0, load(x, 16 * h)));
            acc = add32(acc, madd(n1, load(x, 16 * h + 8)));
        }
        acc
    }

    /// Σ sc[j / 16]·(q[j] − 32)·x[j] over Q6_K sub-block `j` of a block (`ql`, `qh` its low and
    /// high bits, `sc` its 16 scale bytes), before the horizontal sum. |sc·q| ≤ 4096 fits i16.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn q6k_v(ql: &[u8; 128], qh: &[u8; 64], sc: &[u8; 16], j: usize, x: &[i16; 32]) -> I {
        // Masked so that the loads stay inside the arrays whatever j (callers pass j < 8).
        let (h, r) = ((j / 4) & 1, j % 4);
        let (nib, hib) = (4 * (r / 2) as u32, 2 * r as u32);
        let (m, c32) = (splat8(0x0F), splat16(32));
        let mut acc = zero();
        for half in 0..2 {
            let lo = and(srl16(load(ql, 64 * h + 32 * (r % 2) + 16 * half), nib), m);
            let hi = shl16::<4>(and(srl16(load(qh, 32 * h + 16 * half), hib), splat8(3)));
            let (q0, q1) = widen_u8(or(lo, hi));
            let s = splat16(sc[2 * j + half] as i8 as i16);
            let (w0, w1) = (mul16(sub16(q0, c32), s), mul16(sub16(q1, c32), s));
            acc = add32(acc, madd(w0, load(x, 16 * half)));
            acc = add32(acc, madd(w1, load(x, 16 * half + 8)));
        }
        acc
    }

    /// [`bits`] before its horizontal sum.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn bits_v(qh: u32, x: &[i16; 32]) -> I {
        let m0 = i16s([1, 2, 4, 8, 16, 32, 64, 128]);
        let m1 = i16s([256, 512, 1024, 2048, 4096, 8192, 16384, i16::MIN]);
        let one = splat16(1);
        let mut acc = zero();
        for (h, half) in [qh as u16, (qh >> 16) as u16].into_iter().enumerate() {
            let v = splat16(half as i16);
            for (k, m) in [m0, m1].into_iter().enumerate() {
                let sel = eq16(and(v, m), m);
                acc = add32(acc, madd(and(sel, load(x, 16 * h + 8 * k)), one));
            }
        }
        acc
    }
}

/// One x row times one weight row of a common type, four blocks at a time (x86_64, wasm32 with
/// simd128): the four blocks' dots in one vector, each term `dot · d · f` (and `m · xm` for mins)
/// rounded onto the grid in f64 as in [`dots4`], the same terms as [`row_dot`]'s scalar loop.
/// Returns the sum and the number of blocks done; the scalar loop takes the rest (every block
/// without a vector unit).
mod grid4 {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    use super::{b16, b32, dots, v128::*, x32, ROUND};

    /// The f16 at `at`, `at + stride`, `at + 2·stride`, `at + 3·stride` as f64, exactly: its
    /// magnitude bits in f64's exponent and fraction fields read 2^−1008 times its value
    /// (subnormals included), so one multiply by 2^1008 rescales.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn f16x4<const N: usize>(b: &[u8; N], at: usize, stride: usize) -> (F, F) {
        let f = |i: usize| {
            let h = u16::from_le_bytes([b[at + i * stride], b[at + i * stride + 1]]) as u64;
            ((h & 0x7FFF) << 42) | ((h & 0x8000) << 48)
        };
        let scale = splat_f(f64::from_bits((1008 + 1023) << 52));
        (mul_f(from_bits(f(0), f(1)), scale), mul_f(from_bits(f(2), f(3)), scale))
    }

    /// Four blocks' dots (`dot`) times their scales (`d01`, `d23`) and the x factors `f`, rounded
    /// and added to `acc`.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_terms(acc: &mut [I; 2], dot: I, (d01, d23): (F, F), f: &[f64; 4]) {
        let round = splat_f(ROUND);
        let v01 = mul_f(mul_f(cvt_lo(dot), d01), load_f(f, 0));
        let v23 = mul_f(mul_f(cvt_hi(dot), d23), load_f(f, 2));
        acc[0] = add64(acc[0], to_bits(add_f(v01, round)));
        acc[1] = add64(acc[1], to_bits(add_f(v23, round)));
    }

    /// Four min terms: scales (`m01`, `m23`) times the x factors `xm`, rounded and added.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_mins(acc: &mut [I; 2], (m01, m23): (F, F), xm: &[f64; 4]) {
        let round = splat_f(ROUND);
        acc[0] = add64(acc[0], to_bits(add_f(mul_f(m01, load_f(xm, 0)), round)));
        acc[1] = add64(acc[1], to_bits(add_f(mul_f(m23, load_f(xm, 2)), round)));
    }

    /// The integer sum of `terms` rounded terms.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn total(acc: [I; 2], terms: usize) -> i64 {
        let ([l0, l1], [l2, l3]) = (i64s(acc[0]), i64s(acc[1]));
        let sum = [l0, l1, l2, l3].iter().fold(0i64, |a, &v| a.wrapping_add(v));
        sum.wrapping_sub((terms as i64).wrapping_mul(ROUND.to_bits() as i64))
    }

    /// Fixed-size views of four blocks (`B` bytes) and of their x values and factors: the
    /// compiler then drops every bounds check inside a group.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[allow(clippy::type_complexity)]
    fn groups<'a, const B: usize>(
        row: &'a [u8],
        x: &'a [i16],
        f: &'a [f64],
    ) -> impl Iterator<Item = (&'a [u8; B], &'a [i16; 128], &'a [f64; 4])> {
        row.as_chunks::<B>().0.iter().zip(x.as_chunks::<128>().0).zip(f.as_chunks::<4>().0).map(|((r, x), f)| (r, x, f))
    }

    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q8_0(row: &[u8], x: &[i16], f: &[f64]) -> (i64, usize) {
        let mut done = 0;
        let mut acc = [zero(); 2];
        for (r, xg, fg) in groups::<136>(row, x, f) {
            let dv = |i: usize| dots::q8_v(b32(&r[34 * i + 2..]), x32(&xg[32 * i..]));
            let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
            add_terms(&mut acc, dot, f16x4(r, 0, 34), fg);
            done += 4;
        }
        (total(acc, done), done)
    }

    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q4_1(row: &[u8], x: &[i16], f: &[f64], m: &[f64]) -> (i64, usize) {
        let mut done = 0;
        let mut acc = [zero(); 2];
        for ((r, xg, fg), mg) in groups::<80>(row, x, f).zip(m.as_chunks::<4>().0) {
            let dv = |i: usize| dots::nibbles_v(b16(&r[20 * i + 4..]), x32(&xg[32 * i..]));
            let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
            add_terms(&mut acc, dot, f16x4(r, 0, 20), fg);
            add_mins(&mut acc, f16x4(r, 2, 20), mg);
            done += 4;
        }
        (total(acc, 2 * done), done)
    }

    /// Q5_0: `sum` holds the x block sums (for the −16 offset).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q5_0(row: &[u8], x: &[i16], sum: &[i32], f: &[f64]) -> (i64, usize) {
        let mut done = 0;
        let mut acc = [zero(); 2];
        for ((r, xg, fg), sg) in groups::<88>(row, x, f).zip(sum.as_chunks::<4>().0) {
            let dv = |i: usize| {
                let (b, xb) = (&r[22 * i..22 * i + 22], x32(&xg[32 * i..]));
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                add32(dots::nibbles_v(b16(&b[6..]), xb), shl32::<4>(dots::bits_v(qh, xb)))
            };
            let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
            let dot = sub32(dot, shl32::<4>(load(sg, 0)));
            add_terms(&mut acc, dot, f16x4(r, 0, 22), fg);
            done += 4;
        }
        (total(acc, done), done)
    }

    /// One f16 as f64, exactly (as in [`f16x4`]).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn f16_f64(b: &[u8], at: usize) -> f64 {
        let h = u16::from_le_bytes([b[at], b[at + 1]]) as u64;
        f64::from_bits(((h & 0x7FFF) << 42) | ((h & 0x8000) << 48)) * f64::from_bits((1008 + 1023) << 52)
    }

    /// Super-blocks (of eight 32-element sub-blocks) that `row` and the x factors cover.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    fn super_blocks(row: &[u8], bb: usize, x: &[i16], f: &[f64], m: &[f64]) -> usize {
        (row.len() / bb).min(x.len() / 256).min(f.len() / 8).min(m.len() / 8)
    }

    /// Q4_K: sub-block scales `d·sc`, mins `−dmin·mn`. Returns the sum and the super-blocks done.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q4_k(row: &[u8], x: &[i16], f: &[f64], m: &[f64]) -> (i64, usize) {
        let sbs = super_blocks(row, 144, x, f, m);
        let mut acc = [zero(); 2];
        for sb in 0..sbs {
            let b = &row[144 * sb..144 * sb + 144];
            let (d, dm) = (splat_f(f16_f64(b, 0)), splat_f(f16_f64(b, 2)));
            for j0 in [0, 4] {
                let sm = |i: usize| super::scale_min_k4(j0 + i, &b[4..16]);
                let (s0, s1, s2, s3) = (sm(0), sm(1), sm(2), sm(3));
                let dv = |i: usize| {
                    let j = j0 + i;
                    dots::half_nibbles_v(b32(&b[16 + 32 * (j / 2)..]), x32(&x[256 * sb + 32 * j..]), j % 2 == 1)
                };
                let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
                let pair = |a: u8, b: u8| pair_f(a as f64, b as f64);
                let scales = (mul_f(pair(s0.0, s1.0), d), mul_f(pair(s2.0, s3.0), d));
                add_terms(&mut acc, dot, scales, &f.as_chunks::<4>().0[2 * sb + j0 / 4]);
                // −(dmin · mn): the negation is exact.
                let mins = (sub_f(zero_f(), mul_f(pair(s0.1, s1.1), dm)), sub_f(zero_f(), mul_f(pair(s2.1, s3.1), dm)));
                add_mins(&mut acc, mins, &m.as_chunks::<4>().0[2 * sb + j0 / 4]);
            }
        }
        (total(acc, 16 * sbs), sbs)
    }

    /// Q6_K: the sub-block's two 16-element scales are in the i16 weights; the term scale is d.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q6_k(row: &[u8], x: &[i16], f: &[f64], m: &[f64]) -> (i64, usize) {
        let sbs = super_blocks(row, 210, x, f, m);
        let mut acc = [zero(); 2];
        for sb in 0..sbs {
            let b = &row[210 * sb..210 * sb + 210];
            let (ql, qh, sc) = (
                b[..128].first_chunk().unwrap_or(&[0; 128]),
                b[128..192].first_chunk().unwrap_or(&[0; 64]),
                b[192..208].first_chunk().unwrap_or(&[0; 16]),
            );
            let d = splat_f(f16_f64(b, 208));
            for j0 in [0, 4] {
                let dv = |i: usize| dots::q6k_v(ql, qh, sc, j0 + i, x32(&x[256 * sb + 32 * (j0 + i)..]));
                let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
                add_terms(&mut acc, dot, (d, d), &f.as_chunks::<4>().0[2 * sb + j0 / 4]);
            }
        }
        (total(acc, 8 * sbs), sbs)
    }

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub fn q8_0(_: &[u8], _: &[i16], _: &[f64]) -> (i64, usize) {
        (0, 0)
    }

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub fn q4_1(_: &[u8], _: &[i16], _: &[f64], _: &[f64]) -> (i64, usize) {
        (0, 0)
    }

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub fn q5_0(_: &[u8], _: &[i16], _: &[i32], _: &[f64]) -> (i64, usize) {
        (0, 0)
    }

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub fn q4_k(_: &[u8], _: &[i16], _: &[f64], _: &[f64]) -> (i64, usize) {
        (0, 0)
    }

    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    pub fn q6_k(_: &[u8], _: &[i16], _: &[f64], _: &[f64]) -> (i64, usize) {
        (0, 0)
    }
}

/// Fixed-size views for the dot kernels, without copies (callers slice exact lengths, so the
/// zero fallback never runs).
#[inline(always)]
fn b16(s: &[u8]) -> &[u8; 16] {
    s.first_chunk().unwrap_or(&[0; 16])
}

#[inline(always)]
fn b32(s: &[u8]) -> &[u8; 32] {
    s.first_chunk().unwrap_or(&[0; 32])
}

#[inline(always)]
fn x32(s: &[i16]) -> &[i16; 32] {
    s.first_chunk().unwrap_or(&[0; 32])
}

/// The terms of one GGUF block against its int8 activations `x` (block length) with block
/// sums `xsum` (one per 32), decoding on the fly; equal, term by term, to decoding with
/// [`decode_block`] and taking `a·dot(q, x)` and `b·Σx` per 32 elements.
fn block_terms<const V: bool>(ty: TensorType, b: &[u8], x: &[i8], xw: &[i16], xsum: &[i32], out: &mut [Terms; 8]) {
    let xj = |j: usize| x32(&xw[32 * j..]);
    match ty {
        TensorType::Q8_0 => {
            let (d, e) = f16_at(b, 0);
            let dot = dots::q8::<V>(b32(&b[2..]), xj(0));
            out[0] = Terms { t1: d as i64 * dot as i64, e1: e, t2: 0, e2: e };
        }
        TensorType::Q4_0 => {
            let (d, e) = f16_at(b, 0);
            let dot = dots::nibbles::<V>(b16(&b[2..]), xj(0)) - 8 * xsum[0];
            out[0] = Terms { t1: d as i64 * dot as i64, e1: e, t2: 0, e2: e };
        }
        TensorType::Q4_1 => {
            let ((d, e), (m, me)) = (f16_at(b, 0), f16_at(b, 2));
            let dot = dots::nibbles::<V>(b16(&b[4..]), xj(0));
            out[0] = Terms { t1: d as i64 * dot as i64, e1: e, t2: m as i64 * xsum[0] as i64, e2: me };
        }
        TensorType::Q5_0 => {
            let (d, e) = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let xb = xj(0);
            let dot = dots::nibbles::<V>(b16(&b[6..]), xb) + 16 * dots::bits::<V>(qh, xb) - 16 * xsum[0];
            out[0] = Terms { t1: d as i64 * dot as i64, e1: e, t2: 0, e2: e };
        }
        TensorType::Q4K => {
            let ((d, e), (dm, me)) = (f16_at(b, 0), f16_at(b, 2));
            let (scales, qs) = (&b[4..16], &b[16..144]);
            for (j, o) in out.iter_mut().enumerate() {
                let (sc, mn) = scale_min_k4(j, scales);
                let dot = dots::half_nibbles::<V>(b32(&qs[32 * (j / 2)..]), xj(j), j % 2 == 1);
                *o = Terms {
                    t1: (d * sc as i32) as i64 * dot as i64,
                    e1: e,
                    t2: -((dm * mn as i32) as i64) * xsum[j] as i64,
                    e2: me,
                };
            }
        }
        _ => {
            let (mut q, mut sc) = ([0i8; 256], [BlockScale::default(); 8]);
            let bl = ty.block_len();
            if decode_block(ty, b, &mut q[..bl], &mut sc[..bl / 32]).is_none() {
                sc = [BlockScale::default(); 8];
            }
            for (j, (o, s)) in out.iter_mut().zip(&sc[..bl / 32]).enumerate() {
                let (wb, xb) = (&q[32 * j..32 * j + 32], &x[32 * j..32 * j + 32]);
                let t1 = s.a[0] as i64 * dot_i8(&wb[..16], &xb[..16]) as i64
                    + s.a[1] as i64 * dot_i8(&wb[16..], &xb[16..]) as i64;
                *o = Terms { t1, e1: s.ea, t2: s.b as i64 * xsum[j] as i64, e2: s.eb };
            }
        }
    }
}

/// One x row, quantized: int8 values (and widened to i16) and, per block, the shift from its
/// exponent to the accumulator grid, its scale, its sum and its sum times its scale.
struct RowX<'a> {
    q: &'a [i8],
    w: &'a [i16],
    sh: &'a [i32],
    s: &'a [i32],
    sum: &'a [i32],
    ssum: &'a [i32],
    /// Per block, `s_b · 2^sh` and `s_b · Σq · 2^sh`: the x factors of the f64 terms.
    f: &'a [f64],
    m: &'a [f64],
}

/// One weight row (its GGUF blocks) times one x row, accumulated on the grid. The common
/// types have their own loops (four blocks at a time in 128-bit vectors, [`grid4`]); the rest
/// go through [`block_terms`]. Same terms either way. `V`: use the vector kernels where the
/// target has them; `row_dot::<false>` is the portable path, the tests' reference.
fn row_dot<const V: bool>(ty: TensorType, row: &[u8], x: &RowX, terms: &mut [Terms; 8]) -> i64 {
    let mut acc: i64;
    let xb = x.w.chunks_exact(32).map(x32).zip(x.sh.iter().zip(x.s));
    match ty {
        TensorType::Q8_0 => {
            let (a, done) = if V { grid4::q8_0(row, x.w, x.f) } else { (0, 0) };
            acc = a;
            for (blk, (xw, (&sh, &xs))) in row.chunks_exact(34).zip(xb).skip(done) {
                let (d, e) = f16_at(blk, 0);
                let dot = dots::q8::<V>(b32(&blk[2..]), xw) as i64 * xs as i64;
                acc += shl(d as i64 * dot, e + sh);
            }
        }
        TensorType::Q4_1 => {
            let (a, done) = if V { grid4::q4_1(row, x.w, x.f, x.m) } else { (0, 0) };
            acc = a;
            for ((blk, (xw, (&sh, &xs))), &ss) in row.chunks_exact(20).zip(xb).zip(x.ssum).skip(done) {
                let ((d, e), (m, me)) = (f16_at(blk, 0), f16_at(blk, 2));
                let dot = dots::nibbles::<V>(b16(&blk[4..]), xw) as i64 * xs as i64;
                acc += shl(d as i64 * dot, e + sh);
                acc += shl(m as i64 * ss as i64, me + sh);
            }
        }
        TensorType::Q5_0 => {
            let (a, done) = if V { grid4::q5_0(row, x.w, x.sum, x.f) } else { (0, 0) };
            acc = a;
            for ((blk, (xw, (&sh, &xs))), &sum) in row.chunks_exact(22).zip(xb).zip(x.sum).skip(done) {
                let (d, e) = f16_at(blk, 0);
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let dot = dots::nibbles::<V>(b16(&blk[6..]), xw) + 16 * dots::bits::<V>(qh, xw) - 16 * sum;
                acc += shl(d as i64 * dot as i64 * xs as i64, e + sh);
            }
        }
        _ => {
            let (a, done) = match ty {
                TensorType::Q4K if V => grid4::q4_k(row, x.w, x.f, x.m),
                TensorType::Q6K if V => grid4::q6_k(row, x.w, x.f, x.m),
                _ => (0, 0),
            };
            acc = a;
            let (bl, bb) = (ty.block_len(), ty.block_bytes());
            let nsub = bl / 32;
            for (g, blk) in row.chunks_exact(bb).enumerate().skip(done) {
                let (x0, x1) = (g * bl, (g + 1) * bl);
                let (s0, s1) = (g * nsub, (g + 1) * nsub);
                block_terms::<V>(ty, blk, &x.q[x0..x1], &x.w[x0..x1], &x.sum[s0..s1], terms);
                for ((t, &sh), &xs) in terms[..nsub].iter().zip(&x.sh[s0..s1]).zip(&x.s[s0..s1]) {
                    acc += shl(t.t1 * xs as i64, t.e1 + sh);
                    if t.t2 != 0 {
                        acc += shl(t.t2 * xs as i64, t.e2 + sh);
                    }
                }
            }
        }
    }
    acc
}

/// `ldexp(m, e)`: for an exponent in f64's normal range one multiply by 2^e built from its
/// bits (the same result, one rounding of m·2^e), else the call.
#[inline(always)]
fn ldexp(m: f64, e: i32) -> f64 {
    if (-1022..=1023).contains(&e) {
        m * f64::from_bits(((e + 1023) as u64) << 52)
    } else {
        libm::ldexp(m, e)
    }
}

/// 1.5 · 2^52. Adding it to an f64 of magnitude below 2^51 rounds that value to an integer,
/// ties to even (IEEE round to nearest), and leaves the integer in the sum's low bits: the
/// batched matmul rounds each term with it, exactly as [`shl`] does.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// Weight rows widened for the batched matmul: i16 values per element and, per 32-element
/// sub-block, its scale `a · 2^ea` and min `b · 2^eb` as f64 (exact: small integers times
/// powers of two). Q6_K's values carry their 16-element scale (|sc · q| ≤ 4096, so one i16
/// dot gives `sc0·dot0 + sc1·dot1`) and `a` is the shared d: the same integer T1.
///
/// Where the AVX2 byte kernel takes the type ([`byte_offset`]), the values are kept as bytes
/// `u` instead of `w`: half the memory, and one `vpmaddubsw` per 32 products.
#[derive(Default)]
struct Widened {
    w: Vec<i16>,
    u: Vec<u8>,
    a: Vec<f64>,
    b: Vec<f64>,
}

/// The byte form of type `ty`'s values for the AVX2 batched kernel: `Some(c)` where each value
/// q is kept as the unsigned byte `q + c` (Q8_0: its int8 as they are, c = 0); `None` where the
/// i16 form serves (Q6_K, whose values carry their 16-element scales; CPUs without AVX2).
fn byte_offset(ty: TensorType) -> Option<u8> {
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        return match ty {
            TensorType::Q4_0 => Some(8),
            TensorType::Q5_0 => Some(16),
            TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q8_0 | TensorType::Q4K | TensorType::Q5K => Some(0),
            _ => None,
        };
    }
    let _ = ty;
    None
}

impl Widened {
    /// Decode weight rows (whole GGUF blocks) into `self`, replacing its contents.
    fn fill(&mut self, ty: TensorType, rows: &[u8]) {
        let (bl, bb) = (ty.block_len(), ty.block_bytes());
        let nblk = rows.len() / bb;
        let bytes = byte_offset(ty);
        let (wn, un) = if bytes.is_some() { (0, nblk * bl) } else { (nblk * bl, 0) };
        self.w.resize(wn, 0);
        self.u.resize(un, 0);
        self.a.resize(nblk * bl / 32, 0.0);
        self.b.resize(nblk * bl / 32, 0.0);
        let mut sc = [BlockScale::default(); 8];
        let mut q = [0i8; 256];
        let blocks = self.a.chunks_exact_mut(bl / 32).zip(self.b.chunks_exact_mut(bl / 32));
        for (i, (blk, (a, b))) in rows.chunks_exact(bb).zip(blocks).enumerate() {
            let vals = i * bl..(i + 1) * bl;
            // Blocks were validated at load; a scale that fails to decode reads as zero.
            let ok = block_scales(ty, blk, &mut sc[..bl / 32]).is_some();
            if !ok {
                sc = [BlockScale::default(); 8];
            }
            match bytes {
                Some(c) => {
                    let q = &mut q[..bl];
                    if ok {
                        block_values(ty, blk, q);
                    }
                    for (u, &v) in self.u[vals.clone()].iter_mut().zip(q.iter()) {
                        *u = (v as u8).wrapping_add(c);
                    }
                }
                None if ok => block_values(ty, blk, &mut self.w[vals.clone()]),
                None => self.w[vals.clone()].fill(0),
            }
            for ((a, b), s) in a.iter_mut().zip(b.iter_mut()).zip(&sc) {
                *a = ldexp(s.a[0] as f64, s.ea);
                *b = ldexp(s.b as f64, s.eb);
            }
            if ty == TensorType::Q6K {
                let (d, e) = f16_at(blk, 208);
                a.fill(ldexp(d as f64, e));
                // Element k of sub-block j has scale byte 2·j + k / 16 (see block_scales).
                for (ws, &s) in self.w[vals].chunks_exact_mut(16).zip(&blk[192..208]) {
                    ws.iter_mut().for_each(|wv| *wv *= s as i8 as i16);
                }
            }
        }
    }
}

/// x rows in groups of four for [`dots4`] (the last group padded with zero rows): per group
/// and 32-element block, the four rows' i16 values (or, for the byte form, their int8 values
/// `q` and `c · Σq` per row), then per block and row `s_b · 2^sh` (`f`) and `s_b · Σq · 2^sh`
/// (`m`).
struct XGroups {
    w: Vec<i16>,
    q: Vec<i8>,
    c: Vec<i32>,
    f: Vec<f64>,
    m: Vec<f64>,
    /// Blocks per row.
    nb: usize,
}

impl XGroups {
    /// `bytes`: the weight's byte offset ([`byte_offset`]), for the byte form.
    fn new(x: &XRows, bytes: Option<u8>) -> XGroups {
        let (n, nb) = (x.n, x.q.nb);
        let slots = n.div_ceil(4) * nb;
        let (wn, qn) = if bytes.is_some() { (0, slots * 128) } else { (slots * 128, 0) };
        let mut g = XGroups {
            w: vec![0; wn],
            q: vec![0; qn],
            c: vec![0; if bytes.is_some() { slots * 4 } else { 0 }],
            f: vec![0.0; slots * 4],
            m: vec![0.0; slots * 4],
            nb,
        };
        for i in 0..n {
            let (gi, r) = (i / 4, i % 4);
            for b in 0..nb {
                let (ib, slot) = (i * nb + b, gi * nb + b);
                let (at, vals) = (slot * 128 + 32 * r, ib * 32..ib * 32 + 32);
                match bytes {
                    Some(c) => {
                        g.q[at..at + 32].copy_from_slice(&x.q.q[vals]);
                        g.c[slot * 4 + r] = c as i32 * x.q.sum[ib];
                    }
                    None => g.w[at..at + 32].copy_from_slice(&x.w[vals]),
                }
                g.f[slot * 4 + r] = x.f[ib];
                g.m[slot * 4 + r] = x.m[ib];
            }
        }
        g
    }

    /// Group `g`'s i16 values and factors.
    fn group(&self, g: usize) -> (&[i16], &[f64], &[f64]) {
        let (v, f) = self.at(g);
        (&self.w[v], &self.f[f.clone()], &self.m[f])
    }

    /// Group `g`'s int8 values, `c · Σq` and factors (the byte form).
    fn group_bytes(&self, g: usize) -> (&[i8], &[i32], &[f64], &[f64]) {
        let (v, f) = self.at(g);
        (&self.q[v], &self.c[f.clone()], &self.f[f.clone()], &self.m[f])
    }

    /// Group `g`'s range of values and of factors.
    fn at(&self, g: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let nb = self.nb;
        (g * nb * 128..(g + 1) * nb * 128, g * nb * 4..(g + 1) * nb * 4)
    }
}

/// One widened weight row (`w`: `32·nb` values, `a`, `b`: `nb` factors) times one group of four
/// x rows, on each row's grid. Each term `dot · a · f` (and with `MIN`, `b · m`) is
/// T · 2^(exponent − A) exactly (|T| < 2^43, see [`matmul`], fits f64's 53 bits) and below 2^51 in magnitude
/// (the shift is at most 8), so adding [`ROUND`] rounds it as [`shl`] does; the integers are
/// summed from the sums' bits (wrapping) and the added ROUNDs taken off at the end. The
/// kernels (AVX2, 128-bit vectors, portable) make the same f64 operations in the same order.
fn dots4<const MIN: bool>(w: &[i16], a: &[f64], b: &[f64], x: (&[i16], &[f64], &[f64])) -> [i64; 4] {
    let (xw, xf, xm) = x;
    let nb = a.len();
    assert!(w.len() == 32 * nb && b.len() == nb && xw.len() == 128 * nb && xf.len() == 4 * nb && xm.len() == 4 * nb);
    let mut acc = [0i64; 4];
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        // SAFETY: AVX2 is present; the lengths checked above keep every load in bounds.
        unsafe { avx2::dots4::<MIN>(w, a, b, x, &mut acc) };
    } else {
        dots4_v128::<MIN>(w, a, b, x, &mut acc);
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    dots4_v128::<MIN>(w, a, b, x, &mut acc);
    #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
    dots4_scalar::<MIN>(w, a, b, x, &mut acc);
    acc.map(|v| less_rounds::<MIN>(v, nb))
}

/// [`dots4`] for two weight rows at once (`w`, `a`, `b`: each row's): AVX2 loads each x block
/// once for both; elsewhere two [`dots4`] calls. The same terms, so the same bits.
fn dots4x2<const MIN: bool>(
    w: [&[i16]; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    x: (&[i16], &[f64], &[f64]),
) -> [[i64; 4]; 2] {
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        let (xw, xf, xm) = x;
        let nb = a[0].len();
        assert!((0..2).all(|r| w[r].len() == 32 * nb && a[r].len() == nb && b[r].len() == nb));
        assert!(xw.len() == 128 * nb && xf.len() == 4 * nb && xm.len() == 4 * nb);
        let mut acc = [[0i64; 4]; 2];
        // SAFETY: AVX2 is present; the lengths checked above keep every load in bounds.
        unsafe { avx2::dots4x2::<MIN>(w, a, b, x, &mut acc) };
        return acc.map(|r| r.map(|v| less_rounds::<MIN>(v, nb)));
    }
    [dots4::<MIN>(w[0], a[0], b[0], x), dots4::<MIN>(w[1], a[1], b[1], x)]
}

/// [`dots4x2`] on the byte form (`u`: values `q + c`, [`byte_offset`]; `x`: [`XGroups::group_bytes`]);
/// `signed` for Q8_0. AVX2 only: [`byte_offset`] chooses the form only where AVX2 is present.
#[cfg(target_arch = "x86_64")]
fn dots4x2_bytes<const MIN: bool>(
    signed: bool,
    u: [&[u8]; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    x: (&[i8], &[i32], &[f64], &[f64]),
) -> [[i64; 4]; 2] {
    let (xq, xc, xf, xm) = x;
    let nb = a[0].len();
    assert!(avx2::present());
    assert!((0..2).all(|r| u[r].len() == 32 * nb && a[r].len() == nb && b[r].len() == nb));
    assert!(xq.len() == 128 * nb && xc.len() == 4 * nb && xf.len() == 4 * nb && xm.len() == 4 * nb);
    let mut acc = [[0i64; 4]; 2];
    // SAFETY: AVX2 is present; the lengths checked above keep every load in bounds.
    unsafe {
        if signed {
            avx2::dots4x2_bytes::<MIN, true>(u, a, b, x, &mut acc)
        } else {
            avx2::dots4x2_bytes::<MIN, false>(u, a, b, x, &mut acc)
        }
    };
    acc.map(|r| r.map(|v| less_rounds::<MIN>(v, nb)))
}

/// A kernel's sum over `nb` blocks less the ROUND each of its terms added (two per block with
/// `MIN`).
fn less_rounds<const MIN: bool>(v: i64, nb: usize) -> i64 {
    let terms = (nb * if MIN { 2 } else { 1 }) as i64;
    v.wrapping_sub(terms.wrapping_mul(ROUND.to_bits() as i64))
}

/// [`dots4`]'s portable kernel (on every target: the tests' reference).
#[cfg_attr(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
fn dots4_scalar<const MIN: bool>(
    w: &[i16],
    a: &[f64],
    b: &[f64],
    (xw, xf, xm): (&[i16], &[f64], &[f64]),
    acc: &mut [i64; 4],
) {
    for j in 0..a.len() {
        for (r, o) in acc.iter_mut().enumerate() {
            let x = &xw[128 * j + 32 * r..128 * j + 32 * r + 32];
            let dot: i32 = w[32 * j..32 * j + 32].iter().zip(x).map(|(&p, &q)| p as i32 * q as i32).sum();
            let v = dot as f64 * a[j] * xf[4 * j + r];
            *o = o.wrapping_add((v + ROUND).to_bits() as i64);
            if MIN {
                *o = o.wrapping_add((b[j] * xm[4 * j + r] + ROUND).to_bits() as i64);
            }
        }
    }
}

/// [`dots4`] in 128-bit vectors ([`v128`]: SSE2, simd128): eight i16 lanes per multiply.
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn dots4_v128<const MIN: bool>(
    w: &[i16],
    a: &[f64],
    b: &[f64],
    (xw, xf, xm): (&[i16], &[f64], &[f64]),
    acc: &mut [i64; 4],
) {
    use v128::*;
    let round = splat_f(ROUND);
    let (mut acc01, mut acc23) = (zero(), zero());
    let (w, xw) = (w.as_chunks::<32>().0, xw.as_chunks::<128>().0);
    let (xf, xm) = (xf.as_chunks::<4>().0, xm.as_chunks::<4>().0);
    for ((((wj, xj), (fj, mj)), &aj), &bj) in w.iter().zip(xw).zip(xf.iter().zip(xm)).zip(a).zip(b) {
        let (w0, w1, w2, w3) = (load(wj, 0), load(wj, 8), load(wj, 16), load(wj, 24));
        let dot = |r: usize| {
            let p = 32 * r;
            add32(
                add32(madd(w0, load(xj, p)), madd(w1, load(xj, p + 8))),
                add32(madd(w2, load(xj, p + 16)), madd(w3, load(xj, p + 24))),
            )
        };
        // Lane r is row r's dot.
        let d = transpose_sum(dot(0), dot(1), dot(2), dot(3));
        let wa = splat_f(aj);
        let v01 = mul_f(mul_f(cvt_lo(d), wa), load_f(fj, 0));
        let v23 = mul_f(mul_f(cvt_hi(d), wa), load_f(fj, 2));
        acc01 = add64(acc01, to_bits(add_f(v01, round)));
        acc23 = add64(acc23, to_bits(add_f(v23, round)));
        if MIN {
            let wb = splat_f(bj);
            acc01 = add64(acc01, to_bits(add_f(mul_f(wb, load_f(mj, 0)), round)));
            acc23 = add64(acc23, to_bits(add_f(mul_f(wb, load_f(mj, 2)), round)));
        }
    }
    let ([a0, a1], [a2, a3]) = (i64s(acc01), i64s(acc23));
    *acc = [a0, a1, a2, a3];
}

/// Guard bits of the attention accumulators (scores and values) below their largest term exponent.
const GUARD: i32 = 8;
/// Guard bits of the matmul accumulators (fewer: terms carry the activation block scale).
const MATMUL_GUARD: i32 = 8;

/// `x · wᵀ`. Per x row, terms are accumulated exactly on the grid `A = K − 8`, where K is the
/// weight's largest scale exponent plus the row's largest block exponent, so each term is
/// shifted left by at most 8 (exact) or rounded by [`rshr`].
///
/// Bounds: a block dot is below 2^19 (32·128·127); times a scale below 2^18 (Q6_K: 2047·128)
/// and over two halves, and times the activation block scale (≤ 130 < 2^8), a term is below
/// 2^43; min terms are below 2^37 (2047·63·32·127·130); F32 element terms below 2^39. After
/// the shift of at most 8, and at most 512 blocks of two terms (or 16384 elements) per row,
/// |acc| < 2^62.
fn matmul(x: &IMat, w: &Matrix) -> IMat {
    let [y] = matmuls(x, [w]);
    y
}

/// [`matmul`] of `x` by each of `ws` (q/k/v, gate/up), with `x` quantized once. A decode step
/// (one row) runs the rows of every weight as one parallel pass: a pass costs a hand-off to
/// rayon's threads and back, which a browser's workers make slowly.
fn matmuls<const N: usize>(x: &IMat, ws: [&Matrix; N]) -> [IMat; N] {
    // Shared by the products' x rows, each on its own weight's grid.
    let q = Arc::new(quantize_rows(x, x.cols));
    let xrs = ws.map(|w| {
        assert_eq!(x.cols, w.cols, "matmul of {}-wide rows by a {}-wide weight", x.cols, w.cols);
        XRows::new(Arc::clone(&q), x, w.max_exp)
    });
    let accs: [Vec<i64>; N] = if x.rows == 1 && ws.iter().all(|w| matches!(w.data, MatrixData::Blocks { .. })) {
        let mut accs = ws.map(|w| vec![0; w.rows]);
        let tasks: Vec<(usize, usize, &mut [i64])> = accs
            .iter_mut()
            .enumerate()
            .flat_map(|(i, acc)| acc.chunks_mut(CHUNK).enumerate().map(move |(c, out)| (i, c * CHUNK, out)))
            .collect();
        tasks.into_par_iter().for_each(|(i, j0, out)| {
            if let MatrixData::Blocks { ty, raw } = &ws[i].data {
                dot_rows(*ty, raw, &xrs[i], j0, out);
            }
        });
        accs
    } else {
        std::array::from_fn(|i| products(ws[i], &xrs[i]))
    };
    std::array::from_fn(|i| normalized(&xrs[i], ws[i].rows, &accs[i]))
}

/// The grid sums of `w`'s rows times the x rows, as `[weight row][x row]`.
fn products(w: &Matrix, xr: &XRows) -> Vec<i64> {
    match &w.data {
        MatrixData::Blocks { ty, raw } => block_products(*ty, raw, w.widened.as_deref(), w.rows, xr),
        MatrixData::Elems { m: wm, e: we } => elem_products(wm, we, w.rows, xr),
    }
}

/// The products' rows (`[weight row][x row]` sums, `m` weight rows), each normalized on its grid.
fn normalized(xr: &XRows, m: usize, acc_t: &[i64]) -> IMat {
    let n = xr.n;
    let mut out = IMat::zeros(n, m);
    if n == 1 {
        out.e[0] = normalize(acc_t, xr.grid[0], &mut out.m);
        return out;
    }
    // Eight x rows at a time: their sums gathered from `acc_t` in runs of eight (one cache
    // line per weight row), then normalized.
    const ROWS: usize = 8;
    let rows = |c: usize, om: &mut [i32], oe: &mut [i32]| {
        let (i0, k) = (ROWS * c, oe.len());
        let mut acc = vec![0i64; k * m];
        for j in 0..m {
            for (r, &v) in acc_t[j * n + i0..j * n + i0 + k].iter().enumerate() {
                acc[r * m + j] = v;
            }
        }
        for (r, (om, oe)) in om.chunks_exact_mut(m).zip(oe).enumerate() {
            *oe = normalize(&acc[r * m..(r + 1) * m], xr.grid[i0 + r], om);
        }
    };
    if m > 0 {
        out.m
            .par_chunks_mut(ROWS * m)
            .zip(out.e.par_chunks_mut(ROWS))
            .enumerate()
            .for_each(|(c, (om, oe))| rows(c, om, oe));
    }
    out
}

/// The matmul's x rows: quantized, with each block's shift to its row's grid.
struct XRows {
    n: usize,
    k: usize,
    q: Arc<QRows>,
    /// The int8 values widened to i16.
    w: Vec<i16>,
    sh: Vec<i32>,
    /// Block sums times block scales.
    ssum: Vec<i32>,
    /// Per row, the accumulator grid A.
    grid: Vec<i32>,
    /// Per block, `s_b · 2^sh` and `s_b · Σq · 2^sh` (exact f64).
    f: Vec<f64>,
    m: Vec<f64>,
}

impl XRows {
    /// `q`: `x` quantized ([`quantize_rows`]); `max_exp`: the weight's largest scale exponent.
    fn new(q: Arc<QRows>, x: &IMat, max_exp: i32) -> XRows {
        let nb = q.nb;
        let grid: Vec<i32> = q.emax.iter().map(|&e| max_exp + e - MATMUL_GUARD).collect();
        let w = q.q.iter().map(|&v| v as i16).collect();
        let sh: Vec<i32> = q.e.iter().enumerate().map(|(b, &e)| e - grid[b / nb]).collect();
        let ssum: Vec<i32> = q.sum.iter().zip(&q.s).map(|(&v, &s)| v * s).collect();
        let f = q.s.iter().zip(&sh).map(|(&s, &e)| ldexp(s as f64, e)).collect();
        let m = ssum.iter().zip(&sh).map(|(&s, &e)| ldexp(s as f64, e)).collect();
        XRows { n: x.rows, k: x.cols, q, w, sh, ssum, grid, f, m }
    }
}

/// Weight rows per rayon task.
const CHUNK: usize = 16;

/// The grid sums of `m` quantized weight rows (`raw`, or its rows already widened) times the x
/// rows, as `[weight row][x row]`.
fn block_products(ty: TensorType, raw: &[u8], widened: Option<&[Widened]>, m: usize, x: &XRows) -> Vec<i64> {
    let (n, k, nb) = (x.n, x.k, x.q.nb);
    let row_bytes = k / ty.block_len() * ty.block_bytes();
    let mut acc_t = vec![0i64; m * n];
    if n > 1 {
        // Batches decode each weight row once and dot it against every x row.
        let bytes = byte_offset(ty);
        let xg = XGroups::new(x, bytes);
        let min = matches!(ty, TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4K | TensorType::Q5K);
        acc_t.par_chunks_mut(CHUNK * n).enumerate().for_each_init(Widened::default, |own, (c, out)| {
            let rows = out.len() / n;
            let wd = match widened {
                Some(w) => &w[c],
                None => {
                    own.fill(ty, &raw[c * CHUNK * row_bytes..(c * CHUNK + rows) * row_bytes]);
                    &*own
                }
            };
            // Weight rows j0 and j1 against x group g.
            let pair = |g: usize, j0: usize, j1: usize| {
                let (a, b) =
                    ([j0, j1].map(|j| &wd.a[j * nb..(j + 1) * nb]), [j0, j1].map(|j| &wd.b[j * nb..(j + 1) * nb]));
                #[cfg(target_arch = "x86_64")]
                if bytes.is_some() {
                    let (u, xv, signed) =
                        ([j0, j1].map(|j| &wd.u[j * k..(j + 1) * k]), xg.group_bytes(g), ty == TensorType::Q8_0);
                    return if min {
                        dots4x2_bytes::<true>(signed, u, a, b, xv)
                    } else {
                        dots4x2_bytes::<false>(signed, u, a, b, xv)
                    };
                }
                let (w, xv) = ([j0, j1].map(|j| &wd.w[j * k..(j + 1) * k]), xg.group(g));
                if min {
                    dots4x2::<true>(w, a, b, xv)
                } else {
                    dots4x2::<false>(w, a, b, xv)
                }
            };
            // Groups outermost: a group's x values stay in cache across the chunk's rows, taken
            // two at a time (an odd last row paired with itself).
            for g in 0..n.div_ceil(4) {
                for (pi, oj) in out.chunks_mut(2 * n).enumerate() {
                    let j0 = 2 * pi;
                    let d = pair(g, j0, (j0 + 1).min(rows - 1));
                    for (oi, di) in oj.chunks_mut(n).zip(d) {
                        for (o, v) in oi[4 * g..].iter_mut().zip(di) {
                            *o = v;
                        }
                    }
                }
            }
        });
        return acc_t;
    }
    acc_t.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| dot_rows(ty, raw, x, c * CHUNK, out));
    acc_t
}

/// Weight rows `j0..j0 + out.len()` (of GGUF blocks `raw`) times one x row: the AVX2 kernels
/// where the CPU has them, else [`row_dot`] row by row.
fn dot_rows(ty: TensorType, raw: &[u8], x: &XRows, j0: usize, out: &mut [i64]) {
    let rx = RowX { q: &x.q.q, w: &x.w, sh: &x.sh, s: &x.q.s, sum: &x.q.sum, ssum: &x.ssum, f: &x.f, m: &x.m };
    dot_rows_x(ty, raw, x.k, &rx, j0, out);
}

/// [`dot_rows`] for the `k`-wide x row `rx`.
fn dot_rows_x(ty: TensorType, raw: &[u8], k: usize, rx: &RowX, j0: usize, out: &mut [i64]) {
    let row_bytes = k / ty.block_len() * ty.block_bytes();
    #[cfg(target_arch = "x86_64")]
    if avx2::rows(ty, raw.get(j0 * row_bytes..).unwrap_or_default(), row_bytes, rx, out) {
        return;
    }
    let mut terms = [Terms::default(); 8];
    for (jj, o) in out.iter_mut().enumerate() {
        let j = j0 + jj;
        *o = row_dot::<true>(ty, &raw[j * row_bytes..(j + 1) * row_bytes], rx, &mut terms);
    }
}

/// As [`block_products`] for F16 / F32 weights: one term per element.
fn elem_products(wm: &[i32], we: &[i32], m: usize, x: &XRows) -> Vec<i64> {
    let (n, k, nb) = (x.n, x.k, x.q.nb);
    let mut acc_t = vec![0i64; m * n];
    acc_t.par_chunks_mut(CHUNK * n).enumerate().for_each(|(c, out)| {
        for (jj, oj) in out.chunks_exact_mut(n).enumerate() {
            let j = c * CHUNK + jj;
            for (i, o) in oj.iter_mut().enumerate() {
                let (xs, xsh) = (&x.q.q[i * k..(i + 1) * k], &x.sh[i * nb..(i + 1) * nb]);
                let sc = &x.q.s[i * nb..(i + 1) * nb];
                for t in 0..k {
                    let term = wm[j * k + t] as i64 * xs[t] as i64 * sc[t / 32] as i64;
                    *o += shl(term, we[j * k + t] + xsh[t / 32]);
                }
            }
        }
    });
    acc_t
}

/// The KV cache of one layer: int8 values, one integer scale and one exponent per block (32 or
/// fewer within a head).
#[derive(Default)]
struct LayerCache {
    kq: Vec<i8>,
    ke: Vec<i32>,
    ks: Vec<i32>,
    vq: Vec<i8>,
    ve: Vec<i32>,
    vs: Vec<i32>,
}

impl LayerCache {
    /// Quantize `k` and `v` per head and append them, one position per row.
    fn append(&mut self, k: &IMat, v: &IMat, hd: usize) {
        let (kr, vr) = (quantize_rows(k, hd), quantize_rows(v, hd));
        self.kq.extend_from_slice(&kr.q);
        self.ke.extend_from_slice(&kr.e);
        self.ks.extend_from_slice(&kr.s);
        self.vq.extend_from_slice(&vr.q);
        self.ve.extend_from_slice(&vr.e);
        self.vs.extend_from_slice(&vr.s);
    }
}

/// The attention geometry the exact mode supports, and its scale as `(m, e)`.
fn attention_checked(p: &AttnParams) -> Result<(i32, i32)> {
    let hd = p.head_dim;
    if hd > 256 || p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
        return Err(Error::InvalidArgument(format!(
            "exact attention: {} heads, {} KV heads of {hd}",
            p.n_head, p.n_head_kv
        )));
    }
    attention_scale(p.scale).ok_or_else(|| Error::InvalidArgument(format!("attention scale {}", p.scale)))
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
    for i in rows {
        h.update(x.e[i].to_le_bytes());
        for m in x.row(i) {
            h.update(m.to_le_bytes());
        }
    }
    h.finalize().into()
}

/// Domain separation of [`residual_digest`].
pub const RESIDUAL_TAG: &[u8] = b"edgeproof residual v2";

/// Query blocks of one head: int8 values, scales and exponents.
struct QHead<'a> {
    q: &'a [i8],
    s: &'a [i32],
    e: &'a [i32],
}

/// The keys one query head sees: positions `lo..=pos` of KV head `kb0 / nbh`'s cache.
struct Keys<'a> {
    c: &'a LayerCache,
    lo: usize,
    pos: usize,
    kv_dim: usize,
    /// The head's first element and first block within a cached row.
    kvo: usize,
    kv_blocks: usize,
    kb0: usize,
}

/// Per visible position, the head's block dots times both scales, each shifted onto the grid
/// `a` ([`shl`]), summed, times `sm`. Compiled for AVX2 too, where the dots vectorize wider.
fn scores(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64> {
    #[inline(always)]
    fn body(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64> {
        // Plain loops: closures here would be compiled once, outside the AVX2 copy.
        let hd = qh.q.len();
        let mut out = Vec::with_capacity(k.pos + 1 - k.lo);
        for j in k.lo..=k.pos {
            let kr = &k.c.kq[j * k.kv_dim + k.kvo..j * k.kv_dim + k.kvo + hd];
            let kb = j * k.kv_blocks + k.kb0;
            let mut s = 0i64;
            for b in 0..qh.s.len() {
                let r = 32 * b..(32 * b + 32).min(hd);
                let (qv, kv) = (&qh.q[r.clone()], &kr[r]);
                let mut dot = 0i32;
                for t in 0..qv.len().min(kv.len()) {
                    dot += qv[t] as i32 * kv[t] as i32;
                }
                s += shl(dot as i64 * (qh.s[b] * k.c.ks[kb + b]) as i64, qh.e[b] + k.c.ke[kb + b] - a);
            }
            out.push(s * sm as i64);
        }
        out
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        #[target_feature(enable = "avx2")]
        fn wide(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64> {
            body(qh, k, a, sm)
        }
        // SAFETY: AVX2 is present.
        return unsafe { wide(qh, k, a, sm) };
    }
    body(qh, k, a, sm)
}

/// One head of attention for one query: returns the head's output accumulator and its exponent.
/// Keys `lo..=pos` of kv head `g` are visible.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    qh: QHead,
    c: &LayerCache,
    kv_blocks: usize,
    g: usize,
    hd: usize,
    lo: usize,
    pos: usize,
    (sm, se): (i32, i32),
) -> (Vec<i64>, i32) {
    let nbh = qh.e.len();
    let kv_dim = kv_blocks / nbh * hd;
    let kvo = g * hd;
    let at = |j: usize, b: usize| j * kv_blocks + g * nbh + b;
    // Scores on the grid A = (max q block exp) + (max visible k block exp) − 8, as in matmul.
    let kq_max = qh.e.iter().copied().max().unwrap_or(0);
    let kk_max = (lo..=pos).flat_map(|j| (0..nbh).map(move |b| c.ke[at(j, b)])).max().unwrap_or(0);
    let a = kq_max + kk_max - GUARD;
    // A block term is below 2^19 · 2^15 (dot, two scales ≤ 130), 2^42 after the shift; eight
    // blocks (heads up to 256) 2^45; times |sm| < 2^16: below 2^61.
    let keys = Keys { c, lo, pos, kv_dim, kvo, kv_blocks, kb0: g * nbh };
    let scores = scores(&qh, &keys, a, sm);
    let a = a + se;
    let smax = scores.iter().copied().max().unwrap_or(0);
    // Softmax: d = s − max <= 0 in Q20, clamped at −2^31 (−2048, where 2^z is 0 anyway),
    // z = rshr(d·log2e, 30) in Q20, p = 2^z in Q30.
    let p: Vec<i64> = scores
        .iter()
        .map(|&s| {
            let d = s - smax;
            let sh = a + 20;
            let dq = if sh >= 0 {
                if d != 0 && (sh >= 31 || d < -(1i64 << (31 - sh))) {
                    -(1i64 << 31)
                } else {
                    d << sh
                }
            } else {
                rshr(d, sh.unsigned_abs()).max(-(1i64 << 31))
            };
            exp2_q20(rshr(dq * LOG2E_Q30, 30))
        })
        .collect();
    // p <= 2^30 and p <= S, so p·inv <= 2^62; probabilities in Q24.
    let sum: i64 = p.iter().sum();
    let inv = (1i64 << 62) / sum;
    let p: Vec<i64> = p.iter().map(|&v| rshr(v * inv, 38)).collect();
    // Values: per block, on the grid of the largest visible exponent less 8 guard bits and the 24
    // of Q24. A term p·v·s is below 2^24 · 2^14 · 2^8; the p sum to at most 2^24 + n/2, so the
    // accumulator stays below 2^47 ([`values_into`] sums in f64, exact below 2^53).
    let mut out = vec![0i64; hd];
    let mut bexp = vec![0i32; nbh];
    for (b, be) in bexp.iter_mut().enumerate() {
        let vmax = (lo..=pos).map(|j| c.ve[at(j, b)]).max().unwrap_or(0);
        *be = vmax - GUARD - 24;
        let r = 32 * b..(32 * b + 32).min(hd);
        let terms = p.iter().zip(lo..=pos).map(|(pj, j)| {
            let v = &c.vq[j * kv_dim + kvo + r.start..j * kv_dim + kvo + r.end];
            (pj * c.vs[at(j, b)] as i64, c.ve[at(j, b)] - vmax + GUARD, v)
        });
        let mut acc = [0.0; 32];
        values_into(&mut acc, terms);
        out[r].iter_mut().zip(acc).for_each(|(o, a)| *o = a as i64);
    }
    let eh = bexp.iter().copied().max().unwrap_or(0);
    for (b, &be) in bexp.iter().enumerate() {
        for o in &mut out[32 * b..(32 * b + 32).min(hd)] {
            *o = shl(*o, be - eh);
        }
    }
    (out, eh)
}

/// `o[e] += shl(ps · v[e], sh)` for each `(ps, sh, v)` of `terms`, in f64: every term and
/// partial sum is an integer below 2^53 in magnitude (attention's values bound them below 2^47),
/// so each f64 operation is exact and the sum is the i64 one. A left shift is exact, so it goes
/// on `ps` once per position (and the loop vectorizes); a right shift rounds each term.
fn values_into<'a>(o: &mut [f64; 32], terms: impl Iterator<Item = (i64, i32, &'a [i8])>) {
    #[inline(always)]
    fn body<'a>(o: &mut [f64; 32], terms: impl Iterator<Item = (i64, i32, &'a [i8])>) {
        // A local copy and plain loops, so the sums can stay in registers (a closure here would
        // be compiled once, outside the AVX2 copy).
        let mut acc = *o;
        for (ps, sh, v) in terms {
            let n = v.len().min(32);
            if sh >= 0 {
                let c = (ps << sh) as f64;
                for t in 0..n {
                    acc[t] += c * v[t] as f64;
                }
            } else {
                let s = sh.unsigned_abs();
                for t in 0..n {
                    acc[t] += rshr(ps * v[t] as i64, s) as f64;
                }
            }
        }
        *o = acc;
    }
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        #[target_feature(enable = "avx2")]
        fn wide<'a>(o: &mut [f64; 32], terms: impl Iterator<Item = (i64, i32, &'a [i8])>) {
            body(o, terms)
        }
        // SAFETY: AVX2 is present.
        return unsafe { wide(o, terms) };
    }
    body(o, terms)
}

/// Each row of `q` attends, head by head, to the keys `lo..=hi` of `c` that `visible(row)` gives
/// ([`attend_head`]); the heads are brought to the row's largest exponent (rshr) and normalized.
fn attend_rows(
    q: &IMat,
    c: &LayerCache,
    p: &AttnParams,
    scale: (i32, i32),
    visible: impl Fn(usize) -> (usize, usize) + Sync,
) -> IMat {
    let hd = p.head_dim;
    let nbh = hd.div_ceil(32);
    let kv_blocks = p.n_head_kv * nbh;
    let qr = quantize_rows(q, hd);
    let group = p.n_head / p.n_head_kv;
    let heads: Vec<(Vec<i64>, i32)> = (0..q.rows * p.n_head)
        .into_par_iter()
        .map(|ih| {
            let (i, h) = (ih / p.n_head, ih % p.n_head);
            let (lo, hi) = visible(i);
            let b = i * qr.nb + h * nbh..i * qr.nb + (h + 1) * nbh;
            let qh =
                QHead { q: &qr.q[i * q.cols + h * hd..i * q.cols + (h + 1) * hd], s: &qr.s[b.clone()], e: &qr.e[b] };
            attend_head(qh, c, kv_blocks, h / group, hd, lo, hi, scale)
        })
        .collect();
    let mut out = IMat::zeros(q.rows, p.n_head * hd);
    let cols = out.cols;
    for (i, row) in heads.chunks_exact(p.n_head).enumerate() {
        let ec = row.iter().map(|h| h.1).max().unwrap_or(0);
        let acc: Vec<i64> = row.iter().flat_map(|(a, e)| a.iter().map(move |&v| shl(v, e - ec))).collect();
        out.e[i] = normalize(&acc, ec, &mut out.m[i * cols..(i + 1) * cols]);
    }
    out
}

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
        gated(gate, up, silu_mant)
    }

    fn geglu(&mut self, gate: &IMat, up: &IMat) -> IMat {
        gated(gate, up, gelu_mant)
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

fn gated(gate: &IMat, up: &IMat, f: fn(i32, i32) -> i64) -> IMat {
    let mut out = IMat::zeros(gate.rows, gate.cols);
    each_row(&mut out, |i, om, oe| {
        let eg = gate.e[i];
        let acc: Vec<i64> = gate.row(i).iter().zip(up.row(i)).map(|(&g, &u)| f(g, eg) * u as i64).collect();
        *oe = normalize(&acc, eg + up.e[i], om);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics at the first index where `got` (the vector kernels) and `want` (the portable
    /// ones) differ.
    fn assert_same<T: PartialEq + std::fmt::Debug>(what: &str, got: &[T], want: &[T]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        if let Some(i) = got.iter().zip(want).position(|(g, w)| g != w) {
            panic!("{what}: first difference at index {i}: vector {:?}, scalar {:?}", got[i], want[i]);
        }
    }

    /// Seeded random i16 values in `-lim..=lim`.
    fn i16s(rng: &mut crate::tiny::SplitMix64, n: usize, lim: i16) -> Vec<i16> {
        (0..n).map(|_| (rng.next_u64() % (2 * lim as u64 + 1)) as i16 - lim).collect()
    }

    /// Every dot kernel ([`dots`]) against its portable version on seeded random blocks, with
    /// int8 activations at their extremes included.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn vector_dots_equal_scalar() {
        let mut rng = crate::tiny::SplitMix64(11);
        let trials = 300;
        let (mut got, mut want) = (vec![], vec![]);
        let mut x = [0i16; 32];
        let mut blk = [0u8; 208];
        for t in 0..trials {
            rng.fill(&mut blk);
            match t % 3 {
                0 => x.copy_from_slice(&i16s(&mut rng, 32, 128)[..]),
                1 => x.fill(if t % 2 == 0 { -128 } else { 127 }),
                _ => x.copy_from_slice(&i16s(&mut rng, 32, 3)[..]),
            }
            x.iter_mut().for_each(|v| *v = (*v).clamp(-128, 127));
            let qh = u32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
            got.push(dots::q8::<true>(b32(&blk), &x));
            want.push(dots::scalar::q8(b32(&blk), &x));
            got.push(dots::nibbles::<true>(b16(&blk), &x));
            want.push(dots::scalar::nibbles(b16(&blk), &x));
            for hi in [false, true] {
                got.push(dots::half_nibbles::<true>(b32(&blk), &x, hi));
                want.push(dots::scalar::half_nibbles(b32(&blk), &x, hi));
            }
            got.push(dots::bits::<true>(qh, &x));
            want.push(dots::scalar::bits(qh, &x));
            let ql = blk[..128].first_chunk().expect("128 bytes");
            let (qh6, sc) = (blk[128..192].first_chunk().expect("64"), blk[192..208].first_chunk().expect("16"));
            for j in 0..8 {
                #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
                got.push(v128::hsum(dots::q6k_v(ql, qh6, sc, j, &x)));
                #[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
                got.push(dots::scalar::q6k(ql, qh6, sc, j, &x));
                want.push(dots::scalar::q6k(ql, qh6, sc, j, &x));
            }
        }
        // 13 results per trial: q8, nibbles, two half_nibbles, bits, eight Q6_K sub-blocks.
        assert_same("dots (13 per trial: q8, nibbles, half lo/hi, bits, q6k j=0..8)", &got, &want);
    }

    /// Random weight rows of `ty` (finite f16 scales) and `n` random x rows of `k` values (block
    /// magnitudes spread over 24 bits, one zero block).
    fn random_case(rng: &mut crate::tiny::SplitMix64, ty: TensorType, m: usize, n: usize, k: usize) -> (Vec<u8>, IMat) {
        use TensorType::*;
        let bb = ty.block_bytes();
        let mut raw = vec![0u8; m * k / ty.block_len() * bb];
        rng.fill(&mut raw);
        let f16s: &[usize] = match ty {
            Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
            Q6K => &[208],
            _ => &[0],
        };
        for blk in raw.chunks_exact_mut(bb) {
            for &at in f16s {
                // Exponent field below 31: finite.
                blk[at + 1] &= 0xBF;
            }
        }
        let mut x = IMat::zeros(n, k);
        for i in 0..n {
            x.e[i] = (rng.next_u64() % 40) as i32 - 30;
            for blk in x.m[i * k..(i + 1) * k].chunks_mut(32) {
                let shift = rng.next_u64() % 24;
                blk.iter_mut().for_each(|v| *v = (rng.next_u64() as i32 >> 8) >> shift);
            }
            if k >= 64 {
                x.m[i * k + 32..i * k + 64].fill(0);
            }
        }
        (raw, x)
    }

    /// The one-row path ([`dot_rows_x`], [`row_dot`]) with the vector kernels ([`grid4`] four blocks at a
    /// time, the vector dots in the tail) against the portable path, bit for bit, on every
    /// block type, with block counts that leave every remainder of the four-block loops.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn vector_rows_equal_scalar() {
        use TensorType::*;
        let mut rng = crate::tiny::SplitMix64(7);
        let (m, n) = (6, 3);
        for ty in [Q8_0, Q4_1, Q5_0, Q4K, Q6K, Q4_0, Q5_1, Q5K] {
            let blocks: &[usize] = if ty.block_len() == 32 { &[1, 3, 4, 5, 7, 8, 18, 37] } else { &[1, 2, 3] };
            for (case, &nb) in blocks.iter().enumerate() {
                let k = nb * ty.block_len();
                let (mut raw, mut x) = random_case(&mut rng, ty, m, n, k);
                if case + 1 == blocks.len() {
                    // The largest products: every weight byte 0x80 (Q8_0: −128) or 0xFF, every
                    // activation ±127 (the AVX2 kernels' byte products must not saturate).
                    let (bb, fill) = (ty.block_bytes(), if ty == Q8_0 { 0x80 } else { 0xFF });
                    for blk in raw.chunks_exact_mut(bb) {
                        let keep = blk.to_vec();
                        blk.fill(fill);
                        let f16s: &[usize] = match ty {
                            Q4_1 | Q5_1 | Q4K | Q5K => &[0, 1, 2, 3],
                            Q6K => &[208, 209],
                            _ => &[0, 1],
                        };
                        f16s.iter().for_each(|&at| blk[at] = keep[at]);
                    }
                    for (i, v) in x.m.iter_mut().enumerate() {
                        *v = if (i / k) % 2 == 0 { 1 << 20 } else { -(1 << 20) };
                    }
                }
                let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
                let xr = XRows::new(Arc::new(quantize_rows(&x, x.cols)), &x, max_exp);
                let row_bytes = raw.len() / m;
                let (kb, xb) = (x.cols, xr.q.nb);
                let (mut got, mut want) = (vec![], vec![]);
                let mut terms = [Terms::default(); 8];
                for i in 0..n {
                    let (e, b) = (i * kb..(i + 1) * kb, i * xb..(i + 1) * xb);
                    let rx = RowX {
                        q: &xr.q.q[e.clone()],
                        w: &xr.w[e],
                        sh: &xr.sh[b.clone()],
                        s: &xr.q.s[b.clone()],
                        sum: &xr.q.sum[b.clone()],
                        ssum: &xr.ssum[b.clone()],
                        f: &xr.f[b.clone()],
                        m: &xr.m[b],
                    };
                    for row in raw.chunks_exact(row_bytes) {
                        want.push(row_dot::<false>(ty, row, &rx, &mut terms));
                    }
                    // All rows in one call, then split: a row's last group reads past its end
                    // into the next row, or (the matrix's last row) copies.
                    for split in [m, 4, 1] {
                        let mut out = vec![0; m];
                        for (c, o) in out.chunks_mut(split).enumerate() {
                            dot_rows_x(ty, &raw, k, &rx, c * split, o);
                        }
                        got.extend(out);
                    }
                    let n = want.len();
                    want.extend_from_within(n - m..);
                    want.extend_from_within(n - m..n);
                }
                assert_same(&format!("{} k={k}: [x row][split][weight row]", ty.name()), &got, &want);
            }
        }
    }

    /// On x86_64, where [`row_dot`] takes the AVX2 kernels for Q8_0, Q4_1 and Q5_0, their 128-bit
    /// kernels ([`grid4`], which CPUs without AVX2 run) still equal the portable path.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rows_in_128_bit_vectors_equal_scalar() {
        use TensorType::*;
        let mut rng = crate::tiny::SplitMix64(11);
        for ty in [Q8_0, Q4_1, Q5_0] {
            for nb in [4, 8, 20] {
                let (raw, x) = random_case(&mut rng, ty, 5, 1, 32 * nb);
                let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
                let xr = XRows::new(Arc::new(quantize_rows(&x, x.cols)), &x, max_exp);
                let rx = RowX {
                    q: &xr.q.q,
                    w: &xr.w,
                    sh: &xr.sh,
                    s: &xr.q.s,
                    sum: &xr.q.sum,
                    ssum: &xr.ssum,
                    f: &xr.f,
                    m: &xr.m,
                };
                let mut terms = [Terms::default(); 8];
                let (mut got, mut want) = (vec![], vec![]);
                for row in raw.chunks_exact(raw.len() / 5) {
                    let (acc, done) = match ty {
                        Q8_0 => grid4::q8_0(row, rx.w, rx.f),
                        Q4_1 => grid4::q4_1(row, rx.w, rx.f, rx.m),
                        _ => grid4::q5_0(row, rx.w, rx.sum, rx.f),
                    };
                    assert_eq!(done, nb, "{}: the four-block loop covers the row", ty.name());
                    got.push(acc);
                    want.push(row_dot::<false>(ty, row, &rx, &mut terms));
                }
                assert_same(&format!("{} k={}: grid4 by weight row", ty.name(), 32 * nb), &got, &want);
            }
        }
    }

    /// Attention's value sums in f64 ([`values_into`]) equal the i64 sums of the same shifted
    /// terms, on random terms and on the largest attention allows (probabilities summing to 2^24,
    /// spread over 4096 positions or all on one, a scale of 130 and a shift of 8, values ±127),
    /// with 32 and an awkward 7 lanes.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn values_into_equals_i64_sums() {
        let mut rng = crate::tiny::SplitMix64(17);
        for (case, n) in [(0, 300), (1, 4096), (2, 4096)] {
            for lanes in [32, 7] {
                let terms: Vec<(i64, i32, Vec<i8>)> = (0..n)
                    .map(|j| match case {
                        0 => (
                            (rng.next_u64() % (1 << 24)) as i64 * (1 + (rng.next_u64() % 130) as i64),
                            (rng.next_u64() % 12) as i32 - 3,
                            (0..lanes).map(|_| rng.next_u64() as i8).collect(),
                        ),
                        // Probabilities sum to about 2^24: spread evenly, or all on one position.
                        _ => {
                            let p = if case == 1 { (1i64 << 24) / n as i64 + 1 } else { ((j == 0) as i64) << 24 };
                            (p * 130, 8, vec![if j % 3 == 0 { -127 } else { 127 }; lanes])
                        }
                    })
                    .collect();
                let mut got = [0.0; 32];
                values_into(&mut got, terms.iter().map(|(ps, sh, v)| (*ps, *sh, &v[..])));
                let mut want = vec![0i64; lanes];
                for (ps, sh, v) in &terms {
                    want.iter_mut().zip(v).for_each(|(o, &v)| *o += shl(ps * v as i64, *sh));
                }
                let got: Vec<i64> = got[..lanes].iter().map(|&v| v as i64).collect();
                assert_same(&format!("case {case}, {lanes} lanes"), &got, &want);
            }
        }
    }

    /// The batched kernel ([`dots4`], and on x86_64 and wasm32 with simd128 its 128-bit kernel
    /// directly) against the portable one, with and without min terms, on awkward block counts.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn vector_dots4_equals_scalar() {
        let mut rng = crate::tiny::SplitMix64(13);
        let f64s = |n: usize, rng: &mut crate::tiny::SplitMix64| {
            (0..n)
                .map(|_| libm::ldexp((rng.next_u64() % 4096) as f64 - 2048.0, (rng.next_u64() % 40) as i32 - 30))
                .collect::<Vec<_>>()
        };
        for nb in [1, 2, 3, 5, 9, 17, 40] {
            let (w, xw) = (i16s(&mut rng, 32 * nb, 4096), i16s(&mut rng, 128 * nb, 127));
            let (a, b, xf, xm) =
                (f64s(nb, &mut rng), f64s(nb, &mut rng), f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
            let x = (&xw[..], &xf[..], &xm[..]);
            let run = |min: bool, f: &dyn Fn(&mut [i64; 4])| {
                let mut acc = [0i64; 4];
                f(&mut acc);
                let terms = (nb * if min { 2 } else { 1 }) as i64;
                acc.map(|v| v.wrapping_sub(terms.wrapping_mul(ROUND.to_bits() as i64)))
            };
            let want = [
                run(false, &|o| dots4_scalar::<false>(&w, &a, &b, x, o)),
                run(true, &|o| dots4_scalar::<true>(&w, &a, &b, x, o)),
            ];
            let got = [dots4::<false>(&w, &a, &b, x), dots4::<true>(&w, &a, &b, x)];
            assert_same(&format!("dots4 nb={nb} [min][row]"), got.as_flattened(), want.as_flattened());
            #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
            {
                let got = [
                    run(false, &|o| dots4_v128::<false>(&w, &a, &b, x, o)),
                    run(true, &|o| dots4_v128::<true>(&w, &a, &b, x, o)),
                ];
                assert_same(&format!("dots4_v128 nb={nb} [min][row]"), got.as_flattened(), want.as_flattened());
            }
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

    /// The batched path (widened rows) equals the one-row path (`row_dot`) bit for bit on
    /// every block type: random quants and scales (subnormal f16 included), x
    /// rows and blocks of very different magnitudes, a zero block, a padded last group.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn batched_products_equal_row_by_row() {
        use crate::tiny::SplitMix64;
        use TensorType::*;
        let mut rng = SplitMix64(3);
        let (m, n) = (19, 7);
        for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K] {
            // 18 blocks of 32 where the type allows: the row path's four-block loops leave two.
            let k = if ty.block_len() == 32 { 576 } else { 512 };
            let bb = ty.block_bytes();
            let mut raw = vec![0u8; m * k / ty.block_len() * bb];
            rng.fill(&mut raw);
            let f16s: &[usize] = match ty {
                Q4_1 | Q5_1 | Q4K | Q5K => &[0, 2],
                Q6K => &[208],
                _ => &[0],
            };
            for blk in raw.chunks_exact_mut(bb) {
                for &at in f16s {
                    // Exponent field below 31: finite.
                    blk[at + 1] &= 0xBF;
                }
            }
            let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
            let mut x = IMat::zeros(n, k);
            for i in 0..n {
                x.e[i] = (rng.next_u64() % 40) as i32 - 30;
                for blk in x.m[i * k..(i + 1) * k].chunks_mut(32) {
                    let shift = rng.next_u64() % 24;
                    blk.iter_mut().for_each(|v| *v = (rng.next_u64() as i32 >> 8) >> shift);
                }
                x.m[i * k + 64..i * k + 96].fill(0);
            }
            let xr = XRows::new(Arc::new(quantize_rows(&x, k)), &x, max_exp);
            let all = block_products(ty, &raw, None, m, &xr);
            // The same from rows kept widened (ExactWeight::keep_widened).
            let row_bytes = k / ty.block_len() * ty.block_bytes();
            let kept: Vec<Widened> = raw
                .chunks(CHUNK * row_bytes)
                .map(|rows| {
                    let mut w = Widened::default();
                    w.fill(ty, rows);
                    w
                })
                .collect();
            assert_eq!(block_products(ty, &raw, Some(&kept), m, &xr), all, "{}: rows kept widened", ty.name());
            for i in 0..n {
                let xi = IMat { rows: 1, cols: k, m: x.row(i).to_vec(), e: vec![x.e[i]] };
                let one = block_products(ty, &raw, None, m, &XRows::new(Arc::new(quantize_rows(&xi, k)), &xi, max_exp));
                for (j, &v) in one.iter().enumerate() {
                    assert_eq!(all[j * n + i], v, "{}: weight row {j}, x row {i}", ty.name());
                }
            }
        }
    }

    /// [`matmuls`] (x quantized once; one parallel pass for a single row) gives each
    /// [`matmul`]'s bits, for one x row and for a batch, blocks of different types together.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn several_products_equal_one_at_a_time() {
        use TensorType::*;
        let mut rng = crate::tiny::SplitMix64(5);
        let k = 256;
        for n in [1, 3] {
            let mut x = IMat::zeros(n, k);
            let ws: Vec<Matrix> = [(Q4_1, 40), (Q8_0, 17), (Q4K, 33), (Q6K, 5)]
                .into_iter()
                .map(|(ty, m)| {
                    let (raw, xr) = random_case(&mut rng, ty, m, n, k);
                    x = xr;
                    let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
                    Matrix {
                        rows: m,
                        cols: k,
                        data: MatrixData::Blocks { ty, raw: raw.into() },
                        max_exp,
                        widened: None,
                    }
                })
                .collect();
            let together = matmuls(&x, [&ws[0], &ws[1], &ws[2], &ws[3]]);
            for (w, got) in ws.iter().zip(&together) {
                let want = matmul(&x, w);
                assert_same(&format!("n={n} {}: mantissas", w.rows), &got.m, &want.m);
                assert_same(&format!("n={n} {}: exponents", w.rows), &got.e, &want.e);
            }
        }
    }

    /// Both x86_64 kernels of [`dots4`] give the same sums (the tests above run the one this
    /// machine has).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dots4_v128_equals_avx2() {
        if !avx2::present() {
            return;
        }
        let mut rng = crate::tiny::SplitMix64(5);
        let nb = 9;
        let mut i16s = |n: usize, lim: u64| {
            (0..n).map(|_| (rng.next_u64() % (2 * lim + 1)) as i16 - lim as i16).collect::<Vec<_>>()
        };
        let (w, xw) = (i16s(32 * nb, 4096), i16s(128 * nb, 127));
        let f64s = |n: usize, rng: &mut crate::tiny::SplitMix64| {
            (0..n)
                .map(|_| libm::ldexp((rng.next_u64() % 4096) as f64 - 2048.0, (rng.next_u64() % 40) as i32 - 30))
                .collect::<Vec<_>>()
        };
        let (a, b, xf, xm) = (f64s(nb, &mut rng), f64s(nb, &mut rng), f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
        let (mut s, mut v) = ([0i64; 4], [0i64; 4]);
        dots4_v128::<true>(&w, &a, &b, (&xw, &xf, &xm), &mut s);
        // SAFETY: AVX2 is present; the lengths match.
        unsafe {
            avx2::dots4::<true>(&w, &a, &b, (&xw, &xf, &xm), &mut v);
        }
        assert_eq!(s, v);
    }

    /// Two weight rows at once against one x group: each row's sums are the portable kernel's.
    #[test]
    fn dots4x2_equals_dots4_scalar() {
        let mut rng = crate::tiny::SplitMix64(6);
        let nb = 11;
        let mut i16s = |n: usize, lim: u64| {
            (0..n).map(|_| (rng.next_u64() % (2 * lim + 1)) as i16 - lim as i16).collect::<Vec<_>>()
        };
        let (w0, w1, xw) = (i16s(32 * nb, 4096), i16s(32 * nb, 15), i16s(128 * nb, 127));
        let f64s = |n: usize, rng: &mut crate::tiny::SplitMix64| {
            (0..n)
                .map(|_| libm::ldexp((rng.next_u64() % 4096) as f64 - 2048.0, (rng.next_u64() % 40) as i32 - 30))
                .collect::<Vec<_>>()
        };
        let (a0, b0, a1, b1) = (f64s(nb, &mut rng), f64s(nb, &mut rng), f64s(nb, &mut rng), f64s(nb, &mut rng));
        let (xf, xm) = (f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
        let x = (&xw[..], &xf[..], &xm[..]);
        let scalar = |w: &[i16], a: &[f64], b: &[f64], min: bool| {
            let mut acc = [0i64; 4];
            if min {
                dots4_scalar::<true>(w, a, b, x, &mut acc);
            } else {
                dots4_scalar::<false>(w, a, b, x, &mut acc);
            }
            let terms = (nb * if min { 2 } else { 1 }) as i64;
            acc.map(|v| v.wrapping_sub(terms.wrapping_mul(ROUND.to_bits() as i64)))
        };
        let want = |min| [scalar(&w0, &a0, &b0, min), scalar(&w1, &a1, &b1, min)];
        assert_eq!(dots4x2::<true>([&w0, &w1], [&a0, &a1], [&b0, &b1], x), want(true), "with min terms");
        assert_eq!(dots4x2::<false>([&w0, &w1], [&a0, &a1], [&b0, &b1], x), want(false), "without");
    }

    /// The byte kernel against the portable i16 one on the same values, for each offset the
    /// byte form uses and Q8_0's signed bytes, at the extremes (every x at ±127, every weight
    /// at its largest or smallest) and at random.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dots4x2_bytes_equals_dots4_scalar() {
        if !avx2::present() {
            return;
        }
        let mut rng = crate::tiny::SplitMix64(7);
        let nb = 13;
        let f64s = |n: usize, rng: &mut crate::tiny::SplitMix64| {
            (0..n)
                .map(|_| libm::ldexp((rng.next_u64() % 4096) as f64 - 2048.0, (rng.next_u64() % 40) as i32 - 30))
                .collect::<Vec<_>>()
        };
        // (offset c, the values' range: q in lo..=hi, signed for Q8_0)
        for (c, lo, hi, signed) in [
            (0u8, 0i16, 15i16, false),
            (0, 0, 31, false),
            (8, -8, 7, false),
            (16, -16, 15, false),
            (0, -128, 127, true),
        ] {
            for case in 0..3 {
                let pick = |rng: &mut crate::tiny::SplitMix64, lo: i16, hi: i16| match case {
                    0 => lo + (rng.next_u64() % (hi - lo + 1) as u64) as i16,
                    1 => hi,
                    _ => lo,
                };
                let q: Vec<Vec<i16>> = (0..2).map(|_| (0..32 * nb).map(|_| pick(&mut rng, lo, hi)).collect()).collect();
                let xw: Vec<i16> = (0..128 * nb)
                    .map(|i| {
                        if case == 0 {
                            pick(&mut rng, -127, 127)
                        } else if i % 3 == 0 {
                            -127
                        } else {
                            127
                        }
                    })
                    .collect();
                let u: Vec<Vec<u8>> =
                    q.iter().map(|r| r.iter().map(|&v| (v as i8 as u8).wrapping_add(c)).collect()).collect();
                let xq: Vec<i8> = xw.iter().map(|&v| v as i8).collect();
                let xc: Vec<i32> = (0..4 * nb)
                    .map(|s| c as i32 * xw[128 * (s / 4) + 32 * (s % 4)..][..32].iter().map(|&v| v as i32).sum::<i32>())
                    .collect();
                let (a, b) = ([f64s(nb, &mut rng), f64s(nb, &mut rng)], [f64s(nb, &mut rng), f64s(nb, &mut rng)]);
                let (xf, xm) = (f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
                let rows = |min: bool| {
                    [0, 1].map(|r| {
                        let mut acc = [0i64; 4];
                        if min {
                            dots4_scalar::<true>(&q[r], &a[r], &b[r], (&xw, &xf, &xm), &mut acc);
                            acc.map(|v| less_rounds::<true>(v, nb))
                        } else {
                            dots4_scalar::<false>(&q[r], &a[r], &b[r], (&xw, &xf, &xm), &mut acc);
                            acc.map(|v| less_rounds::<false>(v, nb))
                        }
                    })
                };
                let (ab, bb) = ([&a[0][..], &a[1][..]], [&b[0][..], &b[1][..]]);
                let x = (&xq[..], &xc[..], &xf[..], &xm[..]);
                let what = format!("c={c} q in {lo}..={hi} case {case}");
                assert_eq!(
                    dots4x2_bytes::<true>(signed, [&u[0], &u[1]], ab, bb, x),
                    rows(true),
                    "{what}, with min terms"
                );
                assert_eq!(dots4x2_bytes::<false>(signed, [&u[0], &u[1]], ab, bb, x), rows(false), "{what}, without");
            }
        }
    }
}
