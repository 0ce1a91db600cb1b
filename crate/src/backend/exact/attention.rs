//! Exact attention: the KV cache of a layer ([`LayerCache`]), one head for one query
//! ([`attend_head`]: scores, softmax, values) and rows of queries over all heads ([`attend_rows`]).

use super::{quantize_rows, IMat};
use crate::error::{Error, Result};
use crate::model::AttnParams;
use crate::numerics::{attention_scale, dot_i8, exp2_q20, normalize, rshr, shl, LOG2E_Q30};
use rayon::prelude::*;

/// Guard bits of the attention accumulators (scores and values) below their largest term exponent.
const GUARD: i32 = 8;

/// The KV cache of one layer: int8 values, one integer scale and one exponent per block (32 or
/// fewer within a head).
#[derive(Default)]
pub(super) struct LayerCache {
    pub(super) kq: Vec<i8>,
    pub(super) ke: Vec<i32>,
    pub(super) ks: Vec<i32>,
    pub(super) vq: Vec<i8>,
    pub(super) ve: Vec<i32>,
    pub(super) vs: Vec<i32>,
}

impl LayerCache {
    /// Quantize `k` and `v` per head and append them, one position per row.
    pub(super) fn append(&mut self, k: &IMat, v: &IMat, hd: usize) {
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
pub(super) fn attention_checked(p: &AttnParams) -> Result<(i32, i32)> {
    let hd = p.head_dim;
    if hd > 256 || p.n_head_kv == 0 || !p.n_head.is_multiple_of(p.n_head_kv) {
        return Err(Error::InvalidArgument(format!(
            "exact attention: {} heads, {} KV heads of {hd}",
            p.n_head, p.n_head_kv
        )));
    }
    attention_scale(p.scale).ok_or_else(|| Error::InvalidArgument(format!("attention scale {}", p.scale)))
}

/// Query blocks of one head: int8 values, scales and exponents.
struct QHead<'a> {
    q: &'a [i8],
    s: &'a [i32],
    e: &'a [i32],
}

/// The keys one query head sees: positions `lo..=pos` of KV head `kb0 / nbh`'s cache.
#[derive(Clone, Copy)]
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
/// `a` ([`shl`]), summed, times `sm`. With AVX2 and whole blocks, four positions at a time
/// ([`avx2::scores4`](super::avx2::scores4), the same integers); else compiled for AVX2 too,
/// where the dots vectorize wider.
fn scores(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    if qh.q.len().is_multiple_of(32) && super::avx2::present() {
        let mut out = Vec::with_capacity(k.pos + 1 - k.lo);
        let nb = qh.s.len();
        let key = |j: usize| {
            let (at, kb) = (j * k.kv_dim + k.kvo, j * k.kv_blocks + k.kb0);
            (&k.c.kq[at..at + 32 * nb], &k.c.ks[kb..kb + nb], &k.c.ke[kb..kb + nb])
        };
        let mut j = k.lo;
        while j + 3 <= k.pos {
            let ks = [j, j + 1, j + 2, j + 3].map(key);
            // SAFETY: AVX2 and FMA are present; `key` gives whole blocks, as many as the query's.
            let s = unsafe {
                super::avx2::scores4((qh.q, qh.s, qh.e), ks.map(|t| t.0), ks.map(|t| t.1), ks.map(|t| t.2), a)
            };
            out.extend(s.map(|v| v * sm as i64));
            j += 4;
        }
        if j <= k.pos {
            out.extend(scores_rows(qh, &Keys { lo: j, ..*k }, a, sm));
        }
        return out;
    }
    scores_rows(qh, k, a, sm)
}

/// [`scores`] a position at a time.
fn scores_rows(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64> {
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
                // Whole blocks as arrays, so the dot's length is known and it vectorizes.
                let dot = match (<&[i8; 32]>::try_from(qv), <&[i8; 32]>::try_from(kv)) {
                    (Ok(qv), Ok(kv)) => dot_i8(qv, kv),
                    _ => dot_i8(qv, kv),
                };
                s += shl(dot as i64 * (qh.s[b] * k.c.ks[kb + b]) as i64, qh.e[b] + k.c.ke[kb + b] - a);
            }
            out.push(s * sm as i64);
        }
        out
    }
    with_avx2!(body(qh: &QHead, k: &Keys, a: i32, sm: i32) -> Vec<i64>)
}

/// One head of attention for one query: returns the head's output accumulator and its exponent.
/// Keys `lo..=pos` of kv head `g` are visible.
#[allow(clippy::too_many_arguments)]
fn attend_head(
    qh: QHead,
    c: &LayerCache,
    vf: Option<&[f64]>,
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
        let term = |(pj, j): (&i64, usize)| (pj * c.vs[at(j, b)] as i64, c.ve[at(j, b)] - vmax + GUARD);
        let span = |j: usize| j * kv_dim + kvo + r.start..j * kv_dim + kvo + r.end;
        let mut acc = [0.0; 32];
        match vf {
            Some(vf) => values_into(&mut acc, p.iter().zip(lo..=pos).map(|t| (term(t), &vf[span(t.1)]))),
            None => values_into(&mut acc, p.iter().zip(lo..=pos).map(|t| (term(t), &c.vq[span(t.1)]))),
        }
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

/// A cached value as [`values_into`] reads it: the int8 itself, or already as f64 (exact).
trait Value: Copy {
    fn f64(self) -> f64;
}

impl Value for i8 {
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Value for f64 {
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

/// `o[e] += shl(ps · v[e], sh)` for each `((ps, sh), v)` of `terms`, in f64: every term and
/// partial sum is an integer below 2^53 in magnitude (attention's values bound them below 2^47),
/// so each f64 operation is exact and the sum is the i64 one. A left shift is exact, so it goes
/// on `ps` once per position (and the loop vectorizes); a right shift rounds each term. With
/// `FMA`, whole blocks multiply and add in one fused operation: the product is exact, so the
/// same sum.
#[inline(always)]
fn values_body<'a, V: Value + 'a, const FMA: bool>(
    o: &mut [f64; 32],
    terms: impl Iterator<Item = ((i64, i32), &'a [V])>,
) {
    // A local copy and plain loops, so the sums can stay in registers (a closure here would be
    // compiled once, outside the AVX2 copy). Whole 32-value blocks at a left shift (every term
    // in practice: the shift is the position's exponent less the largest, plus 8) take a loop
    // of fixed length, which keeps the sums in registers.
    let mut acc = *o;
    let mut terms = terms.peekable();
    while let Some(((ps, sh), v)) = terms.next() {
        if let Some((c, v)) = whole(ps, sh, v) {
            let mut a32 = acc;
            add_scaled::<V, FMA>(&mut a32, c, v);
            while let Some((c, v)) = terms.peek().and_then(|&((ps, sh), v)| whole(ps, sh, v)) {
                add_scaled::<V, FMA>(&mut a32, c, v);
                terms.next();
            }
            acc = a32;
            continue;
        }
        let n = v.len().min(32);
        if sh >= 0 {
            let c = (ps << sh) as f64;
            for t in 0..n {
                acc[t] += c * v[t].f64();
            }
        } else {
            let s = sh.unsigned_abs();
            for t in 0..n {
                acc[t] += rshr(ps * v[t].f64() as i64, s) as f64;
            }
        }
    }
    *o = acc;
}

/// A term of a whole 32-value block at a left shift, as its f64 factor and the block.
#[inline(always)]
fn whole<V: Value>(ps: i64, sh: i32, v: &[V]) -> Option<(f64, &[V; 32])> {
    let v = <&[V; 32]>::try_from(v).ok()?;
    (sh >= 0).then(|| ((ps << sh) as f64, v))
}

/// `acc[t] += c · v[t]` over a whole block (with `FMA` fused: only where the CPU has it, as a
/// fused multiply-add is a library call elsewhere).
#[inline(always)]
fn add_scaled<V: Value, const FMA: bool>(acc: &mut [f64; 32], c: f64, v: &[V; 32]) {
    for t in 0..32 {
        if FMA {
            acc[t] = c.mul_add(v[t].f64(), acc[t]);
        } else {
            acc[t] += c * v[t].f64();
        }
    }
}

/// [`values_body`] on cached values (int8, or a batch's already in f64): with AVX2 and FMA where
/// the CPU has them.
fn values_into<'a, V: Value + 'a>(o: &mut [f64; 32], terms: impl Iterator<Item = ((i64, i32), &'a [V])>) {
    #[cfg(target_arch = "x86_64")]
    if super::avx2::present() {
        #[target_feature(enable = "avx2,fma")]
        fn wide<'a, V: Value + 'a>(o: &mut [f64; 32], terms: impl Iterator<Item = ((i64, i32), &'a [V])>) {
            values_body::<V, true>(o, terms)
        }
        // SAFETY: AVX2 and FMA are present.
        return unsafe { wide(o, terms) };
    }
    values_body::<V, false>(o, terms)
}

/// Each row of `q` attends, head by head, to the keys `lo..=hi` of `c` that `visible(row)` gives
/// ([`attend_head`]); the heads are brought to the row's largest exponent (rshr) and normalized.
pub(super) fn attend_rows(
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
    // A batch reads each cached value once per query row and head of its group: converted to
    // f64 once here, not at every read.
    let vf: Option<Vec<f64>> = (q.rows >= 8).then(|| c.vq.iter().map(|&v| v as f64).collect());
    let heads: Vec<(Vec<i64>, i32)> = (0..q.rows * p.n_head)
        .into_par_iter()
        .map(|ih| {
            let (i, h) = (ih / p.n_head, ih % p.n_head);
            let (lo, hi) = visible(i);
            let b = i * qr.nb + h * nbh..i * qr.nb + (h + 1) * nbh;
            let qh =
                QHead { q: &qr.q[i * q.cols + h * hd..i * q.cols + (h + 1) * hd], s: &qr.s[b.clone()], e: &qr.e[b] };
            attend_head(qh, c, vf.as_deref(), kv_blocks, h / group, hd, lo, hi, scale)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::exact::tests::assert_same;

    /// [`scores`] four positions at a time (AVX2) equals [`scores_rows`] on random heads of 64
    /// and 256 values, visible spans that leave 0 to 3 positions over, and block exponents far
    /// apart (shifts that round, and ones far past the mantissa).
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn scores_equal_scores_rows() {
        let mut rng = crate::tiny::SplitMix64(23);
        let mut int = |lo: i64, hi: i64| lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64;
        for (hd, kv_heads) in [(64, 3), (256, 1)] {
            let nbh = hd / 32;
            let (kv_blocks, kv_dim, n) = (kv_heads * nbh, kv_heads * hd, 45);
            let mut c = LayerCache::default();
            for _ in 0..n * kv_dim {
                c.kq.push(int(-127, 127) as i8);
            }
            for _ in 0..n * kv_blocks {
                c.ks.push(int(1, 130) as i32);
                c.ke.push(if int(0, 9) == 0 { int(-400, -60) } else { int(-40, 0) } as i32);
            }
            let q: Vec<i8> = (0..hd).map(|_| int(-127, 127) as i8).collect();
            let qs: Vec<i32> = (0..nbh).map(|_| int(1, 130) as i32).collect();
            let qe: Vec<i32> = (0..nbh).map(|_| int(-40, 0) as i32).collect();
            for (g, lo, pos) in [(0, 0, 0), (kv_heads - 1, 0, 44), (0, 3, 9), (kv_heads - 1, 7, 13), (0, 1, 39)] {
                let keys = Keys { c: &c, lo, pos, kv_dim, kvo: g * hd, kv_blocks, kb0: g * nbh };
                let qh = QHead { q: &q, s: &qs, e: &qe };
                let kk_max =
                    (lo..=pos).flat_map(|j| (0..nbh).map(move |b| j * kv_blocks + g * nbh + b)).map(|i| c.ke[i]).max();
                let a = qe.iter().max().unwrap() + kk_max.unwrap() - GUARD;
                let sm = int(1, 1 << 15) as i32;
                let (got, want) = (scores(&qh, &keys, a, sm), scores_rows(&qh, &keys, a, sm));
                assert_same(&format!("head of {hd}, keys {lo}..={pos}"), &got, &want);
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
                values_into(&mut got, terms.iter().map(|(ps, sh, v)| ((*ps, *sh), &v[..])));
                let vf: Vec<Vec<f64>> = terms.iter().map(|t| t.2.iter().map(|&v| v as f64).collect()).collect();
                let mut got_f = [0.0; 32];
                values_into(&mut got_f, terms.iter().zip(&vf).map(|((ps, sh, _), v)| ((*ps, *sh), &v[..])));
                assert_eq!(
                    got.map(f64::to_bits),
                    got_f.map(f64::to_bits),
                    "case {case}, {lanes} lanes: int8 and f64 values"
                );
                let mut unfused = [0.0; 32];
                values_body::<_, false>(&mut unfused, terms.iter().map(|(ps, sh, v)| ((*ps, *sh), &v[..])));
                assert_eq!(got.map(f64::to_bits), unfused.map(f64::to_bits), "case {case}, {lanes} lanes: fused");
                let mut want = vec![0i64; lanes];
                for (ps, sh, v) in &terms {
                    want.iter_mut().zip(v).for_each(|(o, &v)| *o += shl(ps * v as i64, *sh));
                }
                let got: Vec<i64> = got[..lanes].iter().map(|&v| v as i64).collect();
                assert_same(&format!("case {case}, {lanes} lanes"), &got, &want);
            }
        }
    }
}
