#!/usr/bin/env python3
"""Write the WordPiece fixture crate/tests/data/tokenizer_minilm.json.

Expected ids come from Hugging Face `tokenizers` on all-MiniLM-L6-v2's own
tokenizer.json, with its padding off and its truncation replaced by ours
(max_length counts [CLS] and [SEP], as edgeproof's `max_len` does).

The fixture has:
- meta: generator, tokenizers version, sha256 of the tokenizer.json used;
- cases: text, max_len and ids ([CLS] ... [SEP]);
- variants: the same file with other BertNormalizer settings (cased, accents
  kept or stripped without lowercasing, no cleaning), each with cases;
- code_points: for every block of 4096 code points (no surrogates), the count
  and sha256 (of the ids as u32 little-endian) of " c ac b" for each c in the
  block, untruncated: every character alone and inside a word.

Regenerate:
    pip install tokenizers
    scripts/fetch-models.sh minilm
    python3 scripts/wordpiece_fixtures.py
"""
import hashlib
import json
import os
import random
import struct
import sys
from pathlib import Path

import tokenizers
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crate" / "tests" / "data" / "tokenizer_minilm.json"
CACHE = Path(os.environ.get("EDGEPROOF_CACHE", Path.home() / ".cache" / "edgeproof"))
MINILM = Path(os.environ.get("EDGEPROOF_MINILM", CACHE / "all-MiniLM-L6-v2"))
GPL3 = Path("/usr/share/common-licenses/GPL-3")
BLOCK = 4096

ATOMS = {
    "words": ["the", "quick", "brown", "fox", "Hello", "WORLD", "tokenizer", "embedding", "MiniLM", "sentence",
              "don't", "I'm", "O'Reilly", "camelCase", "snake_case", "kebab-case", "unaffable", "transformers",
              "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis", "xyzzy", "qwertyuiop"],
    "numbers": ["0", "7", "42", "3.14159", "1234567890", "007", "1,000,000", "$19.99", "2024-06-01", "12:30",
                "1e-9", "0x1F", "٣٤٥", "½", "Ⅻ", "²", "१२३", "٫", "10%"],
    "space": [" ", " ", " ", "  ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\x0b", "\x0c",
              "\x1c", "\x85", "\u2028", "\u2029", "\u1680", "\u202f"],
    "unicode": ["café", "naïve", "Zoë", "façade", "Ångström", "Straße", "İstanbul", "ıi", "ΟΔΟΣ", "Ελληνικά",
                "русский", "Ёлка", "שלום", "مرحبا", "हिन्दी", "ไทย", "日本語", "中文字符", "한국어", "こんにちは", "カタカナ",
                "😀", "👨\u200d👩\u200d👧", "🦀", "🥰", "🏳️\u200d🌈", "👍🏽", "🇩🇪", "e\u0301", "a\u0308\u0323",
                "\u0301", "\u0308\u0301", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ｆｕｌｌｗｉｄｔｈ", "ＡＢＣ１２３", "ﬁ", "Ǆǅǆ", "ẞ", "\u08d4",
                "\u2e43", "\u2e4f", "\U0010fffd", "\ue000", "\ufeff", "\u200b", "\u200d", "\ufffd", "\x00", "\x07",
                "\x1f", "\x7f", "\U00020000", "\U0002a700", "\u3400", "\uf900", "㐀", "ꙮ"],
    "code": ["fn main() {", "}", "let x = vec![1, 2, 3];", "def f(x):", "    return x", "{\"key\": [1, 2.5, null]}",
             "<div class=\"a\">", "</div>", "#include <stdio.h>", "x += 1;", "if (a && b) || !c {", "// comment",
             "=>", "->", "::", "...", "!=", "<=", "```rust", "`code`", "[link](http://example.com)", "**bold**"],
    "special": ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[cls]", "[Sep]", "[ CLS]", "[CLS ]", "[[CLS]]",
                "[CLS", "CLS]", "[MASK][MASK]", "x[SEP]y", "##ing", "##", "[unused0]", "[unused99]"],
    "punct": [".", ",", "!", "?", ";", ":", "-", "—", "–", "…", "\"", "'", "«", "»", "“", "”", "„", "(", ")", "[",
              "]", "{", "}", "@", "#", "%", "&", "*", "~", "^", "|", "\\", "/", "`", "_", "+", "=", "<", ">", "$",
              "¿", "¡", "「", "」", "『", "』", "。", "、", "·", "©", "€", "£", "¥", "→", "∑", "≠", "√", "∞", "±", "×",
              "÷", "§", "¶", "†", "‰", "′", "※", "⁂"],
}

HAND = [
    "", " ", "  ", "\t", "\n", "\r\n", " \t\n\r ", "\u00a0\u3000\u2009", "a", "A", "1", "Hello world",
    "Hello, world!", "  leading and trailing  ", "MiXeD CaSe TeXt", "THE END. It'S LOUD",
    "The quick brown fox jumps over the lazy dog.", "I'm sure they're right, aren't they?",
    "naïve café résumé coöperate", "Ångström Ünïcödé ÀÉÎÕÜ", "Straße STRASSE ß ẞ", "İstanbul ISTANBUL ıi",
    "ΟΔΟΣ οδος Σίσυφος ΣΊΣΥΦΟΣ", "Ελληνικά: αβγδε", "Русский текст, Ёлка и ёж", "שלום עולם", "مرحبا بالعالم",
    "हिन्दी भाषा", "ภาษาไทย สวัสดี", "中文字符和标点。", "日本語のテキストとカタカナ、ひらがな。", "한국어 텍스트입니다.",
    "野口里佳 Noguchi Rika", "𠀀𪜀𫝀𫠠𬺰", "Emoji: 😀😃😄 👍🏽 🇩🇪 🧑‍💻 👨‍👩‍👧 🏳️‍🌈 🥰 🫠",
    "Combining: e\u0301 o\u0308 a\u030a n\u0303", "\u0301\u0302\u0303", "x\u0301\u0301\u0301y",
    "a\x00b\x07c\u200bd\ufeffe\ufffdf", "\x00\x01\x02\x1f\x7f", "a\x0cb\x0bc\x1cd\x85e", "a\u2028b\u2029c",
    "tab\tseparated\tvalues\n1\t2\t3\r\n", "line1\rline2", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "« guillemets » — dash – en … ellipsis ¿qué? ¡sí! 「括弧」『二重』", "‘single’ “double” „low“ ‹›",
    "3.14159 2,718 1e10 -0.5 +7 1/2 50% $1,000.00 €99", "1234567890123456789012345678901234567890",
    "https://example.com/path?q=1&r=two#frag", "mailto:someone@example.org", "user.name+tag@sub.example.co.uk",
    "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "{\"id\": 12, \"tags\": [\"a\", \"b\"], \"ok\": true, \"v\": -0.5e10}",
    "<html><body><h1>Title</h1><p>Para &amp; more</p></body></html>",
    "a" * 100, "a" * 101, "b" * 99 + "é", "x" * 200 + " y", "ab" * 60, "supercalifragilistic" * 5,
    "!!!???...", "!" * 40, "...", "—" * 10, "-" * 80, "=" * 80, ".\n" * 10,
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ！？", "∀x∈ℝ: x² ≥ 0 ∧ √4 = 2 ≠ ∞ ∑∫∂", "ﬁne ﬂow Ǆ ǅ ǆ ½ Ⅻ ² ①",
    "\U0010fffd\ue000\U000f0000", "\u08d4 a\u08d4b \u2e43 a\u2e43b a\u2e4fb", "\ud7ff\ue000\uffff",
    "[CLS]", "[SEP]", "[MASK]", "[CLS] hello [SEP] world [SEP]", "x[CLS]y", "[cls] [Sep] [mask]",
    "[ CLS] [CLS ] [[CLS]] [CLS", "[MASK][MASK][PAD][UNK]", "The capital of France is [MASK].",
    "[UNK] is unknown", "[unused0] [unused1]", "##ing ## #", "  [SEP]  ", "\t[CLS]\n",
    "Ⓐⓑⓒ ⒜ ㈱ ㎏ ℃ ℉", "ǰ ΐ ΰ ﬀ", "Ǳ ǲ ǳ", "ⅰⅱⅲ", "Ꭰꭰ", "ᲐᲑᲒ ა", "𐐀𐐨", "Ɐ ɐ",
]


def random_strings(rng, n):
    kinds = list(ATOMS)
    out = []
    for _ in range(n):
        focus = rng.choice(kinds)
        parts = []
        for _ in range(rng.randint(1, 12)):
            kind = focus if rng.random() < 0.5 else rng.choice(kinds)
            parts.append(rng.choice(ATOMS[kind]))
            if rng.random() < 0.6:
                parts.append(rng.choice([" ", " ", " ", "", "\n", "  "]))
        out.append("".join(parts))
    return out


def load(settings=None):
    tj = json.loads((MINILM / "tokenizer.json").read_text(encoding="utf-8"))
    if settings:
        tj["normalizer"].update(settings)
    tok = Tokenizer.from_str(json.dumps(tj))
    tok.no_padding()
    return tok


def encode(tok, text, max_len):
    if max_len is None:
        tok.no_truncation()
    else:
        tok.enable_truncation(max_length=max_len)
    return tok.encode(text).ids


def cases(tok, items):
    return [{"text": s, "max_len": n, "ids": encode(tok, s, n)} for s, n in items]


def code_points(tok):
    blocks = []
    for start in range(0, 0x110000, BLOCK):
        chars = [chr(c) for c in range(start, start + BLOCK) if not 0xD800 <= c <= 0xDFFF]
        ids = encode(tok, "".join(f" {c} a{c}b" for c in chars), None)
        digest = hashlib.sha256(struct.pack(f"<{len(ids)}I", *ids)).hexdigest()
        blocks.append({"start": start, "count": len(ids), "sha256": digest})
    return blocks


def main():
    path = MINILM / "tokenizer.json"
    if not path.is_file():
        sys.exit(f"{path} is missing: run scripts/fetch-models.sh minilm")
    gpl = GPL3.read_text(encoding="utf-8") if GPL3.is_file() else (CACHE / "GPL-3.txt").read_text(encoding="utf-8")
    rng = random.Random(20240601)
    slices = []
    for _ in range(30):
        a = rng.randrange(len(gpl))
        slices.append(gpl[a:a + rng.randint(1, 3000)])
    strings = list(dict.fromkeys(HAND + random_strings(rng, 260) + slices))
    long_texts = [gpl, gpl[:5000], " ".join(["word"] * 300), "[MASK] " * 300, "日本" * 200, "a" * 5000]
    items = [(s, 256) for s in strings + long_texts]
    # Truncation: short limits on texts that are longer, shorter or exactly as long.
    for s in ["", "hello", "Hello, world! How are you?", "The capital of France is [MASK].", "[CLS] [SEP] [MASK]",
              "unaffable transformers embeddings", "日本語のテキスト", gpl[:400], "a, b, c, d, e, f, g, h, i, j"]:
        items += [(s, n) for n in (2, 3, 4, 8, 16)]
    items += [(gpl[:5000], n) for n in (5, 32, 128, 512)] + [(s, n) for s in slices[:10] for n in (8, 16)]

    tok = load()
    variants = []
    for settings in [{"lowercase": False, "strip_accents": None}, {"lowercase": True, "strip_accents": False},
                     {"lowercase": False, "strip_accents": True}, {"clean_text": False, "handle_chinese_chars": False}]:
        variants.append({"normalizer": settings, "cases": cases(load(settings), [(s, 256) for s in HAND])})
    data = {
        "meta": {"generator": "scripts/wordpiece_fixtures.py", "tokenizers": tokenizers.__version__,
                 "tokenizer_json_sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
        "cases": cases(tok, items),
        "variants": variants,
        "code_points": code_points(tok),
    }
    # One case per line keeps diffs readable.
    with open(OUT, "w", encoding="utf-8") as f:
        f.write("{\n\"meta\": " + json.dumps(data["meta"]) + ",\n")
        f.write("\"cases\": [\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in data["cases"]) + "\n],\n")
        f.write("\"variants\": [\n" + ",\n".join(json.dumps(v, ensure_ascii=False) for v in variants) + "\n],\n")
        f.write("\"code_points\": [\n" + ",\n".join(json.dumps(b) for b in data["code_points"]) + "\n]\n}\n")
    print(f"{OUT}: {len(data['cases'])} cases, {sum(len(v['cases']) for v in variants)} variant cases, "
          f"{len(data['code_points'])} code point blocks, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
