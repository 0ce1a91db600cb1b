//! SentencePiece with scores, as llama.cpp's `llm_tokenizer_spm` runs it:
//! spaces become U+2581, symbols start as single characters, and the adjacent
//! pair whose concatenation is a vocabulary piece with the highest score merges
//! first (ties: leftmost). Characters left outside the vocabulary fall back to
//! `<0xNN>` byte tokens. Which pieces merge first follows HF's merges where the
//! GGUF's scores differ from them (see [`Spm::new`]).

use super::TokenType;
use crate::error::{Error, Result};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// SentencePiece's visible space, U+2581.
pub(super) const SPACE: char = '\u{2581}';

pub(super) struct Spm {
    /// The priority of merging into each piece; `None` for pieces no merge makes.
    scores: Vec<Option<f32>>,
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    add_space_prefix: bool,
    /// User-defined pieces with spaces, under their SentencePiece spelling: the
    /// GGUF converter wrote U+2581 as ' ' in them, but HF's vocabulary (and so
    /// its merges) still has `▁▁`, which text written with U+2581 must reach.
    aliases: HashMap<String, u32>,
}

/// The byte of a `<0xNN>` piece.
pub(super) fn byte_of_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Bytes of the merged piece: tells whether either side changed since.
    size: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Highest score first, then leftmost.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score.total_cmp(&o.score).then_with(|| o.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

struct Sym {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    pub(super) fn new(
        tokens: &[String],
        types: &[TokenType],
        ids: &HashMap<String, u32>,
        scores: Vec<f32>,
        add_space_prefix: bool,
        unk: Option<u32>,
    ) -> Result<Spm> {
        if let Some(u) = unk.filter(|&u| u as usize >= tokens.len()) {
            return Err(Error::Tokenizer(format!(
                "unknown token id {u} is not below the vocabulary size {}",
                tokens.len()
            )));
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = ids.get(format!("<0x{b:02X}>").as_str()).copied();
        }
        // Match HF's merges, which SentencePiece's own scores ordered: only learned
        // and user-defined pieces are merge results, and user-defined ones (score 0
        // in SentencePiece, -1000 after the GGUF converter) come before all learned ones.
        let scores = scores
            .into_iter()
            .zip(types)
            .map(|(s, ty)| match ty {
                TokenType::Normal => Some(s),
                TokenType::UserDefined => Some(f32::INFINITY),
                _ => None,
            })
            .collect();
        let mut aliases = HashMap::new();
        for (id, (t, ty)) in tokens.iter().zip(types).enumerate() {
            if *ty == TokenType::UserDefined && t.contains(' ') {
                let spelled = t.replace(' ', "\u{2581}");
                if !ids.contains_key(&spelled) {
                    aliases.insert(spelled, id as u32);
                }
            }
        }
        Ok(Spm { scores, byte_ids, unk, add_space_prefix, aliases })
    }

    fn lookup(&self, ids: &HashMap<String, u32>, piece: &str) -> Option<u32> {
        ids.get(piece).or_else(|| self.aliases.get(piece)).copied()
    }

    /// Encode one run of plain text. `after_special`: the run starts the input or
    /// follows a special token, where `add_space_prefix` puts a space.
    pub(super) fn encode(
        &self,
        text: &str,
        after_special: bool,
        ids: &HashMap<String, u32>,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let mut s = String::with_capacity(text.len() + 3);
        if self.add_space_prefix && after_special {
            s.push(SPACE);
        }
        s.extend(text.chars().map(|c| if c == ' ' { SPACE } else { c }));

        let mut sym: Vec<Sym> = Vec::with_capacity(s.len());
        for (i, (start, c)) in s.char_indices().enumerate() {
            sym.push(Sym { start, len: c.len_utf8(), prev: i.checked_sub(1), next: Some(i + 1) });
        }
        if let Some(last) = sym.last_mut() {
            last.next = None;
        }
        let mut heap = BinaryHeap::new();
        let bigram = |sym: &[Sym], left: usize, right: usize| {
            let piece = &s[sym[left].start..sym[right].start + sym[right].len];
            let score = self.scores[self.lookup(ids, piece)? as usize]?;
            Some(Bigram { score, left, right, size: piece.len() })
        };
        for i in 1..sym.len() {
            heap.extend(bigram(&sym, i - 1, i));
        }
        while let Some(b) = heap.pop() {
            // Skip pairs that went stale: a side was merged away or has grown.
            let (l, r) = (&sym[b.left], &sym[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            let next = r.next;
            sym[b.left].len += sym[b.right].len;
            sym[b.left].next = next;
            sym[b.right].len = 0;
            if let Some(n) = next {
                sym[n].prev = Some(b.left);
                heap.extend(bigram(&sym, b.left, n));
            }
            if let Some(p) = sym[b.left].prev {
                heap.extend(bigram(&sym, p, b.left));
            }
        }
        let mut i = if sym.is_empty() { None } else { Some(0) };
        while let Some(k) = i {
            let piece = &s[sym[k].start..sym[k].start + sym[k].len];
            match self.lookup(ids, piece) {
                Some(id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        let id = self.byte_ids[b as usize].or(self.unk).ok_or_else(|| {
                            Error::Tokenizer(format!("no <0x{b:02X}> token and no unknown token for '{piece}'"))
                        })?;
                        out.push(id);
                    }
                }
            }
            i = sym[k].next;
        }
        Ok(())
    }
}
