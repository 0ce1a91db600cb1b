// numerics v1 rope: per pair (x, y) of a head, x·c − y·s and x·s + y·c with Q30 cos/sin,
// exact in 64 bits at e − 30; the consumer normalizes the row. Pairs are adjacent (NORM) or
// half-split (NEOX, override). The (cos, sin) table of each row's position is built on the CPU
// (numerics::rope_cos_sin). One workgroup per row. With `norm`, x is still accumulators (nacc,
// ngexp): normalize_row.wgsl first writes its mantissas and exponent to xm, xe.
// Prepended: i64.wgsl, reduce.wgsl, norm_row.wgsl, normalize_row.wgsl (NORM_M = xm, NORM_E = xe),
// rope_pair.wgsl.

override NEOX: bool;
const WG: u32 = 64u;

struct Params {
    cols: u32,
    rows: u32,
    head_dim: u32,
    // 1: normalize x first, its groups of n_group columns (n_ng per row) plus n_bias.
    norm: u32,
    n_group: u32,
    n_ng: u32,
    n_bits: u32,
    n_bias: i32,
    // Its row stride and first column (products that share one buffer).
    n_stride: u32,
    n_col0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xm: array<i32>;
@group(0) @binding(2) var<storage, read_write> xe: array<i32>;
// Per row, head_dim / 2 pairs of (cos, sin) in Q30.
@group(0) @binding(3) var<storage, read> cs: array<vec2<i32>>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;
@group(0) @binding(6) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> ngexp: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    if p.norm != 0u {
        normalize_row(NormRow(i, 0u, p.cols, p.n_group, p.n_ng, p.n_bits, p.n_bias, p.n_stride, p.n_col0), lid);
    }
    let half = p.head_dim / 2u;
    let row = i * p.cols;
    for (var pi = lid; pi < p.cols / 2u; pi += WG) {
        let ab = rope_pair(pi, p.head_dim);
        let a = ab.x;
        let b = ab.y;
        let t = ab.z;
        let x0 = xm[row + a];
        let x1 = xm[row + b];
        let r = cs[i * half + t];
        acc[row + a] = i64_sub(i64_mul(x0, r.x), i64_mul(x1, r.y));
        acc[row + b] = i64_add(i64_mul(x0, r.y), i64_mul(x1, r.x));
    }
    if lid == 0u {
        gexp[i] = xe[i] - 30;
    }
}
