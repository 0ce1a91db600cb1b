//! The `gemma3` architecture: scaled embedding, QK-norm, half-split RoPE with a
//! local base on sliding-window layers and a global base on every sixth layer,
//! sandwich norms around attention and FFN, GELU(tanh)-gated feed-forward,
//! tied output. Norm weights already include Gemma's `+1` (folded in by the converter).

use super::{AttnParams, Config, Ops, Weights};
use crate::error::{Error, Result};

fn need<'a, W>(w: &'a Option<W>, what: &str) -> Result<&'a W> {
    w.as_ref().ok_or_else(|| Error::MissingTensor(what.to_string()))
}

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
    ops.scale(&mut x, (cfg.n_embd as f32).sqrt());
    for (il, l) in w.layers.iter().enumerate() {
        let global = cfg.is_global(il);
        let base = if global { cfg.rope_base } else { cfg.rope_base_local };

        let h = ops.rms_norm(&x, &l.attn_norm, cfg.n_embd, eps); // [n, n_embd]
        if let Some(prev) = il.checked_sub(1) {
            // Recorded after the norm that reads it, which a backend may run with the add.
            ops.residual(prev, &x); // [n, n_embd]
        }
        // q: [n, n_head*hd], k and v: [n, n_head_kv*hd]
        let [q, k, v] = ops.matmuls(&h, [&l.wq, &l.wk, &l.wv]);
        let mut q = ops.rms_norm(&q, need(&l.q_norm, "attn_q_norm")?, hd, eps); // per head
        let mut k = ops.rms_norm(&k, need(&l.k_norm, "attn_k_norm")?, hd, eps); // per head
        ops.rope(&mut q, pos0, hd, base, cfg.rope_kind);
        ops.rope(&mut k, pos0, hd, base, cfg.rope_kind);
        let p = AttnParams {
            layer: il,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head_kv,
            head_dim: hd,
            // query_pre_attn_scalar = head size.
            scale: 1.0 / (hd as f32).sqrt(),
            window: if global { None } else { cfg.sliding_window },
        };
        let a = ops.attention(&q, &k, &v, pos0, p)?; // [n, n_head*hd]
        let o = ops.matmul(&a, &l.wo); // [n, n_embd]
        let o = ops.rms_norm(&o, need(&l.post_attn_norm, "post_attention_norm")?, cfg.n_embd, eps);
        ops.add(&mut x, o);

        let h = ops.rms_norm(&x, &l.ffn_norm, cfg.n_embd, eps); // [n, n_embd]
        let [g, u] = ops.matmuls(&h, [&l.gate, &l.up]); // [n, n_ff] each
        let f = ops.geglu(&g, &u); // [n, n_ff]
        let d = ops.matmul(&f, &l.down); // [n, n_embd]
        let d = ops.rms_norm(&d, need(&l.post_ffn_norm, "post_ffw_norm")?, cfg.n_embd, eps);
        ops.add(&mut x, d);
    }
    ops.residual(w.layers.len().saturating_sub(1), &x); // [n, n_embd]
    let x = ops.rows(&x, out_rows); // [r, n_embd]
    let x = ops.rms_norm(&x, &w.output_norm, cfg.n_embd, eps); // [r, n_embd]
    Ok(ops.matmul(&x, w.output())) // [r, n_vocab]
}
