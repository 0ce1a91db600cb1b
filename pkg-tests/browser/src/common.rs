//! Helpers: the adapter, random inputs (as in `crate/tests/gpu_ops.rs`), bitwise comparison,
//! and model files fetched from the test server.

use edgeproof::backend::exact::ExactOps;
use edgeproof::gguf::{self, Gguf, Metadata, TensorData, Value};
use edgeproof::gpu::{GpuContext, GpuOps, GpuOptions};
use edgeproof::model::{Arch, Config};
use edgeproof::quant::TensorType;
use edgeproof::tiny::SplitMix64;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

pub use wasm_bindgen_test::console_log as log;

#[path = "../../../crate/tests/common/gpu_inputs.rs"]
mod gpu_inputs;
pub use gpu_inputs::{gpu_weights, logit_rows, random_act, same, test_config, weight_file};

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

/// Both dot-product paths (`dot4I8Packed`, which Chromium has, and the emulation) and both
/// matrix product layouts (one invocation per tile, and split-K).
pub async fn gpus_for(cfg: &Config) -> Vec<GpuOps> {
    let mut out = Vec::new();
    for (emulate_dot4, split_k) in [(false, false), (true, false), (false, true)] {
        let ctx = context(GpuOptions { emulate_dot4, split_k: Some(split_k), ..Default::default() }).await;
        out.push(GpuOps::new(Rc::new(ctx), cfg).expect("GPU ops"));
    }
    out
}

/// Two configurations that between them use every path (`dot4I8Packed` one invocation per
/// tile; the emulation with split-K), for the real model, whose steps take seconds here.
pub async fn two_gpus_for(cfg: &Config) -> Vec<GpuOps> {
    let mut out = Vec::new();
    for emulate_dot4 in [false, true] {
        let ctx = context(GpuOptions { emulate_dot4, split_k: Some(emulate_dot4), ..Default::default() }).await;
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
