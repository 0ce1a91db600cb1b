// The int8 dot product of two words of four packed bytes: WGSL's built-in, where the
// adapter has the packed_4x8_integer_dot_product language extension.
fn dot4(a: u32, b: u32) -> i32 {
    return dot4I8Packed(a, b);
}
