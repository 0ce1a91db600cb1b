//! Token selection on the device: [`crate::sampling::sample`]'s choice, bit for bit, read
//! back as two words (token, status) instead of the logits row.
//!
//! Greedy: the row's largest mantissa (ties to the lowest id). Seeded: the CPU orders tokens
//! by (q16 descending, id ascending), keeps the top k, weighs them, keeps the shortest prefix
//! reaching top_p of the weight and draws from it. Here every token gets a key
//! `(top − q16, id)` in that order and its weight (`sample_weights.wgsl`), and each of the
//! three cuts (k-th token by count, top-p by weight, the draw by weight) is the smallest key
//! whose running count or weight reaches a threshold: a radix select, 8 bits of the key per
//! level (`sample_hist.wgsl` bins, `sample_select.wgsl` picks). Sums are exact integers, so
//! the order of the additions does not matter. Tokens with weight 0 are never drawn; those
//! with `top − q16 >= 2^31` (weight 0 at any temperature up to 1000) are left out of the keys.
//!
//! Where the kernels could not reproduce the CPU's arithmetic (a row exponent above 0 for
//! seeded sampling, outside f32's exact range for greedy, an empty or huge row) the status
//! is nonzero and [`GpuOps::sample_async`] reads the row back and samples on the CPU.

use super::{Buf, GpuAct, GpuOps, Kernel};
use crate::backend::exact::IMat;
use crate::error::{Error, Result};
use crate::sampling::{self, random_u64, SamplingParams, ONE_Q16};

/// Workgroup size of the sampling kernels.
const WG: usize = 256;
/// Tokens per workgroup of `sample_hist.wgsl`.
const HIST_CHUNK: usize = 2048;
/// Largest row handled on the device (ids fit 24 bits, keys 55 bits, dispatches the limit).
const MAX_COLS: usize = 1 << 24;

/// State words (see `sample_select.wgsl`).
const STATE_WORDS: usize = 20;

impl GpuOps {
    /// Record the selection of row `row`'s token (no submission): returns a device buffer
    /// whose first two u32 words will be (token, status); status 0 means the token is
    /// `sampling::sample`'s, anything else that the CPU must choose from the row.
    pub fn sample_record(&mut self, logits: &GpuAct, row: usize, p: &SamplingParams, step: u64) -> Result<Buf> {
        if row >= logits.rows {
            return Err(Error::InvalidArgument(format!("sample: row {row} of {}", logits.rows)));
        }
        self.recorded(|s, enc| s.ready(enc, &[logits]))?;
        let cols = logits.cols;
        let mut init = [0u32; STATE_WORDS];
        if cols == 0 || cols > MAX_COLS {
            init[1] = 1;
            return self.ctx.storage_init("sample.state", bytemuck::cast_slice(&init));
        }
        let state = self.ctx.storage_init("sample.state", bytemuck::cast_slice(&init))?;
        let u = random_u64(p.seed, step);
        let idbits = usize::BITS - (cols - 1).leading_zeros();
        let groups = cols.div_ceil(HIST_CHUNK);
        let params = |query: u32, level: u32, last: bool, shift: u32| -> [u32; 16] {
            [
                cols as u32,
                row as u32,
                p.temperature_q16,
                p.top_k,
                p.top_p_q16,
                u as u32,
                (u >> 32) as u32,
                idbits,
                query,
                level,
                last as u32,
                shift,
                groups as u32,
                HIST_CHUNK as u32,
                p.is_greedy() as u32,
                0,
            ]
        };
        let first = params(0, 0, false, 0);
        if p.is_greedy() {
            // The bins (binding 3) are not read by the first stage.
            let none = self.ctx.storage("sample.none", 16)?;
            self.recorded(|s, enc| {
                s.ctx.dispatch(enc, Kernel::SampleSelect, &first, &[&logits.m, &logits.e, &none, &state], [1, 1, 1])
            })?;
            return Ok(state);
        }
        let dw = self.ctx.storage("sample.dw", (cols * 8) as u64)?;
        let hist = self.ctx.storage("sample.hist", (groups * WG * 3 * 4) as u64)?;
        // Queries: 1 the top-k cut (only where it cuts), 2 top-p (only below 1), 3 the draw.
        let mut queries = vec![];
        if p.top_k != 0 && (p.top_k as usize) < cols {
            queries.push(1);
        }
        if p.top_p_q16 < ONE_Q16 {
            queries.push(2);
        }
        queries.push(3);
        let levels = (31 + idbits).div_ceil(8);
        self.recorded(|s, enc| {
            let exp2 = &s.exp2;
            s.ctx.dispatch(enc, Kernel::SampleSelect, &first, &[&logits.m, &logits.e, &hist, &state], [1, 1, 1])?;
            s.ctx.dispatch(
                enc,
                Kernel::SampleWeights,
                &first,
                &[&logits.m, &logits.e, &state, exp2, &dw],
                [cols.div_ceil(WG) as u32, 1, 1],
            )?;
            for &q in &queries {
                for level in 0..levels {
                    let pr = params(q, level, level + 1 == levels, 8 * (levels - 1 - level));
                    s.ctx.dispatch(enc, Kernel::SampleHist, &pr, &[&state, &dw, &hist], [groups as u32, 1, 1])?;
                    s.ctx.dispatch(
                        enc,
                        Kernel::SampleSelect,
                        &pr,
                        &[&logits.m, &logits.e, &hist, &state],
                        [1, 1, 1],
                    )?;
                }
            }
            Ok(())
        })?;
        Ok(state)
    }

    /// The token of step `step` from row `row` of `logits`: [`sampling::sample`]'s choice,
    /// read back as 8 bytes (the row itself only where the kernels defer to the CPU).
    pub async fn sample_async(&mut self, logits: &GpuAct, row: usize, p: &SamplingParams, step: u64) -> Result<u32> {
        Ok(self.sample_with_async(logits, row, p, step, &[]).await?.0)
    }

    /// [`GpuOps::sample_async`], and the activations `acts` read back in the same mapping.
    pub(crate) async fn sample_with_async(
        &mut self,
        logits: &GpuAct,
        row: usize,
        p: &SamplingParams,
        step: u64,
        acts: &[&GpuAct],
    ) -> Result<(u32, Vec<IMat>)> {
        let state = self.sample_record(logits, row, p, step)?;
        let (words, mats) = self.read_acts(&[(&state, 2)], acts).await?;
        if let Some(&[t, 0]) = words.first().map(|w| w.as_slice()) {
            return Ok((t, mats));
        }
        let x = self.download_async(logits).await?;
        let v = x.to_f32();
        Ok((sampling::sample(&v[row * x.cols..(row + 1) * x.cols], p, step)?, mats))
    }

    /// [`GpuOps::sample_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn sample(&mut self, logits: &GpuAct, row: usize, p: &SamplingParams, step: u64) -> Result<u32> {
        pollster::block_on(self.sample_async(logits, row, p, step))
    }
}
