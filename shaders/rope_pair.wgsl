// RoPE's pair p of a row of heads of `head_dim`: its two columns and its index in the head's
// (cos, sin) table. Adjacent (NORM) or half-split (NEOX, the including kernel's override).
// rope.wgsl, attn_in.wgsl.

fn rope_pair(p: u32, head_dim: u32) -> vec3<u32> {
    let half = head_dim / 2u;
    let h = p / half;
    let t = p % half;
    if NEOX {
        return vec3<u32>(h * head_dim + t, h * head_dim + t + half, t);
    }
    return vec3<u32>(h * head_dim + 2u * t, h * head_dim + 2u * t + 1u, t);
}
