// A residual add and the RMSNorm that follows it, in one pass, one workgroup per row: x += y as
// add.wgsl makes it, where y is still accumulators (acc, gexp: a product's output, normalized by
// norm_row.wgsl on the fly), written back into x (xm, xe) in place; then, with `norm`, the row
// normalized as rms_norm.wgsl makes it (one group per row, weight wm) into acc, gexp (y's
// accumulators, which nothing else holds), and quantized for the product that follows
// (quant_row.wgsl). Without `norm` it is the add alone (a pending add some other op reads);
// with `y_only` the norm of y alone.
// Eight storage buffers: WebGPU's default limit. Prepended: i64.wgsl, rsqrt.wgsl,
// rms_group.wgsl, reduce.wgsl, norm_row.wgsl (reading acc, gexp), quant_block.wgsl,
// quant_row.wgsl.

const WG: u32 = 256u;

struct Params {
    cols: u32,
    // y's norm_row parameters: groups of `group` columns (`ng` per row), mantissa width,
    // exponent bias, row stride and first column in acc.
    group: u32,
    ng: u32,
    bits: u32,
    bias: i32,
    stride: u32,
    col0: u32,
    // 1: normalize and quantize the sum (needs stride = cols, col0 = 0, ng = 1).
    norm: u32,
    // 1: x has no values yet (an embedding, a product): the row is y's alone, normalized as
    // normalize.wgsl would, its exponent included when y is all zero.
    y_only: u32,
    // eps as an f32's (mantissa, exponent), and the norm weight's shared exponent.
    eps_m: i32,
    eps_e: i32,
    w_e: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xm: array<i32>;
@group(0) @binding(2) var<storage, read_write> xe: array<i32>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> gexp: array<i32>;
@group(0) @binding(5) var<storage, read> wm: array<i32>;
@group(0) @binding(6) var<storage, read_write> xq: array<u32>;
@group(0) @binding(7) var<storage, read_write> xblk: array<vec4<i32>>;
@group(0) @binding(8) var<storage, read_write> emax: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let row = i * p.cols;
    let r = NormRow(i, 0u, p.cols, p.group, p.ng, p.bits, p.bias, p.stride, p.col0);
    // y's mantissas are norm_value(r, c, ys) at exponent ey (normalize_row's, unstored).
    let ys = norm_exp(r, lid);
    let ey = ys.x + ys.y;
    let ex = xe[i];
    let g = max(ex, ey) - 32;
    var mx = vec2<u32>(0u, 0u);
    var x_nz = 0;
    var y_nz = 0;
    for (var c = lid; c < p.cols; c += WG) {
        let xv = xm[row + c];
        let yv = norm_value(r, c, ys);
        x_nz = max(x_nz, select(0, 1, xv != 0));
        y_nz = max(y_nz, select(0, 1, yv != 0));
        mx = u64_max(mx, i64_abs(i64_add(i64_shl_s(i64_from(xv), ex - g), i64_shl_s(i64_from(yv), ey - g))));
    }
    let m = max_m(lid, mx);
    let has_x = max_e(lid, x_nz) != 0;
    let has_y = max_e(lid, y_nz) != 0;
    // One side all zero: the other is kept as it is (x when both are).
    let from_y = has_y || p.y_only != 0u;
    let both = has_x && has_y && p.y_only == 0u;
    var s = i32(u64_bitlen(m)) - 24;
    if s > 0 && !u64_lt(i64_rshr(m, u32(s)), vec2<u32>(1u << 24u, 0u)) {
        s += 1;
    }
    var e = g + s;
    if !both {
        e = select(ex, ey, from_y);
    }
    // Each invocation writes the columns it read, so x is updated in place; it keeps the new
    // values' square sum and largest magnitude for the norm.
    var ssum = vec2<u32>(0u, 0u);
    var big = 0u;
    for (var c = lid; c < p.cols; c += WG) {
        let xv = xm[row + c];
        let yv = norm_value(r, c, ys);
        var v = select(xv, yv, from_y);
        if both {
            let sum = i64_add(i64_shl_s(i64_from(xv), ex - g), i64_shl_s(i64_from(yv), ey - g));
            v = i64_to_i32(i64_shl_s(sum, -s));
        }
        xm[row + c] = v;
        let a = abs_u32(v);
        ssum = i64_add(ssum, u64_mul(a, a));
        big = max(big, a);
    }
    let sq = sum_s(lid, ssum);
    let top = max_m(lid, vec2<u32>(big, 0u)).x;
    // Every invocation's reads of x's exponent and y's exponents are done before they are
    // overwritten.
    storageBarrier();
    if lid == 0u {
        xe[i] = e;
    }
    if p.norm == 0u {
        return;
    }
    // rms_norm.wgsl's arithmetic on the new row (one group), into y's accumulators.
    let ge = rms_group(lid, row, p.cols, e, sq, top, vec2<i32>(p.eps_m, p.eps_e), p.w_e);
    if lid == 0u {
        gexp[i] = ge;
    }
    quantize_row(i, lid, p.cols, p.bits);
}
