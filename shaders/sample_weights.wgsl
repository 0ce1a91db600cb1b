// Seeded sampling (sampling::sample), step 2 of 3: each token's key and weight. With q16 =
// round_ties_even(m·2^(e+16)) (the row's exponent e <= 0: exact) and top = the largest q16
// (sample_select's first stage), d = top − q16 >= 0 and the weight is, as on the CPU,
// w = rshr(exp2_q20(rshr(z·log2e, 26)), 6) with z = max(−floor(d·2^16 / t), −100·2^16).
// Tokens with d >= 2^31 have weight 0 (t <= 1000·2^16) and come after every other token in
// the sampling order: they are marked as no candidate. Writes (d, w) per token.
// Prepended: i64.wgsl, exp2.wgsl, sample_params.wgsl.

const LOG2E_Q30: u32 = 1549082005u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> state: array<u32>;
@group(0) @binding(4) var<storage, read> exp2_t: array<u32>;
@group(0) @binding(5) var<storage, read_write> dw: array<vec2<u32>>;

fn exp2_entry(k: u32) -> u32 {
    return exp2_t[k];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if j >= p.cols || state[1] != 0u {
        return;
    }
    let q = i64_shl_s(i64_from(xm[p.row * p.cols + j]), xe[p.row] + 16);
    let d = i64_sub(vec2<u32>(state[2], state[3]), q);
    if d.y != 0u || d.x >= 0x80000000u {
        dw[j] = vec2<u32>(NONE, 0u);
        return;
    }
    // floor(d·2^16 / t), at most 100·2^16.
    var zq = u64_div_u32(vec2<u32>(d.x << 16u, d.x >> 16u), p.t);
    if zq.y != 0u || zq.x > 6553600u {
        zq = vec2<u32>(6553600u, 0u);
    }
    let z = i64_rshr(i64_neg(u64_mul(zq.x, LOG2E_Q30)), 26u);
    let w = i64_rshr(vec2<u32>(exp2_q20(z), 0u), 6u).x;
    dw[j] = vec2<u32>(d.x, w);
}
