// normalize_row.wgsl over rows of accumulators: one workgroup per row. Prepended: i64.wgsl,
// reduce.wgsl, norm_row.wgsl, normalize_row.wgsl (NORM_M = om, NORM_E = oe).

const WG: u32 = 256u;

struct Params {
    cols: u32,
    group: u32,
    // Groups per row.
    ng: u32,
    bits: u32,
    bias: i32,
    // The first row's index in ngexp and oe (om is bound to this batch of rows).
    row0: u32,
    // The accumulators' row stride and first column (products that share one buffer).
    stride: u32,
    col0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> nacc: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> ngexp: array<i32>;
@group(0) @binding(3) var<storage, read_write> om: array<i32>;
@group(0) @binding(4) var<storage, read_write> oe: array<i32>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    normalize_row(NormRow(wid.x, p.row0, p.cols, p.group, p.ng, p.bits, p.bias, p.stride, p.col0), lid);
}
