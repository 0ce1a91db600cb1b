// Rows to scaled int8 blocks (quant_block.wgsl): blocks of 32 within each `seg`-wide segment
// (the matmul's whole row; attention's heads, whose last block may be shorter).
// One workgroup per row; also the row's largest block exponent (the matmul grid). Output
// rows have their own stride and offset (a KV cache interleaves K and V rows per position).
// Needs cols and seg multiples of 4. With `norm`, the input is still accumulators (nacc,
// ngexp): normalize_row.wgsl first writes its mantissas and exponent to xm, xe.
// Prepended: i64.wgsl, quant_block.wgsl, reduce.wgsl, norm_row.wgsl, normalize_row.wgsl
// (NORM_M = xm, NORM_E = xe).

const WG: u32 = 64u;

struct Params {
    cols: u32,
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

fn quant_in(at: u32) -> i32 {
    return xm[at];
}

fn quant_word(at: u32, w: u32) {
    xq[at] = w;
}

fn quant_blk(at: u32, v: vec4<i32>) {
    xblk[at] = v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    if p.norm != 0u {
        normalize_row(NormRow(i, 0u, p.cols, p.n_group, p.n_ng, p.n_bits, p.n_bias, p.n_stride, p.n_col0), lid);
    }
    let ow0 = p.q_base + i * p.q_stride;
    let blk0 = p.b_base + i * p.b_stride;
    let best = max_e(lid, quantize_segments(lid, p.cols, p.seg, xe[i], i * p.cols, ow0, blk0));
    if lid == 0u {
        emax[i] = best;
    }
}
