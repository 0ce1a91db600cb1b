//! The exact mode's integer arithmetic ("numerics v2", specified in `docs/NUMERICS.md`).
//!
//! Every function here uses integer operations only. Values are integers with a
//! power-of-two exponent; every rounding is [`rshr`] (round half to even) or a
//! floor division, stated where it happens. Tables of non-linear functions are
//! built with the pure-Rust `libm` crate, rounded to integers once, and covered
//! by [`numerics_digest`].

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The spec version, hashed first into the digest.
pub const VERSION: &str = "edgeproof numerics v2";

/// Mantissa width of a normalized activation row: max |m| in [2^23, 2^24).
pub const ROW_BITS: u32 = 24;
/// log2(e) in Q30.
pub const LOG2E_Q30: i64 = 1_549_082_005;
/// 2·sqrt(2/π) in Q30 (GELU-tanh as a sigmoid).
pub const GELU_2C_Q30: i64 = 1_713_444_047;
/// 0.044715 in Q30.
pub const GELU_K_Q30: i64 = 48_012_366;
/// Sigmoid arguments saturate at ±2^7 (in Q16: ±2^23).
pub const SIGMOID_SAT_Q16: i64 = 1 << 23;
/// GELU's cubic is evaluated on g saturated at ±2^5 (in Q16: ±2^21); beyond it the sigmoid is saturated anyway.
pub const GELU_SAT_Q16: i64 = 1 << 21;
/// Entries of the exp2 table: 2^(k/1024) for k = 0..=1024 (the last one closes the interpolation).
pub const EXP2_TABLE_LEN: usize = 1025;

/// `x / 2^s`, rounded to nearest, ties to even.
#[inline]
pub fn rshr(x: i64, s: u32) -> i64 {
    match s {
        0 => x,
        // Branch-free: round up when the remainder, plus the quotient's lowest bit, passes half
        // (above half, or a tie with an odd quotient).
        1..=63 => {
            let q = x >> s;
            let r = (x as u64) & ((1u64 << s) - 1);
            q + ((r + (q & 1) as u64) > (1u64 << (s - 1))) as i64
        }
        // |x| < 2^63, so |x / 2^s| < 1/2.
        _ => 0,
    }
}

/// `x · 2^s`: an exact left shift for `s >= 0` (the caller bounds |x| so it fits), [`rshr`] otherwise.
#[inline]
pub fn shl(x: i64, s: i32) -> i64 {
    if s >= 0 {
        x << s
    } else {
        rshr(x, s.unsigned_abs())
    }
}

/// Number of significant bits of |x| (0 for 0).
#[inline]
pub fn bitlen(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Scale an i64 row with exponent `exp` to mantissas of at most `bits` bits:
/// max |m| in [2^(bits-1), 2^bits). Returns the row's exponent; an all-zero row keeps `exp`.
pub fn normalize_bits(acc: &[i64], exp: i32, bits: u32, out: &mut [i32]) -> i32 {
    // Plain loops, compiled for AVX2 too where the CPU has it (every op ends here: the rows of
    // logits are 49 152 and 262 144 wide).
    #[inline(always)]
    fn body(acc: &[i64], exp: i32, bits: u32, out: &mut [i32]) -> i32 {
        let n = acc.len().min(out.len());
        let mut max = 0u64;
        for a in &acc[..n] {
            max = max.max(a.unsigned_abs());
        }
        if max == 0 {
            out.fill(0);
            return exp;
        }
        let mut s = bitlen(max) as i32 - bits as i32;
        if s > 0 && rshr(max as i64, s as u32) >= 1 << bits {
            s += 1;
        }
        if s <= 0 {
            let l = s.unsigned_abs();
            for i in 0..n {
                out[i] = (acc[i] << l) as i32;
            }
        } else {
            // One shift for the whole row.
            let s = s as u32;
            for i in 0..n {
                out[i] = rshr(acc[i], s) as i32;
            }
        }
        exp + s
    }
    with_avx2!(body(acc: &[i64], exp: i32, bits: u32, out: &mut [i32]) -> i32)
}

/// [`normalize_bits`] to [`ROW_BITS`]: what every op ends with.
pub fn normalize(acc: &[i64], exp: i32, out: &mut [i32]) -> i32 {
    normalize_bits(acc, exp, ROW_BITS, out)
}

/// A sum of `(mantissa, exponent)` terms per element, rounded to one shared exponent with
/// mantissas of `bits` bits. Terms are first put on a grid 60 bits below the largest one
/// (exact left shifts, or [`rshr`]), summed, then normalized.
pub fn align_terms(terms: &[[(i64, i32); 2]], bits: u32, out: &mut [i32]) -> i32 {
    let top = terms.iter().flatten().filter(|t| t.0 != 0).map(|&(m, e)| e + bitlen(m.unsigned_abs()) as i32).max();
    let Some(top) = top else {
        out.iter_mut().for_each(|o| *o = 0);
        return 0;
    };
    let grid = top - 60;
    let acc: Vec<i64> = terms.iter().map(|t| t.iter().map(|&(m, e)| shl(m, e - grid)).sum()).collect();
    normalize_bits(&acc, grid, bits, out)
}

/// An f16's bits as `(signed mantissa, exponent)`: normal `1024 + frac` at `E - 25`,
/// subnormal `frac` at `-24`. `None` for Inf and NaN.
pub fn f16_parts(bits: u16) -> Option<(i32, i32)> {
    let (e, frac) = (((bits >> 10) & 31) as i32, (bits & 1023) as i32);
    let (m, e) = match e {
        31 => return None,
        0 => (frac, -24),
        _ => (1024 + frac, e - 25),
    };
    Some((if bits & 0x8000 != 0 { -m } else { m }, e))
}

/// An f32's bits as `(signed mantissa, exponent)`: normal `2^23 + frac` at `E - 150`,
/// subnormal `frac` at `-149`. `None` for Inf and NaN.
pub fn f32_parts(bits: u32) -> Option<(i32, i32)> {
    let (e, frac) = (((bits >> 23) & 255) as i32, (bits & 0x7F_FFFF) as i32);
    let (m, e) = match e {
        255 => return None,
        0 => (frac, -149),
        _ => ((1 << 23) + frac, e - 150),
    };
    Some((if bits & 0x8000_0000 != 0 { -m } else { m }, e))
}

/// `(m, e)` of a finite f32 with trailing zeros stripped (`None` for Inf and NaN).
pub fn f32_const(v: f32) -> Option<(i32, i32)> {
    f32_parts(v.to_bits()).map(strip_zeros)
}

/// The attention scale as `(m, e)`: [`f32_const`] with the mantissa kept to 16 bits (rshr), so
/// that scaled scores stay below 2^61 (`docs/NUMERICS.md`).
pub fn attention_scale(v: f32) -> Option<(i32, i32)> {
    let (m, e) = f32_const(v)?;
    let sb = bitlen(m.unsigned_abs() as u64);
    Some(if sb > 16 { (rshr(m as i64, sb - 16) as i32, e + sb as i32 - 16) } else { (m, e) })
}

/// `(m, e)` with trailing zero bits of `m` moved into `e` (0 stays `(0, 0)`).
pub fn strip_zeros((m, e): (i32, i32)) -> (i32, i32) {
    if m == 0 {
        return (0, 0);
    }
    let tz = m.trailing_zeros();
    (m >> tz, e + tz as i32)
}

/// Quantize one block of mantissas (|m| < 2^31) to int8 with an 8-bit integer scale: with
/// `M = max |m|`, `t = max(0, bitlen(M) − 7)` and `s = ceil(128·M / (127·2^t))` (at most 130),
/// `q = 128·m / (s·2^t)` rounded to nearest, ties to even, so |q| <= 127 and the block's values are `q · s · 2^(t − 7)`.
/// The max lands on ±127 (up to rounding of s), a finer grid than a power-of-two scale.
/// Returns `(t, s)`; an all-zero block gives `(0, 1)`.
#[inline(always)]
pub fn quantize_block_scaled(m: &[i32], q: &mut [i8]) -> (u32, i32) {
    let mut max = 0u32;
    for v in m {
        max = max.max(v.unsigned_abs());
    }
    if max == 0 {
        q.iter_mut().for_each(|v| *v = 0);
        return (0, 1);
    }
    let max = max as i64;
    let t = bitlen(max as u64).saturating_sub(7);
    let unit = 127i64 << t;
    let s = floor_div(128 * max + unit - 1, unit);
    // The rounded quotient through floor(floor(x / 2^t) / s) and the exact remainder, in 32-bit
    // lanes where they fit (the loop vectorizes): floor(128·m / 2^t) is m shifted (|m| <
    // 2^(t+7), so below 2^14), floor · s below 2^22.
    let (d, si) = (s << t, s as i32);
    let (up, down) = (7u32.saturating_sub(t), t.saturating_sub(7));
    let recip = small_recip(si);
    for (o, &v) in q.iter_mut().zip(m) {
        let fl = floor_div_small((v << up) >> down, si, recip);
        let r = ((v as i64) << 7) - (((fl * si) as i64) << t);
        *o = (fl + (2 * r > d || (2 * r == d && fl & 1 == 1)) as i32) as i8;
    }
    (t, si)
}

/// [`floor_div_small`]'s multiplier for `s`: floor(2^32 / s) + 1 (below 2^32: a block's scale
/// is at least 2, as 128·M > 127·2^t).
fn small_recip(s: i32) -> u32 {
    ((1u64 << 32) / s as u64 + 1) as u32
}

/// floor(n / s) for |n| ≤ 2^14 and 2 ≤ s ≤ 130 by a multiply (a division per element cost a
/// fifth of a batch's activation quantization): n' = n + s·2^14 is in [0, 2^22), and
/// floor(n'·R / 2^32) = floor(n' / s) exactly, as the excess n'·(R − 2^32/s) / 2^32 is below
/// n'/2^32 < 1/s (n'·s < 2^30), too small to reach the next multiple of 1/s.
#[inline(always)]
fn floor_div_small(n: i32, s: i32, recip: u32) -> i32 {
    (((n + (s << 14)) as u32 as u64 * recip as u64) >> 32) as i32 - (1 << 14)
}

/// The integer dot product of two int8 vectors (on the GPU: `dot4I8Packed` over packed words).
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

/// floor(sqrt(x)), bit by bit.
pub fn isqrt(x: u64) -> u64 {
    let (mut rem, mut root) = (x, 0u64);
    let mut bit = 1u64 << 62;
    while bit > rem {
        bit >>= 2;
    }
    while bit != 0 {
        if rem >= root + bit {
            rem -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

/// 1/sqrt(v·2^e) for v > 0, as `(r, re)` with r in [2^31 - 1, 2^32): v is rescaled to
/// [2^60, 2^62] at an even exponent (rshr), `r = floor((2^62 - 1) / isqrt(v))`.
pub fn rsqrt(v: u64, e: i32) -> (u64, i32) {
    debug_assert!(v > 0 && v < 1 << 63);
    let mut s = bitlen(v) as i32 - 62;
    if (e + s) & 1 != 0 {
        s += 1;
    }
    let vn = shl(v as i64, -s) as u64;
    let root = isqrt(vn);
    (((1u64 << 62) - 1) / root, -62 - (e + s) / 2)
}

/// The exp2 table: `round(2^(k/1024) · 2^30)` for k in 0..=1024, built with `libm::exp2`.
pub fn exp2_table() -> &'static [i64; EXP2_TABLE_LEN] {
    static T: OnceLock<[i64; EXP2_TABLE_LEN]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0i64; EXP2_TABLE_LEN];
        for (k, v) in t.iter_mut().enumerate() {
            *v = libm::round(libm::exp2(k as f64 / 1024.0) * (1u64 << 30) as f64) as i64;
        }
        t
    })
}

/// 2^(z / 2^20) in Q30 for z <= 0 (Q20): the table at the top 10 fraction bits, linear
/// interpolation on the low 10 (rshr 10), then rshr by the integer part (0 beyond 62).
pub fn exp2_q20(z: i64) -> i64 {
    debug_assert!(z <= 0);
    let t = exp2_table();
    let int = z >> 20; // floor, <= 0
    let frac = (z & 0xF_FFFF) as usize;
    let (k, r) = (frac >> 10, (frac & 1023) as i64);
    let v = t[k] + rshr((t[k + 1] - t[k]) * r, 10);
    let sh = int.unsigned_abs();
    if sh > 62 {
        0
    } else {
        rshr(v, sh as u32)
    }
}

/// sigmoid(y) in Q30 for y in Q16 (saturated at ±[`SIGMOID_SAT_Q16`]):
/// with z = rshr(|y|·log2e, 26) in Q20 and t = 2^-z, `floor(2^60 / (2^30 + t))` for y >= 0, `floor(t·2^30 / (2^30 + t))` for y < 0.
pub fn sigmoid_q16(y: i64) -> i64 {
    let ys = y.clamp(-SIGMOID_SAT_Q16, SIGMOID_SAT_Q16);
    let z = rshr(ys.abs() * LOG2E_Q30, 26);
    let t = exp2_q20(-z);
    let den = (1i64 << 30) + t;
    if ys >= 0 {
        floor_div(1i64 << 60, den)
    } else {
        floor_div(t << 30, den)
    }
}

/// `n / d` (floor) for `0 <= n < 2^62` and `0 < d < 2^32`, without a 64-bit integer division
/// (tens of cycles; SiLU makes two per element): the f64 quotient is within one of it, and the
/// integer remainder corrects it, so the result is exact whatever the f64 rounding.
#[inline]
pub fn floor_div(n: i64, d: i64) -> i64 {
    let mut q = (n as f64 / d as f64) as i64;
    let mut r = n - q * d;
    while r < 0 {
        q -= 1;
        r += d;
    }
    while r >= d {
        q += 1;
        r -= d;
    }
    q
}

/// `m·2^e` in Q16, saturated at ±`sat`.
pub fn to_q16_sat(m: i32, e: i32, sat: i64) -> i64 {
    let s = e + 16;
    let m = m as i64;
    if s >= 0 {
        // |m| < 2^31: a shift of 40 or more exceeds any saturation bound used here.
        if s >= 40 || m.abs() > sat >> s {
            return if m < 0 {
                -sat
            } else if m > 0 {
                sat
            } else {
                0
            };
        }
        m << s
    } else {
        rshr(m, s.unsigned_abs()).clamp(-sat, sat)
    }
}

/// silu(g) for g = m·2^e, in units of 2^e: `rshr(m · sigmoid_q16(g), 30)`.
pub fn silu_mant(m: i32, e: i32) -> i64 {
    gated_mant(m, sigmoid_q16(silu_arg(m, e)))
}

/// silu's sigmoid argument: g in Q16, saturated at ±[`SIGMOID_SAT_Q16`].
pub fn silu_arg(m: i32, e: i32) -> i64 {
    to_q16_sat(m, e, SIGMOID_SAT_Q16)
}

/// gelu_tanh(g) = g·sigmoid(2c·(g + k·g³)) for g = m·2^e, in units of 2^e.
pub fn gelu_mant(m: i32, e: i32) -> i64 {
    gated_mant(m, sigmoid_q16(gelu_arg(m, e)))
}

/// gelu's sigmoid argument: the cubic in Q16 on g saturated at ±[`GELU_SAT_Q16`]: g² =
/// rshr(g·g, 16), p = 2^16 + rshr(k·g², 30), inner = rshr(g·p, 16), y = rshr(2c·inner, 30).
pub fn gelu_arg(m: i32, e: i32) -> i64 {
    let g = to_q16_sat(m, e, GELU_SAT_Q16);
    let g2 = rshr(g * g, 16);
    let p = (1i64 << 16) + rshr(GELU_K_Q30 * g2, 30);
    let inner = rshr(g * p, 16);
    rshr(GELU_2C_Q30 * inner, 30)
}

/// A gate's value from its mantissa and its sigmoid (Q30): `rshr(m · sig, 30)`.
#[inline]
pub fn gated_mant(m: i32, sig: i64) -> i64 {
    rshr(m as i64 * sig, 30)
}

/// RoPE frequency of pair `i` of a head of `d`: `libm::pow(base, -2i/d)`.
fn rope_freq(base: f32, i: usize, d: usize) -> f64 {
    libm::pow(base as f64, -2.0 * i as f64 / d as f64)
}

/// (cos, sin) in Q30 of `pos · freq_i` for each of the `d/2` pairs: libm, rounded once.
pub fn rope_cos_sin(base: f32, d: usize, pos: usize) -> Vec<(i32, i32)> {
    let q30 = (1u64 << 30) as f64;
    (0..d / 2)
        .map(|i| {
            let th = pos as f64 * rope_freq(base, i, d);
            (libm::round(libm::cos(th) * q30) as i32, libm::round(libm::sin(th) * q30) as i32)
        })
        .collect()
}

/// SHA-256 over the spec version, the constants, the exp2 table and RoPE probes
/// (layout in `docs/NUMERICS.md`): equal digests mean equal numerics.
pub fn numerics_digest() -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((VERSION.len() as u32).to_le_bytes());
    h.update(VERSION.as_bytes());
    for c in [ROW_BITS as i64, LOG2E_Q30, GELU_2C_Q30, GELU_K_Q30, SIGMOID_SAT_Q16, GELU_SAT_Q16] {
        h.update(c.to_le_bytes());
    }
    for v in exp2_table() {
        h.update(v.to_le_bytes());
    }
    for (base, d, pos) in ROPE_PROBES {
        for (c, s) in rope_cos_sin(base, d, pos) {
            h.update(c.to_le_bytes());
            h.update(s.to_le_bytes());
        }
    }
    h.finalize().into()
}

/// The encoders' additions to the spec (`docs/NUMERICS.md`, "Encoders"), hashed into
/// [`encoder_digest`] only: the language models' digest, and so their receipts, stay as they were.
pub const ENCODER_VERSION: &str = "edgeproof encoder numerics v1";
/// The Φ table's step: 2^-8, so an argument in Q16 indexes it by its top bits.
pub const PHI_STEP_BITS: u32 = 8;
/// Φ(x) is tabled on [0, 8]; beyond, it is 0 or 1 to Q30.
pub const PHI_SAT_Q16: i64 = 8 << 16;
/// Entries of the Φ table: Φ(k / 256) for k = 0..=2048.
pub const PHI_TABLE_LEN: usize = 2049;

/// `T[k] = round(Φ(k / 256) · 2^30)` with Φ the standard normal CDF, `0.5 · (1 + erf(x / √2))`
/// through `libm::erf`, rounded once.
pub fn phi_table() -> &'static [i64; PHI_TABLE_LEN] {
    static T: OnceLock<[i64; PHI_TABLE_LEN]> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = [0i64; PHI_TABLE_LEN];
        for (k, v) in t.iter_mut().enumerate() {
            let x = k as f64 / (1u64 << PHI_STEP_BITS) as f64;
            *v = libm::round(0.5 * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)) * (1u64 << 30) as f64) as i64;
        }
        t
    })
}

/// Φ(x) in Q30 for x in Q16: |x| saturated at [`PHI_SAT_Q16`], `k = |x| >> 8`, `r = |x| & 255`,
/// `v = T[k] + rshr((T[k+1] − T[k]) · r, 8)` (T[2048] alone at saturation); `2^30 − v` for x < 0.
pub fn phi_q30(x: i64) -> i64 {
    let t = phi_table();
    let a = x.unsigned_abs().min(PHI_SAT_Q16 as u64) as usize;
    let (k, r) = (a >> PHI_STEP_BITS, (a & ((1 << PHI_STEP_BITS) - 1)) as i64);
    let v = if k + 1 < PHI_TABLE_LEN { t[k] + rshr((t[k + 1] - t[k]) * r, PHI_STEP_BITS) } else { t[k] };
    if x < 0 {
        (1 << 30) - v
    } else {
        v
    }
}

/// gelu(x) = x · Φ(x) (the erf form, BERT's) for x = m·2^e, as `m · Φ` at exponent `e − 30`
/// (exact: |m · Φ| < 2^55).
pub fn gelu_erf_acc(m: i32, e: i32) -> i64 {
    m as i64 * phi_q30(to_q16_sat(m, e, PHI_SAT_Q16))
}

/// SHA-256 over the language models' [`numerics_digest`], the encoder version, its constants and
/// the Φ table: what an embedding receipt commits to.
pub fn encoder_digest() -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(numerics_digest());
    h.update((ENCODER_VERSION.len() as u32).to_le_bytes());
    h.update(ENCODER_VERSION.as_bytes());
    for c in [PHI_STEP_BITS as i64, PHI_SAT_Q16] {
        h.update(c.to_le_bytes());
    }
    for v in phi_table() {
        h.update(v.to_le_bytes());
    }
    h.finalize().into()
}

/// RoPE tables are computed per position on demand; these probes pin libm's results in the digest.
pub const ROPE_PROBES: [(f32, usize, usize); 6] = [
    (10_000.0, 64, 1),
    (10_000.0, 256, 511),
    (100_000.0, 64, 255),
    (100_000.0, 64, 8191),
    (1_000_000.0, 256, 32_767),
    (1_000_000.0, 16, 3),
];

/// [`numerics_digest`] as lowercase hex.
pub fn numerics_digest_hex() -> String {
    numerics_digest().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`normalize_bits`] against [`shl`] per element (its definition), on rows of awkward
    /// lengths whose largest magnitudes range over every bit length, for several widths.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn normalize_bits_equals_shl_per_element() {
        let mut rng = crate::tiny::SplitMix64(9);
        for top in 0..63 {
            for (n, bits) in [(1, 24), (7, 24), (37, 31), (100, 8)] {
                let acc: Vec<i64> = (0..n)
                    .map(|_| {
                        let v = (rng.next_u64() >> 1) as i64 >> (62 - top) >> (rng.next_u64() % 3);
                        if rng.next_u64().is_multiple_of(2) {
                            -v
                        } else {
                            v
                        }
                    })
                    .collect();
                let mut got = vec![0; n];
                let e = normalize_bits(&acc, 5, bits, &mut got);
                let max = acc.iter().map(|a| a.unsigned_abs()).max().unwrap_or(0);
                let mut s = bitlen(max) as i32 - bits as i32;
                if max > 0 && s > 0 && rshr(max as i64, s as u32) >= 1 << bits {
                    s += 1;
                }
                let want: Vec<i32> = acc.iter().map(|&a| if max == 0 { 0 } else { shl(a, -s) as i32 }).collect();
                assert_eq!(got, want, "top bit {top}, {n} values, {bits} bits");
                assert_eq!(e, if max == 0 { 5 } else { 5 + s });
            }
        }
    }

    /// [`floor_div`] against the integer division: sigmoid's operands (2^60 or t·2^30 over
    /// 2^30 + t for every t from 0 to 2^30 in steps, and the ends), then random ones in range.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn floor_div_equals_integer_division() {
        let mut rng = crate::tiny::SplitMix64(5);
        let ts = (0..=1i64 << 30).step_by(4093).chain([1, 2, (1 << 30) - 1, 1 << 30]);
        for t in ts {
            let d = (1i64 << 30) + t;
            for n in [1i64 << 60, t << 30, 0, d - 1, d, d + 1] {
                assert_eq!(floor_div(n, d), n / d, "{n} / {d}");
            }
        }
        for _ in 0..1_000_000 {
            let n = (rng.next_u64() >> 2) as i64 >> (rng.next_u64() % 62);
            let d = ((rng.next_u64() >> 32) as i64 >> (rng.next_u64() % 32)).max(1);
            assert_eq!(floor_div(n, d), n / d, "{n} / {d}");
        }
    }

    /// Every numerator and divisor [`quantize_block_scaled`] can give [`floor_div_small`].
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn floor_div_small_is_floor_division_on_its_whole_domain() {
        for s in 2..=130 {
            let recip = small_recip(s);
            for n in -(1 << 14)..=1 << 14 {
                assert_eq!(floor_div_small(n, s, recip), n.div_euclid(s), "{n} / {s}");
            }
        }
    }
}
