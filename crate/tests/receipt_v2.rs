//! Receipts, version 2: the committed test vectors (a public and a private receipt, signed,
//! with every intermediate value), private receipts and their openings, what a published
//! private receipt does not reveal, traces, signing keys.

mod common;
#[path = "common/receipts.rs"]
mod receipts;

use edgeproof::receipt::{
    keyed_digests, merkle_root, prompt_section, sha256, signing_message, trace_from_bytes, trace_to_bytes, Divergence,
    KeyPair, Opening, Prompt, Receipt,
};
use receipts::{check, hex, load, make, p, seeded, tiny_bytes, Loaded};
use serde_json::{json, Value};

const SALT: [u8; 32] = [0x5a; 32];

fn test_key() -> KeyPair {
    KeyPair::from_secret(&[7; 32]).expect("test key")
}

/// A signed receipt of 6 tokens on the tiny model (private with the test salt).
fn signed(m: &Loaded, private: bool) -> Receipt {
    let mut req = seeded(Prompt::Text("Tell me about zebra migrations".into()), 6, &[]);
    req.salt = private.then_some(SALT);
    let mut r = make(m, &req);
    r.meta = Default::default();
    r.sign(&test_key());
    r
}

/// Every value a verifier recomputes, in order (`docs/RECEIPT.md`, "Test vectors").
fn vectors(m: &Loaded, r: &Receipt) -> Value {
    let c = r.chain();
    let hexes = |v: &[[u8; 32]]| v.iter().map(hex).collect::<Vec<_>>();
    let trace = r.trace.as_ref().expect("trace");
    let sig = r.signature.as_ref().expect("signed");
    let mut v = json!({
        "receipt": serde_json::from_str::<Value>(&r.to_json().expect("json")).expect("json"),
        "binary": hex::encode(r.to_bytes().expect("binary")),
        "trace": hex::encode(trace_to_bytes(trace)),
        "hashes": {
            "model": hex(&c.model),
            "prompt": hex(&c.prompt),
            "sampling": hex(&c.sampling),
            "c0": hex(&c.c0),
            "layer_digests": trace.iter().map(|l| hexes(l)).collect::<Vec<_>>(),
            "step_values": hexes(&r.steps),
            "chain": hexes(&c.steps),
            "final": hex(&c.final_hash),
            "signing_message": hex(&signing_message(&c.final_hash)),
        },
        "key": { "secret": hex(&[7; 32]), "public": hex::encode(sig.key), "fingerprint": sig.fingerprint },
        "signature": hex::encode(sig.value),
    });
    if let Some(o) = &r.opening {
        v["opening"] = serde_json::from_str(&o.to_json()).expect("opening json");
        let ids = o.prompt.ids(m.gguf.metadata(), &m.tok).expect("ids");
        v["hashes"]["prompt_section"] = hex(&prompt_section(&o.prompt, &ids)).into();
    }
    v
}

/// The committed test vectors (`tests/data/receipt_v2.json`; `EDGEPROOF_BLESS=1` rewrites
/// them): a public and a private receipt, signed by a fixed key (ECDSA signatures here are
/// deterministic, RFC 6979), every intermediate value, the binary form and the trace.
#[test]
fn v2_receipts_match_test_vectors() {
    let m = load(tiny_bytes());
    let got = json!({ "public": vectors(&m, &signed(&m, false)), "private": vectors(&m, &signed(&m, true)) });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/receipt_v2.json");
    if std::env::var_os("EDGEPROOF_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).expect("json") + "\n").expect("write vectors");
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).expect("tests/data/receipt_v2.json (EDGEPROOF_BLESS=1 writes it)"),
    )
    .expect("parse vectors");
    for kind in ["public", "private"] {
        assert_eq!(got[kind]["hashes"], want[kind]["hashes"], "{kind}: hashes differ from the committed vectors");
        assert_eq!(got[kind], want[kind], "{kind}: receipt differs from the committed vectors");
        // The committed forms parse to the same receipt, which verifies (with its opening).
        let text = want[kind]["receipt"].to_string();
        let bytes = hex::decode(want[kind]["binary"].as_str().expect("binary")).expect("hex");
        let mut r = Receipt::from_json(&text).expect("parse JSON");
        assert_eq!(Receipt::from_bytes(&bytes).expect("parse binary"), r);
        r.attach_trace(
            trace_from_bytes(&hex::decode(want[kind]["trace"].as_str().expect("trace")).expect("hex")).expect("trace"),
        )
        .expect("attach");
        if kind == "private" {
            r.opening = Some(Opening::from_json(&want[kind]["opening"].to_string()).expect("opening"));
        }
        let rep = check(&m, &r);
        assert!(rep.verified(), "{kind}: {}", rep.verdict());
        assert_eq!(rep.signer.as_deref(), want[kind]["key"]["fingerprint"].as_str());
    }
}

/// A private receipt verifies with its opening; without it, only its hashes, signature and
/// model are checked, and the report says so. An opening that is not the receipt's (any field)
/// is named, and so is a forger who holds the opening and reseals an edit.
#[test]
fn private_receipts_verify_with_their_opening() {
    let m = load(tiny_bytes());
    let r = signed(&m, true);
    assert!(r.is_private() && r.public().is_none());
    let rep = check(&m, &r);
    assert!(rep.verified(), "{}", rep.verdict());
    assert_eq!(rep.signer, Some(test_key().fingerprint()));
    assert_eq!(rep.steps_matched, 6);
    let published = Receipt::from_json(&r.to_json().expect("json")).expect("parse");
    assert_eq!(published, r.sealed());
    let rep = check(&m, &published);
    assert!(rep.ok() && !rep.reexecuted && !rep.verified(), "{:?}", rep);
    assert!(rep.verdict().starts_with("NOT re-executed"), "{}", rep.verdict());
    assert!(rep.verdict().contains(&test_key().fingerprint()), "{}", rep.verdict());
    // Structure is still checked without the opening.
    let mut t = published.clone();
    t.steps[1][0] ^= 1;
    assert!(check(&m, &t).findings.contains(&Divergence::Hash { what: "chain" }));
    // Openings that are not this receipt's.
    type Edit = (&'static str, fn(&mut Opening), Divergence);
    let edits: Vec<Edit> = vec![
        (
            "prompt",
            |o| o.prompt = Prompt::Text("Tell me about zebra migration".into()),
            Divergence::Opening { what: "prompt" },
        ),
        ("output", |o| o.output.push(' '), Divergence::Opening { what: "output" }),
        ("tokens", |o| o.tokens[2] += 1, Divergence::Opening { what: "output" }),
        ("salt", |o| o.salt[0] ^= 1, Divergence::Opening { what: "prompt" }),
    ];
    for (what, edit, named) in edits {
        let mut t = r.clone();
        edit(t.opening.as_mut().expect("opening"));
        let rep = check(&m, &t);
        assert!(!rep.verified() && rep.findings.contains(&named), "opening {what}: {:?}", rep.findings);
    }
    // A forger with the opening: another token, commitments recomputed, resealed and signed
    // again with their own key: re-execution names the token.
    let mut t = r.clone();
    let o = t.opening.as_mut().expect("opening");
    o.tokens[3] = (o.tokens[3] + 1) % m.model.cfg.n_vocab as u32;
    let ids = o.prompt.ids(m.gguf.metadata(), &m.tok).expect("ids");
    t.body = edgeproof::receipt::Body::Private(o.commitments(&ids));
    t.seal();
    t.sign(&KeyPair::from_secret(&[9; 32]).expect("key"));
    let rep = check(&m, &t);
    assert!(matches!(rep.findings.first(), Some(Divergence::Token { step: 4, .. })), "{}", rep.verdict());
    // A signature that is not the receipt's is named, and re-execution still runs.
    let mut t = r.clone();
    t.signature.as_mut().expect("signed").value[10] ^= 1;
    let rep = check(&m, &t);
    assert_eq!(rep.findings, vec![Divergence::Signature { what: "value" }]);
    assert!(rep.reexecuted && rep.steps_matched == 6 && rep.signer.is_none(), "{rep:?}");
    // A keyed layer digest: with the trace, named by step and layer; without, by step.
    let mut t = r.clone();
    let trace = t.trace.as_mut().expect("trace");
    trace[2][1][0] ^= 1;
    t.steps[2] = merkle_root(&trace[2]);
    t.seal();
    t.signature = None;
    assert_eq!(check(&m, &t).findings, vec![Divergence::Layer { step: 3, layer: 1 }]);
    t.trace = None;
    assert_eq!(check(&m, &t).findings, vec![Divergence::Step { step: 3 }]);
}

/// What a published private receipt (JSON and binary) does not contain: any 8 characters of
/// the prompt or the output, the prompt's or the output's token ids, or any value computed
/// from the prompt without the salt (the public receipt of the same generation, its layer
/// digests, hashes of the texts). A guess of the prompt and output, right to the letter,
/// cannot be confirmed without the salt; with it, it can.
#[test]
fn a_private_receipt_reveals_nothing_without_the_salt() {
    let m = load(tiny_bytes());
    let private = signed(&m, true);
    let public = signed(&m, false);
    let o = private.opening.clone().expect("opening");
    assert_eq!(o.tokens, p(&public).tokens, "the same generation");
    assert!(o.output.len() >= 8, "output {:?} too short for the test", o.output);
    let json = private.sealed().to_json().expect("json");
    let bin = private.to_bytes().expect("binary");
    let Prompt::Text(prompt) = &o.prompt else { panic!("a text prompt") };
    for text in [prompt.as_str(), o.output.as_str()] {
        let chars: Vec<char> = text.chars().collect();
        for w in chars.windows(8) {
            let w: String = w.iter().collect();
            assert!(!json.contains(&w), "the JSON contains {w:?}");
            assert!(!bin.windows(w.len()).any(|b| b == w.as_bytes()), "the binary form contains {w:?}");
        }
    }
    let v: Value = serde_json::from_str(&json).expect("json");
    for field in ["prompt", "prompt_ids", "tokens", "output"] {
        assert!(v.get(field).is_none(), "the JSON has {field}");
    }
    let le = |ids: &[u32]| ids.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
    for (what, ids) in [("prompt ids", p(&public).prompt_ids.clone()), ("tokens", o.tokens.clone())] {
        let b = le(&ids);
        assert!(!bin.windows(b.len()).any(|w| w == b), "the binary form holds the {what}");
        assert!(
            !json.contains(&ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")),
            "the JSON lists the {what}"
        );
    }
    // Values anyone can compute from a guessed prompt (and output) without the salt.
    let c = public.chain();
    let mut guessable: Vec<[u8; 32]> =
        vec![c.prompt, c.c0, c.final_hash, public.chain, sha256(prompt.as_bytes()), sha256(o.output.as_bytes())];
    guessable.extend(&c.steps);
    guessable.extend(&public.steps);
    guessable.extend(public.trace.as_ref().expect("trace").iter().flatten());
    for g in &guessable {
        assert!(!bin.windows(32).any(|w| w == g), "the binary form holds {}", hex(g));
        assert!(!json.contains(&hex(g)), "the JSON holds {}", hex(g));
        assert!(!private.steps.contains(g), "a step value is {}", hex(g));
    }
    // The guess, right to the letter, with any salt but the receipt's, gives other commitments.
    let ids = p(&public).prompt_ids.clone();
    let edgeproof::receipt::Body::Private(committed) = &private.body else { panic!("private") };
    for salt in [[0u8; 32], [0x5b; 32], edgeproof::receipt::random_salt().expect("salt")] {
        let guess = Opening { salt, ..o.clone() };
        let k = guess.commitments(&ids);
        assert!(k.prompt != committed.prompt && k.output != committed.output);
        let d = keyed_digests(&salt, &public.trace.as_ref().expect("trace")[0]);
        assert_ne!(merkle_root(&d), private.steps[0]);
    }
    assert_eq!(&o.commitments(&ids), committed, "with the salt the guess is confirmed");
}

/// The trace sidecar round-trips; a trace of another receipt, or a cut one, is refused.
#[test]
fn traces_round_trip_and_must_match() {
    let m = load(tiny_bytes());
    let r = signed(&m, false);
    let trace = r.trace.clone().expect("trace");
    let bytes = trace_to_bytes(&trace);
    assert_eq!(bytes.len(), 20 + 6 * m.model.cfg.n_layer * 32);
    assert_eq!(trace_from_bytes(&bytes).expect("parse"), trace);
    for n in 0..bytes.len() {
        assert_eq!(trace_from_bytes(&bytes[..n]).err().map(|e| e.code()), Some("BAD_RECEIPT"), "cut at {n}");
    }
    let mut published = r.sealed();
    published.attach_trace(trace.clone()).expect("its own trace");
    let mut other = trace.clone();
    other[5][0][0] ^= 1;
    let err = r.sealed().attach_trace(other).expect_err("another trace");
    assert_eq!(err.code(), "BAD_RECEIPT");
    assert!(err.to_string().contains("step 6"), "{err}");
    assert_eq!(r.sealed().attach_trace(trace[..5].to_vec()).err().map(|e| e.code()), Some("BAD_RECEIPT"));
}

/// A key file is a private JWK (as WebCrypto exports one): it round-trips; a public-only key,
/// another curve or mismatched coordinates are typed errors.
#[test]
fn key_files_round_trip() {
    let k = KeyPair::generate().expect("key");
    let jwk = k.to_jwk();
    let back = KeyPair::from_jwk(&jwk).expect("parse");
    assert_eq!(back.public_key(), k.public_key());
    assert_eq!(k.fingerprint().len(), 16);
    let mut v: Value = serde_json::from_str(&jwk).expect("json");
    let code = |v: &Value| KeyPair::from_jwk(&v.to_string()).err().map(|e| e.code());
    let d = v.as_object_mut().expect("object").remove("d").expect("d");
    assert_eq!(code(&v), Some("INVALID_ARGUMENT"));
    v["d"] = d;
    v["crv"] = "P-384".into();
    assert_eq!(code(&v), Some("INVALID_ARGUMENT"));
    v["crv"] = "P-256".into();
    v["x"] = serde_json::from_str::<Value>(&KeyPair::generate().expect("key").to_jwk()).expect("json")["x"].clone();
    assert_eq!(code(&v), Some("INVALID_ARGUMENT"));
    assert_ne!(KeyPair::generate().expect("key").public_key(), k.public_key());
}

/// The receipt fuzzer's seeds (`fuzz/seeds_receipt/`): the test vectors' receipts in both
/// forms, the trace and the opening, and the v1 vectors' receipt (`EDGEPROOF_WRITE_SEEDS=1`
/// rewrites them).
#[test]
fn receipt_fuzz_seeds_are_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("tests/data/receipt_v2.json")).expect("vectors"))
            .expect("parse vectors");
    let v1: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("tests/data/receipt_tiny.json")).expect("v1"))
            .expect("parse v1 vectors");
    let unhex = |s: &Value| hex::decode(s.as_str().expect("hex")).expect("hex");
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("public.bin", unhex(&v["public"]["binary"])),
        ("private.bin", unhex(&v["private"]["binary"])),
        ("public.json", v["public"]["receipt"].to_string().into_bytes()),
        ("private.json", v["private"]["receipt"].to_string().into_bytes()),
        ("trace.bin", unhex(&v["private"]["trace"])),
        ("opening.json", v["private"]["opening"].to_string().into_bytes()),
        ("v1.json", v1["receipt"].to_string().into_bytes()),
    ];
    let dir = path.join("fuzz/seeds_receipt");
    for (name, seed) in seeds {
        assert!(seed.len() <= 8192, "{name}: the fuzzer runs with -max_len=8192");
        let file = dir.join(name);
        if std::env::var_os("EDGEPROOF_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(&file, &seed).expect("write seed");
        }
        let committed = std::fs::read(&file).unwrap_or_default();
        assert!(committed == seed, "{} is stale: rerun this test with EDGEPROOF_WRITE_SEEDS=1", file.display());
    }
}
