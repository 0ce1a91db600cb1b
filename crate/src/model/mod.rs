//! Model description shared by every numerics: hyper-parameters read from GGUF
//! metadata, the weight layout, and the op set each forward pass is written in.
//!
//! A forward pass (one function per architecture, in `llama.rs` and `gemma3.rs`)
//! is written once over [`Ops`]; backends differ only in how they implement the ops.

pub mod bert;
pub mod gemma3;
pub mod llama;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Metadata, TensorView};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
}

/// How RoPE pairs up dimensions within a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeKind {
    /// Adjacent pairs (x[2i], x[2i+1]): llama.cpp's NORM.
    Norm,
    /// Half split (x[i], x[i + d/2]): llama.cpp's NEOX.
    Neox,
}

/// Hyper-parameters, from the GGUF metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    pub ctx_len: usize,
    pub rms_eps: f32,
    pub rope_kind: RopeKind,
    /// RoPE base of global-attention layers.
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (Gemma 3).
    pub rope_base_local: f32,
    /// Window of sliding-window layers: a query at position p sees keys p-w+1..=p.
    pub sliding_window: Option<usize>,
    /// Every `swa_period`-th layer (the last of each period) is global; the others slide.
    pub swa_period: usize,
}

impl Config {
    pub fn from_metadata(meta: &Metadata) -> Result<Config> {
        let arch_name = meta.get_str("general.architecture")?;
        let arch = match arch_name {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        let n_embd = meta.get_usize(&k("embedding_length"))?;
        let n_head = meta.get_usize(&k("attention.head_count"))?;
        let n_head_kv = match meta.get(&k("attention.head_count_kv")) {
            Some(_) => meta.get_usize(&k("attention.head_count_kv"))?,
            None => n_head,
        };
        let head_dim = match meta.get(&k("attention.key_length")) {
            Some(_) => meta.get_usize(&k("attention.key_length"))?,
            None if n_head > 0 => n_embd / n_head,
            None => 0,
        };
        let n_vocab = match meta.get(&k("vocab_size")) {
            Some(_) => meta.get_usize(&k("vocab_size"))?,
            None => meta.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let rope_base = match meta.get(&k("rope.freq_base")) {
            Some(_) => meta.get_f32(&k("rope.freq_base"))?,
            None => 10_000.0,
        };
        let (sliding_window, swa_period, rope_kind) = match arch {
            Arch::Llama => (None, 1, RopeKind::Norm),
            Arch::Gemma3 => (Some(meta.get_usize(&k("attention.sliding_window"))?), 6, RopeKind::Neox),
        };
        let cfg = Config {
            arch,
            n_layer: meta.get_usize(&k("block_count"))?,
            n_embd,
            n_ff: meta.get_usize(&k("feed_forward_length"))?,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab,
            ctx_len: meta.get_usize(&k("context_length"))?,
            rms_eps: meta.get_f32(&k("attention.layer_norm_rms_epsilon"))?,
            rope_kind,
            rope_base,
            // llama.cpp's rope_freq_base_train_swa for gemma3: not in the GGUF.
            rope_base_local: 10_000.0,
            sliding_window,
            swa_period,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Corrupt(m));
        if self.n_layer == 0 || self.n_embd == 0 || self.n_ff == 0 || self.n_vocab == 0 || self.ctx_len == 0 {
            return bad(format!("zero-sized hyper-parameter in {self:?}"));
        }
        if self.n_head == 0 || self.n_head_kv == 0 || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!("{} heads cannot share {} KV heads", self.n_head, self.n_head_kv));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head size {} must be even", self.head_dim));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding window of 0".into());
        }
        if !self.rms_eps.is_finite() || self.rms_eps < 0.0 {
            return bad(format!("RMS norm epsilon {}", self.rms_eps));
        }
        for base in [self.rope_base, self.rope_base_local] {
            if !base.is_finite() || base <= 0.0 {
                return bad(format!("RoPE base {base}"));
            }
        }
        Ok(())
    }

    /// Whether layer `il` attends globally (else: sliding window, local RoPE base).
    pub fn is_global(&self, il: usize) -> bool {
        self.sliding_window.is_none() || il % self.swa_period == self.swa_period - 1
    }

    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// One transformer block's weights, in a backend's representation `W`.
pub struct LayerWeights<W> {
    pub attn_norm: W,
    pub wq: W,
    pub wk: W,
    pub wv: W,
    pub wo: W,
    /// Gemma 3: RMSNorm over each query / key head (QK-norm).
    pub q_norm: Option<W>,
    pub k_norm: Option<W>,
    /// Gemma 3: norms after attention and after the FFN (sandwich norms).
    pub post_attn_norm: Option<W>,
    pub ffn_norm: W,
    pub gate: W,
    pub up: W,
    pub down: W,
    pub post_ffn_norm: Option<W>,
}

pub struct Weights<W> {
    pub tok_embd: W,
    pub layers: Vec<LayerWeights<W>>,
    pub output_norm: W,
    /// `None` when the output projection is tied to `tok_embd`.
    pub output: Option<W>,
}

impl<W> Weights<W> {
    /// The output projection (tied embeddings fall back to the token embedding).
    pub fn output(&self) -> &W {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }
}

impl<W> Weights<W> {
    /// Load every tensor the architecture needs, checking its shape, and convert
    /// each with `conv` into the backend's representation.
    pub fn load(gguf: &Gguf, cfg: &Config, mut conv: impl FnMut(TensorView) -> Result<W>) -> Result<Weights<W>> {
        let mut get = |name: &str, shape: &[usize]| -> Result<W> {
            let t = gguf.tensor(name)?;
            let dims: Vec<usize> = t.info.dims.iter().map(|&d| d as usize).collect();
            if dims != shape {
                return Err(Error::BadTensor {
                    name: name.to_string(),
                    msg: format!("shape {dims:?}, expected {shape:?}"),
                });
            }
            conv(t)
        };
        let (e, q, kv, ff, hd) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff, cfg.head_dim);
        let gemma = cfg.arch == Arch::Gemma3;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            let mut opt = |s: &str, shape: &[usize]| -> Result<Option<W>> {
                if gemma {
                    get(&n(s), shape).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                q_norm: opt("attn_q_norm", &[hd])?,
                k_norm: opt("attn_k_norm", &[hd])?,
                post_attn_norm: opt("post_attention_norm", &[e])?,
                post_ffn_norm: opt("post_ffw_norm", &[e])?,
                attn_norm: get(&n("attn_norm"), &[e])?,
                wq: get(&n("attn_q"), &[e, q])?,
                wk: get(&n("attn_k"), &[e, kv])?,
                wv: get(&n("attn_v"), &[e, kv])?,
                wo: get(&n("attn_output"), &[q, e])?,
                ffn_norm: get(&n("ffn_norm"), &[e])?,
                gate: get(&n("ffn_gate"), &[e, ff])?,
                up: get(&n("ffn_up"), &[e, ff])?,
                down: get(&n("ffn_down"), &[ff, e])?,
            });
        }
        let output = match gguf.header.tensor_info("output.weight") {
            Some(_) => Some(get("output.weight", &[e, cfg.n_vocab])?),
            None => None,
        };
        Ok(Weights {
            tok_embd: get("token_embd.weight", &[e, cfg.n_vocab])?,
            layers,
            output_norm: get("output_norm.weight", &[e])?,
            output,
        })
    }
}

/// Attention geometry for one layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Multiplies q·k before the softmax.
    pub scale: f32,
    pub window: Option<usize>,
}

/// The op set a forward pass is written in. `Act` is a batch of activation rows
/// (`[n_tokens, width]`); `W` a weight tensor in the backend's representation.
/// A backend owns its KV cache; `pos0` is the position of the batch's first row.
pub trait Ops {
    type Act;
    type W;

    /// Rows of the token embedding: `[n, n_embd]`.
    fn embed(&mut self, w: &Self::W, ids: &[u32]) -> Result<Self::Act>;
    /// `x * s`, element-wise.
    fn scale(&mut self, x: &mut Self::Act, s: f32);
    /// RMSNorm over each `group`-wide slice of each row, times `w` (`[group]`).
    fn rms_norm(&mut self, x: &Self::Act, w: &Self::W, group: usize, eps: f32) -> Self::Act;
    /// `x · wᵀ` for `w` of shape `[out, in]` (GGUF dims `[in, out]`).
    fn matmul(&mut self, x: &Self::Act, w: &Self::W) -> Self::Act;
    /// [`Ops::matmul`] of one input by several weights (q/k/v, gate/up), which a backend may run
    /// together.
    fn matmuls<const N: usize>(&mut self, x: &Self::Act, ws: [&Self::W; N]) -> [Self::Act; N] {
        ws.map(|w| self.matmul(x, w))
    }
    /// Rotate each `head_dim` slice of each row by its position `pos0 + row`.
    fn rope(&mut self, x: &mut Self::Act, pos0: usize, head_dim: usize, base: f32, kind: RopeKind);
    /// Append `k`, `v` to the layer's cache, then causal (optionally windowed) attention of `q`.
    fn attention(
        &mut self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        pos0: usize,
        p: AttnParams,
    ) -> Result<Self::Act>;
    /// `silu(gate) * up`.
    fn swiglu(&mut self, gate: &Self::Act, up: &Self::Act) -> Self::Act;
    /// `gelu_tanh(gate) * up`.
    fn geglu(&mut self, gate: &Self::Act, up: &Self::Act) -> Self::Act;
    /// `x += y`, consuming `y` (a backend may then reuse its storage).
    fn add(&mut self, x: &mut Self::Act, y: Self::Act);
    /// Keep rows `rows` of `x`.
    fn rows(&mut self, x: &Self::Act, rows: std::ops::Range<usize>) -> Self::Act;
    /// The residual stream `x` (`[n, n_embd]`) after block `layer`, for backends that record it
    /// (the receipts' per-layer digests); nothing by default. Forward passes call it once the
    /// next block's first norm has read `x`, which a backend may run with the add before it.
    fn residual(&mut self, _layer: usize, _x: &Self::Act) {}
}

/// Forward `ids` (at positions `pos0..`) through the model; logits of rows `out_rows`.
pub fn forward<O: Ops>(
    ops: &mut O,
    cfg: &Config,
    w: &Weights<O::W>,
    ids: &[u32],
    pos0: usize,
    out_rows: std::ops::Range<usize>,
) -> Result<O::Act> {
    if ids.is_empty() || out_rows.start >= out_rows.end || out_rows.end > ids.len() {
        return Err(Error::InvalidArgument(format!("forward of {} tokens, logits rows {out_rows:?}", ids.len())));
    }
    if pos0 + ids.len() > cfg.ctx_len {
        return Err(Error::ContextOverflow { len: pos0 + ids.len(), ctx: cfg.ctx_len });
    }
    if let Some(&bad) = ids.iter().find(|&&t| t as usize >= cfg.n_vocab) {
        return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", cfg.n_vocab)));
    }
    match cfg.arch {
        Arch::Llama => llama::forward(ops, cfg, w, ids, pos0, out_rows),
        Arch::Gemma3 => gemma3::forward(ops, cfg, w, ids, pos0, out_rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Value;

    fn meta(eps: f32, base: f32) -> Metadata {
        let mut m = Metadata::new();
        m.set("general.architecture", Value::Str("llama".into()));
        for (k, v) in [
            ("block_count", 2),
            ("embedding_length", 64),
            ("feed_forward_length", 128),
            ("attention.head_count", 4),
            ("context_length", 32),
            ("vocab_size", 10),
        ] {
            m.set(&format!("llama.{k}"), Value::U32(v));
        }
        m.set("llama.attention.layer_norm_rms_epsilon", Value::F32(eps));
        m.set("llama.rope.freq_base", Value::F32(base));
        m
    }

    #[test]
    fn hyper_parameters_are_validated() {
        let cfg = Config::from_metadata(&meta(1e-5, 10_000.0)).expect("valid");
        assert_eq!((cfg.n_head_kv, cfg.head_dim), (4, 16));
        for (eps, base) in [(f32::NAN, 1e4), (-1.0, 1e4), (1e-5, 0.0), (1e-5, f32::INFINITY)] {
            assert_eq!(
                Config::from_metadata(&meta(eps, base)).map_err(|e| e.code()),
                Err("CORRUPT"),
                "eps {eps}, base {base}"
            );
        }
        let mut m = meta(1e-5, 1e4);
        m.set("general.architecture", Value::Str("mamba".into()));
        assert_eq!(Config::from_metadata(&m).map_err(|e| e.code()), Err("UNSUPPORTED_ARCHITECTURE"));
        let mut m = meta(1e-5, 1e4);
        m.set("llama.attention.head_count", Value::U32(3));
        assert_eq!(Config::from_metadata(&m).map_err(|e| e.code()), Err("CORRUPT"), "64 / 3 heads");
    }
}
