// numerics::quantize_block_scaled on one block: M = max |m|, t = max(0, bitlen(M) − 7),
// s = ceil(128·M / (127·2^t)), q = rdiv(128·m, s·2^t), E_b = e + t − 7; an all-zero block has
// q = 0, s = 1, t = 0. The including kernel defines where values come from and go:
// quant_in(at) (value at), quant_word(at, w) (four int8 packed), quant_blk(at, (E_b, s, Σq, 0)).
// Needs len a multiple of 4; quantize_segments needs the kernel's WG. Prepended: i64.wgsl.

// floor(x / d) for d > 0 (WGSL's / truncates).
fn floor_div(x: i32, d: i32) -> i32 {
    let q = x / d;
    return select(q, q - 1, x % d != 0 && x < 0);
}

// The `len` values from `at`, row exponent e, into words from `ow` and block `blk`; returns E_b.
fn quantize_block(at: u32, len: u32, e: i32, ow: u32, blk: u32) -> i32 {
    var mx = 0u;
    for (var k = 0u; k < len; k++) {
        mx = max(mx, abs_u32(quant_in(at + k)));
    }
    if mx == 0u {
        for (var k = 0u; k < len / 4u; k++) {
            quant_word(ow + k, 0u);
        }
        quant_blk(blk, vec4<i32>(e - 7, 1, 0, 0));
        return e - 7;
    }
    let t = u32(max(0i, i32(32u - countLeadingZeros(mx)) - 7));
    // s = ceil(ceil(128·M / 2^t) / 127), the same as ceil(128·M / (127·2^t)).
    var c1 = 0u;
    if t <= 7u {
        c1 = mx << (7u - t);
    } else {
        c1 = (mx >> (t - 7u)) + select(0u, 1u, (mx & ((1u << (t - 7u)) - 1u)) != 0u);
    }
    let s = i32((c1 + 126u) / 127u);
    let d = u32(s) << t;
    var sum = 0i;
    for (var wd = 0u; wd < len / 4u; wd++) {
        var word = 0u;
        for (var k = 0u; k < 4u; k++) {
            let m = quant_in(at + 4u * wd + k);
            // q0 = floor(128·m / (s·2^t)) = floor(floor(128·m / 2^t) / s), then round
            // to nearest, ties to even, on the exact remainder r = 128·m − q0·s·2^t.
            var f = 0i;
            if t <= 7u {
                f = m << (7u - t);
            } else {
                f = m >> (t - 7u);
            }
            var q = floor_div(f, s);
            let r = i64_sub(i64_mul(m, 128), i64_shl(i64_from(q * s), t)).x;
            let rest = d - r;
            if r > rest || (r == rest && (q & 1) == 1) {
                q += 1;
            }
            sum += q;
            word |= (bitcast<u32>(q) & 0xffu) << (8u * k);
        }
        quant_word(ow + wd, word);
    }
    let eb = e + i32(t) - 7;
    quant_blk(blk, vec4<i32>(eb, s, sum, 0));
    return eb;
}

// A row of `cols` values (exponent e) in blocks of 32 within each `seg`-wide segment (a
// segment's last block may be shorter), shared by the workgroup's invocations: block b reads
// from at0 + its start, writes its words from ow0 + start / 4 and its block at blk0 + b.
// Returns this invocation's largest block exponent (i32 min if it had no block).
fn quantize_segments(lid: u32, cols: u32, seg: u32, e: i32, at0: u32, ow0: u32, blk0: u32) -> i32 {
    let nbs = (seg + 31u) / 32u;
    var best = -2147483647 - 1;
    for (var b = lid; b < cols / seg * nbs; b += WG) {
        let start = (b / nbs) * seg + 32u * (b % nbs);
        let len = min(32u, seg - 32u * (b % nbs));
        best = max(best, quantize_block(at0 + start, len, e, ow0 + start / 4u, blk0 + b));
    }
    return best;
}
