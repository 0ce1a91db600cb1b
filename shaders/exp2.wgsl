// numerics::exp2_q20 for z <= 0 in Q20 (64-bit z: below −62·2^20 the result is 0), through
// numerics::exp2_table, entry k of which the kernel gives as exp2_entry(k). Needs i64.wgsl.
fn exp2_q20(z: vec2<u32>) -> u32 {
    if i64_lt(z, i64_from(-62 * (1 << 20u))) {
        return 0u;
    }
    let zi = i64_to_i32(z);
    let ip = zi >> 20u;
    let f = bitcast<u32>(zi) & 0xfffffu;
    let k = f >> 10u;
    let r = f & 1023u;
    let tk = exp2_entry(k);
    let v = tk + i64_rshr(vec2<u32>((exp2_entry(k + 1u) - tk) * r, 0u), 10u).x;
    return i64_rshr(vec2<u32>(v, 0u), u32(-ip)).x;
}
