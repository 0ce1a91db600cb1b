//! Receipts: the v1 test vectors still verify, JSON round trip, verification by
//! re-execution, tampering with every committed field, malformed receipts, CPU against GPU.
//! Version 2's own forms, privacy and signatures: `receipt_v2.rs`.

mod common;
#[path = "common/receipts.rs"]
mod receipts;

use edgeproof::gguf::Value;
use edgeproof::receipt::{
    generate, merkle_root, verify, ChatMessage, Divergence, Encode, FinishReason, Hasher, KeyPair, Prompt, Receipt,
    Request,
};
use edgeproof::sampling::SamplingParams;
use receipts::{assert_diverges, check, hex, load, make, p, pm, seeded, tiny_bytes};

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

/// Version 1's committed test vectors (`tests/data/receipt_tiny.json`, written before version
/// 2): the receipt parses, its hashes are the committed ones, it verifies by re-execution, and
/// the same generation written as version 1 today is that receipt, byte for byte.
#[test]
fn v1_test_vectors_still_verify() {
    let m = load(tiny_bytes());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/receipt_tiny.json");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("tests/data/receipt_tiny.json")).expect("parse");
    let r1 = Receipt::from_json(&want["receipt"].to_string()).expect("parse the v1 receipt");
    assert_eq!(r1.version, 1);
    let c = r1.chain();
    let h = &want["hashes"];
    assert_eq!(hex(&c.model), h["model"]);
    assert_eq!(hex(&c.prompt), h["prompt"]);
    assert_eq!(hex(&c.sampling), h["sampling"]);
    assert_eq!(hex(&c.c0), h["c0"]);
    assert_eq!(serde_json::json!(c.steps.iter().map(hex).collect::<Vec<_>>()), h["steps"]);
    assert_eq!(serde_json::json!(r1.steps.iter().map(hex).collect::<Vec<_>>()), h["layers_roots"]);
    assert_eq!(hex(&c.final_hash), h["final"]);
    let rep = check(&m, &r1);
    assert!(rep.verified(), "{}", rep.verdict());
    assert_eq!((rep.steps_matched, rep.signer.clone()), (12, None));
    let r = make(&m, &seeded(Prompt::Text("The capital of France is".into()), 12, &[]));
    let mut v1 = r.to_v1().expect("as v1");
    v1.meta = Default::default();
    let json: serde_json::Value = serde_json::from_str(&v1.to_json().expect("json")).expect("json");
    assert_eq!(json, want["receipt"], "today's v1 form differs from the committed receipt");
    // A layer digest edited in a v1 receipt (resealed) is still named by step and layer.
    let mut t = r1.clone();
    t.trace.as_mut().expect("v1 layers")[4][1][7] ^= 1;
    t.steps = t.trace.as_ref().expect("layers").iter().map(|l| merkle_root(l)).collect();
    t.seal();
    assert_diverges(&m, &t, "v1 layer digest", |d| *d == Divergence::Layer { step: 5, layer: 1 });
}

#[test]
fn json_round_trips_and_verifies() {
    let m = load(tiny_bytes());
    let prompt = Prompt::Messages(vec![ChatMessage { role: "user".into(), content: "Name a colour.".into() }]);
    for req in [seeded(prompt, 10, &[]), seeded(Prompt::Text("Once upon".into()), 9, &[])] {
        let r = make(&m, &req);
        let back = Receipt::from_json(&r.to_json().expect("json")).expect("parse back");
        assert_eq!(back, r.sealed());
        assert_eq!(Receipt::from_bytes(&r.to_bytes().expect("binary")).expect("parse binary"), r.sealed());
        let rep = check(&m, &back);
        assert!(rep.verified(), "{}: {:?}", rep.verdict(), rep.findings);
        assert_eq!(rep.steps_matched, p(&r).tokens.len());
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
        salt: None,
    };
    let r = make(&m, &greedy(vec![], 24));
    assert!(check(&m, &r).ok());
    let words: Vec<&str> = p(&r).output.split_whitespace().collect();
    let w = words.get(2).unwrap_or_else(|| panic!("three words in {:?}", p(&r).output));
    let stopped = make(&m, &greedy(vec![w.to_string()], 24));
    assert_eq!(stopped.finish, FinishReason::Stop, "stop string {w:?} in {:?}", p(&r).output);
    assert!(!p(&stopped).output.contains(w));
    assert!(check(&m, &stopped).ok());
    // End of generation: a receipt cannot claim an end-of-generation id the model does not have.
    let mut r1 = make(&m, &greedy(vec![], 1));
    assert_eq!(r1.finish, FinishReason::Length);
    let first = p(&r1).tokens[0];
    r1.sampling.eog = vec![first];
    r1.finish = FinishReason::Eog;
    pm(&mut r1).output = String::new();
    r1.seal();
    assert_diverges(&m, &r1, "an EOG id of the receipt's own", |d| *d == Divergence::Sampling { what: "eog" });
    assert!(!eog.is_empty());
    // A model whose end-of-turn id is that first token ends there, and the receipt verifies.
    let ends = load(receipts::tiny_bytes_with(|meta| meta.set("tokenizer.ggml.eot_token_id", Value::U32(first))));
    let r = make(&ends, &greedy(vec![], 24));
    assert_eq!((r.finish, &p(&r).tokens[..]), (FinishReason::Eog, &[first][..]));
    assert!(r.sampling.eog.contains(&first));
    let rep = check(&ends, &r);
    assert!(rep.verified(), "{}", rep.verdict());
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
    assert_eq!((r.finish, p(&r).tokens.len()), (FinishReason::Aborted, 3));
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
    let full = make(&m, &req);
    assert_eq!(&p(&full).tokens[..3], &p(&r).tokens[..], "an abort changes no token");
    let mut t = r.clone();
    t.finish = FinishReason::Length;
    t.seal();
    assert_diverges(&m, &t, "aborted claimed as length", |d| matches!(d, Divergence::Finish { .. }));
    let mut t = full.clone();
    t.finish = FinishReason::Aborted;
    t.seal();
    assert_diverges(&m, &t, "abort after the end", |d| matches!(d, Divergence::Finish { .. }));
}

/// A receipt longer than one re-execution pass (the prompt and 170 tokens at SmolLM2's
/// vocabulary, then 170 at a time) verifies, and a token in the later pass, or a layer there,
/// is named.
#[test]
fn long_receipts_verify_across_chunks() {
    let m = load(tiny_bytes());
    let mut req = seeded(Prompt::Text("Once upon a time".into()), 240, &[]);
    req.params = SamplingParams::new(0.9, 0, 1.0, 3).expect("params");
    let r = make(&m, &req);
    assert_eq!(p(&r).tokens.len(), 240, "finish {:?}", r.finish);
    let rep = check(&m, &r);
    assert!(rep.verified(), "{}", rep.verdict());
    assert_eq!(rep.steps_matched, 240);
    let mut t = r.clone();
    pm(&mut t).tokens[229] = (p(&r).tokens[229] + 1) % m.model.cfg.n_vocab as u32;
    t.seal();
    assert_diverges(&m, &t, "token 230", |d| matches!(d, Divergence::Token { step: 230, .. }));
    let mut t = r.clone();
    t.trace.as_mut().expect("trace")[200][2][0] ^= 1;
    t.steps[200] = merkle_root(&t.trace.as_ref().expect("trace")[200]);
    t.seal();
    assert_diverges(&m, &t, "layer at step 201", |d| *d == Divergence::Layer { step: 201, layer: 2 });
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
    assert_eq!((r.finish, p(&r).tokens.len()), (FinishReason::Length, 5), "ctx {ctx}, prompt {}", ids.len());
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
}

/// Every committed field of a signed v2 receipt, edited without resealing, breaks a hash that
/// names its section; edited and resealed (a forger recomputing the chain), re-execution names
/// what diverged and the signature no longer verifies. With the trace a changed layer digest
/// is named by step and layer; without it, by step.
#[test]
fn tampering_with_any_committed_field_fails() {
    let m = load(tiny_bytes());
    // Hot sampling over the whole vocabulary, so that top-k or top-p of one (greedy) differ.
    let mut req = seeded(Prompt::Text("The capital of France is".into()), 8, &[]);
    req.params = SamplingParams::new(2.0, 0, 1.0, 99).expect("params");
    let mut r = make(&m, &req);
    let key = KeyPair::from_secret(&[7; 32]).expect("key");
    r.sign(&key);
    req.params = SamplingParams::greedy();
    assert_ne!(p(&make(&m, &req)).tokens, p(&r).tokens, "sampled tokens equal greedy ones: the test would be weak");
    let rep = check(&m, &r);
    assert!(rep.verified(), "{}", rep.verdict());
    assert_eq!(rep.signer, Some(key.fingerprint()));
    type Edit = (&'static str, fn(&mut Receipt), fn(&Divergence) -> bool);
    let edits: Vec<Edit> = vec![
        ("numerics", |r| r.numerics[0] ^= 1, |d| *d == Divergence::Numerics),
        ("model file", |r| r.model.file_sha256[5] ^= 1, |d| matches!(d, Divergence::Model { field: "file sha256" })),
        ("tensors", |r| r.model.tensors_root[0] ^= 1, |d| matches!(d, Divergence::Model { field: "tensors root" })),
        ("tokenizer", |r| r.model.tokenizer[0] ^= 1, |d| matches!(d, Divergence::Model { field: "tokenizer" })),
        ("template", |r| r.model.chat_template[0] ^= 1, |d| matches!(d, Divergence::Model { field: "chat template" })),
        (
            "prompt text",
            |r| pm(r).prompt = Prompt::Text("The capital of Franze is".into()),
            |d| matches!(d, Divergence::Prompt { .. }),
        ),
        ("prompt ids", |r| pm(r).prompt_ids[1] += 1, |d| matches!(d, Divergence::Prompt { index: 1 })),
        ("temperature", |r| r.sampling.temperature_q16 = 1, |d| matches!(d, Divergence::Token { .. })),
        ("top_k", |r| r.sampling.top_k = 1, |d| matches!(d, Divergence::Token { .. })),
        ("top_p", |r| r.sampling.top_p_q16 = 1, |d| matches!(d, Divergence::Token { .. })),
        ("seed", |r| r.sampling.seed += 1, |d| matches!(d, Divergence::Token { .. })),
        ("max_tokens", |r| r.sampling.max_tokens += 1, |d| matches!(d, Divergence::Finish { .. })),
        (
            "stop",
            |r| r.sampling.stop = vec![p(r).output.chars().take(2).collect()],
            |d| matches!(d, Divergence::Finish { .. }),
        ),
        ("eog", |r| r.sampling.eog = vec![p(r).tokens[3]], |d| *d == Divergence::Sampling { what: "eog" }),
        ("greedy with a seed", |r| r.sampling.temperature_q16 = 0, |d| *d == Divergence::Sampling { what: "settings" }),
        ("top_p above 1", |r| r.sampling.top_p_q16 = 70_000, |d| *d == Divergence::Sampling { what: "settings" }),
        (
            "layer digest, with the trace",
            |r| {
                let trace = r.trace.as_mut().expect("trace");
                trace[4][1][7] ^= 1;
                r.steps[4] = merkle_root(&trace[4]);
            },
            |d| *d == Divergence::Layer { step: 5, layer: 1 },
        ),
        (
            "layer digest, without the trace",
            |r| {
                let mut layers = r.trace.take().expect("trace")[4].clone();
                layers[1][7] ^= 1;
                r.steps[4] = merkle_root(&layers);
            },
            |d| *d == Divergence::Step { step: 5 },
        ),
        ("step value", |r| r.steps[2][0] ^= 1, |d| *d == Divergence::Step { step: 3 }),
        ("finish", |r| r.finish = FinishReason::Stop, |d| matches!(d, Divergence::Finish { .. })),
        ("output", |r| pm(r).output.push('!'), |d| *d == Divergence::Output),
        ("version", |r| r.version = 3, |d| matches!(d, Divergence::Format { what: "version" })),
        ("mode", |r| r.mode = "f32".into(), |d| matches!(d, Divergence::Format { what: "mode" })),
    ];
    for (what, edit, named) in edits {
        let mut t = r.clone();
        edit(&mut t);
        assert_ne!(t, r, "{what}: the edit changed nothing");
        assert_diverges(&m, &t, &format!("{what} (not resealed)"), |d| matches!(d, Divergence::Hash { .. }));
        t.seal();
        assert_diverges(&m, &t, &format!("{what} (resealed)"), named);
        assert_diverges(&m, &t, &format!("{what} (resealed)"), |d| *d == Divergence::Signature { what: "value" });
    }
    // Every output token, resealed: re-execution names that token.
    for i in 0..p(&r).tokens.len() {
        let mut t = r.clone();
        pm(&mut t).tokens[i] = (p(&r).tokens[i] + 1) % m.model.cfg.n_vocab as u32;
        t.seal();
        assert_diverges(
            &m,
            &t,
            &format!("token {i}"),
            |d| matches!(d, Divergence::Token { step, .. } if *step == i + 1),
        );
    }
    // Each hash itself.
    type HashEdit = (&'static str, fn(&mut Receipt));
    let hashes: Vec<HashEdit> = vec![
        ("model", |r| r.sections.model[0] ^= 1),
        ("prompt", |r| r.sections.prompt[0] ^= 1),
        ("sampling", |r| r.sections.sampling[0] ^= 1),
        ("header", |r| r.sections.c0[0] ^= 1),
        ("chain", |r| r.chain[0] ^= 1),
        ("final", |r| r.final_hash[0] ^= 1),
    ];
    for (what, edit) in hashes {
        let mut t = r.clone();
        edit(&mut t);
        assert_diverges(&m, &t, what, |d| matches!(d, Divergence::Hash { what: w } if *w == what));
    }
    // The signature: another key's, another receipt's, a fingerprint that is not the key's, a
    // key that is no point; stripped, the receipt verifies, reported as unsigned.
    let other = KeyPair::from_secret(&[8; 32]).expect("key");
    let mut t = r.clone();
    let sig = t.signature.as_mut().expect("signed");
    sig.key = other.public_key();
    sig.fingerprint = other.fingerprint();
    assert_diverges(&m, &t, "another key", |d| *d == Divergence::Signature { what: "value" });
    let mut another = make(&m, &seeded(Prompt::Text("Once upon".into()), 3, &[]));
    another.sign(&key);
    let mut t = r.clone();
    t.signature = another.signature.clone();
    assert_diverges(&m, &t, "another receipt's signature", |d| *d == Divergence::Signature { what: "value" });
    let mut t = r.clone();
    t.signature.as_mut().expect("signed").fingerprint = other.fingerprint();
    assert_diverges(&m, &t, "fingerprint", |d| *d == Divergence::Signature { what: "fingerprint" });
    let mut t = r.clone();
    t.signature.as_mut().expect("signed").key[1] ^= 1;
    assert_diverges(&m, &t, "key", |d| *d == Divergence::Signature { what: "key" });
    let mut t = r.clone();
    t.signature = None;
    let rep = check(&m, &t);
    assert!(rep.verified(), "{}", rep.verdict());
    assert_eq!(rep.signer, None);
    assert!(rep.verdict().ends_with("unsigned"), "{}", rep.verdict());
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
    let code = |s: &str| Receipt::from_json(s).err().map(|e| e.code());
    assert_eq!(code("{not json"), Some("BAD_RECEIPT"));
    assert_eq!(code("[]"), Some("BAD_RECEIPT"));
    for json in [r.to_json().expect("v2"), r.to_v1().expect("v1").to_json().expect("v1 json")] {
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        let edited = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = v.clone();
            f(&mut v);
            code(&v.to_string())
        };
        assert_eq!(edited(&|v| v["version"] = 7.into()), Some("UNSUPPORTED_RECEIPT_VERSION"));
        assert_eq!(edited(&|v| v["final"] = hex(&r.final_hash)[..62].into()), Some("BAD_RECEIPT"));
        assert_eq!(edited(&|v| v["chain"] = "zz".repeat(32).into()), Some("BAD_RECEIPT"));
        assert_eq!(edited(&|v| v["mode"] = "f32".into()), Some("BAD_RECEIPT"));
        assert_eq!(edited(&|v| v["sampling"]["seed"] = 12.into()), Some("BAD_RECEIPT"));
        assert_eq!(edited(&|v| v["tokens"].as_array_mut().expect("tokens").push(1.into())), Some("BAD_RECEIPT"));
        assert_eq!(edited(&|v| v["unknown"] = 1.into()), Some("BAD_RECEIPT"));
        assert!(Receipt::from_json(&json).is_ok());
    }
    let v: serde_json::Value = serde_json::from_str(&r.to_json().expect("v2")).expect("json");
    let edited = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = v.clone();
        f(&mut v);
        code(&v.to_string())
    };
    // v2: steps not a whole number of hashes, a public receipt without its output, or with
    // commitments too.
    assert_eq!(edited(&|v| v["steps"] = "AAAA".into()), Some("BAD_RECEIPT"));
    assert_eq!(edited(&|v| v["steps"] = "not base64!".into()), Some("BAD_RECEIPT"));
    assert_eq!(
        edited(&|v| v.as_object_mut().expect("object").remove("output").map(|_| ()).unwrap_or(())),
        Some("BAD_RECEIPT")
    );
    assert_eq!(
        edited(&|v| v["commitments"] = serde_json::json!({"prompt": "00".repeat(32), "output": "00".repeat(32)})),
        Some("BAD_RECEIPT")
    );
    // Binary: every truncation, a wrong magic, a trailing byte.
    let b = r.to_bytes().expect("binary");
    for n in 0..b.len() {
        assert_eq!(Receipt::from_bytes(&b[..n]).err().map(|e| e.code()), Some("BAD_RECEIPT"), "cut at {n}");
    }
    let mut long = b.clone();
    long.push(0);
    assert_eq!(Receipt::from_bytes(&long).err().map(|e| e.code()), Some("BAD_RECEIPT"));
    assert_eq!(Receipt::parse(b"EPRX").err().map(|e| e.code()), Some("BAD_RECEIPT"));
    assert_eq!(Receipt::parse(&b).expect("parse"), r.sealed());
}

/// SmolLM2: a seeded 16-token receipt verifies on the CPU; a changed token does not.
#[test]
fn smollm2_receipt_verifies() {
    let m = load(std::fs::read(common::model_path("smollm2")).expect("read SmolLM2"));
    let r = make(&m, &seeded(Prompt::Text("The capital of France is".into()), 16, &[]));
    let rep = check(&m, &r);
    assert!(rep.ok(), "{}", rep.verdict());
    let mut t = r.clone();
    pm(&mut t).tokens[9] = p(&r).tokens[9].wrapping_add(1);
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
    assert_eq!(
        on_gpu.final_hash,
        on_cpu.final_hash,
        "GPU tokens {:?}, CPU tokens {:?}",
        p(&on_gpu).tokens,
        p(&on_cpu).tokens
    );
    let rep = check(&m, &on_gpu);
    assert!(rep.ok(), "GPU receipt on the CPU: {}", rep.verdict());
    let mut s = g.session().expect("GPU session");
    let rep = verify(&on_cpu, &m.gguf, &m.tok, Some(&m.commitment), &mut s, |_, _| {}).expect("verify on the GPU");
    assert!(rep.ok(), "CPU receipt on the GPU: {}", rep.verdict());
    assert_eq!(rep.steps_matched, p(&on_cpu).tokens.len());
    // A forged token is caught on the GPU too.
    let mut t = on_cpu.clone();
    pm(&mut t).tokens[2] = p(&on_cpu).tokens[2].wrapping_add(1);
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
