// 64-bit integers as two 32-bit words: vec2<u32>(low, high), two's complement.
// WGSL has no i64; numerics v1 needs only addition, shifts, comparisons, 32x32->64
// products and a few divisions by 32-bit values (docs/NUMERICS.md), all defined here.
// Prepended to every kernel that needs them.

fn i64_from(x: i32) -> vec2<u32> {
    return vec2<u32>(bitcast<u32>(x), select(0u, 0xffffffffu, x < 0));
}

fn i64_add(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn i64_neg(a: vec2<u32>) -> vec2<u32> {
    let lo = ~a.x + 1u;
    return vec2<u32>(lo, ~a.y + select(0u, 1u, lo == 0u));
}

fn i64_sub(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return i64_add(a, i64_neg(b));
}

fn i64_is_neg(a: vec2<u32>) -> bool {
    return (a.y >> 31u) != 0u;
}

fn i64_is_zero(a: vec2<u32>) -> bool {
    return a.x == 0u && a.y == 0u;
}

// |a| as an unsigned 64-bit value (exact for every |a| < 2^63).
fn i64_abs(a: vec2<u32>) -> vec2<u32> {
    return select(a, i64_neg(a), i64_is_neg(a));
}

fn u64_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y < b.y || (a.y == b.y && a.x < b.x);
}

fn u64_max(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, u64_lt(a, b));
}

fn i64_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
    let sa = bitcast<i32>(a.y);
    let sb = bitcast<i32>(b.y);
    return sa < sb || (sa == sb && a.x < b.x);
}

// Number of significant bits (0 for 0).
fn u64_bitlen(a: vec2<u32>) -> u32 {
    if a.y != 0u {
        return 64u - countLeadingZeros(a.y);
    }
    return 32u - countLeadingZeros(a.x);
}

// a * b for unsigned 32-bit a, b, exact in 64 bits (16-bit halves).
fn u64_mul(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let lo = a0 * b0;
    let mid1 = a0 * b1;
    let mid2 = a1 * b0;
    let hi = a1 * b1;
    let mid = mid1 + mid2;
    let mid_carry = select(0u, 0x10000u, mid < mid1);
    let lo2 = lo + (mid << 16u);
    let c = select(0u, 1u, lo2 < lo);
    return vec2<u32>(lo2, hi + (mid >> 16u) + mid_carry + c);
}

// |x| as u32 (exact also for i32 min).
fn abs_u32(x: i32) -> u32 {
    return select(bitcast<u32>(x), bitcast<u32>(-x), x < 0);
}

// a * b for signed 32-bit a, b, exact in 64 bits.
fn i64_mul(a: i32, b: i32) -> vec2<u32> {
    let p = u64_mul(abs_u32(a), abs_u32(b));
    return select(p, i64_neg(p), (a < 0) != (b < 0));
}

// a * b for a 64-bit a and a 32-bit b whose product fits in 64 bits.
fn i64_mul_i32(a: vec2<u32>, b: i32) -> vec2<u32> {
    let ua = i64_abs(a);
    let ub = abs_u32(b);
    let lo = u64_mul(ua.x, ub);
    let p = vec2<u32>(lo.x, lo.y + ua.y * ub);
    return select(p, i64_neg(p), i64_is_neg(a) != (b < 0));
}

// a << s for s in 0..=63 (bits shifted out are lost; callers bound |a|).
fn i64_shl(a: vec2<u32>, s: u32) -> vec2<u32> {
    if s == 0u {
        return a;
    }
    if s >= 32u {
        return vec2<u32>(0u, a.x << (s - 32u));
    }
    return vec2<u32>(a.x << s, (a.y << s) | (a.x >> (32u - s)));
}

// Arithmetic right shift (floor) for s in 0..=63.
fn i64_sar(a: vec2<u32>, s: u32) -> vec2<u32> {
    if s == 0u {
        return a;
    }
    let hi = bitcast<i32>(a.y);
    if s >= 32u {
        return vec2<u32>(bitcast<u32>(hi >> (s - 32u)), bitcast<u32>(hi >> 31u));
    }
    return vec2<u32>((a.x >> s) | (a.y << (32u - s)), bitcast<u32>(hi >> s));
}

// The low s bits of a (s in 1..=63), as an unsigned value.
fn u64_low_bits(a: vec2<u32>, s: u32) -> vec2<u32> {
    if s >= 32u {
        return vec2<u32>(a.x, a.y & ((1u << (s - 32u)) - 1u));
    }
    return vec2<u32>(a.x & ((1u << s) - 1u), 0u);
}

// numerics::rshr: a / 2^s rounded to nearest, ties to even (s = 0: a; s >= 64: 0).
fn i64_rshr(a: vec2<u32>, s: u32) -> vec2<u32> {
    if s == 0u {
        return a;
    }
    if s >= 64u {
        return vec2<u32>(0u, 0u);
    }
    let q = i64_sar(a, s);
    let r = u64_low_bits(a, s);
    let half = i64_shl(vec2<u32>(1u, 0u), s - 1u);
    if u64_lt(half, r) || (r.x == half.x && r.y == half.y && (q.x & 1u) == 1u) {
        return i64_add(q, vec2<u32>(1u, 0u));
    }
    return q;
}

// numerics::shl: exact left shift for s >= 0, rshr for s < 0.
fn i64_shl_s(a: vec2<u32>, s: i32) -> vec2<u32> {
    if s >= 0 {
        return i64_shl(a, u32(s));
    }
    return i64_rshr(a, u32(-s));
}

// The low word as i32: exact when the value fits in 32 bits.
fn i64_to_i32(a: vec2<u32>) -> i32 {
    return bitcast<i32>(a.x);
}

// floor(n / d) for unsigned 64-bit n and 32-bit d > 0 (long division, bit by bit on the low word).
fn u64_div_u32(n: vec2<u32>, d: u32) -> vec2<u32> {
    let qh = n.y / d;
    var r = n.y % d;
    var ql = 0u;
    for (var i = 31i; i >= 0; i--) {
        // r < d < 2^32; 2r + bit may need 33 bits: the carry says it exceeds d.
        let carry = (r >> 31u) != 0u;
        r = (r << 1u) | ((n.x >> u32(i)) & 1u);
        if carry || r >= d {
            r = r - d;
            ql = ql | (1u << u32(i));
        }
    }
    return vec2<u32>(ql, qh);
}
