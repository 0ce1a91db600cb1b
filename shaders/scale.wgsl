// numerics v1 scale: m · s_m (exact, below 2^48) at e + s_e, s as an f32's (mantissa,
// exponent) with trailing zeros stripped; normalize.wgsl rounds the row.
// One invocation per element. Prepended: i64.wgsl.

override WG: u32 = 64u;

struct Params {
    cols: u32,
    rows: u32,
    sm: i32,
    se: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> gexp: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if c >= p.cols || i >= p.rows {
        return;
    }
    acc[i * p.cols + c] = i64_mul(xm[i * p.cols + c], p.sm);
    if c == 0u {
        gexp[i] = xe[i] + p.se;
    }
}
