// The RMS rule of numerics::rsqrt shared by rms_norm.wgsl, layer_norm.wgsl and pool_l2.wgsl:
// the mean of squares plus eps on a 61-bit grid, then r = floor((2^62 − 1) / isqrt(v)).
// Prepended: i64.wgsl.

const RMS_NONE: i32 = -2147483647 - 1;

// numerics::isqrt: floor(sqrt(x)), bit by bit (x < 2^63).
fn isqrt(x: vec2<u32>) -> vec2<u32> {
    var rem = x;
    var root = vec2<u32>(0u, 0u);
    var bit = vec2<u32>(0u, 0x40000000u);
    while u64_lt(rem, bit) {
        bit = i64_sar(bit, 2u);
    }
    while !i64_is_zero(bit) {
        let rb = i64_add(root, bit);
        if !u64_lt(rem, rb) {
            rem = i64_sub(rem, rb);
            root = i64_add(i64_sar(root, 1u), bit);
        } else {
            root = i64_sar(root, 1u);
        }
        bit = i64_sar(bit, 2u);
    }
    return root;
}

// r and its exponent for `mean` at exponent `me` plus `eps` at `eps_e` (both on the grid 61 bits
// below the larger top bit); z = RMS_NONE when both are 0 (the group is all zero).
fn rms_rsqrt(mean: vec2<u32>, me: i32, eps: vec2<u32>, eps_e: i32) -> vec2<i32> {
    var top = RMS_NONE;
    if !i64_is_zero(mean) {
        top = me + i32(u64_bitlen(mean));
    }
    if !i64_is_zero(eps) {
        top = max(top, eps_e + i32(u64_bitlen(eps)));
    }
    if top == RMS_NONE {
        return vec2<i32>(0, RMS_NONE);
    }
    let grid = top - 61;
    let v = i64_add(i64_shl_s(mean, me - grid), i64_shl_s(eps, eps_e - grid));
    var sh = i32(u64_bitlen(v)) - 62;
    if ((grid + sh) & 1) != 0 {
        sh += 1;
    }
    let root = isqrt(i64_shl_s(v, -sh)).x;
    let r = u64_div_u32(vec2<u32>(0xffffffffu, 0x3fffffffu), root).x;
    return vec2<i32>(bitcast<i32>(r), -62 - (grid + sh) / 2);
}
