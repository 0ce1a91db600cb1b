//! Sentence embeddings for JavaScript (wasm32 only): an [`EncoderLoader`] takes a BERT
//! checkpoint's three files as they arrive (`model.safetensors`, `config.json`,
//! `tokenizer.json`), [`load_encoder`] converts it ([`bert::convert`]) and commits to it, and a
//! [`WasmEncoder`] embeds texts with their receipt ([`crate::embed`]) and verifies embedding
//! receipts, letting the event loop run between batches so that an abort gets through.
//! `js/WASM_CONTRACT.md` ("Embeddings") lists these exports.

use super::{js_error, to_js, yield_now, Callbacks, JsResult};
use crate::backend::exact::ExactWeight;
use crate::embed::{self, EmbedDivergence, Embedded, EmbeddingReceipt, Encoder, GpuEncoder, BATCH, DEFAULT_MAX_TOKENS};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::gpu::{GpuContext, GpuOptions};
use crate::model::bert::{self, BertConfig};
use crate::receipt::ModelCommitment;
use crate::tokenizer::wordpiece::WordPiece;
use js_sys::{Array, Float32Array, Function, Object, Reflect};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::rc::Rc;
use wasm_bindgen::prelude::*;

// ============================================================================================
// BACKEND SELECTION for embeddings: the one place that decides where an encoder runs.
// `Backend::parse` is called by `new EncoderLoader(backend)`, before anything is downloaded
// (the JS layer resolves 'auto' first, as `Engine.load` does); `EncoderBackend` holds the
// loaded encoder and runs its batches.
// ============================================================================================

/// Where an encoder is to run.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// The exact integer encoder on the wasm CPU path (on rayon's threads in the threaded build).
    Cpu,
    /// The same numerics on WebGPU.
    Gpu,
}

impl Backend {
    fn parse(name: &str) -> JsResult<Backend> {
        match name {
            "cpu" | "auto" => Ok(Backend::Cpu),
            "webgpu" => Ok(Backend::Gpu),
            other => Err(js_error(Error::InvalidArgument(format!("backend {other:?}: 'auto', 'cpu' or 'webgpu'")))),
        }
    }
}

/// A loaded encoder on its backend.
enum EncoderBackend {
    Cpu(Box<Encoder<ExactWeight>>),
    Gpu(Box<GpuEncoder>),
}

impl EncoderBackend {
    async fn load(backend: Backend, gguf: &Gguf) -> Result<EncoderBackend> {
        match backend {
            Backend::Cpu => Ok(EncoderBackend::Cpu(Box::new(Encoder::load(gguf)?))),
            Backend::Gpu => {
                let ctx = Rc::new(GpuContext::new(GpuOptions::default()).await?);
                let enc = GpuEncoder::load(gguf, ctx)?;
                // One text compiles the kernels now rather than in the first embedding.
                enc.embed_ids_async(&[enc.tokenize("", 2)?]).await?;
                Ok(EncoderBackend::Gpu(Box::new(enc)))
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            EncoderBackend::Cpu(_) => "cpu",
            EncoderBackend::Gpu(_) => "webgpu",
        }
    }

    fn cfg(&self) -> &BertConfig {
        match self {
            EncoderBackend::Cpu(e) => &e.cfg,
            EncoderBackend::Gpu(e) => e.cfg(),
        }
    }

    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        match self {
            EncoderBackend::Cpu(e) => e.tokenize(text, max_tokens),
            EncoderBackend::Gpu(e) => e.tokenize(text, max_tokens),
        }
    }

    /// Vectors and receipt of at most [`BATCH`] texts (one forward pass).
    async fn embed(&self, model: &ModelCommitment, texts: &[String], max_tokens: usize) -> Result<Embedded> {
        match self {
            EncoderBackend::Cpu(e) => embed::embed_async(&**e, model, texts, max_tokens, |_, _| Ok(())).await,
            EncoderBackend::Gpu(e) => embed::embed_async(&**e, model, texts, max_tokens, |_, _| Ok(())).await,
        }
    }

    /// The findings of [`embed::verify_async`] on `r` (a part of at most [`BATCH`] texts).
    async fn verify(&self, r: &EmbeddingReceipt, model: &ModelCommitment) -> Result<Vec<EmbedDivergence>> {
        match self {
            EncoderBackend::Cpu(e) => embed::verify_async(r, &**e, model, |_, _| Ok(())).await,
            EncoderBackend::Gpu(e) => embed::verify_async(r, &**e, model, |_, _| Ok(())).await,
        }
    }
}

// ============================================================================================

/// The bytes of `model.safetensors` as they arrive. Its header (an 8-byte length, then JSON
/// naming each tensor's byte range) gives the file's length: a bad header fails at once, so
/// a download can stop early, and a short file is `TRUNCATED`.
#[derive(Default)]
struct Safetensors {
    buf: Vec<u8>,
    expected: Option<usize>,
}

/// The safetensors crate's limit on the header.
const MAX_HEADER: u64 = 100_000_000;
/// `config.json` and `tokenizer.json` larger than this are not what they claim to be.
const MAX_JSON: usize = 64 << 20;

impl Safetensors {
    fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        if self.expected.is_none() && self.buf.len() >= 8 {
            let mut len = [0u8; 8];
            len.copy_from_slice(&self.buf[..8]);
            let n = u64::from_le_bytes(len);
            if n > MAX_HEADER {
                return Err(Error::Corrupt(format!("safetensors header of {n} bytes (not a safetensors file?)")));
            }
            let n = n as usize;
            if self.buf.len() >= 8 + n {
                let end = data_end(&self.buf[8..8 + n])?;
                let total = (8 + n)
                    .checked_add(end)
                    .ok_or_else(|| Error::Corrupt(format!("safetensors: tensors end at byte {end}")))?;
                self.expected = Some(total);
                // One allocation for the whole file rather than doublings (and their copies).
                self.buf.reserve_exact(total.saturating_sub(self.buf.len()));
            }
        }
        match self.expected {
            Some(total) if self.buf.len() > total => Err(Error::Corrupt(format!(
                "safetensors: {} bytes, more than the {total} its header says",
                self.buf.len()
            ))),
            _ => Ok(()),
        }
    }

    /// `TRUNCATED` unless the whole file (as its header says) is in.
    fn check_complete(&self) -> Result<()> {
        let have = self.buf.len();
        let need = match self.expected {
            Some(total) => total,
            None if have < 8 => 8,
            // The header's length is known (push checked it) but not all of it arrived.
            None => 8 + u64::from_le_bytes(self.buf[..8].try_into().unwrap_or_default()).min(MAX_HEADER) as usize,
        };
        if have < need {
            return Err(Error::Truncated {
                what: "safetensors file".into(),
                offset: 0,
                need: need as u64,
                have: have as u64,
            });
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<u8>> {
        self.check_complete()?;
        Ok(self.buf)
    }
}

/// The end of the last tensor's bytes, from a safetensors header.
fn data_end(header: &[u8]) -> Result<usize> {
    let bad = |what: String| Error::Corrupt(format!("safetensors header: {what}"));
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(e.to_string()))?;
    let mut end = 0u64;
    for (name, t) in map.iter().filter(|(k, _)| *k != "__metadata__") {
        let offsets = t.get("data_offsets").and_then(|o| o.as_array());
        let b = match offsets.map(|o| o.as_slice()) {
            Some([a, b]) => match (a.as_u64(), b.as_u64()) {
                (Some(a), Some(b)) if a <= b => b,
                _ => return Err(bad(format!("tensor '{name}' has data_offsets {offsets:?}"))),
            },
            _ => return Err(bad(format!("tensor '{name}' has no data_offsets"))),
        };
        end = end.max(b);
    }
    usize::try_from(end).map_err(|_| bad(format!("tensors end at byte {end}")))
}

/// Which of the three files a chunk belongs to.
#[derive(Clone, Copy)]
enum File {
    Model,
    Config,
    Tokenizer,
}

impl File {
    fn parse(name: &str) -> Result<File> {
        match name {
            "model" => Ok(File::Model),
            "config" => Ok(File::Config),
            "tokenizer" => Ok(File::Tokenizer),
            other => Err(Error::InvalidArgument(format!("file {other:?}: 'model', 'config' or 'tokenizer'"))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            File::Model => "model.safetensors",
            File::Config => "config.json",
            File::Tokenizer => "tokenizer.json",
        }
    }
}

fn utf8(bytes: Vec<u8>, file: File) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::Corrupt(format!("{} is not UTF-8", file.name())))
}

fn utf8_ref(bytes: &[u8], file: File) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| Error::Corrupt(format!("{} is not UTF-8", file.name())))
}

/// A BERT checkpoint's three files as they arrive, for [`load_encoder`]; created for a backend,
/// which is checked at once (before any download).
#[wasm_bindgen]
pub struct EncoderLoader {
    backend: Backend,
    model: Safetensors,
    config: Vec<u8>,
    tokenizer: Vec<u8>,
}

#[wasm_bindgen]
impl EncoderLoader {
    /// `backend`: `'cpu'` or `'webgpu'` (`'auto'`, which the JS layer resolves first, is the CPU).
    #[wasm_bindgen(constructor)]
    pub fn new(backend: &str) -> JsResult<EncoderLoader> {
        Ok(EncoderLoader {
            backend: Backend::parse(backend)?,
            model: Safetensors::default(),
            config: Vec::new(),
            tokenizer: Vec::new(),
        })
    }

    /// Append bytes of `file` (`'model'`, `'config'` or `'tokenizer'`); throws as soon as the
    /// safetensors header is known to be bad.
    pub fn push(&mut self, file: &str, chunk: &[u8]) -> JsResult<()> {
        self.push_inner(file, chunk).map_err(js_error)
    }

    /// Bytes of `file` pushed so far.
    pub fn received(&self, file: &str) -> f64 {
        match File::parse(file) {
            Ok(File::Model) => self.model.buf.len() as f64,
            Ok(File::Config) => self.config.len() as f64,
            Ok(File::Tokenizer) => self.tokenizer.len() as f64,
            Err(_) => 0.0,
        }
    }

    /// The file's full length when known (the safetensors file, once its header is in).
    pub fn expected(&self, file: &str) -> Option<f64> {
        match File::parse(file) {
            Ok(File::Model) => self.model.expected.map(|n| n as f64),
            _ => None,
        }
    }

    /// `file` is complete: `config.json` and `tokenizer.json` are read now, so that a wrong one
    /// fails before the weights are downloaded; a short safetensors file is `TRUNCATED`.
    pub fn end(&mut self, file: &str) -> JsResult<()> {
        self.end_inner(file).map_err(js_error)
    }
}

impl EncoderLoader {
    fn push_inner(&mut self, file: &str, chunk: &[u8]) -> Result<()> {
        let file = File::parse(file)?;
        let buf = match file {
            File::Model => return self.model.push(chunk),
            File::Config => &mut self.config,
            File::Tokenizer => &mut self.tokenizer,
        };
        if buf.len() + chunk.len() > MAX_JSON {
            return Err(Error::Corrupt(format!("{} is over {} MiB", file.name(), MAX_JSON >> 20)));
        }
        buf.extend_from_slice(chunk);
        Ok(())
    }

    fn end_inner(&mut self, file: &str) -> Result<()> {
        match File::parse(file)? {
            File::Config => BertConfig::from_json(utf8_ref(&self.config, File::Config)?).map(|_| ()),
            File::Tokenizer => WordPiece::from_tokenizer_json(utf8_ref(&self.tokenizer, File::Tokenizer)?).map(|_| ()),
            File::Model => self.model.check_complete(),
        }
    }
}

/// One source file: its SHA-256 (hex) and length.
#[derive(Serialize)]
struct FileInfo {
    sha256: String,
    bytes: f64,
}

#[derive(Serialize)]
struct Files {
    model: FileInfo,
    config: FileInfo,
    tokenizer: FileInfo,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EncoderInfo {
    architecture: &'static str,
    layers: usize,
    /// The vectors' length.
    dimensions: usize,
    heads: usize,
    vocab_size: usize,
    /// The model's positions: the most word pieces a text can have.
    max_positions: usize,
    /// Word pieces per text unless `maxTokens` says otherwise.
    default_max_tokens: usize,
    /// Texts per forward pass (and per progress step).
    batch: usize,
    backend: &'static str,
    /// The converted model's SHA-256 (a receipt's `model.file_sha256`) and length.
    sha256: String,
    bytes: f64,
    /// The three source files.
    files: Files,
    threads: usize,
}

struct EncShared {
    backend: EncoderBackend,
    commitment: ModelCommitment,
    info: EncoderInfo,
}

/// A loaded sentence encoder.
#[wasm_bindgen(js_name = WasmEncoder)]
pub struct WasmEncoder {
    s: Rc<EncShared>,
}

/// Convert and load the checkpoint a complete [`EncoderLoader`] holds (consumed). Progress
/// stages: `'convert'` (0/1, then 1/1), `'hash'` (bytes of the converted model hashed),
/// `'upload'` (0/1, then 1/1 around the weights' preparation).
#[wasm_bindgen(js_name = loadEncoder)]
pub async fn load_encoder(
    loader: EncoderLoader,
    on_progress: Option<Function>,
    aborted: Option<Function>,
) -> JsResult<WasmEncoder> {
    let cb = Callbacks { progress: on_progress, aborted };
    load(loader, &cb).await.map(|s| WasmEncoder { s: Rc::new(s) }).map_err(js_error)
}

fn file_info(bytes: &[u8]) -> FileInfo {
    FileInfo { sha256: hex::encode(Sha256::digest(bytes)), bytes: bytes.len() as f64 }
}

async fn load(loader: EncoderLoader, cb: &Callbacks) -> Result<EncShared> {
    let EncoderLoader { backend, model, config, tokenizer } = loader;
    let model = model.finish()?;
    let (config_info, tokenizer_info) = (file_info(&config), file_info(&tokenizer));
    let (config, tokenizer) = (utf8(config, File::Config)?, utf8(tokenizer, File::Tokenizer)?);
    cb.progress("convert", 0.0, 1.0);
    yield_now().await;
    cb.check("load")?;
    let gguf = bert::convert(&model, &config, &tokenizer)?;
    let model_info =
        FileInfo { sha256: gguf.metadata().get_str("edgeproof.source.sha256")?.to_string(), bytes: model.len() as f64 };
    drop(model);
    cb.progress("convert", 1.0, 1.0);
    yield_now().await;
    cb.check("load")?;
    let bytes = gguf.file_bytes().len() as f64;
    let commitment = ModelCommitment::of(&gguf, |p| cb.progress("hash", (p as f64 * bytes).round(), bytes))?;
    yield_now().await;
    cb.check("load")?;
    cb.progress("upload", 0.0, 1.0);
    let enc = EncoderBackend::load(backend, &gguf).await?;
    cb.progress("upload", 1.0, 1.0);
    cb.check("load")?;
    let cfg = enc.cfg();
    let info = EncoderInfo {
        architecture: bert::ARCH,
        layers: cfg.n_layer,
        dimensions: cfg.n_embd,
        heads: cfg.n_head,
        vocab_size: cfg.n_vocab,
        max_positions: cfg.n_pos,
        default_max_tokens: DEFAULT_MAX_TOKENS,
        batch: BATCH,
        backend: enc.name(),
        sha256: hex::encode(commitment.file_sha256),
        bytes,
        files: Files { model: model_info, config: config_info, tokenizer: tokenizer_info },
        threads: rayon::current_num_threads(),
    };
    Ok(EncShared { backend: enc, commitment, info })
}

/// `maxTokens` as given (at least 2: `[CLS]` and `[SEP]`), or the default.
fn max_tokens(v: Option<u32>) -> Result<usize> {
    match v {
        None => Ok(DEFAULT_MAX_TOKENS),
        Some(n) if n >= 2 => Ok(n as usize),
        Some(n) => Err(Error::InvalidArgument(format!("maxTokens {n}: at least 2 ([CLS] and [SEP])"))),
    }
}

#[wasm_bindgen(js_class = WasmEncoder)]
impl WasmEncoder {
    pub fn info(&self) -> JsResult<JsValue> {
        to_js(&self.s.info).map_err(js_error)
    }

    /// Word pieces of `text` as the encoder sees it: `[CLS] ... [SEP]`, at most `max_tokens`
    /// (default 256, at most the model's positions).
    pub fn tokenize(&self, text: &str, max_tokens: Option<u32>) -> JsResult<Vec<u32>> {
        self::max_tokens(max_tokens).and_then(|m| self.s.backend.tokenize(text, m)).map_err(js_error)
    }

    /// Embed `texts` (an array of strings), [`BATCH`] per forward pass, letting the event loop
    /// run before each; `aborted()` is polled between them. Resolves
    /// `{ vectors: Float32Array[], receipt: object | null }`. Progress stage `'embed'` (texts done).
    pub fn embed(
        &self,
        texts: JsValue,
        max_tokens: Option<u32>,
        receipt: bool,
        on_progress: Option<Function>,
        aborted: Option<Function>,
    ) -> js_sys::Promise {
        let s = Rc::clone(&self.s);
        wasm_bindgen_futures::future_to_promise(async move {
            let cb = Callbacks { progress: on_progress, aborted };
            embed_texts(&s, texts, max_tokens, receipt, &cb).await.map_err(js_error)
        })
    }

    /// Verify an embedding receipt by re-embedding its texts. Resolves `{ ok, report, findings,
    /// divergences, divergence?, texts, textsMatched }`; progress stage `'verify'` (texts done).
    pub fn verify(
        &self,
        receipt_json: String,
        on_progress: Option<Function>,
        aborted: Option<Function>,
    ) -> js_sys::Promise {
        let s = Rc::clone(&self.s);
        wasm_bindgen_futures::future_to_promise(async move {
            let cb = Callbacks { progress: on_progress, aborted };
            verify(&s, &receipt_json, &cb).await.map_err(js_error)
        })
    }
}

async fn embed_texts(
    s: &EncShared,
    texts: JsValue,
    max: Option<u32>,
    receipt: bool,
    cb: &Callbacks,
) -> Result<JsValue> {
    let texts: Vec<String> = serde_wasm_bindgen::from_value(texts)
        .map_err(|e| Error::InvalidArgument(format!("texts: an array of strings ({e})")))?;
    let max = max_tokens(max)?;
    // The receipt of no text, then each batch's texts appended: the same receipt as
    // `embed::embed` over all of them (the vectors do not depend on the batches).
    let mut all = s.backend.embed(&s.commitment, &[], max).await?;
    let n = texts.len() as f64;
    for batch in texts.chunks(BATCH) {
        yield_now().await;
        cb.check("embedding")?;
        let part = s.backend.embed(&s.commitment, batch, max).await?;
        all.vectors.extend(part.vectors);
        all.receipt.texts.extend(part.receipt.texts);
        cb.progress("embed", all.vectors.len() as f64, n);
    }
    all.receipt.root = all.receipt.chain();
    let vectors: Array = all.vectors.iter().map(|v| JsValue::from(Float32Array::from(v.as_slice()))).collect();
    let out = Object::new();
    let js = |e: JsValue| Error::InvalidArgument(format!("{e:?}"));
    Reflect::set(&out, &"vectors".into(), &vectors).map_err(js)?;
    let receipt = if receipt { js_sys::JSON::parse(&all.receipt.to_json()).map_err(js)? } else { JsValue::NULL };
    Reflect::set(&out, &"receipt".into(), &receipt).map_err(js)?;
    Ok(out.into())
}

/// `r` with only the texts `range`, and its own root.
fn part(r: &EmbeddingReceipt, range: std::ops::Range<usize>) -> EmbeddingReceipt {
    let mut p = EmbeddingReceipt {
        version: r.version,
        kind: r.kind.clone(),
        numerics: r.numerics,
        model: r.model.clone(),
        max_tokens: r.max_tokens,
        texts: r.texts[range].to_vec(),
        root: [0; 32],
        made_by: r.made_by.clone(),
    };
    p.root = p.chain();
    p
}

/// A finding as a JS object: `kind`, its fields (and the text it names), and the sentence.
fn divergence(d: &EmbedDivergence, r: &EmbeddingReceipt) -> serde_json::Value {
    use serde_json::json;
    let text = |i: usize| r.texts.get(i).map(|t| t.text.clone());
    let mut v = match d {
        EmbedDivergence::Root => json!({ "kind": "root" }),
        EmbedDivergence::Numerics => json!({ "kind": "numerics" }),
        EmbedDivergence::Model { field } => json!({ "kind": "model", "field": field }),
        EmbedDivergence::Ids { index } => json!({ "kind": "ids", "index": index, "text": text(*index) }),
        EmbedDivergence::Vector { index } => json!({ "kind": "vector", "index": index, "text": text(*index) }),
    };
    v["message"] = d.to_string().into();
    v
}

/// [`embed::verify`] a part at a time, letting the event loop run between parts; the findings
/// and their order are `embed::verify`'s on the whole receipt (and so the CLI's report).
async fn verify(s: &EncShared, json: &str, cb: &Callbacks) -> Result<JsValue> {
    let r = EmbeddingReceipt::from_json(json)?;
    let mut findings = Vec::new();
    if r.chain() != r.root {
        findings.push(EmbedDivergence::Root);
    }
    // The numerics and the model, on a part of no text.
    let head = s.backend.verify(&part(&r, 0..0), &s.commitment).await?;
    let same_model = head.is_empty();
    findings.extend(head);
    let (mut ids, mut vectors) = (Vec::new(), Vec::new());
    let n = r.texts.len();
    if same_model {
        let mut at = 0;
        while at < n {
            yield_now().await;
            cb.check("verification")?;
            let end = (at + BATCH).min(n);
            for d in s.backend.verify(&part(&r, at..end), &s.commitment).await? {
                match d {
                    EmbedDivergence::Ids { index } => ids.push(EmbedDivergence::Ids { index: index + at }),
                    EmbedDivergence::Vector { index } => vectors.push(EmbedDivergence::Vector { index: index + at }),
                    // A part's own root, numerics and model were checked above.
                    _ => {}
                }
            }
            at = end;
            cb.progress("verify", at as f64, n as f64);
        }
    }
    let failed = ids.len() + vectors.len();
    findings.extend(ids);
    findings.extend(vectors);
    let ok = findings.is_empty();
    let report = if ok {
        format!("verified: {n} texts re-embedded bit for bit")
    } else {
        format!("NOT verified: {}", findings.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))
    };
    let divergences: Vec<serde_json::Value> = findings.iter().map(|d| divergence(d, &r)).collect();
    // The verdict names a text when one diverged: the first such finding, else the first.
    let named = findings.iter().position(|d| matches!(d, EmbedDivergence::Ids { .. } | EmbedDivergence::Vector { .. }));
    let out = serde_json::json!({
        "ok": ok,
        "report": report,
        "findings": findings.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "divergences": divergences,
        "divergence": named.or(if ok { None } else { Some(0) }).and_then(|i| divergences.get(i).cloned()),
        "texts": n,
        "textsMatched": if same_model { n - failed } else { 0 },
    });
    to_js(&out)
}
