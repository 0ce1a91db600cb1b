//! Token selection, exact on every backend: greedy (ties to the lowest id) or
//! seeded sampling with temperature, top-k and top-p in fixed point, driven by
//! Philox4x32-10 keyed by the seed with the step as counter.
//!
//! Logits enter as f32; in exact mode they are row-scaled integers with 24-bit
//! mantissas, which f32 holds exactly, so converting them to Q16 here is the
//! same integer function of the engine's output on every backend.

use crate::error::{Error, Result};
use crate::numerics::{exp2_q20, rshr, LOG2E_Q30};

/// Sampling settings in the fixed-point form receipts commit to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SamplingParams {
    /// Temperature in Q16; 0 means greedy.
    pub temperature_q16: u32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Keep the smallest most-likely set whose probability reaches `top_p_q16 / 2^16`.
    pub top_p_q16: u32,
    pub seed: u64,
}

pub const ONE_Q16: u32 = 1 << 16;

/// Top-k and top-p where a caller gives none (the CLI and the JavaScript API alike).
pub const DEFAULT_TOP_K: u32 = 40;
pub const DEFAULT_TOP_P: f32 = 0.95;

/// `x` in Q16, rounded half to even (exact: f64 holds every f32 times 2^16).
fn q16_of(x: f32, what: &str) -> Result<u32> {
    if !x.is_finite() || !(0.0..=1000.0).contains(&x) {
        return Err(Error::InvalidArgument(format!("{what} {x} is outside 0..=1000")));
    }
    Ok((x as f64 * 65536.0).round_ties_even() as u32)
}

impl SamplingParams {
    pub fn greedy() -> SamplingParams {
        SamplingParams { temperature_q16: 0, top_k: 0, top_p_q16: ONE_Q16, seed: 0 }
    }

    /// From user-facing values: temperature >= 0 (0 = greedy), top_k (0 = off), top_p in (0, 1].
    /// Greedy decoding ignores top-k, top-p and the seed: they are set to [`SamplingParams::greedy`]'s,
    /// so that one greedy request makes one receipt whatever else was passed.
    pub fn new(temperature: f32, top_k: u32, top_p: f32, seed: u64) -> Result<SamplingParams> {
        let top_p_q16 = q16_of(top_p, "top_p")?;
        if !top_p_in_range(top_p_q16) {
            return Err(Error::InvalidArgument(format!("top_p {top_p} must be in (0, 1]")));
        }
        let temperature_q16 = q16_of(temperature, "temperature")?;
        if temperature_q16 == 0 {
            return Ok(SamplingParams::greedy());
        }
        Ok(SamplingParams { temperature_q16, top_k, top_p_q16, seed })
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature_q16 == 0
    }

    /// In the forms [`SamplingParams::new`] gives: top-p in (0, 1], and greedy as
    /// [`SamplingParams::greedy`] (a receipt's settings must be, to be re-executed).
    pub fn is_canonical(&self) -> bool {
        top_p_in_range(self.top_p_q16) && (!self.is_greedy() || *self == SamplingParams::greedy())
    }
}

/// Top-p in Q16 within (0, 1].
fn top_p_in_range(q16: u32) -> bool {
    q16 > 0 && q16 <= ONE_Q16
}

/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    const M0: u64 = 0xD251_1F53;
    const M1: u64 = 0xCD9E_8D57;
    const W0: u32 = 0x9E37_79B9;
    const W1: u32 = 0xBB67_AE85;
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = M0 * c[0] as u64;
        let p1 = M1 * c[2] as u64;
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// The 64 random bits of step `step` under `seed`.
pub fn random_u64(seed: u64, step: u64) -> u64 {
    let r = philox4x32([step as u32, (step >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32]);
    (r[0] as u64) << 32 | r[1] as u64
}

/// Index of the largest logit; ties to the lowest id. `None` for an empty or all-NaN row.
pub fn argmax(xs: &[f32]) -> Option<u32> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &x) in xs.iter().enumerate() {
        if best.map_or(!x.is_nan(), |(_, b)| x > b) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i as u32)
}

/// Choose the token of step `step` from one row of logits.
pub fn sample(logits: &[f32], p: &SamplingParams, step: u64) -> Result<u32> {
    let nan = || Error::InvalidArgument("logits are empty or NaN".into());
    if p.is_greedy() {
        return argmax(logits).ok_or_else(nan);
    }
    if logits.iter().any(|x| !x.is_finite()) {
        return Err(nan());
    }
    let (q16, least, top) = logits_q16(logits).ok_or_else(nan)?;
    // Weights exp((l - l_max) / T) in Q24: z in Q16 (division truncates toward zero),
    // times log2(e) to Q20, through the exp2 table.
    let t = p.temperature_q16 as i64;
    let weight = |q: i64| {
        // Below −2^40 the quotient is past the clamp anyway (t < 2^32); the bound keeps the
        // shift from wrapping on absurd logit spreads.
        let z = (q.saturating_sub(top).max(-(1 << 40)) << 16) / t;
        let z = z.max(-(100 << 16)); // exp(-100) is 0 at Q30 anyway; keeps the product in range
        rshr(exp2_q20(rshr(z * LOG2E_Q30, 26)), 6) as u64
    };
    // Candidates by logit, descending, ties to the lower id. Weights fall with the logit, so
    // those of weight 0 are the order's tail: leaving them out before sorting (most of a large
    // vocabulary) changes neither the top-k prefix, the top-p prefix nor the draw. `cut`: the
    // least logit of weight above 0 (bisection: weight(top) = 2^24).
    let (mut lo, mut cut) = (least, top);
    while lo < cut {
        let mid = lo.wrapping_add((cut.wrapping_sub(lo) as u64 / 2) as i64);
        if weight(mid) > 0 {
            cut = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut idx: Vec<u32> = (0..q16.len() as u32).filter(|&i| q16[i as usize] >= cut).collect();
    let order = |a: &u32, b: &u32| q16[*b as usize].cmp(&q16[*a as usize]).then(a.cmp(b));
    let k = if p.top_k == 0 { idx.len() } else { (p.top_k as usize).min(idx.len()) };
    if k == 0 {
        return Err(nan());
    }
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    let weights: Vec<u64> = idx.iter().map(|&i| weight(q16[i as usize])).collect();
    // Top-p: the shortest prefix whose weight reaches top_p of the total (sums < 2^42).
    let total: u64 = weights.iter().sum();
    let mut kept = 0u64;
    let mut n = 0;
    for w in &weights {
        kept += w;
        n += 1;
        if kept * ONE_Q16 as u64 >= p.top_p_q16 as u64 * total {
            break;
        }
    }
    // r uniform in [0, kept): the high 64 bits of kept * u64.
    let r = ((kept as u128 * random_u64(p.seed, step) as u128) >> 64) as u64;
    let mut cum = 0u64;
    for (w, &i) in weights[..n].iter().zip(&idx) {
        cum += w;
        if cum > r {
            return Ok(i);
        }
    }
    Ok(idx[0])
}

/// Logits in Q16, rounded to nearest, ties to even, with the least and the greatest (`None`
/// when empty). The AVX2 copy rounds with one instruction (`vroundpd`) and compares four
/// at a time; baseline x86_64 calls a library function per value (a vocabulary of 262 144
/// made this most of a sampled step's time outside the model).
fn logits_q16(logits: &[f32]) -> Option<(Vec<i64>, i64, i64)> {
    #[inline(always)]
    fn body(logits: &[f32]) -> Option<(Vec<i64>, i64, i64)> {
        let q: Vec<i64> = logits.iter().map(|&x| (x as f64 * 65536.0).round_ties_even() as i64).collect();
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for &v in &q {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        (!q.is_empty()).then_some((q, lo, hi))
    }
    with_avx2!(body(logits: &[f32]) -> Option<(Vec<i64>, i64, i64)>)
}

/// Stops a stream of text at the first occurrence of any stop string. Text that
/// might be the start of a stop string is held back until it is known not to be.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> StopMatcher {
        StopMatcher { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Add generated text; returns the text now safe to show and whether a stop string was hit
    /// (the stop string and anything after it are dropped).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        self.pending.push_str(piece);
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.pending[i..])))
            .unwrap_or(self.pending.len());
        let out = self.pending[..hold].to_string();
        self.pending.drain(..hold);
        (out, false)
    }

    /// End of generation: whatever was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Random123's kat_vectors for philox4x32_10.
        assert_eq!(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
        assert_eq!(
            philox4x32([0xffff_ffff; 4], [0xffff_ffff; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32([0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344], [0xa409_3822, 0x299f_31d0]),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    /// `sample` as it was before it left out the zero weights: every candidate sorted.
    fn sample_all_sorted(logits: &[f32], p: &SamplingParams, step: u64) -> u32 {
        let q16: Vec<i64> = logits.iter().map(|&x| (x as f64 * 65536.0).round_ties_even() as i64).collect();
        let mut idx: Vec<u32> = (0..q16.len() as u32).collect();
        idx.sort_unstable_by(|a, b| q16[*b as usize].cmp(&q16[*a as usize]).then(a.cmp(b)));
        if p.top_k > 0 {
            idx.truncate(p.top_k as usize);
        }
        let top = q16[idx[0] as usize];
        let weights: Vec<u64> = idx
            .iter()
            .map(|&i| {
                let z = (((q16[i as usize] - top) << 16) / p.temperature_q16 as i64).max(-(100 << 16));
                rshr(exp2_q20(rshr(z * LOG2E_Q30, 26)), 6) as u64
            })
            .collect();
        let total: u64 = weights.iter().sum();
        let (mut kept, mut n) = (0u64, 0);
        for w in &weights {
            kept += w;
            n += 1;
            if kept * ONE_Q16 as u64 >= p.top_p_q16 as u64 * total {
                break;
            }
        }
        let r = ((kept as u128 * random_u64(p.seed, step) as u128) >> 64) as u64;
        let mut cum = 0u64;
        for (w, &i) in weights[..n].iter().zip(&idx) {
            cum += w;
            if cum > r {
                return i;
            }
        }
        idx[0]
    }

    /// Leaving out the candidates of weight 0 draws the same tokens as sorting them all: wide
    /// and narrow logit spreads (most weights 0, or none), ties, top-k below and above the
    /// candidates with a weight, top-p, low and high temperatures.
    #[test]
    fn zero_weights_left_out_draw_the_same_tokens() {
        let mut rng = crate::tiny::SplitMix64(23);
        for case in 0..64u64 {
            let spread = [0.01f64, 1.0, 8.0, 40.0][case as usize % 4];
            let logits: Vec<f32> = (0..1000)
                .map(|_| ((rng.next_u64() % 2001) as f64 / 1000.0 - 1.0) * spread)
                .map(|v| if case % 8 == 7 { v.round() as f32 } else { v as f32 })
                .collect();
            let temperature = [0.1f32, 0.7, 1.0, 3.0][(case / 4) as usize % 4];
            let top_k = [0u32, 1, 5, 900][(case / 16) as usize % 4];
            let top_p = [1.0f32, 0.9, 0.5][case as usize % 3];
            let p = SamplingParams::new(temperature, top_k, top_p, case).expect("params");
            for step in 0..8 {
                let want = sample_all_sorted(&logits, &p, step);
                assert_eq!(sample(&logits, &p, step).ok(), Some(want), "case {case} step {step}");
            }
        }
    }

    #[test]
    fn greedy_ties_to_lowest_id() {
        assert_eq!(sample(&[1.0, 3.0, 3.0, 2.0], &SamplingParams::greedy(), 0).ok(), Some(1));
        assert!(sample(&[f32::NAN], &SamplingParams::greedy(), 0).is_err());
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.5, 2.0, 2.0, -1.0, 1.9];
        let p = SamplingParams::new(1.0, 1, 1.0, 42).expect("params");
        for step in 0..50 {
            assert_eq!(sample(&logits, &p, step).ok(), Some(1));
        }
    }

    #[test]
    fn tiny_top_p_keeps_only_the_best() {
        let logits = [0.0, 5.0, 4.9, 1.0];
        let p = SamplingParams::new(0.8, 0, 0.01, 7).expect("params");
        for step in 0..50 {
            assert_eq!(sample(&logits, &p, step).ok(), Some(1));
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        // Two tokens with logits differing by ln 3 at temperature 1: 3:1 odds.
        let logits = [0.0, 3f32.ln(), -30.0];
        let p = SamplingParams::new(1.0, 0, 1.0, 1234).expect("params");
        let n = 20_000;
        let ones = (0..n).filter(|&s| sample(&logits, &p, s).ok() == Some(1)).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.015, "token 1 drawn {frac} of the time, expected 0.75");
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37 % 17) as f32) * 0.3).collect();
        let a = SamplingParams::new(1.2, 40, 0.95, 5).expect("params");
        let b = SamplingParams { seed: 6, ..a };
        let run = |p: &SamplingParams| (0..64).map(|s| sample(&logits, p, s).unwrap_or(u32::MAX)).collect::<Vec<_>>();
        assert_eq!(run(&a), run(&a));
        assert_ne!(run(&a), run(&b));
    }

    #[test]
    fn greedy_requests_are_one_request() {
        let g = SamplingParams::new(0.0, 40, 0.95, 7).expect("greedy");
        assert_eq!(g, SamplingParams::greedy());
        assert_eq!(SamplingParams::new(0.0, 0, 1.0, 0).expect("greedy"), g);
        assert_eq!(SamplingParams::new(0.5, 40, 0.95, 7).expect("seeded").top_k, 40);
    }

    #[test]
    fn bad_params_are_errors() {
        assert!(SamplingParams::new(-1.0, 0, 1.0, 0).is_err());
        assert!(SamplingParams::new(1.0, 0, 0.0, 0).is_err());
        assert!(SamplingParams::new(1.0, 0, 1.5, 0).is_err());
        assert!(SamplingParams::new(f32::NAN, 0, 1.0, 0).is_err());
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let mut m = StopMatcher::new(&["\n\nUser:".to_string(), "END".to_string()]);
        assert_eq!(m.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(m.push(" wor"), (" wor".to_string(), false));
        assert_eq!(m.push("ld\n"), ("ld".to_string(), false));
        assert_eq!(m.push("\nUs"), (String::new(), false));
        assert_eq!(m.push("er: hi"), (String::new(), true));
        let mut m = StopMatcher::new(&["END".to_string()]);
        assert_eq!(m.push("aEN"), ("a".to_string(), false));
        assert_eq!(m.push("x"), ("ENx".to_string(), false));
        assert_eq!(m.push("E"), (String::new(), false));
        assert_eq!(m.finish(), "E");
        assert_eq!(StopMatcher::new(&[]).push("é"), ("é".to_string(), false));
    }
}
