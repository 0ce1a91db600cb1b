//! Perplexity the way llama.cpp's `llama-perplexity` computes it, so figures
//! compare across runtimes: non-overlapping chunks of `ctx` tokens, each
//! evaluated from scratch (first token replaced by BOS when the model adds one),
//! scoring the second half of each chunk.

use crate::engine::Engine;
use crate::error::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// llama.cpp's ± (standard error propagated through exp).
    pub ppl_err: f64,
    pub mean_nll: f64,
    pub n_chunks: usize,
    pub n_scored: usize,
    /// Per scored position: the argmax token (for agreement measurements).
    pub argmax: Vec<u32>,
}

/// `-log softmax(logits)[target]`, in f64.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let mx = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - mx).exp()).sum();
    sum.ln() - (logits[target as usize] as f64 - mx)
}

/// `tokens` is the whole text, tokenized with BOS iff the model adds one (`bos`).
pub fn perplexity(
    engine: &mut dyn Engine,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
    mut progress: impl FnMut(usize, usize, f64),
) -> Result<Perplexity> {
    if ctx < 4 {
        return Err(Error::InvalidArgument(format!("context {ctx} is too small (at least 4)")));
    }
    let n_chunks = tokens.len() / ctx;
    if n_chunks == 0 {
        return Err(Error::InvalidArgument(format!("{} tokens are fewer than one chunk of {ctx}", tokens.len())));
    }
    let n_vocab = engine.config().n_vocab;
    let first = ctx / 2;
    let (mut sum, mut sum2, mut count) = (0f64, 0f64, 0usize);
    let mut argmax = Vec::new();
    for c in 0..n_chunks {
        let mut chunk = tokens[c * ctx..(c + 1) * ctx].to_vec();
        if let Some(b) = bos {
            chunk[0] = b;
        }
        let logits = engine.eval(&chunk, 0, first..ctx - 1)?;
        for (r, row) in logits.chunks_exact(n_vocab).enumerate() {
            let target = tokens[c * ctx + first + r + 1];
            let v = nll(row, target);
            sum += v;
            sum2 += v * v;
            count += 1;
            argmax.push(crate::engine::argmax(row).unwrap_or(0));
        }
        progress(c + 1, n_chunks, (sum / count as f64).exp());
    }
    let mean = sum / count as f64;
    let var = (sum2 / count as f64 - mean * mean).max(0.0);
    let ppl = mean.exp();
    let ppl_err = if count > 1 { ppl * (var / (count - 1) as f64).sqrt() } else { 0.0 };
    Ok(Perplexity { ppl, ppl_err, mean_nll: mean, n_chunks, n_scored: count, argmax })
}
