// rms_norm.wgsl's arithmetic on one norm group: the `n` mantissas xm[base..base + n]
// (exponent e, square sum sq, largest magnitude top): mean = floor(shl(sq, −s1) / n) at
// 2e + s1 with s1 = bitlen(sq) − 61, the RMS rule's factor r (rsqrt.wgsl), then
// rshr(m·r, bitlen(top) + 8)·w per element into acc[base..]. Returns the group's exponent
// (RMS_NONE for an all-zero group without eps). The including kernel binds xm, wm, acc and
// declares WG: rms_norm.wgsl, add_norm.wgsl. Prepended: i64.wgsl, rsqrt.wgsl.

fn rms_group(lid: u32, base: u32, n: u32, e: i32, sq: vec2<u32>, top: u32, eps: vec2<i32>, w_e: i32) -> i32 {
    let s1 = i32(u64_bitlen(sq)) - 61;
    let mean = u64_div_u32(i64_shl_s(sq, -s1), n);
    let rr = rms_rsqrt(mean, 2 * e + s1, i64_from(eps.x), eps.y);
    if rr.y == RMS_NONE {
        for (var c = lid; c < n; c += WG) {
            acc[base + c] = vec2<u32>(0u, 0u);
        }
        return RMS_NONE;
    }
    let r = bitcast<u32>(rr.x);
    let h = 32u - countLeadingZeros(top) + 8u;
    for (var c = lid; c < n; c += WG) {
        let m = xm[base + c];
        let pr = u64_mul(abs_u32(m), r);
        let y = i64_to_i32(i64_rshr(select(pr, i64_neg(pr), m < 0), h));
        acc[base + c] = i64_mul(y, wm[c]);
    }
    return e + rr.y + i32(h) + w_e;
}
