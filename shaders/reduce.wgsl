// Workgroup reductions shared by layer_norm.wgsl and pool_l2.wgsl: every invocation passes its
// value and gets the workgroup's result (the including kernel declares WG). Prepended: i64.wgsl.

var<workgroup> red_e: array<i32, WG>;
var<workgroup> red_s: array<vec2<u32>, WG>;
var<workgroup> red_m: array<vec2<u32>, WG>;

fn max_e(lid: u32, v: i32) -> i32 {
    red_e[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_e[lid] = max(red_e[lid], red_e[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red_e[0]);
}

fn sum_s(lid: u32, v: vec2<u32>) -> vec2<u32> {
    red_s[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_s[lid] = i64_add(red_s[lid], red_s[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red_s[0]);
}

fn max_m(lid: u32, v: vec2<u32>) -> vec2<u32> {
    red_m[lid] = v;
    workgroupBarrier();
    for (var h = WG / 2u; h > 0u; h >>= 1u) {
        if lid < h {
            red_m[lid] = u64_max(red_m[lid], red_m[lid + h]);
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&red_m[0]);
}
