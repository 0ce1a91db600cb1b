//! The GPU sampler against `sampling::sample`, token for token: seeded random logit rows of
//! the real vocabulary sizes and awkward ones, exponents like real logits' and edge rows
//! (ties, one winner, e = 0, a row the kernels must hand back to the CPU), under many
//! temperatures, top-k, top-p, seeds and steps. Natively this runs on Mesa's lavapipe.

#[path = "common/gpu_inputs.rs"]
mod gpu_inputs;

use edgeproof::backend::exact::IMat;
use edgeproof::gpu::{GpuAct, GpuContext, GpuOps, GpuOptions};
use edgeproof::numerics::{exp2_q20, rshr, LOG2E_Q30};
use edgeproof::sampling::{self, SamplingParams};
use edgeproof::tiny::SplitMix64;
use gpu_inputs::{logit_rows as rows, signed};
use std::rc::Rc;

fn gpu() -> GpuOps {
    let ctx = GpuContext::new_blocking(GpuOptions::from_env()).unwrap_or_else(|e| {
        panic!(
            "no usable GPU adapter ({e}). Natively the tests run on Mesa's lavapipe: \
             apt-get install mesa-vulkan-drivers"
        )
    });
    eprintln!("adapter: {} ({:?})", ctx.adapter.name, ctx.adapter.backend);
    GpuOps::new(Rc::new(ctx), &gpu_inputs::test_config()).expect("GPU ops")
}

const TEMPS: [f32; 6] = [0.0, 0.05, 0.7, 1.0, 3.0, 1000.0];
const TOP_PS: [f32; 4] = [0.01, 0.5, 0.9, 1.0];

/// The kernels' state for one row, without the fallback: token, status, and (seeded) the
/// total weight after top-k (words 10-11), the kept weight after top-p (12-13), r + 1 (17-18).
fn pick(g: &mut GpuOps, x: &GpuAct, row: usize, p: &SamplingParams, step: u64) -> Vec<u32> {
    let out = g.sample_record(x, row, p, step).expect("sample_record");
    g.flush();
    bytemuck::pod_collect_to_vec(&g.ctx.read(&out, 80).expect("read"))
}

fn word64(s: &[u32], i: usize) -> u64 {
    s[i] as u64 | (s[i + 1] as u64) << 32
}

/// `sampling::sample`'s intermediate sums, computed the same way: (total, kept, r).
fn cpu_sums(logits: &[f32], p: &SamplingParams, step: u64) -> (u64, u64, u64) {
    let q16: Vec<i64> = logits.iter().map(|&x| (x as f64 * 65536.0).round_ties_even() as i64).collect();
    let mut idx: Vec<u32> = (0..q16.len() as u32).collect();
    idx.sort_by(|a, b| q16[*b as usize].cmp(&q16[*a as usize]).then(a.cmp(b)));
    let k = if p.top_k == 0 { idx.len() } else { (p.top_k as usize).min(idx.len()) };
    let top = q16[idx[0] as usize];
    let w: Vec<u64> = idx[..k]
        .iter()
        .map(|&i| {
            let z = (((q16[i as usize] - top) << 16) / p.temperature_q16 as i64).max(-(100 << 16));
            rshr(exp2_q20(rshr(z * LOG2E_Q30, 26)), 6) as u64
        })
        .collect();
    let total: u64 = w.iter().sum();
    let mut kept = 0;
    for v in &w {
        kept += v;
        if kept * 65536 >= p.top_p_q16 as u64 * total {
            break;
        }
    }
    (total, kept, ((kept as u128 * sampling::random_u64(p.seed, step) as u128) >> 64) as u64)
}

#[test]
fn gpu_sampling_equals_cpu() {
    let mut g = gpu();
    let mut rng = SplitMix64(7);
    let t0 = std::time::Instant::now();
    let (mut checked, mut below_top) = (0, 0);
    // (vocab, parameter sets per row): every combination for small rows, a random subset for large.
    for (cols, per_row) in [(1, 0), (2, 0), (7, 0), (1000, 0), (49152, 10), (262144, 4)] {
        let rs = rows(&mut rng, cols);
        let mut x = IMat::zeros(rs.len(), cols);
        for (i, (_, m, e, _)) in rs.iter().enumerate() {
            x.m[i * cols..(i + 1) * cols].copy_from_slice(m);
            x.e[i] = *e;
        }
        let gx = g.upload(&x).expect("upload");
        let values = x.to_f32();
        let mut all = vec![];
        for t in TEMPS {
            for k in [0, 1, 2, 40, cols as u32] {
                for top_p in TOP_PS {
                    all.push((t, k, top_p));
                }
            }
        }
        for (i, (name, _, _, fallback)) in rs.iter().enumerate() {
            let row = &values[i * cols..(i + 1) * cols];
            let sets: Vec<(f32, u32, f32)> = if per_row == 0 {
                all.clone()
            } else {
                (0..per_row).map(|_| all[rng.next_u64() as usize % all.len()]).collect()
            };
            for (n, &(t, k, top_p)) in sets.iter().enumerate() {
                let seed = rng.next_u64();
                let p = SamplingParams::new(t, k, top_p, seed).expect("params");
                // Steps near 0 and far from it (the counter's high word).
                let step = [0, 1, 1 << 40, n as u64][rng.next_u64() as usize % 4];
                let case = format!("vocab {cols}, row {i} ({name}), T={t} k={k} p={top_p} seed={seed:#x} step={step}");
                let want = sampling::sample(row, &p, step).expect("cpu sample");
                let st = pick(&mut g, &gx, i, &p, step);
                let (got, status) = (st[0], st[1]);
                if *fallback && !p.is_greedy() {
                    assert_ne!(status, 0, "{case}: the kernels should hand this row back to the CPU");
                    assert_eq!(g.sample(&gx, i, &p, step).expect("gpu sample"), want, "{case} (fallback)");
                } else {
                    assert_eq!(status, 0, "{case}: unexpected fallback");
                    assert_eq!(got, want, "{case}");
                    if !p.is_greedy() {
                        let (total, kept, r) = cpu_sums(row, &p, step);
                        let sums = (word64(&st, 10), word64(&st, 12), word64(&st, 17));
                        assert_eq!(sums, (total, kept, r + 1), "{case}: (total, kept, r + 1)");
                    }
                }
                checked += 1;
                below_top += (Some(want) != sampling::argmax(row)) as usize;
            }
        }
        eprintln!("vocab {cols}: done after {:.1?}", t0.elapsed());
    }
    eprintln!("{checked} samples checked in {:.1?}, {below_top} not the top token", t0.elapsed());
    // The draws must be varied for the comparison to mean something.
    assert!(below_top * 10 > checked, "only {below_top} of {checked} draws were not the top token");
}

#[test]
fn sample_api_and_errors() {
    let mut g = gpu();
    let mut rng = SplitMix64(9);
    let cols = 300;
    let mut x = IMat::zeros(3, cols);
    x.m.iter_mut().for_each(|v| *v = signed(&mut rng, 20));
    x.e = vec![-15, -13, 2];
    let gx = g.upload(&x).expect("upload");
    let values = x.to_f32();
    let p = SamplingParams::new(0.8, 40, 0.9, 3).expect("params");
    for row in 0..3 {
        for step in 0..20 {
            let want = sampling::sample(&values[row * cols..(row + 1) * cols], &p, step).expect("cpu");
            assert_eq!(g.sample(&gx, row, &p, step).expect("gpu"), want, "row {row} step {step}");
        }
    }
    assert!(g.sample(&gx, 3, &p, 0).is_err(), "a row past the end is an error");
    // An empty row: the CPU's error, through the fallback.
    let empty = g.upload(&IMat::zeros(1, 0)).expect("upload");
    assert!(g.sample(&empty, 0, &p, 0).is_err());
    assert!(g.sample(&empty, 0, &SamplingParams::greedy(), 0).is_err());
}

/// Top-p's cut where `top_p · total / 2^16` is just above the first token's weight: the kept
/// prefix must be two tokens (found by search over the second logit).
#[test]
fn top_p_cut_just_above_a_prefix() {
    let mut g = gpu();
    let e = -17;
    let mut found = 0;
    for m2 in (1..200_000).step_by(7) {
        let x = IMat { rows: 1, cols: 2, m: vec![1 << 20, (1 << 20) - m2], e: vec![e] };
        let values = x.to_f32();
        let all = SamplingParams { temperature_q16: 1 << 16, top_k: 0, top_p_q16: 1 << 16, seed: 1 };
        let (total, _, _) = cpu_sums(&values, &all, 0);
        let top_p = (1u64 << 40) / total + 1;
        if top_p > 1 << 16 || top_p * total - (1 << 40) >= 1 << 16 {
            continue;
        }
        let p = SamplingParams { top_p_q16: top_p as u32, ..all };
        let (_, kept, _) = cpu_sums(&values, &p, 0);
        assert_eq!(kept, total, "m2 {m2}: the CPU keeps both tokens");
        let gx = g.upload(&x).expect("upload");
        for step in 0..4 {
            let st = pick(&mut g, &gx, 0, &p, step);
            assert_eq!((st[1], word64(&st, 12)), (0, kept), "m2 {m2} top_p {top_p} step {step}: status, kept");
            assert_eq!(st[0], sampling::sample(&values, &p, step).expect("cpu"), "m2 {m2} step {step}");
        }
        found += 1;
        if found == 3 {
            return;
        }
    }
    panic!("only {found} cases found");
}
