// The gated units' non-linearities (numerics v1): silu_mant and gelu_mant, f(m·2^e) in m's
// units, through sigmoid_q16 and the exp2 table, which the kernel binds as `exp2_t`.
// gated.wgsl and gated_acc.wgsl. Prepended: i64.wgsl, q16.wgsl.

const LOG2E_Q30: i32 = 1549082005;
const GELU_2C_Q30: i32 = 1713444047;
const GELU_K_Q30: i32 = 48012366;
const SIGMOID_SAT_Q16: i32 = 1 << 23u;
const GELU_SAT_Q16: i32 = 1 << 21u;

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
