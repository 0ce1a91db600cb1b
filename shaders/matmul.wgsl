// x · Wᵀ accumulators (docs/NUMERICS.md, matmul): one invocation per tile of XR x rows by
// WO outputs.
// x comes from quantize.wgsl (scaled int8 blocks); W is a chunk of rows of a GGUF tensor
// read in place (weights.wgsl). Each 32-element block adds
//   T1 = a0·(s_b·dot(q[0..16], qx[0..16])) + a1·(s_b·dot(q[16..32], qx[16..32]))  at ea + E_b
//   T2 = b·(s_b·Σqx)                                                                at eb + E_b
// each shifted onto the row's grid A = emax_i + max_exp − 8 with shl/rshr (max_exp: the
// output's tensor's), summed exactly in 64 bits (any order gives the same bits).
// normalize.wgsl (or the consumer) then rounds the row.
// Prepended: i64.wgsl, dot4 (packed or emulated), weights.wgsl.

override TYPE: u32;
override WG: u32 = 64u;
// One invocation's tile: XR x rows by WO outputs (XR ≤ 4, WO ≤ 8, XR·WO ≤ 8; set by
// GpuOps). Each weight sub-block is decoded once for its XR x rows and each x block loaded
// once for its WO outputs: on lavapipe the storage loads cost most, not the 64-bit arithmetic
// (docs/GPU.md, Speed). Loops run to these constants, not to per-invocation counts, so that
// the compiler may unroll them and keep the arrays in registers; rows and outputs past the
// end repeat the last one, and are not stored.
override XR: u32;
override WO: u32;
// Invocations that share one tile, each taking every LANES-th block (split-K); their sums
// are added in the workgroup (exact, so the order does not matter). 1 on CPU adapters, where
// fewer, longer invocations run faster; on GPUs a decode step's few outputs need many
// invocations each to fill the machine.
override LANES: u32 = 1u;

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
    // The buffer's row of output 0: weights stacked in one buffer (q, k, v; gate, up) are one
    // dispatch, up to three segments of rows, each with its tensor's largest exponent: outputs
    // below seg1 use max_exp, below seg2 max_exp1, the rest max_exp2.
    at: u32,
    seg1: u32,
    seg2: u32,
    max_exp1: i32,
    max_exp2: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
// Per x block: its 32 int8 values, 8 words.
@group(0) @binding(2) var<storage, read> xq: array<vec4<u32>>;
// Per x block: (E_b, s_b, Σq, 0).
@group(0) @binding(3) var<storage, read> xblk: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> emax: array<i32>;
@group(0) @binding(5) var<storage, read_write> acc: array<vec2<u32>>;

const ONES: u32 = 0x01010101u;

// Each invocation's partial sums, for the split-K reduction (WG · XR · WO ≤ 512).
var<workgroup> part: array<vec2<u32>, 512>;

// Workgroups along z continue those along x (more than 65 535 tiles of outputs).
@compute @workgroup_size(WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let lane = lid % LANES;
    let j0 = ((wid.z * nwg.x + wid.x) * (WG / LANES) + lid / LANES) * WO;
    let i0 = wid.y * XR;
    var a: array<vec2<u32>, 8>;
    for (var t = 0u; t < XR * WO; t++) {
        a[t] = vec2<u32>(0u, 0u);
    }
    let live = j0 < p.rows && i0 < p.n;
    if live {
        tile_sums(j0, i0, lane, &a);
    }
    if LANES > 1u {
        for (var t = 0u; t < XR * WO; t++) {
            part[lid * XR * WO + t] = a[t];
        }
        workgroupBarrier();
        if lane == 0u {
            for (var l = 1u; l < LANES; l++) {
                for (var t = 0u; t < XR * WO; t++) {
                    a[t] = i64_add(a[t], part[(lid + l) * XR * WO + t]);
                }
            }
        }
    }
    if live && lane == 0u {
        for (var r = 0u; r < XR; r++) {
            for (var c = 0u; c < WO; c++) {
                if i0 + r < p.n && j0 + c < p.rows {
                    acc[(i0 + r) * p.out_cols + p.row0 + j0 + c] = a[r * WO + c];
                }
            }
        }
    }
}

// The sums of the tile at outputs j0.., x rows i0.., over blocks lane, lane + LANES, ...
fn tile_sums(j0: u32, i0: u32, lane: u32, a: ptr<function, array<vec2<u32>, 8>>) {
    // x row (in x) and its part of the grid, of tile row r; weight row (in the buffer) and its
    // part of the grid, of tile output c: the grid of (r, c) is grid[r] + gw[c].
    var xr: array<u32, 4>;
    var grid: array<i32, 4>;
    for (var r = 0u; r < XR; r++) {
        xr[r] = p.x_row0 + min(i0 + r, p.n - 1u);
        grid[r] = emax[xr[r]] - 8;
    }
    var jr: array<u32, 8>;
    var gw: array<i32, 8>;
    for (var c = 0u; c < WO; c++) {
        let j = min(j0 + c, p.rows - 1u);
        jr[c] = p.at + j;
        gw[c] = select(select(p.max_exp2, p.max_exp1, j < p.seg2), p.max_exp, j < p.seg1);
    }
    // Sum of tile row r, output c at r·WO + c.
    for (var s = lane; s < p.nb; s += LANES) {
        if TYPE == T_F32 || TYPE == T_F16 {
            // F16 / F32: s_b · w_m · qx per element, at w_e + E_b.
            for (var c = 0u; c < WO; c++) {
                for (var k = 0u; k < 32u; k++) {
                    let we = w_elem(jr[c], 32u * s + k, p.cols);
                    for (var r = 0u; r < XR; r++) {
                        let xb = xblk[xr[r] * p.nb + s];
                        let word = xq[(xr[r] * p.nb + s) * 2u + k / 16u][(k / 4u) % 4u];
                        let qx = (bitcast<i32>(word) << (24u - 8u * (k % 4u))) >> 24u;
                        let t = i64_shl_s(i64_mul(we.x, qx * xb.y), we.y + xb.x - grid[r] - gw[c]);
                        (*a)[r * WO + c] = i64_add((*a)[r * WO + c], t);
                    }
                }
            }
        } else {
            let sub = s % (block_len() / 32u);
            var o: array<Scales, 8>;
            var wd: array<u32, 64>;
            for (var c = 0u; c < WO; c++) {
                let base = block_base(jr[c], s, p.cols);
                o[c] = sub_scales(base, sub);
                let v = sub_words(base, sub);
                for (var k = 0u; k < 8u; k++) {
                    wd[8u * c + k] = v[k];
                }
            }
            for (var r = 0u; r < XR; r++) {
                let xb = xblk[xr[r] * p.nb + s];
                let sb = xb.y;
                let xw = (xr[r] * p.nb + s) * 2u;
                let x0 = xq[xw];
                let x1 = xq[xw + 1u];
                // Bytes that hold value + off (a property of the type): off times each half's Σqx
                // is subtracted from its dot product.
                var h0 = 0i;
                var h1 = 0i;
                if o[0].off != 0 {
                    for (var k = 0u; k < 4u; k++) {
                        h0 += dot4(ONES, x0[k]);
                        h1 += dot4(ONES, x1[k]);
                    }
                }
                for (var c = 0u; c < WO; c++) {
                    var d0 = -o[c].off * h0;
                    var d1 = -o[c].off * h1;
                    for (var k = 0u; k < 4u; k++) {
                        d0 += dot4(wd[8u * c + k], x0[k]);
                        d1 += dot4(wd[8u * c + k + 4u], x1[k]);
                    }
                    // |dot| < 2^18, s_b <= 130: the products with s_b fit in 32 bits.
                    let t = r * WO + c;
                    let t1 = i64_add(i64_mul(o[c].a0, sb * d0), i64_mul(o[c].a1, sb * d1));
                    let g = grid[r] + gw[c];
                    (*a)[t] = i64_add((*a)[t], i64_shl_s(t1, o[c].ea + xb.x - g));
                    if o[c].b != 0 {
                        (*a)[t] = i64_add((*a)[t], i64_shl_s(i64_mul(o[c].b, sb * xb.z), o[c].eb + xb.x - g));
                    }
                }
            }
        }
    }
}
