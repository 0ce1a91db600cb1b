// numerics v1 swiglu / geglu (override GELU): f(g) in g's mantissa units (silu_mant or
// gelu_mant, through sigmoid_q16 and the exp2 table), times u's mantissa, at e_g + e_u;
// normalize.wgsl rounds the row. One invocation per element. Prepended: i64.wgsl, q16.wgsl.

override GELU: bool;
override WG: u32 = 64u;

const LOG2E_Q30: i32 = 1549082005;
const GELU_2C_Q30: i32 = 1713444047;
const GELU_K_Q30: i32 = 48012366;
const SIGMOID_SAT_Q16: i32 = 1 << 23u;
const GELU_SAT_Q16: i32 = 1 << 21u;

struct Params {
    cols: u32,
    rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gm: array<i32>;
@group(0) @binding(2) var<storage, read> ge: array<i32>;
@group(0) @binding(3) var<storage, read> um: array<i32>;
@group(0) @binding(4) var<storage, read> ue: array<i32>;
// numerics::exp2_table: round(2^(k/1024) · 2^30), k = 0..=1024.
@group(0) @binding(5) var<storage, read> exp2_t: array<u32>;
@group(0) @binding(6) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read_write> gexp: array<i32>;

// numerics::exp2_q20: 2^(z / 2^20) in Q30 for z <= 0.
fn exp2_q20(z: i32) -> u32 {
    let ip = z >> 20u;
    let f = bitcast<u32>(z) & 0xfffffu;
    let k = f >> 10u;
    let r = f & 1023u;
    let tk = exp2_t[k];
    let v = tk + bitcast<u32>(rshr32(vec2<u32>((exp2_t[k + 1u] - tk) * r, 0u), 10u));
    let sh = u32(-ip);
    if sh > 62u {
        return 0u;
    }
    return i64_rshr(vec2<u32>(v, 0u), sh).x;
}

// numerics::sigmoid_q16: sigmoid(y) in Q30 for y in Q16.
fn sigmoid_q16(y: i32) -> i32 {
    let ys = clamp(y, -SIGMOID_SAT_Q16, SIGMOID_SAT_Q16);
    let z = rshr32(u64_mul(abs_u32(ys), u32(LOG2E_Q30)), 26u);
    let t = exp2_q20(-z);
    let den = (1u << 30u) + t;
    if ys >= 0 {
        return i32(u64_div_u32(vec2<u32>(0u, 1u << 28u), den).x);
    }
    return i32(u64_div_u32(i64_shl(vec2<u32>(t, 0u), 30u), den).x);
}

fn silu_mant(m: i32, e: i32) -> i32 {
    return rshr32(i64_mul(m, sigmoid_q16(to_q16_sat(m, e, SIGMOID_SAT_Q16))), 30u);
}

fn gelu_mant(m: i32, e: i32) -> i32 {
    let g = to_q16_sat(m, e, GELU_SAT_Q16);
    let g2 = rshr32(i64_mul(g, g), 16u);
    let pp = (1 << 16u) + rshr32(i64_mul(GELU_K_Q30, g2), 30u);
    let inner = rshr32(i64_mul(g, pp), 16u);
    let y = rshr32(i64_mul(GELU_2C_Q30, inner), 30u);
    return rshr32(i64_mul(m, sigmoid_q16(y)), 30u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if c >= p.cols || i >= p.rows {
        return;
    }
    let at = i * p.cols + c;
    var f = 0i;
    if GELU {
        f = gelu_mant(gm[at], ge[i]);
    } else {
        f = silu_mant(gm[at], ge[i]);
    }
    acc[at] = i64_mul(f, um[at]);
    if c == 0u {
        gexp[i] = ge[i] + ue[i];
    }
}
