//! Byte-level BPE (GPT-2 style), as llama.cpp's `llm_tokenizer_bpe` and HF's
//! `ByteLevel` + `BPE` run it: pre-tokenize, map each byte to its GPT-2
//! character, then apply merges lowest rank first (ties: leftmost).

use crate::error::{Error, Result};
use fancy_regex::Regex;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// The GPT-2 pattern as HF's ByteLevel spells it,
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
/// less the look-ahead alternative, which [`Bpe::encode_words`] applies by hand:
/// backtracking it overflows fancy-regex's stack on long whitespace runs.
const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+";

pub(super) struct Bpe {
    /// Vocabulary id of each byte's GPT-2 character. Some vocabularies lack a few
    /// (SmolLM2 has no 0x04, 0xC0, 0xFF...): HF drops such bytes before merging,
    /// and so do we (llama.cpp throws).
    byte_ids: [Option<u32>; 256],
    /// (left id, right id) → (rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Each numeric character is a piece of its own (`pre = smollm`).
    split_digits: bool,
    regex: Regex,
    /// The inverse of the byte map, for decoding.
    char_bytes: HashMap<char, u8>,
}

/// GPT-2's reversible byte → character map: printable Latin-1 bytes stand for
/// themselves, the others are moved to U+0100 and up, in byte order.
fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        out[b as usize] = if matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("U+0100..U+0143 are characters")
        };
    }
    out
}

impl Bpe {
    pub(super) fn new(ids: &HashMap<String, u32>, merges: &[&str], pre: &str) -> Result<Bpe> {
        let split_digits = match pre {
            "gpt2" => false,
            "smollm" => true,
            other => return Err(Error::Tokenizer(format!("unsupported BPE pre-tokenizer '{other}'"))),
        };
        let regex = Regex::new(GPT2_PATTERN).map_err(|e| Error::Tokenizer(format!("pre-tokenizer pattern: {e}")))?;
        let chars = byte_chars();
        let mut byte_ids = [None; 256];
        for (slot, c) in byte_ids.iter_mut().zip(chars) {
            *slot = ids.get(c.to_string().as_str()).copied();
        }
        let id = |piece: &str| {
            ids.get(piece)
                .copied()
                .ok_or_else(|| Error::Tokenizer(format!("merge piece '{piece}' is not in the vocabulary")))
        };
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after the first character, as llama.cpp does.
            let (left, right) = match m.char_indices().skip(1).find(|&(_, c)| c == ' ') {
                Some((i, _)) => (&m[..i], &m[i + 1..]),
                None => return Err(Error::Tokenizer(format!("merge '{m}' has no space"))),
            };
            let merged = id(&format!("{left}{right}"))?;
            // A repeated pair keeps its first (best) rank.
            table.entry((id(left)?, id(right)?)).or_insert((rank as u32, merged));
        }
        let char_bytes = chars.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        Ok(Bpe { byte_ids, merges: table, split_digits, regex, char_bytes })
    }

    pub(super) fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if !self.split_digits {
            return self.encode_words(text, out);
        }
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c.is_numeric() {
                self.encode_words(&text[start..i], out)?;
                start = i + c.len_utf8();
                // A lone numeric character is one piece of the pattern too (` ?\p{N}+`).
                self.encode_word(&text.as_bytes()[i..start], out);
            }
        }
        self.encode_words(&text[start..], out)
    }

    /// Split by the GPT-2 pattern (text it does not match stays a piece) and encode each piece.
    fn encode_words(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let (mut pos, mut last) = (0, 0);
        while let Some(m) =
            self.regex.find_from_pos(text, pos).map_err(|e| Error::Tokenizer(format!("pre-tokenizer: {e}")))?
        {
            if m.start() > last {
                self.encode_word(&text.as_bytes()[last..m.start()], out);
            }
            let mut end = m.end();
            // `\s+(?!\S)`: a whitespace run followed by more text leaves its last
            // character to start the next piece (so " world" keeps its space).
            let run = m.as_str();
            if end < text.len() && run.chars().all(char::is_whitespace) {
                if let Some((i, _)) = run.char_indices().last().filter(|&(i, _)| i > 0) {
                    end = m.start() + i;
                }
            }
            self.encode_word(&text.as_bytes()[m.start()..end], out);
            (pos, last) = (end, end);
        }
        if last < text.len() {
            self.encode_word(&text.as_bytes()[last..], out);
        }
        Ok(())
    }

    fn encode_word(&self, word: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        struct Sym {
            id: u32,
            prev: usize,
            next: usize,
        }
        let known: Vec<u32> = word.iter().filter_map(|&b| self.byte_ids[b as usize]).collect();
        let n = known.len();
        let mut sym: Vec<Sym> = known
            .iter()
            .enumerate()
            .map(|(i, &id)| Sym {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
            })
            .collect();
        let mut heap = BinaryHeap::new();
        let rank_of = |sym: &[Sym], i: usize| self.merges.get(&(sym[i].id, sym[sym[i].next].id)).copied();
        for i in 0..n.saturating_sub(1) {
            if let Some((rank, _)) = rank_of(&sym, i) {
                heap.push(Reverse((rank, i)));
            }
        }
        while let Some(Reverse((rank, i))) = heap.pop() {
            // Entries go stale as neighbours merge: act only if the pair still has this
            // rank. A merged-away symbol has no `next`, so its entries are skipped.
            if sym[i].next == NONE {
                continue;
            }
            let new = match rank_of(&sym, i) {
                Some((r, new)) if r == rank => new,
                _ => continue,
            };
            let j = sym[i].next;
            let k = sym[j].next;
            sym[i].id = new;
            sym[i].next = k;
            sym[j].next = NONE;
            if k != NONE {
                sym[k].prev = i;
                if let Some((r, _)) = rank_of(&sym, i) {
                    heap.push(Reverse((r, i)));
                }
            }
            let p = sym[i].prev;
            if p != NONE {
                if let Some((r, _)) = rank_of(&sym, p) {
                    heap.push(Reverse((r, p)));
                }
            }
        }
        let mut i = if n == 0 { NONE } else { 0 };
        while i != NONE {
            out.push(sym[i].id);
            i = sym[i].next;
        }
    }

    /// The bytes of a normal token: each character maps back to its byte
    /// (a character outside the map, which a proper vocabulary lacks, stands for itself).
    pub(super) fn decode_piece(&self, piece: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(piece.len());
        for c in piece.chars() {
            match self.char_bytes.get(&c) {
                Some(&b) => out.push(b),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }
}
