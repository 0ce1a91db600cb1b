// encoder gelu, the erf form (numerics::gelu_erf_acc): m · Φ(x) at e − 30, with Φ in Q30 from
// the table numerics::phi_table (steps of 2^−8 on [0, 8], linear interpolation; 1 − Φ(|x|) for
// x < 0). One invocation per element; the consumer (or normalize.wgsl) rounds the row.
// Prepended: i64.wgsl, q16.wgsl.

const WG: u32 = 64u;
const PHI_SAT_Q16: i32 = 8 << 16u;
const PHI_LEN: u32 = 2049u;

struct Params {
    cols: u32,
    rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> phi_t: array<u32>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;

// numerics::phi_q30.
fn phi_q30(x: i32) -> i32 {
    let a = min(abs_u32(x), u32(PHI_SAT_Q16));
    let k = a >> 8u;
    var v = i32(phi_t[k]);
    if k + 1u < PHI_LEN {
        v += rshr32(i64_mul(i32(phi_t[k + 1u]) - v, i32(a & 255u)), 8u);
    }
    return select(v, (1 << 30u) - v, x < 0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if c >= p.cols || i >= p.rows {
        return;
    }
    let m = xm[i * p.cols + c];
    acc[i * p.cols + c] = i64_mul(m, phi_q30(to_q16_sat(m, xe[i], PHI_SAT_Q16)));
    if c == 0u {
        gexp[i] = xe[i] - 30;
    }
}
