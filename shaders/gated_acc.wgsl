// gated.wgsl's op on a gate and an up product still as accumulators (a decoder's gate and up
// products, which share one buffer): each normalized by norm_row.wgsl on the fly, not stored,
// then f(g)·u at e_g + e_u; normalize.wgsl (or the consumer) rounds the row; with `quant` it is
// also quantized for the product that follows (quant_row.wgsl). One workgroup per row.
// Prepended: i64.wgsl, q16.wgsl, gating.wgsl, reduce.wgsl, norm_row.wgsl, quant_block.wgsl,
// quant_row.wgsl.

override GELU: bool;
const WG: u32 = 256u;

struct Params {
    cols: u32,
    // The accumulators' row stride and mantissa width.
    stride: u32,
    bits: u32,
    // Per input: its first column, groups of `group` columns (`ng` per row), exponent bias.
    g_col0: u32,
    g_group: u32,
    g_ng: u32,
    g_bias: i32,
    u_col0: u32,
    u_group: u32,
    u_ng: u32,
    u_bias: i32,
    // 1: also quantize the output rows into xq, xblk, emax.
    quant: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> ngexp: array<i32>;
// numerics::exp2_table: round(2^(k/1024) · 2^30), k = 0..=1024.
@group(0) @binding(3) var<storage, read> exp2_t: array<u32>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;
@group(0) @binding(6) var<storage, read_write> xq: array<u32>;
@group(0) @binding(7) var<storage, read_write> xblk: array<vec4<i32>>;
@group(0) @binding(8) var<storage, read_write> emax: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let rg = NormRow(i, 0u, p.cols, p.g_group, p.g_ng, p.bits, p.g_bias, p.stride, p.g_col0);
    let ru = NormRow(i, 0u, p.cols, p.u_group, p.u_ng, p.bits, p.u_bias, p.stride, p.u_col0);
    let sg = norm_exp(rg, lid);
    let su = norm_exp(ru, lid);
    let eg = sg.x + sg.y;
    for (var c = lid; c < p.cols; c += WG) {
        let gm = norm_value(rg, c, sg);
        var f = 0i;
        if GELU {
            f = gelu_mant(gm, eg);
        } else {
            f = silu_mant(gm, eg);
        }
        acc[i * p.cols + c] = i64_mul(f, norm_value(ru, c, su));
    }
    if lid == 0u {
        gexp[i] = eg + su.x + su.y;
    }
    if p.quant != 0u {
        quantize_row(i, lid, p.cols, p.bits);
    }
}
