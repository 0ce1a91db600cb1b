// numerics v1 embed: a token's weight row through align_terms. Each element is
// a[k/16]·q_k at ea plus b at eb (F16/F32: its mantissa at its exponent); all terms go on
// the grid 60 bits below the largest term's top bit and are summed; normalize.wgsl rounds
// the row to 24 bits. A row without a non-zero term has no exponent (0).
// One workgroup per token of this weight chunk. Prepended: i64.wgsl, weights.wgsl.

override TYPE: u32;
const WG: u32 = 64u;
const NONE: i32 = -2147483647 - 1;

struct Params {
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
// Per token: (row within this chunk, output row).
@group(0) @binding(2) var<storage, read> ids: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> gexp: array<i32>;

var<workgroup> red: array<i32, WG>;

fn top_bit(m: i32, e: i32) -> i32 {
    if m == 0 {
        return NONE;
    }
    return e + i32(32u - countLeadingZeros(abs_u32(m)));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = ids[wid.x];
    let r = id.x;
    let out = id.y * p.cols;
    let elems = TYPE == T_F32 || TYPE == T_F16;
    var top = NONE;
    for (var s = lid; s < p.cols / 32u; s += WG) {
        if elems {
            for (var k = 0u; k < 32u; k++) {
                let v = w_elem(r, 32u * s + k, p.cols);
                top = max(top, top_bit(v.x, v.y));
            }
        } else {
            let base = block_base(r, s, p.cols);
            let sub = s % (block_len() / 32u);
            let o = sub_scales(base, sub);
            for (var k = 0u; k < 32u; k++) {
                let q = word_q(sub_word(base, sub, k / 4u), k % 4u, o.off);
                top = max(top, top_bit(select(o.a0, o.a1, k >= 16u) * q, o.ea));
            }
            top = max(top, top_bit(o.b, o.eb));
        }
    }
    red[lid] = top;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red[lid] = max(red[lid], red[lid + h]);
        }
        workgroupBarrier();
    }
    let t = workgroupUniformLoad(&red[0]);
    let grid = t - 60;
    for (var s = lid; s < p.cols / 32u; s += WG) {
        if elems {
            for (var k = 0u; k < 32u; k++) {
                let v = w_elem(r, 32u * s + k, p.cols);
                acc[out + 32u * s + k] = select(i64_shl_s(i64_from(v.x), v.y - grid), vec2<u32>(0u, 0u), t == NONE);
            }
        } else {
            let base = block_base(r, s, p.cols);
            let sub = s % (block_len() / 32u);
            let o = sub_scales(base, sub);
            let bt = i64_shl_s(i64_from(o.b), o.eb - grid);
            for (var k = 0u; k < 32u; k++) {
                let q = select(o.a0, o.a1, k >= 16u) * word_q(sub_word(base, sub, k / 4u), k % 4u, o.off);
                let v = i64_add(i64_shl_s(i64_from(q), o.ea - grid), bt);
                acc[out + 32u * s + k] = select(v, vec2<u32>(0u, 0u), t == NONE);
            }
        }
    }
    if lid == 0u {
        gexp[id.y] = select(grid, NONE, t == NONE);
    }
}
