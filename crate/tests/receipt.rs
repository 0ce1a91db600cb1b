//! Receipts: test vectors, JSON round trip, verification by re-execution, tampering with
//! every committed field, malformed receipts.

mod common;

use edgeproof::engine::ExactModel;
use edgeproof::gguf::Gguf;
use edgeproof::model::Arch;
use edgeproof::receipt::{
    generate, merkle_root, verify, ChatMessage, Divergence, FinishReason, Hasher, ModelCommitment, Prompt, Receipt,
    Report, Request,
};
use edgeproof::sampling::SamplingParams;
use edgeproof::tiny::tiny_model;
use edgeproof::tokenizer::Tokenizer;

fn tiny_bytes() -> Vec<u8> {
    let src = std::fs::read(common::model_path("smollm2")).expect("read SmolLM2 (tokenizer source)");
    let header = edgeproof::gguf::parse_header(&src).expect("parse SmolLM2 header");
    tiny_model(Arch::Llama, &header.metadata, 7).expect("build tiny model")
}

struct Loaded {
    gguf: Gguf,
    tok: Tokenizer,
    model: std::rc::Rc<ExactModel>,
    commitment: ModelCommitment,
}

fn load(bytes: Vec<u8>) -> Loaded {
    let gguf = Gguf::from_bytes(bytes).expect("parse");
    let tok = Tokenizer::from_metadata(gguf.metadata()).expect("tokenizer");
    let model = ExactModel::load(&gguf).expect("model");
    let commitment = ModelCommitment::of(&gguf, |_| {}).expect("commitment");
    Loaded { gguf, tok, model, commitment }
}

fn make(m: &Loaded, req: &Request) -> Receipt {
    let mut s = m.model.session().expect("session");
    generate(&mut s, &m.gguf, &m.tok, &m.commitment, req, |_| Ok(true)).expect("generate")
}

fn check(m: &Loaded, r: &Receipt) -> Report {
    let mut s = m.model.session().expect("session");
    verify(r, &m.gguf, &m.tok, Some(&m.commitment), &mut s, |_, _| {}).expect("verify")
}

fn seeded(prompt: Prompt, max_tokens: u32, stop: &[&str]) -> Request {
    Request {
        prompt,
        params: SamplingParams::new(0.8, 40, 0.95, 1234).expect("params"),
        max_tokens,
        stop: stop.iter().map(|s| s.to_string()).collect(),
    }
}

fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn merkle_root_shapes() {
    let leaf = |i: u8| [i; 32];
    let h = |l: &[u8; 32]| Hasher::new("edgeproof merkle leaf").hash(l).finish();
    let node = |a: &[u8; 32], b: &[u8; 32]| Hasher::new("edgeproof merkle node").hash(a).hash(b).finish();
    assert_eq!(merkle_root(&[]), Hasher::new("edgeproof merkle empty").finish());
    assert_eq!(merkle_root(&[leaf(1)]), h(&leaf(1)));
    // Three leaves: the left subtree takes two.
    let want = node(&node(&h(&leaf(1)), &h(&leaf(2))), &h(&leaf(3)));
    assert_eq!(merkle_root(&[leaf(1), leaf(2), leaf(3)]), want);
    // A leaf never equals a node over the same bytes.
    assert_ne!(merkle_root(&[leaf(1), leaf(2)]), h(&leaf(1)));
}

/// The committed test vectors: a seeded receipt on the tiny llama model with every
/// intermediate hash (`tests/data/receipt_tiny.json`; `EDGEPROOF_BLESS=1` rewrites it).
#[test]
fn tiny_receipt_matches_test_vectors() {
    let m = load(tiny_bytes());
    let r = make(&m, &seeded(Prompt::Text("The capital of France is".into()), 12, &[]));
    let c = r.chain();
    let mut core = r.clone();
    core.meta = Default::default();
    let vectors = serde_json::json!({
        "receipt": serde_json::from_str::<serde_json::Value>(&core.to_json()).expect("json"),
        "hashes": {
            "model": hex(&c.model),
            "prompt": hex(&c.prompt),
            "sampling": hex(&c.sampling),
            "c0": hex(&c.c0),
            "steps": c.steps.iter().map(hex).collect::<Vec<_>>(),
            "layers_roots": r.layers.iter().map(|l| hex(&merkle_root(l))).collect::<Vec<_>>(),
            "final": hex(&c.final_hash),
        }
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/receipt_tiny.json");
    if std::env::var_os("EDGEPROOF_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&vectors).expect("json") + "\n").expect("write vectors");
    }
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("tests/data/receipt_tiny.json (EDGEPROOF_BLESS=1 writes it)"),
    )
    .expect("parse vectors");
    assert_eq!(vectors, want, "receipt or hashes differ from the committed test vectors");
    assert_eq!(r.tokens.len(), 12);
    assert_eq!(r.layers.len(), 12);
    assert!(r.layers.iter().all(|l| l.len() == m.model.cfg.n_layer));
    assert_eq!(c.final_hash, r.final_hash);
}

#[test]
fn json_round_trips_and_verifies() {
    let m = load(tiny_bytes());
    let prompt = Prompt::Messages(vec![ChatMessage { role: "user".into(), content: "Name a colour.".into() }]);
    for req in [seeded(prompt, 10, &[]), seeded(Prompt::Text("Once upon".into()), 9, &[])] {
        let r = make(&m, &req);
        let back = Receipt::from_json(&r.to_json()).expect("parse back");
        assert_eq!(back, r);
        let rep = check(&m, &back);
        assert!(rep.ok(), "{}: {:?}", rep.verdict(), rep.findings);
        assert_eq!(rep.steps_matched, r.tokens.len());
    }
}

/// The tiny model's vocabulary is SmolLM2's, so it produces text with stop strings and the
/// end-of-generation token: each finish reason verifies, and changing it does not.
#[test]
fn finish_reasons_verify() {
    let m = load(tiny_bytes());
    let eog = m.tok.eog_ids().to_vec();
    // Greedy from a prompt, long enough to see the text; then a stop string from that text.
    let greedy = |stop: Vec<String>, max_tokens| Request {
        prompt: Prompt::Text("a".into()),
        params: SamplingParams::greedy(),
        max_tokens,
        stop,
    };
    let r = make(&m, &greedy(vec![], 24));
    assert!(check(&m, &r).ok());
    let words: Vec<&str> = r.output.split_whitespace().collect();
    let w = words.get(2).unwrap_or_else(|| panic!("three words in {:?}", r.output));
    let stopped = make(&m, &greedy(vec![w.to_string()], 24));
    assert_eq!(stopped.finish, FinishReason::Stop, "stop string {w:?} in {:?}", r.output);
    assert!(!stopped.output.contains(w));
    assert!(check(&m, &stopped).ok());
    // End of generation: claim the first generated token is an end-of-generation id.
    let mut r1 = make(&m, &greedy(vec![], 1));
    assert_eq!(r1.finish, FinishReason::Length);
    r1.sampling.eog = vec![r1.tokens[0]];
    r1.finish = FinishReason::Eog;
    r1.output = String::new();
    r1.seal();
    let rep = check(&m, &r1);
    assert!(rep.ok(), "{}", rep.verdict());
    assert!(!eog.is_empty());
}

/// Stopped by the caller after three tokens: finish `aborted`, verifies; the same tokens
/// claimed as a natural end, or an abort claimed after generation had ended, do not.
#[test]
fn aborted_receipts_verify() {
    let m = load(tiny_bytes());
    let req = seeded(Prompt::Text("Once upon a time".into()), 20, &[]);
    let mut n = 0;
    let mut s = m.model.session().expect("session");
    let r = generate(&mut s, &m.gguf, &m.tok, &m.commitment, &req, |_| {
        n += 1;
        Ok(n < 3)
    })
    .expect("generate");
    assert_eq!((r.finish, r.tokens.len()), (FinishReason::Aborted, 3));
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
    let full = make(&m, &req);
    assert_eq!(&full.tokens[..3], &r.tokens[..], "an abort changes no token");
    let mut t = r.clone();
    t.finish = FinishReason::Length;
    t.seal();
    assert_diverges(&m, &t, "aborted claimed as length", |d| matches!(d, Divergence::Finish { .. }));
    let mut t = full.clone();
    t.finish = FinishReason::Aborted;
    t.seal();
    assert_diverges(&m, &t, "abort after the end", |d| matches!(d, Divergence::Finish { .. }));
}

/// A generation that fills the context ends where the verifier says it does (they used to
/// disagree by one token): the last token is sampled at the context's last position.
#[test]
fn a_full_context_ends_generation_and_verifies() {
    let m = load(tiny_bytes());
    let ctx = m.model.cfg.ctx_len;
    let words = vec!["a"; 400].join(" ");
    let mut ids = m.tok.encode(&words, true, false).expect("encode");
    ids.truncate(ctx - 4);
    let text = m.tok.decode(&ids).expect("decode");
    assert_eq!(m.tok.encode(&text, true, false).expect("encode"), ids, "the prompt round-trips");
    let mut req = seeded(Prompt::Text(text), 50, &[]);
    req.params = SamplingParams::new(0.8, 0, 1.0, 9).expect("params");
    req.stop.clear();
    let r = make(&m, &req);
    assert_eq!((r.finish, r.tokens.len()), (FinishReason::Length, 5), "ctx {ctx}, prompt {}", ids.len());
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
}

fn assert_diverges(m: &Loaded, r: &Receipt, what: &str, want: impl Fn(&Divergence) -> bool) {
    let rep = check(m, r);
    assert!(!rep.ok(), "{what}: tampered receipt verified");
    assert!(rep.findings.iter().any(&want), "{what}: findings {:?}", rep.findings);
    assert!(rep.verdict().starts_with("NOT verified"), "{what}");
}

/// Every committed field, edited without resealing, breaks a hash that names its section;
/// edited and resealed (a forger recomputing the chain), re-execution names what diverged.
#[test]
fn tampering_with_any_committed_field_fails() {
    let m = load(tiny_bytes());
    // Hot sampling over the whole vocabulary, so that top-k or top-p of one (greedy) differ.
    let mut req = seeded(Prompt::Text("The capital of France is".into()), 8, &[]);
    req.params = SamplingParams::new(2.0, 0, 1.0, 99).expect("params");
    let r = make(&m, &req);
    req.params = SamplingParams::greedy();
    assert_ne!(make(&m, &req).tokens, r.tokens, "sampled tokens equal greedy ones: the test would be weak");
    assert!(check(&m, &r).ok());
    type Edit = (&'static str, fn(&mut Receipt), fn(&Divergence) -> bool);
    let edits: Vec<Edit> = vec![
        ("numerics", |r| r.numerics[0] ^= 1, |d| *d == Divergence::Numerics),
        ("model file", |r| r.model.file_sha256[5] ^= 1, |d| matches!(d, Divergence::Model { field: "file sha256" })),
        ("tensors", |r| r.model.tensors_root[0] ^= 1, |d| matches!(d, Divergence::Model { field: "tensors root" })),
        ("tokenizer", |r| r.model.tokenizer[0] ^= 1, |d| matches!(d, Divergence::Model { field: "tokenizer" })),
        ("template", |r| r.model.chat_template[0] ^= 1, |d| matches!(d, Divergence::Model { field: "chat template" })),
        (
            "prompt text",
            |r| r.prompt = Prompt::Text("The capital of Franze is".into()),
            |d| matches!(d, Divergence::Prompt { .. }),
        ),
        ("prompt ids", |r| r.prompt_ids[1] += 1, |d| matches!(d, Divergence::Prompt { index: 1 })),
        ("temperature", |r| r.sampling.temperature_q16 = 1, |d| matches!(d, Divergence::Token { .. })),
        ("top_k", |r| r.sampling.top_k = 1, |d| matches!(d, Divergence::Token { .. })),
        ("top_p", |r| r.sampling.top_p_q16 = 1, |d| matches!(d, Divergence::Token { .. })),
        ("seed", |r| r.sampling.seed += 1, |d| matches!(d, Divergence::Token { .. })),
        ("max_tokens", |r| r.sampling.max_tokens += 1, |d| matches!(d, Divergence::Finish { .. })),
        (
            "stop",
            |r| r.sampling.stop = vec![r.output.chars().take(2).collect()],
            |d| matches!(d, Divergence::Finish { .. }),
        ),
        ("eog", |r| r.sampling.eog = vec![r.tokens[3]], |d| matches!(d, Divergence::Finish { .. })),
        ("layer digest", |r| r.layers[4][1][7] ^= 1, |d| *d == Divergence::Layer { step: 5, layer: 1 }),
        ("finish", |r| r.finish = FinishReason::Stop, |d| matches!(d, Divergence::Finish { .. })),
        ("output", |r| r.output.push('!'), |d| *d == Divergence::Output),
        ("version", |r| r.version = 2, |d| matches!(d, Divergence::Format { what: "version" })),
        ("mode", |r| r.mode = "f32".into(), |d| matches!(d, Divergence::Format { what: "mode" })),
    ];
    for (what, edit, named) in edits {
        let mut t = r.clone();
        edit(&mut t);
        assert_ne!(t, r, "{what}: the edit changed nothing");
        assert_diverges(&m, &t, &format!("{what} (not resealed)"), |d| matches!(d, Divergence::Hash { .. }));
        t.seal();
        assert_diverges(&m, &t, &format!("{what} (resealed)"), named);
    }
    // Every output token, resealed: re-execution names that token.
    for i in 0..r.tokens.len() {
        let mut t = r.clone();
        t.tokens[i] = (t.tokens[i] + 1) % m.model.cfg.n_vocab as u32;
        t.seal();
        assert_diverges(
            &m,
            &t,
            &format!("token {i}"),
            |d| matches!(d, Divergence::Token { step, .. } if *step == i + 1),
        );
    }
    // Each hash itself.
    for what in ["chain", "final"] {
        let mut t = r.clone();
        if what == "chain" {
            t.chain[0] ^= 1;
        } else {
            t.final_hash[0] ^= 1;
        }
        assert_diverges(&m, &t, what, |d| matches!(d, Divergence::Hash { what: w } if *w == what));
    }
}

/// One byte of one tensor of the model file: the commitment names it, whatever the receipt.
#[test]
fn a_tampered_model_file_fails() {
    let bytes = tiny_bytes();
    let m = load(bytes.clone());
    let r = make(&m, &seeded(Prompt::Text("Hello".into()), 4, &[]));
    let info = m.gguf.header.tensor_info("blk.0.ffn_up.weight").expect("tensor").clone();
    let mut bad = bytes;
    bad[(m.gguf.header.data_offset + info.offset + 3) as usize] ^= 0x10;
    let m2 = load(bad);
    let rep = check(&m2, &r);
    assert_eq!(
        rep.findings,
        vec![Divergence::Model { field: "file sha256" }, Divergence::Model { field: "tensors root" }],
        "{}",
        rep.verdict()
    );
}

#[test]
fn malformed_receipts_are_typed_errors() {
    let m = load(tiny_bytes());
    let r = make(&m, &seeded(Prompt::Text("Hi".into()), 3, &[]));
    let json = r.to_json();
    let code = |s: &str| Receipt::from_json(s).err().map(|e| e.code());
    assert_eq!(code("{not json"), Some("BAD_RECEIPT"));
    assert_eq!(code("[]"), Some("BAD_RECEIPT"));
    assert_eq!(code(&json.replacen("\"version\": 1", "\"version\": 7", 1)), Some("UNSUPPORTED_RECEIPT_VERSION"));
    let short = json.replacen(&hex(&r.final_hash), &hex(&r.final_hash)[..62], 1);
    assert_eq!(code(&short), Some("BAD_RECEIPT"));
    let not_hex = json.replacen(&hex(&r.chain), &"zz".repeat(32), 1);
    assert_eq!(code(&not_hex), Some("BAD_RECEIPT"));
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
    v["layers"].as_array_mut().expect("layers").pop();
    assert_eq!(code(&v.to_string()), Some("BAD_RECEIPT"));
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
    v["mode"] = "f32".into();
    assert_eq!(code(&v.to_string()), Some("BAD_RECEIPT"));
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
    v["sampling"]["seed"] = 12.into();
    assert_eq!(code(&v.to_string()), Some("BAD_RECEIPT"));
    assert!(Receipt::from_json(&json).is_ok());
}

/// SmolLM2: a seeded 16-token receipt verifies on the CPU; a changed token does not.
#[test]
fn smollm2_receipt_verifies() {
    let m = load(std::fs::read(common::model_path("smollm2")).expect("read SmolLM2"));
    let r = make(&m, &seeded(Prompt::Text("The capital of France is".into()), 16, &[]));
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
    let mut t = r.clone();
    t.tokens[9] = t.tokens[9].wrapping_add(1);
    t.seal();
    assert_diverges(&m, &t, "token 9", |d| matches!(d, Divergence::Token { step: 10, .. }));
}

fn gpu() -> std::rc::Rc<edgeproof::gpu::GpuContext> {
    let ctx = edgeproof::gpu::GpuContext::new_blocking(edgeproof::gpu::GpuOptions::from_env()).unwrap_or_else(|e| {
        panic!("{e} (natively the tests run on Mesa's lavapipe: apt-get install mesa-vulkan-drivers)")
    });
    std::rc::Rc::new(ctx)
}

/// A receipt made on the GPU verifies on the CPU and the other way round, and both backends
/// make the same receipt (same final hash).
fn cross_backends(bytes: Vec<u8>, req: &Request) {
    let m = load(bytes);
    let g = edgeproof::engine::GpuModel::load(&m.gguf, gpu()).expect("GPU model");
    let on_gpu = {
        let mut s = g.session().expect("GPU session");
        generate(&mut s, &m.gguf, &m.tok, &m.commitment, req, |_| Ok(true)).expect("generate on the GPU")
    };
    assert_eq!(on_gpu.meta.backend, "gpu");
    let on_cpu = make(&m, req);
    assert_eq!(on_gpu.final_hash, on_cpu.final_hash, "GPU tokens {:?}, CPU tokens {:?}", on_gpu.tokens, on_cpu.tokens);
    let rep = check(&m, &on_gpu);
    assert!(rep.ok(), "GPU receipt on the CPU: {}", rep.verdict());
    let mut s = g.session().expect("GPU session");
    let rep = verify(&on_cpu, &m.gguf, &m.tok, Some(&m.commitment), &mut s, |_, _| {}).expect("verify on the GPU");
    assert!(rep.ok(), "CPU receipt on the GPU: {}", rep.verdict());
    assert_eq!(rep.steps_matched, on_cpu.tokens.len());
    // A forged token is caught on the GPU too.
    let mut t = on_cpu.clone();
    t.tokens[2] = t.tokens[2].wrapping_add(1);
    t.seal();
    let mut s = g.session().expect("GPU session");
    let rep = verify(&t, &m.gguf, &m.tok, Some(&m.commitment), &mut s, |_, _| {}).expect("verify on the GPU");
    assert!(matches!(rep.findings.first(), Some(Divergence::Token { step: 3, .. })), "{}", rep.verdict());
}

#[test]
fn receipts_cross_cpu_and_gpu_tiny() {
    cross_backends(tiny_bytes(), &seeded(Prompt::Text("The capital of France is".into()), 12, &[]));
}

#[test]
fn receipts_cross_cpu_and_gpu_smollm2() {
    let bytes = std::fs::read(common::model_path("smollm2")).expect("read SmolLM2");
    cross_backends(bytes, &seeded(Prompt::Text("The capital of France is".into()), 6, &[]));
}

#[test]
#[ignore = "check-full: Gemma 3 receipts across CPU and GPU (minutes on lavapipe)"]
fn receipts_cross_cpu_and_gpu_gemma3() {
    let bytes = std::fs::read(common::model_path("gemma3")).expect("read Gemma 3");
    let prompt = Prompt::Messages(vec![ChatMessage { role: "user".into(), content: "Name a colour.".into() }]);
    cross_backends(bytes, &seeded(prompt, 8, &[]));
}
