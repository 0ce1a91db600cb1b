//! BERT sentence encoders (all-MiniLM-L6-v2). The safetensors checkpoint is converted at load
//! into a GGUF held in memory ([`convert`]): matrices quantized to Q8_0 by the rule in
//! `docs/NUMERICS.md` ("Encoders"), vectors kept as F32, `config.json` and `tokenizer.json` in
//! its metadata with the source file's SHA-256, so the rest of the crate (weights, GPU uploads,
//! the model commitment) reads it like any other GGUF. The forward pass embeds a batch of texts,
//! each attending only to itself, then mean-pools and L2-normalizes each text's rows.

use crate::error::{Error, Result};
use crate::gguf::{self, Gguf, Metadata, TensorData, TensorView, Value};
use crate::model::{AttnParams, Ops};
use crate::quant::TensorType;
use sha2::{Digest, Sha256};
use std::ops::Range;

/// The architecture name in the converted GGUF.
pub const ARCH: &str = "bert";
/// Names the conversion rule (hashed into the converted file's metadata).
pub const CONVERSION: &str = "edgeproof safetensors F32 to Q8_0 v1";

/// Hyper-parameters, from `config.json` (or the converted GGUF's metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub head_dim: usize,
    pub n_vocab: usize,
    /// Position embeddings: the longest text, in word pieces.
    pub n_pos: usize,
    pub ln_eps: f32,
}

impl BertConfig {
    /// Hugging Face's `config.json` of a `BertModel` with the erf GELU.
    pub fn from_json(json: &str) -> Result<BertConfig> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Corrupt(format!("config.json: {e}")))?;
        let num = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| Error::MissingKey(format!("config.json: {k}")))
        };
        let model_type = v.get("model_type").and_then(|t| t.as_str()).unwrap_or("");
        if model_type != "bert" {
            return Err(Error::UnsupportedArchitecture(format!("config.json model_type '{model_type}'")));
        }
        let act = v.get("hidden_act").and_then(|t| t.as_str()).unwrap_or("gelu");
        if act != "gelu" {
            return Err(Error::UnsupportedArchitecture(format!("BERT with hidden_act '{act}' (only the erf 'gelu')")));
        }
        let eps = v.get("layer_norm_eps").and_then(serde_json::Value::as_f64).unwrap_or(1e-12);
        let (n_embd, n_head) = (num("hidden_size")?, num("num_attention_heads")?);
        let cfg = BertConfig {
            n_layer: num("num_hidden_layers")?,
            n_embd,
            n_ff: num("intermediate_size")?,
            n_head,
            head_dim: n_embd.checked_div(n_head).unwrap_or(0),
            n_vocab: num("vocab_size")?,
            n_pos: num("max_position_embeddings")?,
            ln_eps: eps as f32,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_metadata(meta: &Metadata) -> Result<BertConfig> {
        let arch = meta.get_str("general.architecture")?;
        if arch != ARCH {
            return Err(Error::UnsupportedArchitecture(format!("'{arch}' is not an encoder")));
        }
        let k = |s: &str| format!("{ARCH}.{s}");
        let (n_embd, n_head) = (meta.get_usize(&k("embedding_length"))?, meta.get_usize(&k("attention.head_count"))?);
        let cfg = BertConfig {
            n_layer: meta.get_usize(&k("block_count"))?,
            n_embd,
            n_ff: meta.get_usize(&k("feed_forward_length"))?,
            n_head,
            head_dim: n_embd.checked_div(n_head).unwrap_or(0),
            n_vocab: meta.get_usize(&k("vocab_size"))?,
            n_pos: meta.get_usize(&k("context_length"))?,
            ln_eps: meta.get_f32(&k("attention.layer_norm_epsilon"))?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let ok = self.n_layer > 0
            && self.n_embd > 0
            && self.n_ff > 0
            && self.n_vocab > 0
            && self.n_pos > 0
            && self.n_head > 0
            && self.head_dim * self.n_head == self.n_embd
            && self.head_dim.is_multiple_of(4)
            && self.n_embd.is_multiple_of(32)
            && self.n_ff.is_multiple_of(32)
            && self.ln_eps.is_finite()
            && self.ln_eps >= 0.0;
        if ok {
            Ok(())
        } else {
            Err(Error::Corrupt(format!("BERT hyper-parameters {self:?}")))
        }
    }

    fn write(&self, meta: &mut Metadata) {
        meta.set("general.architecture", Value::Str(ARCH.into()));
        for (k, v) in [
            ("block_count", self.n_layer),
            ("embedding_length", self.n_embd),
            ("feed_forward_length", self.n_ff),
            ("attention.head_count", self.n_head),
            ("vocab_size", self.n_vocab),
            ("context_length", self.n_pos),
        ] {
            meta.set(&format!("{ARCH}.{k}"), Value::U32(v as u32));
        }
        meta.set(&format!("{ARCH}.attention.layer_norm_epsilon"), Value::F32(self.ln_eps));
    }
}

/// The GGUF name of a Hugging Face BERT tensor (llama.cpp's names), `None` for tensors the
/// encoder does not use (`position_ids`, the pooler).
fn gguf_name(hf: &str) -> Option<String> {
    let hf = hf.strip_prefix("bert.").unwrap_or(hf);
    let fixed = match hf {
        "embeddings.word_embeddings.weight" => Some("token_embd.weight"),
        "embeddings.position_embeddings.weight" => Some("position_embd.weight"),
        "embeddings.token_type_embeddings.weight" => Some("token_types.weight"),
        "embeddings.LayerNorm.weight" => Some("token_embd_norm.weight"),
        "embeddings.LayerNorm.bias" => Some("token_embd_norm.bias"),
        _ => None,
    };
    if let Some(n) = fixed {
        return Some(n.to_string());
    }
    let rest = hf.strip_prefix("encoder.layer.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.rsplit_once('.')?;
    let part = match part {
        "attention.self.query" => "attn_q",
        "attention.self.key" => "attn_k",
        "attention.self.value" => "attn_v",
        "attention.output.dense" => "attn_output",
        "attention.output.LayerNorm" => "attn_output_norm",
        "intermediate.dense" => "ffn_up",
        "output.dense" => "ffn_down",
        "output.LayerNorm" => "layer_output_norm",
        _ => return None,
    };
    matches!(kind, "weight" | "bias").then(|| format!("blk.{layer}.{part}.{kind}"))
}

/// Quantize f32 rows (a multiple of 32 long) to Q8_0 blocks: per block of 32, `d` is
/// `max |w| / 127` as an f32 quotient, rounded to the nearest f16 (two correctly rounded steps:
/// not through f64, which `half` converts through f32 on x86 and directly elsewhere), and
/// `q = round_ties_even(w / d)` in f64, clamped to ±127 (0 where d is 0). Every step is a
/// correctly rounded IEEE operation, and an exact tie cannot be produced by the f64 division's
/// rounding, so every platform gets the same bytes. `None` for an Inf or NaN, or a scale past
/// f16's range.
pub fn quantize_q8_0(w: &[f32]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(w.len() / 32 * 34);
    for b in w.chunks_exact(32) {
        if b.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let amax = b.iter().fold(0f32, |m, &v| m.max(v.abs()));
        let d = half::f16::from_f32(amax / 127.0);
        if !d.is_finite() {
            return None;
        }
        out.extend_from_slice(&d.to_le_bytes());
        let df = d.to_f64();
        for &v in b {
            let q = if df == 0.0 { 0.0 } else { (v as f64 / df).round_ties_even().clamp(-127.0, 127.0) };
            out.push(q as i8 as u8);
        }
    }
    Some(out)
}

/// Convert a BERT checkpoint (safetensors, F32) with its `config.json` and `tokenizer.json`
/// into the GGUF the encoder runs ([`CONVERSION`]). 2-D tensors become Q8_0, 1-D ones stay F32;
/// the metadata holds the hyper-parameters, both JSON files as given and the checkpoint's SHA-256.
pub fn convert(safetensors: &[u8], config_json: &str, tokenizer_json: &str) -> Result<Gguf> {
    let cfg = BertConfig::from_json(config_json)?;
    let st = safetensors::SafeTensors::deserialize(safetensors)
        .map_err(|e| Error::Corrupt(format!("safetensors: {e:?}")))?;
    let mut meta = Metadata::new();
    cfg.write(&mut meta);
    meta.set("edgeproof.conversion", Value::Str(CONVERSION.into()));
    meta.set("edgeproof.source.sha256", Value::Str(hex::encode(Sha256::digest(safetensors))));
    meta.set("edgeproof.source.config", Value::Str(config_json.into()));
    meta.set("tokenizer.huggingface.json", Value::Str(tokenizer_json.into()));
    // The file's order, so that the conversion does not depend on a hash map's.
    let mut names: Vec<(usize, String, String)> = st
        .iter()
        .filter_map(|(hf, t)| {
            let at = t.data().as_ptr() as usize - safetensors.as_ptr() as usize;
            gguf_name(hf).map(|g| (at, hf.to_string(), g))
        })
        .collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for (_, hf, name) in names {
        let t = st.tensor(&hf).map_err(|e| Error::Corrupt(format!("safetensors tensor '{hf}': {e:?}")))?;
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(Error::UnsupportedTensorType { tensor: hf, ty: format!("{:?} (only F32)", t.dtype()) });
        }
        let bad = |msg: String| Error::BadTensor { name: hf.clone(), msg };
        let vals: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let (dims, ty, data) = match *t.shape() {
            [n] => (vec![n as u64], TensorType::F32, t.data().to_vec()),
            [rows, cols] => {
                if !cols.is_multiple_of(32) {
                    return Err(bad(format!("rows of {cols} are not whole blocks of 32")));
                }
                let q = quantize_q8_0(&vals).ok_or_else(|| bad("Inf, NaN or a value past f16's range".into()))?;
                (vec![cols as u64, rows as u64], TensorType::Q8_0, q)
            }
            _ => return Err(bad(format!("shape {:?}", t.shape()))),
        };
        tensors.push(TensorData { name, dims, ty, data });
    }
    Gguf::from_bytes(gguf::write(&meta, &tensors)?)
}

/// One encoder layer's weights.
pub struct BertLayer<W> {
    pub wq: W,
    pub bq: W,
    pub wk: W,
    pub bk: W,
    pub wv: W,
    pub bv: W,
    pub wo: W,
    pub bo: W,
    pub attn_norm: (W, W),
    pub up: W,
    pub b_up: W,
    pub down: W,
    pub b_down: W,
    pub out_norm: (W, W),
}

pub struct BertWeights<W> {
    pub tok_embd: W,
    pub pos_embd: W,
    pub type_embd: W,
    pub embd_norm: (W, W),
    pub layers: Vec<BertLayer<W>>,
}

impl<W> BertWeights<W> {
    /// Every tensor the encoder needs, shape-checked and converted with `conv`.
    pub fn load(
        gguf: &Gguf,
        cfg: &BertConfig,
        mut conv: impl FnMut(TensorView) -> Result<W>,
    ) -> Result<BertWeights<W>> {
        let mut get = |name: &str, shape: &[usize]| -> Result<W> {
            let t = gguf.tensor(name)?;
            let dims: Vec<usize> = t.info.dims.iter().map(|&d| d as usize).collect();
            if dims != shape {
                return Err(Error::BadTensor { name: name.into(), msg: format!("shape {dims:?}, expected {shape:?}") });
            }
            conv(t)
        };
        let (e, f) = (cfg.n_embd, cfg.n_ff);
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            let mut pair = |s: &str, shape: &[usize], out: usize| -> Result<(W, W)> {
                Ok((get(&n(&format!("{s}.weight")), shape)?, get(&n(&format!("{s}.bias")), &[out])?))
            };
            let (wq, bq) = pair("attn_q", &[e, e], e)?;
            let (wk, bk) = pair("attn_k", &[e, e], e)?;
            let (wv, bv) = pair("attn_v", &[e, e], e)?;
            let (wo, bo) = pair("attn_output", &[e, e], e)?;
            let attn_norm = pair("attn_output_norm", &[e], e)?;
            let (up, b_up) = pair("ffn_up", &[e, f], f)?;
            let (down, b_down) = pair("ffn_down", &[f, e], e)?;
            let out_norm = pair("layer_output_norm", &[e], e)?;
            layers.push(BertLayer { wq, bq, wk, bk, wv, bv, wo, bo, attn_norm, up, b_up, down, b_down, out_norm });
        }
        Ok(BertWeights {
            tok_embd: get("token_embd.weight", &[e, cfg.n_vocab])?,
            pos_embd: get("position_embd.weight", &[e, cfg.n_pos])?,
            type_embd: get("token_types.weight", &[e, 2])?,
            embd_norm: (get("token_embd_norm.weight", &[e])?, get("token_embd_norm.bias", &[e])?),
            layers,
        })
    }
}

/// Checks that `segs` tile the rows `0..rows` in order, each non-empty: what
/// [`EncoderOps::attention_segments`] and [`EncoderOps::mean_pool_l2`] take.
pub fn check_segments(segs: &[Range<usize>], rows: usize) -> Result<()> {
    let mut at = 0;
    for s in segs {
        if s.start != at || s.end <= s.start {
            return Err(Error::InvalidArgument(format!("segment {s:?} does not follow row {at}")));
        }
        at = s.end;
    }
    if at != rows {
        return Err(Error::InvalidArgument(format!("segments cover {at} of {rows} rows")));
    }
    Ok(())
}

/// The ops an encoder adds to [`Ops`]. `segs` are the batch's texts as row ranges: each text's
/// rows see only each other, so a text's result does not depend on the batch around it.
pub trait EncoderOps: Ops {
    /// `x += b` on every row (`b`: a 1-D weight as wide as a row).
    fn add_bias(&mut self, x: &mut Self::Act, b: &Self::W);
    /// LayerNorm of each row: `(x − mean) / sqrt(var + eps) · w + b`.
    fn layer_norm(&mut self, x: &Self::Act, w: &Self::W, b: &Self::W, eps: f32) -> Self::Act;
    /// `x · Φ(x)`, the erf GELU, element-wise.
    fn gelu(&mut self, x: &Self::Act) -> Self::Act;
    /// Attention of every row over the rows of its own segment, in both directions.
    fn attention_segments(
        &mut self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        segs: &[Range<usize>],
        p: AttnParams,
    ) -> Result<Self::Act>;
    /// Per segment, the mean of its rows, L2-normalized: `[segs.len(), width]`.
    fn mean_pool_l2(&mut self, x: &Self::Act, segs: &[Range<usize>]) -> Self::Act;
}

/// Embed a batch of tokenized texts (`[CLS] ... [SEP]` each): one L2-normalized row per text.
pub fn forward<O: EncoderOps>(
    ops: &mut O,
    cfg: &BertConfig,
    w: &BertWeights<O::W>,
    texts: &[Vec<u32>],
) -> Result<O::Act> {
    let mut segs = Vec::with_capacity(texts.len());
    let (mut ids, mut pos) = (Vec::new(), Vec::new());
    for t in texts {
        if t.is_empty() {
            return Err(Error::InvalidArgument("a text of no tokens".into()));
        }
        if t.len() > cfg.n_pos {
            return Err(Error::ContextOverflow { len: t.len(), ctx: cfg.n_pos });
        }
        if let Some(&bad) = t.iter().find(|&&id| id as usize >= cfg.n_vocab) {
            return Err(Error::InvalidArgument(format!("token id {bad} is outside the vocabulary of {}", cfg.n_vocab)));
        }
        segs.push(ids.len()..ids.len() + t.len());
        ids.extend_from_slice(t);
        pos.extend(0..t.len() as u32);
    }
    if ids.is_empty() {
        return Err(Error::InvalidArgument("nothing to embed".into()));
    }
    let n = ids.len();
    // Embeddings: word + position + token type 0, then LayerNorm.       [n, e]
    let mut x = ops.embed(&w.tok_embd, &ids)?;
    let p = ops.embed(&w.pos_embd, &pos)?;
    ops.add(&mut x, p);
    let t = ops.embed(&w.type_embd, &vec![0; n])?;
    ops.add(&mut x, t);
    let mut x = ops.layer_norm(&x, &w.embd_norm.0, &w.embd_norm.1, cfg.ln_eps);
    for (il, l) in w.layers.iter().enumerate() {
        // Self-attention within each text.                              [n, e] each
        let [mut q, mut k, mut v] = ops.matmuls(&x, [&l.wq, &l.wk, &l.wv]);
        ops.add_bias(&mut q, &l.bq);
        ops.add_bias(&mut k, &l.bk);
        ops.add_bias(&mut v, &l.bv);
        let p = AttnParams {
            layer: il,
            n_head: cfg.n_head,
            n_head_kv: cfg.n_head,
            head_dim: cfg.head_dim,
            scale: 1.0 / (cfg.head_dim as f32).sqrt(),
            window: None,
        };
        let a = ops.attention_segments(&q, &k, &v, &segs, p)?;
        // Output projection, residual, LayerNorm (post-norm).            [n, e]
        let mut o = ops.matmul(&a, &l.wo);
        ops.add_bias(&mut o, &l.bo);
        ops.add(&mut x, o);
        x = ops.layer_norm(&x, &l.attn_norm.0, &l.attn_norm.1, cfg.ln_eps);
        // Feed-forward with the erf GELU, residual, LayerNorm.           [n, f] → [n, e]
        let mut h = ops.matmul(&x, &l.up);
        ops.add_bias(&mut h, &l.b_up);
        let h = ops.gelu(&h);
        let mut f = ops.matmul(&h, &l.down);
        ops.add_bias(&mut f, &l.b_down);
        ops.add(&mut x, f);
        x = ops.layer_norm(&x, &l.out_norm.0, &l.out_norm.1, cfg.ln_eps);
    }
    // Mean over each text's rows, L2-normalized.                         [texts, e]
    Ok(ops.mean_pool_l2(&x, &segs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_gguf_names() {
        for (hf, want) in [
            ("embeddings.word_embeddings.weight", Some("token_embd.weight")),
            ("bert.embeddings.LayerNorm.bias", Some("token_embd_norm.bias")),
            ("encoder.layer.5.attention.self.key.bias", Some("blk.5.attn_k.bias")),
            ("encoder.layer.0.attention.output.LayerNorm.weight", Some("blk.0.attn_output_norm.weight")),
            ("encoder.layer.3.output.dense.weight", Some("blk.3.ffn_down.weight")),
            ("embeddings.position_ids", None),
            ("pooler.dense.weight", None),
            ("encoder.layer.x.output.dense.weight", None),
        ] {
            assert_eq!(gguf_name(hf).as_deref(), want, "{hf}");
        }
    }

    #[test]
    fn q8_0_rule_rounds_to_the_stored_scale() {
        let mut w: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 7.0).collect();
        let b = quantize_q8_0(&w).expect("finite");
        let d = half::f16::from_le_bytes([b[0], b[1]]).to_f64();
        assert_eq!(d, half::f16::from_f32(w[0].abs() / 127.0).to_f64());
        for (i, &v) in w.iter().enumerate() {
            assert_eq!(b[2 + i] as i8 as f64, (v as f64 / d).round_ties_even().clamp(-127.0, 127.0), "element {i}");
        }
        assert_eq!(quantize_q8_0(&[0.0; 32]).expect("zeros"), [0u8; 34]);
        w[3] = f32::NAN;
        assert_eq!(quantize_q8_0(&w), None);
        assert_eq!(quantize_q8_0(&[1e9; 32]), None, "a scale past f16's range");
    }
}
