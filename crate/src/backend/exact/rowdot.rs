//! One weight row (its GGUF blocks) times one quantized x row ([`row_dot`]): the integer block
//! dots ([`dots`]) and the four-blocks-at-a-time loops ([`grid4`]) in 128-bit vectors, with
//! their portable versions.

#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
use super::{batched::ROUND, v128};
use super::{decode_block, f16_at, BlockScale};
use crate::numerics::{dot_i8, shl};
use crate::quant::{scale_min_k4, TensorType};

/// One sub-block's terms: `t1` at the scale exponent `e1` and the min term `t2` at `e2`
/// (both before adding the x block exponent).
#[derive(Clone, Copy, Default)]
pub(super) struct Terms {
    t1: i64,
    e1: i32,
    t2: i64,
    e2: i32,
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

    /// Σ q[j]·x[j] over Q5_0's values q = lo | 16·hi in 0..32 (nibbles of `qs`, bits of `qh`).
    #[inline(always)]
    pub fn q5<const V: bool>(qs: &[u8; 16], qh: u32, x: &[i16; 32]) -> i32 {
        #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
        if V {
            return hsum(q5_v(qs, qh, x));
        }
        scalar::nibbles(qs, x) + 16 * scalar::bits(qh, x)
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

    /// Q5_0's values `q = lo | 16·hi` (0..32: the nibbles of `qs`, the bits of `qh`) against
    /// x, before the horizontal sum: `scalar::nibbles` + 16·`scalar::bits` in one pass, the high bits
    /// spread to bytes ([`bit_bytes`]) and or-ed into the nibbles.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    pub fn q5_v(qs: &[u8; 16], qh: u32, x: &[i16; 32]) -> I {
        let (b0, b1) = bit_bytes(qh, 0x10);
        let v = load(qs, 0);
        let ((l0, l1), (h0, h1)) = (widen_u8(or(lo_nibbles(v), b0)), widen_u8(or(hi_nibbles(v), b1)));
        add32(add32(madd(l0, load(x, 0)), madd(l1, load(x, 8))), add32(madd(h0, load(x, 16)), madd(h1, load(x, 24))))
    }
}

/// One x row times one weight row of a common type, four blocks at a time (x86_64, wasm32 with
/// simd128): the four blocks' dots in one vector, each term `dot · d · f` (and `m · xm` for mins)
/// rounded onto the grid in f64 as in `dots4`, the same terms as [`row_dot`]'s scalar loop.
/// Returns the sum and the number of blocks done; the scalar loop takes the rest (every block
/// without a vector unit).
pub(super) mod grid4 {
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    use super::{b16, b32, dots, v128::*, x32, ROUND};

    /// The f16 at `at`, `at + stride`, `at + 2·stride`, `at + 3·stride` as f64, exactly
    /// ([`f16_f64x8`]).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn f16x4<const N: usize>(b: &[u8; N], at: usize, stride: usize) -> (F, F) {
        let h = |i: usize| u16::from_le_bytes([b[at + i * stride], b[at + i * stride + 1]]);
        let [f01, f23, _, _] = f16_f64x8(u16s([h(0), h(1), h(2), h(3)]));
        (f01, f23)
    }

    /// Four blocks' d and m (the f16 pair each block starts with, `stride` bytes apart) as f64,
    /// exactly: `((d01, d23), (m01, m23))`.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn dm_x4<const N: usize>(b: &[u8; N], stride: usize) -> ((F, F), (F, F)) {
        let w = |i: usize| u32::from_le_bytes([b[i * stride], b[i * stride + 1], b[i * stride + 2], b[i * stride + 3]]);
        let [d01, d23, m01, m23] = f16_f64x8(evens_odds16(u32s([w(0), w(1), w(2), w(3)])));
        ((d01, d23), (m01, m23))
    }

    /// Four blocks' dots (`dot`) times their scales (`d01`, `d23`) and the x factors `f`, rounded
    /// and added to `acc`.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_terms(acc: &mut [I; 2], dot: I, (d01, d23): (F, F), f: &[f64; 4]) {
        add_rounded(&mut acc[0], mul_f(mul_f(cvt_lo(dot), d01), load_f(f, 0)));
        add_rounded(&mut acc[1], mul_f(mul_f(cvt_hi(dot), d23), load_f(f, 2)));
    }

    /// Two terms `v`, rounded onto the grid (adding [`ROUND`], taken off in [`total`]) and added
    /// to `acc` as i64 bit patterns.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_rounded(acc: &mut I, v: F) {
        *acc = add64(*acc, to_bits(add_f(v, splat_f(ROUND))));
    }

    /// Four min terms: scales (`m01`, `m23`) times the x factors `xm`, rounded and added.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_mins(acc: &mut [I; 2], (m01, m23): (F, F), xm: &[f64; 4]) {
        add_rounded(&mut acc[0], mul_f(m01, load_f(xm, 0)));
        add_rounded(&mut acc[1], mul_f(m23, load_f(xm, 2)));
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

    /// The two blocks after the first `done` (`B2` bytes: two blocks), their x values and
    /// factors, when there are two: SmolLM2's 576-wide rows end with two blocks after four
    /// groups, which half a group (lanes 0 and 1) takes instead of the scalar loop.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[allow(clippy::type_complexity)]
    fn two<'a, const B2: usize>(
        row: &'a [u8],
        x: &'a [i16],
        f: &'a [f64],
        done: usize,
    ) -> Option<(&'a [u8; B2], &'a [i16; 64], &'a [f64; 2])> {
        let r = row.get(B2 / 2 * done..)?.first_chunk()?;
        Some((r, x.get(32 * done..)?.first_chunk()?, f.get(done..)?.first_chunk()?))
    }

    /// Two blocks' dots (lanes 0 and 1 of `dot`) times their scales `d` and x factors `f`,
    /// rounded and added to `acc` as [`add_terms`] does.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn add_two(acc: &mut [I; 2], dot: I, d: F, f: &[f64; 2]) {
        add_rounded(&mut acc[0], mul_f(mul_f(cvt_lo(dot), d), load_f(f, 0)));
    }

    /// The f16 at `at` and `at + stride` as f64, exactly ([`f16_f64x8`]).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn f16x2<const N: usize>(b: &[u8; N], at: usize, stride: usize) -> F {
        let h = |i: usize| u16::from_le_bytes([b[at + i * stride], b[at + i * stride + 1]]);
        f16_f64x8(u16s([h(0), h(1), 0, 0]))[0]
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
        if let Some((r, xg, fg)) = two::<68>(row, x, f, done) {
            let dv = |i: usize| dots::q8_v(b32(&r[34 * i + 2..]), x32(&xg[32 * i..]));
            add_two(&mut acc, transpose_sum(dv(0), dv(1), zero(), zero()), f16x2(r, 0, 34), fg);
            done += 2;
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
            let (d, m) = dm_x4(r, 20);
            add_terms(&mut acc, dot, d, fg);
            add_mins(&mut acc, m, mg);
            done += 4;
        }
        if let (Some((r, xg, fg)), Some(mg)) =
            (two::<40>(row, x, f, done), m.get(done..).and_then(|m| m.first_chunk::<2>()))
        {
            let dv = |i: usize| dots::nibbles_v(b16(&r[20 * i + 4..]), x32(&xg[32 * i..]));
            add_two(&mut acc, transpose_sum(dv(0), dv(1), zero(), zero()), f16x2(r, 0, 20), fg);
            add_rounded(&mut acc[0], mul_f(f16x2(r, 2, 20), load_f(mg, 0)));
            done += 2;
        }
        (total(acc, 2 * done), done)
    }

    /// The Q5_0 block at the start of `b` (d, the high bits, the nibbles) against the 32 x
    /// values at the start of `x`, before the horizontal sum.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[inline(always)]
    fn q5_block(b: &[u8], x: &[i16]) -> I {
        dots::q5_v(b16(&b[6..]), u32::from_le_bytes([b[2], b[3], b[4], b[5]]), x32(x))
    }

    /// Q5_0: `sum` holds the x block sums (for the −16 offset).
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    pub fn q5_0(row: &[u8], x: &[i16], sum: &[i32], f: &[f64]) -> (i64, usize) {
        let mut done = 0;
        let mut acc = [zero(); 2];
        for ((r, xg, fg), sg) in groups::<88>(row, x, f).zip(sum.as_chunks::<4>().0) {
            let dv = |i: usize| q5_block(&r[22 * i..], &xg[32 * i..]);
            let dot = transpose_sum(dv(0), dv(1), dv(2), dv(3));
            let dot = sub32(dot, shl32::<4>(load(sg, 0)));
            add_terms(&mut acc, dot, f16x4(r, 0, 22), fg);
            done += 4;
        }
        if let (Some((r, xg, fg)), Some(sg)) = (two::<44>(row, x, f, done), sum.get(done..done + 2)) {
            let dv = |i: usize| q5_block(&r[22 * i..], &xg[32 * i..]);
            let dot = transpose_sum(dv(0), dv(1), zero(), zero());
            let dot = sub32(dot, shl32::<4>(load(&[sg[0], sg[1], 0, 0], 0)));
            add_two(&mut acc, dot, f16x2(r, 0, 22), fg);
            done += 2;
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
            let dot = dots::q5::<V>(b16(&b[6..]), qh, xb) - 16 * xsum[0];
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
pub(super) struct RowX<'a> {
    pub(super) q: &'a [i8],
    pub(super) w: &'a [i16],
    pub(super) sh: &'a [i32],
    pub(super) s: &'a [i32],
    pub(super) sum: &'a [i32],
    pub(super) ssum: &'a [i32],
    /// Per block, `s_b · 2^sh` and `s_b · Σq · 2^sh`: the x factors of the f64 terms.
    pub(super) f: &'a [f64],
    pub(super) m: &'a [f64],
}

/// One weight row (its GGUF blocks) times one x row, accumulated on the grid. The common
/// types have their own loops (four blocks at a time in 128-bit vectors, [`grid4`]); the rest
/// go through [`block_terms`]. Same terms either way. `V`: use the vector kernels where the
/// target has them; `row_dot::<false>` is the portable path, the tests' reference.
pub(super) fn row_dot<const V: bool>(ty: TensorType, row: &[u8], x: &RowX, terms: &mut [Terms; 8]) -> i64 {
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
                let dot = dots::q5::<V>(b16(&blk[6..]), qh, xw) - 16 * sum;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::exact::tests::{assert_same, i16s};

    // The row paths ([`row_dot`], [`grid4`]) against the portable one: in `batched`'s tests,
    // which quantize their x rows as the matmul does (`XRows`).

    /// The vector f16 conversion ([`v128::f16_f64x8`]) against the value `±m · 2^e` of every
    /// finite f16 bit pattern, −0 included, bit for bit.
    #[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn f16_f64x8_equals_every_finite_f16() {
        let value = |h: u16| {
            let (e, frac) = ((h >> 10) & 31, (h & 1023) as f64);
            let v = if e == 0 { frac * 2f64.powi(-24) } else { (1024.0 + frac) * 2f64.powi(e as i32 - 25) };
            if h & 0x8000 != 0 {
                -v
            } else {
                v
            }
        };
        let finite: Vec<u16> = (0..=u16::MAX).filter(|h| h & 0x7C00 != 0x7C00).collect();
        let (mut got, mut want) = (vec![], vec![]);
        for c in finite.chunks_exact(8) {
            let lanes = [[c[0], c[1], c[2], c[3]], [c[4], c[5], c[6], c[7]]];
            let v = v128::evens_odds16(v128::u32s(std::array::from_fn(|i| {
                lanes[0][i] as u32 | (lanes[1][i] as u32) << 16
            })));
            let f = v128::f16_f64x8(v);
            for (k, fk) in f.iter().enumerate() {
                let [a, b] = v128::i64s(v128::to_bits(*fk));
                got.extend([a, b]);
                let h = |i: usize| lanes[k / 2][2 * (k % 2) + i];
                want.extend([value(h(0)).to_bits() as i64, value(h(1)).to_bits() as i64]);
            }
        }
        assert_same("f16 bits as f64 (8 per step: d0..d3 then m0..m3)", &got, &want);
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
            got.push(dots::q5::<true>(b16(&blk[4..]), qh, &x));
            want.push(dots::scalar::nibbles(b16(&blk[4..]), &x) + 16 * dots::scalar::bits(qh, &x));
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
        // 13 results per trial: q8, nibbles, two half_nibbles, Q5_0, eight Q6_K sub-blocks.
        assert_same("dots (13 per trial: q8, nibbles, half lo/hi, q5, q6k j=0..8)", &got, &want);
    }
}
