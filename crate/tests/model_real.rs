//! The f32 reference on the real models: known greedy continuations (what
//! llama.cpp gives for these files), and Gemma 3 past its 512-token window.

use edgeproof::engine::{argmax, generate_greedy, Engine, RefModel};
use edgeproof::gguf::Gguf;
use edgeproof::tokenizer::Tokenizer;

mod common;

fn load(name: &str) -> (std::rc::Rc<RefModel>, Tokenizer) {
    let g = Gguf::open(&common::model_path(name)).expect("open model");
    let tok = Tokenizer::from_metadata(g.metadata()).expect("tokenizer");
    (RefModel::load(&g).expect("load model"), tok)
}

fn greedy_text(name: &str, prompt: &str, n: usize) -> String {
    let (m, tok) = load(name);
    let ids = tok.encode(prompt, true, false).expect("encode");
    let (out, _) = generate_greedy(&mut m.session().expect("session"), &ids, n, tok.eog_ids()).expect("generate");
    tok.decode(&out).expect("decode")
}

#[test]
fn smollm2_greedy_paris() {
    let text = greedy_text("smollm2", "The capital of France is", 2);
    assert_eq!(text, " Paris.");
}

#[test]
fn gemma3_greedy_capital() {
    let text = greedy_text("gemma3", "The capital of France is", 7);
    assert_eq!(text, " the capital of the country of France");
}

fn gpl3_text() -> String {
    let path = std::env::var("EDGEPROOF_GPL3").unwrap_or_else(|_| "/usr/share/common-licenses/GPL-3".into());
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (scripts/fetch-models.sh gpl3, Debian's base-files)"))
}

/// Feeding tokens one at a time through the KV cache gives the logits of one batched
/// pass, past the sliding window; and text past 600 positions is still predicted well.
#[test]
#[ignore = "check-full: Gemma 3 past 600 positions (about a minute)"]
fn gemma3_kv_cache_past_the_window() {
    let (m, tok) = load("gemma3");
    let ids = tok.encode(&gpl3_text(), true, false).expect("encode");
    let (n, split) = (700, 590);
    let ids = &ids[..n];
    let nv = m.cfg.n_vocab;
    let batched = m.session().expect("session").eval(ids, 0, 0..n).expect("batched");
    let mut s = m.session().expect("session");
    s.eval(&ids[..split], 0, split - 1..split).expect("prefill");
    let mut worst = 0f32;
    for p in split..n {
        let row = s.eval(&ids[p..p + 1], p, 0..1).expect("decode");
        let b = &batched[p * nv..(p + 1) * nv];
        let d = row.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        worst = worst.max(d);
        assert_eq!(argmax(&row), argmax(b), "position {p}: decode and batched argmax differ");
    }
    assert!(worst < 1e-2, "decode and batched logits differ by {worst}");
    // Positions 600..700 seen through 600+ tokens of context (and the window) are predicted
    // about as well as when the same tokens are evaluated in a fresh 256-token chunk.
    let nll = |logits: &[f32], rows: std::ops::Range<usize>, at: usize| -> f64 {
        let k = rows.len() as f64;
        rows.map(|p| edgeproof::ppl::nll(&logits[(p - at) * nv..(p - at + 1) * nv], ids[p + 1])).sum::<f64>() / k
    };
    let long = nll(&batched, 600..n - 1, 0).exp();
    let mut chunk = ids[n - 256..].to_vec();
    chunk[0] = tok.bos().expect("Gemma has BOS");
    let fresh = m.session().expect("session").eval(&chunk, 0, 0..256).expect("fresh chunk");
    let short = nll(&fresh, 600..n - 1, n - 256).exp();
    assert!(long < 1.1 * short, "perplexity past the window {long}, in a fresh chunk {short}");
}

/// Generation past 600 positions stays coherent: counting on from 12 keeps every number
/// right, which needs the positions, the window and the global layers to be right.
#[test]
#[ignore = "check-full: Gemma 3 generation of 640 tokens (about two minutes)"]
fn gemma3_generation_past_600_positions() {
    let (m, tok) = load("gemma3");
    let prompt = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,";
    let ids = tok.encode(prompt, true, false).expect("encode");
    let (out, _) = generate_greedy(&mut m.session().expect("session"), &ids, 640, &[]).expect("generate");
    assert_eq!(out.len(), 640);
    assert!(ids.len() + out.len() > 600);
    let text = format!("{prompt}{}", tok.decode(&out).expect("decode"));
    let expected: String = (1..1000).map(|i| format!("{i}, ")).collect();
    let last = text.rfind(", ").expect("a comma");
    assert_eq!(&text[..last + 2], &expected[..last + 2], "counting went wrong");
    assert!(text.contains("150, "), "counted only to {}", &text[text.len() - 12..]);
}
