// Index of each row's largest value (IMat::argmax_row): a row has one exponent, so the
// mantissas compare; ties go to the lowest index. One workgroup per row.

const WG: u32 = 256u;

struct Params {
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xm: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> red_v: array<i32, WG>;
var<workgroup> red_i: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x * p.cols;
    var best = -2147483647 - 1;
    var at = 0xffffffffu;
    // Each invocation scans increasing indices, so a strict > keeps the lowest index of a tie.
    for (var c = lid; c < p.cols; c += WG) {
        let v = xm[row + c];
        if at == 0xffffffffu || v > best {
            best = v;
            at = c;
        }
    }
    red_v[lid] = best;
    red_i[lid] = at;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            let v = red_v[lid + h];
            let i = red_i[lid + h];
            let mine = red_i[lid];
            if i != 0xffffffffu && (mine == 0xffffffffu || v > red_v[lid] || (v == red_v[lid] && i < mine)) {
                red_v[lid] = v;
                red_i[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[wid.x] = red_i[0];
    }
}
