// encoder mean_pool_l2 (backend/exact/encoder.rs), one workgroup per segment (a text's rows
// bounds[s]..bounds[s+1]): the rows' sum on the grid 24 bits below the largest exponent of a
// row with a non-zero element, normalized to 24 bits; then rms_norm.wgsl's rule with n = 1, no
// eps and no weight (the L2 norm): accumulators and an exponent per segment, which
// normalize.wgsl rounds. The sum is kept in acc in between. Prepended: i64.wgsl, rsqrt.wgsl,
// reduce.wgsl.

const WG: u32 = 256u;

struct Params {
    cols: u32,
    nseg: u32,
    pad0: u32,
    pad1: u32,
    // Segment s is rows bounds[s]..bounds[s + 1] (at most 63 segments).
    bounds: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read> xe: array<i32>;
@group(0) @binding(3) var<storage, read_write> acc: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> gexp: array<i32>;

fn bound(k: u32) -> u32 {
    return p.bounds[k / 4u][k % 4u];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sg = wid.x;
    let r0 = bound(sg);
    let r1 = bound(sg + 1u);
    let out = sg * p.cols;
    // The grid: 24 bits below the largest exponent of a row that has a non-zero element.
    var top = RMS_NONE;
    for (var t = lid; t < (r1 - r0) * p.cols; t += WG) {
        let r = r0 + t / p.cols;
        if xm[r * p.cols + t % p.cols] != 0 {
            top = max(top, xe[r]);
        }
    }
    top = max_e(lid, top);
    if top == RMS_NONE {
        for (var c = lid; c < p.cols; c += WG) {
            acc[out + c] = vec2<u32>(0u, 0u);
        }
        if lid == 0u {
            gexp[sg] = RMS_NONE;
        }
        return;
    }
    let g = top - 24;
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        var a = vec2<u32>(0u, 0u);
        for (var r = r0; r < r1; r++) {
            a = i64_add(a, i64_shl_s(i64_from(xm[r * p.cols + c]), xe[r] - g));
        }
        acc[out + c] = a;
        mx = u64_max(mx, i64_abs(a));
    }
    let m = max_m(lid, mx);
    var s = i32(u64_bitlen(m)) - 24;
    if s > 0 && !u64_lt(i64_rshr(m, u32(s)), vec2<u32>(1u << 24u, 0u)) {
        s += 1;
    }
    let pe = g + s;
    // The L2 norm of the pooled mantissas pm.
    var ss = vec2<u32>(0u, 0u);
    var pmax = vec2<u32>(0u, 0u);
    for (var c = lid; c < p.cols; c += WG) {
        let a = abs_u32(i64_to_i32(i64_shl_s(acc[out + c], -s)));
        ss = i64_add(ss, u64_mul(a, a));
        pmax = u64_max(pmax, vec2<u32>(a, 0u));
    }
    ss = sum_s(lid, ss);
    let gmax = max_m(lid, pmax).x;
    let s1 = i32(u64_bitlen(ss)) - 61;
    let rr = rms_rsqrt(i64_shl_s(ss, -s1), 2 * pe + s1, vec2<u32>(0u, 0u), 0);
    let r = bitcast<u32>(rr.x);
    let h = 32u - countLeadingZeros(gmax) + 8u;
    for (var c = lid; c < p.cols; c += WG) {
        let pm = i64_to_i32(i64_shl_s(acc[out + c], -s));
        let pr = u64_mul(abs_u32(pm), r);
        acc[out + c] = i64_rshr(select(pr, i64_neg(pr), pm < 0), h);
    }
    if lid == 0u {
        gexp[sg] = pe + rr.y + i32(h);
    }
}
