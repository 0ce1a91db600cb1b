// The KV cache of one layer (gpu/ops.rs, cache_per_pos): per position j, K's int8 words then
// V's (kv_dim / 4 each), and K's blocks (E, s, Σq, 0) then V's (kv_dim / head_dim · nbh
// each); KV head g's start at g · head_dim / 4 and g · nbh. kv: 0 for K, 1 for V. The kernel's
// p has head_dim, nbh and kv_dim.

fn cache_word(j: u32, kv: u32, g: u32) -> u32 {
    return (2u * j + kv) * (p.kv_dim / 4u) + g * (p.head_dim / 4u);
}

fn cache_blk(j: u32, kv: u32, g: u32) -> u32 {
    return (2u * j + kv) * (p.kv_dim / p.head_dim * p.nbh) + g * p.nbh;
}
