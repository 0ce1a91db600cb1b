//! Weight rows widened once per batch for the batched matmul ([`Widened`]): i16 values, or
//! bytes in eights of rows for the AVX2 and AVX-512 byte kernels, with f64 factors per block.

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::{block_scales, block_values, f16_at, ldexp, BlockScale};
use crate::quant::TensorType;

/// Weight rows widened for the batched matmul: i16 values per element and, per 32-element
/// sub-block, its scale `a · 2^ea` and min `b · 2^eb` as f64 (exact: small integers times
/// powers of two). Q6_K's values carry their 16-element scale (|sc · q| ≤ 4096, so one i16
/// dot gives `sc0·dot0 + sc1·dot1`) and `a` is the shared d: the same integer T1.
///
/// Where the AVX2 byte kernel takes the type ([`byte_offset`]), the values are kept as bytes
/// `u` instead of `w`: half the memory, and one `vpmaddubsw` per 32 products (with AVX-512
/// VNNI, one `vpdpbusd`: [`avx2::dots8x4_vnni`], two eights at once on 512-bit vectors:
/// [`avx2::dots16x4_avx512`]). The byte form
/// keeps rows in eights ([`Widened::slot`]; the last eight padded with zero rows): per eight
/// and block, the factors row after row and the values four at a time, row after row, as
/// [`avx2::dots8x4_bytes`] reads them.
#[derive(Default)]
pub(super) struct Widened {
    pub(super) w: Vec<i16>,
    pub(super) u: Vec<u8>,
    pub(super) a: Vec<f64>,
    pub(super) b: Vec<f64>,
}

/// The byte form of type `ty`'s values for the AVX2 batched kernel: `Some(c)` where each value
/// q is kept as its stored bits, the unsigned byte `q + c` (c: [`super::value_offset`]; Q8_0: its int8
/// as they are, c = 0, or with AVX-512 VNNI `q + 128`, whose four-product sums `vpdpbusd` takes
/// whole); `None` where the i16 form serves (Q6_K, whose values carry their 16-element scales;
/// CPUs without AVX2).
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub(super) fn byte_offset(ty: TensorType) -> Option<u8> {
    #[cfg(target_arch = "x86_64")]
    if avx2::present() {
        return match ty {
            TensorType::Q4_0
            | TensorType::Q4_1
            | TensorType::Q5_0
            | TensorType::Q5_1
            | TensorType::Q4K
            | TensorType::Q5K => Some(super::value_offset(ty)),
            TensorType::Q8_0 if avx2::vnni() => Some(128),
            TensorType::Q8_0 => Some(0),
            _ => None,
        };
    }
    None
}

impl Widened {
    /// Decode weight rows of `row_bytes` (whole GGUF blocks) into `self`, replacing its contents.
    pub(super) fn fill(&mut self, ty: TensorType, rows: &[u8], row_bytes: usize) {
        // Compiled for AVX2 too, where the decoding loops (inlined) vectorize wider.
        let this = self;
        with_avx2!(fill_body(this: &mut Widened, ty: TensorType, rows: &[u8], row_bytes: usize))
    }

    /// The index of block `j` of `row` (rows of `nb` blocks) in `a` and `b`: row after row in the
    /// i16 form; in the byte form, per eight rows and block, the eight rows' factors together.
    /// The byte form's values of that eight and block start at `32 · (slot − row % 8)`.
    fn slot(bytes: bool, nb: usize, row: usize, j: usize) -> usize {
        if bytes {
            (row / 8 * nb + j) * 8 + row % 8
        } else {
            row * nb + j
        }
    }
}

/// [`Widened::fill`]'s body.
#[inline(always)]
fn fill_body(this: &mut Widened, ty: TensorType, rows: &[u8], row_bytes: usize) {
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    let (subs, per_row) = (bl / 32, row_bytes / bb);
    let (n_rows, nb) = (rows.len() / row_bytes, per_row * subs);
    let bytes = byte_offset(ty);
    let slots = if bytes.is_some() { n_rows.next_multiple_of(8) * nb } else { n_rows * nb };
    let (wn, un) = if bytes.is_some() { (0, 32 * slots) } else { (32 * slots, 0) };
    // Every value of `w` and `u` is written below (the byte form's padding rows as zeros).
    // Their lanes are dropped; zero factors (`resize` alone would keep what a larger fill
    // wrote) keep their terms exactly ROUND, as the padding of the row kernels.
    this.w.resize(wn, 0);
    for v in [&mut this.a, &mut this.b] {
        v.clear();
        v.resize(slots, 0.0);
    }
    this.u.resize(un, 0);
    #[cfg(target_arch = "x86_64")]
    if let Some(c) = bytes {
        fill_bytes(this, ty, c == 128 && ty == TensorType::Q8_0, rows, row_bytes);
        return;
    }
    let (mut a, mut b) = ([0.0; 8], [0.0; 8]);
    for (i, blk) in rows.chunks_exact(bb).enumerate() {
        let (row, first) = (i / per_row, i % per_row * subs);
        let ok = block_factors(ty, blk, &mut a[..subs], &mut b[..subs]);
        if ty == TensorType::Q6K {
            let (d, e) = f16_at(blk, 208);
            a[..subs].fill(ldexp(d as f64, e));
        }
        for s in 0..subs {
            let at = Widened::slot(false, nb, row, first + s);
            (this.a[at], this.b[at]) = (a[s], b[s]);
        }
        let w = i * bl..(i + 1) * bl;
        if ok {
            block_values(ty, blk, &mut this.w[w.clone()]);
        } else {
            this.w[w.clone()].fill(0);
        }
        if ty == TensorType::Q6K {
            // Element k of sub-block j has scale byte 2·j + k / 16 (see block_scales).
            for (ws, &s) in this.w[w].chunks_exact_mut(16).zip(&blk[192..208]) {
                ws.iter_mut().for_each(|wv| *wv *= s as i8 as i16);
            }
        }
    }
}

/// The byte form of [`fill_body`] (AVX2 only, as [`byte_offset`]): per eight rows and GGUF
/// block, the eight rows' factors (the one-block types' f16s eight at a time) and values
/// (Q8_0's straight from the block, `flip`ped to q + 128; others decoded side by side), each
/// 32-value sub-block interleaved four values at a time ([`avx2::interleave8`]). Padding rows
/// are zero, with zero factors.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fill_bytes(this: &mut Widened, ty: TensorType, flip: bool, rows: &[u8], row_bytes: usize) {
    const ZERO: [u8; 32] = [0; 32];
    const FLIPPED_ZERO: [u8; 32] = [0x80; 32];
    let (bl, bb) = (ty.block_len(), ty.block_bytes());
    let (subs, per_row) = (bl / 32, row_bytes / bb);
    let (n_rows, nb) = (rows.len() / row_bytes, per_row * subs);
    let f16s = one_block_f16s(ty);
    let (mut a, mut b, mut vals) = ([0.0; 8], [0.0; 8], [[0u8; 256]; 8]);
    let mut blocks: [&[u8]; 8] = [&[]; 8];
    avx2::prefetch(rows);
    for e in 0..n_rows.div_ceil(8) {
        let live = (n_rows - 8 * e).min(8);
        for blk in 0..per_row {
            let first = blk * subs;
            for (r, v) in blocks.iter_mut().enumerate().take(live) {
                let at = (8 * e + r) * row_bytes + blk * bb;
                *v = &rows[at..at + bb];
            }
            // The factors of one-block types, eight rows at once where they are finite.
            let f16x8 = |at: usize| {
                let mut bits = [0u16; 8];
                for (v, blk) in bits.iter_mut().zip(&blocks[..live]) {
                    *v = u16::from_le_bytes([blk[at], blk[at + 1]]);
                }
                avx2::f16x8(bits)
            };
            let fast = match f16s {
                [] => None,
                [sa] => f16x8(*sa).map(|fa| (fa, [0.0; 8])),
                [sa, sb, ..] => f16x8(*sa).zip(f16x8(*sb)),
            };
            let slot = Widened::slot(true, nb, 8 * e, first);
            if let Some((fa, fb)) = fast {
                this.a[slot..slot + 8].copy_from_slice(&fa);
                this.b[slot..slot + 8].copy_from_slice(&fb);
            }
            for (r, (v, blk)) in vals.iter_mut().zip(blocks).enumerate().take(live) {
                if fast.is_none() {
                    block_factors(ty, blk, &mut a[..subs], &mut b[..subs]);
                    for s in 0..subs {
                        let at = Widened::slot(true, nb, 8 * e + r, first + s);
                        (this.a[at], this.b[at]) = (a[s], b[s]);
                    }
                }
                if ty != TensorType::Q8_0 {
                    block_values(ty, blk, &mut v[..bl]);
                }
            }
            for s in 0..subs {
                let mut src: [&[u8; 32]; 8] = [if flip { &FLIPPED_ZERO } else { &ZERO }; 8];
                for (r, d) in src.iter_mut().enumerate().take(live) {
                    let v = if ty == TensorType::Q8_0 { &blocks[r][2..] } else { &vals[r][32 * s..] };
                    *d = v.first_chunk().unwrap_or(&ZERO);
                }
                let at = 256 * (e * nb + first + s);
                if let Some(dst) = this.u[at..at + 256].first_chunk_mut() {
                    avx2::interleave8(src, flip, dst);
                }
            }
        }
    }
}

/// A block's scale `a` and min `b` per 32 elements as f64; `false`, and zeros, where a scale is
/// Inf or NaN (blocks were validated at load: there is none).
fn block_factors(ty: TensorType, blk: &[u8], a: &mut [f64], b: &mut [f64]) -> bool {
    // The one-block types read their f16 in place: block_scales' dispatch per block cost more
    // than the rest of the widening.
    let one = match one_block_f16s(ty) {
        [sa] => Some(f16_value(blk, *sa).zip(Some(0.0))),
        [sa, sb, ..] => Some(f16_value(blk, *sa).zip(f16_value(blk, *sb))),
        [] => None,
    };
    if let Some(s) = one {
        (a[0], b[0]) = s.unwrap_or_default();
        return s.is_some();
    }
    let mut sc = [BlockScale::default(); 8];
    let ok = block_scales(ty, blk, &mut sc[..a.len()]).is_some();
    for ((a, b), s) in a.iter_mut().zip(b).zip(&sc) {
        (*a, *b) = if ok { (ldexp(s.a[0] as f64, s.ea), ldexp(s.b as f64, s.eb)) } else { (0.0, 0.0) };
    }
    ok
}

/// Where a one-block type keeps its f16 scale (and min) in a block; empty for the others.
fn one_block_f16s(ty: TensorType) -> &'static [usize] {
    match ty {
        TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => &[0],
        TensorType::Q4_1 | TensorType::Q5_1 => &[0, 2],
        _ => &[],
    }
}

/// The f16 at `b[at..at + 2]` as f64 (exact), `None` for Inf and NaN.
fn f16_value(b: &[u8], at: usize) -> Option<f64> {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    (bits & 0x7C00 != 0x7C00).then(|| {
        let (m, e) = f16_at(b, at);
        ldexp(m as f64, e)
    })
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::backend::exact::tests::assert_same;

    /// The byte form's interleaving in AVX2 equals the value-at-a-time loop, flipped or not; the
    /// F16C factors equal `f16_at`'s on every f16 bit pattern (Inf and NaN: none).
    #[test]
    fn interleave8_and_f16x8_equal_scalar() {
        if !avx2::present() {
            eprintln!("no AVX2, F16C and FMA on this CPU: interleave8 and f16x8 are not used here, and not tested");
            return;
        }
        let mut rng = crate::tiny::SplitMix64(19);
        let mut rows = [[0u8; 32]; 8];
        rows.iter_mut().flatten().for_each(|v| *v = rng.next_u64() as u8);
        for flip in [false, true] {
            let (mut got, mut want) = ([0u8; 256], [0u8; 256]);
            avx2::interleave8(rows.each_ref(), flip, &mut got);
            avx2::interleave8_scalar(rows.each_ref(), flip, &mut want);
            assert_same(&format!("interleave8 flip {flip}"), &got, &want);
        }
        for first in (0..=u16::MAX).step_by(8) {
            let bits: [u16; 8] = std::array::from_fn(|i| first + i as u16);
            let want: Option<Vec<u64>> =
                bits.iter().map(|b| f16_value(&b.to_le_bytes(), 0).map(|v| v.to_bits())).collect();
            let got = avx2::f16x8(bits).map(|v| v.map(f64::to_bits).to_vec());
            assert_eq!(got, want, "f16 bits {first:#06x}..");
        }
    }
}
