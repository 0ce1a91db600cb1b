//! The verifier: the receipt's own hashes and signature, the model, the prompt, then
//! re-execution as one teacher-forced pass that names the first diverging step (and layer,
//! with the trace), then where generation ends.

use super::{
    keyed_digests, merkle_root, Body, FinishReason, Hash, ModelCommitment, Public, Receipt, Recording, FORMAT_VERSION,
    MODE_EXACT,
};
use crate::backend::exact::residual_digest;
use crate::engine::{block_on, StopState};
use crate::error::Result;
use crate::gguf::{Gguf, Metadata};
use crate::numerics::numerics_digest;
use crate::sampling::sample;
use crate::tokenizer::Tokenizer;
use rayon::prelude::*;

/// The first thing that does not check out, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// A hash in the receipt does not match the fields it covers (edited without resealing):
    /// `what` is the section (`model`, `prompt`, `sampling`, `header`) or `chain` / `final`.
    Hash { what: &'static str },
    /// The signature does not check out: `what` is `key` (not a P-256 point), `fingerprint`
    /// (not the key's) or `value` (not this receipt's signature by this key).
    Signature { what: &'static str },
    /// A format version or mode this build does not verify.
    Format { what: &'static str },
    /// The receipt was made under other numerics than this build implements.
    Numerics,
    /// The model file given is not the committed one: `field` of the model commitment.
    Model { field: &'static str },
    /// The sampling settings are not ones generation uses: `eog` (the end-of-generation ids
    /// are not the model's) or `settings` (out of range, or a greedy receipt whose top-k,
    /// top-p or seed are not 0, 1 and 0).
    Sampling { what: &'static str },
    /// The prompt does not tokenize to the committed ids (first differing index).
    Prompt { index: usize },
    /// A private receipt's opening does not match its `prompt` or `output` commitment.
    Opening { what: &'static str },
    /// Re-execution: the first layer whose residual digest differs, at generation step `step`
    /// (1-based: step 1 is the prompt's forward pass).
    Layer { step: usize, layer: usize },
    /// Re-execution: the step's value (the root of its layer digests) differs, and there is no
    /// trace to name the layer.
    Step { step: usize },
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
            Divergence::Signature { what: "fingerprint" } => write!(f, "the signature's fingerprint is not its key's"),
            Divergence::Signature { what: "key" } => write!(f, "the signature's key is not a P-256 public key"),
            Divergence::Signature { .. } => write!(f, "the signature is not this receipt's by its key"),
            Divergence::Format { what } => write!(f, "unsupported receipt {what}"),
            Divergence::Numerics => write!(f, "made under other numerics than this build's"),
            Divergence::Model { field } => write!(f, "the model file does not match the committed {field}"),
            Divergence::Sampling { what: "eog" } => write!(f, "the end-of-generation ids are not the model's"),
            Divergence::Sampling { .. } => write!(f, "the sampling settings are not ones generation uses"),
            Divergence::Prompt { index } => {
                write!(f, "the prompt does not tokenize to the committed ids (index {index})")
            }
            Divergence::Opening { what } => write!(f, "the opening does not match the receipt's {what} commitment"),
            Divergence::Layer { step, layer } => write!(f, "token {step}: layer {layer}'s residual digest differs"),
            Divergence::Step { step } => {
                write!(f, "token {step}: the residual digests differ (the trace names the layer)")
            }
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

/// The verifier's findings, in the order checked; it verifies when there are none and it
/// re-executed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Divergence>,
    /// Generation steps whose residual digests and token were re-executed and matched.
    pub steps_matched: usize,
    /// The signer's fingerprint, when the receipt carries a good signature.
    pub signer: Option<String>,
    /// Whether it re-executed the receipt: not a private receipt without its opening, whose
    /// structure, hashes, signature and model alone were checked.
    pub reexecuted: bool,
}

impl Report {
    /// No findings (the receipt verifies if it was also [`Report::reexecuted`]).
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// Re-executed bit for bit with no findings.
    pub fn verified(&self) -> bool {
        self.ok() && self.reexecuted
    }

    /// One line: "verified", "checked, not re-executed" or the first divergence; and the signer.
    pub fn verdict(&self) -> String {
        let signer = match &self.signer {
            Some(f) => format!("signed by {f}"),
            None => "unsigned".into(),
        };
        match self.findings.first() {
            Some(d) => format!("NOT verified: {d}"),
            None if self.reexecuted => {
                format!("verified: {} tokens re-executed bit for bit; {signer}", self.steps_matched)
            }
            None => format!(
                "NOT re-executed: a private receipt without its opening (its hashes and the model check out); \
                 {signer}"
            ),
        }
    }
}

/// The hashes in `r` that do not match the fields they cover (edited without resealing).
pub fn hash_findings(r: &Receipt) -> Vec<Divergence> {
    let c = r.chain();
    let s = &r.sections;
    let mut found = Vec::new();
    for (what, want, have) in [
        ("model", c.model, s.model),
        ("prompt", c.prompt, s.prompt),
        ("sampling", c.sampling, s.sampling),
        ("header", c.c0, s.c0),
    ] {
        if want != have {
            found.push(Divergence::Hash { what });
        }
    }
    if *c.steps.last().unwrap_or(&c.c0) != r.chain {
        found.push(Divergence::Hash { what: "chain" });
    }
    if c.final_hash != r.final_hash {
        found.push(Divergence::Hash { what: "final" });
    }
    found
}

/// Verify `r` against the model in `gguf` by re-execution on `engine` (a fresh session of
/// that model); a private receipt's opening and a trace come attached to `r`. `model` is the
/// model's commitment if already computed. Progress: (phase, 0..1).
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
    r.check_counts()?;
    let mut rep = Report { findings: hash_findings(r), ..Report::default() };
    // 1. The receipt's own hashes (above) and its signature.
    match r.check_signature() {
        Some(Ok(f)) => rep.signer = Some(f),
        Some(Err(what)) => rep.findings.push(Divergence::Signature { what }),
        None => {}
    }
    if r.version != FORMAT_VERSION && r.version != 1 {
        rep.findings.push(Divergence::Format { what: "version" });
    }
    if r.mode != MODE_EXACT {
        rep.findings.push(Divergence::Format { what: "mode" });
    }
    if !rep.findings.iter().all(|d| matches!(d, Divergence::Hash { .. } | Divergence::Signature { .. })) {
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
    // The settings as generation would have committed them: the model's end-of-generation
    // ids (else a cut output could claim to have ended), and one form per greedy request.
    if r.sampling.eog != tok.eog_ids() {
        rep.findings.push(Divergence::Sampling { what: "eog" });
    }
    if !r.sampling.params().is_canonical() {
        // Settings generation never uses cannot be re-executed as generation would run them.
        rep.findings.push(Divergence::Sampling { what: "settings" });
        return Ok(rep);
    }
    // 3. The prompt: committed in the clear, or opened (its ids recomputed, the commitments
    // checked against the opening).
    let opened;
    let (p, salt) = match (&r.body, &r.opening) {
        (Body::Public(p), _) => {
            let ids = p.prompt.ids(meta, tok)?;
            if ids != p.prompt_ids {
                let index = ids
                    .iter()
                    .zip(&p.prompt_ids)
                    .position(|(a, b)| a != b)
                    .unwrap_or(ids.len().min(p.prompt_ids.len()));
                rep.findings.push(Divergence::Prompt { index });
                return Ok(rep);
            }
            (p, None)
        }
        (Body::Private(_), None) => return Ok(rep),
        (Body::Private(k), Some(o)) => {
            let prompt_ids = o.prompt.ids(meta, tok)?;
            let have = o.commitments(&prompt_ids);
            let before = rep.findings.len();
            if have.prompt != k.prompt {
                rep.findings.push(Divergence::Opening { what: "prompt" });
            }
            if have.output != k.output {
                rep.findings.push(Divergence::Opening { what: "output" });
            }
            if o.tokens.len() != r.steps.len() {
                rep.findings.push(Divergence::Opening { what: "output" });
            }
            if rep.findings.len() > before {
                return Ok(rep);
            }
            opened =
                Public { prompt: o.prompt.clone(), prompt_ids, tokens: o.tokens.clone(), output: o.output.clone() };
            (&opened, Some(o.salt))
        }
    };
    rep.reexecuted = true;
    reexecute(r, p, salt, tok, engine, progress, &mut rep).await?;
    Ok(rep)
}

/// Steps 4 and 5: re-execution, teacher-forced (the prompt and the first tokens in one pass,
/// then the rest in chunks; batched and stepwise give the same bits), one logits row per step;
/// then where generation ends, and the text.
async fn reexecute(
    r: &Receipt,
    pub_: &Public,
    salt: Option<Hash>,
    tok: &Tokenizer,
    engine: &mut dyn Recording,
    progress: &mut dyn FnMut(&str, f32) -> Result<()>,
    rep: &mut Report,
) -> Result<()> {
    let (prompt, tokens) = (&pub_.prompt_ids, &pub_.tokens);
    let (p, n) = (prompt.len(), tokens.len());
    if p == 0 {
        rep.findings.push(Divergence::Prompt { index: 0 });
        return Ok(());
    }
    let ctx = engine.config().ctx_len;
    let n_vocab = engine.config().n_vocab;
    // A token outside the vocabulary cannot have been sampled: re-execute up to its step, where
    // the sampled token differs, rather than feed it to the model.
    let n_run = tokens.iter().position(|&t| t as usize >= n_vocab).map_or(n, |k| k + 1);
    let seq: Vec<u32> = prompt.iter().chain(&tokens[..n_run.saturating_sub(1)]).copied().collect();
    if seq.len() > ctx {
        rep.findings.push(Divergence::Context { len: seq.len(), ctx });
        return Ok(());
    }
    let params = r.sampling.params();
    engine.record_residuals();
    // Positions per pass: each pass reads every weight once, so more rows per pass are faster;
    // a pass's logits stay under 32 MiB (SmolLM2: 170 rows; Gemma 3's vocabulary: 64).
    let chunk = ((32 << 20) / (4 * n_vocab.max(1))).clamp(64, 256);
    let mut a = 0;
    let mut step = 0;
    while step < n_run {
        let b = if a == 0 { (p + chunk).min(seq.len()) } else { (a + chunk).min(seq.len()) };
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
        // Each row's digests and sampled token, rows in parallel (they are independent), then
        // checked in order.
        let per_row: Vec<(Vec<Hash>, Result<u32>)> = rows
            .par_iter()
            .enumerate()
            .map(|(k, rr)| {
                let pos = a + rr.start;
                let mut digests: Vec<Hash> =
                    res.iter().enumerate().map(|(l, x)| residual_digest(l, pos, x, rr.clone())).collect();
                if let Some(salt) = &salt {
                    digests = keyed_digests(salt, &digests);
                }
                let row = rr.end - 1 - first;
                (digests, sample(&logits[row * n_vocab..(row + 1) * n_vocab], &params, (step + k) as u64))
            })
            .collect();
        for (digests, got) in per_row {
            if r.steps.get(step) != Some(&merkle_root(&digests)) {
                // The trace names the layer where it is the receipt's (its digests give the
                // committed step value).
                let committed =
                    r.trace.as_ref().and_then(|t| t.get(step)).filter(|c| r.steps.get(step) == Some(&merkle_root(c)));
                rep.findings.push(match committed {
                    Some(c) => {
                        let layer = (0..digests.len().max(c.len())).find(|&l| digests.get(l) != c.get(l));
                        Divergence::Layer { step: step + 1, layer: layer.unwrap_or(0) }
                    }
                    None => Divergence::Step { step: step + 1 },
                });
            }
            let got = got?;
            if got != tokens[step] {
                rep.findings.push(Divergence::Token { step: step + 1, committed: tokens[step], recomputed: got });
            }
            if matches!(
                rep.findings.last(),
                Some(Divergence::Layer { .. } | Divergence::Step { .. } | Divergence::Token { .. })
            ) {
                // Later positions were computed from a diverged sequence: stop at the first.
                return Ok(());
            }
            step += 1;
            rep.steps_matched = step;
            progress("re-executing", step as f32 / n as f32)?;
        }
        a = b;
    }
    let mut st = StopState::new(p, ctx, r.sampling.max_tokens as usize, &r.sampling.stop, &r.sampling.eog);
    for &id in tokens {
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
    } else if st.text != pub_.output {
        rep.findings.push(Divergence::Output);
    }
    Ok(())
}
