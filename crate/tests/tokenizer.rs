//! The tokenizers against Hugging Face `tokenizers` and jinja2: token ids,
//! decoding and chat prompts must be equal on every fixture of
//! crate/tests/data/tokenizer_*.json (written by scripts/tokenizer_fixtures.py,
//! and tokenizer_minilm.json by scripts/wordpiece_fixtures.py).

mod common;

use edgeproof::gguf::{parse_header, Metadata, Value};
use edgeproof::tokenizer::wordpiece::WordPiece;
use edgeproof::tokenizer::{ChatTemplate, Message, StreamDecoder, Tokenizer};
use edgeproof::Error;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

struct Model {
    meta: Metadata,
    tok: Tokenizer,
    fixture: Json,
}

/// The metadata of a model file, reading only as much of it as the header needs.
fn read_metadata(name: &str) -> Metadata {
    let path = common::model_path(name);
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buf = Vec::new();
    let mut want = 1u64 << 20;
    loop {
        (&mut file).take(want - buf.len() as u64).read_to_end(&mut buf).unwrap();
        match parse_header(&buf) {
            Ok(h) => return h.metadata,
            Err(Error::Truncated { offset, need, .. }) if (buf.len() as u64) == want => {
                want = (offset + need).max(want * 2);
            }
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
}

fn model(name: &str) -> &'static Model {
    static SMOLLM2: OnceLock<Model> = OnceLock::new();
    static GEMMA3: OnceLock<Model> = OnceLock::new();
    let cell = if name == "smollm2" { &SMOLLM2 } else { &GEMMA3 };
    cell.get_or_init(|| {
        let meta = read_metadata(name);
        let tok = Tokenizer::from_metadata(&meta).unwrap();
        let path = format!("{}/tests/data/tokenizer_{name}.json", env!("CARGO_MANIFEST_DIR"));
        let fixture = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        Model { meta, tok, fixture }
    })
}

fn rows<'a>(m: &'a Model, section: &str) -> &'a [Json] {
    m.fixture[section].as_array().unwrap_or_else(|| panic!("fixture has no '{section}'"))
}

fn text(row: &Json) -> &str {
    row["text"].as_str().unwrap()
}

fn ids(row: &Json) -> Vec<u32> {
    row["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// Ids around the first difference, for a readable report.
fn window(ids: &[u32], at: usize) -> String {
    let lo = at.saturating_sub(8);
    let hi = (at + 8).min(ids.len());
    format!("{}{:?}{}", if lo > 0 { "... " } else { "" }, &ids[lo..hi], if hi < ids.len() { " ..." } else { "" })
}

fn short(s: &str) -> String {
    let c: String = s.chars().take(120).collect();
    if c.len() < s.len() {
        format!("{c:?}... ({} bytes)", s.len())
    } else {
        format!("{c:?}")
    }
}

/// Every fixture's ids, counting all mismatches before failing.
fn check_ids(name: &str) {
    let m = model(name);
    assert!(rows(m, "cases").len() >= 300 && rows(m, "plain").len() >= 100, "{name}: the fixture looks truncated");
    let mut failures = 0;
    let mut total = 0;
    for (section, add_special, parse_special) in
        [("cases", false, true), ("plain", false, false), ("with_special", true, true)]
    {
        for row in rows(m, section) {
            total += 1;
            let want = ids(row);
            let got = m.tok.encode(text(row), add_special, parse_special).unwrap();
            if got != want {
                failures += 1;
                let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
                eprintln!(
                    "{name} {section}: {}\n  first difference at {at}\n  HF:   {}\n  ours: {}",
                    short(text(row)),
                    window(&want, at),
                    window(&got, at)
                );
            }
        }
    }
    eprintln!("{name}: {} of {total} fixture encodings equal", total - failures);
    assert_eq!(failures, 0, "{name}: {failures} of {total} encodings differ from HF tokenizers");
}

/// Decoding HF's ids gives HF's text; where that is the input, our round trip is exact too.
fn check_decode(name: &str) {
    let m = model(name);
    let mut failures = 0;
    for row in rows(m, "cases") {
        let want = row["decoded"].as_str().unwrap();
        let got = m.tok.decode(&ids(row)).unwrap();
        if got != want {
            failures += 1;
            eprintln!("{name} decode: {}\n  HF:   {}\n  ours: {}", short(text(row)), short(want), short(&got));
        }
        if want == text(row) {
            let ours = m.tok.encode(text(row), false, true).unwrap();
            let back = m.tok.decode(&ours).unwrap();
            if back != text(row) {
                failures += 1;
                eprintln!("{name} round trip: {} came back as {}", short(text(row)), short(&back));
            }
        }
    }
    assert_eq!(failures, 0, "{name}: {failures} decoding differences");
}

/// Token by token, the stream decoder emits exactly `decode`'s text.
fn check_stream(name: &str) {
    let m = model(name);
    for row in rows(m, "cases") {
        let ids = ids(row);
        let mut sd = StreamDecoder::default();
        let mut out = String::new();
        for &id in &ids {
            out += &sd.push(&m.tok, id).unwrap();
        }
        out += &sd.finish();
        assert_eq!(out, m.tok.decode(&ids).unwrap(), "{name} stream: {}", short(text(row)));
    }
}

/// Chat prompts equal jinja2's rendering of the real template, and their ids HF's.
fn check_chat(name: &str, expect: ChatTemplate) {
    let m = model(name);
    let template = ChatTemplate::from_metadata(&m.meta).unwrap();
    assert_eq!(template, expect);
    for row in rows(m, "chat") {
        let messages: Vec<Message> = row["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| Message::new(x["role"].as_str().unwrap(), x["content"].as_str().unwrap()))
            .collect();
        let gen = row["add_generation_prompt"].as_bool().unwrap();
        let got = template.render(&messages, gen);
        match text(row) {
            "error" => assert!(
                matches!(got, Err(Error::InvalidArgument(_))),
                "{name} {messages:?}: expected an error, got {got:?}"
            ),
            want => {
                let got = got.unwrap();
                assert_eq!(got, want, "{name} {messages:?}");
                assert_eq!(m.tok.encode(&got, true, true).unwrap(), ids(row), "{name} chat ids for {got:?}");
            }
        }
    }
}

#[test]
fn smollm2_ids_equal_hf() {
    check_ids("smollm2");
}

#[test]
fn gemma3_ids_equal_hf() {
    check_ids("gemma3");
}

#[test]
fn smollm2_decode() {
    check_decode("smollm2");
}

#[test]
fn gemma3_decode() {
    check_decode("gemma3");
}

#[test]
fn smollm2_stream() {
    check_stream("smollm2");
}

#[test]
fn gemma3_stream() {
    check_stream("gemma3");
}

#[test]
fn smollm2_chat() {
    let system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face".to_string();
    check_chat("smollm2", ChatTemplate::ChatMl { default_system: Some(system) });
}

#[test]
fn gemma3_chat() {
    check_chat("gemma3", ChatTemplate::Gemma);
}

#[test]
fn special_ids() {
    let s = &model("smollm2").tok;
    assert_eq!((s.bos(), s.eos(), s.add_bos(), s.vocab_size()), (Some(1), Some(2), false, 49152));
    assert_eq!(s.eog_ids(), &[0, 2], "<|endoftext|> and <|im_end|>");
    assert_eq!(s.id_of("<|im_start|>"), Some(1));
    assert_eq!(s.encode("hi", true, true).unwrap(), s.encode("hi", false, true).unwrap());

    let g = &model("gemma3").tok;
    assert_eq!((g.bos(), g.eos(), g.add_bos(), g.vocab_size()), (Some(2), Some(1), true, 262144));
    assert_eq!(g.eog_ids(), &[1, 106], "<eos> and <end_of_turn>");
    assert!(g.is_eog(106) && !g.is_eog(105));
    assert_eq!(g.encode("", true, true).unwrap(), [2]);
    assert_eq!(g.id_of("<end_of_turn>"), Some(106));
    assert_eq!(g.id_of("no such piece"), None);
}

/// A character split over byte tokens comes out whole, once, at its last byte.
#[test]
fn stream_holds_back_partial_characters() {
    let g = &model("gemma3").tok;
    let ids = g.encode("a\u{10fffd}b", false, false).unwrap();
    assert_eq!(ids.len(), 6, "U+10FFFD is not in the vocabulary: four byte tokens");
    let mut sd = StreamDecoder::default();
    let out: Vec<String> = ids.iter().map(|&id| sd.push(g, id).unwrap()).collect();
    assert_eq!(out, ["a", "", "", "", "\u{10fffd}", "b"]);

    // Bytes that can never become UTF-8 are replaced at once; a cut-off character at the end.
    let b = |x: u8| g.id_of(&format!("<0x{x:02X}>")).unwrap();
    let mut sd = StreamDecoder::default();
    assert_eq!(sd.push(g, b(0xff)).unwrap(), "\u{fffd}");
    assert_eq!(sd.push(g, b(0xe2)).unwrap(), "");
    assert_eq!(sd.finish(), "\u{fffd}");
    assert_eq!(g.decode(&[b(0xff), b(0xe2)]).unwrap(), "\u{fffd}\u{fffd}");
}

#[test]
fn bad_token_ids_are_errors() {
    for name in ["smollm2", "gemma3"] {
        let t = &model(name).tok;
        let bad = t.vocab_size() as u32;
        assert!(matches!(t.decode(&[1, bad]), Err(Error::Tokenizer(_))));
        assert!(matches!(t.token_bytes(bad), Err(Error::Tokenizer(_))));
        assert!(matches!(t.token_text(u32::MAX), Err(Error::Tokenizer(_))));
        assert!(matches!(StreamDecoder::default().push(t, bad), Err(Error::Tokenizer(_))));
    }
}

fn strs(items: &[&str]) -> Value {
    Value::Array(8, items.iter().map(|s| Value::Str(s.to_string())).collect())
}

/// A tiny byte-level BPE vocabulary: the 256 byte characters, then "ab" from one merge.
fn tiny_bpe() -> Metadata {
    let smol = &model("smollm2").meta;
    let mut tokens: Vec<String> =
        smol.get_str_array("tokenizer.ggml.tokens").unwrap()[17..17 + 256].iter().map(|s| s.to_string()).collect();
    tokens.push("ab".into());
    let mut meta = Metadata::new();
    meta.set("tokenizer.ggml.model", Value::Str("gpt2".into()));
    meta.set("tokenizer.ggml.pre", Value::Str("gpt2".into()));
    meta.set("tokenizer.ggml.tokens", strs(&tokens.iter().map(String::as_str).collect::<Vec<_>>()));
    meta.set("tokenizer.ggml.merges", strs(&["a b"]));
    meta
}

#[test]
fn synthetic_bpe() {
    let meta = tiny_bpe();
    let t = Tokenizer::from_metadata(&meta).unwrap();
    let ab = t.id_of("ab").unwrap();
    let a = t.id_of("a").unwrap();
    assert_eq!(t.encode("aab", true, true).unwrap(), [a, ab], "no BOS by default for gpt2");
    assert_eq!(t.decode(&t.encode("héllo wörld ✓", false, false).unwrap()).unwrap(), "héllo wörld ✓");
    assert_eq!((t.bos(), t.eos(), t.eog_ids()), (None, None, &[][..]));

    // A byte whose character is not in the vocabulary is dropped, as HF does; the
    // bytes around it then meet and can merge.
    let mut meta = meta;
    let tokens: Vec<&str> =
        meta.get_str_array("tokenizer.ggml.tokens").unwrap().into_iter().filter(|&t| t != "x").collect();
    meta.set("tokenizer.ggml.tokens", strs(&tokens));
    let t = Tokenizer::from_metadata(&meta).unwrap();
    assert_eq!(t.encode("axb", false, false).unwrap(), [t.id_of("ab").unwrap()]);
}

#[test]
fn missing_or_bad_metadata_is_a_typed_error() {
    let err = |meta: &Metadata| Tokenizer::from_metadata(meta).err().expect("must fail");
    assert_eq!(err(&Metadata::new()), Error::MissingKey("tokenizer.ggml.model".into()));

    let mut m = Metadata::new();
    m.set("tokenizer.ggml.model", Value::Str("gpt2".into()));
    assert_eq!(err(&m), Error::MissingKey("tokenizer.ggml.tokens".into()));
    m.set("tokenizer.ggml.tokens", Value::Str("not an array".into()));
    assert!(matches!(err(&m), Error::WrongType { .. }));

    let m = tiny_bpe();
    let mut no_merges = Metadata::new();
    for (k, v) in m.entries().iter().filter(|(k, _)| k != "tokenizer.ggml.merges") {
        no_merges.set(k, v.clone());
    }
    assert_eq!(err(&no_merges), Error::MissingKey("tokenizer.ggml.merges".into()));

    for (key, value) in [
        ("tokenizer.ggml.model", Value::Str("wordpiece".into())),
        ("tokenizer.ggml.pre", Value::Str("qwen2".into())),
        ("tokenizer.ggml.merges", strs(&["a c", "nospace"])),
        ("tokenizer.ggml.token_type", Value::Array(5, vec![Value::I32(1); 3])),
        ("tokenizer.ggml.bos_token_id", Value::U32(1 << 20)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(true)),
    ] {
        let mut bad = m.clone();
        bad.set(key, value);
        assert!(matches!(err(&bad), Error::Tokenizer(_)), "{key}: {:?}", err(&bad));
    }

    // Templates: none for an unknown architecture, and an unknown template.
    let mut m = Metadata::new();
    m.set("general.architecture", Value::Str("llama".into()));
    assert!(matches!(ChatTemplate::from_metadata(&m), Err(Error::Tokenizer(_))));
    m.set("tokenizer.chat_template", Value::Str("{{ messages }}".into()));
    assert!(matches!(ChatTemplate::from_metadata(&m), Err(Error::Tokenizer(_))));
}

/// Load and encode fast enough for a page: both well under a second in release.
#[test]
fn speed() {
    let gpl = rows(model("smollm2"), "cases").iter().map(text).max_by_key(|t| t.len()).unwrap();
    assert!(gpl.len() > 30_000, "the whole GPL-3 is a fixture");
    for name in ["smollm2", "gemma3"] {
        let m = model(name);
        let t0 = Instant::now();
        let tok = Tokenizer::from_metadata(&m.meta).unwrap();
        let load = t0.elapsed();
        let t0 = Instant::now();
        let n = tok.encode(gpl, false, true).unwrap().len();
        let encode = t0.elapsed();
        let t0 = Instant::now();
        tok.decode(&tok.encode(gpl, false, true).unwrap()).unwrap();
        let round = t0.elapsed();
        eprintln!(
            "{name}: load {load:?}, encode GPL-3 ({} bytes -> {n} tokens) {encode:?}, encode+decode {round:?}",
            gpl.len()
        );
        let limit = Duration::from_secs(1);
        assert!(load < limit && encode < limit, "{name} is too slow: load {load:?}, encode {encode:?}");
    }
}

/// Long runs encode without error (a look-ahead regex once overflowed its
/// backtracking stack on a megabyte of spaces) and decode back.
#[test]
fn long_inputs() {
    for name in ["smollm2", "gemma3"] {
        let t = &model(name).tok;
        for s in [" ".repeat(1 << 20), "\t \n".repeat(50_000), "x ".repeat(100_000), "7".repeat(100_000)] {
            let ids = t.encode(&s, false, true).unwrap_or_else(|e| panic!("{name}, {} bytes: {e}", s.len()));
            assert!(t.decode(&ids).unwrap() == s, "{name}: {} bytes do not round-trip", s.len());
        }
    }
}

// WordPiece (all-MiniLM-L6-v2): built from the model's tokenizer.json, checked
// against crate/tests/data/tokenizer_minilm.json.

struct MiniLm {
    json: String,
    tok: WordPiece,
    fixture: Json,
}

fn minilm() -> &'static MiniLm {
    static MINILM: OnceLock<MiniLm> = OnceLock::new();
    MINILM.get_or_init(|| {
        let path = common::minilm_dir().join("tokenizer.json");
        let json = std::fs::read_to_string(&path).unwrap();
        let fixture_path = format!("{}/tests/data/tokenizer_minilm.json", env!("CARGO_MANIFEST_DIR"));
        let fixture: Json = serde_json::from_str(&std::fs::read_to_string(&fixture_path).unwrap()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(json.as_bytes())),
            fixture["meta"]["tokenizer_json_sha256"].as_str().unwrap(),
            "{} is not the tokenizer.json the fixture was made from",
            path.display()
        );
        let tok = WordPiece::from_tokenizer_json(&json).unwrap();
        MiniLm { json, tok, fixture }
    })
}

fn max_len(row: &Json) -> usize {
    row["max_len"].as_u64().unwrap() as usize
}

/// Every row's ids; the number that differ, each reported with a window of ids.
fn wordpiece_failures(label: &str, tok: &WordPiece, rows: &[Json]) -> usize {
    let mut failures = 0;
    for row in rows {
        let want = ids(row);
        let got = tok.encode(text(row), max_len(row)).unwrap();
        if got != want {
            failures += 1;
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
            eprintln!(
                "{label}: {} (max_len {})\n  first difference at {at}\n  HF:   {}\n  ours: {}",
                short(text(row)),
                max_len(row),
                window(&want, at),
                window(&got, at)
            );
        }
    }
    failures
}

#[test]
fn minilm_ids_equal_hf() {
    let m = minilm();
    let rows = m.fixture["cases"].as_array().unwrap();
    assert!(rows.len() >= 400, "the fixture looks truncated");
    assert!(rows.iter().any(|r| max_len(r) == 8) && rows.iter().any(|r| ids(r).len() == 256), "no truncated cases");
    let failures = wordpiece_failures("minilm", &m.tok, rows);
    eprintln!("minilm: {} of {} fixture encodings equal", rows.len() - failures, rows.len());
    assert_eq!(failures, 0, "minilm: {failures} of {} encodings differ from HF tokenizers", rows.len());
}

/// The BertNormalizer's other settings (cased, accents kept, no cleaning) on the same vocabulary.
#[test]
fn minilm_normalizer_settings_equal_hf() {
    let m = minilm();
    let mut failures = 0;
    for variant in m.fixture["variants"].as_array().unwrap() {
        let mut json: Json = serde_json::from_str(&m.json).unwrap();
        for (k, v) in variant["normalizer"].as_object().unwrap() {
            json["normalizer"][k] = v.clone();
        }
        let tok = WordPiece::from_tokenizer_json(&json.to_string()).unwrap();
        failures += wordpiece_failures(
            &format!("minilm {}", variant["normalizer"]),
            &tok,
            variant["cases"].as_array().unwrap(),
        );
    }
    assert_eq!(failures, 0, "minilm: {failures} encodings with other normalizer settings differ from HF");
}

/// Every code point, alone and inside a word, in blocks of 4096 whose ids' hashes are HF's.
#[test]
fn minilm_every_code_point_equal_hf() {
    let m = minilm();
    let blocks = m.fixture["code_points"].as_array().unwrap();
    assert_eq!(blocks.len(), 0x110000 / 4096);
    let mut differ = Vec::new();
    for b in blocks {
        let start = b["start"].as_u64().unwrap() as u32;
        let mut text = String::new();
        for c in (start..start + 4096).filter_map(char::from_u32) {
            text.extend([' ', c, ' ', 'a', c, 'b']);
        }
        let got = m.tok.encode(&text, usize::MAX).unwrap();
        let bytes: Vec<u8> = got.iter().flat_map(|id| id.to_le_bytes()).collect();
        if got.len() as u64 != b["count"].as_u64().unwrap() || hex::encode(Sha256::digest(&bytes)) != b["sha256"] {
            differ.push(format!("U+{start:04X}.. ({} ids, HF {})", got.len(), b["count"]));
        }
    }
    assert!(differ.is_empty(), "minilm: blocks of code points that differ from HF: {differ:?}");
}

#[test]
fn minilm_vocabulary_and_limits() {
    let t = &minilm().tok;
    assert_eq!(t.vocab_size(), 30522);
    assert_eq!(
        (t.id_to_token(0), t.id_to_token(101), t.id_to_token(102)),
        (Some("[PAD]"), Some("[CLS]"), Some("[SEP]"))
    );
    assert_eq!(t.id_to_token(2075), Some("##ing"));
    assert_eq!(t.id_to_token(30522), None);
    assert_eq!(t.encode("", 256).unwrap(), [101, 102]);
    assert_eq!(t.encode("hello world", 2).unwrap(), [101, 102]);
    assert_eq!(t.encode("hello world", 3).unwrap(), [101, 7592, 102]);
    assert_eq!(t.encode("hello world", usize::MAX).unwrap(), [101, 7592, 2088, 102]);
    // HF leaves a text untruncated when max_length cannot hold [CLS] and [SEP]; that is an error here.
    for n in [0, 1] {
        assert!(matches!(t.encode("hello", n), Err(Error::InvalidArgument(_))), "max_len {n}");
    }
}

type JsonEdit = dyn Fn(&mut Json);

/// A tokenizer.json that is not a BERT WordPiece tokenizer, or lacks a token it needs.
#[test]
fn minilm_bad_tokenizer_json_is_a_typed_error() {
    let m = minilm();
    let base: Json = serde_json::from_str(&m.json).unwrap();
    let edited = |edit: &dyn Fn(&mut Json)| {
        let mut j = base.clone();
        edit(&mut j);
        WordPiece::from_tokenizer_json(&j.to_string())
    };
    for bad in ["", "not json", "{}", "[1, 2]"] {
        assert!(matches!(WordPiece::from_tokenizer_json(bad), Err(Error::Tokenizer(_))), "{bad:?}");
    }
    let edits: [(&str, &JsonEdit); 12] = [
        ("a BPE model", &|j| j["model"]["type"] = "BPE".into()),
        ("no vocabulary", &|j| j["model"]["vocab"] = serde_json::json!({})),
        ("a repeated id", &|j| j["model"]["vocab"]["hello"] = 0.into()),
        ("an id past the end", &|j| j["model"]["vocab"]["hello"] = 99_999.into()),
        ("no [UNK]", &|j| j["model"]["unk_token"] = "[NOPE]".into()),
        ("another normalizer", &|j| j["normalizer"] = serde_json::json!({"type": "Lowercase"})),
        ("no normalizer", &|j| j["normalizer"] = Json::Null),
        ("another pre-tokenizer", &|j| j["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"})),
        ("no [CLS] in the template's tokens", &|j| {
            j["post_processor"]["special_tokens"].as_object_mut().unwrap().remove("[CLS]");
        }),
        ("a template without $A", &|j| {
            j["post_processor"]["single"].as_array_mut().unwrap().remove(1);
        }),
        ("an added token with lstrip", &|j| j["added_tokens"][3]["lstrip"] = true.into()),
        ("an added token not in the vocabulary", &|j| j["added_tokens"][1]["id"] = 7.into()),
    ];
    for (what, edit) in edits {
        let got = edited(edit);
        assert!(matches!(got, Err(Error::Tokenizer(_))), "{what}: {:?}", got.err());
    }

    // The older BertProcessing post-processor names the same two tokens.
    let bert = edited(&|j| {
        j["post_processor"] =
            serde_json::json!({"type": "BertProcessing", "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]});
    })
    .unwrap();
    let text = "BertProcessing: [MASK] works too.";
    assert_eq!(bert.encode(text, 256).unwrap(), m.tok.encode(text, 256).unwrap());
}

/// Load and encode fast enough for a page, a long text stopping early once full.
#[test]
fn minilm_speed() {
    let m = minilm();
    let long = m.fixture["cases"].as_array().unwrap().iter().map(text).max_by_key(|t| t.len()).unwrap();
    let t0 = Instant::now();
    let tok = WordPiece::from_tokenizer_json(&m.json).unwrap();
    let load = t0.elapsed();
    let t0 = Instant::now();
    let n = tok.encode(long, usize::MAX).unwrap().len();
    let encode = t0.elapsed();
    let t0 = Instant::now();
    tok.encode(long, 256).unwrap();
    let encode_256 = t0.elapsed();
    eprintln!("minilm: load {load:?}, encode {} bytes -> {n} ids {encode:?}, to 256 ids {encode_256:?}", long.len());
    let limit = Duration::from_secs(1);
    assert!(load < limit && encode < limit, "minilm is too slow: load {load:?}, encode {encode:?}");
}
