//! The encoder ops ([`EncoderOps`]) in the exact numerics (`docs/NUMERICS.md`, "Encoders").

use super::{
    add_on_grid, attend_rows, attention_checked, each_row, rms_group, ExactOps, ExactWeight, IMat, LayerCache,
};
use crate::error::Result;
use crate::model::bert::{check_segments, EncoderOps};
use crate::model::AttnParams;
use crate::numerics::{f32_const, gelu_erf_acc, normalize, shl};
use std::ops::Range;

impl EncoderOps for ExactOps {
    /// The bias (mantissas below 2^30) added as `add` adds rows; an all-zero row becomes the bias.
    fn add_bias(&mut self, x: &mut IMat, b: &ExactWeight) {
        let (bm, be) = b.vector();
        assert_eq!(bm.len(), x.cols, "bias of {} for rows of {}", bm.len(), x.cols);
        if bm.iter().all(|&v| v == 0) {
            return;
        }
        each_row(x, |_, xr, xe| {
            if xr.iter().all(|&v| v == 0) {
                let acc: Vec<i64> = bm.iter().map(|&v| v as i64).collect();
                *xe = normalize(&acc, be, xr);
            } else {
                add_on_grid(xr, xe, bm, be);
            }
        });
    }

    /// Centred exactly (`y = n·m − Σm`, which is n·(x − mean)), normalized; then RMSNorm's rule with
    /// eps·n² (so `y / sqrt(Σy²/n + eps·n²)` is `(x − mean) / sqrt(var + eps)`), times `w`,
    /// normalized; then `b` added as [`EncoderOps::add_bias`] adds it.
    fn layer_norm(&mut self, x: &IMat, w: &ExactWeight, b: &ExactWeight, eps: f32) -> IMat {
        let (wm, we) = w.vector();
        let n = x.cols;
        assert_eq!(wm.len(), n, "norm weight of {} for rows of {n}", wm.len());
        let (em, ee) = f32_const(eps).unwrap_or((0, 0));
        let eps_n2 = (em as i64 * (n * n) as i64, ee);
        let mut out = IMat::zeros(x.rows, n);
        each_row(&mut out, |i, om, oe| {
            let row = x.row(i);
            let s1: i64 = row.iter().map(|&m| m as i64).sum();
            let y: Vec<i64> = row.iter().map(|&m| n as i64 * m as i64 - s1).collect();
            let ye = normalize(&y, x.e[i], om);
            let mut acc = vec![0i64; n];
            let ge = rms_group(om, ye, n as u64, eps_n2, Some((wm, we)), &mut acc);
            *oe = normalize(&acc, ge.unwrap_or(0), om);
        });
        self.add_bias(&mut out, b);
        out
    }

    /// `m · Φ(x)` at exponent `e − 30` per element, normalized.
    fn gelu(&mut self, x: &IMat) -> IMat {
        let mut out = IMat::zeros(x.rows, x.cols);
        each_row(&mut out, |i, om, oe| {
            let acc: Vec<i64> = x.row(i).iter().map(|&m| gelu_erf_acc(m, x.e[i])).collect();
            *oe = normalize(&acc, x.e[i] - 30, om);
        });
        out
    }

    /// The causal op's arithmetic over a cache of the batch's own k and v, where a row of
    /// segment `s` sees the keys `s.start..s.end`.
    fn attention_segments(
        &mut self,
        q: &IMat,
        k: &IMat,
        v: &IMat,
        segs: &[Range<usize>],
        p: AttnParams,
    ) -> Result<IMat> {
        let scale = attention_checked(&p)?;
        let of_row = rows_to_segments(segs, q.rows)?;
        let mut c = LayerCache::default();
        c.append(k, v, p.head_dim);
        Ok(attend_rows(q, &c, &p, scale, |i| {
            let s = &segs[of_row[i]];
            (s.start, s.end - 1)
        }))
    }

    /// Per segment: its rows' sum on the grid 24 bits below their largest exponent (all-zero rows
    /// left out), normalized (the mean's 1/n cancels in the L2 norm); then RMSNorm's rule with
    /// n = 1, no eps and no weight, normalized.
    fn mean_pool_l2(&mut self, x: &IMat, segs: &[Range<usize>]) -> IMat {
        let mut out = IMat::zeros(segs.len(), x.cols);
        each_row(&mut out, |si, om, oe| {
            let rows: Vec<usize> = segs[si].clone().filter(|&r| x.row(r).iter().any(|&m| m != 0)).collect();
            let g = rows.iter().map(|&r| x.e[r]).max().unwrap_or(0) - 24;
            let mut acc = vec![0i64; x.cols];
            for &r in &rows {
                for (a, &m) in acc.iter_mut().zip(x.row(r)) {
                    *a += shl(m as i64, x.e[r] - g);
                }
            }
            let e = normalize(&acc, g, om);
            let ge = rms_group(om, e, 1, (0, 0), None, &mut acc);
            *oe = normalize(&acc, ge.unwrap_or(0), om);
        });
        out
    }
}

/// The segment of each row, once `segs` are checked to tile `0..rows`.
fn rows_to_segments(segs: &[Range<usize>], rows: usize) -> Result<Vec<usize>> {
    check_segments(segs, rows)?;
    Ok(segs.iter().enumerate().flat_map(|(si, s)| s.clone().map(move |_| si)).collect())
}
