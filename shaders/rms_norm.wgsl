// numerics v1 rms_norm, one workgroup per (norm group g, row i): S = Σm² (u64), then
// rms_group.wgsl (eps on the grid 61 bits below the larger top bit, integer rsqrt, each
// element times r and the weight) at e + r_e + h + w_e. normalize.wgsl aligns
// the groups of a row and rounds it. With `quant` (one group per row) it also quantizes the row
// for the product that follows (quant_row.wgsl). Prepended: i64.wgsl, rsqrt.wgsl,
// rms_group.wgsl, reduce.wgsl, quant_block.wgsl, quant_row.wgsl.

const WG: u32 = 256u;

struct Params {
    cols: u32,
    group: u32,
    ng: u32,
    // eps as an f32's (mantissa, exponent), trailing zeros stripped.
    eps_m: i32,
    eps_e: i32,
    // The norm weight's shared exponent.
    w_e: i32,
    // 1: one group per row, also quantized into xq, xblk, emax.
    quant: u32,
    bits: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> wm: array<i32>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;
@group(0) @binding(6) var<storage, read_write> xq: array<u32>;
@group(0) @binding(7) var<storage, read_write> xblk: array<vec4<i32>>;
@group(0) @binding(8) var<storage, read_write> emax: array<i32>;

var<workgroup> red_s: array<vec2<u32>, WG>;
var<workgroup> red_m: array<u32, WG>;

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
    let ge = rms_group(lid, base, p.group, e, s, gmax, vec2<i32>(p.eps_m, p.eps_e), p.w_e);
    if lid == 0u {
        gexp[i * p.ng + g] = ge;
    }
    if p.quant != 0u {
        quantize_row(i, lid, p.cols, p.bits);
    }
}
