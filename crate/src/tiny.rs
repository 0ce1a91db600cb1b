//! A tiny random-weight model for fast tests: real tokenizer (copied from a real
//! GGUF's metadata), every supported tensor type, and for `gemma3` a sliding
//! window of 8 with one global layer, so window logic shows up within a few tokens.

use crate::error::{Error, Result};
use crate::gguf::{self, Metadata, TensorData, Value};
use crate::model::Arch;
use crate::quant::TensorType;
use half::f16;

/// SplitMix64: a small, seeded, portable generator for test data.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

pub const TINY_EMBD: usize = 64;
pub const TINY_FF: usize = 256;
pub const TINY_HEAD_DIM: usize = 16;
pub const TINY_HEADS: usize = 4;
pub const TINY_HEADS_KV: usize = 2;
pub const TINY_WINDOW: usize = 8;
pub const TINY_CTX: usize = 256;

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Random blocks of `ty` whose values have roughly standard deviation `std`:
/// random quants, with scales (and mins) set so the distribution is centred.
fn random_tensor(rng: &mut SplitMix64, ty: TensorType, n: usize, std: f32) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut data = vec![0u8; n / ty.block_len() * bb];
    for b in data.chunks_exact_mut(bb) {
        match ty {
            TensorType::F32 => b.copy_from_slice(&(rng.uniform() * std * 1.73).to_le_bytes()),
            TensorType::F16 => put_f16(b, 0, rng.uniform() * std * 1.73),
            _ => {
                rng.fill(b);
                // Spread of the raw quant values for each type, and the min that centres them.
                let (at_d, spread, at_m, centre) = match ty {
                    TensorType::Q4_0 => (0, 4.6, None, 0.0),
                    TensorType::Q4_1 => (0, 4.6, Some(2), -7.5),
                    TensorType::Q5_0 => (0, 9.2, None, 0.0),
                    TensorType::Q5_1 => (0, 9.2, Some(2), -15.5),
                    TensorType::Q8_0 => (0, 74.0, None, 0.0),
                    TensorType::Q4K => (0, 200.0, Some(2), 7.5),
                    TensorType::Q5K => (0, 400.0, Some(2), 15.5),
                    TensorType::Q6K => (208, 1370.0, None, 0.0),
                    TensorType::F32 | TensorType::F16 => (0, 1.0, None, 0.0),
                };
                let d = std / spread;
                put_f16(b, at_d, d);
                if let Some(at_m) = at_m {
                    put_f16(b, at_m, d * centre);
                }
            }
        }
    }
    data
}

/// Build the tiny model of `arch`, taking every `tokenizer.*` key from `tokenizer_from`.
pub fn tiny_model(arch: Arch, tokenizer_from: &Metadata, seed: u64) -> Result<Vec<u8>> {
    let n_vocab = tokenizer_from.get_str_array("tokenizer.ggml.tokens")?.len();
    if n_vocab == 0 {
        return Err(Error::InvalidArgument("the tokenizer source has no tokens".into()));
    }
    let (name, n_layer) = match arch {
        Arch::Llama => ("llama", 3usize),
        Arch::Gemma3 => ("gemma3", 6usize),
    };
    let mut meta = Metadata::new();
    let k = |s: &str| format!("{name}.{s}");
    meta.set("general.architecture", Value::Str(name.into()));
    meta.set("general.name", Value::Str(format!("edgeproof tiny {name}")));
    meta.set(&k("block_count"), Value::U32(n_layer as u32));
    meta.set(&k("context_length"), Value::U32(TINY_CTX as u32));
    meta.set(&k("embedding_length"), Value::U32(TINY_EMBD as u32));
    meta.set(&k("feed_forward_length"), Value::U32(TINY_FF as u32));
    meta.set(&k("attention.head_count"), Value::U32(TINY_HEADS as u32));
    meta.set(&k("attention.head_count_kv"), Value::U32(TINY_HEADS_KV as u32));
    meta.set(&k("attention.key_length"), Value::U32(TINY_HEAD_DIM as u32));
    meta.set(&k("attention.value_length"), Value::U32(TINY_HEAD_DIM as u32));
    meta.set(&k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6));
    meta.set(&k("rope.freq_base"), Value::F32(100_000.0));
    meta.set(&k("vocab_size"), Value::U32(n_vocab as u32));
    if arch == Arch::Gemma3 {
        meta.set(&k("attention.sliding_window"), Value::U32(TINY_WINDOW as u32));
    }
    for (key, v) in tokenizer_from.entries() {
        if key.starts_with("tokenizer.") {
            meta.set(key, v.clone());
        }
    }

    let mut rng = SplitMix64(seed);
    let mut tensors = Vec::new();
    let mut add = |rng: &mut SplitMix64, name: String, dims: Vec<usize>, ty: TensorType, std: f32| {
        let n = dims.iter().product();
        let data = random_tensor(rng, ty, n, std);
        tensors.push(TensorData { name, dims: dims.iter().map(|&d| d as u64).collect(), ty, data });
    };
    let norm = |rng: &mut SplitMix64, len: usize| -> Vec<u8> {
        (0..len).flat_map(|_| (1.0 + 0.2 * rng.uniform()).to_le_bytes()).collect()
    };
    let (e, q, kv, ff, hd) =
        (TINY_EMBD, TINY_HEADS * TINY_HEAD_DIM, TINY_HEADS_KV * TINY_HEAD_DIM, TINY_FF, TINY_HEAD_DIM);
    use TensorType::*;
    // Types rotate over layers so that every type is used; K-quants need rows of 256 (the FFN down input).
    let small = [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16];
    let kquant = [Q4K, Q5K, Q6K];
    add(&mut rng, "token_embd.weight".into(), vec![e, n_vocab], Q8_0, 1.0);
    let mut norms = vec![("output_norm.weight".to_string(), e)];
    for il in 0..n_layer {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        let t = |j: usize| small[(il + j) % small.len()];
        add(&mut rng, n("attn_q"), vec![e, q], t(0), 1.0 / (e as f32).sqrt());
        add(&mut rng, n("attn_k"), vec![e, kv], t(1), 1.0 / (e as f32).sqrt());
        add(&mut rng, n("attn_v"), vec![e, kv], t(2), 1.0 / (e as f32).sqrt());
        add(&mut rng, n("attn_output"), vec![q, e], t(3), 1.0 / (q as f32).sqrt());
        add(&mut rng, n("ffn_gate"), vec![e, ff], t(4), 1.0 / (e as f32).sqrt());
        add(&mut rng, n("ffn_up"), vec![e, ff], t(5), 1.0 / (e as f32).sqrt());
        add(&mut rng, n("ffn_down"), vec![ff, e], kquant[il % kquant.len()], 1.0 / (ff as f32).sqrt());
        norms.push((n("attn_norm"), e));
        norms.push((n("ffn_norm"), e));
        if arch == Arch::Gemma3 {
            norms.push((n("attn_q_norm"), hd));
            norms.push((n("attn_k_norm"), hd));
            norms.push((n("post_attention_norm"), e));
            norms.push((n("post_ffw_norm"), e));
        }
    }
    for (name, len) in norms {
        let data = norm(&mut rng, len);
        tensors.push(TensorData { name, dims: vec![len as u64], ty: F32, data });
    }
    gguf::write(&meta, &tensors)
}

/// A random-weight model with the shapes, types and metadata of `like` (a model's header;
/// a prefix of the file that holds it is enough): for speed and bit-identity checks at a
/// real model's size where the real weights cannot be carried.
pub fn random_like(like: &gguf::Header, seed: u64) -> Result<Vec<u8>> {
    let mut rng = SplitMix64(seed);
    let tensors = like
        .tensors
        .iter()
        .map(|t| {
            let n = t.n_elements() as usize;
            let data = if t.dims.len() == 1 && t.ty == TensorType::F32 {
                (0..n).flat_map(|_| (1.0 + 0.2 * rng.uniform()).to_le_bytes()).collect()
            } else {
                random_tensor(&mut rng, t.ty, n, 1.0 / (t.row_len() as f32).sqrt())
            };
            TensorData { name: t.name.clone(), dims: t.dims.clone(), ty: t.ty, data }
        })
        .collect::<Vec<_>>();
    gguf::write(&like.metadata, &tensors)
}
