// encoder add_bias (backend/exact/encoder.rs): x += b on every row, one workgroup per row, with
// add.wgsl's rule: both on the grid 32 bits below the larger exponent, summed, normalized. b has
// mantissas below 2^30 and one exponent (a norm vector); an all-zero x row becomes b, normalized,
// and an all-zero b leaves x as it is. With `norm`, x is still accumulators (nacc, ngexp):
// normalize_row.wgsl first writes its mantissas and exponent to xm, xe. Prepended: i64.wgsl,
// reduce.wgsl, norm_row.wgsl, normalize_row.wgsl (NORM_M = xm, NORM_E = xe).

const WG: u32 = 256u;

struct Params {
    cols: u32,
    // b's exponent.
    be: i32,
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
@group(0) @binding(3) var<storage, read> bm: array<i32>;
@group(0) @binding(4) var<storage, read_write> om: array<i32>;
@group(0) @binding(5) var<storage, read_write> oe: array<i32>;
@group(0) @binding(6) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> ngexp: array<i32>;

var<workgroup> red_m: array<vec2<u32>, WG>;
var<workgroup> red_f: array<u32, WG>;

// Element c of row i on the grid g (x all zero: b alone, at its own exponent).
fn term(at: u32, c: u32, ex: i32, g: i32, x_zero: bool) -> vec2<u32> {
    if x_zero {
        return i64_from(bm[c]);
    }
    return i64_add(i64_shl_s(i64_from(xm[at]), ex - g), i64_shl_s(i64_from(bm[c]), p.be - g));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    if p.norm != 0u {
        normalize_row(NormRow(i, 0u, p.cols, p.n_group, p.n_ng, p.n_bits, p.n_bias, p.n_stride, p.n_col0), lid);
    }
    let row = i * p.cols;
    let ex = xe[i];
    // Bit 0: x has a non-zero element; bit 1: b has one.
    var flags = 0u;
    for (var c = lid; c < p.cols; c += WG) {
        flags |= select(0u, 1u, xm[row + c] != 0) | select(0u, 2u, bm[c] != 0);
    }
    red_f[lid] = flags;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_f[lid] = red_f[lid] | red_f[lid + h];
        }
        workgroupBarrier();
    }
    let f = workgroupUniformLoad(&red_f[0]);
    if (f & 2u) == 0u {
        for (var c = lid; c < p.cols; c += WG) {
            om[row + c] = xm[row + c];
        }
        if lid == 0u {
            oe[i] = ex;
        }
        return;
    }
    let x_zero = (f & 1u) == 0u;
    let g = select(max(ex, p.be) - 32, p.be, x_zero);
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        mx = u64_max(mx, i64_abs(term(row + c, c, ex, g, x_zero)));
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
        s = i32(u64_bitlen(m)) - 24;
        if s > 0 && !u64_lt(i64_rshr(m, u32(s)), vec2<u32>(1u << 24u, 0u)) {
            s += 1;
        }
    }
    for (var c = lid; c < p.cols; c += WG) {
        om[row + c] = i64_to_i32(i64_shl_s(term(row + c, c, ex, g, x_zero), -s));
    }
    if lid == 0u {
        oe[i] = g + s;
    }
}
