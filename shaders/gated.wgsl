// numerics v1 swiglu / geglu (override GELU): f(g) in g's mantissa units (silu_mant or
// gelu_mant, through sigmoid_q16 and the exp2 table), times u's mantissa, at e_g + e_u;
// normalize.wgsl rounds the row. One invocation per element; gated_acc.wgsl takes products still
// as accumulators. Prepended: i64.wgsl, q16.wgsl, gating.wgsl.

override GELU: bool;
override WG: u32 = 64u;

struct Params {
    cols: u32,
    rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gm: array<i32>;
@group(0) @binding(2) var<storage, read> ge: array<i32>;
@group(0) @binding(3) var<storage, read> um: array<i32>;
@group(0) @binding(4) var<storage, read> ue: array<i32>;
// numerics::exp2_table: round(2^(k/1024) · 2^30), k = 0..=1024.
@group(0) @binding(5) var<storage, read> exp2_t: array<u32>;
@group(0) @binding(6) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read_write> gexp: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if c >= p.cols || i >= p.rows {
        return;
    }
    let at = i * p.cols + c;
    var f = 0i;
    if GELU {
        f = gelu_mant(gm[at], ge[i]);
    } else {
        f = silu_mant(gm[at], ge[i]);
    }
    acc[at] = i64_mul(f, um[at]);
    if c == 0u {
        gexp[i] = ge[i] + ue[i];
    }
}
