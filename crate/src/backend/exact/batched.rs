//! The matmul `x · wᵀ` ([`matmul`], [`matmuls`]): x rows quantized once; a single row through the
//! one-row kernels, a batch through weight rows widened once ([`Widened`]) against groups of four
//! x rows ([`dots4`]).

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::rowdot::{row_dot, RowX, Terms};
#[cfg(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128")))]
use super::v128;
use super::widen::{byte_offset, Widened};
use super::{ldexp, quantize_rows, IMat, Matrix, MatrixData, QRows};
use crate::numerics::{normalize, shl};
use crate::quant::TensorType;
use rayon::prelude::*;
use std::sync::Arc;

/// 1.5 · 2^52. Adding it to an f64 of magnitude below 2^51 rounds that value to an integer,
/// ties to even (IEEE round to nearest), and leaves the integer in the sum's low bits: the
/// batched matmul rounds each term with it, exactly as [`shl`] does.
pub(super) const ROUND: f64 = 6_755_399_441_055_744.0;

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
    #[cfg(target_arch = "x86_64")]
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
    acc.map(|v| less_rounds(v, nb, MIN))
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
        return acc.map(|r| r.map(|v| less_rounds(v, nb, MIN)));
    }
    [dots4::<MIN>(w[0], a[0], b[0], x), dots4::<MIN>(w[1], a[1], b[1], x)]
}

/// Eight weight rows of the byte form (`u`, `a`, `b`: one eight of [`Widened`]; values `q + c`,
/// [`byte_offset`]) times one group of four x rows ([`XGroups::group_bytes`]), as
/// `[x row][weight row]`; `signed` for Q8_0. AVX2 only: [`byte_offset`] chooses the form only
/// where AVX2 is present. With AVX-512 VNNI, [`avx2::dots8x4_vnni`].
#[cfg(target_arch = "x86_64")]
fn dots8x4_bytes<const MIN: bool>(
    signed: bool,
    u: &[u8],
    a: &[f64],
    b: &[f64],
    x: (&[i8], &[i32], &[f64], &[f64]),
) -> [[i64; 8]; 4] {
    dots8x4_with::<MIN>(avx2::vnni() && !signed, signed, u, a, b, x)
}

/// [`dots8x4_bytes`] with the VNNI kernel (`vnni`, where present; unsigned bytes only) or the
/// AVX2 one.
#[cfg(target_arch = "x86_64")]
fn dots8x4_with<const MIN: bool>(
    vnni: bool,
    signed: bool,
    u: &[u8],
    a: &[f64],
    b: &[f64],
    x: (&[i8], &[i32], &[f64], &[f64]),
) -> [[i64; 8]; 4] {
    let (xq, xc, xf, xm) = x;
    let nb = a.len() / 8;
    assert!(avx2::present() && (!vnni || avx2::vnni() && !signed));
    assert!(u.len() == 256 * nb && a.len() == 8 * nb && b.len() == 8 * nb);
    assert!(xq.len() == 128 * nb && xc.len() == 4 * nb && xf.len() == 4 * nb && xm.len() == 4 * nb);
    let mut acc = [[0i64; 8]; 4];
    // SAFETY: AVX2 (and for the VNNI kernel, AVX-512 VNNI and VL) is present; the lengths
    // checked above keep every load in bounds.
    unsafe {
        match (vnni, signed) {
            (true, _) => avx2::dots8x4_vnni::<MIN>(u, a, b, x, &mut acc),
            (false, true) => avx2::dots8x4_bytes::<MIN, true>(u, a, b, x, &mut acc),
            (false, false) => avx2::dots8x4_bytes::<MIN, false>(u, a, b, x, &mut acc),
        }
    };
    acc.map(|r| r.map(|v| less_rounds(v, nb, MIN)))
}

/// Sixteen weight rows of the byte form (two eights: `u`, `a`, `b` each eight's) times one
/// group of four x rows, as `[x row][weight row]`, in 512-bit vectors
/// ([`avx2::dots16x4_avx512`]; unsigned bytes only, where [`avx2::avx512`] holds).
#[cfg(target_arch = "x86_64")]
fn dots16x4_bytes<const MIN: bool>(
    u: [&[u8]; 2],
    a: [&[f64]; 2],
    b: [&[f64]; 2],
    x: (&[i8], &[i32], &[f64], &[f64]),
) -> [[i64; 16]; 4] {
    let (xq, xc, xf, xm) = x;
    let nb = a[0].len() / 8;
    assert!(avx2::avx512());
    assert!((0..2).all(|h| u[h].len() == 256 * nb && a[h].len() == 8 * nb && b[h].len() == 8 * nb));
    assert!(xq.len() == 128 * nb && xc.len() == 4 * nb && xf.len() == 4 * nb && xm.len() == 4 * nb);
    let mut acc = [[0i64; 16]; 4];
    // SAFETY: AVX-512 F, VNNI and VL are present; the lengths checked above keep every load in
    // bounds.
    unsafe { avx2::dots16x4_avx512::<MIN>(u, a, b, x, &mut acc) };
    acc.map(|r| r.map(|v| less_rounds(v, nb, MIN)))
}

/// A kernel's sum over `nb` blocks less the ROUND each of its terms added (two per block with
/// `MIN`).
pub(super) fn less_rounds(v: i64, nb: usize, min: bool) -> i64 {
    let terms = (nb * if min { 2 } else { 1 }) as i64;
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
///
/// [`rshr`]: crate::numerics::rshr
pub(super) fn matmul(x: &IMat, w: &Matrix) -> IMat {
    let [y] = matmuls(x, [w]);
    y
}

/// [`matmul`] of `x` by each of `ws` (q/k/v, gate/up), with `x` quantized once. A decode step
/// (one row) runs the rows of every weight as one parallel pass: a pass costs a hand-off to
/// rayon's threads and back, which a browser's workers make slowly.
pub(super) fn matmuls<const N: usize>(x: &IMat, ws: [&Matrix; N]) -> [IMat; N] {
    // Shared by the products' x rows, each on its own weight's grid.
    let q = Arc::new(quantize_rows(x, x.cols));
    let xrs = ws.map(|w| {
        assert_eq!(x.cols, w.cols, "matmul of {}-wide rows by a {}-wide weight", x.cols, w.cols);
        // The byte kernels read the int8 values themselves: a batch for them needs no i16 copy.
        let i16s = x.rows == 1 || !matches!(w.data, MatrixData::Blocks { ty, .. } if byte_offset(ty).is_some());
        XRows::new(Arc::clone(&q), x, w.max_exp, i16s)
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

/// The grid sums of `w`'s rows times the x rows, in tiles ([`tile_at`]).
fn products(w: &Matrix, xr: &XRows) -> Vec<i64> {
    match &w.data {
        MatrixData::Blocks { ty, raw } => block_products(*ty, raw, w.widened.as_deref(), w.rows, xr),
        MatrixData::Elems { m: wm, e: we } => elem_products(wm, we, w.rows, xr),
    }
}

/// Where the products keep weight row `j`'s sum with x row `i` (`m` weight rows, `n` x rows):
/// in tiles of [`CHUNK`] weight rows (one parallel task's), each `[x row][weight row]`, so
/// that one x row's sums lie in runs of `CHUNK` (the last tile's rows: `m % CHUNK`).
fn tile_at(m: usize, n: usize, j: usize, i: usize) -> usize {
    let (c, r) = (j / CHUNK, j % CHUNK);
    c * CHUNK * n + i * CHUNK.min(m - c * CHUNK) + r
}

/// The products' rows (`m` weight rows in tiles, [`tile_at`]), each normalized on its grid.
fn normalized(xr: &XRows, m: usize, acc_t: &[i64]) -> IMat {
    let n = xr.n;
    let mut out = IMat::zeros(n, m);
    if n == 1 {
        out.e[0] = normalize(acc_t, xr.grid[0], &mut out.m);
        return out;
    }
    if m > 0 {
        // Each x row gathered from the tiles in runs of CHUNK, then normalized.
        out.m.par_chunks_mut(m).zip(out.e.par_iter_mut()).enumerate().for_each_init(
            || vec![0i64; m],
            |acc, (i, (om, oe))| {
                for (c, run) in acc.chunks_mut(CHUNK).enumerate() {
                    let at = tile_at(m, n, c * CHUNK, i);
                    let len = run.len();
                    put::<CHUNK>(run, &acc_t[at..], len);
                }
                *oe = normalize(acc, xr.grid[i], om);
            },
        );
    }
    out
}

/// The matmul's x rows: quantized, with each block's shift to its row's grid.
struct XRows {
    n: usize,
    k: usize,
    q: Arc<QRows>,
    /// The int8 values widened to i16 (empty where the byte kernels take the batch).
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
    /// `q`: `x` quantized ([`quantize_rows`]); `max_exp`: the weight's largest scale exponent;
    /// `i16s`: whether to widen the values to i16 (`w`, empty otherwise).
    fn new(q: Arc<QRows>, x: &IMat, max_exp: i32, i16s: bool) -> XRows {
        let nb = q.nb;
        let grid: Vec<i32> = q.emax.iter().map(|&e| max_exp + e - MATMUL_GUARD).collect();
        let w = if i16s { q.q.iter().map(|&v| v as i16).collect() } else { Vec::new() };
        let sh: Vec<i32> = q.e.iter().enumerate().map(|(b, &e)| e - grid[b / nb]).collect();
        let ssum: Vec<i32> = q.sum.iter().zip(&q.s).map(|(&v, &s)| v * s).collect();
        let f = q.s.iter().zip(&sh).map(|(&s, &e)| ldexp(s as f64, e)).collect();
        let m = ssum.iter().zip(&sh).map(|(&s, &e)| ldexp(s as f64, e)).collect();
        XRows { n: x.rows, k: x.cols, q, w, sh, ssum, grid, f, m }
    }
}

/// Weight rows per rayon task.
pub(super) const CHUNK: usize = 16;

/// The grid sums of `m` quantized weight rows (`raw`, or its rows already widened) times the x
/// rows, in tiles ([`tile_at`]).
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
                    own.fill(ty, &raw[c * CHUNK * row_bytes..(c * CHUNK + rows) * row_bytes], row_bytes);
                    &*own
                }
            };
            #[cfg(target_arch = "x86_64")]
            if bytes.is_some() {
                // Groups outermost: a group's x values stay in cache across the chunk's rows,
                // taken eight (or with AVX-512 sixteen) at a time (the padding rows are left out).
                let (signed, eights) = (bytes == Some(0) && ty == TensorType::Q8_0, rows.div_ceil(8));
                // Two eights at a time in 512-bit vectors where the CPU has them.
                let pairs = if !signed && avx2::avx512() { eights / 2 } else { 0 };
                let eight = |e: usize| {
                    let f = 8 * nb * e..8 * nb * (e + 1);
                    (&wd.u[256 * nb * e..256 * nb * (e + 1)], &wd.a[f.clone()], &wd.b[f])
                };
                for g in 0..n.div_ceil(4) {
                    let xv = xg.group_bytes(g);
                    for pair in 0..pairs {
                        let ((u0, a0, b0), (u1, a1, b1)) = (eight(2 * pair), eight(2 * pair + 1));
                        let d = if min {
                            dots16x4_bytes::<true>([u0, u1], [a0, a1], [b0, b1], xv)
                        } else {
                            dots16x4_bytes::<false>([u0, u1], [a0, a1], [b0, b1], xv)
                        };
                        for (k, dk) in d.iter().enumerate().take(n - 4 * g) {
                            put::<16>(&mut out[(4 * g + k) * rows + 16 * pair..], dk, rows - 16 * pair);
                        }
                    }
                    for e in 2 * pairs..eights {
                        let (u, a, b) = eight(e);
                        let d = if min {
                            dots8x4_bytes::<true>(signed, u, a, b, xv)
                        } else {
                            dots8x4_bytes::<false>(signed, u, a, b, xv)
                        };
                        for (k, dk) in d.iter().enumerate().take(n - 4 * g) {
                            put::<8>(&mut out[(4 * g + k) * rows + 8 * e..], dk, rows - 8 * e);
                        }
                    }
                }
                return;
            }
            // Weight rows j0 and j1 against x group g.
            let pair = |g: usize, j0: usize, j1: usize| {
                let (a, b) =
                    ([j0, j1].map(|j| &wd.a[j * nb..(j + 1) * nb]), [j0, j1].map(|j| &wd.b[j * nb..(j + 1) * nb]));
                let (w, xv) = ([j0, j1].map(|j| &wd.w[j * k..(j + 1) * k]), xg.group(g));
                if min {
                    dots4x2::<true>(w, a, b, xv)
                } else {
                    dots4x2::<false>(w, a, b, xv)
                }
            };
            // Groups outermost here too; weight rows two at a time (an odd last row paired with
            // itself).
            for g in 0..n.div_ceil(4) {
                for j0 in (0..rows).step_by(2) {
                    let d = pair(g, j0, (j0 + 1).min(rows - 1));
                    for (j, dj) in (j0..rows).zip(d) {
                        for (i, v) in (4 * g..n).zip(dj) {
                            out[i * rows + j] = v;
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

/// The first `min(left, W)` sums of `sums` into `out` (a kernel's `W` weight rows, of which
/// `left` are real; a tile's run): a whole run as one fixed-size copy (inlined; a `memmove`
/// call per run cost more).
fn put<const W: usize>(out: &mut [i64], sums: &[i64], left: usize) {
    match (out.first_chunk_mut::<W>(), sums.first_chunk::<W>()) {
        (Some(dst), Some(src)) if left >= W => *dst = *src,
        _ => out[..left.min(W)].copy_from_slice(&sums[..left.min(W)]),
    }
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
    let mut ahead = 0;
    for (jj, o) in out.iter_mut().enumerate() {
        let j = j0 + jj;
        ahead ^= fetch_ahead(raw, j * row_bytes, row_bytes);
        *o = row_dot::<true>(ty, &raw[j * row_bytes..(j + 1) * row_bytes], rx, &mut terms);
    }
    std::hint::black_box(ahead);
}

/// How far ahead of the weight row being read the one-row paths ask for its lines. The
/// hardware's stream prefetch alone left them waiting on memory at every new line (on an
/// AVX-512 Xeon, native decode ran 1.3–1.7× faster with it, wasm32's about 1.15×; 1 and 4 KiB
/// were slower).
pub(super) const AHEAD: usize = 2048;

/// Asks for the lines of `w[at + AHEAD..][..len]` (what is there of it) before they are read:
/// a prefetch on x86_64; where there is none (wasm32), one load per line, whose bytes it
/// returns xor-ed, for the caller to keep (`black_box`) once its rows are done: the loads then
/// wait in the background, where keeping each byte at once made the thread wait for it.
pub(super) fn fetch_ahead(w: &[u8], at: usize, len: usize) -> u8 {
    let b = w.get(at + AHEAD..).unwrap_or_default();
    let b = &b[..len.min(b.len())];
    #[cfg(target_arch = "x86_64")]
    {
        avx2::prefetch(b);
        0
    }
    #[cfg(not(target_arch = "x86_64"))]
    b.chunks(64).fold(0, |a, line| a ^ line[0])
}

/// As [`block_products`] for F16 / F32 weights: one term per element.
fn elem_products(wm: &[i32], we: &[i32], m: usize, x: &XRows) -> Vec<i64> {
    let (n, k, nb) = (x.n, x.k, x.q.nb);
    let mut acc_t = vec![0i64; m * n];
    acc_t.par_chunks_mut(CHUNK * n).enumerate().for_each(|(c, out)| {
        let rows = out.len() / n;
        for jj in 0..rows {
            let j = c * CHUNK + jj;
            for i in 0..n {
                let o = &mut out[i * rows + jj];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::exact::blocks_max_exp;
    #[cfg(target_arch = "x86_64")]
    use crate::backend::exact::rowdot::grid4;
    use crate::backend::exact::tests::{assert_same, i16s};

    /// `n` random f64 factors: integers below 2^11 in magnitude times powers of two from 2^-30.
    fn f64s(n: usize, rng: &mut crate::tiny::SplitMix64) -> Vec<f64> {
        (0..n)
            .map(|_| libm::ldexp((rng.next_u64() % 4096) as f64 - 2048.0, (rng.next_u64() % 40) as i32 - 30))
            .collect()
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
                let xr = XRows::new(Arc::new(quantize_rows(&x, x.cols)), &x, max_exp, true);
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
            // Whole groups of four, and two blocks after them (half a group).
            for nb in [2, 4, 6, 8, 18, 20] {
                let (raw, x) = random_case(&mut rng, ty, 5, 1, 32 * nb);
                let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
                let xr = XRows::new(Arc::new(quantize_rows(&x, x.cols)), &x, max_exp, true);
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
                    assert_eq!(done, nb, "{}: the four-block loop and the two after it cover the row", ty.name());
                    got.push(acc);
                    want.push(row_dot::<false>(ty, row, &rx, &mut terms));
                }
                assert_same(&format!("{} k={}: grid4 by weight row", ty.name(), 32 * nb), &got, &want);
            }
        }
    }

    /// The batched kernel ([`dots4`], and on x86_64 and wasm32 with simd128 its 128-bit kernel
    /// directly) against the portable one, with and without min terms, on awkward block counts.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn vector_dots4_equals_scalar() {
        let mut rng = crate::tiny::SplitMix64(13);
        for nb in [1, 2, 3, 5, 9, 17, 40] {
            let (w, xw) = (i16s(&mut rng, 32 * nb, 4096), i16s(&mut rng, 128 * nb, 127));
            let (a, b, xf, xm) =
                (f64s(nb, &mut rng), f64s(nb, &mut rng), f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
            let x = (&xw[..], &xf[..], &xm[..]);
            let run = |min: bool, f: &dyn Fn(&mut [i64; 4])| {
                let mut acc = [0i64; 4];
                f(&mut acc);
                acc.map(|v| less_rounds(v, nb, min))
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

    /// The batched path (widened rows) equals the one-row path (`row_dot`) bit for bit on
    /// every block type: random quants and scales (subnormal f16 included), x
    /// rows and blocks of very different magnitudes, a zero block, a padded last group.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn batched_products_equal_row_by_row() {
        use crate::tiny::SplitMix64;
        use TensorType::*;
        let mut rng = SplitMix64(3);
        // 19 weight rows: chunks of 16 (two eights) and 3 (one, padded); 29: 16 and 13 (two
        // eights, the second padded).
        let n = 7;
        for (m, ty) in
            [19, 29].into_iter().flat_map(|m| [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4K, Q5K, Q6K].map(|ty| (m, ty)))
        {
            // 18 blocks of 32 where the type allows: the row path's four-block loops leave two.
            let k = if ty.block_len() == 32 { 576 } else { 512 };
            let (raw, x) = random_case(&mut rng, ty, m, n, k);
            let max_exp = blocks_max_exp(ty, &raw).expect("finite scales");
            let xr = XRows::new(Arc::new(quantize_rows(&x, k)), &x, max_exp, true);
            let all = block_products(ty, &raw, None, m, &xr);
            // The same from rows kept widened (ExactWeight::keep_widened).
            let row_bytes = k / ty.block_len() * ty.block_bytes();
            let kept: Vec<Widened> = raw
                .chunks(CHUNK * row_bytes)
                .map(|rows| {
                    let mut w = Widened::default();
                    w.fill(ty, rows, row_bytes);
                    w
                })
                .collect();
            assert_eq!(block_products(ty, &raw, Some(&kept), m, &xr), all, "{}: rows kept widened", ty.name());
            for i in 0..n {
                let xi = IMat { rows: 1, cols: k, m: x.row(i).to_vec(), e: vec![x.e[i]] };
                let one =
                    block_products(ty, &raw, None, m, &XRows::new(Arc::new(quantize_rows(&xi, k)), &xi, max_exp, true));
                for (j, &v) in one.iter().enumerate() {
                    assert_eq!(all[tile_at(m, n, j, i)], v, "{} m={m}: weight row {j}, x row {i}", ty.name());
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
        let (w, xw) = (i16s(&mut rng, 32 * nb, 4096), i16s(&mut rng, 128 * nb, 127));
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
        let (w0, w1, xw) = (i16s(&mut rng, 32 * nb, 4096), i16s(&mut rng, 32 * nb, 15), i16s(&mut rng, 128 * nb, 127));
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
            acc.map(|v| less_rounds(v, nb, min))
        };
        let want = |min| [scalar(&w0, &a0, &b0, min), scalar(&w1, &a1, &b1, min)];
        assert_eq!(dots4x2::<true>([&w0, &w1], [&a0, &a1], [&b0, &b1], x), want(true), "with min terms");
        assert_eq!(dots4x2::<false>([&w0, &w1], [&a0, &a1], [&b0, &b1], x), want(false), "without");
    }

    /// The byte kernels against the portable i16 one on the same values, for each offset the
    /// byte form uses and Q8_0's signed bytes (AVX2) or bytes q + 128 (VNNI), at the extremes (every x at ±127, every weight
    /// at its largest or smallest) and at random.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dots8x4_bytes_equals_dots4_scalar() {
        if !avx2::present() {
            return;
        }
        // Both kernels where the CPU has AVX-512 VNNI; said when it has not.
        let kernels: &[bool] = if avx2::vnni() { &[false, true] } else { &[false] };
        if !avx2::vnni() {
            eprintln!("no AVX-512 VNNI on this CPU: dots8x4_vnni is not run here, only the AVX2 kernel");
        }
        let mut rng = crate::tiny::SplitMix64(7);
        let nb = 13;
        // (offset c, the values' range: q in lo..=hi, signed for Q8_0)
        for (c, lo, hi, signed) in [
            (0u8, 0i16, 15i16, false),
            (0, 0, 31, false),
            (8, -8, 7, false),
            (16, -16, 15, false),
            (0, -128, 127, true),
            (128, -128, 127, false),
        ] {
            // Cases: at random; the largest weight by every x at 127, then at −127 (the largest
            // sums of one sign, which the i16 reduction must hold); the smallest by mixed signs.
            for case in 0..4 {
                let pick = |rng: &mut crate::tiny::SplitMix64, lo: i16, hi: i16| match case {
                    0 => lo + (rng.next_u64() % (hi - lo + 1) as u64) as i16,
                    1 | 2 => hi,
                    _ => lo,
                };
                let q: Vec<Vec<i16>> = (0..8).map(|_| (0..32 * nb).map(|_| pick(&mut rng, lo, hi)).collect()).collect();
                let xw: Vec<i16> = (0..128 * nb)
                    .map(|i| match case {
                        0 => pick(&mut rng, -127, 127),
                        1 => 127,
                        2 => -127,
                        _ if i % 3 == 0 => -127,
                        _ => 127,
                    })
                    .collect();
                // The eight rows interleaved four values at a time, as Widened keeps them.
                let mut u = vec![0u8; 256 * nb];
                for (r, qr) in q.iter().enumerate() {
                    for (i, &v) in qr.iter().enumerate() {
                        u[256 * (i / 32) + 32 * (i % 32 / 4) + 4 * r + i % 4] = (v as i8 as u8).wrapping_add(c);
                    }
                }
                let xq: Vec<i8> = xw.iter().map(|&v| v as i8).collect();
                let xc: Vec<i32> = (0..4 * nb)
                    .map(|s| c as i32 * xw[128 * (s / 4) + 32 * (s % 4)..][..32].iter().map(|&v| v as i32).sum::<i32>())
                    .collect();
                let (a, b): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
                    (0..8).map(|_| (f64s(nb, &mut rng), f64s(nb, &mut rng))).unzip();
                let eights = |v: &[Vec<f64>]| (0..8 * nb).map(|i| v[i % 8][i / 8]).collect::<Vec<f64>>();
                let (xf, xm) = (f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
                // [x row][weight row], as the kernel gives them.
                let want = |min: bool| {
                    let mut out = [[0i64; 8]; 4];
                    for r in 0..8 {
                        let mut acc = [0i64; 4];
                        if min {
                            dots4_scalar::<true>(&q[r], &a[r], &b[r], (&xw, &xf, &xm), &mut acc);
                        } else {
                            dots4_scalar::<false>(&q[r], &a[r], &b[r], (&xw, &xf, &xm), &mut acc);
                        }
                        (0..4).for_each(|k| out[k][r] = less_rounds(acc[k], nb, min));
                    }
                    out
                };
                let (a8, b8) = (eights(&a), eights(&b));
                let x = (&xq[..], &xc[..], &xf[..], &xm[..]);
                // q + 128 by x would saturate `vpmaddubsw`'s pairs: VNNI only; signed bytes:
                // AVX2 only (VNNI takes Q8_0 as q + 128).
                for &vnni in kernels.iter().filter(|&&v| if v { !signed } else { c != 128 }) {
                    let what = format!("c={c} q in {lo}..={hi} case {case}, vnni {vnni}");
                    let (with, without) = (want(true), want(false));
                    assert_eq!(dots8x4_with::<true>(vnni, signed, &u, &a8, &b8, x), with, "{what}, with min terms");
                    assert_eq!(dots8x4_with::<false>(vnni, signed, &u, &a8, &b8, x), without, "{what}, without");
                }
            }
        }
    }

    /// The 512-bit kernel (two eights) against the 256-bit VNNI kernel on each eight, at random
    /// and at the extremes (every byte 0xFF by every x at ±127), with and without min terms.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn dots16x4_avx512_equals_two_dots8x4() {
        if !avx2::avx512() {
            eprintln!("no AVX-512 F and VNNI on this CPU: dots16x4_avx512 is not run here");
            return;
        }
        let mut rng = crate::tiny::SplitMix64(23);
        let nb = 11;
        for case in 0..3 {
            let byte = |rng: &mut crate::tiny::SplitMix64| if case == 0 { rng.next_u64() as u8 } else { 0xFF };
            let u: Vec<Vec<u8>> = (0..2).map(|_| (0..256 * nb).map(|_| byte(&mut rng)).collect()).collect();
            let xq: Vec<i8> = (0..128 * nb)
                .map(|_| match case {
                    0 => ((rng.next_u64() % 255) as i16 - 127) as i8,
                    1 => 127,
                    _ => -127,
                })
                .collect();
            let xc: Vec<i32> =
                (0..4 * nb).map(|s| 128 * xq[32 * s..32 * s + 32].iter().map(|&v| v as i32).sum::<i32>()).collect();
            let (a, b): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
                (0..2).map(|_| (f64s(8 * nb, &mut rng), f64s(8 * nb, &mut rng))).unzip();
            let (xf, xm) = (f64s(4 * nb, &mut rng), f64s(4 * nb, &mut rng));
            let x = (&xq[..], &xc[..], &xf[..], &xm[..]);
            for min in [false, true] {
                let (u2, a2, b2) = ([&u[0][..], &u[1][..]], [&a[0][..], &a[1][..]], [&b[0][..], &b[1][..]]);
                let got =
                    if min { dots16x4_bytes::<true>(u2, a2, b2, x) } else { dots16x4_bytes::<false>(u2, a2, b2, x) };
                for h in 0..2 {
                    let want = if min {
                        dots8x4_with::<true>(true, false, &u[h], &a[h], &b[h], x)
                    } else {
                        dots8x4_with::<false>(true, false, &u[h], &a[h], &b[h], x)
                    };
                    for k in 0..4 {
                        assert_eq!(got[k][8 * h..8 * h + 8], want[k], "case {case}, min {min}: x row {k}, eight {h}");
                    }
                }
            }
        }
    }
}
