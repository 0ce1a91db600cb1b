//! x86_64 kernels for CPUs with AVX2, chosen at run time ([`present`]). Each computes the same
//! terms as the 128-bit kernels (`grid4`, `dots4_v128`): integer dots, then per term the f64
//! products, rounded onto the grid by adding `ROUND`, summed as i64. Integer sums are exact in
//! any order, so the bits are the same. The kernels fuse a product with its rounding add
//! (`dot · (a · f) + ROUND`, `b · m + ROUND` in one `vfmadd`): every product here is exact
//! (`a · f` under 27 significant bits, `dot · a · f` under 2^43, `b · m` under 38 bits), and
//! an exact product rounds once either way, so a fused add gives the bits of the separate
//! ones. (A product that underflows is far below 1/2, so both round it to 0.)
//!
//! The one-row kernels (a decode step) and the batched byte kernel (`dots8x4_bytes`) multiply the
//! weights' bytes by the int8 activations with `vpmaddubsw` (unsigned by signed bytes, adjacent
//! products added into i16): it saturates only past ±2^15, and no pair here comes near (Q4:
//! 2·15·127; Q5: 2·31·127; Q8_0 as |w| by ±x: 2·128·127 = 32 512, because the activations lie
//! in [−127, 127], `numerics::quantize_block_scaled`). Where the weights are below 32, up to
//! four pairs are added in i16 before widening (8·31·127 = 31 496 < 2^15).

use super::{
    batched::{fetch_ahead, less_rounds, ROUND},
    rowdot::RowX,
};
use crate::quant::TensorType;
use std::arch::x86_64::*;

/// Whether this CPU has AVX2, F16C and FMA (std caches the detection; every AVX2 CPU has both
/// of the others).
#[inline(always)]
pub fn present() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("f16c")
        && std::arch::is_x86_feature_detected!("fma")
}

/// Whether this CPU also has AVX-512 VNNI on 256-bit vectors (`vpdpbusd`), for
/// [`dots8x4_vnni`].
#[inline(always)]
pub fn vnni() -> bool {
    present() && std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl")
}

/// Whether [`vnni`] holds on 512-bit vectors too (AVX-512 F), for [`dots16x4_avx512`].
#[inline(always)]
pub fn avx512() -> bool {
    vnni() && std::arch::is_x86_feature_detected!("avx512f")
}

/// Weight rows of type `ty` (`w`: the first of them to the end of the matrix, rows of
/// `row_bytes`) times one quantized x row: `out[r]` gets row r's sum, the one `row_dot` makes.
/// `false` without AVX2 and F16C, for other types, or when the lengths do not match.
pub fn rows(ty: TensorType, w: &[u8], row_bytes: usize, x: &RowX, out: &mut [i64]) -> bool {
    if !present() || w.len() < row_bytes * out.len() || !row_bytes.is_multiple_of(ty.block_bytes()) {
        return false;
    }
    let nb = row_bytes / ty.block_bytes();
    // SAFETY: AVX2 and F16C are present.
    unsafe {
        match ty {
            TensorType::Q8_0 => q8_0(w, nb, x, out),
            TensorType::Q4_1 => q4_1(w, nb, x, out),
            TensorType::Q5_0 => q5_0(w, nb, x, out),
            TensorType::Q4K => each_row(w, row_bytes, out, |row| q4_k(row, x.q, x.f, x.m)),
            TensorType::Q6K => each_row(w, row_bytes, out, |row| q6_k(row, x.q, x.f)),
            _ => false,
        }
    }
}

/// `out[r] = f(row r)`; `false` as soon as `f` declines a row.
#[inline]
fn each_row(w: &[u8], row_bytes: usize, out: &mut [i64], f: impl Fn(&[u8]) -> Option<i64>) -> bool {
    for (r, (row, o)) in w.chunks_exact(row_bytes).zip(out).enumerate() {
        fetch_ahead(w, r * row_bytes, row_bytes);
        match f(row) {
            Some(v) => *o = v,
            None => return false,
        }
    }
    true
}

/// Lane r of the result: the sum of the eight i32 lanes of `d[r]`.
#[target_feature(enable = "avx2")]
#[inline]
pub(super) fn transpose_sum(d: [__m256i; 4]) -> __m128i {
    let s = _mm256_hadd_epi32(_mm256_hadd_epi32(d[0], d[1]), _mm256_hadd_epi32(d[2], d[3]));
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
}

/// Lane r of the result: the sum of the sixteen i16 lanes of `v[r]` (`vpmaddubsw` products of
/// weight bytes below 32 by x in [−127, 127]). Two `vphaddw` add them in i16 up to eight
/// products (at most 8·31·127 = 31 496 < 2^15, so nothing wraps), and one `vpmaddwd` by ones
/// widens: one multiply for the four vectors instead of four.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose_sum16(v: [__m256i; 4]) -> __m128i {
    let h = _mm256_hadd_epi16(_mm256_hadd_epi16(v[0], v[1]), _mm256_hadd_epi16(v[2], v[3]));
    let s = _mm256_madd_epi16(h, _mm256_set1_epi16(1));
    _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
}

/// `acc + bits(a · b + ROUND)` per lane, the product exact (module doc), so fused.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn add_term(acc: __m256i, a: __m256d, b: __m256d) -> __m256i {
    _mm256_add_epi64(acc, _mm256_castpd_si256(_mm256_fmadd_pd(a, b, _mm256_set1_pd(ROUND))))
}

/// Four f64 from `v`.
#[target_feature(enable = "avx2")]
#[inline]
fn load4(v: &[f64; 4]) -> __m256d {
    // SAFETY: `v` holds four f64.
    unsafe { _mm256_loadu_pd(v.as_ptr()) }
}

/// Rows of `nb` blocks of `B` bytes (`w`: the first row's blocks to the end of the matrix)
/// against one int8 x row with x factors `f` (and min factors `xm`) from `x`, four blocks at a time:
/// `dot` gives a block's eight i32 lanes (with `SMALL`, its sixteen i16 `vpmaddubsw` pairs of
/// weights below 32, for [`transpose_sum16`]), `scales` four blocks' `d` (and `m`) as f64; each
/// block's terms are `(dot + k · xsum) · d · f` (`xsum`: the x block's sum, read when `k` is not
/// 0) and, with `MIN`, `m · xm`, rounded onto the grid.
///
/// A row's last group, when `nb` is not a multiple of four, pairs its blocks with the x blocks
/// and zero x blocks whose factors are zero, so the weight blocks read past the row's end (the
/// next row's, or zeros after the matrix's last row) add terms of exactly `ROUND` (their scales
/// are finite: validated at load), counted and taken off like the others. `false` when the
/// lengths do not match.
#[target_feature(enable = "avx2,f16c,fma")]
#[inline]
fn rows4<const B: usize, const MIN: bool, const SMALL: bool>(
    w: &[u8],
    nb: usize,
    x: &RowX,
    k: i32,
    out: &mut [i64],
    dot: impl Fn(&[u8; B], &[i8; 32]) -> __m256i,
    scales: impl Fn(&[[u8; B]; 4]) -> (__m256d, __m256d),
) -> bool {
    let (xq, f, xm, xsum) = (x.q, x.f, x.m, x.sum);
    let blocks = w.as_chunks::<B>().0;
    let short = |v: usize, used: bool| used && v < nb;
    if blocks.len() < nb * out.len()
        || xq.len() < 32 * nb
        || short(f.len(), true)
        || short(xm.len(), MIN)
        || short(xsum.len(), k != 0)
    {
        return false;
    }
    let group = |acc: __m256i, bg: &[[u8; B]; 4], xg: &[[i8; 32]; 4], fg: &[f64; 4], mg: &[f64; 4], cg: &[i32; 4]| {
        let (d, m) = scales(bg);
        let p = [dot(&bg[0], &xg[0]), dot(&bg[1], &xg[1]), dot(&bg[2], &xg[2]), dot(&bg[3], &xg[3])];
        let sums = if SMALL { transpose_sum16(p) } else { transpose_sum(p) };
        let sums = if k != 0 {
            // SAFETY: `cg` holds four i32.
            let c = unsafe { _mm_loadu_si128(cg.as_ptr() as *const __m128i) };
            _mm_add_epi32(sums, _mm_mullo_epi32(c, _mm_set1_epi32(k)))
        } else {
            sums
        };
        let dots = _mm256_cvtepi32_pd(sums);
        let acc = add_term(acc, dots, _mm256_mul_pd(d, load4(fg)));
        if MIN {
            add_term(acc, m, load4(mg))
        } else {
            acc
        }
    };
    let (full, rest) = (nb / 4, nb % 4);
    let (xgs, fgs, mgs) = (xq.as_chunks::<32>().0.as_chunks::<4>().0, f.as_chunks::<4>().0, xm.as_chunks::<4>().0);
    let cgs = xsum.as_chunks::<4>().0;
    let (mut xt, mut ft, mut mt, mut ct) = ([[0i8; 32]; 4], [0.0; 4], [0.0; 4], [0; 4]);
    for i in 0..rest {
        let j = 4 * full + i;
        xt[i].copy_from_slice(&xq[32 * j..32 * j + 32]);
        ft[i] = f[j];
        mt[i] = xm.get(j).copied().unwrap_or(0.0);
        ct[i] = xsum.get(j).copied().unwrap_or(0);
    }
    let terms = nb.div_ceil(4) * 4 * if MIN { 2 } else { 1 };
    for (r, o) in out.iter_mut().enumerate() {
        fetch_ahead(w, r * nb * B, nb * B);
        let row = &blocks[r * nb..];
        let bgs = row.as_chunks::<4>().0;
        let mut acc = _mm256_setzero_si256();
        for g in 0..full {
            acc = group(acc, &bgs[g], &xgs[g], &fgs[g], mgs.get(g).unwrap_or(&[0.0; 4]), cgs.get(g).unwrap_or(&[0; 4]));
        }
        if rest > 0 {
            let pad;
            let tail = match bgs.get(full) {
                Some(t) => t,
                None => {
                    let mut bg = [[0u8; B]; 4];
                    bg[..rest].copy_from_slice(&row[4 * full..nb]);
                    pad = bg;
                    &pad
                }
            };
            acc = group(acc, tail, &xt, &ft, &mt, &ct);
        }
        *o = total(acc, terms);
    }
    true
}

/// Four f16 (the halves of `h`'s low 64 bits) as f64, exactly.
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn f16x4(h: __m128i) -> __m256d {
    _mm256_cvtps_pd(_mm_cvtph_ps(h))
}

/// Four blocks' scales when each block starts with its f16 d and has no min (Q8_0, Q5_0).
#[target_feature(enable = "avx2,f16c")]
#[inline]
fn leading_d<const B: usize>(b: &[[u8; B]; 4]) -> (__m256d, __m256d) {
    let h = |i: usize| i16::from_le_bytes([b[i][0], b[i][1]]);
    (f16x4(_mm_setr_epi16(h(0), h(1), h(2), h(3), 0, 0, 0, 0)), _mm256_setzero_pd())
}

/// `w` (32 unsigned bytes) times `x` (32 int8), adjacent products summed: eight i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn maddubs(w: __m256i, x: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1))
}

/// Signed int8 weights `w` times `x`: |w| by x with w's sign, the same products with the first
/// operand unsigned, as [`maddubs`] (eight i32 lanes).
#[target_feature(enable = "avx2")]
#[inline]
fn signed_maddubs(w: __m256i, x: __m256i) -> __m256i {
    maddubs(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w))
}

/// The 32 int8 of `x`.
#[target_feature(enable = "avx2")]
#[inline]
fn load_x(x: &[i8; 32]) -> __m256i {
    // SAFETY: 32 bytes.
    unsafe { _mm256_loadu_si256(x.as_ptr() as *const __m256i) }
}

#[target_feature(enable = "avx2,f16c,fma")]
fn q8_0(w: &[u8], nb: usize, x: &RowX, out: &mut [i64]) -> bool {
    let dot = |b: &[u8; 34], x: &[i8; 32]| {
        // SAFETY: the 32 bytes after the block's f16 scale.
        let w = unsafe { _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i) };
        signed_maddubs(w, load_x(x))
    };
    // Signed pairs reach 2·128·127: `dot` widens them itself (SMALL false).
    rows4::<34, false, false>(w, nb, x, 0, out, dot, |b| leading_d(b))
}

#[target_feature(enable = "avx2,f16c,fma")]
fn q4_1(w: &[u8], nb: usize, x: &RowX, out: &mut [i64]) -> bool {
    let dot = |b: &[u8; 20], x: &[i8; 32]| {
        // SAFETY: the 16 bytes after the block's two f16.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i) };
        let m = _mm_set1_epi8(0x0F);
        // Low nibbles are elements 0..16, high ones 16..32.
        let w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(v), m), _mm_and_si128(v, m));
        _mm256_maddubs_epi16(w, load_x(x))
    };
    let scales = |b: &[[u8; 20]; 4]| {
        // Each block starts with d then m: d0 m0 d1 m1 … as f32, then the d's and the m's.
        let dm = |i: usize| i32::from_le_bytes([b[i][0], b[i][1], b[i][2], b[i][3]]);
        let v = _mm256_cvtph_ps(_mm_setr_epi32(dm(0), dm(1), dm(2), dm(3)));
        let v = _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        (_mm256_cvtps_pd(_mm256_castps256_ps128(v)), _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)))
    };
    rows4::<20, true, true>(w, nb, x, 0, out, dot, scales)
}

#[target_feature(enable = "avx2,f16c,fma")]
fn q5_0(w: &[u8], nb: usize, x: &RowX, out: &mut [i64]) -> bool {
    let dot = |b: &[u8; 22], x: &[i8; 32]| {
        // SAFETY: the 16 bytes after the block's f16 and high bits.
        let v = unsafe { _mm_loadu_si128(b.as_ptr().add(6) as *const __m128i) };
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(v), m), _mm_and_si128(v, m));
        // Bit j of qh to byte j: each byte gets its word's byte, every bit but its own set.
        let qh = i32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let spread = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
        let bytes = _mm256_or_si256(
            _mm256_shuffle_epi8(_mm256_set1_epi32(qh), spread),
            _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe),
        );
        let hi = _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10));
        // q·x with q in 0..32: pairs below 2·31·127. The −16·Σx of (q − 16)·x comes per block.
        _mm256_maddubs_epi16(_mm256_or_si256(lo, hi), load_x(x))
    };
    let k = -i32::from(super::value_offset(TensorType::Q5_0));
    rows4::<22, false, true>(w, nb, x, k, out, dot, |b| leading_d(b))
}

/// The sum of `terms` rounded terms in `acc`'s lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn total(acc: __m256i, terms: usize) -> i64 {
    let mut l = [0i64; 4];
    // SAFETY: `l` holds 32 bytes.
    unsafe { _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, acc) };
    let sum = l.iter().fold(0i64, |a, &v| a.wrapping_add(v));
    sum.wrapping_sub((terms as i64).wrapping_mul(ROUND.to_bits() as i64))
}

/// Super-blocks of `B` bytes (256 elements, eight sub-blocks of 32) in `row`, when x, its
/// factors `f` and min factors `xm` cover them all.
fn super_blocks<'a, const B: usize>(row: &'a [u8], xq: &[i8], f: &[f64], xm: &[f64]) -> Option<&'a [[u8; B]]> {
    let (sbs, rest) = row.as_chunks::<B>();
    let n = sbs.len();
    (rest.is_empty() && xq.len() >= 256 * n && f.len() >= 8 * n && xm.len() >= 8 * n).then_some(sbs)
}

/// The 32 x bytes of sub-block `j` of super-block `sb`.
#[target_feature(enable = "avx2")]
#[inline]
fn x_at(xq: &[i8], sb: usize, j: usize) -> __m256i {
    // SAFETY: callers checked (super_blocks) that x covers every super-block.
    unsafe { _mm256_loadu_si256(xq.as_ptr().add(256 * sb + 32 * j) as *const __m256i) }
}

/// The four f64 at `v[at..at + 4]`.
#[inline]
fn four(v: &[f64], at: usize) -> &[f64; 4] {
    v[at..at + 4].first_chunk().unwrap_or(&[0.0; 4])
}

#[target_feature(enable = "avx2,f16c,fma")]
fn q4_k(row: &[u8], xq: &[i8], f: &[f64], xm: &[f64]) -> Option<i64> {
    let sbs = super_blocks::<144>(row, xq, f, xm)?;
    let mask = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_si256();
    for (sb, b) in sbs.iter().enumerate() {
        let dd =
            f16x4(_mm_setr_epi16(i16::from_le_bytes([b[0], b[1]]), i16::from_le_bytes([b[2], b[3]]), 0, 0, 0, 0, 0, 0));
        let (d, dmin) = (_mm256_permute4x64_pd::<0>(dd), _mm256_permute4x64_pd::<0b0101_0101>(dd));
        // The eight 6-bit scales and mins (`scale_min_k4`), four to a word: sub-blocks 0..4 keep
        // the low six bits of bytes 0..4 (scales) and 4..8 (mins); 4..8 take a low (scales) or
        // high (mins) nibble of bytes 8..12 and, as bits 4 and 5, the top two bits of bytes 0..4
        // (scales) or 4..8 (mins).
        let u = |i: usize| u32::from_le_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]);
        let (u0, u1, u2) = (u(0), u(1), u(2));
        let (low6, nib, top2) = (0x3F3F_3F3Fu32, 0x0F0F_0F0Fu32, 0x0303_0303u32);
        let scs = [u0 & low6, (u2 & nib) | (((u0 >> 6) & top2) << 4)];
        let mns = [u1 & low6, ((u2 >> 4) & nib) | (((u1 >> 6) & top2) << 4)];
        let four_f64 = |w: u32| _mm256_cvtepi32_pd(_mm_cvtepu8_epi32(_mm_cvtsi32_si128(w as i32)));
        for (h, j0) in [0, 4].into_iter().enumerate() {
            let mut p = [_mm256_setzero_si256(); 4];
            for (i, pi) in p.iter_mut().enumerate() {
                let j = j0 + i;
                // SAFETY: the 32 bytes of quants sub-blocks 2k and 2k + 1 share, k = j / 2.
                let v = unsafe { _mm256_loadu_si256(b.as_ptr().add(16 + 32 * (j / 2)) as *const __m256i) };
                let w = if j % 2 == 0 { v } else { _mm256_srli_epi16::<4>(v) };
                *pi = _mm256_maddubs_epi16(_mm256_and_si256(w, mask), x_at(xq, sb, j));
            }
            let (sc, mn) = (four_f64(scs[h]), four_f64(mns[h]));
            let dots = _mm256_cvtepi32_pd(transpose_sum16(p));
            acc = add_term(acc, dots, _mm256_mul_pd(_mm256_mul_pd(sc, d), load4(four(f, 8 * sb + j0))));
            // −(dmin · mn): the negation is exact.
            let mins = _mm256_sub_pd(_mm256_setzero_pd(), _mm256_mul_pd(mn, dmin));
            acc = add_term(acc, mins, load4(four(xm, 8 * sb + j0)));
        }
    }
    Some(total(acc, 16 * sbs.len()))
}

#[target_feature(enable = "avx2,f16c,fma")]
fn q6_k(row: &[u8], xq: &[i8], f: &[f64]) -> Option<i64> {
    let sbs = super_blocks::<210>(row, xq, f, f)?;
    let (m4, m2) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x03));
    let mut acc = _mm256_setzero_si256();
    for (sb, b) in sbs.iter().enumerate() {
        let dv = f16x4(_mm_setr_epi16(i16::from_le_bytes([b[208], b[209]]), 0, 0, 0, 0, 0, 0, 0));
        let d = _mm256_permute4x64_pd::<0>(dv);
        // The sixteen int8 scales as i16: the even ones (first halves of the sub-blocks) in the
        // low lane, the odd ones in the high lane, so one in-lane shuffle gives sub-block j's pair.
        // SAFETY: bytes 192..208 are the scales.
        let raw = unsafe { _mm_loadu_si128(b.as_ptr().add(192) as *const __m128i) };
        let halves = _mm_shuffle_epi8(raw, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
        let scales = _mm256_set_m128i(_mm_cvtepi8_epi16(_mm_srli_si128::<8>(halves)), _mm_cvtepi8_epi16(halves));
        // Each half of the super-block (128 values) is four sub-blocks: the low nibbles of ql's
        // two 32-byte rows, then their high nibbles; bits 2r..2r + 2 of qh's 32 bytes on top.
        for h in 0..2 {
            // SAFETY: ql's 64 bytes at 64h < 128 and qh's 32 at 128 + 32h < 192.
            let (l0, l1, qh) = unsafe {
                let p = b.as_ptr();
                (
                    _mm256_loadu_si256(p.add(64 * h) as *const __m256i),
                    _mm256_loadu_si256(p.add(64 * h + 32) as *const __m256i),
                    _mm256_loadu_si256(p.add(128 + 32 * h) as *const __m256i),
                )
            };
            let lows = [
                _mm256_and_si256(l0, m4),
                _mm256_and_si256(l1, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
            ];
            // Bits 2r..2r + 2 of qh moved to bits 4..6 of each byte (they stay within it).
            let highs = [
                _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2)),
                _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C))),
                _mm256_and_si256(qh, _mm256_set1_epi8(0x30)),
                _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(-64))),
            ];
            let mut p = [_mm256_setzero_si256(); 4];
            for (r, pi) in p.iter_mut().enumerate() {
                let j = 4 * h + r;
                let (q, x) = (_mm256_or_si256(lows[r], highs[r]), x_at(xq, sb, j));
                // (q − 32)·x over adjacent pairs (below 2·32·127), then times the scale of each half.
                let pq = _mm256_sub_epi16(_mm256_maddubs_epi16(q, x), _mm256_maddubs_epi16(_mm256_set1_epi8(32), x));
                let at = (2 * j) as u8;
                let pick = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(i16::from_le_bytes([at, at + 1])));
                *pi = _mm256_madd_epi16(pq, pick);
            }
            let dots = _mm256_cvtepi32_pd(transpose_sum(p));
            acc = add_term(acc, dots, _mm256_mul_pd(d, load4(four(f, 8 * sb + 4 * h))));
        }
    }
    Some(total(acc, 8 * sbs.len()))
}

/// `dots4` with AVX2: sixteen i16 lanes per multiply, the four rows' terms in one vector. The
/// same terms, their exact products fused with the rounding add (module doc), so the same bits.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots4<const MIN: bool>(
    w: &[i16],
    a: &[f64],
    b: &[f64],
    (xw, xf, xm): (&[i16], &[f64], &[f64]),
    acc: &mut [i64; 4],
) {
    let mut sum = _mm256_setzero_si256();
    for j in 0..a.len() {
        let wp = w.as_ptr().add(32 * j) as *const __m256i;
        let (w0, w1) = (_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1)));
        let xp = xw.as_ptr().add(128 * j) as *const __m256i;
        let dot = |r: usize| {
            let p = xp.add(2 * r);
            let s = _mm256_add_epi32(
                _mm256_madd_epi16(w0, _mm256_loadu_si256(p)),
                _mm256_madd_epi16(w1, _mm256_loadu_si256(p.add(1))),
            );
            _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
        };
        let d = super::v128::transpose_sum(dot(0), dot(1), dot(2), dot(3));
        let af = _mm256_mul_pd(_mm256_set1_pd(*a.get_unchecked(j)), _mm256_loadu_pd(xf.as_ptr().add(4 * j)));
        sum = add_term(sum, _mm256_cvtepi32_pd(d), af);
        if MIN {
            sum = add_term(sum, _mm256_set1_pd(*b.get_unchecked(j)), _mm256_loadu_pd(xm.as_ptr().add(4 * j)));
        }
    }
    _mm256_storeu_si256(acc.as_mut_ptr() as *mut __m256i, sum);
}

/// `dots4` for two weight rows (`w`, `a`, `b`: row 0's, then row 1's) against one group of four
/// x rows: each x block is loaded once for both, and the eight dots are summed in one
/// transpose. The same terms as two `dots4` calls, so the same bits.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots4x2<const MIN: bool>(
    w: [&[i16]; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    (xw, xf, xm): (&[i16], &[f64], &[f64]),
    acc: &mut [[i64; 4]; 2],
) {
    let mut sum = [_mm256_setzero_si256(); 2];
    for j in 0..a[0].len() {
        let xp = xw.as_ptr().add(128 * j) as *const __m256i;
        let x: [__m256i; 8] = std::array::from_fn(|i| _mm256_loadu_si256(xp.add(i)));
        let half = |r: usize| {
            let wp = w[r].as_ptr().add(32 * j) as *const __m256i;
            let (w0, w1) = (_mm256_loadu_si256(wp), _mm256_loadu_si256(wp.add(1)));
            let d = |k: usize| _mm256_add_epi32(_mm256_madd_epi16(w0, x[2 * k]), _mm256_madd_epi16(w1, x[2 * k + 1]));
            transpose_sum([d(0), d(1), d(2), d(3)])
        };
        let d = [half(0), half(1)];
        group_terms::<MIN>(&mut sum, d, a, b, xf, xm, j);
    }
    for r in 0..2 {
        _mm256_storeu_si256(acc[r].as_mut_ptr() as *mut __m256i, sum[r]);
    }
}

/// Block `j`'s terms of two weight rows against four x rows (`d[r]`: row r's four block dots):
/// `dot · a · f` and, with `MIN`, `b · m`, each rounded onto the grid and added to `sum[r]`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn group_terms<const MIN: bool>(
    sum: &mut [__m256i; 2],
    d: [__m128i; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    xf: &[f64],
    xm: &[f64],
    j: usize,
) {
    let f = _mm256_loadu_pd(xf.as_ptr().add(4 * j));
    for r in 0..2 {
        let af = _mm256_mul_pd(_mm256_set1_pd(*a[r].get_unchecked(j)), f);
        sum[r] = add_term(sum[r], _mm256_cvtepi32_pd(d[r]), af);
        if MIN {
            sum[r] = add_term(sum[r], _mm256_set1_pd(*b[r].get_unchecked(j)), _mm256_loadu_pd(xm.as_ptr().add(4 * j)));
        }
    }
}

/// Eight weight rows on the byte form against four x rows: `u` holds the rows' values as bytes
/// `q + c` (with `SIGNED` the int8 `q` themselves, c = 0) interleaved by four (per block, eight
/// steps of 32 bytes: each row's next four values, row after row), `a` and `b` the eight rows'
/// factors per block; `xq` the x rows' int8 values (128 per block), `xc` their `c · Σx` per
/// block and row. Each step multiplies the eight rows' four values by four x values broadcast
/// (`vpmaddubsw`; |w| by ±x when `SIGNED`, as `q8_0`), so lane r of a sum is row r's: no
/// horizontal adds. Unsigned pairs (below 2·31·127) add in i16 for four steps (at most
/// 8·31·127 = 31 496 < 2^15), then one `vpmaddwd` by ones widens them; signed pairs (up to
/// 2·128·127) widen every step. Less `c · Σx`, the same integer dots as the i16 products, so
/// the same terms; `acc[k][r]`: x row k, weight row r.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dots8x4_bytes<const MIN: bool, const SIGNED: bool>(
    u: &[u8],
    a: &[f64],
    b: &[f64],
    x: (&[i8], &[i32], &[f64], &[f64]),
    acc: &mut [[i64; 8]; 4],
) {
    let ones = _mm256_set1_epi16(1);
    let mut sum = [[_mm256_setzero_si256(); 2]; 4];
    for j in 0..a.len() / 8 {
        let (wp, xp) = (u.as_ptr().add(256 * j) as *const __m256i, x.0.as_ptr().add(128 * j));
        let mut d = [_mm256_setzero_si256(); 4];
        for h in 0..2 {
            let mut p = [_mm256_setzero_si256(); 4];
            for t in 4 * h..4 * h + 4 {
                let w = _mm256_loadu_si256(wp.add(t));
                for (k, pk) in p.iter_mut().enumerate() {
                    let xv = broadcast4(xp.add(32 * k + 4 * t));
                    *pk = if SIGNED {
                        _mm256_add_epi32(*pk, signed_maddubs(w, xv))
                    } else {
                        _mm256_add_epi16(*pk, _mm256_maddubs_epi16(w, xv))
                    };
                }
            }
            for (dk, pk) in d.iter_mut().zip(p) {
                *dk = _mm256_add_epi32(*dk, if SIGNED { pk } else { _mm256_madd_epi16(pk, ones) });
            }
        }
        block_terms8x4::<MIN>(&mut sum, d, a, b, x, j);
    }
    store8x4(sum, acc);
}

/// [`dots8x4_bytes`] for unsigned bytes with `vpdpbusd` (AVX-512 VNNI on 256-bit vectors):
/// each step's four products per lane go straight into i32 lanes (no i16 stage, nothing near
/// saturation even for Q8_0's q + 128), one instruction where AVX2 takes two or three. The
/// same integer dots, so the same terms.
#[target_feature(enable = "avx2,fma,avx512vnni,avx512vl")]
pub unsafe fn dots8x4_vnni<const MIN: bool>(
    u: &[u8],
    a: &[f64],
    b: &[f64],
    x: (&[i8], &[i32], &[f64], &[f64]),
    acc: &mut [[i64; 8]; 4],
) {
    let mut sum = [[_mm256_setzero_si256(); 2]; 4];
    for j in 0..a.len() / 8 {
        let (wp, xp) = (u.as_ptr().add(256 * j) as *const __m256i, x.0.as_ptr().add(128 * j));
        let mut d = [_mm256_setzero_si256(); 4];
        for t in 0..8 {
            let w = _mm256_loadu_si256(wp.add(t));
            for (k, dk) in d.iter_mut().enumerate() {
                *dk = _mm256_dpbusd_epi32(*dk, w, broadcast4(xp.add(32 * k + 4 * t)));
            }
        }
        block_terms8x4::<MIN>(&mut sum, d, a, b, x, j);
    }
    store8x4(sum, acc);
}

/// `dst[32·t + 4·r + i] = src[r][4·t + i] ^ (0x80 if flip)`: eight rows' 32 values, four at a
/// time row after row (an 8×8 transpose of u32), as the batched byte kernels read them.
pub fn interleave8(src: [&[u8; 32]; 8], flip: bool, dst: &mut [u8; 256]) {
    if !present() {
        return interleave8_scalar(src, flip, dst);
    }
    // SAFETY: AVX2 is present; the arrays' sizes keep the loads and stores in range.
    unsafe { interleave8_avx2(src, flip, dst) }
}

/// [`interleave8`] a value at a time.
pub fn interleave8_scalar(src: [&[u8; 32]; 8], flip: bool, dst: &mut [u8; 256]) {
    for (i, d) in dst.iter_mut().enumerate() {
        let (t, r, k) = (i / 32, i % 32 / 4, i % 4);
        *d = src[r][4 * t + k] ^ if flip { 0x80 } else { 0 };
    }
}

#[target_feature(enable = "avx2")]
unsafe fn interleave8_avx2(src: [&[u8; 32]; 8], flip: bool, dst: &mut [u8; 256]) {
    let mask = _mm256_set1_epi8(if flip { 0x80u8 as i8 } else { 0 });
    let r = src.map(|v| _mm256_xor_si256(_mm256_loadu_si256(v.as_ptr() as *const __m256i), mask));
    // Pairs of rows, then fours: lane t of each 128-bit half holds step t (or t + 4).
    let lo32 = |a, b| _mm256_unpacklo_epi32(a, b);
    let hi32 = |a, b| _mm256_unpackhi_epi32(a, b);
    let t = [lo32(r[0], r[1]), hi32(r[0], r[1]), lo32(r[2], r[3]), hi32(r[2], r[3])];
    let u = [lo32(r[4], r[5]), hi32(r[4], r[5]), lo32(r[6], r[7]), hi32(r[6], r[7])];
    // Rows 0..4 of steps 0, 1, 2, 3 (low halves) and 4, 5, 6, 7 (high halves); then rows 4..8.
    let fours = |t: [__m256i; 4]| {
        [
            _mm256_unpacklo_epi64(t[0], t[2]),
            _mm256_unpackhi_epi64(t[0], t[2]),
            _mm256_unpacklo_epi64(t[1], t[3]),
            _mm256_unpackhi_epi64(t[1], t[3]),
        ]
    };
    let (f, g) = (fours(t), fours(u));
    let out = dst.as_mut_ptr() as *mut __m256i;
    for step in 0..4 {
        _mm256_storeu_si256(out.add(step), _mm256_permute2x128_si256::<0x20>(f[step], g[step]));
        _mm256_storeu_si256(out.add(step + 4), _mm256_permute2x128_si256::<0x31>(f[step], g[step]));
    }
}

/// Asks for the cache lines of `b` ahead of their use (one address per 64 bytes): the widening
/// reads eight rows at a time, across the lines, where the hardware's stream prefetch does not
/// see the order.
pub fn prefetch(b: &[u8]) {
    for line in b.chunks(64) {
        // SAFETY: SSE is part of x86_64; a prefetch does not fault.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
    }
}

/// Eight f16 values (`bits`) as f64, exactly (F16C; −0 as +0, as `f16_at` makes it); `None`
/// where one is Inf or NaN.
pub fn f16x8(bits: [u16; 8]) -> Option<[f64; 8]> {
    if !present() || bits.iter().any(|&b| b & 0x7C00 == 0x7C00) {
        return None;
    }
    // SAFETY: AVX2 and F16C are present.
    Some(unsafe { f16x8_f16c(bits) })
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn f16x8_f16c(bits: [u16; 8]) -> [f64; 8] {
    let f = _mm256_cvtph_ps(_mm_loadu_si128(bits.as_ptr() as *const __m128i));
    let zero = _mm256_setzero_pd();
    let mut out = [0.0; 8];
    _mm256_storeu_pd(out.as_mut_ptr(), _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(f)), zero));
    _mm256_storeu_pd(out.as_mut_ptr().add(4), _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(f)), zero));
    out
}

/// [`dots8x4_vnni`] for two eights at once (`u`, `a`, `b`: each eight's, as there) in 512-bit
/// vectors: lanes 0..8 the first eight's rows, 8..16 the second's; the same integer dots and
/// the same f64 terms, eight at a time. `acc[x row][weight row]`, weight rows 0..16.
///
/// # Safety
/// The CPU must have AVX-512 F, VNNI and VL ([`avx512`]); each `u` must hold `256 · nb` bytes,
/// each `a` and `b` `8 · nb` factors, and `x` four rows' `nb` blocks.
#[target_feature(enable = "avx2,avx512f,avx512vnni,avx512vl")]
pub unsafe fn dots16x4_avx512<const MIN: bool>(
    u: [&[u8]; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    (xq, xc, xf, xm): (&[i8], &[i32], &[f64], &[f64]),
    acc: &mut [[i64; 16]; 4],
) {
    let round = _mm512_set1_pd(ROUND);
    let mut sum = [[_mm512_setzero_si512(); 2]; 4];
    for j in 0..a[0].len() / 8 {
        let (w0, w1) = (u[0].as_ptr().add(256 * j) as *const __m256i, u[1].as_ptr().add(256 * j) as *const __m256i);
        let xp = xq.as_ptr().add(128 * j);
        let mut d = [_mm512_setzero_si512(); 4];
        for t in 0..8 {
            let w = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_loadu_si256(w0.add(t))),
                _mm256_loadu_si256(w1.add(t)),
            );
            for (k, dk) in d.iter_mut().enumerate() {
                let x4 = (xp.add(32 * k + 4 * t) as *const i32).read_unaligned();
                *dk = _mm512_dpbusd_epi32(*dk, w, _mm512_set1_epi32(x4));
            }
        }
        let wa = [_mm512_loadu_pd(a[0].as_ptr().add(8 * j)), _mm512_loadu_pd(a[1].as_ptr().add(8 * j))];
        let wb = [_mm512_loadu_pd(b[0].as_ptr().add(8 * j)), _mm512_loadu_pd(b[1].as_ptr().add(8 * j))];
        for (k, dk) in d.into_iter().enumerate() {
            let dk = _mm512_sub_epi32(dk, _mm512_set1_epi32(*xc.get_unchecked(4 * j + k)));
            let dots = [_mm512_castsi512_si256(dk), _mm512_extracti64x4_epi64::<1>(dk)].map(|v| _mm512_cvtepi32_pd(v));
            let (f, m) = (_mm512_set1_pd(*xf.get_unchecked(4 * j + k)), _mm512_set1_pd(*xm.get_unchecked(4 * j + k)));
            for h in 0..2 {
                let v = _mm512_mul_pd(_mm512_mul_pd(dots[h], wa[h]), f);
                sum[k][h] = _mm512_add_epi64(sum[k][h], _mm512_castpd_si512(_mm512_add_pd(v, round)));
                if MIN {
                    let v = _mm512_mul_pd(wb[h], m);
                    sum[k][h] = _mm512_add_epi64(sum[k][h], _mm512_castpd_si512(_mm512_add_pd(v, round)));
                }
            }
        }
    }
    for (o, s) in acc.iter_mut().zip(sum) {
        for (h, sh) in s.into_iter().enumerate() {
            _mm512_storeu_si512(o.as_mut_ptr().add(8 * h) as *mut _, sh);
        }
    }
}

/// The four bytes at `p` in every 32-bit lane.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

/// Block `j`'s terms of the byte kernels: `d[k]`, x row k's dots with the eight weight rows,
/// less `c · Σx`, times `a` and the x factor, and with `MIN` `b` times the x min factor, each
/// rounded onto the grid and added to `sum[k]` (rows 0..4, 4..8).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_terms8x4<const MIN: bool>(
    sum: &mut [[__m256i; 2]; 4],
    d: [__m256i; 4],
    a: &[f64],
    b: &[f64],
    (_, xc, xf, xm): (&[i8], &[i32], &[f64], &[f64]),
    j: usize,
) {
    let wa = [_mm256_loadu_pd(a.as_ptr().add(8 * j)), _mm256_loadu_pd(a.as_ptr().add(8 * j + 4))];
    let wb = [_mm256_loadu_pd(b.as_ptr().add(8 * j)), _mm256_loadu_pd(b.as_ptr().add(8 * j + 4))];
    for (k, dk) in d.into_iter().enumerate() {
        let dk = _mm256_sub_epi32(dk, _mm256_set1_epi32(*xc.get_unchecked(4 * j + k)));
        let dots = [_mm256_castsi256_si128(dk), _mm256_extracti128_si256::<1>(dk)].map(|v| _mm256_cvtepi32_pd(v));
        let (f, m) = (_mm256_set1_pd(*xf.get_unchecked(4 * j + k)), _mm256_set1_pd(*xm.get_unchecked(4 * j + k)));
        for h in 0..2 {
            sum[k][h] = add_term(sum[k][h], dots[h], _mm256_mul_pd(wa[h], f));
            if MIN {
                sum[k][h] = add_term(sum[k][h], wb[h], m);
            }
        }
    }
}

/// The byte kernels' sums into `acc[x row][weight row]`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn store8x4(sum: [[__m256i; 2]; 4], acc: &mut [[i64; 8]; 4]) {
    for (o, s) in acc.iter_mut().zip(sum) {
        for (h, sh) in s.into_iter().enumerate() {
            _mm256_storeu_si256(o.as_mut_ptr().add(4 * h) as *mut __m256i, sh);
        }
    }
}

/// `sigmoid_q16` four lanes at a time over `v`'s leading multiple of four, in place (each lane
/// the same integers: the same clamp, roundings, table reads and floor division); returns
/// what is left (all of `v` without AVX2).
pub fn sigmoids(v: &mut [i64]) -> &mut [i64] {
    if !present() {
        return v;
    }
    let (fours, rest) = v.as_chunks_mut::<4>();
    // SAFETY: AVX2 is present.
    unsafe { sigmoid_fours(fours, crate::numerics::exp2_table()) };
    rest
}

/// [`sigmoid4`] over `fours`, in one AVX2 function so that it inlines.
#[target_feature(enable = "avx2")]
fn sigmoid_fours(fours: &mut [[i64; 4]], t: &[i64; crate::numerics::EXP2_TABLE_LEN]) {
    for y in fours {
        // SAFETY: the caller's AVX2; sigmoid4 reads the table at indices up to 1024.
        *y = unsafe { sigmoid4(*y, t) };
    }
}

/// `rshr(x, s)` per lane for `0 <= x < 2^63` and `1 <= s <= 63` (and for s = 0 where x is
/// even): the quotient, plus one when the remainder plus the quotient's lowest bit passes half.
#[target_feature(enable = "avx2")]
#[inline]
fn rshr_pos(x: __m256i, s: __m256i) -> __m256i {
    let one = _mm256_set1_epi64x(1);
    let q = _mm256_srlv_epi64(x, s);
    let r = _mm256_and_si256(x, _mm256_sub_epi64(_mm256_sllv_epi64(one, s), one));
    let half = _mm256_sllv_epi64(one, _mm256_sub_epi64(s, one));
    let up = _mm256_cmpgt_epi64(_mm256_add_epi64(r, _mm256_and_si256(q, one)), half);
    _mm256_sub_epi64(q, up)
}

/// Four `sigmoid_q16` (`t`: the exp2 table). The bounds that let 32-bit multiplies serve:
/// |y| ≤ 2^23 after the clamp, log2e < 2^31, the table's steps below 2^21 times r < 2^10, the
/// quotient ≤ 2^30 and the divisor 2^30 + t ≤ 2^31.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sigmoid4(y: [i64; 4], t: &[i64; crate::numerics::EXP2_TABLE_LEN]) -> [i64; 4] {
    use crate::numerics::{LOG2E_Q30, SIGMOID_SAT_Q16};
    let set = _mm256_set1_epi64x;
    let y = _mm256_loadu_si256(y.as_ptr() as *const __m256i);
    let (sat, nsat) = (set(SIGMOID_SAT_Q16), set(-SIGMOID_SAT_Q16));
    let ys = _mm256_blendv_epi8(y, sat, _mm256_cmpgt_epi64(y, sat));
    let ys = _mm256_blendv_epi8(ys, nsat, _mm256_cmpgt_epi64(nsat, ys));
    // |ys| < 2^31 sits in each lane's low half, which is all vpmuludq reads.
    let z = rshr_pos(_mm256_mul_epu32(_mm256_abs_epi32(ys), set(LOG2E_Q30)), set(26));
    // exp2_q20(−z): the integer part's magnitude sh = ceil(z / 2^20), the fraction (−z) mod 2^20.
    let frac = _mm256_and_si256(_mm256_sub_epi64(_mm256_setzero_si256(), z), set(0xF_FFFF));
    let sh = _mm256_srli_epi64::<20>(_mm256_add_epi64(z, set(0xF_FFFF)));
    let (k, r) = (_mm256_srli_epi64::<10>(frac), _mm256_and_si256(frac, set(1023)));
    let t0 = _mm256_i64gather_epi64::<8>(t.as_ptr(), k);
    let t1 = _mm256_i64gather_epi64::<8>(t.as_ptr().add(1), k);
    let v = _mm256_add_epi64(t0, rshr_pos(_mm256_mul_epu32(_mm256_sub_epi64(t1, t0), r), set(10)));
    // sh = 0 only where z = 0: then v = T[0] = 2^30, even, which rshr_pos by 0 keeps; 0
    // beyond 62.
    let tv = _mm256_andnot_si256(_mm256_cmpgt_epi64(sh, set(62)), rshr_pos(v, sh));
    // floor(n / (2^30 + t)), n = 2^60 (y ≥ 0) or t·2^30: in f64 (exact operands), then the
    // integer remainder corrects the quotient by one either way, as floor_div.
    let low = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(tv, _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0)));
    let tf = _mm256_cvtepi32_pd(low);
    let q30 = _mm256_set1_pd((1u64 << 30) as f64);
    let neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), ys);
    let nf = _mm256_blendv_pd(_mm256_set1_pd((1u64 << 60) as f64), _mm256_mul_pd(tf, q30), _mm256_castsi256_pd(neg));
    let qf = _mm256_floor_pd(_mm256_div_pd(nf, _mm256_add_pd(tf, q30)));
    let q = _mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(qf));
    let den = _mm256_add_epi64(tv, set(1 << 30));
    let n = _mm256_blendv_epi8(set(1 << 60), _mm256_slli_epi64::<30>(tv), neg);
    let rem = _mm256_sub_epi64(n, _mm256_mul_epu32(q, den));
    // q − 1 where the remainder is negative, q + 1 where it reaches the divisor.
    let q = _mm256_add_epi64(q, _mm256_cmpgt_epi64(_mm256_setzero_si256(), rem));
    let q = _mm256_sub_epi64(q, _mm256_cmpgt_epi64(rem, _mm256_sub_epi64(den, set(1))));
    let mut out = [0i64; 4];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, q);
    out
}

/// Attention scores of one query head against four cached positions (`k[t]`: position t's key
/// values of the head, `nb` whole blocks of 32; `ks[t]`, `ke[t]`: their block scales and
/// exponents), as [`attention`](super::attention)'s scalar loop makes them: per block
/// `shl(dot · qs · ks, qe + ke − a)`, summed. Here the dot is `vpmaddubsw` of |q| by k with q's
/// sign (pairs at most 2·128·127: q and k are in [−127, 127]), the shift a power of two in f64:
/// `dot · (qs · ks · 2^sh)` is exact (under 2^42, `sh` at most 8), and adding `ROUND` rounds it
/// half to even as `shl` does; a shift below −200 is taken as −200, where both give 0.
///
/// # Safety
/// The CPU must have AVX2 and FMA ([`present`]); `q` holds `32 · nb` values, `qs` and `qe` `nb`,
/// each `k[t]` `32 · nb` and each `ks[t]` and `ke[t]` `nb`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn scores4(
    (q, qs, qe): (&[i8], &[i32], &[i32]),
    k: [&[i8]; 4],
    ks: [&[i32]; 4],
    ke: [&[i32]; 4],
    a: i32,
) -> [i64; 4] {
    let nb = qs.len();
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    for b in 0..nb {
        let qv = _mm256_loadu_si256(q.as_ptr().add(32 * b) as *const __m256i);
        let qa = _mm256_abs_epi8(qv);
        let p = [0, 1, 2, 3].map(|t| {
            let kv = _mm256_loadu_si256(k[t].as_ptr().add(32 * b) as *const __m256i);
            _mm256_madd_epi16(_mm256_maddubs_epi16(qa, _mm256_sign_epi8(kv, qv)), ones)
        });
        let dots = _mm256_cvtepi32_pd(transpose_sum(p));
        let at = |v: [&[i32]; 4]| {
            _mm_setr_epi32(
                *v[0].get_unchecked(b),
                *v[1].get_unchecked(b),
                *v[2].get_unchecked(b),
                *v[3].get_unchecked(b),
            )
        };
        let scale = _mm256_cvtepi32_pd(_mm_mullo_epi32(at(ks), _mm_set1_epi32(*qs.get_unchecked(b))));
        let sh = _mm_add_epi32(at(ke), _mm_set1_epi32(*qe.get_unchecked(b) - a));
        let sh = _mm_max_epi32(sh, _mm_set1_epi32(-200));
        let pow2 = _mm256_slli_epi64::<52>(_mm256_cvtepi32_epi64(_mm_add_epi32(sh, _mm_set1_epi32(1023))));
        acc = add_term(acc, dots, _mm256_mul_pd(scale, _mm256_castsi256_pd(pow2)));
    }
    let mut l = [0i64; 4];
    _mm256_storeu_si256(l.as_mut_ptr() as *mut __m256i, acc);
    l.map(|v| less_rounds(v, nb, false))
}
