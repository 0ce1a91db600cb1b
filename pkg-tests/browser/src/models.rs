//! Whole models through `model::forward` on the GPU and on the CPU: the same logits, and the
//! same residual streams (what the receipts' per-layer digests hash).

use crate::common::*;
use edgeproof::backend::exact::{ExactOps, ExactWeight};
use edgeproof::gguf::Gguf;
use edgeproof::model::{forward, Arch, Config, Weights};
use edgeproof::sampling::{sample, SamplingParams};
use edgeproof::tokenizer::Tokenizer;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
async fn tiny_models_forward_equals_cpu() {
    // Prefill, then decode past gemma3's window of 8, then re-evaluate from an earlier position.
    for arch in [Arch::Llama, Arch::Gemma3] {
        let f = tiny(arch);
        let cfg = Config::from_metadata(f.metadata()).expect("config");
        let cw = Weights::load(&f, &cfg, ExactWeight::from_view).expect("cpu weights");
        let mut cpu = ExactOps::new(&cfg);
        let mut gpus = gpus_for(&cfg).await;
        let gws = gpu_weights(&gpus, &f, &cfg);
        let mut steps: Vec<(Vec<u32>, usize)> = vec![(vec![1, 7, 3, 39, 0], 0)];
        steps.extend((5..14).map(|p| (vec![(p * 11 % 40) as u32], p)));
        steps.push((vec![4, 2, 9], 3));
        cpu.record_residuals();
        gpus.iter_mut().for_each(|g| g.record_residuals());
        for (ids, pos0) in steps {
            let want = forward(&mut cpu, &cfg, &cw, &ids, pos0, 0..ids.len()).expect("cpu forward");
            let want_res = cpu.take_residuals();
            assert_eq!(want_res.len(), cfg.n_layer);
            for (g, gw) in gpus.iter_mut().zip(&gws) {
                let y = forward(g, &cfg, gw, &ids, pos0, 0..ids.len()).expect("gpu forward");
                let what = format!("{arch:?} dot4 packed={}", g.ctx.dot4_packed);
                same(&format!("{what} logits at {pos0}"), &g.download_async(&y).await.expect("download"), &want);
                let got_res = g.take_residuals_async().await.expect("residuals");
                assert_eq!(got_res.len(), want_res.len(), "{what} residuals at {pos0}");
                for (l, (got, want)) in got_res.iter().zip(&want_res).enumerate() {
                    same(&format!("{what} residual of layer {l} at {pos0}"), got, want);
                }
            }
        }
    }
}

#[wasm_bindgen_test]
async fn smollm2_greedy_equals_cpu() {
    // "The capital of France is" and greedy steps, each next token from the GPU's sampler:
    // the CPU's logits at every step, on both dot-product paths and both matmul layouts, and
    // the seeded sampler's pick from those logits.
    let t0 = now_ms();
    let f = Gguf::from_bytes(fetch_model("SmolLM2-135M-Instruct.Q4_1.gguf").await).expect("parse SmolLM2");
    let tok = Tokenizer::from_metadata(f.metadata()).expect("tokenizer");
    let cfg = Config::from_metadata(f.metadata()).expect("config");
    let cw = Weights::load(&f, &cfg, ExactWeight::from_view).expect("cpu weights");
    let mut cpu = ExactOps::new(&cfg);
    let mut gpus = two_gpus_for(&cfg).await;
    let gws = gpu_weights(&gpus, &f, &cfg);
    let seeded = SamplingParams::new(0.8, 40, 0.9, 11).expect("params");
    log!("smollm2: fetched and loaded in {:.0} ms", now_ms() - t0);
    let mut ids = tok.encode("The capital of France is", true, false).expect("encode");
    let prompt_len = ids.len();
    let mut pos0 = 0;
    for _ in 0..3 {
        let n = ids.len();
        let last = n - pos0 - 1..n - pos0;
        let t = now_ms();
        let want = forward(&mut cpu, &cfg, &cw, &ids[pos0..], pos0, last.clone()).expect("cpu forward");
        let next = want.argmax_row(0).expect("argmax");
        log!("smollm2: cpu forward of {} at {pos0}: {:.0} ms", n - pos0, now_ms() - t);
        for (g, gw) in gpus.iter_mut().zip(&gws) {
            let t = now_ms();
            let y = forward(g, &cfg, gw, &ids[pos0..], pos0, last.clone()).expect("gpu forward");
            let got_next = g.sample_async(&y, 0, &SamplingParams::greedy(), 0).await.expect("gpu greedy");
            let got_seeded = g.sample_async(&y, 0, &seeded, pos0 as u64).await.expect("gpu seeded");
            let packed = g.ctx.dot4_packed;
            log!("smollm2: gpu forward of {} at {pos0} (dot4 packed={packed}): {:.0} ms", n - pos0, now_ms() - t);
            assert_eq!(got_next, next, "smollm2 next token at {pos0} (dot4 packed={packed})");
            let want_seeded = sample(&want.to_f32(), &seeded, pos0 as u64).expect("cpu seeded");
            assert_eq!(got_seeded, want_seeded, "smollm2 seeded token at {pos0} (dot4 packed={packed})");
            let got = g.download_async(&y).await.expect("download");
            same(&format!("smollm2 logits at {pos0} (dot4 packed={packed})"), &got, &want);
        }
        pos0 = n;
        ids.push(next);
    }
    let text = tok.decode(&ids[prompt_len..]).expect("decode");
    assert!(text.starts_with(" Paris."), "{text:?} ({ids:?})");
    log!("smollm2: {text:?} in {:.0} ms", now_ms() - t0);
}
