// Rows to scaled int8 blocks (numerics::quantize_block_scaled): blocks of 32 within each
// `seg`-wide segment (the matmul's whole row; attention's heads, whose last block may be
// shorter). With
// M = max |m|, t = max(0, bitlen(M) − 7), s = ceil(128·M / (127·2^t)),
// q = rdiv(128·m, s·2^t), E_b = e + t − 7; an all-zero block has q = 0, s = 1, t = 0.
// One workgroup per row; also the row's largest block exponent (the matmul grid). Output
// rows have their own stride and offset (a KV cache interleaves K and V rows per position).
// Needs cols and seg multiples of 4. With `norm`, the input is still accumulators (nacc,
// ngexp): normalize_row.wgsl first writes its mantissas and exponent to xm, xe.
// Prepended: i64.wgsl, norm_row.wgsl, normalize_row.wgsl (NORM_M = xm, NORM_E = xe).

const WG: u32 = 64u;

struct Params {
    cols: u32,
    // Blocks per row.
    nb: u32,
    seg: u32,
    // Output row r's words start at q_base + r·q_stride, its blocks at b_base + r·b_stride.
    q_stride: u32,
    q_base: u32,
    b_stride: u32,
    b_base: u32,
    // 1: normalize the input first, its groups of n_group columns (n_ng per row) plus n_bias.
    norm: u32,
    n_group: u32,
    n_ng: u32,
    n_bits: u32,
    n_bias: i32,
    // Its row stride and first column (products that share one buffer).
    n_stride: u32,
    n_col0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> xm: array<i32>;
@group(0) @binding(2) var<storage, read_write> xe: array<i32>;
@group(0) @binding(3) var<storage, read_write> xq: array<u32>;
// Per block: (E_b, s, Σq, 0).
@group(0) @binding(4) var<storage, read_write> xblk: array<vec4<i32>>;
@group(0) @binding(5) var<storage, read_write> emax: array<i32>;
@group(0) @binding(6) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> ngexp: array<i32>;

var<workgroup> red: array<i32, WG>;

// floor(x / d) for d > 0 (WGSL's / truncates).
fn floor_div(x: i32, d: i32) -> i32 {
    let q = x / d;
    return select(q, q - 1, x % d != 0 && x < 0);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    if p.norm != 0u {
        normalize_row(NormRow(i, 0u, p.cols, p.n_group, p.n_ng, p.n_bits, p.n_bias, p.n_stride, p.n_col0), lid);
    }
    let e = xe[i];
    let nbs = (p.seg + 31u) / 32u;
    var best = -2147483647 - 1;
    for (var b = lid; b < p.nb; b += WG) {
        let start = (b / nbs) * p.seg + 32u * (b % nbs);
        let len = min(32u, p.seg - 32u * (b % nbs));
        let at = i * p.cols + start;
        // Output words of this block.
        let ow = p.q_base + i * p.q_stride + start / 4u;
        var mx = 0u;
        for (var k = 0u; k < len; k++) {
            mx = max(mx, abs_u32(xm[at + k]));
        }
        let blk = p.b_base + i * p.b_stride + b;
        var eb = e - 7;
        if mx == 0u {
            for (var k = 0u; k < len / 4u; k++) {
                xq[ow + k] = 0u;
            }
            xblk[blk] = vec4<i32>(eb, 1, 0, 0);
        } else {
            let t = u32(max(0i, i32(32u - countLeadingZeros(mx)) - 7));
            // s = ceil(ceil(128·M / 2^t) / 127), the same as ceil(128·M / (127·2^t)).
            var c1 = 0u;
            if t <= 7u {
                c1 = mx << (7u - t);
            } else {
                c1 = (mx >> (t - 7u)) + select(0u, 1u, (mx & ((1u << (t - 7u)) - 1u)) != 0u);
            }
            let s = i32((c1 + 126u) / 127u);
            let d = u32(s) << t;
            var sum = 0i;
            for (var wd = 0u; wd < len / 4u; wd++) {
                var word = 0u;
                for (var k = 0u; k < 4u; k++) {
                    let m = xm[at + 4u * wd + k];
                    // q0 = floor(128·m / (s·2^t)) = floor(floor(128·m / 2^t) / s), then round
                    // to nearest, ties to even, on the exact remainder r = 128·m − q0·s·2^t.
                    var f = 0i;
                    if t <= 7u {
                        f = m << (7u - t);
                    } else {
                        f = m >> (t - 7u);
                    }
                    var q = floor_div(f, s);
                    let r = i64_sub(i64_mul(m, 128), i64_shl(i64_from(q * s), t)).x;
                    let rest = d - r;
                    if r > rest || (r == rest && (q & 1) == 1) {
                        q += 1;
                    }
                    sum += q;
                    word |= (bitcast<u32>(q) & 0xffu) << (8u * k);
                }
                xq[ow + wd] = word;
            }
            eb = e + i32(t) - 7;
            xblk[blk] = vec4<i32>(eb, s, sum, 0);
        }
        best = max(best, eb);
    }
    red[lid] = best;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red[lid] = max(red[lid], red[lid + h]);
        }
        workgroupBarrier();
    }
    if lid == 0u {
        emax[i] = red[0];
    }
}
