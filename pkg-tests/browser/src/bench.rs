//! A benchmark, not a test (ignored unless asked for): SmolLM2-135M's prefill and decode
//! tokens/s on the browser's WebGPU adapter, both matmul layouts, against the CPU exact
//! path in the same page. Prints a table:
//! `scripts/test-browser.sh --include-ignored bench --nocapture`.

use crate::common::*;
use edgeproof::backend::exact::{ExactOps, ExactWeight};
use edgeproof::gguf::Gguf;
use edgeproof::gpu::{GpuOps, GpuOptions, GpuWeight};
use edgeproof::model::{forward, Config, Weights};
use edgeproof::sampling::SamplingParams;
use std::rc::Rc;
use wasm_bindgen_test::wasm_bindgen_test;

const PREFILL: usize = 8;
const DECODE: usize = 4;

#[wasm_bindgen_test]
#[ignore = "benchmark: scripts/test-browser.sh --include-ignored bench --nocapture"]
async fn bench_smollm2() {
    let f = Gguf::from_bytes(fetch_model("SmolLM2-135M-Instruct.Q4_1.gguf").await).expect("parse SmolLM2");
    let cfg = Config::from_metadata(f.metadata()).expect("config");
    let ids: Vec<u32> = (0..(PREFILL + DECODE) as u32).map(|i| (i * 7919 + 11) % cfg.n_vocab as u32).collect();
    let greedy = SamplingParams::greedy();
    let default = context(GpuOptions::default()).await;
    log!(
        "adapter {:?}: device type {:?}, split-K by default: {}",
        default.adapter.name,
        default.adapter.device_type,
        default.split_k
    );
    log!("| backend | matmul | prefill tok/s ({PREFILL}) | decode tok/s ({DECODE}) |");
    log!("| --- | --- | --- | --- |");
    for split_k in [false, true] {
        let ctx = context(GpuOptions { split_k: Some(split_k), ..Default::default() }).await;
        let name = ctx.adapter.name.clone();
        let mut g = GpuOps::new(Rc::new(ctx), &cfg).expect("GPU ops");
        let w = Weights::load(&f, &cfg, |t| GpuWeight::from_view(&g.ctx, t)).expect("gpu weights");
        // One step first: compiles the pipelines.
        let y = forward(&mut g, &cfg, &w, &ids[..1], 0, 0..1).expect("warm-up");
        g.sample_async(&y, 0, &greedy, 0).await.expect("warm-up token");
        let t = now_ms();
        let y = forward(&mut g, &cfg, &w, &ids[..PREFILL], 0, PREFILL - 1..PREFILL).expect("prefill");
        g.sample_async(&y, 0, &greedy, 0).await.expect("prefill token");
        let pre = PREFILL as f64 * 1e3 / (now_ms() - t);
        let t = now_ms();
        for i in PREFILL..PREFILL + DECODE {
            let y = forward(&mut g, &cfg, &w, &ids[i..i + 1], i, 0..1).expect("decode");
            g.sample_async(&y, 0, &greedy, i as u64).await.expect("decode token");
        }
        let dec = DECODE as f64 * 1e3 / (now_ms() - t);
        let layout = if split_k { "split-K" } else { "one invocation per tile" };
        log!("| gpu: {name} | {layout} | {pre:.2} | {dec:.2} |");
    }
    let w = Weights::load(&f, &cfg, ExactWeight::from_view).expect("cpu weights");
    let mut c = ExactOps::new(&cfg);
    let t = now_ms();
    forward(&mut c, &cfg, &w, &ids[..PREFILL], 0, PREFILL - 1..PREFILL).expect("prefill");
    let pre = PREFILL as f64 * 1e3 / (now_ms() - t);
    let t = now_ms();
    for i in PREFILL..PREFILL + DECODE {
        forward(&mut c, &cfg, &w, &ids[i..i + 1], i, 0..1).expect("decode");
    }
    let dec = DECODE as f64 * 1e3 / (now_ms() - t);
    log!("| cpu exact (wasm32, one thread) | | {pre:.2} | {dec:.2} |");
}
