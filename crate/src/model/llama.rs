//! The `llama` architecture (SmolLM2): pre-norm blocks, grouped-query attention
//! with adjacent-pair RoPE, SwiGLU feed-forward.

use super::{AttnParams, Config, Ops, Weights};
use crate::error::Result;

/// `n = ids.len()` tokens at positions `pos0..pos0+n`; returns logits `[out_rows, n_vocab]`.
pub fn forward<O: Ops>(
    ops: &mut O,
    cfg: &Config,
    w: &Weights<O::W>,
    ids: &[u32],
    pos0: usize,
    out_rows: std::ops::Range<usize>,
) -> Result<O::Act> {
    let (hd, eps) = (cfg.head_dim, cfg.rms_eps);
    let mut x = ops.embed(&w.tok_embd, ids)?; // [n, n_embd]
    for (il, l) in w.layers.iter().enumerate() {
        let h = ops.rms_norm(&x, &l.attn_norm, cfg.n_embd, eps); // [n, n_embd]
        if let Some(prev) = il.checked_sub(1) {
            // Recorded after the norm that reads it, which a backend may run with the add.
            ops.residual(prev, &x); // [n, n_embd]
        }
        // q: [n, n_head*hd], k and v: [n, n_head_kv*hd]
        let [mut q, mut k, v] = ops.matmuls(&h, [&l.wq, &l.wk, &l.wv]);
        ops.rope(&mut q, pos0, hd, cfg.rope_base, cfg.rope_kind);
        ops.rope(&mut k, pos0, hd, cfg.rope_base, cfg.rope_kind);
        let p = AttnParams {
            layer: il,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: None,
        };
        let a = ops.attention(&q, &k, &v, pos0, p)?; // [n, n_head*hd]
        let o = ops.matmul(&a, &l.wo); // [n, n_embd]
        ops.add(&mut x, o);

        let h = ops.rms_norm(&x, &l.ffn_norm, cfg.n_embd, eps); // [n, n_embd]
        let [g, u] = ops.matmuls(&h, [&l.gate, &l.up]); // [n, n_ff] each
        let f = ops.swiglu(&g, &u); // [n, n_ff]
        let d = ops.matmul(&f, &l.down); // [n, n_embd]
        ops.add(&mut x, d);
    }
    ops.residual(w.layers.len().saturating_sub(1), &x); // [n, n_embd]
    let x = ops.rows(&x, out_rows); // [r, n_embd]
    let x = ops.rms_norm(&x, &w.output_norm, cfg.n_embd, eps); // [r, n_embd]
    Ok(ops.matmul(&x, w.output())) // [r, n_vocab]
}
