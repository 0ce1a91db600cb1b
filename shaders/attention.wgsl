// attend.wgsl over q quantized by quantize.wgsl (or attn_in.wgsl) and the cache, one
// workgroup per (head, row): prefill, encoders, and decode steps whose q, k, v are not a
// decoder's products in one buffer. Writes the head's accumulators and exponent;
// normalize.wgsl aligns the heads of a row and rounds it. Prepended: i64.wgsl, exp2.wgsl,
// dot4, reduce.wgsl, kv_cache.wgsl, attend.wgsl.

const WG: u32 = 64u;

struct Params {
    head_dim: u32,
    // Blocks per head (the last may hold fewer than 32).
    nbh: u32,
    n_head: u32,
    // Query heads per KV head.
    group: u32,
    kv_dim: u32,
    pos0: u32,
    // 0: no sliding window.
    window: u32,
    // Stride of a (row, head)'s scores in the scratch buffer.
    npos: u32,
    sm: i32,
    se: i32,
    // Encoders: with nseg > 0, row i is in segment s (rows bounds[s]..bounds[s + 1], at most 63
    // segments) and sees exactly the keys of its segment, in both directions; pos0 and window
    // are unused.
    nseg: u32,
    pad: u32,
    bounds: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qw: array<u32>;
@group(0) @binding(2) var<storage, read> qblk: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> kvw: array<u32>;
@group(0) @binding(4) var<storage, read> kvblk: array<vec4<i32>>;
@group(0) @binding(5) var<storage, read> exp2_t: array<u32>;
@group(0) @binding(6) var<storage, read_write> sc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read_write> gexp: array<i32>;

fn bound(k: u32) -> u32 {
    return p.bounds[k / 4u][k % 4u];
}

fn exp2_entry(k: u32) -> u32 {
    return exp2_t[k];
}

fn q_word(i: u32, h: u32, w: u32) -> u32 {
    return qw[(i * p.n_head + h) * p.head_dim / 4u + w];
}

fn q_blk(i: u32, h: u32, b: u32) -> vec4<i32> {
    return qblk[(i * p.n_head + h) * p.nbh + b];
}

fn k_word(j: u32, g: u32, w: u32) -> u32 {
    return kvw[cache_word(j, 0u, g) + w];
}

fn v_word(j: u32, g: u32, w: u32) -> u32 {
    return kvw[cache_word(j, 1u, g) + w];
}

fn k_blk(j: u32, g: u32, b: u32) -> vec4<i32> {
    return kvblk[cache_blk(j, 0u, g) + b];
}

fn v_blk(j: u32, g: u32, b: u32) -> vec4<i32> {
    return kvblk[cache_blk(j, 1u, g) + b];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    attend(wid.x, wid.y, lid);
}
