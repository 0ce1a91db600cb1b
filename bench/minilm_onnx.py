#!/usr/bin/env python3
"""Export all-MiniLM-L6-v2 from model.safetensors to ONNX for transformers.js, without torch.

The embeddings benchmark (bench/embed-peers.mjs) runs transformers.js on the same weights as
edgeproof. Nothing but PyPI/npm/crates.io/Debian is reachable, so there is no ready ONNX export
to download: this script writes one with PyPI's `onnx` (onnx.helper, opset 17, IR version 8)
straight from the F32 tensors of model.safetensors, and checks it with PyPI's `onnxruntime`
(CPU) against the repository's independent reference vectors (crate/tests/data/minilm/
reference.bin, scripts/minilm_reference.py: a numpy f64 forward).

The graph is Hugging Face's BertModel as transformers.js's feature-extraction pipeline calls it:
- inputs input_ids, attention_mask, token_type_ids: int64 [batch_size, sequence_length];
- output last_hidden_state: float32 [batch_size, sequence_length, 384] (the pipeline does the
  mean pooling over the attention mask and the L2 normalization itself);
- embeddings: Gather(word) + Slice(position, 0..sequence_length) + Gather(token_type),
  LayerNormalization (eps from config.json, 1e-12);
- 6 layers: Q, K, V = MatMul + Add (weights transposed once, here), 12 heads of 32
  (Reshape/Transpose), scores = Q.K^T * 1/sqrt(32) + mask bias, Softmax, .V, output dense +
  residual + LayerNormalization, intermediate dense + erf GELU (x * 0.5 * (1 + Erf(x/sqrt 2))),
  output dense + residual + LayerNormalization;
- the mask bias: (1 - attention_mask) * float32 min, shape [batch, 1, 1, seq] (as transformers'
  get_extended_attention_mask), so padded keys get a weight of exactly 0.
The pooler (pooler.dense) and embeddings.position_ids are not used.

Output (outside the repository; the .onnx is ~90 MB and not committed), the layout
transformers.js loads with env.localModelPath = OUT and the model id all-MiniLM-L6-v2:
    OUT/all-MiniLM-L6-v2/config.json          (copied from the model folder)
    OUT/all-MiniLM-L6-v2/tokenizer.json       (copied)
    OUT/all-MiniLM-L6-v2/tokenizer_config.json (written: BertTokenizer, lower case,
                                               model_max_length 256 = sentence-transformers'
                                               max_seq_length, as the reference truncates)
    OUT/all-MiniLM-L6-v2/onnx/model.onnx      (transformers.js's dtype 'fp32' file name)

The check: every text of the reference (305 sentences, 40 passages, 20 queries), tokenized by
`tokenizers` as the reference does (truncation at 256), run through onnxruntime one text at a
time and again in padded batches of 32; masked mean pooling + L2 normalization in numpy;
cosine and max abs difference against reference.bin. The script fails below --min-cosine.

    pip install onnx onnxruntime tokenizers numpy
    scripts/fetch-models.sh minilm
    python3 bench/minilm_onnx.py [--model DIR] [--out DIR]   # prints the figures, OUT's path last
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "crate" / "tests" / "data" / "minilm"
CACHE = Path(os.environ.get("EDGEPROOF_CACHE", Path.home() / ".cache" / "edgeproof"))
NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_LEN = 256
OPSET = 17  # LayerNormalization
IR_VERSION = 8  # the lowest with opset 17: any recent onnxruntime(-web) loads it


def load_safetensors(path):
    """{name: float32 array} of the F32 tensors (a plain parse of the safetensors header)."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        a = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=8 + n + start)
        out[name] = a.reshape(info["shape"]).astype(np.float32)
    return out


def build(model_dir):
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["hidden_act"] == "gelu", cfg
    assert cfg["position_embedding_type"] == "absolute" and cfg["hidden_size"] == DIM
    heads, layers, eps = cfg["num_attention_heads"], cfg["num_hidden_layers"], float(cfg["layer_norm_eps"])
    hd = DIM // heads
    w = load_safetensors(model_dir / "model.safetensors")

    inits, nodes = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def dense(x, prefix, out):
        # HF Linear: x @ W^T + b; W^T is stored, so the graph is a plain MatMul + Add.
        wt = init(prefix + ".weight_T", w[prefix + ".weight"].T)
        b = init(prefix + ".bias", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, wt], out + "/matmul"), b], out)

    def layer_norm(x, prefix, out):
        s = init(prefix + ".weight", w[prefix + ".weight"])
        b = init(prefix + ".bias", w[prefix + ".bias"])
        return node("LayerNormalization", [x, s, b], out, axis=-1, epsilon=eps)

    # Constants.
    init("const/zero_1d", np.array([0], np.int64))
    init("const/axes_1_2", np.array([1, 2], np.int64))
    init("const/heads_shape", np.array([0, 0, heads, hd], np.int64))
    init("const/merge_shape", np.array([0, 0, DIM], np.int64))
    init("const/one_f", np.array(1.0, np.float32))
    init("const/mask_min", np.array(np.finfo(np.float32).min, np.float32))
    init("const/scale", np.array(1.0 / np.sqrt(hd), np.float32))
    init("const/sqrt2", np.array(np.sqrt(2.0), np.float32))
    init("const/half", np.array(0.5, np.float32))

    # Embeddings.
    word = init("embeddings.word_embeddings.weight", w["embeddings.word_embeddings.weight"])
    pos = init("embeddings.position_embeddings.weight", w["embeddings.position_embeddings.weight"])
    typ = init("embeddings.token_type_embeddings.weight", w["embeddings.token_type_embeddings.weight"])
    seq = node("Shape", ["input_ids"], "embeddings/seq_len", start=1, end=2)  # [1]
    pos_e = node("Slice", [pos, "const/zero_1d", seq, "const/zero_1d"], "embeddings/positions")  # [S, 384]
    e = node("Add", [node("Gather", [word, "input_ids"], "embeddings/words"), pos_e], "embeddings/add_pos")
    e = node("Add", [e, node("Gather", [typ, "token_type_ids"], "embeddings/types")], "embeddings/sum")
    x = layer_norm(e, "embeddings.LayerNorm", "embeddings/out")

    # Mask bias: (1 - mask) * min, [B, 1, 1, S].
    m = node("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
    m = node("Mul", [node("Sub", ["const/one_f", m], "mask/inverted"), "const/mask_min"], "mask/bias")
    mask_bias = node("Unsqueeze", [m, "const/axes_1_2"], "mask/bias4d")

    for l in range(layers):
        p, n = f"encoder.layer.{l}.", f"layer{l}/"
        q = dense(x, p + "attention.self.query", n + "q")
        k = dense(x, p + "attention.self.key", n + "k")
        v = dense(x, p + "attention.self.value", n + "v")
        q = node("Transpose", [node("Reshape", [q, "const/heads_shape"], n + "q_heads")], n + "q_t", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, "const/heads_shape"], n + "k_heads")], n + "k_t", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, "const/heads_shape"], n + "v_heads")], n + "v_t", perm=[0, 2, 1, 3])
        s = node("Mul", [node("MatMul", [q, k], n + "qk"), "const/scale"], n + "scores")
        s = node("Softmax", [node("Add", [s, mask_bias], n + "scores_masked")], n + "probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [s, v], n + "ctx_heads")], n + "ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "const/merge_shape"], n + "ctx")
        a = dense(ctx, p + "attention.output.dense", n + "attn_out")
        x = layer_norm(node("Add", [a, x], n + "attn_residual"), p + "attention.output.LayerNorm", n + "attn_norm")
        h = dense(x, p + "intermediate.dense", n + "inter")
        erf = node("Erf", [node("Div", [h, "const/sqrt2"], n + "gelu_div")], n + "gelu_erf")
        g = node("Mul", [h, node("Add", [erf, "const/one_f"], n + "gelu_add")], n + "gelu_mul")
        g = node("Mul", [g, "const/half"], n + "gelu")
        o = dense(g, p + "output.dense", n + "out")
        out = "last_hidden_state" if l == layers - 1 else n + "out_norm"
        x = layer_norm(node("Add", [o, x], n + "out_residual"), p + "output.LayerNorm", out)

    ids = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch_size", "sequence_length"])
    graph = helper.make_graph(
        nodes,
        "BertModel",
        [ids("input_ids"), ids("attention_mask"), ids("token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", DIM])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="edgeproof bench/minilm_onnx.py",
        doc_string=f"sentence-transformers/{NAME} BertModel, exported from model.safetensors with onnx.helper",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model, cfg


def check(onnx_path, model_dir, batch, min_cosine):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    text = (DATA / "sentences.txt").read_text(encoding="utf-8")
    sentences = text[:-1].split("\n")
    retrieval = json.loads((DATA / "retrieval.json").read_text(encoding="utf-8"))
    texts = sentences + retrieval["passages"] + [q["text"] for q in retrieval["queries"]]
    ref = np.fromfile(DATA / "reference.bin", dtype="<f4").reshape(-1, DIM).astype(np.float64)
    assert len(ref) == len(texts), (len(ref), len(texts))
    enc = [tok.encode(t) for t in texts]

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    def embed(group):
        n = max(len(e.ids) for e in group)
        ids = np.zeros((len(group), n), np.int64)
        mask = np.zeros((len(group), n), np.int64)
        for i, e in enumerate(group):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = 1
        (h,) = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        h = h.astype(np.float64)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    results, runs = {}, []
    for label, size in (("batch 1", 1), (f"padded batches of {batch}", batch)):
        vecs = np.concatenate([embed(enc[i : i + size]) for i in range(0, len(enc), size)])
        runs.append(vecs)
        cos = (vecs * ref).sum(1) / np.linalg.norm(ref, axis=1)
        results[label] = {
            "min_cosine": float(cos.min()),
            "min_cosine_first_64_sentences": float(cos[:64].min()),
            "max_abs_diff": float(np.abs(vecs - ref).max()),
            "worst_text": int(cos.argmin()),
        }
    results["batch 1 vs padded, max abs diff"] = float(np.abs(runs[0] - runs[1]).max())
    print(json.dumps({"texts": len(texts), "onnxruntime": ort.__version__, "onnx": onnx.__version__, "vs_reference_bin": results}, indent=1))
    worst = min(r["min_cosine"] for r in results.values() if isinstance(r, dict))
    if worst < min_cosine:
        sys.exit(f"min cosine {worst} < {min_cosine}: the export does not match the reference")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(CACHE / NAME), help="the safetensors model folder (scripts/fetch-models.sh minilm)")
    ap.add_argument("--out", default=str(CACHE / "minilm-onnx"), help="transformers.js's localModelPath (OUT/all-MiniLM-L6-v2/...)")
    ap.add_argument("--batch", type=int, default=32, help="padded batch size of the second check")
    ap.add_argument("--min-cosine", type=float, default=0.99999)
    args = ap.parse_args()
    model_dir = Path(args.model)
    if not (model_dir / "model.safetensors").is_file():
        sys.exit(f"{model_dir}/model.safetensors is missing: run scripts/fetch-models.sh minilm")

    model, cfg = build(model_dir)
    dest = Path(args.out) / NAME
    (dest / "onnx").mkdir(parents=True, exist_ok=True)
    tmp = dest / "onnx" / "model.onnx.tmp"
    onnx.save_model(model, str(tmp))
    tmp.replace(dest / "onnx" / "model.onnx")
    for f in ("config.json", "tokenizer.json"):
        shutil.copyfile(model_dir / f, dest / f)
    tokenizer_config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": MAX_LEN,
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
        "tokenize_chinese_chars": True,
        "strip_accents": None,
        "clean_up_tokenization_spaces": True,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=1) + "\n")
    digest = hashlib.sha256((dest / "onnx" / "model.onnx").read_bytes()).hexdigest()
    size = (dest / "onnx" / "model.onnx").stat().st_size
    print(f"wrote {dest}/onnx/model.onnx ({size} bytes, sha256 {digest}, {len(model.graph.node)} nodes, opset {OPSET})")

    check(dest / "onnx" / "model.onnx", model_dir, args.batch, args.min_cosine)
    print(dest.parent)


if __name__ == "__main__":
    main()
