// encoder layer_norm (backend/exact/encoder.rs), one workgroup per row of n: y = n·m − Σm
// (exact: n·(x − mean)), normalized to 24 bits; then rms_norm.wgsl's rule on y with the group n
// and eps·n² (a 64-bit mantissa), times the weight: accumulators and an exponent per row, which
// add_bias.wgsl normalizes before adding the LayerNorm's bias. y is kept in acc in between (each
// invocation rewrites only its own columns). Prepended: i64.wgsl, rsqrt.wgsl, reduce.wgsl.

const WG: u32 = 256u;

struct Params {
    cols: u32,
    // eps · n² as a u64 (lo, hi) at exponent eps_e.
    eps_lo: u32,
    eps_hi: u32,
    eps_e: i32,
    // The weight's shared exponent.
    w_e: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read> wm: array<i32>;
@group(0) @binding(4) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> gexp: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let row = i * p.cols;
    let n = i32(p.cols);
    // Σm, then y = n·m − Σm and its largest magnitude.
    var s1 = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        s1 = i64_add(s1, i64_from(xm[row + c]));
    }
    s1 = sum_s(lid, s1);
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        let y = i64_sub(i64_mul(xm[row + c], n), s1);
        acc[row + c] = y;
        mx = u64_max(mx, i64_abs(y));
    }
    let m = max_m(lid, mx);
    // normalize(y, e): 24-bit mantissas ym at ye.
    var s = 0i;
    if !i64_is_zero(m) {
        s = i32(u64_bitlen(m)) - 24;
        if s > 0 && !u64_lt(i64_rshr(m, u32(s)), vec2<u32>(1u << 24u, 0u)) {
            s += 1;
        }
    }
    let ye = xe[i] + s;
    // rms_norm's rule on ym: S = Σym², the largest |ym|.
    var ss = vec2<u32>(0u, 0u);
    var ym_max = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        let a = abs_u32(i64_to_i32(i64_shl_s(acc[row + c], -s)));
        ss = i64_add(ss, u64_mul(a, a));
        ym_max = u64_max(ym_max, vec2<u32>(a, 0u));
    }
    ss = sum_s(lid, ss);
    let gmax = max_m(lid, ym_max).x;
    let s2 = i32(u64_bitlen(ss)) - 61;
    let mean = u64_div_u32(i64_shl_s(ss, -s2), p.cols);
    let rr = rms_rsqrt(mean, 2 * ye + s2, vec2<u32>(p.eps_lo, p.eps_hi), p.eps_e);
    if rr.y == RMS_NONE {
        for (var c = lid; c < p.cols; c += WG) {
            acc[row + c] = vec2<u32>(0u, 0u);
        }
        if lid == 0u {
            gexp[i] = RMS_NONE;
        }
        return;
    }
    let r = bitcast<u32>(rr.x);
    let h = 32u - countLeadingZeros(gmax) + 8u;
    for (var c = lid; c < p.cols; c += WG) {
        let ym = i64_to_i32(i64_shl_s(acc[row + c], -s));
        let pr = u64_mul(abs_u32(ym), r);
        let y = i64_to_i32(i64_rshr(select(pr, i64_neg(pr), ym < 0), h));
        acc[row + c] = i64_mul(y, wm[c]);
    }
    if lid == 0u {
        gexp[i] = ye + rr.y + i32(h) + p.w_e;
    }
}
