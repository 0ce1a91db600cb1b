// A decoder's q, k and v rows into attention (attn_in.wgsl, attn_step.wgsl): each product
// still accumulators in their shared buffer, normalized on the fly (norm_row.wgsl), RoPE on q
// and k (rope.wgsl's arithmetic, its output normalized as normalize.wgsl would), into `rot` in
// workgroup memory, quantize_block's input (quant_in). The including kernel declares WG, p
// (stride, bits, head_dim) and binds nacc, ngexp and cs (per row, head_dim / 2 pairs of
// (cos, sin) in Q30). Rows of at most 1024 values. Prepended: i64.wgsl, reduce.wgsl,
// norm_row.wgsl, rope_pair.wgsl.

const MAXC: u32 = 1024u;

// One product's columns in the shared buffer, and its norm_row parameters.
struct Part {
    col0: u32,
    group: u32,
    ng: u32,
    bias: i32,
}

// The rotated row (64 bits), then in .x each normalized mantissa: quantize_block's input.
var<workgroup> rot: array<vec2<u32>, MAXC>;

fn quant_in(at: u32) -> i32 {
    return bitcast<i32>(rot[at].x);
}

// Row i of product `pt` (cols wide) normalized into rot's .x, rotated first when `rope`; returns
// its exponent.
fn prepare(i: u32, lid: u32, pt: Part, cols: u32, rope: bool) -> i32 {
    let r = NormRow(i, 0u, cols, pt.group, pt.ng, p.bits, pt.bias, p.stride, pt.col0);
    let es = norm_exp(r, lid);
    if !rope {
        for (var c = lid; c < cols; c += WG) {
            rot[c].x = bitcast<u32>(norm_value(r, c, es));
        }
        workgroupBarrier();
        return es.x + es.y;
    }
    let half = p.head_dim / 2u;
    for (var pi = lid; pi < cols / 2u; pi += WG) {
        let ab = rope_pair(pi, p.head_dim);
        let a = ab.x;
        let b = ab.y;
        let t = ab.z;
        let x0 = norm_value(r, a, es);
        let x1 = norm_value(r, b, es);
        let w = cs[i * half + t];
        rot[a] = i64_sub(i64_mul(x0, w.x), i64_mul(x1, w.y));
        rot[b] = i64_add(i64_mul(x0, w.y), i64_mul(x1, w.x));
    }
    // normalize.wgsl on the rotated row: one group at the input's exponent − 30.
    workgroupBarrier();
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < cols; c += WG) {
        mx = u64_max(mx, i64_abs(rot[c]));
    }
    let s = norm_shift(max_m(lid, mx), p.bits);
    for (var c = lid; c < cols; c += WG) {
        rot[c].x = bitcast<u32>(i64_to_i32(i64_shl_s(rot[c], -s)));
    }
    workgroupBarrier();
    return es.x + es.y - 30 + s;
}
