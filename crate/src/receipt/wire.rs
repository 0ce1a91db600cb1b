//! The forms a receipt travels in: JSON (v1 and v2), the v2 binary form, the trace sidecar
//! (binary) and a private receipt's opening (JSON). Every parser returns `BAD_RECEIPT` (or
//! `UNSUPPORTED_RECEIPT_VERSION`) for bad input, never panics, and checks counts against the
//! bytes left before it allocates.

use super::sign::{Signature, SignatureJson};
use super::{
    hex32, merkle_root, Body, ChatMessage, Commitments, Encode, FinishReason, Hash, Meta, ModelCommitment, Opening,
    Prompt, Public, Receipt, Sampling, Sections, MODE_EXACT,
};
use crate::error::{Error, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};

/// The binary receipt's first bytes.
pub const RECEIPT_MAGIC: &[u8; 4] = b"EPRC";
/// The binary trace's first bytes.
pub const TRACE_MAGIC: &[u8; 4] = b"EPTR";

fn bad(m: impl Into<String>) -> Error {
    Error::BadReceipt(m.into())
}

/// Per-step hashes, concatenated, as one unpadded base64url string.
mod b64_hashes {
    use super::{Hash, B64};
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v.concat()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let b = B64.decode(String::deserialize(d)?).map_err(serde::de::Error::custom)?;
        if b.len() % 32 != 0 {
            return Err(serde::de::Error::custom(format!("steps: {} bytes, not a multiple of 32", b.len())));
        }
        Ok(b.chunks_exact(32).map(|c| c.try_into().unwrap_or([0; 32])).collect())
    }
}

/// v1's per-token layer digests, as lists of hex strings.
mod hex32_lists {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Vec<[u8; 32]>], s: S) -> Result<S::Ok, S::Error> {
        let hex: Vec<Vec<String>> = v.iter().map(|l| l.iter().map(hex::encode).collect()).collect();
        serde::Serialize::serialize(&hex, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<[u8; 32]>>, D::Error> {
        let v = Vec::<Vec<String>>::deserialize(d)?;
        v.iter()
            .map(|l| l.iter().map(|h| super::super::parse_hash(h)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

/// Format version 1 (read for verification; written only by [`Receipt::to_v1`]'s receipts).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V1 {
    version: u32,
    mode: String,
    #[serde(with = "hex32")]
    numerics: Hash,
    model: ModelCommitment,
    prompt: Prompt,
    prompt_ids: Vec<u32>,
    sampling: Sampling,
    tokens: Vec<u32>,
    #[serde(with = "hex32_lists")]
    layers: Vec<Vec<Hash>>,
    finish: FinishReason,
    output: String,
    sections: Sections,
    #[serde(with = "hex32")]
    chain: Hash,
    #[serde(rename = "final", with = "hex32")]
    final_hash: Hash,
    meta: Meta,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitmentsJson {
    #[serde(with = "hex32")]
    prompt: Hash,
    #[serde(with = "hex32")]
    output: Hash,
}

/// Format version 2: a public receipt has `prompt`, `prompt_ids`, `tokens` and `output`; a
/// private one `commitments` instead.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct V2 {
    version: u32,
    mode: String,
    #[serde(with = "hex32")]
    numerics: Hash,
    model: ModelCommitment,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt: Option<Prompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prompt_ids: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    commitments: Option<CommitmentsJson>,
    sampling: Sampling,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<Vec<u32>>,
    #[serde(with = "b64_hashes")]
    steps: Vec<Hash>,
    finish: FinishReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<String>,
    sections: Sections,
    #[serde(with = "hex32")]
    chain: Hash,
    #[serde(rename = "final", with = "hex32")]
    final_hash: Hash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<SignatureJson>,
    #[serde(default)]
    meta: Meta,
}

impl Receipt {
    /// The JSON form of its version (compact for v2; v1 as v1 wrote it).
    pub fn to_json(&self) -> Result<String> {
        let json = if self.version == 1 {
            let (Body::Public(p), Some(layers)) = (&self.body, &self.trace) else {
                return Err(Error::InvalidArgument("a version 1 receipt is public and carries its layers".into()));
            };
            let v1 = V1 {
                version: 1,
                mode: self.mode.clone(),
                numerics: self.numerics,
                model: self.model.clone(),
                prompt: p.prompt.clone(),
                prompt_ids: p.prompt_ids.clone(),
                sampling: self.sampling.clone(),
                tokens: p.tokens.clone(),
                layers: layers.clone(),
                finish: self.finish,
                output: p.output.clone(),
                sections: self.sections.clone(),
                chain: self.chain,
                final_hash: self.final_hash,
                meta: self.meta.clone(),
            };
            serde_json::to_string_pretty(&v1)
        } else {
            let (p, c) = match &self.body {
                Body::Public(p) => (Some(p), None),
                Body::Private(c) => (None, Some(CommitmentsJson { prompt: c.prompt, output: c.output })),
            };
            let v2 = V2 {
                version: self.version,
                mode: self.mode.clone(),
                numerics: self.numerics,
                model: self.model.clone(),
                prompt: p.map(|p| p.prompt.clone()),
                prompt_ids: p.map(|p| p.prompt_ids.clone()),
                commitments: c,
                sampling: self.sampling.clone(),
                tokens: p.map(|p| p.tokens.clone()),
                steps: self.steps.clone(),
                finish: self.finish,
                output: p.map(|p| p.output.clone()),
                sections: self.sections.clone(),
                chain: self.chain,
                final_hash: self.final_hash,
                signature: self.signature.as_ref().map(SignatureJson::from),
                meta: self.meta.clone(),
            };
            serde_json::to_string(&v2)
        };
        json.map_err(|e| Error::InvalidArgument(format!("receipt JSON: {e}")))
    }

    /// Parse either version's JSON and check its shape.
    pub fn from_json(s: &str) -> Result<Receipt> {
        let v: serde_json::Value = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
        let r = match v.get("version").and_then(|v| v.as_u64()) {
            Some(1) => {
                let j: V1 = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
                if j.layers.len() != j.tokens.len() {
                    return Err(bad(format!("{} layer lists for {} tokens", j.layers.len(), j.tokens.len())));
                }
                if let Some(l) = j.layers.iter().find(|l| l.len() != j.layers[0].len()) {
                    return Err(bad(format!("a step with {} layer digests, not {}", l.len(), j.layers[0].len())));
                }
                Receipt {
                    version: 1,
                    mode: j.mode,
                    numerics: j.numerics,
                    model: j.model,
                    sampling: j.sampling,
                    steps: j.layers.iter().map(|l| merkle_root(l)).collect(),
                    body: Body::Public(Public {
                        prompt: j.prompt,
                        prompt_ids: j.prompt_ids,
                        tokens: j.tokens,
                        output: j.output,
                    }),
                    finish: j.finish,
                    sections: j.sections,
                    chain: j.chain,
                    final_hash: j.final_hash,
                    signature: None,
                    meta: j.meta,
                    trace: Some(j.layers),
                    opening: None,
                }
            }
            Some(2) => {
                let j: V2 = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
                let body = match (j.prompt, j.prompt_ids, j.tokens, j.output, j.commitments) {
                    (Some(prompt), Some(prompt_ids), Some(tokens), Some(output), None) => {
                        Body::Public(Public { prompt, prompt_ids, tokens, output })
                    }
                    (None, None, None, None, Some(c)) => {
                        Body::Private(Commitments { prompt: c.prompt, output: c.output })
                    }
                    _ => {
                        return Err(bad(
                            "give prompt, prompt_ids, tokens and output (public), or commitments (private)",
                        ))
                    }
                };
                Receipt {
                    version: 2,
                    mode: j.mode,
                    numerics: j.numerics,
                    model: j.model,
                    sampling: j.sampling,
                    body,
                    steps: j.steps,
                    finish: j.finish,
                    sections: j.sections,
                    chain: j.chain,
                    final_hash: j.final_hash,
                    signature: j.signature.map(Signature::try_from).transpose()?,
                    meta: j.meta,
                    trace: None,
                    opening: None,
                }
            }
            Some(n) => return Err(Error::UnsupportedReceiptVersion(n.min(u32::MAX as u64) as u32)),
            None => return Err(bad("no numeric \"version\"")),
        };
        r.check_shape()?;
        Ok(r)
    }

    /// What both forms require: the exact mode, then [`Receipt::check_counts`].
    fn check_shape(&self) -> Result<()> {
        if self.mode != MODE_EXACT {
            return Err(bad(format!("mode {:?} (only {MODE_EXACT:?} has receipts)", self.mode)));
        }
        self.check_counts()
    }

    /// A prompt, and one step value per token (`BAD_RECEIPT`): what the chain and the binary
    /// form take for granted.
    pub fn check_counts(&self) -> Result<()> {
        if let Body::Public(p) = &self.body {
            if p.prompt_ids.is_empty() {
                return Err(bad("empty prompt_ids"));
            }
            if p.tokens.len() != self.steps.len() {
                return Err(bad(format!("{} step values for {} tokens", self.steps.len(), p.tokens.len())));
            }
        }
        Ok(())
    }

    /// The binary form (v2 only; `docs/RECEIPT.md` gives it byte for byte).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.version != 2 {
            return Err(Error::InvalidArgument("only version 2 receipts have a binary form".into()));
        }
        self.check_counts()?;
        let mut w = Bytes(RECEIPT_MAGIC.to_vec()).u32(self.version).bytes(self.mode.as_bytes()).hash(&self.numerics);
        let m = &self.model;
        w = w.hash(&m.file_sha256).hash(&m.tensors_root).hash(&m.tokenizer).hash(&m.chat_template);
        w = self.sampling.encode(w);
        w = match &self.body {
            Body::Public(p) => {
                let w = p.prompt.encode(w.u8(0)).ids(&p.prompt_ids).bytes(p.output.as_bytes());
                let w = w.u64(self.steps.len() as u64);
                p.tokens.iter().zip(&self.steps).fold(w, |w, (&t, v)| w.u32(t).hash(v))
            }
            Body::Private(c) => {
                let w = w.u8(1).hash(&c.prompt).hash(&c.output).u64(self.steps.len() as u64);
                self.steps.iter().fold(w, |w, v| w.hash(v))
            }
        };
        w = w.u8(self.finish.code());
        let s = &self.sections;
        w = w.hash(&s.model).hash(&s.prompt).hash(&s.sampling).hash(&s.c0).hash(&self.chain).hash(&self.final_hash);
        w = match &self.signature {
            None => w.u8(0),
            Some(s) => w.u8(1).raw(&s.key).bytes(s.fingerprint.as_bytes()).raw(&s.value),
        };
        let meta = serde_json::to_vec(&self.meta).map_err(|e| Error::InvalidArgument(format!("meta: {e}")))?;
        Ok(w.bytes(&meta).0)
    }

    /// Parse the binary form; trailing bytes are an error.
    pub fn from_bytes(b: &[u8]) -> Result<Receipt> {
        let mut r = Reader(b);
        if r.take(4)? != RECEIPT_MAGIC {
            return Err(bad("not a binary receipt (magic \"EPRC\")"));
        }
        let version = r.u32()?;
        if version != 2 {
            return Err(Error::UnsupportedReceiptVersion(version));
        }
        let mode = r.string()?;
        let numerics = r.hash()?;
        let model = ModelCommitment {
            file_sha256: r.hash()?,
            tensors_root: r.hash()?,
            tokenizer: r.hash()?,
            chat_template: r.hash()?,
        };
        let sampling = Sampling {
            temperature_q16: r.u32()?,
            top_k: r.u32()?,
            top_p_q16: r.u32()?,
            seed: r.u64()?,
            max_tokens: r.u32()?,
            stop: (0..r.count(8)?).map(|_| r.string()).collect::<Result<_>>()?,
            eog: r.ids()?,
        };
        let (body, steps) = match r.u8()? {
            0 => {
                let prompt = match r.u32()? {
                    0 => Prompt::Text(r.string()?),
                    1 => Prompt::Messages(
                        (0..r.count(16)?)
                            .map(|_| Ok(ChatMessage { role: r.string()?, content: r.string()? }))
                            .collect::<Result<_>>()?,
                    ),
                    k => return Err(bad(format!("prompt kind {k}"))),
                };
                let prompt_ids = r.ids()?;
                let output = r.string()?;
                let n = r.count(36)?;
                let mut tokens = Vec::with_capacity(n);
                let mut steps = Vec::with_capacity(n);
                for _ in 0..n {
                    tokens.push(r.u32()?);
                    steps.push(r.hash()?);
                }
                (Body::Public(Public { prompt, prompt_ids, tokens, output }), steps)
            }
            1 => {
                let c = Commitments { prompt: r.hash()?, output: r.hash()? };
                let n = r.count(32)?;
                (Body::Private(c), (0..n).map(|_| r.hash()).collect::<Result<_>>()?)
            }
            k => return Err(bad(format!("body kind {k}"))),
        };
        let finish = FinishReason::from_code(r.u8()?).ok_or_else(|| bad("finish code"))?;
        let sections = Sections { model: r.hash()?, prompt: r.hash()?, sampling: r.hash()?, c0: r.hash()? };
        let (chain, final_hash) = (r.hash()?, r.hash()?);
        let signature = match r.u8()? {
            0 => None,
            1 => Some(Signature {
                key: r.take(65)?.try_into().map_err(|_| bad("key"))?,
                fingerprint: r.string()?,
                value: r.take(64)?.try_into().map_err(|_| bad("value"))?,
            }),
            k => return Err(bad(format!("signature flag {k}"))),
        };
        let meta: Meta = serde_json::from_slice(r.byte_string()?).map_err(|e| bad(format!("meta: {e}")))?;
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the receipt", r.0.len())));
        }
        let receipt = Receipt {
            version,
            mode,
            numerics,
            model,
            sampling,
            body,
            steps,
            finish,
            sections,
            chain,
            final_hash,
            signature,
            meta,
            trace: None,
            opening: None,
        };
        receipt.check_shape()?;
        Ok(receipt)
    }

    /// The binary form (it starts with `EPRC`) or JSON.
    pub fn parse(b: &[u8]) -> Result<Receipt> {
        if b.starts_with(RECEIPT_MAGIC) {
            return Receipt::from_bytes(b);
        }
        Receipt::from_json(std::str::from_utf8(b).map_err(|_| bad("neither a binary receipt nor UTF-8 JSON"))?)
    }
}

/// The trace sidecar: `EPTR`, u32 2, u32 layers, u64 steps, then every digest.
pub fn trace_to_bytes(trace: &[Vec<Hash>]) -> Vec<u8> {
    let layers = trace.first().map_or(0, |l| l.len());
    let w = Bytes(TRACE_MAGIC.to_vec()).u32(2).u32(layers as u32).u64(trace.len() as u64);
    trace.iter().flatten().fold(w, |w, h| w.hash(h)).0
}

pub fn trace_from_bytes(b: &[u8]) -> Result<Vec<Vec<Hash>>> {
    let mut r = Reader(b);
    if r.take(4)? != TRACE_MAGIC || r.u32()? != 2 {
        return Err(bad("not a trace (magic \"EPTR\", version 2)"));
    }
    let (layers, steps) = (r.u32()?, r.u64()?);
    let want = (steps as u128) * (layers as u128) * 32;
    if want != r.0.len() as u128 {
        return Err(bad(format!("a trace of {steps} steps × {layers} layers in {} bytes", r.0.len())));
    }
    if steps == 0 {
        return Ok(Vec::new());
    }
    if layers == 0 {
        return Err(bad("a trace of steps without layers"));
    }
    // The bytes are steps × layers × 32 (checked above), so one step's bytes fit in usize.
    let step = r.0.len() / steps as usize;
    Ok(r.0.chunks_exact(step).map(|s| s.chunks_exact(32).map(|h| h.try_into().unwrap_or([0; 32])).collect()).collect())
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpeningJson {
    version: u32,
    kind: String,
    #[serde(with = "hex32")]
    salt: Hash,
    prompt: Prompt,
    tokens: Vec<u32>,
    output: String,
}

impl Opening {
    /// `{ "version": 2, "kind": "opening", "salt", "prompt", "tokens", "output" }`.
    pub fn to_json(&self) -> String {
        let j = OpeningJson {
            version: 2,
            kind: "opening".into(),
            salt: self.salt,
            prompt: self.prompt.clone(),
            tokens: self.tokens.clone(),
            output: self.output.clone(),
        };
        serde_json::to_string_pretty(&j).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Opening> {
        let j: OpeningJson = serde_json::from_str(s).map_err(|e| bad(format!("opening: {e}")))?;
        if j.version != 2 || j.kind != "opening" {
            return Err(bad("not an opening (version 2, kind \"opening\")"));
        }
        Ok(Opening { salt: j.salt, prompt: j.prompt, tokens: j.tokens, output: j.output })
    }
}

/// The binary writer: [`Encode`]'s fields appended to a buffer.
struct Bytes(Vec<u8>);

impl Bytes {
    fn u8(mut self, v: u8) -> Bytes {
        self.0.push(v);
        self
    }
}

impl Encode for Bytes {
    fn raw(mut self, b: &[u8]) -> Bytes {
        self.0.extend_from_slice(b);
        self
    }
}

/// The binary reader: every read checks the bytes left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            return Err(bad(format!("truncated: {n} bytes wanted, {} left", self.0.len())));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| bad("u32"))?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| bad("u64"))?))
    }
    fn hash(&mut self) -> Result<Hash> {
        self.take(32)?.try_into().map_err(|_| bad("hash"))
    }
    /// A count of items of at least `min` bytes each, checked against the bytes left.
    fn count(&mut self, min: usize) -> Result<usize> {
        let n = self.u64()?;
        if n > (self.0.len() / min) as u64 {
            return Err(bad(format!("a count of {n} in {} bytes", self.0.len())));
        }
        Ok(n as usize)
    }
    fn byte_string(&mut self) -> Result<&'a [u8]> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.byte_string()?.to_vec()).map_err(|_| bad("text that is not UTF-8"))
    }
    fn ids(&mut self) -> Result<Vec<u32>> {
        (0..self.count(4)?).map(|_| self.u32()).collect()
    }
}
