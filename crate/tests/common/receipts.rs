//! Helpers of the receipt tests: the tiny model (SmolLM2's vocabulary), generation with a
//! receipt, verification, and edits of a receipt's public fields.
#![allow(dead_code)] // Each receipt test crate uses its own share.

use edgeproof::engine::ExactModel;
use edgeproof::gguf::{Gguf, Metadata};
use edgeproof::model::Arch;
use edgeproof::receipt::{generate, verify, Divergence, ModelCommitment, Prompt, Public, Receipt, Report, Request};
use edgeproof::sampling::SamplingParams;
use edgeproof::tiny::tiny_model;
use edgeproof::tokenizer::Tokenizer;

pub fn tiny_bytes() -> Vec<u8> {
    tiny_bytes_with(|_| {})
}

/// The tiny model with its tokenizer metadata (SmolLM2's) edited.
pub fn tiny_bytes_with(edit: impl FnOnce(&mut Metadata)) -> Vec<u8> {
    let src = std::fs::read(super::common::model_path("smollm2")).expect("read SmolLM2 (tokenizer source)");
    let mut meta = edgeproof::gguf::parse_header(&src).expect("parse SmolLM2 header").metadata;
    edit(&mut meta);
    tiny_model(Arch::Llama, &meta, 7).expect("build tiny model")
}

pub struct Loaded {
    pub gguf: Gguf,
    pub tok: Tokenizer,
    pub model: std::rc::Rc<ExactModel>,
    pub commitment: ModelCommitment,
}

pub fn load(bytes: Vec<u8>) -> Loaded {
    let gguf = Gguf::from_bytes(bytes).expect("parse");
    let tok = Tokenizer::from_metadata(gguf.metadata()).expect("tokenizer");
    let model = ExactModel::load(&gguf).expect("model");
    let commitment = ModelCommitment::of(&gguf, |_| {}).expect("commitment");
    Loaded { gguf, tok, model, commitment }
}

/// A receipt with its trace (and opening, when private) attached.
pub fn make(m: &Loaded, req: &Request) -> Receipt {
    let mut s = m.model.session().expect("session");
    generate(&mut s, &m.gguf, &m.tok, &m.commitment, req, |_| Ok(true)).expect("generate")
}

/// Verify `r` with whatever trace and opening it carries.
pub fn check(m: &Loaded, r: &Receipt) -> Report {
    let mut s = m.model.session().expect("session");
    verify(r, &m.gguf, &m.tok, Some(&m.commitment), &mut s, |_, _| {}).expect("verify")
}

pub fn seeded(prompt: Prompt, max_tokens: u32, stop: &[&str]) -> Request {
    Request {
        prompt,
        params: SamplingParams::new(0.8, 40, 0.95, 1234).expect("params"),
        max_tokens,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        salt: None,
    }
}

pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A public receipt's prompt, ids, tokens and output.
pub fn p(r: &Receipt) -> &Public {
    r.public().expect("a public receipt")
}

pub fn pm(r: &mut Receipt) -> &mut Public {
    r.public_mut().expect("a public receipt")
}

pub fn assert_diverges(m: &Loaded, r: &Receipt, what: &str, want: impl Fn(&Divergence) -> bool) {
    let rep = check(m, r);
    assert!(!rep.verified(), "{what}: tampered receipt verified");
    assert!(rep.findings.iter().any(&want), "{what}: findings {:?}", rep.findings);
    assert!(rep.verdict().starts_with("NOT verified"), "{what}: {}", rep.verdict());
}
