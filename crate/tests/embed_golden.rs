//! Exact MiniLM vectors pinned in `tests/data/embed_golden.json`, natively and in wasm32 under
//! Node (`scripts/test-wasm.sh`): equal digests on both mean the same bits on both. With
//! `EDGEPROOF_BLESS=1` the native run rewrites the file (after a deliberate numerics change).

use edgeproof::embed::{vector_digest, Encoder, DEFAULT_MAX_TOKENS};
use edgeproof::receipt::{Encode, Hasher};

#[cfg(not(target_arch = "wasm32"))]
mod common;
#[path = "common/golden_io.rs"]
mod io;

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const GOLDEN: &str = include_str!("data/embed_golden.json");
const SENTENCES: &str = include_str!("data/minilm/sentences.txt");

#[test]
fn minilm_vectors_are_pinned() {
    let text = |f: &str| String::from_utf8(io::minilm_file(f)).expect("UTF-8");
    let gguf = edgeproof::model::bert::convert(
        &io::minilm_file("model.safetensors"),
        &text("config.json"),
        &text("tokenizer.json"),
    )
    .expect("convert");
    let enc = Encoder::load(&gguf).expect("encoder");
    // The first 48 sentences in two batches (32 and 16), and the longest one alone.
    let ids: Vec<Vec<u32>> =
        SENTENCES.lines().take(48).map(|t| enc.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize")).collect();
    let mut h = Hasher::new("embed golden");
    for batch in ids.chunks(32) {
        let v = enc.embed_ids(batch).expect("embed");
        for r in 0..batch.len() {
            h = h.hash(&vector_digest(&v, r));
        }
    }
    let long =
        enc.tokenize(SENTENCES.lines().max_by_key(|l| l.len()).expect("lines"), DEFAULT_MAX_TOKENS).expect("tokenize");
    let v = enc.embed_ids(&[long]).expect("embed");
    let got = hex::encode(h.hash(&vector_digest(&v, 0)).finish());
    let want: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden JSON");
    if io::bless() {
        #[cfg(not(target_arch = "wasm32"))]
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/embed_golden.json"),
            format!("{}\n", serde_json::json!({ "minilm-49": got })),
        )
        .expect("bless");
        return;
    }
    assert_eq!(Some(got.as_str()), want["minilm-49"].as_str(), "digest of the 49 exact vectors");
}
