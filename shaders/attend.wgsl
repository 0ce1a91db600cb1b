// numerics v2 attention of one (query row i, query head h) over the KV cache of one layer
// (backend/exact/attention.rs, attend_head), shared by attention.wgsl and attn_step.wgsl,
// which define where q and the cache are read (q_word, q_blk, k_word, k_blk, v_word, v_blk:
// words and blocks of a head, position j, KV head g) and bound(k) (segment bounds), and bind
// p, sc, acc, gexp. Keys lo..=pos are visible (causal, optionally a sliding window; or, for
// encoders, the row's segment); head h reads KV head h / group.
// - scores on the grid A = max E_q + max visible E_k − 8: s_j = Σ_b shl(dot(q_b, k_jb) ·
//   s_qb·s_kjb, E_qb + E_kjb − A), times the scale's mantissa (exponent se);
// - softmax: d = s − max to Q20 (clamped at −2^31), z = rshr(d·log2e, 30), p = exp2_q20(z),
//   inv = floor(2^62 / Σp), p' = rshr(p·inv, 38) (Q24);
// - values per block b: acc_d = Σ_j shl(p'_j·s_vjb·v_jd, E_vjb − V_b + 8) at V_b − 8 − 24,
//   blocks shifted to the head's largest block exponent.
// Writes the head's accumulators and exponent. The including kernel declares WG. Prepended:
// i64.wgsl, exp2.wgsl, dot4, reduce.wgsl.

const LOG2E_Q30: i32 = 1549082005;

// The scores' signed maximum (reduce.wgsl's max_m is unsigned).
var<workgroup> attn_red_m: array<vec2<u32>, WG>;

// floor(n / d) for unsigned 64-bit n and d > 0 (shift and subtract).
fn u64_div(n: vec2<u32>, d: vec2<u32>) -> vec2<u32> {
    var q = vec2<u32>(0u, 0u);
    var r = vec2<u32>(0u, 0u);
    for (var i = 63i; i >= 0; i--) {
        let bit = select((n.x >> u32(i)) & 1u, (n.y >> u32(i - 32)) & 1u, i >= 32);
        r = i64_shl(r, 1u) | vec2<u32>(bit, 0u);
        if !u64_lt(r, d) {
            r = i64_sub(r, d);
            q = q | select(vec2<u32>(1u << u32(i), 0u), vec2<u32>(0u, 1u << u32(i - 32)), i >= 32);
        }
    }
    return q;
}

// Attention of query row i, head h (the workgroup's), into acc and gexp.
fn attend(h: u32, i: u32, lid: u32) {
    let hd = p.head_dim;
    let g = h / p.group;
    var pos = p.pos0 + i;
    var lo = 0u;
    if p.nseg != 0u {
        var sg = 0u;
        while sg + 1u < p.nseg && i >= bound(sg + 1u) {
            sg++;
        }
        lo = bound(sg);
        pos = bound(sg + 1u) - 1u;
    } else if p.window != 0u && pos + 1u > p.window {
        lo = pos + 1u - p.window;
    }
    let nvis = pos + 1u - lo;
    let q_cols = p.n_head * hd;
    let scb = (i * p.n_head + h) * p.npos;

    // The score grid.
    var kq_max = -2147483647 - 1;
    for (var b = 0u; b < p.nbh; b++) {
        kq_max = max(kq_max, q_blk(i, h, b).x);
    }
    var kk = -2147483647 - 1;
    for (var t = lid; t < nvis * p.nbh; t += WG) {
        let j = lo + t / p.nbh;
        kk = max(kk, k_blk(j, g, t % p.nbh).x);
    }
    let grid = kq_max + max_e(lid, kk) - 8;

    // Scores, and their maximum.
    var smax = vec2<u32>(0u, 0x80000000u);
    for (var t = lid; t < nvis; t += WG) {
        let j = lo + t;
        var s = vec2<u32>(0u, 0u);
        for (var b = 0u; b < p.nbh; b++) {
            let qbk = q_blk(i, h, b);
            let kb = k_blk(j, g, b);
            let len = min(32u, hd - 32u * b);
            var d = 0i;
            for (var k = 0u; k < len / 4u; k++) {
                d += dot4(q_word(i, h, 8u * b + k), k_word(j, g, 8u * b + k));
            }
            s = i64_add(s, i64_shl_s(i64_mul(d, qbk.y * kb.y), qbk.x + kb.x - grid));
        }
        s = i64_mul_i32(s, p.sm);
        sc[scb + t] = s;
        if i64_lt(smax, s) {
            smax = s;
        }
    }
    attn_red_m[lid] = smax;
    workgroupBarrier();
    for (var hh = WG / 2u; hh > 0u; hh >>= 1u) {
        if lid < hh && i64_lt(attn_red_m[lid], attn_red_m[lid + hh]) {
            attn_red_m[lid] = attn_red_m[lid + hh];
        }
        workgroupBarrier();
    }
    let top = workgroupUniformLoad(&attn_red_m[0]);

    // Softmax numerators in Q30, and their sum.
    let sh = grid + p.se + 20;
    var sum = vec2<u32>(0u, 0u);
    for (var t = lid; t < nvis; t += WG) {
        let d = i64_sub(sc[scb + t], top);
        var dq = 0i;
        if sh >= 0 {
            let lim = i64_neg(i64_shl(vec2<u32>(1u, 0u), u32(max(0, 31 - sh))));
            if !i64_is_zero(d) && (sh >= 31 || i64_lt(d, lim)) {
                dq = -2147483647 - 1;
            } else {
                dq = i64_to_i32(i64_shl(d, u32(sh)));
            }
        } else {
            let r = i64_rshr(d, u32(-sh));
            dq = select(i64_to_i32(r), -2147483647 - 1, i64_lt(r, i64_from(-2147483647 - 1)));
        }
        let pj = exp2_q20(i64_rshr(i64_mul(dq, LOG2E_Q30), 30u));
        sc[scb + t] = vec2<u32>(pj, 0u);
        sum = i64_add(sum, vec2<u32>(pj, 0u));
    }
    let total = sum_s(lid, sum);
    // p <= 2^30 <= S, so inv <= 2^32 and p·inv <= 2^62; probabilities in Q24.
    let inv = u64_div(vec2<u32>(0u, 0x40000000u), total);
    for (var t = lid; t < nvis; t += WG) {
        let pj = sc[scb + t].x;
        let lo_p = u64_mul(inv.x, pj);
        sc[scb + t] = i64_rshr(vec2<u32>(lo_p.x, lo_p.y + inv.y * pj), 38u);
    }
    storageBarrier();
    workgroupBarrier();

    // Values: each block on the grid of its largest visible exponent.
    var eh = -2147483647 - 1;
    var vmax: array<i32, 8>;
    for (var b = 0u; b < p.nbh; b++) {
        var vm = -2147483647 - 1;
        for (var t = lid; t < nvis; t += WG) {
            vm = max(vm, v_blk(lo + t, g, b).x);
        }
        vmax[b] = max_e(lid, vm);
        eh = max(eh, vmax[b] - 8 - 24);
    }
    for (var d = lid; d < hd; d += WG) {
        let b = d / 32u;
        let vm = vmax[b];
        var a = vec2<u32>(0u, 0u);
        for (var j = lo; j <= pos; j++) {
            let vb = v_blk(j, g, b);
            let word = v_word(j, g, d / 4u);
            let v = (bitcast<i32>(word) << (24u - 8u * (d % 4u))) >> 24u;
            let pv = i64_to_i32(sc[scb + j - lo]);
            a = i64_add(a, i64_shl_s(i64_mul(pv, vb.y * v), vb.x - vm + 8));
        }
        acc[i * q_cols + h * hd + d] = i64_shl_s(a, vm - 8 - 24 - eh);
    }
    if lid == 0u {
        gexp[i * p.n_head + h] = eh;
    }
}
