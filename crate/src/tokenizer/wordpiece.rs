//! BERT's WordPiece tokenizer (all-MiniLM-L6-v2), built from a Hugging Face
//! `tokenizer.json` and checked for equal ids against HF `tokenizers`
//! (crate/tests/tokenizer.rs). The steps are HF's: added tokens cut out of the
//! raw text, BertNormalizer, BertPreTokenizer, greedy longest-match-first
//! WordPiece, then the template `[CLS] $A [SEP]`. The file's own truncation and
//! padding are ignored: callers choose `max_len`.
//!
//! The Unicode tables are the ones HF links: `unicode_categories` (Unicode 8.0)
//! for control, punctuation and nonspacing-mark classes and
//! `unicode-normalization-alignments` (Unicode 9.0) for NFD. Newer tables give
//! other ids on characters classified since: HF keeps U+08D4 (a nonspacing mark
//! only since Unicode 9) and does not split at U+2E43 (punctuation since 9).
//! Lowercasing and whitespace are Rust's own, as in HF.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::HashMap;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// Bytes of raw text normalized at a time (and then up to the next space).
const PART: usize = 1024;

/// A WordPiece tokenizer with BERT's normalizer, pre-tokenizer and template.
pub struct WordPiece {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// Added tokens, matched in the raw text; longest first.
    added: Vec<(String, u32)>,
    normalizer: BertNormalizer,
    prefix: String,
    max_word_chars: usize,
    unk: u32,
    cls: u32,
    sep: u32,
}

// The parts of tokenizer.json that a BERT WordPiece tokenizer has; any other
// type is a deserialization error.
#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedTokenJson>,
    normalizer: NormalizerJson,
    pre_tokenizer: PreTokenizerJson,
    post_processor: PostProcessorJson,
    model: ModelJson,
}

#[derive(Deserialize)]
struct AddedTokenJson {
    id: u32,
    content: String,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
    normalized: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum NormalizerJson {
    BertNormalizer(BertNormalizer),
}

#[derive(Clone, Copy, Deserialize)]
struct BertNormalizer {
    clean_text: bool,
    handle_chinese_chars: bool,
    /// None: strip accents when lowercasing.
    strip_accents: Option<bool>,
    lowercase: bool,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum PreTokenizerJson {
    BertPreTokenizer,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum PostProcessorJson {
    TemplateProcessing { single: Vec<TemplatePiece>, special_tokens: HashMap<String, TemplateSpecial> },
    BertProcessing { cls: (String, u32), sep: (String, u32) },
}

#[derive(Deserialize)]
enum TemplatePiece {
    SpecialToken { id: String },
    Sequence { id: String },
}

#[derive(Deserialize)]
struct TemplateSpecial {
    ids: Vec<u32>,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum ModelJson {
    WordPiece {
        unk_token: String,
        continuing_subword_prefix: String,
        max_input_chars_per_word: usize,
        vocab: HashMap<String, u32>,
    },
}

impl WordPiece {
    /// Build the tokenizer a BERT WordPiece `tokenizer.json` describes.
    pub fn from_tokenizer_json(json: &str) -> Result<WordPiece> {
        let tj: TokenizerJson = serde_json::from_str(json)
            .map_err(|e| Error::Tokenizer(format!("not a BERT WordPiece tokenizer.json: {e}")))?;
        let ModelJson::WordPiece { unk_token, continuing_subword_prefix, max_input_chars_per_word, vocab } = tj.model;
        let NormalizerJson::BertNormalizer(normalizer) = tj.normalizer;
        let PreTokenizerJson::BertPreTokenizer = tj.pre_tokenizer;

        let n = vocab.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!("vocabulary of {n} tokens")));
        }
        // id_to_token() indexes by id, so the ids must be exactly 0..n.
        let mut tokens = vec![None; n];
        for (token, &id) in &vocab {
            match tokens.get_mut(id as usize) {
                Some(slot @ None) => *slot = Some(token.clone()),
                _ => {
                    return Err(Error::Tokenizer(format!(
                        "vocabulary id {id} of '{token}' is repeated or not below {n}"
                    )))
                }
            }
        }
        let tokens: Vec<String> = tokens.into_iter().flatten().collect();

        let unk = *vocab
            .get(&unk_token)
            .ok_or_else(|| Error::Tokenizer(format!("unknown token '{unk_token}' is not in the vocabulary")))?;
        let (cls, sep) = match tj.post_processor {
            PostProcessorJson::BertProcessing { cls, sep } => (cls.1, sep.1),
            PostProcessorJson::TemplateProcessing { single, special_tokens } => {
                let special = |name: &str| match special_tokens.get(name).map(|s| s.ids.as_slice()) {
                    Some(&[id]) => Ok(id),
                    _ => Err(Error::Tokenizer(format!("template token '{name}' is not one special token"))),
                };
                match single.as_slice() {
                    [TemplatePiece::SpecialToken { id: first }, TemplatePiece::Sequence { id: seq }, TemplatePiece::SpecialToken { id: last }]
                        if seq == "A" =>
                    {
                        (special(first)?, special(last)?)
                    }
                    _ => return Err(Error::Tokenizer("the template for one sequence is not [CLS] $A [SEP]".into())),
                }
            }
        };
        for id in [cls, sep] {
            if id as usize >= n {
                return Err(Error::Tokenizer(format!("template token id {id} is not below the vocabulary size {n}")));
            }
        }

        let mut added = Vec::with_capacity(tj.added_tokens.len());
        for a in tj.added_tokens {
            // Only what BERT files use: tokens matched as they are in the raw text.
            if a.single_word || a.lstrip || a.rstrip || a.normalized {
                return Err(Error::Tokenizer(format!(
                    "added token '{}': single_word, lstrip, rstrip and normalized are not supported",
                    a.content
                )));
            }
            if a.content.is_empty() || vocab.get(&a.content) != Some(&a.id) {
                return Err(Error::Tokenizer(format!(
                    "added token '{}' (id {}) is not that vocabulary entry",
                    a.content, a.id
                )));
            }
            added.push((a.content, a.id));
        }
        added.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));

        Ok(WordPiece {
            tokens,
            ids: vocab,
            added,
            normalizer,
            prefix: continuing_subword_prefix,
            max_word_chars: max_input_chars_per_word,
            unk,
            cls,
            sep,
        })
    }

    /// `[CLS] pieces [SEP]` for `text`, at most `max_len` ids in all: pieces past
    /// that are dropped from the end, as HF's truncation of one sequence does.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len < 2 {
            return Err(Error::InvalidArgument(format!("max_len {max_len} leaves no room for [CLS] and [SEP]")));
        }
        // [CLS] and the pieces; stops early once full, so a long text costs only its start.
        let limit = max_len - 1;
        let mut out = vec![self.cls];
        let mut rest = text;
        while !rest.is_empty() && out.len() < limit {
            match self.next_added(rest) {
                Some((at, token, id)) => {
                    self.encode_plain(&rest[..at], &mut out, limit);
                    out.push(id);
                    rest = &rest[at + token.len()..];
                }
                None => {
                    self.encode_plain(rest, &mut out, limit);
                    rest = "";
                }
            }
        }
        out.truncate(limit);
        out.push(self.sep);
        Ok(out)
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary entry of `id` (continuation pieces keep their `##`).
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The leftmost added token in `text`, the longest one at that position.
    fn next_added(&self, text: &str) -> Option<(usize, &str, u32)> {
        let bytes = text.as_bytes();
        // A token starts with a UTF-8 leading byte, so a match is at a char boundary.
        (0..bytes.len()).find_map(|i| {
            self.added.iter().find(|(t, _)| bytes[i..].starts_with(t.as_bytes())).map(|(t, id)| (i, t.as_str(), *id))
        })
    }

    fn encode_plain(&self, text: &str, out: &mut Vec<u32>, limit: usize) {
        let mut rest = text;
        while !rest.is_empty() && out.len() < limit {
            // A part at a time, so that a long text stops early. Cutting after a space
            // changes nothing: it stays a word boundary and no mark reorders across it.
            let cut = rest.bytes().skip(PART).position(|b| b == b' ').map_or(rest.len(), |i| PART + i + 1);
            let (part, tail) = rest.split_at(cut);
            rest = tail;
            for word in words(&self.normalizer.normalize(part)) {
                if out.len() >= limit {
                    break;
                }
                self.encode_word(word, out);
            }
        }
    }

    /// Greedy longest-match-first; a word with any unmatched rest is one [UNK].
    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut piece = String::with_capacity(self.prefix.len() + word.len());
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let id = loop {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.ids.get(&piece) {
                    break Some(id);
                }
                match word[start..end].char_indices().next_back() {
                    Some((last, _)) if last > 0 => end = start + last,
                    _ => break None,
                }
            };
            match id {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

impl BertNormalizer {
    /// HF's order: clean, space out CJK, strip accents (NFD, drop Mn), lowercase.
    fn normalize(&self, text: &str) -> String {
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{fffd}' || is_control(c) {
                    continue;
                }
                if is_whitespace(c) {
                    s.push(' ');
                    continue;
                }
            }
            if self.handle_chinese_chars && is_chinese_char(c) {
                s.extend([' ', c, ' ']);
            } else {
                s.push(c);
            }
        }
        let chars: Box<dyn Iterator<Item = char> + '_> = if self.strip_accents.unwrap_or(self.lowercase) {
            Box::new(s.as_str().nfd().map(|(c, _)| c).filter(|c| !c.is_mark_nonspacing()))
        } else {
            Box::new(s.chars())
        };
        // Char by char, as HF does: a final capital sigma becomes σ, not ς.
        if self.lowercase {
            chars.flat_map(char::to_lowercase).collect()
        } else {
            chars.collect()
        }
    }
}

/// BertPreTokenizer: words split at whitespace (dropped) and at punctuation
/// (each mark its own word).
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches(char::is_whitespace);
        let c = rest.chars().next()?;
        let len = if is_bert_punctuation(c) {
            c.len_utf8()
        } else {
            rest.find(|c: char| c.is_whitespace() || is_bert_punctuation(c)).unwrap_or(rest.len())
        };
        let (word, tail) = rest.split_at(len);
        rest = tail;
        Some(word)
    })
}

fn is_bert_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || c.is_punctuation()
}

/// Tab, newline and carriage return are control characters that BERT counts as whitespace.
fn is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

/// HF's "other": Cc, Cf and Co (its doc says Cn too, its code has no Cn).
fn is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

/// HF's CJK ideograph ranges (kana and hangul are not among them).
fn is_chinese_char(c: char) -> bool {
    matches!(
        c as u32,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}
