//! Sentence embeddings: a BERT encoder ([`crate::model::bert`]) with its WordPiece tokenizer, in
//! the exact numerics (vectors equal bit for bit on every backend, alone or in any batch) or in
//! f32 for measurements, and receipts that commit to each text, its token ids and its vector.

use crate::backend::exact::{ExactOps, ExactWeight, IMat};
use crate::backend::f32::{F32Weight, RefF32};
use crate::engine::block_on;
use crate::error::{Error, Result};
use crate::gguf::Gguf;
use crate::gpu::{GpuContext, GpuOps, GpuWeight};
use crate::model::bert::{self, BertConfig, BertWeights};
use crate::numerics::encoder_digest;
use crate::receipt::{Encode, Hash, Hasher, ModelCommitment};
use crate::tokenizer::wordpiece::WordPiece;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

/// Word pieces per text by default (`[CLS]` and `[SEP]` included); longer texts are truncated.
pub const DEFAULT_MAX_TOKENS: usize = 256;
/// Texts per forward pass: the vectors do not depend on it, only the memory and the progress steps.
pub const BATCH: usize = 32;

/// Read a BERT checkpoint's directory (`model.safetensors`, `config.json`, `tokenizer.json`) and
/// convert it ([`bert::convert`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_dir(dir: &std::path::Path) -> Result<Gguf> {
    let read = |f: &str| std::fs::read(dir.join(f)).map_err(|e| Error::Io(format!("{}: {e}", dir.join(f).display())));
    let text = |f: &str| String::from_utf8(read(f)?).map_err(|_| Error::Corrupt(format!("{f} is not UTF-8")));
    bert::convert(&read("model.safetensors")?, &text("config.json")?, &text("tokenizer.json")?)
}

/// An encoder loaded from its converted GGUF, in the numerics `W` picks.
pub struct Encoder<W> {
    pub cfg: BertConfig,
    tok: WordPiece,
    weights: BertWeights<W>,
}

impl<W> Encoder<W> {
    fn load_with(gguf: &Gguf, conv: impl FnMut(crate::gguf::TensorView) -> Result<W>) -> Result<Encoder<W>> {
        let cfg = BertConfig::from_metadata(gguf.metadata())?;
        let tok = WordPiece::from_tokenizer_json(gguf.metadata().get_str("tokenizer.huggingface.json")?)?;
        let weights = BertWeights::load(gguf, &cfg, conv)?;
        Ok(Encoder { cfg, tok, weights })
    }

    /// `[CLS] ... [SEP]`, at most `max_tokens` word pieces (at most the model's positions).
    pub fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        self.tok.encode(text, max_tokens.min(self.cfg.n_pos))
    }
}

impl Encoder<ExactWeight> {
    pub fn load(gguf: &Gguf) -> Result<Encoder<ExactWeight>> {
        let mut enc = Encoder::load_with(gguf, ExactWeight::from_view)?;
        // Texts are short: widening the layers' weights again for each batch would cost more
        // than the products (the embedding tables are read a row at a time, not widened).
        for l in &mut enc.weights.layers {
            for w in [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.up, &mut l.down] {
                w.keep_widened();
            }
        }
        Ok(enc)
    }

    /// One exact vector per tokenized text (24-bit mantissas and an exponent per row).
    pub fn embed_ids(&self, texts: &[Vec<u32>]) -> Result<IMat> {
        bert::forward(&mut ExactOps::encoder(), &self.cfg, &self.weights, texts)
    }
}

impl Encoder<F32Weight> {
    /// The f32 reference (the same converted weights, dequantized): for measurements only.
    pub fn load_f32(gguf: &Gguf) -> Result<Encoder<F32Weight>> {
        Encoder::load_with(gguf, F32Weight::from_view)
    }

    pub fn embed_ids(&self, texts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let out = bert::forward(&mut RefF32::encoder(), &self.cfg, &self.weights, texts)?;
        Ok(out.data.chunks_exact(out.cols).map(<[f32]>::to_vec).collect())
    }
}

/// An encoder on WebGPU: the exact numerics, the CPU's bits. One batch at a time: a second
/// call while one waits on the device is `BUSY`.
pub struct GpuEncoder {
    enc: Encoder<GpuWeight>,
    ops: RefCell<GpuOps>,
}

impl GpuEncoder {
    pub fn load(gguf: &Gguf, ctx: Rc<GpuContext>) -> Result<GpuEncoder> {
        let enc = Encoder::load_with(gguf, |t| GpuWeight::from_view(&ctx, t))?;
        Ok(GpuEncoder { enc, ops: RefCell::new(GpuOps::encoder(ctx)?) })
    }

    pub fn cfg(&self) -> &BertConfig {
        &self.enc.cfg
    }

    pub fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        self.enc.tokenize(text, max_tokens)
    }

    /// [`Encoder::embed_ids`] on the device, read back (at most [`crate::gpu::MAX_SEGMENTS`]
    /// texts per call).
    // The borrow is held across the readback on purpose: a second call meanwhile is BUSY.
    #[allow(clippy::await_holding_refcell_ref)]
    pub async fn embed_ids_async(&self, texts: &[Vec<u32>]) -> Result<IMat> {
        let mut ops = self.ops.try_borrow_mut().map_err(|_| Error::Busy("the GPU encoder is embedding".into()))?;
        let out = bert::forward(&mut *ops, &self.enc.cfg, &self.enc.weights, texts)?;
        ops.check()?;
        ops.download_async(&out).await
    }

    /// [`GpuEncoder::embed_ids_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed_ids(&self, texts: &[Vec<u32>]) -> Result<IMat> {
        pollster::block_on(self.embed_ids_async(texts))
    }
}

/// SHA-256 of row `row` of exact vectors, tagged `edgeproof embedding vector v1`: its width, its
/// exponent and its mantissas (u32 LE, two's complement).
pub fn vector_digest(v: &IMat, row: usize) -> Hash {
    let h = Hasher::new("edgeproof embedding vector v1").u32(v.cols as u32).u32(v.e[row] as u32);
    v.row(row).iter().fold(h, |h, &m| h.u32(m as u32)).finish()
}

/// One embedded text in a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddedText {
    pub text: String,
    pub ids: Vec<u32>,
    #[serde(with = "crate::receipt::hex32")]
    pub vector: Hash,
}

/// The receipt of an embedding: the model, the numerics, the truncation, and per text its ids and
/// its vector's digest; `root` chains them (`docs/RECEIPT.md`, "Embedding receipts").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingReceipt {
    pub version: u32,
    pub kind: String,
    #[serde(with = "crate::receipt::hex32")]
    pub numerics: Hash,
    pub model: ModelCommitment,
    pub max_tokens: usize,
    pub texts: Vec<EmbeddedText>,
    #[serde(with = "crate::receipt::hex32")]
    pub root: Hash,
    /// Where it was made; not committed.
    #[serde(default)]
    pub made_by: String,
}

pub const EMBEDDING_KIND: &str = "embedding";

impl EmbeddingReceipt {
    /// The chain: `c0` over the numerics, the model's four hashes and `max_tokens`, then per text
    /// `c = H(c, text, ids, vector)` (`docs/RECEIPT.md`, "Embedding receipts").
    pub fn chain(&self) -> Hash {
        let m = &self.model;
        let c0 = Hasher::new("edgeproof embedding receipt v1")
            .hash(&self.numerics)
            .hash(&m.file_sha256)
            .hash(&m.tensors_root)
            .hash(&m.tokenizer)
            .hash(&m.chat_template)
            .u32(self.max_tokens as u32)
            .finish();
        self.texts.iter().fold(c0, |c, t| {
            let h = Hasher::new("edgeproof embedding text").hash(&c).bytes(t.text.as_bytes()).u32(t.ids.len() as u32);
            t.ids.iter().fold(h, |h, &id| h.u32(id)).hash(&t.vector).finish()
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<EmbeddingReceipt> {
        let r: EmbeddingReceipt = serde_json::from_str(s).map_err(|e| Error::BadReceipt(e.to_string()))?;
        if r.kind != EMBEDDING_KIND {
            return Err(Error::BadReceipt(format!("kind '{}' is not an embedding receipt", r.kind)));
        }
        if r.version != 1 {
            return Err(Error::UnsupportedReceiptVersion(r.version));
        }
        Ok(r)
    }
}

/// Vectors (as f32, exactly: 24-bit mantissas) and their receipt.
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub receipt: EmbeddingReceipt,
}

/// What embeds tokenized texts in the exact numerics: [`Encoder`] on the CPU, [`GpuEncoder`].
pub trait Embed {
    /// `[CLS] ... [SEP]`, at most `max_tokens` word pieces.
    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>>;
    /// One exact vector per tokenized text (at most [`BATCH`] texts).
    fn embed_ids_async(&self, texts: &[Vec<u32>]) -> impl Future<Output = Result<IMat>>;
}

impl Embed for Encoder<ExactWeight> {
    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        Encoder::tokenize(self, text, max_tokens)
    }

    fn embed_ids_async(&self, texts: &[Vec<u32>]) -> impl Future<Output = Result<IMat>> {
        std::future::ready(self.embed_ids(texts))
    }
}

impl Embed for GpuEncoder {
    fn tokenize(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        GpuEncoder::tokenize(self, text, max_tokens)
    }

    fn embed_ids_async(&self, texts: &[Vec<u32>]) -> impl Future<Output = Result<IMat>> {
        GpuEncoder::embed_ids_async(self, texts)
    }
}

/// Embed `texts` in the exact numerics, [`BATCH`] texts per pass, with `progress(done, total)`
/// after each pass (an error from it stops the work).
pub async fn embed_async<E: Embed>(
    enc: &E,
    model: &ModelCommitment,
    texts: &[String],
    max_tokens: usize,
    mut progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<Embedded> {
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| enc.tokenize(t, max_tokens)).collect::<Result<_>>()?;
    let (mut vectors, mut items) = (Vec::with_capacity(texts.len()), Vec::with_capacity(texts.len()));
    for (b, batch) in ids.chunks(BATCH).enumerate() {
        let v = enc.embed_ids_async(batch).await?;
        for (r, t) in batch.iter().enumerate() {
            let i = b * BATCH + r;
            vectors.push(v.row(r).iter().map(|&m| libm::ldexpf(m as f32, v.e[r])).collect());
            items.push(EmbeddedText { text: texts[i].clone(), ids: t.clone(), vector: vector_digest(&v, r) });
        }
        progress(vectors.len(), texts.len())?;
    }
    let mut receipt = EmbeddingReceipt {
        version: 1,
        kind: EMBEDDING_KIND.into(),
        numerics: encoder_digest(),
        model: model.clone(),
        max_tokens,
        texts: items,
        root: [0; 32],
        made_by: crate::receipt::engine_name(),
    };
    receipt.root = receipt.chain();
    Ok(Embedded { vectors, receipt })
}

/// [`embed_async`] where blocking is allowed ([`block_on`]: natively; in wasm32 on the CPU).
pub fn embed<E: Embed>(
    enc: &E,
    model: &ModelCommitment,
    texts: &[String],
    max_tokens: usize,
    progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<Embedded> {
    block_on(embed_async(enc, model, texts, max_tokens, progress))?
}

/// Why an embedding receipt did not verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedDivergence {
    /// The receipt's own chain does not match its fields.
    Root,
    Numerics,
    Model {
        field: &'static str,
    },
    /// Text `index`'s word pieces differ from the tokenizer's.
    Ids {
        index: usize,
    },
    /// Text `index`'s vector differs from the re-computed one.
    Vector {
        index: usize,
    },
}

impl std::fmt::Display for EmbedDivergence {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            EmbedDivergence::Root => write!(f, "the receipt's root does not match its contents"),
            EmbedDivergence::Numerics => write!(f, "made with other numerics"),
            EmbedDivergence::Model { field } => write!(f, "model {field} differs"),
            EmbedDivergence::Ids { index } => write!(f, "text {index}: word pieces differ"),
            EmbedDivergence::Vector { index } => write!(f, "text {index}: vector differs"),
        }
    }
}

/// [`verify_async`] where blocking is allowed ([`block_on`]: natively; in wasm32 on the CPU).
pub fn verify<E: Embed>(
    r: &EmbeddingReceipt,
    enc: &E,
    model: &ModelCommitment,
    progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<Vec<EmbedDivergence>> {
    block_on(verify_async(r, enc, model, progress))?
}

/// Re-embed every text of `r` and compare, with `progress(done, total)` per pass. Empty: verified.
pub async fn verify_async<E: Embed>(
    r: &EmbeddingReceipt,
    enc: &E,
    model: &ModelCommitment,
    mut progress: impl FnMut(usize, usize) -> Result<()>,
) -> Result<Vec<EmbedDivergence>> {
    let mut out = Vec::new();
    if r.chain() != r.root {
        out.push(EmbedDivergence::Root);
    }
    if r.numerics != encoder_digest() {
        out.push(EmbedDivergence::Numerics);
        return Ok(out);
    }
    for (field, want, have) in [
        ("file sha256", r.model.file_sha256, model.file_sha256),
        ("tensors root", r.model.tensors_root, model.tensors_root),
        ("tokenizer", r.model.tokenizer, model.tokenizer),
    ] {
        if want != have {
            out.push(EmbedDivergence::Model { field });
        }
    }
    if !out.iter().all(|d| *d == EmbedDivergence::Root) {
        return Ok(out);
    }
    // Texts whose ids match are re-embedded from those ids.
    let mut todo = Vec::new();
    for (i, t) in r.texts.iter().enumerate() {
        if enc.tokenize(&t.text, r.max_tokens)? == t.ids {
            todo.push(i);
        } else {
            out.push(EmbedDivergence::Ids { index: i });
        }
    }
    let mut done = 0;
    for batch in todo.chunks(BATCH) {
        let ids: Vec<Vec<u32>> = batch.iter().map(|&i| r.texts[i].ids.clone()).collect();
        let v = enc.embed_ids_async(&ids).await?;
        for (row, &i) in batch.iter().enumerate() {
            if vector_digest(&v, row) != r.texts[i].vector {
                out.push(EmbedDivergence::Vector { index: i });
            }
        }
        done += batch.len();
        progress(done, todo.len())?;
    }
    Ok(out)
}
