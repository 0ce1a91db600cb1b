// numerics v1 add, one workgroup per row: both rows on the grid 32 bits below the larger
// exponent (shl: exact unless the exponents differ by more than 32), summed, normalized.
// An all-zero row adds nothing: the other row is kept as it is. With `norm`, y is still
// accumulators (nacc, ngexp): normalize_row.wgsl first writes its mantissas and exponent to
// ym, ye. Prepended: i64.wgsl, reduce.wgsl, norm_row.wgsl, normalize_row.wgsl (NORM_M = ym,
// NORM_E = ye).

const WG: u32 = 256u;

struct Params {
    cols: u32,
    // 1: normalize y first, its groups of n_group columns (n_ng per row) plus n_bias.
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
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read_write> ym: array<i32>;
@group(0) @binding(4) var<storage, read_write> ye: array<i32>;
@group(0) @binding(5) var<storage, read_write> om: array<i32>;
@group(0) @binding(6) var<storage, read_write> oe: array<i32>;
@group(0) @binding(7) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read> ngexp: array<i32>;

var<workgroup> red_m: array<vec2<u32>, WG>;
var<workgroup> red_f: array<u32, WG>;

fn sum_at(at: u32, ex: i32, ey: i32, g: i32) -> vec2<u32> {
    return i64_add(i64_shl_s(i64_from(xm[at]), ex - g), i64_shl_s(i64_from(ym[at]), ey - g));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    if p.norm != 0u {
        normalize_row(NormRow(i, 0u, p.cols, p.n_group, p.n_ng, p.n_bits, p.n_bias, p.n_stride, p.n_col0), lid);
    }
    let row = i * p.cols;
    let ex = xe[i];
    let ey = ye[i];
    let g = max(ex, ey) - 32;
    var mx = vec2<u32>(0u, 0u);
    // Bit 0: x has a non-zero element; bit 1: y has one.
    var flags = 0u;
    for (var c = lid; c < p.cols; c += WG) {
        flags |= select(0u, 1u, xm[row + c] != 0) | select(0u, 2u, ym[row + c] != 0);
        mx = u64_max(mx, i64_abs(sum_at(row + c, ex, ey, g)));
    }
    red_m[lid] = mx;
    red_f[lid] = flags;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_m[lid] = u64_max(red_m[lid], red_m[lid + h]);
            red_f[lid] = red_f[lid] | red_f[lid + h];
        }
        workgroupBarrier();
    }
    let m = workgroupUniformLoad(&red_m[0]);
    let f = workgroupUniformLoad(&red_f[0]);
    if (f & 2u) == 0u || (f & 1u) == 0u {
        // One side is all zero: copy the other (x when both are).
        let from_y = (f & 2u) != 0u;
        for (var c = lid; c < p.cols; c += WG) {
            om[row + c] = select(xm[row + c], ym[row + c], from_y);
        }
        if lid == 0u {
            oe[i] = select(ex, ey, from_y);
        }
        return;
    }
    var s = i32(u64_bitlen(m)) - 24;
    if s > 0 && !u64_lt(i64_rshr(m, u32(s)), vec2<u32>(1u << 24u, 0u)) {
        s += 1;
    }
    for (var c = lid; c < p.cols; c += WG) {
        om[row + c] = i64_to_i32(i64_shl_s(sum_at(row + c, ex, ey, g), -s));
    }
    if lid == 0u {
        oe[i] = g + s;
    }
}
