// rshr to 32 bits, and numerics::to_q16_sat: activations as Q16 arguments of the non-linear
// functions (gated.wgsl, gelu.wgsl). Prepended: i64.wgsl.

fn rshr32(x: vec2<u32>, s: u32) -> i32 {
    return i64_to_i32(i64_rshr(x, s));
}

// numerics::to_q16_sat: m·2^e in Q16, saturated at ±sat.
fn to_q16_sat(m: i32, e: i32, sat: i32) -> i32 {
    let s = e + 16;
    if s >= 0 {
        let lim = select(u32(sat) >> u32(s), 0u, s >= 32);
        if s >= 40 || abs_u32(m) > lim {
            return select(select(0, sat, m > 0), -sat, m < 0);
        }
        return m << u32(s);
    }
    return clamp(rshr32(i64_from(m), u32(-s)), -sat, sat);
}

