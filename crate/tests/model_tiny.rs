//! The f32 forward pass on the tiny models against a straightforward forward pass
//! written here independently: full-sequence attention with an explicit causal /
//! sliding-window mask, no KV cache, f64 arithmetic.

use edgeproof::engine::{Engine, RefModel};
use edgeproof::gguf::Gguf;
use edgeproof::model::Arch;
use edgeproof::tiny::{tiny_model, TINY_WINDOW};

mod common;

fn tiny(arch: Arch) -> Gguf {
    let src = std::fs::read(common::model_path("smollm2")).expect("read SmolLM2 (tokenizer source)");
    let header = edgeproof::gguf::parse_header(&src).expect("parse SmolLM2 header");
    Gguf::from_bytes(tiny_model(arch, &header.metadata, 7).expect("build tiny model")).expect("parse tiny model")
}

struct Naive {
    gemma: bool,
    g: Gguf,
}

impl Naive {
    fn w(&self, name: &str) -> (Vec<f64>, usize) {
        let t = self.g.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = t.to_f32().expect("dequantize");
        (v.iter().map(|&x| x as f64).collect(), t.info.row_len())
    }
    fn meta(&self, k: &str) -> usize {
        let arch = if self.gemma { "gemma3" } else { "llama" };
        self.g.metadata().get_usize(&format!("{arch}.{k}")).expect(k)
    }
    /// y[o] = sum_i W[o][i] x[i]
    fn mv(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let (w, cols) = self.w(name);
        assert_eq!(cols, x.len(), "{name}");
        w.chunks(cols).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }
    fn norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let (w, _) = self.w(name);
        let group = w.len();
        let eps = 1e-6; // both tiny models say so
        x.chunks(group)
            .flat_map(|g| {
                let r = 1.0 / (g.iter().map(|v| v * v).sum::<f64>() / group as f64 + eps).sqrt();
                g.iter().zip(&w).map(move |(v, wv)| v * r * wv).collect::<Vec<_>>()
            })
            .collect()
    }
    fn rope(&self, x: &mut [f64], pos: usize, hd: usize, base: f64) {
        for head in x.chunks_mut(hd) {
            for t in 0..hd / 2 {
                let th = pos as f64 * base.powf(-2.0 * t as f64 / hd as f64);
                let (a, b) = if self.gemma { (t, t + hd / 2) } else { (2 * t, 2 * t + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * th.cos() - x1 * th.sin();
                head[b] = x0 * th.sin() + x1 * th.cos();
            }
        }
    }

    /// Logits at every position of `ids`.
    fn forward(&self, ids: &[u32]) -> Vec<Vec<f64>> {
        let (n_layer, e) = (self.meta("block_count"), self.meta("embedding_length"));
        let (nh, nkv, hd) = (
            self.meta("attention.head_count"),
            self.meta("attention.head_count_kv"),
            self.meta("attention.key_length"),
        );
        let (emb, _) = self.w("token_embd.weight");
        let mut xs: Vec<Vec<f64>> = ids
            .iter()
            .map(|&t| {
                let r = emb[t as usize * e..(t as usize + 1) * e].to_vec();
                if self.gemma {
                    r.iter().map(|v| v * (e as f64).sqrt()).collect()
                } else {
                    r
                }
            })
            .collect();
        for il in 0..n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            let global = !self.gemma || il % 6 == 5;
            let base = if self.gemma && !global { 10_000.0 } else { 100_000.0 };
            let mut qs = Vec::new();
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (p, x) in xs.iter().enumerate() {
                let h = self.norm(&n("attn_norm"), x);
                let (mut q, mut k) = (self.mv(&n("attn_q"), &h), self.mv(&n("attn_k"), &h));
                if self.gemma {
                    q = self.norm(&n("attn_q_norm"), &q);
                    k = self.norm(&n("attn_k_norm"), &k);
                }
                self.rope(&mut q, p, hd, base);
                self.rope(&mut k, p, hd, base);
                qs.push(q);
                ks.push(k);
                vs.push(self.mv(&n("attn_v"), &h));
            }
            for p in 0..xs.len() {
                let mut att = vec![0.0; nh * hd];
                for h in 0..nh {
                    let kvh = h / (nh / nkv);
                    // Explicit mask: key j is visible iff j <= p and (global or p - j < window).
                    let visible: Vec<usize> =
                        (0..xs.len()).filter(|&j| j <= p && (global || p - j < TINY_WINDOW)).collect();
                    let s: Vec<f64> = visible
                        .iter()
                        .map(|&j| {
                            (0..hd).map(|d| qs[p][h * hd + d] * ks[j][kvh * hd + d]).sum::<f64>() / (hd as f64).sqrt()
                        })
                        .collect();
                    let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = s.iter().map(|v| (v - mx).exp()).sum();
                    for (si, &j) in s.iter().zip(&visible) {
                        for d in 0..hd {
                            att[h * hd + d] += (si - mx).exp() / z * vs[j][kvh * hd + d];
                        }
                    }
                }
                let mut o = self.mv(&n("attn_output"), &att);
                if self.gemma {
                    o = self.norm(&n("post_attention_norm"), &o);
                }
                xs[p].iter_mut().zip(&o).for_each(|(a, b)| *a += b);
                let h = self.norm(&n("ffn_norm"), &xs[p]);
                let (g, u) = (self.mv(&n("ffn_gate"), &h), self.mv(&n("ffn_up"), &h));
                let f: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(&g, &u)| {
                        let act = if self.gemma {
                            0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh())
                        } else {
                            g / (1.0 + (-g).exp())
                        };
                        act * u
                    })
                    .collect();
                let mut d = self.mv(&n("ffn_down"), &f);
                if self.gemma {
                    d = self.norm(&n("post_ffw_norm"), &d);
                }
                xs[p].iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            }
        }
        xs.iter().map(|x| self.mv("token_embd.weight", &self.norm("output_norm.weight", x))).collect()
    }
}

fn max_rel_diff(a: &[f32], b: &[f64]) -> f64 {
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-6);
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs() / scale).fold(0.0, f64::max)
}

fn check_against_naive(arch: Arch) {
    let g = tiny(arch);
    let model = RefModel::load(&g).expect("load tiny");
    let n_vocab = model.cfg.n_vocab;
    // 3 windows' worth of tokens, so every sliding-window layer drops keys.
    let ids: Vec<u32> = (0..3 * TINY_WINDOW as u32 + 1).map(|i| (i * 7919 + 13) % n_vocab as u32).collect();
    let naive = Naive { gemma: arch == Arch::Gemma3, g: tiny(arch) }.forward(&ids);

    // One batched pass over all positions.
    let mut s = model.session().expect("session");
    let batched = s.eval(&ids, 0, 0..ids.len()).expect("batched eval");
    // Token by token through the KV cache.
    let mut s = model.session().expect("session");
    for (p, &t) in ids.iter().enumerate() {
        let row = s.eval(&[t], p, 0..1).expect("decode eval");
        let d = max_rel_diff(&row, &naive[p]);
        assert!(d < 1e-4, "{arch:?} decode position {p}: max relative difference {d} from the naive forward");
        let b = &batched[p * n_vocab..(p + 1) * n_vocab];
        let d = max_rel_diff(b, &naive[p]);
        assert!(d < 1e-4, "{arch:?} batched position {p}: max relative difference {d} from the naive forward");
    }
}

#[test]
fn tiny_gemma3_matches_naive_sliding_window_forward() {
    check_against_naive(Arch::Gemma3);
}

#[test]
fn tiny_llama_matches_naive_forward() {
    check_against_naive(Arch::Llama);
}

#[test]
fn tiny_model_uses_every_tensor_type() {
    let mut seen = std::collections::HashSet::new();
    for arch in [Arch::Llama, Arch::Gemma3] {
        for t in &tiny(arch).header.tensors {
            seen.insert(t.ty);
        }
    }
    for ty in edgeproof::quant::TensorType::ALL {
        assert!(seen.contains(&ty), "no tiny-model tensor has type {}", ty.name());
    }
}

#[test]
fn tiny_model_is_deterministic() {
    let src = std::fs::read(common::model_path("smollm2")).expect("read SmolLM2");
    let h = edgeproof::gguf::parse_header(&src).expect("header");
    let a = tiny_model(Arch::Gemma3, &h.metadata, 3).expect("tiny");
    let b = tiny_model(Arch::Gemma3, &h.metadata, 3).expect("tiny");
    let c = tiny_model(Arch::Gemma3, &h.metadata, 4).expect("tiny");
    assert!(a == b, "same seed, different bytes");
    assert!(a != c, "different seeds, same bytes");
}
