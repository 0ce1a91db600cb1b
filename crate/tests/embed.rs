//! all-MiniLM-L6-v2 embeddings: exact vectors against an independent f32 reference (numpy in
//! float64, checked against candle's BERT: `scripts/minilm_reference.py`), retrieval, batch
//! invariance, and embedding receipts.

use edgeproof::backend::exact::ExactWeight;
use edgeproof::embed::{self, convert_dir, EmbedDivergence, EmbeddingReceipt, Encoder, DEFAULT_MAX_TOKENS};
use edgeproof::gguf::Gguf;
use edgeproof::receipt::ModelCommitment;
use serde_json::Value as Json;
use std::sync::OnceLock;

mod common;

fn gguf() -> &'static Gguf {
    static G: OnceLock<Gguf> = OnceLock::new();
    G.get_or_init(|| convert_dir(&common::minilm_dir()).expect("convert all-MiniLM-L6-v2"))
}

fn encoder() -> &'static Encoder<ExactWeight> {
    static E: OnceLock<Encoder<ExactWeight>> = OnceLock::new();
    E.get_or_init(|| Encoder::load(gguf()).expect("load the converted encoder"))
}

fn commitment() -> &'static ModelCommitment {
    static M: OnceLock<ModelCommitment> = OnceLock::new();
    M.get_or_init(|| ModelCommitment::of(gguf(), |_| {}).expect("commitment"))
}

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/minilm");

/// Sentences, passages and queries (with each query's passage), and their reference vectors.
struct Reference {
    sentences: Vec<String>,
    passages: Vec<String>,
    queries: Vec<(String, usize)>,
    vectors: Vec<Vec<f32>>,
    tokens: Vec<usize>,
}

fn reference() -> &'static Reference {
    static R: OnceLock<Reference> = OnceLock::new();
    R.get_or_init(|| {
        let read = |f: &str| std::fs::read(format!("{DATA}/{f}")).unwrap_or_else(|e| panic!("{DATA}/{f}: {e}"));
        // Lines are kept as written (one has trailing spaces).
        let text = String::from_utf8(read("sentences.txt")).expect("UTF-8");
        let sentences: Vec<String> = text.lines().map(str::to_string).collect();
        let ret: Json = serde_json::from_slice(&read("retrieval.json")).expect("retrieval.json");
        let passages = ret["passages"]
            .as_array()
            .expect("passages")
            .iter()
            .map(|p| p.as_str().expect("text").to_string())
            .collect();
        let queries = ret["queries"]
            .as_array()
            .expect("queries")
            .iter()
            .map(|q| (q["text"].as_str().expect("text").to_string(), q["passage"].as_u64().expect("passage") as usize))
            .collect();
        let meta: Json = serde_json::from_slice(&read("reference.json")).expect("reference.json");
        let tokens = ["sentence_tokens", "passage_tokens", "query_tokens"]
            .iter()
            .flat_map(|k| meta[*k].as_array().expect(k).iter().map(|n| n.as_u64().expect("count") as usize))
            .collect();
        let bin = read("reference.bin");
        let vectors = bin
            .chunks_exact(384 * 4)
            .map(|v| v.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            .collect();
        Reference { sentences, passages, queries, vectors, tokens }
    })
}

fn all_texts(r: &Reference) -> Vec<String> {
    r.sentences.iter().chain(&r.passages).cloned().chain(r.queries.iter().map(|q| q.0.clone())).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// Index of the passage nearest to each query (cosine; ties to the lowest index).
fn top_passages(r: &Reference, vectors: &[Vec<f32>]) -> Vec<usize> {
    let (ns, np) = (r.sentences.len(), r.passages.len());
    let passages = &vectors[ns..ns + np];
    vectors[ns + np..]
        .iter()
        .map(|q| {
            (0..np)
                .max_by(|&a, &b| cosine(q, &passages[a]).total_cmp(&cosine(q, &passages[b])).then(b.cmp(&a)))
                .expect("passages")
        })
        .collect()
}

#[test]
fn exact_vectors_match_the_f32_reference_and_keep_the_retrieval_ranking() {
    let r = reference();
    let texts = all_texts(r);
    assert_eq!((texts.len(), r.vectors.len(), r.tokens.len()), (365, 365, 365), "the reference's counts");
    let enc = encoder();
    for (i, t) in texts.iter().enumerate() {
        let n = enc.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize").len();
        assert_eq!(n, r.tokens[i], "text {i} ({t:?}): word pieces, against the reference's tokenizer");
    }
    let out = embed::embed(enc, commitment(), &texts, DEFAULT_MAX_TOKENS, |_, _| Ok(())).expect("embed");
    let cos: Vec<f64> = out.vectors.iter().zip(&r.vectors).map(|(a, b)| cosine(a, b)).collect();
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let (worst, wi) = cos.iter().enumerate().map(|(i, &c)| (c, i)).fold((2.0, 0), |m, c| if c.0 < m.0 { c } else { m });
    println!("exact vs reference over {} texts: mean cosine {mean:.6}, worst {worst:.6} (text {wi})", cos.len());
    assert!(mean >= 0.995, "mean cosine {mean} below 0.995");
    assert!(worst >= 0.98, "worst cosine {worst} (text {wi}: {:?}) below 0.98", texts[wi]);
    let want: Vec<usize> = r.queries.iter().map(|q| q.1).collect();
    assert_eq!(top_passages(r, &r.vectors), want, "the reference ranks each query's passage first");
    assert_eq!(top_passages(r, &out.vectors), want, "exact vectors: each query's nearest passage");
    // Sentences 299 and 300 differ only past the 256th word piece.
    assert_eq!(out.vectors[299], out.vectors[300], "truncation at 256 word pieces");
    // Unit vectors.
    for (i, v) in out.vectors.iter().enumerate() {
        let n: f64 = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!((n - 1.0).abs() < 1e-6, "text {i}: norm {n}");
    }
}

#[test]
fn f32_path_matches_the_reference() {
    let r = reference();
    let enc = Encoder::load_f32(gguf()).expect("f32 encoder");
    let texts = &all_texts(r)[..40];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| enc.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize")).collect();
    let v = enc.embed_ids(&ids).expect("embed");
    let worst = v.iter().zip(&r.vectors).map(|(a, b)| cosine(a, b)).fold(2.0, f64::min);
    println!("f32 (Q8_0 weights) vs reference, 40 texts: worst cosine {worst:.6}");
    assert!(worst >= 0.98, "worst cosine {worst}");
}

#[test]
fn a_text_gets_the_same_bits_alone_and_in_any_batch() {
    let r = reference();
    let enc = encoder();
    let texts = &r.sentences[..40];
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| enc.tokenize(t, DEFAULT_MAX_TOKENS).expect("tokenize")).collect();
    let alone: Vec<_> = ids.iter().map(|t| enc.embed_ids(std::slice::from_ref(t)).expect("alone")).collect();
    let together = enc.embed_ids(&ids).expect("batch of 40");
    let mut reversed = ids.clone();
    reversed.reverse();
    let backwards = enc.embed_ids(&reversed).expect("reversed");
    for (i, a) in alone.iter().enumerate() {
        assert_eq!((a.row(0), a.e[0]), (together.row(i), together.e[i]), "text {i}: alone vs in a batch of 40");
        let j = ids.len() - 1 - i;
        assert_eq!((a.row(0), a.e[0]), (backwards.row(j), backwards.e[j]), "text {i}: alone vs reversed batch");
    }
}

#[test]
fn embedding_receipts_verify_and_name_what_was_changed() {
    let enc = encoder();
    let m = commitment();
    let texts: Vec<String> = reference().sentences[..5].to_vec();
    let out = embed::embed(enc, m, &texts, DEFAULT_MAX_TOKENS, |_, _| Ok(())).expect("embed");
    let json = out.receipt.to_json();
    let r = EmbeddingReceipt::from_json(&json).expect("parse");
    assert_eq!(r, out.receipt);
    assert_eq!(embed::verify(&r, enc, m, |_, _| Ok(())).expect("verify"), vec![]);
    let reseal = |r: &mut EmbeddingReceipt| r.root = r.chain();
    let check = |f: &dyn Fn(&mut EmbeddingReceipt), resealed: bool, want: Vec<EmbedDivergence>| {
        let mut t = r.clone();
        f(&mut t);
        if resealed {
            reseal(&mut t);
        }
        assert_eq!(embed::verify(&t, enc, m, |_, _| Ok(())).expect("verify"), want, "resealed {resealed}");
    };
    check(&|t| t.texts[2].text.push('!'), true, vec![EmbedDivergence::Ids { index: 2 }]);
    check(&|t| t.texts[1].vector[0] ^= 1, true, vec![EmbedDivergence::Vector { index: 1 }]);
    check(&|t| t.texts[3].vector[31] ^= 0x80, false, vec![EmbedDivergence::Root, EmbedDivergence::Vector { index: 3 }]);
    check(&|t| t.texts[0].ids[1] += 1, true, vec![EmbedDivergence::Ids { index: 0 }]);
    check(
        &|t| t.max_tokens = 4,
        true,
        vec![0, 1, 2, 3, 4].into_iter().map(|index| EmbedDivergence::Ids { index }).collect(),
    );
    check(&|t| t.model.tensors_root[0] ^= 1, true, vec![EmbedDivergence::Model { field: "tensors root" }]);
    check(&|t| t.numerics[5] ^= 1, true, vec![EmbedDivergence::Numerics]);
    assert_eq!(EmbeddingReceipt::from_json("{}").map_err(|e| e.code()), Err("BAD_RECEIPT"));
}

#[test]
fn conversion_errors_are_typed() {
    let dir = common::minilm_dir();
    let config = std::fs::read_to_string(dir.join("config.json")).expect("config");
    let tok = std::fs::read_to_string(dir.join("tokenizer.json")).expect("tokenizer");
    let st = std::fs::read(dir.join("model.safetensors")).expect("weights");
    let code =
        |st: &[u8], config: &str| edgeproof::model::bert::convert(st, config, &tok).map(|_| ()).map_err(|e| e.code());
    assert_eq!(code(&st[..st.len() / 2], &config), Err("CORRUPT"), "a truncated file");
    assert_eq!(code(&st[..7], &config), Err("CORRUPT"), "shorter than its header length");
    assert_eq!(code(&st, "{"), Err("CORRUPT"), "config.json that is not JSON");
    assert_eq!(code(&st, &config.replace("\"gelu\"", "\"relu\"")), Err("UNSUPPORTED_ARCHITECTURE"));
    assert_eq!(code(&st, &config.replace("\"bert\"", "\"gpt2\"")), Err("UNSUPPORTED_ARCHITECTURE"));
    // A NaN in a weight: the first F32 of the word embeddings.
    let n = u64::from_le_bytes(st[..8].try_into().expect("8 bytes")) as usize;
    let header: Json = serde_json::from_slice(&st[8..8 + n]).expect("header");
    let at = 8 + n + header["embeddings.word_embeddings.weight"]["data_offsets"][0].as_u64().expect("offset") as usize;
    let mut bad = st.clone();
    bad[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(code(&bad, &config), Err("BAD_TENSOR"));
}
