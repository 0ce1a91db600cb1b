//! Receipts (`docs/RECEIPT.md`): a domain-separated SHA-256 hash chain over the numerics,
//! the model, the prompt, the sampling settings and every generated token with the per-layer
//! digests of its residual stream; and the verifier, which re-executes a receipt as one
//! teacher-forced pass and names the first thing that diverges.

use crate::backend::exact::{residual_digest, IMat};
use crate::engine::{block_on, Backend, Finish, Generation, Session, StopState};
use crate::error::{Error, Result};
use crate::gguf::{Gguf, Metadata};
use crate::numerics::numerics_digest;
use crate::sampling::{sample, SamplingParams};
use crate::tokenizer::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The receipt format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The only mode with receipts: the integer-only numerics every backend reproduces.
pub const MODE_EXACT: &str = "exact";

pub type Hash = [u8; 32];

/// Domain-separated SHA-256: the tag's length (u32 LE) and bytes, then the fields in order.
/// Integers are little-endian; byte strings carry their length as u64 LE.
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new(tag: &str) -> Hasher {
        let mut h = Sha256::new();
        h.update((tag.len() as u32).to_le_bytes());
        h.update(tag.as_bytes());
        Hasher(h)
    }
    pub fn u32(mut self, v: u32) -> Hasher {
        self.0.update(v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Hasher {
        self.0.update(v.to_le_bytes());
        self
    }
    pub fn hash(mut self, h: &Hash) -> Hasher {
        self.0.update(h);
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Hasher {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
        self
    }
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

fn sha256(b: &[u8]) -> Hash {
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

fn parse_hash(s: &str) -> std::result::Result<Hash, String> {
    let v = hex::decode(s).map_err(|e| format!("hash {s:?}: {e}"))?;
    v.try_into().map_err(|v: Vec<u8>| format!("hash {s:?}: {} bytes, expected 32", v.len()))
}

mod hex32_lists {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<[u8; 32]>], s: S) -> Result<S::Ok, S::Error> {
        let hex: Vec<Vec<String>> = v.iter().map(|l| l.iter().map(hex::encode).collect()).collect();
        serde::Serialize::serialize(&hex, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<[u8; 32]>>, D::Error> {
        let v = Vec::<Vec<String>>::deserialize(d)?;
        v.iter()
            .map(|l| l.iter().map(|h| super::parse_hash(h)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// u64 as a decimal string in JSON: JavaScript numbers hold only 53 bits.
mod u64_string {
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

    fn hash(&self) -> Hasher {
        match self {
            Prompt::Text(t) => Hasher::new("edgeproof prompt").u32(0).bytes(t.as_bytes()),
            Prompt::Messages(m) => m.iter().fold(Hasher::new("edgeproof prompt").u32(1).u64(m.len() as u64), |h, m| {
                h.bytes(m.role.as_bytes()).bytes(m.content.as_bytes())
            }),
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

/// A receipt: the hashed core, then `chain` (c_T) and `final`, then [`Meta`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub version: u32,
    pub mode: String,
    #[serde(with = "hex32")]
    pub numerics: Hash,
    pub model: ModelCommitment,
    pub prompt: Prompt,
    pub prompt_ids: Vec<u32>,
    pub sampling: Sampling,
    /// Every sampled token, the end-of-generation id included.
    pub tokens: Vec<u32>,
    /// Per token: the residual digest of each layer in the forward pass that produced it
    /// (the prompt for the first token, the previous token after that).
    #[serde(with = "hex32_lists")]
    pub layers: Vec<Vec<Hash>>,
    pub finish: FinishReason,
    pub output: String,
    /// The section hashes and c_0 (derived; they locate an edit made without resealing).
    pub sections: Sections,
    #[serde(with = "hex32")]
    pub chain: Hash,
    #[serde(rename = "final", with = "hex32")]
    pub final_hash: Hash,
    pub meta: Meta,
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
    /// H(prompt, prompt ids).
    pub prompt: Hash,
    /// H(sampling).
    pub sampling: Hash,
    /// c_0 = H(version, mode, numerics, model, prompt, sampling).
    pub c0: Hash,
    /// c_1..c_T.
    pub steps: Vec<Hash>,
    /// H(c_T, finish reason, H(output)).
    pub final_hash: Hash,
}

impl Receipt {
    /// Recompute every hash from the fields.
    pub fn chain(&self) -> Chain {
        let m = &self.model;
        let model = Hasher::new("edgeproof model")
            .hash(&m.file_sha256)
            .hash(&m.tensors_root)
            .hash(&m.tokenizer)
            .hash(&m.chat_template)
            .finish();
        let prompt =
            self.prompt_ids.iter().fold(self.prompt.hash().u64(self.prompt_ids.len() as u64), |h, &t| h.u32(t));
        let prompt = prompt.finish();
        let s = &self.sampling;
        let mut sh = Hasher::new("edgeproof sampling")
            .u32(s.temperature_q16)
            .u32(s.top_k)
            .u32(s.top_p_q16)
            .u64(s.seed)
            .u32(s.max_tokens)
            .u64(s.stop.len() as u64);
        for st in &s.stop {
            sh = sh.bytes(st.as_bytes());
        }
        sh = sh.u64(s.eog.len() as u64);
        for &e in &s.eog {
            sh = sh.u32(e);
        }
        let sampling = sh.finish();
        let c0 = Hasher::new("edgeproof receipt c0")
            .u32(self.version)
            .bytes(self.mode.as_bytes())
            .hash(&self.numerics)
            .hash(&model)
            .hash(&prompt)
            .hash(&sampling)
            .finish();
        let mut c = c0;
        let mut steps = Vec::with_capacity(self.tokens.len());
        for (t, &tok) in self.tokens.iter().enumerate() {
            let layers = merkle_root(self.layers.get(t).map(|l| &l[..]).unwrap_or(&[]));
            c = Hasher::new("edgeproof receipt step").hash(&c).u32(t as u32 + 1).u32(tok).hash(&layers).finish();
            steps.push(c);
        }
        let final_hash = Hasher::new("edgeproof receipt final")
            .hash(&c)
            .bytes(self.finish.as_str().as_bytes())
            .hash(&sha256(self.output.as_bytes()))
            .finish();
        Chain { model, prompt, sampling, c0, steps, final_hash }
    }

    /// Recompute `chain` and `final` from the fields (after building or editing a receipt).
    pub fn seal(&mut self) {
        let c = self.chain();
        self.sections = Sections { model: c.model, prompt: c.prompt, sampling: c.sampling, c0: c.c0 };
        self.chain = *c.steps.last().unwrap_or(&c.c0);
        self.final_hash = c.final_hash;
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse and check the shape: version, mode, one layer list per token, all of one length.
    pub fn from_json(s: &str) -> Result<Receipt> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| Error::BadReceipt(e.to_string()))?;
        match v.get("version").and_then(|v| v.as_u64()) {
            Some(1) => {}
            Some(n) => return Err(Error::UnsupportedReceiptVersion(n.min(u32::MAX as u64) as u32)),
            None => return Err(Error::BadReceipt("no numeric \"version\"".into())),
        }
        let r: Receipt = serde_json::from_value(v).map_err(|e| Error::BadReceipt(e.to_string()))?;
        if r.mode != MODE_EXACT {
            return Err(Error::BadReceipt(format!("mode {:?} (only {MODE_EXACT:?} has receipts)", r.mode)));
        }
        if r.layers.len() != r.tokens.len() {
            return Err(Error::BadReceipt(format!("{} layer lists for {} tokens", r.layers.len(), r.tokens.len())));
        }
        if let Some(l) = r.layers.iter().find(|l| l.len() != r.layers[0].len()) {
            return Err(Error::BadReceipt(format!("a step with {} layer digests, not {}", l.len(), r.layers[0].len())));
        }
        if r.prompt_ids.is_empty() {
            return Err(Error::BadReceipt("empty prompt_ids".into()));
        }
        Ok(r)
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
}

/// The sealed receipt of an ended generation `g` of `req` (`layers`: per token, the digests of
/// the forward pass that produced it).
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
    let mut r = Receipt {
        version: FORMAT_VERSION,
        mode: MODE_EXACT.into(),
        numerics: numerics_digest(),
        model: model.clone(),
        prompt: req.prompt.clone(),
        prompt_ids: g.prompt.clone(),
        sampling: Sampling {
            temperature_q16: req.params.temperature_q16,
            top_k: req.params.top_k,
            top_p_q16: req.params.top_p_q16,
            seed: req.params.seed,
            max_tokens: req.max_tokens,
            stop: req.stop.clone(),
            eog: eog.to_vec(),
        },
        tokens: g.tokens.clone(),
        layers,
        finish,
        output: g.stop.text.clone(),
        sections: Sections::default(),
        chain: [0; 32],
        final_hash: [0; 32],
        meta,
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

/// The first thing that does not check out, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// A hash in the receipt does not match the fields it covers (edited without resealing):
    /// `what` is the section (`model`, `prompt`, `sampling`, `header`) or `chain` / `final`.
    Hash { what: &'static str },
    /// A format version or mode this build does not verify.
    Format { what: &'static str },
    /// The receipt was made under other numerics than this build implements.
    Numerics,
    /// The model file given is not the committed one: `field` of the model commitment.
    Model { field: &'static str },
    /// The prompt does not tokenize to the committed ids (first differing index).
    Prompt { index: usize },
    /// Re-execution: the first layer whose residual digest differs, at generation step `step`
    /// (1-based: step 1 is the prompt's forward pass).
    Layer { step: usize, layer: usize },
    /// Re-execution: the sampled token differs at step `step`.
    Token { step: usize, committed: u32, recomputed: u32 },
    /// Generation would have ended otherwise (`recomputed`), or at another token.
    Finish { committed: FinishReason, recomputed: Option<FinishReason>, at: usize },
    /// The output text is not the decoding of the tokens.
    Output,
    /// The sequence does not fit the model's context.
    Context { len: usize, ctx: usize },
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::Hash { what } => write!(f, "the {what} hash does not match the receipt's fields"),
            Divergence::Format { what } => write!(f, "unsupported receipt {what}"),
            Divergence::Numerics => write!(f, "made under other numerics than this build's"),
            Divergence::Model { field } => write!(f, "the model file does not match the committed {field}"),
            Divergence::Prompt { index } => {
                write!(f, "the prompt does not tokenize to the committed ids (index {index})")
            }
            Divergence::Layer { step, layer } => write!(f, "token {step}: layer {layer}'s residual digest differs"),
            Divergence::Token { step, committed, recomputed } => {
                write!(f, "token {step}: committed {committed}, re-execution samples {recomputed}")
            }
            Divergence::Finish { committed, recomputed, at } => write!(
                f,
                "finish: committed {} after {} tokens, re-execution gives {}",
                committed.as_str(),
                at,
                recomputed.map_or("no end", |r| r.as_str())
            ),
            Divergence::Output => write!(f, "the output text is not the decoding of the tokens"),
            Divergence::Context { len, ctx } => write!(f, "{len} tokens exceed the context of {ctx}"),
        }
    }
}

/// The verifier's findings, in the order checked; it verifies when there are none.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Divergence>,
    /// Generation steps whose residual digests and token were re-executed and matched.
    pub steps_matched: usize,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// One line: "verified" or the first divergence.
    pub fn verdict(&self) -> String {
        match self.findings.first() {
            None => format!("verified: {} tokens re-executed bit for bit", self.steps_matched),
            Some(d) => format!("NOT verified: {d}"),
        }
    }
}

/// Verify `r` against the model in `gguf` by re-execution on `engine` (a fresh session of
/// that model). `model` is the model's commitment if already computed. Progress: (phase, 0..1).
pub fn verify(
    r: &Receipt,
    gguf: &Gguf,
    tok: &Tokenizer,
    model: Option<&ModelCommitment>,
    engine: &mut dyn Recording,
    mut progress: impl FnMut(&str, f32),
) -> Result<Report> {
    let own;
    let model = match model {
        Some(m) => m,
        None => {
            own = ModelCommitment::of(gguf, |p| progress("hashing the model", p))?;
            &own
        }
    };
    block_on(verify_async(r, gguf.metadata(), tok, model, engine, &mut |s, p| {
        progress(s, p);
        Ok(())
    }))?
}

/// [`verify`], async (the browser's GPU), with a progress callback that can end it with an
/// error (`ABORTED`).
pub async fn verify_async(
    r: &Receipt,
    meta: &Metadata,
    tok: &Tokenizer,
    m: &ModelCommitment,
    engine: &mut dyn Recording,
    progress: &mut dyn FnMut(&str, f32) -> Result<()>,
) -> Result<Report> {
    let mut rep = Report::default();
    // 1. The receipt's own hashes.
    let c = r.chain();
    let s = &r.sections;
    for (what, want, have) in [
        ("model", c.model, s.model),
        ("prompt", c.prompt, s.prompt),
        ("sampling", c.sampling, s.sampling),
        ("header", c.c0, s.c0),
    ] {
        if want != have {
            rep.findings.push(Divergence::Hash { what });
        }
    }
    if *c.steps.last().unwrap_or(&c.c0) != r.chain {
        rep.findings.push(Divergence::Hash { what: "chain" });
    }
    if c.final_hash != r.final_hash {
        rep.findings.push(Divergence::Hash { what: "final" });
    }
    if r.version != FORMAT_VERSION {
        rep.findings.push(Divergence::Format { what: "version" });
    }
    if r.mode != MODE_EXACT {
        rep.findings.push(Divergence::Format { what: "mode" });
    }
    if !rep.findings.iter().all(|d| matches!(d, Divergence::Hash { .. })) {
        return Ok(rep);
    }
    if r.numerics != numerics_digest() {
        rep.findings.push(Divergence::Numerics);
        return Ok(rep);
    }
    // 2. The model.
    for (field, want, have) in [
        ("file sha256", r.model.file_sha256, m.file_sha256),
        ("tensors root", r.model.tensors_root, m.tensors_root),
        ("tokenizer", r.model.tokenizer, m.tokenizer),
        ("chat template", r.model.chat_template, m.chat_template),
    ] {
        if want != have {
            rep.findings.push(Divergence::Model { field });
        }
    }
    if r.model.file_sha256 != m.file_sha256 {
        return Ok(rep);
    }
    // 3. The prompt.
    let ids = r.prompt.ids(meta, tok)?;
    if ids != r.prompt_ids {
        let index =
            ids.iter().zip(&r.prompt_ids).position(|(a, b)| a != b).unwrap_or(ids.len().min(r.prompt_ids.len()));
        rep.findings.push(Divergence::Prompt { index });
    }
    // 4. Re-execution, teacher-forced: the prompt and the first tokens in one pass, then the
    // rest in chunks (batched and stepwise give the same bits), one logits row per step. Each
    // pass reads every weight once, so fewer passes are faster.
    let (p, n) = (r.prompt_ids.len(), r.tokens.len());
    if p == 0 {
        rep.findings.push(Divergence::Prompt { index: 0 });
        return Ok(rep);
    }
    let ctx = engine.config().ctx_len;
    let seq: Vec<u32> = r.prompt_ids.iter().chain(&r.tokens[..n.saturating_sub(1)]).copied().collect();
    if seq.len() > ctx {
        rep.findings.push(Divergence::Context { len: seq.len(), ctx });
        return Ok(rep);
    }
    let params = r.sampling.params();
    let n_vocab = engine.config().n_vocab;
    engine.record_residuals();
    const CHUNK: usize = 64;
    let mut a = 0;
    let mut step = 0;
    while step < n {
        let b = if a == 0 { (p + CHUNK).min(seq.len()) } else { (a + CHUNK).min(seq.len()) };
        // Logits from the prompt's last row on, or of every row of a chunk.
        let first = if a == 0 { p - 1 } else { 0 };
        let (logits, res) = engine.eval_recorded(&seq[a..b], a, first..b - a).await?;
        // Rows of this pass that produce a token, and the residual rows each commits to: the
        // whole prompt for the first step, then one row each.
        let rows: Vec<std::ops::Range<usize>> = if a == 0 {
            std::iter::once(0..p).chain((p..b).map(|i| i..i + 1)).collect()
        } else {
            (0..b - a).map(|i| i..i + 1).collect()
        };
        for rr in rows {
            let pos = a + rr.start;
            let digests: Vec<Hash> =
                res.iter().enumerate().map(|(l, x)| residual_digest(l, pos, x, rr.clone())).collect();
            let committed = r.layers.get(step).map_or(&[][..], |l| &l[..]);
            if let Some(layer) = (0..digests.len().max(committed.len())).find(|&l| digests.get(l) != committed.get(l)) {
                rep.findings.push(Divergence::Layer { step: step + 1, layer });
            }
            let row = rr.end - 1 - first;
            let got = sample(&logits[row * n_vocab..(row + 1) * n_vocab], &params, step as u64)?;
            if got != r.tokens[step] {
                rep.findings.push(Divergence::Token { step: step + 1, committed: r.tokens[step], recomputed: got });
            }
            if matches!(rep.findings.last(), Some(Divergence::Layer { .. } | Divergence::Token { .. })) {
                // Later positions were computed from a diverged sequence: stop at the first.
                return Ok(rep);
            }
            step += 1;
            rep.steps_matched = step;
            progress("re-executing", step as f32 / n as f32)?;
        }
        a = b;
    }
    // 5. Where generation ends, and the text: the same stop rules as generation.
    let mut st = StopState::new(p, ctx, r.sampling.max_tokens as usize, &r.sampling.stop, &r.sampling.eog);
    for &id in &r.tokens {
        if st.finish.is_some() {
            break;
        }
        st.push(Some(tok), id)?;
    }
    if r.finish == FinishReason::Aborted {
        st.abort();
    }
    let at = st.len();
    let end = st.finish.map(FinishReason::from);
    if end != Some(r.finish) || at != n {
        rep.findings.push(Divergence::Finish { committed: r.finish, recomputed: end, at: n });
    } else if st.text != r.output {
        rep.findings.push(Divergence::Output);
    }
    Ok(rep)
}
