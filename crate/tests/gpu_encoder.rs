//! The encoder ops (add_bias, layer_norm, gelu, attention within segments, mean pooling with the
//! L2 norm) on the GPU against the CPU (`backend/exact/encoder.rs`) bit for bit, on seeded random
//! rows of awkward sizes, and all-MiniLM-L6-v2's vectors on the GPU equal to the CPU's, alone
//! and batched. Lavapipe natively (see `crate/tests/gpu_ops.rs`).

mod common;
#[path = "common/gpu_inputs.rs"]
mod gpu_inputs;

use edgeproof::backend::exact::{ExactOps, ExactWeight, IMat};
use edgeproof::embed::{convert_dir, Encoder, GpuEncoder, DEFAULT_MAX_TOKENS};
use edgeproof::gguf::{self, Gguf, Metadata, TensorData};
use edgeproof::gpu::{GpuOps, GpuWeight};
use edgeproof::model::bert::EncoderOps;
use edgeproof::model::AttnParams;
use edgeproof::quant::TensorType;
use edgeproof::tiny::SplitMix64;
use gpu_inputs::{contexts, random_act, same};
use std::ops::Range;

fn gpus() -> Vec<GpuOps> {
    contexts().into_iter().map(|ctx| GpuOps::encoder(ctx).expect("GPU ops")).collect()
}

/// A 1-D F32 weight of `len` values `centre ± spread`, every `zero_every`-th one 0 (0: none).
fn vector_file(rng: &mut SplitMix64, len: usize, centre: f32, spread: f32, zero_every: usize) -> Gguf {
    let data = (0..len)
        .flat_map(|i| {
            let v = if zero_every > 0 && i % zero_every == 0 { 0.0 } else { centre + spread * rng.uniform() };
            v.to_le_bytes()
        })
        .collect();
    let t = TensorData { name: "w".into(), dims: vec![len as u64], ty: TensorType::F32, data };
    Gguf::from_bytes(gguf::write(&Metadata::new(), &[t]).expect("write")).expect("parse")
}

fn weights(f: &Gguf, g: &GpuOps) -> (ExactWeight, GpuWeight) {
    let t = || f.tensor("w").expect("w");
    (ExactWeight::from_view(t()).expect("cpu weight"), GpuWeight::from_view(&g.ctx, t()).expect("gpu weight"))
}

#[test]
fn add_bias_layer_norm_and_gelu_equal_cpu() {
    let mut gpus = gpus();
    let mut cpu = ExactOps::encoder();
    let mut rng = SplitMix64(21);
    for (rows, cols) in [(1, 32), (3, 96), (7, 384), (2, 416), (5, 1536)] {
        let mut x = random_act(&mut rng, rows, cols);
        // Row 0 all zero: add_bias gives the bias alone, layer_norm all zeros.
        x.m[..cols].fill(0);
        for (centre, spread, zero_every) in [(0.0, 0.1, 0), (1.0, 0.5, 7), (0.0, 0.0, 0)] {
            let b = vector_file(&mut rng, cols, centre, spread, zero_every);
            let w = vector_file(&mut rng, cols, 1.0, 0.5, 0);
            let what = format!("{rows}×{cols}, bias {centre} ± {spread}");
            let mut want = x.clone();
            for g in &mut gpus {
                let ((cb, gb), (cw, gw)) = (weights(&b, g), weights(&w, g));
                cpu.add_bias(&mut want, &cb);
                let gx = g.upload(&x).expect("upload");
                let got = g.try_add_bias(&gx, &gb).and_then(|y| g.download(&y)).expect("gpu add_bias");
                same(&format!("add_bias {what}"), &got, &want);
                want = x.clone();
                for eps in [1e-12f32, 1e-5, 0.0] {
                    let ln = cpu.layer_norm(&x, &cw, &cb, eps);
                    let got =
                        g.try_layer_norm(&gx, &gw, &gb, eps).and_then(|y| g.download(&y)).expect("gpu layer_norm");
                    same(&format!("layer_norm {what}, eps {eps}"), &got, &ln);
                }
            }
        }
        let want = cpu.gelu(&x);
        for g in &mut gpus {
            let gx = g.upload(&x).expect("upload");
            let got = g.try_gelu(&gx).and_then(|y| g.download(&y)).expect("gpu gelu");
            same(&format!("gelu {rows}×{cols}"), &got, &want);
        }
    }
}

/// Segments of the given lengths, in order.
fn segments(lens: &[usize]) -> Vec<Range<usize>> {
    let mut at = 0;
    lens.iter()
        .map(|&n| {
            at += n;
            at - n..at
        })
        .collect()
}

#[test]
fn attention_within_segments_and_pooling_equal_cpu() {
    let mut gpus = gpus();
    let mut cpu = ExactOps::encoder();
    let mut rng = SplitMix64(22);
    for (n_head, hd, lens) in [
        (12, 32, vec![7]),
        (12, 32, vec![1, 5, 17, 2]),
        (4, 64, vec![3, 3, 3]),
        (2, 48, vec![33, 1]),
        (3, 16, (1..=40).map(|i| i % 6 + 1).collect::<Vec<_>>()),
    ] {
        let segs = segments(&lens);
        let n = segs.last().map_or(0, |s| s.end);
        let p = AttnParams {
            layer: 0,
            n_head,
            n_head_kv: n_head,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            window: None,
        };
        let (q, k, v) = (
            random_act(&mut rng, n, n_head * hd),
            random_act(&mut rng, n, n_head * hd),
            random_act(&mut rng, n, n_head * hd),
        );
        let want = cpu.attention_segments(&q, &k, &v, &segs, p).expect("cpu attention");
        let mut x = random_act(&mut rng, n, n_head * hd);
        // The first segment all zero but one row; a zero row inside the second.
        let w = x.cols;
        x.m[..segs[0].len().saturating_sub(1) * w].fill(0);
        if let Some(s) = segs.get(1) {
            x.m[s.start * w..(s.start + 1) * w].fill(0);
        }
        let pooled = cpu.mean_pool_l2(&x, &segs);
        for g in &mut gpus {
            let (gq, gk, gv) = (g.upload(&q).expect("q"), g.upload(&k).expect("k"), g.upload(&v).expect("v"));
            let got =
                g.try_attention_segments(&gq, &gk, &gv, &segs, p).and_then(|y| g.download(&y)).expect("gpu attention");
            same(&format!("attention, {n_head} heads of {hd}, segments {lens:?}"), &got, &want);
            let gx = g.upload(&x).expect("x");
            let got = g.try_mean_pool_l2(&gx, &segs).and_then(|y| g.download(&y)).expect("gpu pool");
            same(&format!("mean_pool_l2, segments {lens:?}"), &got, &pooled);
        }
    }
    let g = &mut gpus[0];
    let x = g.upload(&random_act(&mut rng, 4, 32)).expect("x");
    for bad in [segments(&[1, 2]), vec![0..2, 1..4], vec![], segments(&[1; 64])] {
        let code = g.try_mean_pool_l2(&x, &bad).map(|_| ()).map_err(|e| e.code());
        assert_eq!(code, Err("INVALID_ARGUMENT"), "segments {bad:?}");
    }
}

#[test]
fn minilm_vectors_on_the_gpu_equal_the_cpu_alone_and_batched() {
    let gguf = convert_dir(&common::minilm_dir()).expect("convert");
    let cpu = Encoder::load(&gguf).expect("cpu encoder");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/minilm/sentences.txt"))
        .expect("sentences");
    // Short texts (a long one takes minutes on lavapipe; the segments of the ops test above and
    // the CPU's tests of truncation cover length).
    let texts: Vec<&str> = text.lines().take(20).collect();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| cpu.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize")).collect();
    let want = cpu.embed_ids(&ids).expect("cpu");
    // The adapter's dot path, with one invocation per tile and with split-K (the ops tests above
    // cover the emulated dot path too).
    for ctx in contexts().into_iter().step_by(2) {
        let gpu = GpuEncoder::load(&gguf, ctx).expect("gpu encoder");
        let got = gpu.embed_ids(&ids).expect("gpu batch");
        same("MiniLM, 20 texts in one batch", &got, &want);
        for (i, t) in ids.iter().enumerate().step_by(10) {
            let one = gpu.embed_ids(std::slice::from_ref(t)).expect("gpu alone");
            let row = IMat { rows: 1, cols: want.cols, m: want.row(i).to_vec(), e: vec![want.e[i]] };
            same(&format!("MiniLM, text {i} alone"), &one, &row);
        }
    }
}
