// The int8 dot product of two words of four packed bytes, with plain integer operations:
// the same sum as dot4I8Packed (integer products and sums are exact).
fn dot4(a: u32, b: u32) -> i32 {
    let x = bitcast<i32>(a);
    let y = bitcast<i32>(b);
    var s = 0i;
    for (var k = 0u; k < 4u; k++) {
        // Move byte k to the top, then shift back arithmetically: sign extension.
        s += ((x << (24u - 8u * k)) >> 24u) * ((y << (24u - 8u * k)) >> 24u);
    }
    return s;
}
