//! all-MiniLM-L6-v2 on WebGPU in Chromium: every encoder kernel (add_bias, layer_norm, gelu,
//! attention within segments, pooling) through the real model; vectors equal the CPU's bit for
//! bit, in one batch and alone.

use crate::common::*;
use edgeproof::backend::exact::IMat;
use edgeproof::embed::{Encoder, GpuEncoder, DEFAULT_MAX_TOKENS};
use edgeproof::gpu::GpuOptions;
use std::rc::Rc;
use wasm_bindgen_test::wasm_bindgen_test;

const SENTENCES: &str = include_str!("../../../crate/tests/data/minilm/sentences.txt");

#[wasm_bindgen_test]
async fn minilm_vectors_equal_cpu_alone_and_batched() {
    let t0 = now_ms();
    let file = |f: &str| format!("all-MiniLM-L6-v2/{f}");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("UTF-8");
    let gguf = edgeproof::model::bert::convert(
        &fetch_model(&file("model.safetensors")).await,
        &text(fetch_model(&file("config.json")).await),
        &text(fetch_model(&file("tokenizer.json")).await),
    )
    .expect("convert MiniLM");
    let cpu = Encoder::load(&gguf).expect("cpu encoder");
    // Short texts: SwiftShader takes minutes per long one (lavapipe covers truncation at 256).
    let texts: Vec<&str> = SENTENCES.lines().take(6).collect();
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| cpu.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize")).collect();
    let want = cpu.embed_ids(&ids).expect("cpu");
    log!("minilm: fetched, converted and embedded on the CPU in {:.0} ms", now_ms() - t0);
    // One configuration, a GPU's default (dot4I8Packed, split-K): the ops tests cover the others.
    let ctx = context(GpuOptions { split_k: Some(true), ..Default::default() }).await;
    let gpu = GpuEncoder::load(&gguf, Rc::new(ctx)).expect("gpu encoder");
    let t = now_ms();
    let got = gpu.embed_ids_async(&ids).await.expect("gpu batch");
    log!("minilm: {} texts on the GPU in {:.0} ms", ids.len(), now_ms() - t);
    same("MiniLM, 6 texts in one batch", &got, &want);
    for i in [0, ids.len() - 1] {
        let one = gpu.embed_ids_async(std::slice::from_ref(&ids[i])).await.expect("gpu alone");
        let row = IMat { rows: 1, cols: want.cols, m: want.row(i).to_vec(), e: vec![want.e[i]] };
        same(&format!("MiniLM, text {i} alone"), &one, &row);
    }
}
