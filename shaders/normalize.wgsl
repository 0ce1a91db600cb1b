// numerics::normalize_bits over rows of 64-bit accumulators, after bringing each group of
// `group` columns from its own exponent to the row's largest (shl, i.e. rshr): matmul and
// embed have one group per row, rms_norm one per norm group. A group exponent of i32 min
// marks an all-zero group that has no exponent (it takes no part in the row's maximum;
// a row with none keeps exponent 0). One workgroup per row.
// Prepended: i64.wgsl.

const WG: u32 = 256u;
const NONE: i32 = -2147483647 - 1;

struct Params {
    cols: u32,
    group: u32,
    // Groups per row.
    ng: u32,
    // Mantissa width: max |m| in [2^(bits−1), 2^bits).
    bits: u32,
    // Added to every group exponent.
    bias: i32,
    // The first row's index in gexp and oe (om is bound to this batch of rows).
    row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> acc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> gexp: array<i32>;
@group(0) @binding(3) var<storage, read_write> om: array<i32>;
@group(0) @binding(4) var<storage, read_write> oe: array<i32>;

var<workgroup> red_e: array<i32, WG>;
var<workgroup> red_m: array<vec2<u32>, WG>;

fn aligned(i: u32, c: u32, emax: i32) -> vec2<u32> {
    let ge = gexp[(p.row0 + i) * p.ng + c / p.group];
    if ge == NONE {
        return vec2<u32>(0u, 0u);
    }
    return i64_shl_s(acc[i * p.cols + c], ge + p.bias - emax);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    var best = NONE;
    for (var g = lid; g < p.ng; g += WG) {
        best = max(best, gexp[(p.row0 + i) * p.ng + g]);
    }
    red_e[lid] = best;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_e[lid] = max(red_e[lid], red_e[lid + h]);
        }
        workgroupBarrier();
    }
    let top = workgroupUniformLoad(&red_e[0]);
    let emax = select(top + p.bias, 0, top == NONE);
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        mx = u64_max(mx, i64_abs(aligned(i, c, emax)));
    }
    red_m[lid] = mx;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_m[lid] = u64_max(red_m[lid], red_m[lid + h]);
        }
        workgroupBarrier();
    }
    let m = workgroupUniformLoad(&red_m[0]);
    var s = 0i;
    if !i64_is_zero(m) {
        s = i32(u64_bitlen(m)) - i32(p.bits);
        if s > 0 && !u64_lt(i64_rshr(m, u32(s)), i64_shl(vec2<u32>(1u, 0u), p.bits)) {
            s += 1;
        }
    }
    for (var c = lid; c < p.cols; c += WG) {
        om[i * p.cols + c] = i64_to_i32(i64_shl_s(aligned(i, c, emax), -s));
    }
    if lid == 0u {
        oe[p.row0 + i] = emax + s;
    }
}
