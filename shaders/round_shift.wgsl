// What normalizing a row needs besides its values: the mark of a group without an exponent, and
// the shift that rounds the row's largest value to `bits` (numerics::normalize_bits).
// norm_row.wgsl, quant_row.wgsl, attn_in.wgsl. Prepended: i64.wgsl.

const NORM_NONE: i32 = -2147483647 - 1;

// The shift that rounds values of largest magnitude m to `bits` (0 for m = 0): the rounded
// largest value stays below 2^bits.
fn norm_shift(m: vec2<u32>, bits: u32) -> i32 {
    if i64_is_zero(m) {
        return 0;
    }
    var s = i32(u64_bitlen(m)) - i32(bits);
    if s > 0 && !u64_lt(i64_rshr(m, u32(s)), i64_shl(vec2<u32>(1u, 0u), bits)) {
        s += 1;
    }
    return s;
}
