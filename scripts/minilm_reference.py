#!/usr/bin/env python3
"""Write the all-MiniLM-L6-v2 reference fixture crate/tests/data/minilm/reference.{bin,json}.

The reference is an independent numpy forward of sentence-transformers'
all-MiniLM-L6-v2, computed in float64 (weights are f32 in the file, widened to
f64; every product, sum, softmax, erf and LayerNorm is f64) and stored as f32:
- tokens: Hugging Face `tokenizers`, Tokenizer.from_file(tokenizer.json) with
  no_padding() and enable_truncation(max_length=256) (the model's
  max_seq_length in sentence-transformers; tokenizer.json's own default is 128),
  so [CLS] ... [SEP] with at most 256 ids;
- BERT embeddings: word + position + token_type 0, LayerNorm (eps from
  config.json, 1e-12);
- 6 layers: self-attention with 12 heads of 32 (softmax of q.k / sqrt(32); no
  mask, one text at a time), output dense + residual + LayerNorm, intermediate
  dense + exact erf GELU (scipy.special.erf), output dense + residual +
  LayerNorm;
- mean pooling over every token, [CLS] and [SEP] included (sentence-transformers
  with an attention mask of ones), then L2 normalization.
The pooler (pooler.dense) and embeddings.position_ids are not used.

Inputs (committed): crate/tests/data/minilm/sentences.txt (one text a line,
UTF-8, lines kept as they are, trailing spaces included) and retrieval.json
({"passages": [...], "queries": [{"text", "passage": index}]}).
Outputs:
- reference.bin: little-endian f32, 384 per text: every sentence, then every
  passage, then every query, in file order;
- reference.json: metadata (versions, counts, sha256 of model.safetensors and
  of the inputs, the candle check), token counts of every sentence, passage and
  query, and the retrieval result of the reference itself (it must rank each
  query's passage first: the script fails otherwise).

Independent check (done once, recorded in reference.json as "candle_check"):
candle-transformers 0.9.2's BertModel (Rust, crates.io; candle-core/candle-nn
0.9.2, CPU) loading the same model.safetensors, fed the same token ids, with
mean pooling and L2 normalization in candle, run once in f32 (the crate as
published) and once in f64 (the same bert.rs copied, with candle-nn's own
unfused LayerNorm path, because candle-nn's fused layer_norm op has no f64
kernel). Result: f64 candle vs this f64 forward, max abs diff 7.0e-16 over the
365 texts; f32 candle vs this forward, max abs diff 3.4e-7, min cosine
0.999999999998.
The throwaway cargo project is not part of this repository; to redo it, build
a binary that reads a JSON list of id lists and writes the pooled, normalized
vectors (f32 and f64, little-endian), then:
    python3 scripts/minilm_reference.py --dump-ids /tmp/ids.json
    candle-check MODEL_DIR /tmp/ids.json /tmp/candle     # writes /tmp/candle.f{32,64}.bin
    python3 scripts/minilm_reference.py --candle /tmp/candle
`--candle PREFIX` compares and records the result; without it a run keeps the
"candle_check" entry of an existing reference.json when the model and inputs
are unchanged (so plain re-runs reproduce the fixture byte for byte).

Regenerate:
    pip install tokenizers numpy scipy
    scripts/fetch-models.sh minilm
    python3 scripts/minilm_reference.py [MODEL_DIR]
MODEL_DIR defaults to $EDGEPROOF_CACHE/all-MiniLM-L6-v2 (~/.cache/edgeproof).
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.special
import tokenizers
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "crate" / "tests" / "data" / "minilm"
CACHE = Path(os.environ.get("EDGEPROOF_CACHE", Path.home() / ".cache" / "edgeproof"))
MAX_LEN = 256
CANDLE_IMPL = (
    "candle-transformers 0.9.2 models::bert::BertModel on CPU (candle-core/candle-nn 0.9.2), mean pooling "
    "and L2 normalization in candle; f32: the crate as published; f64: the same bert.rs with candle-nn's "
    "own unfused LayerNorm path (its fused layer_norm op has no f64 kernel)"
)
DIM = 384


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_safetensors(path):
    """Parse the safetensors header and return {name: float64 array} (F32 tensors only)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        a = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start)
        out[name] = a.reshape(info["shape"]).astype(np.float64)
    return out


class MiniLM:
    def __init__(self, model_dir):
        cfg = json.loads((model_dir / "config.json").read_text())
        assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute"
        self.eps = float(cfg["layer_norm_eps"])
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.hidden = cfg["hidden_size"]
        assert self.hidden == DIM
        self.w = load_safetensors(model_dir / "model.safetensors")

    def ln(self, x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def dense(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def forward(self, ids):
        w, n = self.w, len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self.ln(x, "embeddings.LayerNorm")
        hd = self.hidden // self.heads
        for l in range(self.layers):
            p = f"encoder.layer.{l}."
            q = self.dense(x, p + "attention.self.query").reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = self.dense(x, p + "attention.self.key").reshape(n, self.heads, hd).transpose(1, 0, 2)
            v = self.dense(x, p + "attention.self.value").reshape(n, self.heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)  # (heads, n, n)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(n, self.hidden)
            x = self.ln(self.dense(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = self.dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + scipy.special.erf(h / np.sqrt(2.0)))
            x = self.ln(self.dense(h, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = x.mean(0)
        return pooled / np.linalg.norm(pooled)


def read_inputs():
    text = (DATA / "sentences.txt").read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text and "\t" not in text
    sentences = text[:-1].split("\n")
    retrieval = json.loads((DATA / "retrieval.json").read_text(encoding="utf-8"))
    passages = retrieval["passages"]
    queries = retrieval["queries"]
    return sentences, passages, queries


def candle_compare(prefix, ref64, ref32):
    """Compare candle's f32 and f64 vectors with the numpy f64 forward."""
    out = {
        "implementation": CANDLE_IMPL,
        "token_ids": "the same ids as the reference (--dump-ids)",
    }
    for kind in ("f32", "f64"):
        path = Path(f"{prefix}.{kind}.bin")
        c = np.fromfile(path, dtype="<f4" if kind == "f32" else "<f8").astype(np.float64)
        c = c.reshape(-1, DIM)
        assert c.shape == ref64.shape, (c.shape, ref64.shape)
        diff = np.abs(c - ref64)
        cos = (c * ref64).sum(1) / np.linalg.norm(c, axis=1) / np.linalg.norm(ref64, axis=1)
        out[f"candle_{kind}_vs_numpy_f64"] = {
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "min_cosine": float(cos.min()),
            "worst_text_index": int(diff.max(1).argmax()),
        }
    diff = np.abs(np.fromfile(f"{prefix}.f32.bin", dtype="<f4").reshape(-1, DIM) - ref32)
    out["candle_f32_vs_reference_bin_max_abs_diff"] = float(diff.max())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", nargs="?", default=str(CACHE / "all-MiniLM-L6-v2"))
    ap.add_argument("--dump-ids", metavar="FILE", help="write the token ids of every text as JSON and exit")
    ap.add_argument("--candle", metavar="PREFIX", help="compare with PREFIX.f32.bin / PREFIX.f64.bin from candle")
    args = ap.parse_args()
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.safetensors").is_file():
        sys.exit(f"{model_dir}/model.safetensors is missing: run scripts/fetch-models.sh minilm")

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    sentences, passages, queries = read_inputs()
    texts = sentences + passages + [q["text"] for q in queries]
    ids = [tok.encode(t).ids for t in texts]
    if args.dump_ids:
        Path(args.dump_ids).write_text(json.dumps(ids))
        print(f"wrote {len(ids)} id lists to {args.dump_ids}")
        return

    t0 = time.time()
    model = MiniLM(model_dir)
    ref64 = np.stack([model.forward(np.array(i)) for i in ids])
    elapsed = time.time() - t0
    ref32 = ref64.astype("<f4")

    # The reference's own retrieval: cosine = dot product of the stored f32 vectors.
    ns, npas = len(sentences), len(passages)
    pv = ref32[ns : ns + npas].astype(np.float64)
    qv = ref32[ns + npas :].astype(np.float64)
    scores = qv @ pv.T
    ranking = []
    for qi, q in enumerate(queries):
        order = np.argsort(-scores[qi], kind="stable")
        ranking.append(
            {
                "top": int(order[0]),
                "rank_of_correct": int(np.where(order == q["passage"])[0][0]) + 1,
                "margin": float(scores[qi, q["passage"]] - max(scores[qi, j] for j in range(npas) if j != q["passage"])),
            }
        )
    correct = sum(r["top"] == q["passage"] for r, q in zip(ranking, queries))

    if correct != len(queries):
        bad = [(qi, r) for qi, (r, q) in enumerate(zip(ranking, queries)) if r["top"] != q["passage"]]
        sys.exit(f"the reference misranks queries: {bad}")

    model_sha = sha256(model_dir / "model.safetensors")
    inputs_sha = {f: sha256(DATA / f) for f in ("sentences.txt", "retrieval.json")}
    candle = None
    if args.candle:
        candle = candle_compare(args.candle, ref64, ref32)
    else:
        old = DATA / "reference.json"
        if old.is_file():
            prev = json.loads(old.read_text(encoding="utf-8"))
            if prev.get("model_sha256") == model_sha and prev.get("inputs_sha256") == inputs_sha:
                candle = prev.get("candle_check")
    if candle is None:
        candle = "not run for these inputs (see --candle in scripts/minilm_reference.py)"

    (DATA / "reference.bin").write_bytes(ref32.tobytes())
    meta = {
        "generator": "scripts/minilm_reference.py",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "model_sha256": model_sha,
        "inputs_sha256": inputs_sha,
        "numerics": "numpy float64 forward (f32 weights widened), stored as little-endian f32",
        "pipeline": (
            "tokenizers Tokenizer.from_file(tokenizer.json), no_padding, enable_truncation(max_length=256); "
            "BERT embeddings (word + position + token_type 0) + LayerNorm; 6 layers of 12-head attention "
            "(scale 1/sqrt(32), no mask), dense + residual + LayerNorm, dense + erf GELU, dense + residual "
            "+ LayerNorm (eps 1e-12); mean pooling over all tokens including [CLS]/[SEP]; L2 normalization"
        ),
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "dim": DIM,
        "max_tokens": MAX_LEN,
        "layout": "reference.bin: f32 LE, dim per text; sentences, then passages, then queries",
        "counts": {
            "sentences": ns,
            "passages": npas,
            "queries": len(queries),
            "texts": len(texts),
            "sentences_over_128_tokens": sum(len(i) > 128 for i in ids[:ns]),
            "sentences_truncated_at_256": sum(len(tok.encode(s).overflowing) > 0 for s in sentences),
        },
        "reference_bin_sha256": hashlib.sha256(ref32.tobytes()).hexdigest(),
        "retrieval": {"top1_correct": correct, "queries": len(queries), "per_query": ranking},
        "candle_check": candle,
        "sentence_tokens": [len(i) for i in ids[:ns]],
        "passage_tokens": [len(i) for i in ids[ns : ns + npas]],
        "query_tokens": [len(i) for i in ids[ns + npas :]],
    }
    (DATA / "reference.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"{len(texts)} texts ({ns} sentences, {npas} passages, {len(queries)} queries) in {elapsed:.1f}s; "
        f"retrieval top-1 {correct}/{len(queries)}; candle: {json.dumps(candle)}"
    )


if __name__ == "__main__":
    main()
