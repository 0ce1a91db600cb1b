// numerics v1 rms_norm, one workgroup per (norm group g, row i): S = Σm² (u64),
// mean = floor(shl(S, −s1) / n) at 2e + s1 with s1 = bitlen(S) − 61, eps on the grid 61 bits
// below the larger top bit, integer rsqrt (bit-by-bit isqrt, floor division), then
// rshr(m·r, bitlen(max |m|) + 8)·w per element at e + r_e + h + w_e. normalize.wgsl aligns
// the groups of a row and rounds it. Prepended: i64.wgsl.

const WG: u32 = 256u;
const NONE: i32 = -2147483647 - 1;

struct Params {
    cols: u32,
    group: u32,
    ng: u32,
    // eps as an f32's (mantissa, exponent), trailing zeros stripped.
    eps_m: i32,
    eps_e: i32,
    // The norm weight's shared exponent.
    w_e: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> wm: array<i32>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;

var<workgroup> red_s: array<vec2<u32>, WG>;
var<workgroup> red_m: array<u32, WG>;

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

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    let i = wid.y;
    let base = i * p.cols + g * p.group;
    let e = xe[i];
    var ssum = vec2<u32>(0u, 0u);
    var mx = 0u;
    for (var c = lid; c < p.group; c += WG) {
        let a = abs_u32(xm[base + c]);
        ssum = i64_add(ssum, u64_mul(a, a));
        mx = max(mx, a);
    }
    red_s[lid] = ssum;
    red_m[lid] = mx;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_s[lid] = i64_add(red_s[lid], red_s[lid + h]);
            red_m[lid] = max(red_m[lid], red_m[lid + h]);
        }
        workgroupBarrier();
    }
    let s = workgroupUniformLoad(&red_s[0]);
    let gmax = workgroupUniformLoad(&red_m[0]);
    // Every invocation derives the same r from S (no further barrier needed).
    let s1 = i32(u64_bitlen(s)) - 61;
    let mean = u64_div_u32(i64_shl_s(s, -s1), p.group);
    let me = 2 * e + s1;
    var top = NONE;
    if !i64_is_zero(mean) {
        top = me + i32(u64_bitlen(mean));
    }
    if p.eps_m != 0 {
        top = max(top, p.eps_e + i32(32u - countLeadingZeros(u32(p.eps_m))));
    }
    if top == NONE {
        for (var c = lid; c < p.group; c += WG) {
            acc[base + c] = vec2<u32>(0u, 0u);
        }
        if lid == 0u {
            gexp[i * p.ng + g] = NONE;
        }
        return;
    }
    let grid = top - 61;
    let v = i64_add(i64_shl_s(mean, me - grid), i64_shl_s(i64_from(p.eps_m), p.eps_e - grid));
    // numerics::rsqrt(v, grid): v to [2^60, 2^62] at an even exponent, r = floor((2^62 − 1) / isqrt).
    var sh = i32(u64_bitlen(v)) - 62;
    if ((grid + sh) & 1) != 0 {
        sh += 1;
    }
    let root = isqrt(i64_shl_s(v, -sh)).x;
    let r = u64_div_u32(vec2<u32>(0xffffffffu, 0x3fffffffu), root).x;
    let re = -62 - (grid + sh) / 2;
    let h = 32u - countLeadingZeros(gmax) + 8u;
    for (var c = lid; c < p.group; c += WG) {
        let m = xm[base + c];
        let pr = u64_mul(abs_u32(m), r);
        let y = i64_to_i32(i64_rshr(select(pr, i64_neg(pr), m < 0), h));
        acc[base + c] = i64_mul(y, wm[c]);
    }
    if lid == 0u {
        gexp[i * p.ng + g] = e + re + i32(h) + p.w_e;
    }
}
