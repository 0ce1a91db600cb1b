// q, k and v of a decoder layer into attention, in one pass per row: the three products still
// as accumulators in their shared buffer (normalized on the fly, norm_row.wgsl), RoPE on q and
// k (rope.wgsl's arithmetic, its output normalized in workgroup memory as normalize.wgsl
// would), then each quantized per head (quant_block.wgsl, as quantize.wgsl): q into q8 / qblk,
// k and v into the layer's KV cache at the row's position. Replaces two rope and three quantize
// dispatches. One workgroup per row; rows of at most 1024 values.
// Prepended: i64.wgsl, quant_block.wgsl, reduce.wgsl, norm_row.wgsl, rope_pair.wgsl.

override NEOX: bool;
const WG: u32 = 256u;
const MAXC: u32 = 1024u;

// One product's columns in the shared buffer, and its norm_row parameters.
struct Part {
    col0: u32,
    group: u32,
    ng: u32,
    bias: i32,
}

struct Params {
    // The accumulators' row stride, and the mantissa width.
    stride: u32,
    bits: u32,
    head_dim: u32,
    // Blocks per head.
    nbh: u32,
    q_cols: u32,
    kv_cols: u32,
    n_head: u32,
    pos0: u32,
    // Per cache position: K then V words, and K then V blocks (kv_blocks of each).
    pos_words: u32,
    pos_blocks: u32,
    kv_blocks: u32,
    _pad: u32,
    q: Part,
    k: Part,
    v: Part,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> ngexp: array<i32>;
// Per row, head_dim / 2 pairs of (cos, sin) in Q30.
@group(0) @binding(3) var<storage, read> cs: array<vec2<i32>>;
@group(0) @binding(4) var<storage, read_write> cw: array<u32>;
// Per block: (E_b, s, Σq, 0).
@group(0) @binding(5) var<storage, read_write> cb: array<vec4<i32>>;
@group(0) @binding(6) var<storage, read_write> q8: array<u32>;
@group(0) @binding(7) var<storage, read_write> qblk: array<vec4<i32>>;

// The rotated row (64 bits), then in .x each normalized mantissa: quantize_block's input.
var<workgroup> rot: array<vec2<u32>, MAXC>;
// 0: quantize into q8 / qblk; 1: into the cache.
var<private> dest: u32;

fn quant_in(at: u32) -> i32 {
    return bitcast<i32>(rot[at].x);
}

fn quant_word(at: u32, w: u32) {
    if dest == 0u {
        q8[at] = w;
    } else {
        cw[at] = w;
    }
}

fn quant_blk(at: u32, v: vec4<i32>) {
    if dest == 0u {
        qblk[at] = v;
    } else {
        cb[at] = v;
    }
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

// rot's mantissas (cols wide, exponent e) quantized per head: row i's words at q_base + i·q_stride, its
// blocks at b_base + i·b_stride.
fn emit(i: u32, lid: u32, cols: u32, e: i32, q_base: u32, q_stride: u32, b_base: u32, b_stride: u32) {
    quantize_segments(lid, cols, p.head_dim, e, 0u, q_base + i * q_stride, b_base + i * b_stride);
    // rot is read until every block is done.
    workgroupBarrier();
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let kw = p.pos0 * p.pos_words;
    let kb = p.pos0 * p.pos_blocks;
    dest = 0u;
    let eq = prepare(i, lid, p.q, p.q_cols, true);
    emit(i, lid, p.q_cols, eq, 0u, p.q_cols / 4u, 0u, p.n_head * p.nbh);
    dest = 1u;
    let ek = prepare(i, lid, p.k, p.kv_cols, true);
    emit(i, lid, p.kv_cols, ek, kw, p.pos_words, kb, p.pos_blocks);
    let ev = prepare(i, lid, p.v, p.kv_cols, false);
    emit(i, lid, p.kv_cols, ev, kw + p.kv_cols / 4u, p.pos_words, kb + p.kv_blocks, p.pos_blocks);
}
