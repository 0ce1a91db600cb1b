// A decode step's attention, from a decoder's q, k and v products (still accumulators in
// their shared buffer) in one dispatch, one workgroup per query head (h): qkv_rows.wgsl's rows
// as attn_in.wgsl makes them, but each workgroup quantizes only what it reads: its head of q
// and its KV head (g) of the new position's K and V, into workgroup memory; the first query
// head of each KV head also writes them into the cache for the steps after. Then attend.wgsl,
// which reads the new position from workgroup memory and the earlier ones from the cache.
// The same bits as attn_in.wgsl then attention.wgsl. Eight storage buffers; the exp2 table is
// a uniform buffer. Prepended: i64.wgsl, exp2.wgsl, dot4, quant_block.wgsl, reduce.wgsl,
// norm_row.wgsl, rope_pair.wgsl, qkv_rows.wgsl, kv_cache.wgsl, attend.wgsl.

override NEOX: bool;
const WG: u32 = 64u;
// Largest head: words and blocks of one kept in workgroup memory.
const MAXH: u32 = 256u;

struct Params {
    head_dim: u32,
    // Blocks per head.
    nbh: u32,
    n_head: u32,
    // Query heads per KV head.
    group: u32,
    kv_dim: u32,
    pos0: u32,
    // 0: no sliding window.
    window: u32,
    npos: u32,
    sm: i32,
    se: i32,
    // Always 0 (attend.wgsl's encoder segments).
    nseg: u32,
    // The accumulators' row stride, and the mantissa width.
    stride: u32,
    bits: u32,
    q_cols: u32,
    _pad0: u32,
    _pad1: u32,
    q: Part,
    k: Part,
    v: Part,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> ngexp: array<i32>;
@group(0) @binding(3) var<storage, read> cs: array<vec2<i32>>;
@group(0) @binding(4) var<storage, read_write> cw: array<u32>;
// Per block: (E_b, s, Σq, 0).
@group(0) @binding(5) var<storage, read_write> cb: array<vec4<i32>>;
@group(0) @binding(6) var<storage, read_write> sc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(8) var<storage, read_write> gexp: array<i32>;
// numerics::exp2_table, four entries a vector.
@group(0) @binding(9) var<uniform> exp2_u: array<vec4<u32>, 257>;

var<workgroup> q_w: array<u32, MAXH / 4u>;
var<workgroup> q_b: array<vec4<i32>, MAXH / 32u>;
var<workgroup> k_w: array<u32, MAXH / 4u>;
var<workgroup> k_b: array<vec4<i32>, MAXH / 32u>;
var<workgroup> v_w: array<u32, MAXH / 4u>;
var<workgroup> v_b: array<vec4<i32>, MAXH / 32u>;

// 0: q; 1: K; 2: V. The cache's word and block of the new position's KV head (K's or V's),
// where `writer` (the KV head's first query head) stores them.
var<private> dest: u32;
var<private> writer: bool;
var<private> cache_w: u32;
var<private> cache_b: u32;

fn exp2_entry(k: u32) -> u32 {
    return exp2_u[k / 4u][k % 4u];
}

fn bound(k: u32) -> u32 {
    return 0u;
}

fn quant_word(at: u32, w: u32) {
    if dest == 0u {
        q_w[at] = w;
        return;
    }
    if dest == 1u {
        k_w[at] = w;
    } else {
        v_w[at] = w;
    }
    if writer {
        cw[cache_w + at] = w;
    }
}

fn quant_blk(at: u32, v: vec4<i32>) {
    if dest == 0u {
        q_b[at] = v;
        return;
    }
    if dest == 1u {
        k_b[at] = v;
    } else {
        v_b[at] = v;
    }
    if writer {
        cb[cache_b + at] = v;
    }
}

fn q_word(i: u32, h: u32, w: u32) -> u32 {
    return q_w[w];
}

fn q_blk(i: u32, h: u32, b: u32) -> vec4<i32> {
    return q_b[b];
}

fn k_word(j: u32, g: u32, w: u32) -> u32 {
    if j == p.pos0 {
        return k_w[w];
    }
    return cw[cache_word(j, 0u, g) + w];
}

fn v_word(j: u32, g: u32, w: u32) -> u32 {
    if j == p.pos0 {
        return v_w[w];
    }
    return cw[cache_word(j, 1u, g) + w];
}

fn k_blk(j: u32, g: u32, b: u32) -> vec4<i32> {
    if j == p.pos0 {
        return k_b[b];
    }
    return cb[cache_blk(j, 0u, g) + b];
}

fn v_blk(j: u32, g: u32, b: u32) -> vec4<i32> {
    if j == p.pos0 {
        return v_b[b];
    }
    return cb[cache_blk(j, 1u, g) + b];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let hd = p.head_dim;
    let g = h / p.group;
    writer = h % p.group == 0u;
    dest = 0u;
    let eq = prepare(0u, lid, p.q, p.q_cols, true);
    quantize_segments(lid, hd, hd, eq, h * hd, 0u, 0u);
    // rot is read until every block is done.
    workgroupBarrier();
    dest = 1u;
    cache_w = cache_word(p.pos0, 0u, g);
    cache_b = cache_blk(p.pos0, 0u, g);
    let ek = prepare(0u, lid, p.k, p.kv_dim, true);
    quantize_segments(lid, hd, hd, ek, g * hd, 0u, 0u);
    workgroupBarrier();
    dest = 2u;
    cache_w = cache_word(p.pos0, 1u, g);
    cache_b = cache_blk(p.pos0, 1u, g);
    let ev = prepare(0u, lid, p.v, p.kv_dim, false);
    quantize_segments(lid, hd, hd, ev, g * hd, 0u, 0u);
    workgroupBarrier();
    attend(h, 0u, lid);
}
