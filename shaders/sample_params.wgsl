// The sampler kernels' parameter block (sample_weights, sample_hist, sample_select), as
// crate/src/gpu/sample.rs writes it, and their shared constants.

const WG: u32 = 256u;
// No candidate (sample_weights' key) / no token yet.
const NONE: u32 = 0xffffffffu;

struct Params {
    // Logits per row, and the row sampled.
    cols: u32,
    row: u32,
    // Temperature in Q16 (> 0 unless greedy), top-k (0: off), top-p in Q16.
    t: u32,
    top_k: u32,
    top_p: u32,
    // The step's 64 random bits (random_u64(seed, step)).
    u_lo: u32,
    u_hi: u32,
    // Bits of a token id in the key.
    idbits: u32,
    // The select's query (1 top-k, 2 top-p, 3 the draw), its level and whether it is the last,
    // and the shift of the level's 8-bit digit.
    query: u32,
    level: u32,
    last: u32,
    shift: u32,
    // Workgroups of sample_hist and tokens per workgroup.
    groups: u32,
    chunk: u32,
    greedy: u32,
    pad: u32,
}
