// GGUF weight blocks read from u32 words (WGSL has no u8). Blocks are uploaded as their
// file bytes, except that blocks of 34, 18, 22 and 210 bytes are padded to a multiple of 4
// (two zero bytes after the leading f16 scale of Q8_0, Q4_0, Q5_0; two at the end of Q6_K:
// GpuWeight::from_view), so every word of quants is an aligned load. Lossless: the values
// are the file's. Each 32-element sub-block decodes to the exact CPU terms
// (backend/exact.rs, decode_block): element k is a[k / 16] * (byte_k - off) * 2^ea + b * 2^eb.
// Needs a storage binding `w: array<u32>` and `override TYPE: u32` (ggml's type id).
// Prepended after i64.wgsl.

const T_F32: u32 = 0u;
const T_F16: u32 = 1u;
const T_Q4_0: u32 = 2u;
const T_Q4_1: u32 = 3u;
const T_Q5_0: u32 = 6u;
const T_Q5_1: u32 = 7u;
const T_Q8_0: u32 = 8u;
const T_Q4_K: u32 = 12u;
const T_Q5_K: u32 = 13u;
const T_Q6_K: u32 = 14u;

fn wbyte(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu;
}

// A little-endian u16 at an even offset (never straddles a word).
fn wu16(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu;
}

// The word at a byte offset that is a multiple of 4.
fn wword(off: u32) -> u32 {
    return w[off >> 2u];
}

// numerics::f16_parts: (signed mantissa, exponent); weights were validated at load (no Inf/NaN).
fn f16_parts(bits: u32) -> vec2<i32> {
    let e = i32((bits >> 10u) & 31u);
    let frac = i32(bits & 1023u);
    var m = frac;
    var x = -24;
    if e != 0 {
        m = 1024 + frac;
        x = e - 25;
    }
    return vec2<i32>(select(m, -m, (bits & 0x8000u) != 0u), x);
}

// numerics::f32_parts.
fn f32_parts(bits: u32) -> vec2<i32> {
    let e = i32((bits >> 23u) & 255u);
    let frac = i32(bits & 0x7fffffu);
    var m = frac;
    var x = -149;
    if e != 0 {
        m = (1 << 23u) + frac;
        x = e - 150;
    }
    return vec2<i32>(select(m, -m, (bits & 0x80000000u) != 0u), x);
}

// One F16 / F32 element (row-major, `cols` per row) as (mantissa, exponent).
fn w_elem(r: u32, c: u32, cols: u32) -> vec2<i32> {
    let i = r * cols + c;
    if TYPE == T_F32 {
        return f32_parts(w[i]);
    }
    return f16_parts(wu16(2u * i));
}

// The scales of one 32-element sub-block. Its 32 bytes come from sub_word, four per word.
struct Scales {
    // Subtracted from every byte to give the element's quantized value.
    off: i32,
    a0: i32,
    a1: i32,
    ea: i32,
    b: i32,
    eb: i32,
}

fn block_len() -> u32 {
    if TYPE == T_Q4_K || TYPE == T_Q5_K || TYPE == T_Q6_K {
        return 256u;
    }
    return 32u;
}

fn block_bytes() -> u32 {
    switch TYPE {
        case 2u: { return 20u; }
        case 3u: { return 20u; }
        case 6u: { return 24u; }
        case 7u: { return 24u; }
        case 8u: { return 36u; }
        case 12u: { return 144u; }
        case 13u: { return 176u; }
        case 14u: { return 212u; }
        default: { return 0u; }
    }
}

// Four bits of `h` (bits 0..3) moved to bit 4 of each of four bytes: the fifth bit of Q5 values.
fn spread4(h: u32) -> u32 {
    return ((h & 1u) << 4u) | ((h & 2u) << 11u) | ((h & 4u) << 18u) | ((h & 8u) << 25u);
}

// quant::scale_min_k4: 6-bit scale and min of sub-block j from the 12 bytes at `at`.
fn scale_min_k4(at: u32, j: u32) -> vec2<i32> {
    if j < 4u {
        return vec2<i32>(i32(wbyte(at + j) & 63u), i32(wbyte(at + j + 4u) & 63u));
    }
    let sc = (wbyte(at + j + 4u) & 0xfu) | ((wbyte(at + j - 4u) >> 6u) << 4u);
    let mn = (wbyte(at + j + 4u) >> 4u) | ((wbyte(at + j) >> 6u) << 4u);
    return vec2<i32>(i32(sc), i32(mn));
}

// Byte offset of the GGUF block holding sub-block `s` (32 elements) of row `r`.
fn block_base(r: u32, s: u32, cols: u32) -> u32 {
    let bl = block_len();
    return (r * (cols / bl) + s / (bl / 32u)) * block_bytes();
}

// Sub-block `j` (of the block at `base`): its scales.
fn sub_scales(base: u32, j: u32) -> Scales {
    var o: Scales;
    o.off = 0;
    o.b = 0;
    switch TYPE {
        case 2u, 6u, 8u: {
            let d = f16_parts(wu16(base));
            o.a0 = d.x;
            o.ea = d.y;
            o.eb = d.y;
            o.off = select(select(0, 16, TYPE == T_Q5_0), 8, TYPE == T_Q4_0);
        }
        case 3u, 7u: {
            // d and m share a word: one load.
            let h = wword(base);
            let d = f16_parts(h & 0xffffu);
            let m = f16_parts(h >> 16u);
            o.a0 = d.x;
            o.ea = d.y;
            o.b = m.x;
            o.eb = m.y;
        }
        case 12u, 13u: {
            let h = wword(base);
            let d = f16_parts(h & 0xffffu);
            let dm = f16_parts(h >> 16u);
            let sm = scale_min_k4(base + 4u, j);
            o.a0 = d.x * sm.x;
            o.ea = d.y;
            o.b = -(dm.x * sm.y);
            o.eb = dm.y;
        }
        case 14u: {
            let d = f16_parts(wu16(base + 208u));
            let sc = base + 192u + 8u * (j / 4u) + 2u * (j % 4u);
            o.a0 = d.x * ((i32(wbyte(sc)) << 24u) >> 24u);
            o.a1 = d.x * ((i32(wbyte(sc + 1u)) << 24u) >> 24u);
            o.off = 32;
            o.ea = d.y;
            o.eb = d.y;
            return o;
        }
        default: {}
    }
    o.a1 = o.a0;
    return o;
}

// Word k (bytes 4k..4k+4, k < 8) of sub-block `j` of the block at `base`.
fn sub_word(base: u32, j: u32, k: u32) -> u32 {
    switch TYPE {
        case 8u: {
            return wword(base + 4u + 4u * k);
        }
        case 2u, 3u: {
            // Nibbles: low ones are elements 0..16, high ones 16..32.
            let x = wword(base + 4u + 4u * (k % 4u));
            return (x >> (4u * (k / 4u))) & 0x0f0f0f0fu;
        }
        case 6u, 7u: {
            let at = base + 4u;
            let x = wword(at + 4u + 4u * (k % 4u));
            return ((x >> (4u * (k / 4u))) & 0x0f0f0f0fu) | spread4((wword(at) >> (4u * k)) & 0xfu);
        }
        case 12u, 13u: {
            let five = TYPE == T_Q5_K;
            let qs = select(base + 16u, base + 48u, five);
            var v = (wword(qs + 32u * (j / 2u) + 4u * k) >> (4u * (j % 2u))) & 0x0f0f0f0fu;
            if five {
                v = v | (((wword(base + 16u + 4u * k) >> j) & 0x01010101u) << 4u);
            }
            return v;
        }
        case 14u: {
            let h = j / 4u;
            let rr = j % 4u;
            let lo = (wword(base + 64u * h + 32u * (rr % 2u) + 4u * k) >> (4u * (rr / 2u))) & 0x0f0f0f0fu;
            let hi = ((wword(base + 128u + 32u * h + 4u * k) >> (2u * rr)) & 0x03030303u) << 4u;
            return lo | hi;
        }
        default: {
            return 0u;
        }
    }
}

// The 8 words of sub_word(base, j, 0..8), each stored word loaded once: Q4_0 / Q4_1 / Q5_0 /
// Q5_1 hold two sub-block words per stored word (low and high nibbles), and one word of fifth
// bits for all eight.
fn sub_words(base: u32, j: u32) -> array<u32, 8> {
    var v: array<u32, 8>;
    if TYPE == T_Q4_0 || TYPE == T_Q4_1 {
        for (var k = 0u; k < 4u; k++) {
            let x = wword(base + 4u + 4u * k);
            v[k] = x & 0x0f0f0f0fu;
            v[k + 4u] = (x >> 4u) & 0x0f0f0f0fu;
        }
    } else if TYPE == T_Q5_0 || TYPE == T_Q5_1 {
        let hi = wword(base + 4u);
        for (var k = 0u; k < 4u; k++) {
            let x = wword(base + 8u + 4u * k);
            v[k] = (x & 0x0f0f0f0fu) | spread4((hi >> (4u * k)) & 0xfu);
            v[k + 4u] = ((x >> 4u) & 0x0f0f0f0fu) | spread4((hi >> (4u * k + 16u)) & 0xfu);
        }
    } else {
        for (var k = 0u; k < 8u; k++) {
            v[k] = sub_word(base, j, k);
        }
    }
    return v;
}

// Byte b (0..4) of a sub-block word as the element's quantized value (bytes sign-extended:
// only Q8_0 has bytes of 128 and above, and they are signed).
fn word_q(word: u32, b: u32, off: i32) -> i32 {
    return ((bitcast<i32>(word) << (24u - 8u * b)) >> 24u) - off;
}
