//! Kernel by kernel, as `crate/tests/gpu_ops.rs` does natively: seeded random inputs of
//! awkward sizes, GPU output against `ExactOps` bit for bit, with `dot4I8Packed` and with
//! its emulation.

use crate::common::*;
use edgeproof::backend::exact::ExactWeight;
use edgeproof::gpu::{GpuContext, GpuOps, GpuOptions, GpuWeight, MAX_BINDING};
use edgeproof::model::{AttnParams, Ops, RopeKind};
use edgeproof::quant::TensorType;
use edgeproof::tiny::SplitMix64;
use std::rc::Rc;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
async fn adapter_has_the_limits_and_dot4() {
    let ctx = context(GpuOptions::default()).await;
    let a = &ctx.adapter;
    let l = ctx.device.limits();
    log!(
        "adapter: name {:?}, vendor {:?}, device {:?}, driver {:?}, backend {:?}; dot4I8Packed: {}; \
         limits: storage binding {}, buffer {}, storage buffers per stage {}, workgroups per dimension {}",
        a.name,
        a.vendor,
        a.device,
        a.driver,
        a.backend,
        ctx.dot4_packed,
        l.max_storage_buffer_binding_size,
        l.max_buffer_size,
        l.max_storage_buffers_per_shader_stage,
        l.max_compute_workgroups_per_dimension
    );
    // wgpu is not a dependency here: its backend by name.
    assert_eq!(format!("{:?}", a.backend), "BrowserWebGpu", "wgpu's backend");
    // wgpu leaves the name empty in the browser; GpuContext reads GPUAdapter.info for receipts.
    assert!(!a.name.is_empty(), "no adapter name from GPUAdapter.info");
    // The packed path must really be exercised: Chromium's WGSL has the language feature.
    assert!(ctx.dot4_packed, "Chromium's WGSL lacks packed_4x8_integer_dot_product");
    assert!(l.max_storage_buffer_binding_size >= MAX_BINDING, "binding limit {}", l.max_storage_buffer_binding_size);
    let emulated = context(GpuOptions { emulate_dot4: true, ..Default::default() }).await;
    assert!(!emulated.dot4_packed);
}

/// Every type the tiny model has; the real models use Q8_0, Q4_1, Q5_0, Q4_K and Q6_K.
const MATMUL_TYPES: [TensorType; 10] = [
    TensorType::Q8_0,
    TensorType::Q4_1,
    TensorType::Q5_0,
    TensorType::Q4K,
    TensorType::Q6K,
    TensorType::Q4_0,
    TensorType::Q5_1,
    TensorType::Q5K,
    TensorType::F16,
    TensorType::F32,
];

#[wasm_bindgen_test]
async fn matmul_equals_cpu_for_every_type() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(1));
    for ty in MATMUL_TYPES {
        let k_sizes: &[usize] = if ty.block_len() == 256 { &[256, 768] } else { &[32, 96, 320] };
        for &k in k_sizes {
            for (n, m) in [(1, 1), (1, 67), (3, 5), (7, 130), (2, 64)] {
                let f = weight_file(&mut rng, ty, m, k);
                let x = random_act(&mut rng, n, k);
                let want = cpu.matmul(&x, &ExactWeight::from_view(f.tensor("w").expect("w")).expect("cpu weight"));
                for g in &mut gpus {
                    let gw = GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight");
                    let gx = g.upload(&x).expect("upload");
                    let y = g.try_matmul(&gx, &gw).expect("gpu matmul");
                    let got = g.download_async(&y).await.expect("download");
                    let what = format!("matmul {} n={n} k={k} m={m} dot4 packed={}", ty.name(), g.ctx.dot4_packed);
                    same(&what, &got, &want);
                }
            }
        }
    }
}

#[wasm_bindgen_test]
async fn embed_equals_cpu_for_every_type() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(2));
    for ty in MATMUL_TYPES {
        let k = if ty.block_len() == 256 { 512 } else { 96 };
        let f = weight_file(&mut rng, ty, 37, k);
        let ids = [0u32, 36, 5, 5, 17];
        let want = cpu.embed(&ExactWeight::from_view(f.tensor("w").expect("w")).expect("cpu weight"), &ids);
        let want = want.expect("cpu embed");
        for g in &mut gpus {
            let gw = GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight");
            let y = g.try_embed(&gw, &ids).expect("gpu embed");
            same(&format!("embed {}", ty.name()), &g.download_async(&y).await.expect("download"), &want);
            assert_eq!(g.try_embed(&gw, &[37]).err().map(|e| e.code()), Some("INVALID_ARGUMENT"));
        }
    }
}

#[wasm_bindgen_test]
async fn rms_norm_equals_cpu() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(3));
    for (rows, cols, group, eps) in
        [(1, 64, 64, 1e-6f32), (3, 48, 16, 1e-5), (5, 640, 640, 1e-6), (2, 512, 256, 0.0), (4, 96, 32, 1e-6)]
    {
        let mut x = random_act(&mut rng, rows, cols);
        // An all-zero first group: with eps 0 it has no exponent of its own.
        x.m[..group].fill(0);
        let f = norm_file(&mut rng, group);
        let want =
            cpu.rms_norm(&x, &ExactWeight::from_view(f.tensor("w").expect("w")).expect("cpu weight"), group, eps);
        for g in &mut gpus {
            let gw = GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight");
            let gx = g.upload(&x).expect("upload");
            let y = g.try_rms_norm(&gx, &gw, group, eps).expect("gpu rms_norm");
            same(
                &format!("rms_norm {rows}×{cols} group {group}"),
                &g.download_async(&y).await.expect("download"),
                &want,
            );
        }
    }
}

/// A residual add of a product and the RMSNorm that reads the sum, one dispatch of
/// add_norm.wgsl (as `crate/tests/gpu_ops.rs` tests natively): the sum written in place, the
/// norm, and the product after it; then the norm of a product alone (all zero in one case).
#[wasm_bindgen_test]
async fn an_add_and_the_norm_after_it_equal_cpu() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(14));
    for (n, k, eps) in [(1, 96, 1e-6f32), (3, 256, 0.0)] {
        let (mut x, mut a) = (random_act(&mut rng, n, k), random_act(&mut rng, n, k));
        x.m[..k].fill(0);
        a.m[(n - 1) * k..].fill(0);
        x.m[(n - 1) * k..].fill(0);
        let (wf, w2f, nf) = (
            weight_file(&mut rng, TensorType::Q4_1, k, k),
            weight_file(&mut rng, TensorType::Q8_0, 37, k),
            norm_file(&mut rng, k),
        );
        let cw = |f: &edgeproof::gguf::Gguf| ExactWeight::from_view(f.tensor("w").expect("w")).expect("cpu weight");
        let y = cpu.matmul(&a, &cw(&wf));
        let mut want_x = x.clone();
        cpu.add(&mut want_x, y.clone());
        let want_h = cpu.rms_norm(&want_x, &cw(&nf), k, eps);
        let want_p = cpu.matmul(&want_h, &cw(&w2f));
        let want_hy = cpu.rms_norm(&y, &cw(&nf), k, eps);
        for g in &mut gpus {
            let up = |g: &GpuOps, f: &edgeproof::gguf::Gguf| {
                GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight")
            };
            let (gw, gw2, gn) = (up(g, &wf), up(g, &w2f), up(g, &nf));
            let what = format!("{n}×{k}, dot4 packed={}", g.ctx.dot4_packed);
            let (mut gx, ga) = (g.upload(&x).expect("upload"), g.upload(&a).expect("upload"));
            let gy = g.matmul(&ga, &gw);
            g.add(&mut gx, gy);
            let d0 = g.ctx.dispatches();
            let h = g.try_rms_norm(&gx, &gn, k, eps).expect("gpu rms_norm");
            let p = g.try_matmul(&h, &gw2).expect("gpu matmul");
            assert_eq!(g.ctx.dispatches() - d0, 2, "the add with the norm, then the product, {what}");
            same(&format!("norm of a sum, then a product, {what}"), &g.download_async(&p).await.expect("p"), &want_p);
            same(&format!("sum written in place, {what}"), &g.download_async(&gx).await.expect("x"), &want_x);
            same(&format!("norm of a sum, {what}"), &g.download_async(&h).await.expect("h"), &want_h);
            let gy = g.matmul(&ga, &gw);
            let h = g.try_rms_norm(&gy, &gn, k, eps).expect("gpu rms_norm");
            same(&format!("norm of a product, {what}"), &g.download_async(&h).await.expect("h"), &want_hy);
            same(&format!("product under the norm, {what}"), &g.download_async(&gy).await.expect("y"), &y);
        }
    }
}

#[wasm_bindgen_test]
async fn elementwise_ops_and_argmax_equal_cpu() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(4));
    for (rows, cols) in [(1, 2), (3, 64), (7, 130), (2, 1000)] {
        let x = random_act(&mut rng, rows, cols);
        let y = random_act(&mut rng, rows, cols);
        for s in [0.125f32, 0.0625 * 3.0, 1.0 / 3.0, -7.5] {
            let mut want = x.clone();
            cpu.scale(&mut want, s);
            for g in &mut gpus {
                let gx = g.upload(&x).expect("upload");
                let v = g.try_scale(&gx, s).expect("gpu scale");
                same(&format!("scale {rows}×{cols} by {s}"), &g.download_async(&v).await.expect("download"), &want);
            }
        }
        let mut add = x.clone();
        cpu.add(&mut add, y.clone());
        let (sw, gw) = (cpu.swiglu(&x, &y), cpu.geglu(&x, &y));
        let rows_want = cpu.rows(&x, rows / 2..rows);
        let ids: Vec<u32> = (0..rows).map(|i| x.argmax_row(i).expect("argmax")).collect();
        for g in &mut gpus {
            let (gx, gy) = (g.upload(&x).expect("upload"), g.upload(&y).expect("upload"));
            let v = g.try_add(&gx, &gy).expect("gpu add");
            same(&format!("add {rows}×{cols}"), &g.download_async(&v).await.expect("download"), &add);
            let v = g.try_swiglu(&gx, &gy).expect("gpu swiglu");
            same(&format!("swiglu {rows}×{cols}"), &g.download_async(&v).await.expect("download"), &sw);
            let v = g.try_geglu(&gx, &gy).expect("gpu geglu");
            same(&format!("geglu {rows}×{cols}"), &g.download_async(&v).await.expect("download"), &gw);
            assert_eq!(g.argmax_async(&gx).await.expect("gpu argmax"), ids, "argmax {rows}×{cols}");
            let v = g.try_rows(&gx, rows / 2..rows).expect("gpu rows");
            same(&format!("rows {rows}×{cols}"), &g.download_async(&v).await.expect("download"), &rows_want);
        }
    }
}

#[wasm_bindgen_test]
async fn add_keeps_the_other_row_when_one_is_zero() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(5));
    let mut x = random_act(&mut rng, 4, 40);
    let mut y = random_act(&mut rng, 4, 40);
    // Row 0: x zero; row 1: y zero; row 2: both; row 3: a small unnormalized y.
    x.m[..40].fill(0);
    y.m[40..80].fill(0);
    x.m[80..120].fill(0);
    y.m[80..120].fill(0);
    y.m[120..160].iter_mut().for_each(|v| *v %= 5);
    let mut want = x.clone();
    cpu.add(&mut want, y.clone());
    // Ties go to the lowest index: zero rows give 0.
    let ids: Vec<u32> = (0..4).map(|i| x.argmax_row(i).expect("argmax")).collect();
    for g in &mut gpus {
        let (gx, gy) = (g.upload(&x).expect("upload"), g.upload(&y).expect("upload"));
        let v = g.try_add(&gx, &gy).expect("gpu add");
        same("add with zero rows", &g.download_async(&v).await.expect("download"), &want);
        assert_eq!(g.argmax_async(&gx).await.expect("gpu argmax"), ids, "argmax with ties");
    }
}

#[wasm_bindgen_test]
async fn rope_equals_cpu_both_kinds() {
    let (mut gpus, mut cpu, mut rng) = (gpus().await, cpu(), SplitMix64(6));
    for (rows, heads, hd, pos0, base) in
        [(1, 1, 2, 0, 10_000.0f32), (3, 4, 16, 5, 100_000.0), (5, 2, 64, 250, 10_000.0), (2, 1, 256, 600, 1e6)]
    {
        let x = random_act(&mut rng, rows, heads * hd);
        for kind in [RopeKind::Norm, RopeKind::Neox] {
            let mut want = x.clone();
            cpu.rope(&mut want, pos0, hd, base, kind);
            for g in &mut gpus {
                let gx = g.upload(&x).expect("upload");
                let v = g.try_rope(&gx, pos0, hd, base, kind).expect("gpu rope");
                let what = format!("rope {kind:?} {rows}×{heads}×{hd} at {pos0}");
                same(&what, &g.download_async(&v).await.expect("download"), &want);
            }
        }
    }
}

#[wasm_bindgen_test]
async fn attention_equals_cpu() {
    // Heads of 16, 48 (blocks of 32 and 16), 64 and 256; grouped and multi-query KV heads;
    // with and without a window; prefill, decode past the cache's first capacity of 16,
    // then re-evaluation from an earlier position.
    let mut rng = SplitMix64(11);
    for (n_head, n_head_kv, hd, window) in
        [(4, 2, 16, None), (4, 2, 48, Some(3)), (3, 3, 64, None), (4, 1, 256, Some(8)), (2, 1, 32, Some(1))]
    {
        let (mut gpus, mut cpu) = (gpus().await, cpu());
        let p = AttnParams { layer: 0, n_head, n_head_kv, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window };
        let mut steps: Vec<(usize, usize)> = vec![(0, 5)];
        steps.extend((5..20).map(|pos| (pos, 1)));
        steps.extend([(3, 2), (5, 3)]);
        for (pos0, n) in steps {
            let q = random_act(&mut rng, n, n_head * hd);
            let k = random_act(&mut rng, n, n_head_kv * hd);
            let v = random_act(&mut rng, n, n_head_kv * hd);
            let want = cpu.attention(&q, &k, &v, pos0, p).expect("cpu attention");
            for g in &mut gpus {
                let (gq, gk, gv) = (g.upload(&q).expect("q"), g.upload(&k).expect("k"), g.upload(&v).expect("v"));
                let y = g.try_attention(&gq, &gk, &gv, pos0, p).expect("gpu attention");
                let what = format!("attention {n_head}/{n_head_kv} heads of {hd}, window {window:?}, {n} at {pos0}");
                same(&what, &g.download_async(&y).await.expect("download"), &want);
            }
        }
    }
}

#[wasm_bindgen_test]
async fn weights_split_into_chunks_equal_cpu_and_limits_are_typed_errors() {
    // A binding budget of 16 KiB splits these weights into several chunks of rows, as Gemma's
    // 180 MB embedding is split under the WebGPU default of 128 MiB.
    let (mut cpu, mut rng) = (cpu(), SplitMix64(9));
    for emulate_dot4 in [false, true] {
        let ctx: GpuContext =
            context(GpuOptions { emulate_dot4, max_binding: 16 << 10, split_k: Some(emulate_dot4) }).await;
        let mut g = GpuOps::new(Rc::new(ctx), &test_config()).expect("GPU ops");
        for (ty, k, m) in [(TensorType::Q8_0, 256, 150), (TensorType::Q6K, 512, 120), (TensorType::F32, 64, 150)] {
            let f = weight_file(&mut rng, ty, m, k);
            let cw = ExactWeight::from_view(f.tensor("w").expect("w")).expect("cpu weight");
            let gw = GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight");
            let GpuWeight::Matrix { chunks, .. } = &gw else { panic!("a matrix") };
            assert!(chunks.len() >= 3, "{} in {} chunks", ty.name(), chunks.len());
            let x = random_act(&mut rng, 3, k);
            let gx = g.upload(&x).expect("upload");
            let y = g.try_matmul(&gx, &gw).expect("gpu matmul");
            same(
                &format!("chunked matmul {}", ty.name()),
                &g.download_async(&y).await.expect("download"),
                &cpu.matmul(&x, &cw),
            );
            let ids = [0u32, m as u32 - 1, 61];
            let y = g.try_embed(&gw, &ids).expect("gpu embed");
            let want = cpu.embed(&cw, &ids).expect("cpu embed");
            same(&format!("chunked embed {}", ty.name()), &g.download_async(&y).await.expect("download"), &want);
        }
        // Results that do not fit a binding are typed errors, not panics or device errors.
        let x = g.upload(&random_act(&mut rng, 64, 32)).expect("upload");
        let f = weight_file(&mut rng, TensorType::Q8_0, 40, 32);
        let gw = GpuWeight::from_view(&g.ctx, f.tensor("w").expect("w")).expect("gpu weight");
        assert_eq!(g.try_matmul(&x, &gw).err().map(|e| e.code()), Some("MISSING_LIMIT"));
        assert_eq!(g.ctx.storage("big", 1 << 20).err().map(|e| e.code()), Some("MISSING_LIMIT"));
        g.check().expect("no deferred error");
    }
}

#[wasm_bindgen_test]
async fn sampler_equals_cpu() {
    // As crate/tests/gpu_sample.rs, fewer cases: rows of awkward and real vocabulary sizes,
    // each with random settings; the kernels' token (not the CPU fallback, but for the row
    // that must take it) equals sampling::sample's.
    use edgeproof::backend::exact::IMat;
    use edgeproof::sampling::{sample, SamplingParams};
    let mut g = gpus().await.swap_remove(0);
    let mut rng = SplitMix64(17);
    let mut below_top = 0;
    for cols in [1, 7, 1000, 49152] {
        for (i, (name, m, e, fallback)) in logit_rows(&mut rng, cols).into_iter().enumerate() {
            let x = IMat { rows: 1, cols, m, e: vec![e] };
            let gx = g.upload(&x).expect("upload");
            let values = x.to_f32();
            for n in 0..3 {
                let t = [0.0, 0.7, 1.0, 3.0][rng.next_u64() as usize % 4];
                let k = [0, 1, 40, cols as u32][rng.next_u64() as usize % 4];
                let top_p = [0.5, 0.9, 1.0][rng.next_u64() as usize % 3];
                let p = SamplingParams::new(t, k, top_p, rng.next_u64()).expect("params");
                let step = n as u64 * 1000 + i as u64;
                let case = format!("vocab {cols}, row {i} ({name}), T={t} k={k} p={top_p} step={step}");
                let want = sample(&values, &p, step).expect("cpu sample");
                let state = g.sample_record(&gx, 0, &p, step).expect("sample_record");
                g.flush();
                let bytes = g.ctx.read_async(&state, 8).await.expect("read");
                let words: Vec<u32> =
                    bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect();
                if fallback && !p.is_greedy() {
                    assert_ne!(words[1], 0, "{case}: the kernels should hand this row back to the CPU");
                } else {
                    assert_eq!(words, [want, 0], "{case}: (token, status)");
                }
                assert_eq!(g.sample_async(&gx, 0, &p, step).await.expect("gpu sample"), want, "{case}");
                below_top += (Some(want) != edgeproof::sampling::argmax(&values)) as usize;
            }
        }
    }
    assert!(below_top > 10, "only {below_top} draws were not the top token");
}

#[wasm_bindgen_test]
async fn a_lost_device_is_a_typed_error() {
    // After the device is destroyed, the next readback is DEVICE_LOST, not a panic.
    use edgeproof::sampling::SamplingParams;
    let mut g = gpus().await.swap_remove(0);
    let x = g.upload(&random_act(&mut SplitMix64(3), 1, 64)).expect("upload");
    assert!(g.sample_async(&x, 0, &SamplingParams::greedy(), 0).await.is_ok());
    g.ctx.device.destroy();
    let err = g.sample_async(&x, 0, &SamplingParams::greedy(), 1).await.err().expect("an error on a lost device");
    assert_eq!(err.code(), "DEVICE_LOST", "{err}");
}
