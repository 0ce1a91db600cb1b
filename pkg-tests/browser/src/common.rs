//! Helpers: the adapter, random inputs (as in `crate/tests/gpu_ops.rs`), bitwise comparison,
//! and model files fetched from the test server.

use edgeproof::backend::exact::{ExactOps, IMat};
use edgeproof::gguf::{self, Gguf, Metadata, TensorData, Value};
use edgeproof::gpu::{GpuContext, GpuOps, GpuOptions};
use edgeproof::model::{Arch, Config};
use edgeproof::quant::TensorType;
use edgeproof::tiny::SplitMix64;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub use wasm_bindgen_test::console_log as log;

/// A device with `opts`; no adapter fails the test, naming what gives Chromium one.
pub async fn context(opts: GpuOptions) -> GpuContext {
    GpuContext::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "no usable WebGPU adapter in the browser ({e}). Chromium needs --enable-unsafe-webgpu \
             (and --no-sandbox as root) to offer its SwiftShader adapter: see \
             pkg-tests/browser/webdriver.json and scripts/test-browser.sh (Debian: apt-get install \
             chromium chromium-driver)"
        )
    })
}

/// Both dot-product paths: `dot4I8Packed` (Chromium has it) and the emulation.
pub async fn gpus_for(cfg: &Config) -> Vec<GpuOps> {
    let mut out = Vec::new();
    for emulate_dot4 in [false, true] {
        let ctx = context(GpuOptions { emulate_dot4, ..Default::default() }).await;
        out.push(GpuOps::new(Rc::new(ctx), cfg).expect("GPU ops"));
    }
    out
}

pub async fn gpus() -> Vec<GpuOps> {
    gpus_for(&test_config()).await
}

pub fn cpu() -> ExactOps {
    ExactOps::new(&test_config())
}

/// One small llama layer: only the KV cache of layer 0 and the table sizes come from it.
pub fn test_config() -> Config {
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
    Config::from_metadata(&m).expect("config")
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
            if bits == 0 || (kind == 3 && (c / 32) % 3 == 1) {
                continue;
            }
            let v = (rng.next_u64() >> (64 - bits)) as i32;
            x.m[i * cols + c] = if rng.next_u64() & 1 == 0 { v } else { -v };
        }
    }
    x
}

/// Compare mantissas and exponents bit for bit; name the first difference.
pub fn same(what: &str, gpu: &IMat, cpu: &IMat) {
    assert_eq!((gpu.rows, gpu.cols), (cpu.rows, cpu.cols), "{what}: shape");
    if let Some(i) = (0..cpu.rows).find(|&i| gpu.e[i] != cpu.e[i]) {
        panic!("{what}: exponent of row {i}: gpu {} cpu {}", gpu.e[i], cpu.e[i]);
    }
    if let Some(k) = (0..cpu.m.len()).find(|&k| gpu.m[k] != cpu.m[k]) {
        let (i, c) = (k / cpu.cols, k % cpu.cols);
        panic!("{what}: first difference at row {i}, column {c} (index {k}): gpu {} cpu {}", gpu.m[k], cpu.m[k]);
    }
}

/// A finite f16 of moderate exponent, with some subnormals and zeros.
fn put_f16(b: &mut [u8], at: usize, rng: &mut SplitMix64) {
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

/// A GGUF holding one `[cols, rows]` tensor "w" of `ty`.
pub fn weight_file(rng: &mut SplitMix64, ty: TensorType, rows: usize, cols: usize) -> Gguf {
    let data = random_tensor(rng, ty, rows * cols);
    let t = TensorData { name: "w".into(), dims: vec![cols as u64, rows as u64], ty, data };
    Gguf::from_bytes(gguf::write(&Metadata::new(), &[t]).expect("write")).expect("parse")
}

/// A norm weight "w" of `len` f32s around 1.
pub fn norm_file(rng: &mut SplitMix64, len: usize) -> Gguf {
    let data = (0..len).flat_map(|_| (1.0 + 0.5 * rng.uniform()).to_le_bytes()).collect();
    let t = TensorData { name: "w".into(), dims: vec![len as u64], ty: TensorType::F32, data };
    Gguf::from_bytes(gguf::write(&Metadata::new(), &[t]).expect("write")).expect("parse")
}

/// The tiny model of `arch` (random weights of every tensor type), vocabulary of 40.
pub fn tiny(arch: Arch) -> Gguf {
    let mut src = Metadata::new();
    let toks: Vec<Value> = (0..40).map(|i| Value::Str(format!("t{i}"))).collect();
    src.set("tokenizer.ggml.model", Value::Str("llama".into()));
    src.set("tokenizer.ggml.tokens", Value::Array(8, toks));
    Gguf::from_bytes(edgeproof::tiny::tiny_model(arch, &src, 7).expect("tiny model")).expect("parse")
}

/// Milliseconds since some origin, for the timings in the log.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// `name` from the model server `scripts/test-browser.sh` starts (its URL is compiled in:
/// the test runner serves only its own files).
pub async fn fetch_model(name: &str) -> Vec<u8> {
    // Not `env!`: the crate still builds without it, and only this test fails.
    let Some(base) = option_env!("EDGEPROOF_MODELS_URL") else {
        panic!("EDGEPROOF_MODELS_URL was not set at build time: run scripts/test-browser.sh")
    };
    let url = format!("{base}/{name}");
    let window = web_sys::window().expect("a window");
    let resp = JsFuture::from(window.fetch_with_str(&url)).await.unwrap_or_else(|e| panic!("fetch {url}: {e:?}"));
    let resp: web_sys::Response = resp.dyn_into().expect("a Response");
    assert!(resp.ok(), "fetch {url}: HTTP {}", resp.status());
    let buf = JsFuture::from(resp.array_buffer().expect("array_buffer")).await.expect("body");
    js_sys::Uint8Array::new(&buf).to_vec()
}
