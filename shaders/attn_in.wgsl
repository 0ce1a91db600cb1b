// q, k and v of a decoder layer into attention, in one pass per row: qkv_rows.wgsl's rows,
// each quantized per head (quant_block.wgsl, as quantize.wgsl): q into q8 / qblk, k and v into
// the layer's KV cache at the row's position. Replaces two rope and three quantize dispatches
// (prefill; a decode step runs attn_step.wgsl instead). One workgroup per row.
// Prepended: i64.wgsl, quant_block.wgsl, reduce.wgsl, norm_row.wgsl, rope_pair.wgsl,
// qkv_rows.wgsl, kv_cache.wgsl.

override NEOX: bool;
const WG: u32 = 256u;

struct Params {
    // The accumulators' row stride, and the mantissa width.
    stride: u32,
    bits: u32,
    head_dim: u32,
    // Blocks per head.
    nbh: u32,
    q_cols: u32,
    kv_dim: u32,
    n_head: u32,
    pos0: u32,
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

// 0: quantize into q8 / qblk; 1: into the cache.
var<private> dest: u32;

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
    // One position's words and blocks in the cache.
    let step_w = cache_word(1u, 0u, 0u);
    let step_b = cache_blk(1u, 0u, 0u);
    dest = 0u;
    let eq = prepare(i, lid, p.q, p.q_cols, true);
    emit(i, lid, p.q_cols, eq, 0u, p.q_cols / 4u, 0u, p.n_head * p.nbh);
    dest = 1u;
    let ek = prepare(i, lid, p.k, p.kv_dim, true);
    emit(i, lid, p.kv_dim, ek, cache_word(p.pos0, 0u, 0u), step_w, cache_blk(p.pos0, 0u, 0u), step_b);
    let ev = prepare(i, lid, p.v, p.kv_dim, false);
    emit(i, lid, p.kv_dim, ev, cache_word(p.pos0, 1u, 0u), step_w, cache_blk(p.pos0, 1u, 0u), step_b);
}
