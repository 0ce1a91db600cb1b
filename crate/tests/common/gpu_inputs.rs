//! Inputs and checks shared by the GPU tests natively (`crate/tests/gpu_ops.rs`) and in the
//! browser (`pkg-tests/browser`), included by path in both.
#![allow(dead_code)] // Each test crate uses a part.

use edgeproof::backend::exact::IMat;
use edgeproof::gguf::{self, Gguf, Metadata, TensorData, Value};
use edgeproof::gpu::{GpuContext, GpuOps, GpuOptions, GpuWeight};
use edgeproof::model::{Config, Weights};
use edgeproof::quant::TensorType;
use edgeproof::tiny::SplitMix64;
use std::rc::Rc;

/// Contexts for both dot-product paths (the adapter's `dot4I8Packed` where it has it, and the
/// emulation) and both matrix product layouts (one invocation per tile, and split-K). Natively
/// only: a missing adapter fails the test with how to get one.
#[cfg(not(target_arch = "wasm32"))]
pub fn contexts() -> Vec<Rc<GpuContext>> {
    [(false, false), (true, false), (false, true)]
        .into_iter()
        .map(|(emulate_dot4, split_k)| {
            let opts = GpuOptions { emulate_dot4, split_k: Some(split_k), ..Default::default() };
            let ctx = GpuContext::new_blocking(opts).unwrap_or_else(|e| {
                panic!(
                    "no usable GPU adapter ({e}). Natively the tests run on Mesa's lavapipe: \
                     apt-get install mesa-vulkan-drivers (and, if several drivers are installed, \
                     VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json)"
                )
            });
            eprintln!(
                "adapter: {} ({:?}), dot4I8Packed: {}, split-K: {}",
                ctx.adapter.name, ctx.adapter.backend, ctx.dot4_packed, ctx.split_k
            );
            Rc::new(ctx)
        })
        .collect()
}

/// The weights of `f` uploaded to each of `gpus`.
pub fn gpu_weights(gpus: &[GpuOps], f: &Gguf, cfg: &Config) -> Vec<Weights<GpuWeight>> {
    gpus.iter()
        .map(|g| {
            let mut w = Weights::load(f, cfg, |t| GpuWeight::from_view(&g.ctx, t)).expect("gpu weights");
            edgeproof::gpu::stack_products(&g.ctx, &mut w).expect("stacked products");
            w
        })
        .collect()
}

/// One small llama layer: only the KV cache of layer 0 and the table sizes come from it.
pub fn test_config() -> Config {
    let meta = {
        let mut m = Metadata::new();
        m.set("general.architecture", Value::Str("llama".into()));
        for (k, v) in [
            ("block_count", 1),
            ("embedding_length", 64),
            ("feed_forward_length", 64),
            ("attention.head_count", 4),
            ("context_length", 64),
            ("vocab_size", 8),
        ] {
            m.set(&format!("llama.{k}"), Value::U32(v));
        }
        m.set("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
        m
    };
    Config::from_metadata(&meta).expect("config")
}

/// Random activation rows of varied character: full 24-bit rows, small (unnormalized) rows,
/// wide 30-bit mantissas, zero rows and zero blocks, and exponents far apart.
pub fn random_act(rng: &mut SplitMix64, rows: usize, cols: usize) -> IMat {
    let mut x = IMat::zeros(rows, cols);
    for i in 0..rows {
        let kind = rng.next_u64() % 6;
        let bits = match kind {
            0 => 0,
            1 => 1 + (rng.next_u64() % 12) as u32,
            2 => 30,
            _ => 24,
        };
        x.e[i] = (rng.next_u64() % 80) as i32 - 50;
        for c in 0..cols {
            // Some whole blocks of 32 are zero.
            if bits == 0 || (kind == 3 && (c / 32) % 3 == 1) {
                continue;
            }
            let v = (rng.next_u64() >> (64 - bits)) as i32;
            x.m[i * cols + c] = if rng.next_u64() & 1 == 0 { v } else { -v };
        }
    }
    x
}

/// Compare mantissas and exponents; name the first difference.
pub fn same(what: &str, gpu: &IMat, cpu: &IMat) {
    assert_eq!((gpu.rows, gpu.cols), (cpu.rows, cpu.cols), "{what}: shape");
    if let Some(i) = (0..cpu.rows).find(|&i| gpu.e[i] != cpu.e[i]) {
        panic!("{what}: exponent of row {i}: gpu {} cpu {}", gpu.e[i], cpu.e[i]);
    }
    if let Some(k) = (0..cpu.m.len()).find(|&k| gpu.m[k] != cpu.m[k]) {
        let (i, c) = (k / cpu.cols, k % cpu.cols);
        panic!("{what}: first difference at row {i}, column {c}: gpu {} cpu {}", gpu.m[k], cpu.m[k]);
    }
}

fn put_f16(b: &mut [u8], at: usize, rng: &mut SplitMix64) {
    // Finite f16s of moderate exponent, with some subnormals and zeros.
    let r = rng.next_u64();
    let exp = match r % 16 {
        0 => 0,
        1 => 1 + (r >> 8) % 29,
        _ => 8 + (r >> 8) % 10,
    };
    let bits = ((r >> 20) & 0x83ff) as u16 | (exp as u16) << 10;
    b[at..at + 2].copy_from_slice(&bits.to_le_bytes());
}

/// Random blocks of `ty` for `n` elements: random quants, finite random f16 scales.
fn random_tensor(rng: &mut SplitMix64, ty: TensorType, n: usize) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut data = vec![0u8; n / ty.block_len() * bb];
    for b in data.chunks_exact_mut(bb) {
        rng.fill(b);
        let scales: &[usize] = match ty {
            TensorType::F32 => {
                let v = rng.uniform() * libm::ldexpf(1.0, (rng.next_u64() % 40) as i32 - 20);
                b.copy_from_slice(&v.to_le_bytes());
                &[]
            }
            TensorType::F16 | TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => &[0],
            TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4K | TensorType::Q5K => &[0, 2],
            TensorType::Q6K => &[208],
        };
        for &at in scales {
            put_f16(b, at, rng);
        }
    }
    data
}

/// A GGUF holding one `[cols, rows]` tensor of `ty`.
pub fn weight_file(rng: &mut SplitMix64, ty: TensorType, rows: usize, cols: usize) -> Gguf {
    let data = random_tensor(rng, ty, rows * cols);
    let t = TensorData { name: "w".into(), dims: vec![cols as u64, rows as u64], ty, data };
    Gguf::from_bytes(gguf::write(&Metadata::new(), &[t]).expect("write")).expect("parse")
}

/// A signed random value below 2^bits in magnitude.
pub fn signed(rng: &mut SplitMix64, bits: u32) -> i32 {
    let v = (rng.next_u64() >> (64 - bits)) as i32;
    if rng.next_u64() & 1 == 0 {
        v
    } else {
        -v
    }
}

/// Rows of logits of `cols` tokens: (name, mantissas, exponent, whether the kernels must
/// hand the seeded choice back to the CPU).
pub fn logit_rows(rng: &mut SplitMix64, cols: usize) -> Vec<(String, Vec<i32>, i32, bool)> {
    let mut out = vec![];
    // Spreads like real logits: 24-bit rows at e = −17..−10, and narrower ones.
    for bits in [24, 21, 18, 14, 9] {
        let e = -17 + (rng.next_u64() % 8) as i32;
        let mut m: Vec<i32> = (0..cols).map(|_| signed(rng, bits)).collect();
        // Real logit rows are normalized: the largest near 2^23.
        if bits == 24 {
            m[rng.next_u64() as usize % cols] = (1 << 24) - 1;
        }
        out.push((format!("random {bits}-bit e={e}"), m, e, false));
    }
    // Many ties: a few distinct values.
    out.push(("ties".into(), (0..cols).map(|_| (rng.next_u64() % 6) as i32 * (1 << 15)).collect(), -17, false));
    out.push(("all equal".into(), vec![1_234_567; cols], -14, false));
    let mut m: Vec<i32> = (0..cols).map(|_| signed(rng, 10)).collect();
    m[cols / 2] = (1 << 23) + 5;
    out.push(("one huge winner".into(), m, -12, false));
    out.push(("e=0 narrow".into(), (0..cols).map(|_| signed(rng, 5)).collect(), 0, false));
    out.push(("e=0 wide".into(), (0..cols).map(|_| signed(rng, 24)).collect(), 0, false));
    out.push(("e=-60 (all q16 zero)".into(), (0..cols).map(|_| signed(rng, 24)).collect(), -60, false));
    out.push(("e=3 (fallback)".into(), (0..cols).map(|_| signed(rng, 12)).collect(), 3, true));
    out
}
