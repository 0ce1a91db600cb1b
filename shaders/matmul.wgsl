// x · Wᵀ accumulators (docs/NUMERICS.md, matmul): one invocation per output j and up to
// ROWS x rows.
// x comes from quantize.wgsl (scaled int8 blocks); W is a chunk of rows of a GGUF tensor
// read in place (weights.wgsl). Each 32-element block adds
//   T1 = a0·(s_b·dot(q[0..16], qx[0..16])) + a1·(s_b·dot(q[16..32], qx[16..32]))  at ea + E_b
//   T2 = b·(s_b·Σqx)                                                                at eb + E_b
// each shifted onto the row's grid A = emax_i + max_exp − 8 with shl/rshr, summed exactly
// in 64 bits (any order gives the same bits). normalize.wgsl then rounds the row.
// Prepended: i64.wgsl, dot4 (packed or emulated), weights.wgsl.

override TYPE: u32;
override WG: u32 = 64u;

struct Params {
    // Row length K (a multiple of 32) and blocks of 32 per row.
    cols: u32,
    nb: u32,
    // Rows of this weight chunk, the first one's output index, and the output row length.
    rows: u32,
    row0: u32,
    out_cols: u32,
    // x rows.
    n: u32,
    // Largest scale exponent of the whole tensor.
    max_exp: i32,
    // The first x row of this batch (acc holds the batch's rows only).
    x_row0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> xq: array<u32>;
// Per x block: (E_b, s_b, Σq, 0).
@group(0) @binding(3) var<storage, read> xblk: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> emax: array<i32>;
@group(0) @binding(5) var<storage, read_write> acc: array<vec2<u32>>;

const ONES: u32 = 0x01010101u;

// x rows per invocation: each weight sub-block is decoded once for all of them (prefill).
const ROWS: u32 = 4u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i0 = gid.y * ROWS;
    if j >= p.rows || i0 >= p.n {
        return;
    }
    let nr = min(ROWS, p.n - i0);
    // Row r of this invocation: i0 + r within the batch (acc), x0 + r in x.
    let x0 = p.x_row0 + i0;
    var a: array<vec2<u32>, ROWS>;
    var grid: array<i32, ROWS>;
    for (var r = 0u; r < nr; r++) {
        grid[r] = emax[x0 + r] + p.max_exp - 8;
        a[r] = vec2<u32>(0u, 0u);
    }
    for (var s = 0u; s < p.nb; s++) {
        if TYPE == T_F32 || TYPE == T_F16 {
            // F16 / F32: s_b · w_m · qx per element, at w_e + E_b.
            for (var k = 0u; k < 32u; k++) {
                let we = w_elem(j, 32u * s + k, p.cols);
                for (var r = 0u; r < nr; r++) {
                    let xb = xblk[(x0 + r) * p.nb + s];
                    let word = xq[((x0 + r) * p.nb + s) * 8u + k / 4u];
                    let qx = (bitcast<i32>(word) << (24u - 8u * (k % 4u))) >> 24u;
                    a[r] = i64_add(a[r], i64_shl_s(i64_mul(we.x, qx * xb.y), we.y + xb.x - grid[r]));
                }
            }
        } else {
            let base = block_base(j, s, p.cols);
            let sub = s % (block_len() / 32u);
            let o = sub_scales(base, sub);
            var wd: array<u32, 8>;
            for (var k = 0u; k < 8u; k++) {
                wd[k] = sub_word(base, sub, k);
            }
            for (var r = 0u; r < nr; r++) {
                let xb = xblk[(x0 + r) * p.nb + s];
                let sb = xb.y;
                let xw = ((x0 + r) * p.nb + s) * 8u;
                var d0 = 0i;
                var d1 = 0i;
                for (var k = 0u; k < 4u; k++) {
                    d0 += dot4(wd[k], xq[xw + k]);
                    d1 += dot4(wd[k + 4u], xq[xw + k + 4u]);
                }
                if o.off != 0 {
                    // Bytes hold value + off: subtract off times each half's Σqx.
                    var h0 = 0i;
                    var h1 = 0i;
                    for (var k = 0u; k < 4u; k++) {
                        h0 += dot4(ONES, xq[xw + k]);
                        h1 += dot4(ONES, xq[xw + k + 4u]);
                    }
                    d0 -= o.off * h0;
                    d1 -= o.off * h1;
                }
                // |dot| < 2^18, s_b <= 130: the products with s_b fit in 32 bits.
                let t1 = i64_add(i64_mul(o.a0, sb * d0), i64_mul(o.a1, sb * d1));
                a[r] = i64_add(a[r], i64_shl_s(t1, o.ea + xb.x - grid[r]));
                if o.b != 0 {
                    a[r] = i64_add(a[r], i64_shl_s(i64_mul(o.b, sb * xb.z), o.eb + xb.x - grid[r]));
                }
            }
        }
    }
    for (var r = 0u; r < nr; r++) {
        acc[(i0 + r) * p.out_cols + p.row0 + j] = a[r];
    }
}
