#!/usr/bin/env python3
"""Write the dequantization fixtures in crate/tests/data/dequant_*.json.

Expected values come from the `gguf` Python package (ggml's own gguf-py:
`GGUFReader` + `gguf.quants.dequantize`), an implementation independent of
edgeproof's. Each fixture holds raw block bytes (hex) and the f32 results as
u32 bit patterns, so the Rust test (crate/tests/gguf.rs) compares exactly.

The comparison is exact because dequantization rounds at most once per value
(see `dequantize_matches_gguf_py_bit_for_bit`): evaluation order and FMA
contraction cannot change the result.

Sources: a few rows of one tensor of each type in the two real models, plus,
for every quantized type, random blocks (random quants, sane f16 scales, one
subnormal scale) to reach bit patterns real weights may miss; types absent
from the models (F16, Q4_0, Q5_1) also get data quantized with
`gguf.quants.quantize` (gguf-py has no Q5_K quantizer: random blocks only).

    pip install gguf numpy
    scripts/fetch-models.sh smollm2 gemma3
    python3 scripts/dequant_fixtures.py
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

OUT = Path(__file__).resolve().parent.parent / "crate" / "tests" / "data"
CACHE = Path(os.environ.get("EDGEPROOF_CACHE", Path.home() / ".cache" / "edgeproof"))
MODELS = {
    "smollm2": ("EDGEPROOF_SMOLLM2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3": ("EDGEPROOF_GEMMA3", "gemma-3-270m-q4_k_m.gguf"),
}
# (model, tensor, first row, rows): one tensor per type the real files hold.
REAL = [
    ("smollm2", "token_embd.weight", 100, 2),  # Q8_0
    ("smollm2", "blk.0.ffn_down.weight", 0, 1),  # Q4_1
    ("smollm2", "blk.0.attn_norm.weight", 0, 1),  # F32
    ("gemma3", "blk.0.attn_k.weight", 0, 2),  # Q5_0
    ("gemma3", "blk.0.attn_output.weight", 3, 1),  # Q4_K
    ("gemma3", "blk.0.ffn_down.weight", 1, 1),  # Q6_K
]
QUANTIZED = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q4_K, T.Q5_K, T.Q6_K]
# Byte offset of the f16 scale(s) in a block; Q6_K keeps its scale at the end.
SCALE_AT = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
            T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}


def model_path(name):
    env, file = MODELS[name]
    p = Path(os.environ[env]) if os.environ.get(env) else CACHE / file
    if not p.is_file():
        sys.exit(f"{p} is missing: run scripts/fetch-models.sh {name}")
    return p


def write(name, qtype, blocks, source, **extra):
    blocks = np.ascontiguousarray(blocks, dtype=np.uint8).reshape(-1)
    values = dequantize(blocks, qtype).astype(np.float32, copy=False).reshape(-1)
    fixture = {
        "type": qtype.name,
        "source": source,
        **extra,
        "n_elements": int(values.size),
        "blocks_hex": blocks.tobytes().hex(),
        "expected_bits": " ".join(f"{b:08x}" for b in values.view(np.uint32)),
    }
    path = OUT / f"dequant_{name}.json"
    path.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"{path.relative_to(OUT.parent.parent.parent)}: {qtype.name}, {values.size} values")


def real_fixtures():
    readers = {m: GGUFReader(model_path(m)) for m in MODELS}
    for model, tensor, first, rows in REAL:
        r = readers[model]
        t = next(t for t in r.tensors if t.name == tensor)
        block_len, block_bytes = GGML_QUANT_SIZES[t.tensor_type]
        row_bytes = int(t.shape[0]) // block_len * block_bytes
        raw = np.asarray(t.data).view(np.uint8).reshape(-1)
        blocks = raw[first * row_bytes:(first + rows) * row_bytes]
        write(f"{t.tensor_type.name.lower()}_{model}", t.tensor_type, blocks, MODELS[model][1],
              tensor=tensor, first_row=first, rows=rows, row_len=int(t.shape[0]),
              file_offset=int(t.data_offset) + first * row_bytes)


def random_fixtures(rng):
    for qtype in QUANTIZED:
        block_len, block_bytes = GGML_QUANT_SIZES[qtype]
        n_blocks = 4
        blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
        for i, at in enumerate(SCALE_AT[qtype]):
            # Normal scales of either sign over a wide range; block 1 gets subnormal ones.
            mags = 2.0 ** rng.uniform(-14, 4, size=n_blocks)
            scales = (mags * rng.choice([-1.0, 1.0], size=n_blocks)).astype(np.float16).view(np.uint16)
            scales[1] = rng.integers(1, 0x400) | (0x8000 if i else 0)
            blocks[:, at:at + 2] = scales.reshape(-1, 1).view(np.uint8).reshape(n_blocks, 2)
        write(f"{qtype.name.lower()}_random", qtype, blocks, "random blocks")
    # F16: every class of value but NaN (whose payload converters may treat differently).
    bits = rng.integers(0, 0x10000, size=256, dtype=np.uint16)
    bits = bits[(bits & 0x7C00) != 0x7C00][:200]
    bits = np.concatenate([bits, np.array([0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00],
                                          dtype=np.uint16)])
    write("f16_random", T.F16, bits.view(np.uint8), "random f16 bit patterns")


def quantized_fixtures(rng):
    # Weight-like data: normal, with a few outliers.
    for qtype in [T.F16, T.Q4_0, T.Q5_1]:
        x = rng.normal(0, 0.05, size=(2, 256)).astype(np.float32)
        x[0, 7] = 0.9
        write(f"{qtype.name.lower()}_quantized", qtype, quantize(x, qtype).view(np.uint8),
              "gguf.quants.quantize of normal(0, 0.05) data")


def main():
    rng = np.random.default_rng(20251125)
    real_fixtures()
    random_fixtures(rng)
    quantized_fixtures(rng)


if __name__ == "__main__":
    main()
