// Workgroup reductions: every invocation passes its value and gets the workgroup's result (the
// including kernel declares WG and calls them from uniform control flow); and what normalizing
// a row needs besides them: the mark of a group without an exponent, and the shift that rounds
// the row's largest value to its width (numerics::normalize_bits). norm_row.wgsl, quant_row.wgsl,
// quantize.wgsl, attn_in.wgsl, layer_norm.wgsl, pool_l2.wgsl. Prepended: i64.wgsl.

var<workgroup> reduce_e: array<i32, WG>;
var<workgroup> reduce_s: array<vec2<u32>, WG>;
var<workgroup> reduce_m: array<vec2<u32>, WG>;

fn max_e(lid: u32, v: i32) -> i32 {
    // Every read of the last call's result is done before the array is written again.
    workgroupBarrier();
    reduce_e[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            reduce_e[lid] = max(reduce_e[lid], reduce_e[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&reduce_e[0]);
}

fn sum_s(lid: u32, v: vec2<u32>) -> vec2<u32> {
    // Every read of the last call's result is done before the array is written again.
    workgroupBarrier();
    reduce_s[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            reduce_s[lid] = i64_add(reduce_s[lid], reduce_s[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&reduce_s[0]);
}

fn max_m(lid: u32, v: vec2<u32>) -> vec2<u32> {
    // Every read of the last call's result is done before the array is written again.
    workgroupBarrier();
    reduce_m[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            reduce_m[lid] = u64_max(reduce_m[lid], reduce_m[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&reduce_m[0]);
}

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
