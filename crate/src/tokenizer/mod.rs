//! Tokenizers built from GGUF metadata, following llama.cpp and checked for
//! equal ids against Hugging Face `tokenizers` (crate/tests/tokenizer.rs):
//! byte-level BPE (`tokenizer.ggml.model = gpt2`) and SentencePiece (`llama`).
//!
//! Encoding first cuts special pieces out of the raw text (control tokens when
//! asked to, user-defined tokens always, leftmost-longest as HF's added-token
//! matcher does), then runs the model's algorithm on the text in between.

mod bpe;
pub mod chat;
mod spm;
pub mod wordpiece;

pub use chat::{ChatTemplate, Message};

use crate::error::{Error, Result};
use crate::gguf::Metadata;
use std::collections::HashMap;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i32(v: i32) -> Result<TokenType> {
        Ok(match v {
            // 0 is "undefined": llama.cpp treats it as normal.
            0 | 1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            t => return Err(Error::Tokenizer(format!("unknown token type {t}"))),
        })
    }
}

enum Model {
    Bpe(bpe::Bpe),
    Spm(spm::Spm),
}

/// A tokenizer for one model's vocabulary.
pub struct Tokenizer {
    tokens: Vec<String>,
    types: Vec<TokenType>,
    ids: HashMap<String, u32>,
    model: Model,
    specials: SpecialMatcher,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eog: Vec<u32>,
}

/// Finds special pieces in raw text, leftmost first and longest at a position.
struct SpecialMatcher {
    ids: HashMap<String, u32>,
    /// For each first byte, the distinct lengths of pieces starting with it, longest first.
    lengths: Vec<Vec<usize>>,
}

impl SpecialMatcher {
    fn new(pieces: impl Iterator<Item = (String, u32)>) -> SpecialMatcher {
        let mut ids = HashMap::new();
        let mut lengths = vec![Vec::new(); 256];
        for (t, id) in pieces.filter(|(t, _)| !t.is_empty()) {
            let l: &mut Vec<usize> = &mut lengths[t.as_bytes()[0] as usize];
            if !l.contains(&t.len()) {
                l.push(t.len());
            }
            ids.insert(t, id);
        }
        for l in &mut lengths {
            l.sort_unstable_by(|a, b| b.cmp(a));
        }
        SpecialMatcher { ids, lengths }
    }

    /// Split `text` into plain runs and special tokens. Control (and unknown)
    /// tokens count only when `parse_special`; user-defined ones always do.
    fn split<'t>(&self, text: &'t str, types: &[TokenType], parse_special: bool) -> Vec<Fragment<'t>> {
        let mut out = Vec::new();
        let (mut plain_start, mut i) = (0, 0);
        let bytes = text.as_bytes();
        while i < bytes.len() {
            let hit = self.lengths[bytes[i] as usize].iter().find_map(|&len| {
                let id = *self.ids.get(text.get(i..i + len)?)?;
                let allowed = parse_special || types[id as usize] == TokenType::UserDefined;
                allowed.then_some((id, len))
            });
            match hit {
                Some((id, len)) => {
                    if plain_start < i {
                        out.push(Fragment::Text(&text[plain_start..i]));
                    }
                    out.push(Fragment::Token(id));
                    i += len;
                    plain_start = i;
                }
                None => i += 1,
            }
        }
        if plain_start < text.len() {
            out.push(Fragment::Text(&text[plain_start..]));
        }
        out
    }
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Ids of tokens that end a generated turn when present as control tokens.
const EOG_PIECES: [&str; 5] = ["<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "<|end|>"];

fn optional<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::MissingKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Tokenizer {
    /// Build the tokenizer that `tokenizer.ggml.*` metadata describes.
    pub fn from_metadata(meta: &Metadata) -> Result<Tokenizer> {
        let kind = meta.get_str("tokenizer.ggml.model")?;
        let tokens: Vec<String> = meta.get_str_array("tokenizer.ggml.tokens")?.into_iter().map(String::from).collect();
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(Error::Tokenizer(format!("vocabulary of {n} tokens")));
        }
        let types = match optional(meta.get_i32_array("tokenizer.ggml.token_type"))? {
            Some(t) => t.into_iter().map(TokenType::from_i32).collect::<Result<Vec<_>>>()?,
            None => vec![TokenType::Normal; n],
        };
        if types.len() != n {
            return Err(Error::Tokenizer(format!("{} token types for {n} tokens", types.len())));
        }
        let mut ids = HashMap::with_capacity(n);
        for (id, t) in tokens.iter().enumerate() {
            // A repeated piece keeps its last id, as llama.cpp's map does.
            ids.insert(t.clone(), id as u32);
        }
        let (model, add_bos_default) = match kind {
            "gpt2" => {
                let pre = optional(meta.get_str("tokenizer.ggml.pre"))?.unwrap_or("gpt2");
                let merges = meta.get_str_array("tokenizer.ggml.merges")?;
                (Model::Bpe(bpe::Bpe::new(&ids, &merges, pre)?), false)
            }
            "llama" => {
                let scores = match optional(meta.get_f32_array("tokenizer.ggml.scores"))? {
                    Some(s) if s.len() != n => {
                        return Err(Error::Tokenizer(format!("{} token scores for {n} tokens", s.len())))
                    }
                    Some(s) => s,
                    None => vec![0.0; n],
                };
                let add_space_prefix = optional(meta.get_bool("tokenizer.ggml.add_space_prefix"))?.unwrap_or(true);
                let unk = optional(meta.get_u32("tokenizer.ggml.unknown_token_id"))?;
                (Model::Spm(spm::Spm::new(&tokens, &types, &ids, scores, add_space_prefix, unk)?), true)
            }
            other => return Err(Error::Tokenizer(format!("unsupported tokenizer model '{other}'"))),
        };
        let id_key = |key: &str| -> Result<Option<u32>> {
            match optional(meta.get_u32(key))? {
                Some(id) if id as usize >= n => {
                    Err(Error::Tokenizer(format!("{key} = {id} is not below the vocabulary size {n}")))
                }
                v => Ok(v),
            }
        };
        let (bos, eos) = (id_key("tokenizer.ggml.bos_token_id")?, id_key("tokenizer.ggml.eos_token_id")?);
        let add_bos = optional(meta.get_bool("tokenizer.ggml.add_bos_token"))?.unwrap_or(add_bos_default);
        let add_eos = optional(meta.get_bool("tokenizer.ggml.add_eos_token"))?.unwrap_or(false);
        if add_bos && bos.is_none() || add_eos && eos.is_none() {
            return Err(Error::Tokenizer("the metadata asks to add BOS/EOS but names no such token".into()));
        }
        let mut eog: Vec<u32> = eos.into_iter().collect();
        for key in ["tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog.extend(id_key(key)?);
        }
        eog.extend(
            EOG_PIECES
                .iter()
                .filter_map(|p| ids.get(*p).copied())
                .filter(|&id| types[id as usize] == TokenType::Control),
        );
        eog.sort_unstable();
        eog.dedup();
        let is_spm = matches!(model, Model::Spm(_));
        let specials = SpecialMatcher::new(tokens.iter().zip(&types).enumerate().filter_map(|(id, (t, ty))| {
            let text = match ty {
                // As HF spells them: with U+2581 for spaces (see spm::Spm's aliases), so a
                // run of plain spaces is left to the merges, as in HF.
                TokenType::UserDefined if is_spm => t.replace(' ', "\u{2581}"),
                TokenType::UserDefined | TokenType::Control | TokenType::Unknown => t.clone(),
                _ => return None,
            };
            Some((text, id as u32))
        }));
        Ok(Tokenizer { tokens, types, ids, model, specials, bos, eos, add_bos, add_eos, eog })
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS as the model's metadata
    /// says; `parse_special` lets control-token text (`<|im_start|>`) become those
    /// tokens, otherwise it is tokenized as plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for frag in self.specials.split(text, &self.types, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(t) => {
                    match &self.model {
                        Model::Bpe(m) => m.encode(t, &mut out)?,
                        Model::Spm(m) => m.encode(t, prev_special, &self.ids, &mut out)?,
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// The bytes a token stands for. Control and user-defined tokens give their text.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        let text = self.token_text(id)?;
        Ok(match (self.types[id as usize], &self.model) {
            (TokenType::Normal, Model::Bpe(m)) => m.decode_piece(text),
            (TokenType::Normal, Model::Spm(_)) => text.replace(spm::SPACE, " ").into_bytes(),
            (TokenType::Byte, _) => match spm::byte_of_piece(text) {
                Some(b) => vec![b],
                None => return Err(Error::Tokenizer(format!("byte token {id} is '{text}', not <0xNN>"))),
            },
            _ => text.as_bytes().to_vec(),
        })
    }

    /// The text of `ids`, with invalid UTF-8 replaced by U+FFFD. Every token is
    /// rendered as it is (a space that `add_space_prefix` put in front is kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The vocabulary piece of a token, as stored in the model file.
    pub fn token_text(&self, id: u32) -> Result<&str> {
        self.tokens.get(id as usize).map(String::as_str).ok_or_else(|| {
            Error::Tokenizer(format!("token id {id} is out of range (vocabulary of {})", self.tokens.len()))
        })
    }

    pub fn token_type(&self, id: u32) -> Result<TokenType> {
        self.token_text(id)?;
        Ok(self.types[id as usize])
    }

    /// The id of a vocabulary piece, as stored in the model file.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Tokens that end generation: EOS and the end-of-turn tokens the vocabulary has.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }
}

/// Turns a stream of token ids into text, holding back bytes until they form
/// complete UTF-8 (a character may be split over several byte tokens).
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// Add one token of `tokenizer`; returns the text that became complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.pending.extend(tokenizer.token_bytes(id)?);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Invalid bytes can never become valid: replace them now.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        Ok(out)
    }

    /// End of stream: whatever is held back, with U+FFFD for an incomplete character.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
