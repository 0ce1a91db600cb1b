//! Receipts (`docs/RECEIPT.md`): a domain-separated SHA-256 hash chain over the numerics,
//! the model, the prompt, the sampling settings and every generated token with the root of
//! the per-layer digests of its residual stream; public, or private (salted commitments and
//! an opening); optionally signed. `wire` holds the JSON and binary forms, `sign` the
//! signatures, `verify` the verifier, which re-executes a receipt as one teacher-forced pass
//! and names the first thing that diverges.

mod sign;
mod verify;
mod wire;

pub use sign::{fingerprint, random_salt, signing_message, KeyPair, Signature};
pub use verify::{hash_findings, verify, verify_async, Divergence, Report};
pub use wire::{trace_from_bytes, trace_to_bytes};

use crate::backend::exact::{residual_digest, IMat};
use crate::engine::{block_on, Backend, Finish, Generation, Session};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Metadata};
use crate::numerics::numerics_digest;
use crate::sampling::SamplingParams;
use crate::tokenizer::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The receipt format this build writes (it reads and verifies 1 too).
pub const FORMAT_VERSION: u32 = 2;
/// The only mode with receipts: the integer-only numerics every backend reproduces.
pub const MODE_EXACT: &str = "exact";

pub type Hash = [u8; 32];

/// The field encoding shared by the hashes and the binary form: integers little-endian, a
/// 32-byte hash as its raw bytes, a byte string (text is UTF-8) as its length in u64 LE then
/// the bytes.
pub trait Encode: Sized {
    fn raw(self, b: &[u8]) -> Self;
    fn u32(self, v: u32) -> Self {
        self.raw(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> Self {
        self.raw(&v.to_le_bytes())
    }
    fn hash(self, h: &Hash) -> Self {
        self.raw(h)
    }
    fn bytes(self, b: &[u8]) -> Self {
        self.u64(b.len() as u64).raw(b)
    }
    /// A list of u32 (token ids): its length in u64 LE, then each.
    fn ids(self, ids: &[u32]) -> Self {
        ids.iter().fold(self.u64(ids.len() as u64), |e, &t| e.u32(t))
    }
}

/// Domain-separated SHA-256: the tag's length (u32 LE) and bytes, then the fields in order
/// ([`Encode`]).
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new(tag: &str) -> Hasher {
        let mut h = Sha256::new();
        h.update((tag.len() as u32).to_le_bytes());
        h.update(tag.as_bytes());
        Hasher(h)
    }
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

impl Encode for Hasher {
    fn raw(mut self, b: &[u8]) -> Hasher {
        self.0.update(b);
        self
    }
}

pub fn sha256(b: &[u8]) -> Hash {
    Sha256::digest(b).into()
}

/// Merkle root in the RFC 6962 shape (the left subtree holds the largest power of two below
/// n leaves), with tagged leaf and node hashes so the two can never be confused.
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hasher::new("edgeproof merkle empty").finish(),
        1 => Hasher::new("edgeproof merkle leaf").hash(&leaves[0]).finish(),
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            let (l, r) = (merkle_root(&leaves[..k]), merkle_root(&leaves[k..]));
            Hasher::new("edgeproof merkle node").hash(&l).hash(&r).finish()
        }
    }
}

/// Hashes as lowercase hex strings in JSON.
pub(crate) mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hash(&s).map_err(serde::de::Error::custom)
    }
}

pub(crate) fn parse_hash(s: &str) -> std::result::Result<Hash, String> {
    let v = hex::decode(s).map_err(|e| format!("hash {s:?}: {e}"))?;
    v.try_into().map_err(|v: Vec<u8>| format!("hash {s:?}: {} bytes, expected 32", v.len()))
}

/// u64 as a decimal string in JSON: JavaScript numbers hold only 53 bits.
pub(crate) mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What a receipt commits to about the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCommitment {
    /// SHA-256 of the whole GGUF file.
    #[serde(with = "hex32")]
    pub file_sha256: Hash,
    /// Merkle root over the tensors in file order; leaf = H(name, type, shape, H(bytes)).
    #[serde(with = "hex32")]
    pub tensors_root: Hash,
    /// The `tokenizer.*` metadata except the chat template, in file order.
    #[serde(with = "hex32")]
    pub tokenizer: Hash,
    /// The chat template (`tokenizer.chat_template`; absent hashes as absent).
    #[serde(with = "hex32")]
    pub chat_template: Hash,
}

impl ModelCommitment {
    /// Hash the file, every tensor and the tokenizer metadata (reports progress in [0, 1]).
    pub fn of(gguf: &Gguf, mut progress: impl FnMut(f32)) -> Result<ModelCommitment> {
        let file = gguf.file_bytes();
        let mut h = Sha256::new();
        for (i, c) in file.chunks(16 << 20).enumerate() {
            h.update(c);
            progress(((i + 1) * (16 << 20)).min(file.len()) as f32 / file.len().max(1) as f32 * 0.5);
        }
        let file_sha256: Hash = h.finalize().into();
        let tensors = &gguf.header.tensors;
        let mut leaves = Vec::with_capacity(tensors.len());
        // Tensors are hashed on rayon's threads (the file's hash is one serial stream), a
        // sixteenth of them at a time, with progress between.
        let per_batch = tensors.len().div_ceil(16).max(1);
        for (b, batch) in tensors.chunks(per_batch).enumerate() {
            let hashed: Vec<Result<Hash>> = batch
                .par_iter()
                .map(|t| {
                    let data = gguf.tensor(&t.name)?.data;
                    let mut leaf = Hasher::new("edgeproof tensor")
                        .bytes(t.name.as_bytes())
                        .u32(t.ty as u32)
                        .u32(t.dims.len() as u32);
                    for &d in &t.dims {
                        leaf = leaf.u64(d);
                    }
                    Ok(leaf.hash(&sha256(data)).finish())
                })
                .collect();
            for leaf in hashed {
                leaves.push(leaf?);
            }
            progress(0.5 + 0.5 * ((b + 1) * per_batch).min(tensors.len()) as f32 / tensors.len() as f32);
        }
        let mut tok = Hasher::new("edgeproof tokenizer");
        let mut template = Hasher::new("edgeproof chat template").u32(0);
        for (k, v) in gguf.metadata().entries() {
            if k == "tokenizer.chat_template" {
                let mut enc = Vec::new();
                crate::gguf::write_value(&mut enc, v);
                template = Hasher::new("edgeproof chat template").u32(1).u32(v.type_id()).bytes(&enc);
            } else if k.starts_with("tokenizer.") {
                let mut enc = Vec::new();
                crate::gguf::write_value(&mut enc, v);
                tok = tok.bytes(k.as_bytes()).u32(v.type_id()).bytes(&enc);
            }
        }
        Ok(ModelCommitment {
            file_sha256,
            tensors_root: merkle_root(&leaves),
            tokenizer: tok.finish(),
            chat_template: template.finish(),
        })
    }
}

/// The prompt: plain text, or chat messages rendered with the model's template (with the
/// generation prompt appended).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Prompt {
    Text(String),
    Messages(Vec<ChatMessage>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl Prompt {
    /// The token ids this prompt gives with the model's tokenizer (and chat template).
    pub fn ids(&self, meta: &Metadata, tok: &Tokenizer) -> Result<Vec<u32>> {
        match self {
            Prompt::Text(t) => tok.encode(t, true, false),
            Prompt::Messages(m) => {
                let msgs: Vec<Message> = m.iter().map(|m| Message::new(&m.role, &m.content)).collect();
                let text = ChatTemplate::from_metadata(meta)?.render(&msgs, true)?;
                tok.encode(&text, true, true)
            }
        }
    }

    /// Kind (u32 0 text, 1 messages), then the text, or the count and each (role, content).
    pub fn encode<E: Encode>(&self, e: E) -> E {
        match self {
            Prompt::Text(t) => e.u32(0).bytes(t.as_bytes()),
            Prompt::Messages(m) => m
                .iter()
                .fold(e.u32(1).u64(m.len() as u64), |e, m| e.bytes(m.role.as_bytes()).bytes(m.content.as_bytes())),
        }
    }
}

/// Sampling and stopping, as committed (fixed point, as [`SamplingParams`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub temperature_q16: u32,
    pub top_k: u32,
    pub top_p_q16: u32,
    #[serde(with = "u64_string")]
    pub seed: u64,
    pub max_tokens: u32,
    /// Stop strings: generation ends when the output text contains one (it is cut there).
    pub stop: Vec<String>,
    /// End-of-generation token ids.
    pub eog: Vec<u32>,
}

impl Sampling {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature_q16: self.temperature_q16,
            top_k: self.top_k,
            top_p_q16: self.top_p_q16,
            seed: self.seed,
        }
    }

    /// Temperature, top-k, top-p, seed, max_tokens, the stop strings, the EOG ids.
    pub fn encode<E: Encode>(&self, e: E) -> E {
        let e = e.u32(self.temperature_q16).u32(self.top_k).u32(self.top_p_q16).u64(self.seed).u32(self.max_tokens);
        let e = self.stop.iter().fold(e.u64(self.stop.len() as u64), |e, s| e.bytes(s.as_bytes()));
        e.ids(&self.eog)
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The last token is an end-of-generation id (not part of the output text).
    Eog,
    /// `max_tokens` tokens, or the context is full.
    Length,
    /// The output text reached a stop string.
    Stop,
    /// The generation was ended by its caller (a stop button, an `AbortSignal`).
    Aborted,
}

impl From<Finish> for FinishReason {
    fn from(f: Finish) -> FinishReason {
        match f {
            Finish::Eog(_) => FinishReason::Eog,
            Finish::Length => FinishReason::Length,
            Finish::Stop => FinishReason::Stop,
            Finish::Aborted => FinishReason::Aborted,
        }
    }
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eog => "eog",
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
            FinishReason::Aborted => "aborted",
        }
    }

    /// The binary form's code.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(c: u8) -> Option<FinishReason> {
        [FinishReason::Eog, FinishReason::Length, FinishReason::Stop, FinishReason::Aborted].get(c as usize).copied()
    }
}

/// Outside the hashed core: who made the receipt, where, how fast.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub engine: String,
    pub backend: String,
    pub adapter: Option<String>,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// What a public receipt carries in the clear; what a private receipt's opening reveals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Public {
    pub prompt: Prompt,
    /// The prompt's token ids (recomputed from the prompt when verifying).
    pub prompt_ids: Vec<u32>,
    /// Every sampled token, the end-of-generation id included.
    pub tokens: Vec<u32>,
    /// The decoded text as streamed, cut at a stop string.
    pub output: String,
}

/// A private receipt's salted commitments, in place of the prompt and the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitments {
    /// `H("edgeproof private prompt", salt, prompt section)`.
    pub prompt: Hash,
    /// `H("edgeproof private output", salt, tokens, output)`.
    pub output: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Public(Public),
    Private(Commitments),
}

/// What opens a private receipt to a chosen verifier: the salt, the prompt, the tokens and
/// the output. Kept apart from the receipt; publishing it publishes the conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    pub salt: Hash,
    pub prompt: Prompt,
    pub tokens: Vec<u32>,
    pub output: String,
}

/// A receipt: the sealed core (everything but `signature`, `meta` and the two sidecars),
/// `chain` (c_T) and `final`, then who signed it and [`Meta`].
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    /// 2 (this build writes), or 1 (read and verified).
    pub version: u32,
    pub mode: String,
    pub numerics: Hash,
    pub model: ModelCommitment,
    pub sampling: Sampling,
    pub body: Body,
    /// Per generated token: the Merkle root of the layer digests of the forward pass that
    /// produced it (each digest keyed by the salt in a private receipt).
    pub steps: Vec<Hash>,
    pub finish: FinishReason,
    /// The section hashes and c_0 (derived; they locate an edit made without resealing).
    pub sections: Sections,
    pub chain: Hash,
    pub final_hash: Hash,
    /// A signature over the sealed core (outside it).
    pub signature: Option<Signature>,
    pub meta: Meta,
    /// Sidecar, not sealed: per step, the layer digests under `steps` (the trace), which let
    /// a verifier name the diverging layer. A v1 receipt carries it inline.
    pub trace: Option<Vec<Vec<Hash>>>,
    /// Sidecar, not sealed: a private receipt's opening, when known.
    pub opening: Option<Opening>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sections {
    #[serde(with = "hex32")]
    pub model: Hash,
    #[serde(with = "hex32")]
    pub prompt: Hash,
    #[serde(with = "hex32")]
    pub sampling: Hash,
    #[serde(with = "hex32")]
    pub c0: Hash,
}

/// The hash chain of a receipt's core, as the receipt's fields give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    /// H(model commitment).
    pub model: Hash,
    /// H(prompt, prompt ids), or a private receipt's prompt commitment.
    pub prompt: Hash,
    /// H(sampling).
    pub sampling: Hash,
    /// c_0 = H(version, mode, numerics, model, prompt, sampling).
    pub c0: Hash,
    /// c_1..c_T.
    pub steps: Vec<Hash>,
    /// H(c_T, finish reason, H(output) or the output commitment).
    pub final_hash: Hash,
}

/// `H("edgeproof prompt", prompt, ids)`: a public receipt's prompt section.
pub fn prompt_section(prompt: &Prompt, ids: &[u32]) -> Hash {
    prompt.encode(Hasher::new("edgeproof prompt")).ids(ids).finish()
}

/// A private receipt's layer digests: each keyed by the salt, so that no one without it can
/// recompute them from a guessed prompt.
pub fn keyed_digests(salt: &Hash, digests: &[Hash]) -> Vec<Hash> {
    digests.iter().map(|d| Hasher::new("edgeproof private layer").hash(salt).hash(d).finish()).collect()
}

impl Opening {
    /// The commitments a private receipt holds for this opening (`prompt_ids`: the prompt's).
    pub fn commitments(&self, prompt_ids: &[u32]) -> Commitments {
        Commitments {
            prompt: Hasher::new("edgeproof private prompt")
                .hash(&self.salt)
                .hash(&prompt_section(&self.prompt, prompt_ids))
                .finish(),
            output: Hasher::new("edgeproof private output")
                .hash(&self.salt)
                .ids(&self.tokens)
                .bytes(self.output.as_bytes())
                .finish(),
        }
    }
}

impl Receipt {
    /// The public fields, or `None` for a private receipt.
    pub fn public(&self) -> Option<&Public> {
        match &self.body {
            Body::Public(p) => Some(p),
            Body::Private(_) => None,
        }
    }

    pub fn public_mut(&mut self) -> Option<&mut Public> {
        match &mut self.body {
            Body::Public(p) => Some(p),
            Body::Private(_) => None,
        }
    }

    pub fn is_private(&self) -> bool {
        matches!(self.body, Body::Private(_))
    }

    /// Recompute every hash from the fields.
    pub fn chain(&self) -> Chain {
        let m = &self.model;
        let model = Hasher::new("edgeproof model")
            .hash(&m.file_sha256)
            .hash(&m.tensors_root)
            .hash(&m.tokenizer)
            .hash(&m.chat_template)
            .finish();
        let prompt = match &self.body {
            Body::Public(p) => prompt_section(&p.prompt, &p.prompt_ids),
            Body::Private(c) => c.prompt,
        };
        let sampling = self.sampling.encode(Hasher::new("edgeproof sampling")).finish();
        let c0 = Hasher::new("edgeproof receipt c0")
            .u32(self.version)
            .bytes(self.mode.as_bytes())
            .hash(&self.numerics)
            .hash(&model)
            .hash(&prompt)
            .hash(&sampling)
            .finish();
        let mut c = c0;
        let mut steps = Vec::with_capacity(self.steps.len());
        match &self.body {
            Body::Public(p) => {
                // A missing step value hashes as zeros: parsing rejects such receipts, and
                // re-execution names the step.
                for (t, &tok) in p.tokens.iter().enumerate() {
                    let v = self.steps.get(t).copied().unwrap_or([0; 32]);
                    c = Hasher::new("edgeproof receipt step").hash(&c).u32(t as u32 + 1).u32(tok).hash(&v).finish();
                    steps.push(c);
                }
            }
            Body::Private(_) => {
                for (t, v) in self.steps.iter().enumerate() {
                    c = Hasher::new("edgeproof receipt private step").hash(&c).u32(t as u32 + 1).hash(v).finish();
                    steps.push(c);
                }
            }
        }
        let output = match &self.body {
            Body::Public(p) => sha256(p.output.as_bytes()),
            Body::Private(k) => k.output,
        };
        let final_hash = Hasher::new("edgeproof receipt final")
            .hash(&c)
            .bytes(self.finish.as_str().as_bytes())
            .hash(&output)
            .finish();
        Chain { model, prompt, sampling, c0, steps, final_hash }
    }

    /// Recompute `sections`, `chain` and `final` from the fields (after building or editing a
    /// receipt). A signature over the old core no longer verifies.
    pub fn seal(&mut self) {
        let c = self.chain();
        self.sections = Sections { model: c.model, prompt: c.prompt, sampling: c.sampling, c0: c.c0 };
        self.chain = *c.steps.last().unwrap_or(&c.c0);
        self.final_hash = c.final_hash;
    }

    /// The receipt as published: without the trace and the opening.
    pub fn sealed(&self) -> Receipt {
        Receipt { trace: None, opening: None, ..self.clone() }
    }

    /// Attach a trace (per step, the layer digests) after checking that each step's digests
    /// give the receipt's step value.
    pub fn attach_trace(&mut self, trace: Vec<Vec<Hash>>) -> Result<()> {
        if trace.len() != self.steps.len() {
            return Err(Error::BadReceipt(format!(
                "the trace has {} steps, the receipt {}",
                trace.len(),
                self.steps.len()
            )));
        }
        if let Some(t) = (0..trace.len()).find(|&t| merkle_root(&trace[t]) != self.steps[t]) {
            return Err(Error::BadReceipt(format!("the trace's step {} does not match the receipt", t + 1)));
        }
        self.trace = Some(trace);
        Ok(())
    }

    /// The same generation as a version 1 receipt (public, with its trace; unsigned).
    pub fn to_v1(&self) -> Result<Receipt> {
        match (&self.body, &self.trace) {
            (Body::Public(_), Some(_)) => {
                let mut r = Receipt { version: 1, signature: None, opening: None, ..self.clone() };
                r.seal();
                Ok(r)
            }
            _ => Err(Error::InvalidArgument("a version 1 receipt needs a public receipt and its trace".into())),
        }
    }
}

/// Milliseconds from a fixed origin (`Instant` does not exist on wasm32-unknown-unknown).
fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    return js_sys::Date::now();
    #[cfg(not(target_arch = "wasm32"))]
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// A future a [`Recording`] engine returns (boxed: the trait is used as `dyn`).
pub type Fut<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>;

/// An engine that can record its residual stream (per block, per forward pass): what
/// generation with a receipt and the verifier run on, blocking natively or async in the
/// browser.
pub trait Recording: crate::engine::Engine {
    /// Whether it runs the exact numerics (the only ones with receipts).
    fn exact(&self) -> bool;
    fn record_residuals(&mut self);
    /// [`Engine::eval`] and the residual streams recorded since the last take.
    fn eval_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        rows: std::ops::Range<usize>,
    ) -> Fut<'a, (Vec<f32>, Vec<IMat>)>;
    /// [`Engine::next_token`] and, with `residuals`, the residual streams recorded since the
    /// last take (one readback on the GPU).
    fn next_token_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        params: &'a SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Fut<'a, (u32, Vec<IMat>)>;
    /// Where it runs, for the receipt's [`Meta`]: backend and adapter.
    fn backend(&self) -> (String, Option<String>);
}

impl<B: Backend> Recording for Session<B> {
    fn exact(&self) -> bool {
        B::EXACT
    }
    fn record_residuals(&mut self) {
        Session::record_residuals(self)
    }
    fn eval_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        rows: std::ops::Range<usize>,
    ) -> Fut<'a, (Vec<f32>, Vec<IMat>)> {
        Box::pin(async move {
            let logits = self.eval_async(ids, pos0, rows).await?;
            Ok((logits, self.take_residuals_async().await?))
        })
    }
    fn next_token_recorded<'a>(
        &'a mut self,
        ids: &'a [u32],
        pos0: usize,
        params: &'a SamplingParams,
        step: u64,
        residuals: bool,
    ) -> Fut<'a, (u32, Vec<IMat>)> {
        Box::pin(self.next_token_async(ids, pos0, params, step, residuals))
    }
    fn backend(&self) -> (String, Option<String>) {
        let (b, a) = self.describe();
        (b.into(), a)
    }
}

/// The per-layer digests of one forward pass's residual streams (rows at positions `pos0..`).
pub fn layer_digests(res: &[IMat], pos0: usize) -> Vec<Hash> {
    res.iter().enumerate().map(|(l, x)| residual_digest(l, pos0, x, 0..x.rows)).collect()
}

/// The residual rows of every position in a session's KV cache, per layer: a chat's next
/// turn reuses the cache and still commits to the digests of its whole prompt (which batched
/// and stepwise evaluation give alike).
#[derive(Default)]
pub struct ResidualHistory {
    layers: Vec<IMat>,
}

impl ResidualHistory {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |x| x.rows)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep positions `0..n`.
    pub fn truncate(&mut self, n: usize) {
        for x in &mut self.layers {
            let n = n.min(x.rows);
            x.m.truncate(n * x.cols);
            x.e.truncate(n);
            x.rows = n;
        }
    }

    /// Append one forward pass's rows (positions `len()..`).
    pub fn append(&mut self, res: &[IMat]) -> Result<()> {
        if self.layers.is_empty() {
            self.layers = res.iter().map(|x| IMat { rows: 0, cols: x.cols, m: Vec::new(), e: Vec::new() }).collect();
        }
        if res.len() != self.layers.len() {
            return Err(Error::InvalidArgument(format!(
                "{} residual streams, expected {}",
                res.len(),
                self.layers.len()
            )));
        }
        for (h, x) in self.layers.iter_mut().zip(res) {
            h.m.extend_from_slice(&x.m);
            h.e.extend_from_slice(&x.e);
            h.rows += x.rows;
        }
        Ok(())
    }

    /// The digests of positions `from..len()` as one forward pass's.
    pub fn digests(&self, from: usize) -> Vec<Hash> {
        self.layers.iter().enumerate().map(|(l, x)| residual_digest(l, from, x, from..x.rows)).collect()
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: Prompt,
    pub params: SamplingParams,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// `Some(salt)`: a private receipt, with commitments keyed by this salt (use
    /// [`random_salt`]) and an opening.
    pub salt: Option<Hash>,
}

/// The sealed receipt of an ended generation `g` of `req` (`layers`: per token, the digests of
/// the forward pass that produced it), with its trace and, when `req.salt` is set, its opening.
pub fn seal(
    req: &Request,
    model: &ModelCommitment,
    eog: &[u32],
    g: &Generation,
    layers: Vec<Vec<Hash>>,
    meta: Meta,
) -> Result<Receipt> {
    let finish = g
        .stop
        .finish
        .map(FinishReason::from)
        .ok_or_else(|| Error::InvalidArgument("a receipt of a generation that has not ended".into()))?;
    let public = Public {
        prompt: req.prompt.clone(),
        prompt_ids: g.prompt.clone(),
        tokens: g.tokens.clone(),
        output: g.stop.text.clone(),
    };
    // A private receipt publishes no timings (they hint at the prompt's length) or adapter.
    let meta = match req.salt {
        Some(_) => Meta { engine: meta.engine, backend: meta.backend, ..Meta::default() },
        None => meta,
    };
    let (body, trace, opening) = match req.salt {
        None => (Body::Public(public), layers, None),
        Some(salt) => {
            let opening = Opening { salt, prompt: public.prompt, tokens: public.tokens, output: public.output };
            let trace = layers.iter().map(|l| keyed_digests(&salt, l)).collect();
            (Body::Private(opening.commitments(&public.prompt_ids)), trace, Some(opening))
        }
    };
    let mut r = Receipt {
        version: FORMAT_VERSION,
        mode: MODE_EXACT.into(),
        numerics: numerics_digest(),
        model: model.clone(),
        sampling: Sampling {
            temperature_q16: req.params.temperature_q16,
            top_k: req.params.top_k,
            top_p_q16: req.params.top_p_q16,
            seed: req.params.seed,
            max_tokens: req.max_tokens,
            stop: req.stop.clone(),
            eog: eog.to_vec(),
        },
        body,
        steps: trace.iter().map(|l: &Vec<Hash>| merkle_root(l)).collect(),
        finish,
        sections: Sections::default(),
        chain: [0; 32],
        final_hash: [0; 32],
        signature: None,
        meta,
        trace: Some(trace),
        opening,
    };
    r.seal();
    Ok(r)
}

/// The engine's build, for the receipt's [`Meta`].
pub fn engine_name() -> String {
    format!("edgeproof {}", env!("CARGO_PKG_VERSION"))
}

/// Generate on `engine` (a fresh session of `gguf`'s model), streaming text to `on_text`,
/// and return the sealed receipt. `on_text` returns whether to go on: `false` ends the
/// generation with finish `aborted`.
pub fn generate(
    engine: &mut dyn Recording,
    gguf: &Gguf,
    tok: &Tokenizer,
    model: &ModelCommitment,
    req: &Request,
    mut on_text: impl FnMut(&str) -> Result<bool>,
) -> Result<Receipt> {
    if !engine.exact() {
        return Err(Error::InvalidArgument("receipts need the exact numerics".into()));
    }
    let ids = req.prompt.ids(gguf.metadata(), tok)?;
    let mut g =
        Generation::new(ids, 0, engine.config(), req.max_tokens as usize, req.params, &req.stop, tok.eog_ids())?;
    engine.record_residuals();
    let (backend, adapter) = engine.backend();
    let start = now_ms();
    let mut first = None;
    let mut layers = Vec::new();
    while !g.done() {
        let (ids, pos0, step) = g.input();
        let (t, res) = block_on(engine.next_token_recorded(ids, pos0, &g.params, step, true))??;
        layers.push(layer_digests(&res, pos0));
        first.get_or_insert_with(now_ms);
        if !on_text(&g.push(Some(tok), t)?)? {
            on_text(&g.stop.abort())?;
        }
    }
    let end = now_ms();
    let first = first.unwrap_or(end);
    let meta = Meta { engine: engine_name(), backend, adapter, prefill_ms: first - start, decode_ms: end - first };
    seal(req, model, tok.eog_ids(), &g, layers, meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed v2 test vectors check out in this build (natively, and in wasm32 under
    /// Node: `scripts/test-wasm.sh`): both forms parse to one receipt, its hashes and
    /// signature are the vectors', its trace attaches, and the private receipt's commitments
    /// and keyed digests follow from its opening and the public receipt's values.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn test_vectors_check_out_here() {
        let v: serde_json::Value = serde_json::from_str(include_str!("../../tests/data/receipt_v2.json")).unwrap();
        let unhex = |s: &serde_json::Value| hex::decode(s.as_str().unwrap()).unwrap();
        let mut traces = Vec::new();
        for kind in ["public", "private"] {
            let (v, h) = (&v[kind], &v[kind]["hashes"]);
            let mut r = Receipt::from_json(&v["receipt"].to_string()).unwrap();
            let binary = unhex(&v["binary"]);
            assert_eq!(Receipt::from_bytes(&binary).unwrap(), r, "{kind}");
            assert_eq!(r.to_bytes().unwrap(), binary, "{kind}");
            let c = r.chain();
            assert_eq!(hex::encode(c.c0), h["c0"], "{kind}");
            assert_eq!(hex::encode(c.final_hash), h["final"], "{kind}");
            let chain: Vec<String> = c.steps.iter().map(hex::encode).collect();
            assert_eq!(serde_json::json!(chain), h["chain"], "{kind}");
            assert_eq!(hex::encode(signing_message(&c.final_hash)), h["signing_message"], "{kind}");
            assert_eq!(r.check_signature(), Some(Ok(v["key"]["fingerprint"].as_str().unwrap().to_string())));
            let trace = trace_from_bytes(&unhex(&v["trace"])).unwrap();
            r.attach_trace(trace.clone()).unwrap();
            traces.push((r, trace));
        }
        let (public, private) = (&traces[0], &traces[1]);
        let o = Opening::from_json(&v["private"]["opening"].to_string()).unwrap();
        let ids = &public.0.public().unwrap().prompt_ids;
        assert_eq!(Body::Private(o.commitments(ids)), private.0.body);
        for (d, keyed) in public.1.iter().zip(&private.1) {
            assert_eq!(&keyed_digests(&o.salt, d), keyed);
        }
    }

    /// Trace headers whose counts overflow a 32-bit size (wasm32) are errors or empty, never a
    /// panic: no steps with 2^27 layers; 2^32 − 1 layers of one step.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn trace_headers_do_not_overflow() {
        let header = |layers: u32, steps: u64| {
            [&b"EPTR"[..], &2u32.to_le_bytes(), &layers.to_le_bytes(), &steps.to_le_bytes()].concat()
        };
        assert_eq!(trace_from_bytes(&header(1 << 27, 0)).unwrap(), Vec::<Vec<Hash>>::new());
        assert!(trace_from_bytes(&header(u32::MAX, 1)).is_err());
        assert!(trace_from_bytes(&header(0, 3)).is_err());
        assert!(trace_from_bytes(&header(0, 0)).unwrap().is_empty());
    }
}
