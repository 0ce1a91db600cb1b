// numerics v1 rope: per pair (x, y) of a head, x·c − y·s and x·s + y·c with Q30 cos/sin,
// exact in 64 bits at e − 30; normalize.wgsl rounds the row. Pairs are adjacent (NORM)
// or half-split (NEOX, override). The (cos, sin) table of each row's position is built on
// the CPU (numerics::rope_cos_sin). One invocation per pair. Prepended: i64.wgsl.

override NEOX: bool;
override WG: u32 = 64u;

struct Params {
    cols: u32,
    rows: u32,
    head_dim: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
// Per row, head_dim / 2 pairs of (cos, sin) in Q30.
@group(0) @binding(3) var<storage, read> cs: array<vec2<i32>>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let pi = gid.x;
    let i = gid.y;
    let half = p.head_dim / 2u;
    if pi >= p.cols / 2u || i >= p.rows {
        return;
    }
    let h = pi / half;
    let t = pi % half;
    var a = h * p.head_dim + 2u * t;
    var b = a + 1u;
    if NEOX {
        a = h * p.head_dim + t;
        b = a + half;
    }
    let row = i * p.cols;
    let x0 = xm[row + a];
    let x1 = xm[row + b];
    let r = cs[i * half + t];
    acc[row + a] = i64_sub(i64_mul(x0, r.x), i64_mul(x1, r.y));
    acc[row + b] = i64_add(i64_mul(x0, r.y), i64_mul(x1, r.x));
    if pi == 0u {
        gexp[i] = xe[i] - 30;
    }
}
