// Seeded sampling, step 3 of 3 (with sample_select): one level of a radix select over the
// candidates' keys (d, id) = d·2^idbits + id, which order tokens as the CPU does (logit
// descending, then id). The tokens whose key's digits above `shift + 8` match the prefix
// chosen so far are counted, and their weights summed (exactly, in 64 bits), in 256 bins by
// the digit at `shift`; each workgroup writes its bins (count, weight low, weight high) for
// sample_select to add up. Prepended: i64.wgsl, sample_params.wgsl.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;
@group(0) @binding(2) var<storage, read> dw: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read_write> hist: array<u32>;

var<workgroup> h_n: array<atomic<u32>, WG>;
var<workgroup> h_lo: array<atomic<u32>, WG>;
var<workgroup> h_hi: array<atomic<u32>, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    atomicStore(&h_n[lid], 0u);
    atomicStore(&h_lo[lid], 0u);
    atomicStore(&h_hi[lid], 0u);
    workgroupBarrier();
    // Nothing to do after a fallback, or for a query already settled at its first level.
    if state[1] == 0u && (p.level == 0u || state[16] == 0u) {
        let prefix = vec2<u32>(state[4], state[5]);
        let end = min(p.cols, (wid.x + 1u) * p.chunk);
        for (var j = wid.x * p.chunk + lid; j < end; j += WG) {
            let v = dw[j];
            if v.x == NONE {
                continue;
            }
            let key = i64_shl(vec2<u32>(v.x, 0u), p.idbits) | vec2<u32>(j, 0u);
            let hi = i64_sar(key, p.shift + 8u);
            if p.level == 0u || (hi.x == prefix.x && hi.y == prefix.y) {
                let b = i64_sar(key, p.shift).x & 255u;
                atomicAdd(&h_n[b], 1u);
                // 64-bit sums: a carry each time the low word wraps.
                let old = atomicAdd(&h_lo[b], v.y);
                if old + v.y < old {
                    atomicAdd(&h_hi[b], 1u);
                }
            }
        }
    }
    workgroupBarrier();
    let o = (wid.x * WG + lid) * 3u;
    hist[o] = atomicLoad(&h_n[lid]);
    hist[o + 1u] = atomicLoad(&h_lo[lid]);
    hist[o + 2u] = atomicLoad(&h_hi[lid]);
}
