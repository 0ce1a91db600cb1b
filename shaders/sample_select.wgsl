// Seeded sampling (sampling::sample) on one row of logits; with sample_weights and
// sample_hist. State words: 0 token, 1 status (0: ok, else the host falls back to the CPU),
// 2-3 top q16, 4-5 key prefix, 6-7 count below it, 8-9 weight below it, 10-11 total
// weight (after top-k), 12-13 kept weight (after top-p), 14/15 whether total/kept are
// set, 16 query settled, 17-18 threshold (of the draw: r + 1). Total, kept and r are
// left in the state for the tests.
// - query 0: the row's largest mantissa (ties to the lowest id): the greedy token, or the
//   top q16; status 1 where the CPU's f32 values would not be these integers exactly;
// - queries 1 (top-k, by count: threshold k), 2 (top-p, by weight: ceil(top_p·total /
//   2^16)) and 3 (the draw: r + 1 with r = (kept·u) >> 64) each find the smallest key whose
//   running count or weight reaches the threshold, one 8-bit digit per level: the bins of
//   sample_hist are added up over workgroups, scanned, and the first bin that reaches the
//   threshold extends the prefix. At the last level the running weight through the key is
//   the total (query 1), the kept weight (query 2), and the key's id the token (query 3).
// One workgroup. Prepended: i64.wgsl, sample_params.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> hist: array<u32>;
@group(0) @binding(4) var<storage, read_write> state: array<u32>;

var<workgroup> red_v: array<i32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> sc_c: array<u32, WG>;
var<workgroup> sc_w: array<vec2<u32>, WG>;
var<workgroup> wg_thr: vec2<u32>;
var<workgroup> wg_below: vec2<u32>;
var<workgroup> wg_active: u32;
var<workgroup> wg_chosen: u32;

fn get64(i: u32) -> vec2<u32> {
    return vec2<u32>(state[i], state[i + 1u]);
}

fn set64(i: u32, v: vec2<u32>) {
    state[i] = v.x;
    state[i + 1u] = v.y;
}

// a·b for unsigned 64-bit a and 32-bit b (the product fits in 64 bits).
fn u64_mul_u32(a: vec2<u32>, b: u32) -> vec2<u32> {
    let lo = u64_mul(a.x, b);
    return vec2<u32>(lo.x, lo.y + a.y * b);
}

// The high 64 bits of the 128-bit product of unsigned 64-bit a and b.
fn u64_mulhi(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let p00 = u64_mul(a.x, b.x);
    let p01 = u64_mul(a.x, b.y);
    let p10 = u64_mul(a.y, b.x);
    let p11 = u64_mul(a.y, b.y);
    let mid = i64_add(i64_add(vec2<u32>(p00.y, 0u), vec2<u32>(p01.x, 0u)), vec2<u32>(p10.x, 0u));
    return i64_add(i64_add(i64_add(p11, vec2<u32>(p01.y, 0u)), vec2<u32>(p10.y, 0u)), vec2<u32>(mid.y, 0u));
}

fn top_of_row(lid: u32) {
    let row = p.row * p.cols;
    var best = -2147483647 - 1;
    var at = NONE;
    for (var c = lid; c < p.cols; c += WG) {
        let v = xm[row + c];
        if at == NONE || v > best {
            best = v;
            at = c;
        }
    }
    red_v[lid] = best;
    red_i[lid] = at;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            let v = red_v[lid + h];
            let i = red_i[lid + h];
            let mine = red_i[lid];
            if i != NONE && (mine == NONE || v > red_v[lid] || (v == red_v[lid] && i < mine)) {
                red_v[lid] = v;
                red_i[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        let e = xe[p.row];
        if p.greedy != 0u {
            // m·2^e is an exact f32 for |m| < 2^24 and -149 <= e <= 104.
            state[1] = select(0u, 1u, e < -149 || e > 104);
            state[0] = red_i[0];
        } else {
            // q16 exact (below 2^40) for e <= 0, and the CPU's i64 arithmetic in range.
            state[1] = select(0u, 1u, e > 0);
            if e <= 0 {
                set64(2u, i64_shl_s(i64_from(red_v[0]), e + 16));
            }
        }
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    if p.query == 0u {
        top_of_row(lid);
        return;
    }
    // This level's bins, and their running sums.
    var c = 0u;
    var w = vec2<u32>(0u, 0u);
    for (var g = 0u; g < p.groups; g++) {
        let o = (g * WG + lid) * 3u;
        c += hist[o];
        w = i64_add(w, vec2<u32>(hist[o + 1u], hist[o + 2u]));
    }
    sc_c[lid] = c;
    sc_w[lid] = w;
    workgroupBarrier();
    for (var off = 1u; off < WG; off <<= 1u) {
        var ac = sc_c[lid];
        var aw = sc_w[lid];
        if lid >= off {
            ac += sc_c[lid - off];
            aw = i64_add(aw, sc_w[lid - off]);
        }
        workgroupBarrier();
        sc_c[lid] = ac;
        sc_w[lid] = aw;
        workgroupBarrier();
    }
    let zero = vec2<u32>(0u, 0u);
    if lid == 0u {
        let live = state[1] == 0u && (p.level == 0u || state[16] == 0u);
        var thr = get64(17u);
        if live && p.level == 0u {
            // At the first level the bins hold every candidate.
            let total = select(sc_w[WG - 1u], get64(10u), state[14] != 0u);
            if p.query != 1u {
                set64(10u, total);
                state[14] = 1u;
            }
            if p.query == 1u {
                thr = vec2<u32>(p.top_k, 0u);
            } else if p.query == 2u {
                thr = i64_sar(i64_add(u64_mul_u32(total, p.top_p), vec2<u32>(65535u, 0u)), 16u);
            } else {
                let kept = select(total, get64(12u), state[15] != 0u);
                set64(12u, kept);
                state[15] = 1u;
                thr = i64_add(u64_mulhi(kept, vec2<u32>(p.u_lo, p.u_hi)), vec2<u32>(1u, 0u));
            }
            set64(17u, thr);
        }
        var below = zero;
        if p.level != 0u {
            below = select(get64(8u), get64(6u), p.query == 1u);
        }
        wg_thr = thr;
        wg_below = below;
        wg_active = select(0u, 1u, live);
        wg_chosen = NONE;
    }
    workgroupBarrier();
    if wg_active != 0u {
        let thr = wg_thr;
        let below = wg_below;
        var mine = sc_w[lid];
        var prev = zero;
        if p.query == 1u {
            mine = vec2<u32>(sc_c[lid], 0u);
            if lid > 0u {
                prev = vec2<u32>(sc_c[lid - 1u], 0u);
            }
        } else if lid > 0u {
            prev = sc_w[lid - 1u];
        }
        if !u64_lt(i64_add(below, mine), thr) && (lid == 0u || u64_lt(i64_add(below, prev), thr)) {
            wg_chosen = lid;
        }
    }
    workgroupBarrier();
    if lid == 0u && wg_active != 0u {
        let b = wg_chosen;
        if b == NONE {
            if p.query == 1u && p.level == 0u {
                // Fewer than k candidates: all of them are kept.
                set64(10u, sc_w[WG - 1u]);
                state[14] = 1u;
                state[16] = 1u;
            } else {
                state[1] = 2u;
            }
            return;
        }
        var below_c = zero;
        var below_w = zero;
        var prefix = zero;
        if p.level != 0u {
            below_c = get64(6u);
            below_w = get64(8u);
            prefix = get64(4u);
        }
        let through_w = i64_add(below_w, sc_w[b]);
        if b > 0u {
            below_c = i64_add(below_c, vec2<u32>(sc_c[b - 1u], 0u));
            below_w = i64_add(below_w, sc_w[b - 1u]);
        }
        prefix = i64_shl(prefix, 8u) | vec2<u32>(b, 0u);
        set64(4u, prefix);
        set64(6u, below_c);
        set64(8u, below_w);
        state[16] = 0u;
        if p.last != 0u {
            if p.query == 1u {
                set64(10u, through_w);
                state[14] = 1u;
            } else if p.query == 2u {
                set64(12u, through_w);
                state[15] = 1u;
            } else {
                state[0] = prefix.x & select((1u << p.idbits) - 1u, NONE, p.idbits >= 32u);
            }
        }
    }
}
