//! 128-bit lane operations ([`I`], [`F`] and helpers over them) for the kernels written once over
//! them: SSE2 on x86_64 (`sse2`), simd128 on wasm32 (`simd128`); the same bits on both.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub use simd128::*;
#[cfg(target_arch = "x86_64")]
pub use sse2::*;

/// 128-bit lane operations for the kernels in `dots`, `grid4` and `dots4_v128`, which are
/// written once over them: SSE2 here on x86_64 (part of the architecture), simd128 on wasm32
/// (the build enables it, `.cargo/config.toml`). Each helper is the same lane operation on
/// both: integer lanes wrap alike, and the f64 ones are single IEEE operations, correctly
/// rounded, with no fused multiply-add on either architecture; so both give the same bits.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Integer lanes (i8, i16, i32 or i64, as the operation reads them).
    pub type I = __m128i;
    /// Two f64 lanes.
    pub type F = __m128d;

    /// The 16 bytes at element `at` of `a` (unaligned).
    #[inline(always)]
    pub fn load<T: Copy, const N: usize>(a: &[T; N], at: usize) -> I {
        let s = &a[at..at + 16 / size_of::<T>()];
        // SAFETY: `s` holds 16 bytes (the slice above is bounds-checked).
        unsafe { _mm_loadu_si128(s.as_ptr() as *const I) }
    }

    /// Elements `at`, `at + 1` of `a`.
    #[inline(always)]
    pub fn load_f<const N: usize>(a: &[f64; N], at: usize) -> F {
        let s = &a[at..at + 2];
        // SAFETY: `s` holds two f64.
        unsafe { _mm_loadu_pd(s.as_ptr()) }
    }

    #[inline(always)]
    pub fn zero() -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setzero_si128() }
    }

    #[inline(always)]
    pub fn splat8(v: i8) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_epi8(v) }
    }

    #[inline(always)]
    pub fn splat16(v: i16) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_epi16(v) }
    }

    #[inline(always)]
    pub fn and(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(a, b) }
    }

    #[inline(always)]
    pub fn or(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_or_si128(a, b) }
    }

    #[inline(always)]
    pub fn sub16(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_epi16(a, b) }
    }

    /// Low 16 bits of the i16 products.
    #[inline(always)]
    pub fn mul16(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_mullo_epi16(a, b) }
    }

    #[inline(always)]
    pub fn shl16<const N: i32>(a: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_slli_epi16::<N>(a) }
    }

    /// u16 lanes shifted right by `n` (< 16).
    #[inline(always)]
    pub fn srl16(a: I, n: u32) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_srl_epi16(a, _mm_cvtsi32_si128(n as i32)) }
    }

    #[inline(always)]
    pub fn add32(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_epi32(a, b) }
    }

    #[inline(always)]
    pub fn sub32(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_epi32(a, b) }
    }

    #[inline(always)]
    pub fn shl32<const N: i32>(a: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_slli_epi32::<N>(a) }
    }

    /// i32 lane k: a[2k]·b[2k] + a[2k+1]·b[2k+1] over i16 lanes (`pmaddwd`).
    #[inline(always)]
    pub fn madd(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_madd_epi16(a, b) }
    }

    #[inline(always)]
    pub fn add64(a: I, b: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_epi64(a, b) }
    }

    /// The i8 lanes sign-extended to i16: the low eight, the high eight (each byte duplicated,
    /// then shifted right arithmetically).
    #[inline(always)]
    pub fn widen_i8(v: I) -> (I, I) {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { (_mm_srai_epi16::<8>(_mm_unpacklo_epi8(v, v)), _mm_srai_epi16::<8>(_mm_unpackhi_epi8(v, v))) }
    }

    /// The u8 lanes zero-extended to i16: the low eight, the high eight.
    #[inline(always)]
    pub fn widen_u8(v: I) -> (I, I) {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let z = _mm_setzero_si128();
            (_mm_unpacklo_epi8(v, z), _mm_unpackhi_epi8(v, z))
        }
    }

    /// Each byte's low nibble.
    #[inline(always)]
    pub fn lo_nibbles(v: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(v, _mm_set1_epi8(0x0F)) }
    }

    /// Each byte's high nibble.
    #[inline(always)]
    pub fn hi_nibbles(v: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_and_si128(_mm_srli_epi16::<4>(v), _mm_set1_epi8(0x0F)) }
    }

    /// Byte lane j of the pair (0..32) is `v` where bit j of `bits` is set, else 0: each byte of
    /// `bits` spread over eight lanes, each lane testing its own bit.
    #[inline(always)]
    pub fn bit_bytes(bits: u32, v: i8) -> (I, I) {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let b = _mm_cvtsi32_si128(bits as i32);
            let b = _mm_unpacklo_epi8(b, b);
            let b = _mm_unpacklo_epi16(b, b);
            let m = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            let sel = |w: I| _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(w, m), m), _mm_set1_epi8(v));
            (sel(_mm_unpacklo_epi32(b, b)), sel(_mm_unpackhi_epi32(b, b)))
        }
    }

    /// u16 lanes 0..4 (the rest 0).
    #[inline(always)]
    pub fn u16s(a: [u16; 4]) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setr_epi16(a[0] as i16, a[1] as i16, a[2] as i16, a[3] as i16, 0, 0, 0, 0) }
    }

    #[inline(always)]
    pub fn u32s(a: [u32; 4]) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setr_epi32(a[0] as i32, a[1] as i32, a[2] as i32, a[3] as i32) }
    }

    /// The even u16 lanes, then the odd ones.
    #[inline(always)]
    pub fn evens_odds16(v: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let v = _mm_shufflehi_epi16::<0b11_01_10_00>(_mm_shufflelo_epi16::<0b11_01_10_00>(v));
            _mm_shuffle_epi32::<0b11_01_10_00>(v)
        }
    }

    /// The f16 in the u16 lanes as f64, exactly, lanes (0, 1), (2, 3), (4, 5), (6, 7): each
    /// f16's magnitude bits in f64's exponent and fraction fields read 2^−1008 times its value
    /// (subnormals included), so one multiply by 2^1008 rescales; the sign goes to bit 63.
    #[inline(always)]
    pub fn f16_f64x8(h: I) -> [F; 4] {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let z = _mm_setzero_si128();
            let bits = |v: I| {
                let mag = _mm_slli_epi32::<10>(_mm_and_si128(v, _mm_set1_epi32(0x7FFF)));
                _mm_or_si128(mag, _mm_slli_epi32::<16>(_mm_and_si128(v, _mm_set1_epi32(0x8000))))
            };
            let (lo, hi) = (bits(_mm_unpacklo_epi16(h, z)), bits(_mm_unpackhi_epi16(h, z)));
            let s = _mm_set1_pd(f64::from_bits((1008 + 1023) << 52));
            let f = |v: I| _mm_mul_pd(_mm_castsi128_pd(v), s);
            [
                f(_mm_unpacklo_epi32(z, lo)),
                f(_mm_unpackhi_epi32(z, lo)),
                f(_mm_unpacklo_epi32(z, hi)),
                f(_mm_unpackhi_epi32(z, hi)),
            ]
        }
    }

    /// The sum of the i32 lanes.
    #[inline(always)]
    pub fn hsum(v: I) -> i32 {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let s = _mm_add_epi32(v, _mm_shuffle_epi32::<0b01_00_11_10>(v));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
        }
    }

    /// Lane r of the result is the sum of the i32 lanes of `d[r]`.
    #[inline(always)]
    pub fn transpose_sum(d0: I, d1: I, d2: I, d3: I) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe {
            let s01 = _mm_add_epi32(_mm_unpacklo_epi32(d0, d1), _mm_unpackhi_epi32(d0, d1));
            let s23 = _mm_add_epi32(_mm_unpacklo_epi32(d2, d3), _mm_unpackhi_epi32(d2, d3));
            _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23))
        }
    }

    /// The i64 lanes.
    #[inline(always)]
    pub fn i64s(v: I) -> [i64; 2] {
        let mut l = [0i64; 2];
        // SAFETY: `l` holds 16 bytes.
        unsafe { _mm_storeu_si128(l.as_mut_ptr() as *mut I, v) };
        l
    }

    #[inline(always)]
    pub fn zero_f() -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_setzero_pd() }
    }

    #[inline(always)]
    pub fn splat_f(v: f64) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set1_pd(v) }
    }

    /// Lanes (`lo`, `hi`).
    #[inline(always)]
    pub fn pair_f(lo: f64, hi: f64) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_set_pd(hi, lo) }
    }

    /// The f64 lanes' bits as i64 lanes.
    #[inline(always)]
    pub fn to_bits(v: F) -> I {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_castpd_si128(v) }
    }

    /// i32 lanes 0 and 1 as f64 (exact).
    #[inline(always)]
    pub fn cvt_lo(v: I) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_cvtepi32_pd(v) }
    }

    /// i32 lanes 2 and 3 as f64 (exact).
    #[inline(always)]
    pub fn cvt_hi(v: I) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_cvtepi32_pd(_mm_shuffle_epi32::<0b11_10_11_10>(v)) }
    }

    #[inline(always)]
    pub fn mul_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_mul_pd(a, b) }
    }

    #[inline(always)]
    pub fn add_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_add_pd(a, b) }
    }

    #[inline(always)]
    pub fn sub_f(a: F, b: F) -> F {
        // SAFETY: SSE2 is part of x86_64.
        unsafe { _mm_sub_pd(a, b) }
    }
}

/// [`v128`] with wasm32's simd128: the same lane operations (`i32x4_dot_i16x8` is `pmaddwd`,
/// the f64x2 operations are IEEE's, unfused).
///
/// [`v128`]: crate::backend::exact::v128
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128 {
    use std::arch::wasm32::*;

    pub type I = v128;
    pub type F = v128;

    #[inline(always)]
    pub fn load<T: Copy, const N: usize>(a: &[T; N], at: usize) -> I {
        let s = &a[at..at + 16 / size_of::<T>()];
        // SAFETY: `s` holds 16 bytes; v128_load has no alignment requirement.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn load_f<const N: usize>(a: &[f64; N], at: usize) -> F {
        let s = &a[at..at + 2];
        // SAFETY: `s` holds 16 bytes; v128_load has no alignment requirement.
        unsafe { v128_load(s.as_ptr() as *const v128) }
    }

    #[inline(always)]
    pub fn zero() -> I {
        i64x2_splat(0)
    }

    #[inline(always)]
    pub fn splat8(v: i8) -> I {
        i8x16_splat(v)
    }

    #[inline(always)]
    pub fn splat16(v: i16) -> I {
        i16x8_splat(v)
    }

    #[inline(always)]
    pub fn and(a: I, b: I) -> I {
        v128_and(a, b)
    }

    #[inline(always)]
    pub fn or(a: I, b: I) -> I {
        v128_or(a, b)
    }

    #[inline(always)]
    pub fn sub16(a: I, b: I) -> I {
        i16x8_sub(a, b)
    }

    #[inline(always)]
    pub fn mul16(a: I, b: I) -> I {
        i16x8_mul(a, b)
    }

    #[inline(always)]
    pub fn shl16<const N: i32>(a: I) -> I {
        i16x8_shl(a, N as u32)
    }

    #[inline(always)]
    pub fn srl16(a: I, n: u32) -> I {
        u16x8_shr(a, n)
    }

    #[inline(always)]
    pub fn add32(a: I, b: I) -> I {
        i32x4_add(a, b)
    }

    #[inline(always)]
    pub fn sub32(a: I, b: I) -> I {
        i32x4_sub(a, b)
    }

    #[inline(always)]
    pub fn shl32<const N: i32>(a: I) -> I {
        i32x4_shl(a, N as u32)
    }

    #[inline(always)]
    pub fn madd(a: I, b: I) -> I {
        i32x4_dot_i16x8(a, b)
    }

    #[inline(always)]
    pub fn add64(a: I, b: I) -> I {
        i64x2_add(a, b)
    }

    #[inline(always)]
    pub fn widen_i8(v: I) -> (I, I) {
        (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v))
    }

    #[inline(always)]
    pub fn widen_u8(v: I) -> (I, I) {
        (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v))
    }

    #[inline(always)]
    pub fn lo_nibbles(v: I) -> I {
        v128_and(v, u8x16_splat(0x0F))
    }

    /// u8 lanes shifted right by 4: no mask needed.
    #[inline(always)]
    pub fn hi_nibbles(v: I) -> I {
        u8x16_shr(v, 4)
    }

    #[inline(always)]
    pub fn bit_bytes(bits: u32, v: i8) -> (I, I) {
        let s = u32x4_splat(bits);
        let m = u64x2_splat(0x8040_2010_0804_0201);
        let sel = |w: I| v128_and(i8x16_eq(v128_and(w, m), m), i8x16_splat(v));
        (
            sel(i8x16_shuffle::<0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1>(s, s)),
            sel(i8x16_shuffle::<2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3>(s, s)),
        )
    }

    #[inline(always)]
    pub fn u16s(a: [u16; 4]) -> I {
        u16x8(a[0], a[1], a[2], a[3], 0, 0, 0, 0)
    }

    #[inline(always)]
    pub fn u32s(a: [u32; 4]) -> I {
        u32x4(a[0], a[1], a[2], a[3])
    }

    #[inline(always)]
    pub fn evens_odds16(v: I) -> I {
        i16x8_shuffle::<0, 2, 4, 6, 1, 3, 5, 7>(v, v)
    }

    #[inline(always)]
    pub fn f16_f64x8(h: I) -> [F; 4] {
        let z = u32x4_splat(0);
        let bits = |v: I| {
            let mag = i32x4_shl(v128_and(v, u32x4_splat(0x7FFF)), 10);
            v128_or(mag, i32x4_shl(v128_and(v, u32x4_splat(0x8000)), 16))
        };
        let (lo, hi) = (bits(u32x4_extend_low_u16x8(h)), bits(u32x4_extend_high_u16x8(h)));
        let s = f64x2_splat(f64::from_bits((1008 + 1023) << 52));
        [
            f64x2_mul(i32x4_shuffle::<0, 4, 1, 5>(z, lo), s),
            f64x2_mul(i32x4_shuffle::<2, 6, 3, 7>(z, lo), s),
            f64x2_mul(i32x4_shuffle::<0, 4, 1, 5>(z, hi), s),
            f64x2_mul(i32x4_shuffle::<2, 6, 3, 7>(z, hi), s),
        ]
    }

    #[inline(always)]
    pub fn hsum(v: I) -> i32 {
        let s = i32x4_add(v, i32x4_shuffle::<2, 3, 0, 1>(v, v));
        i32x4_extract_lane::<0>(i32x4_add(s, i32x4_shuffle::<1, 0, 3, 2>(s, s)))
    }

    #[inline(always)]
    pub fn transpose_sum(d0: I, d1: I, d2: I, d3: I) -> I {
        let s01 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d0, d1), i32x4_shuffle::<2, 6, 3, 7>(d0, d1));
        let s23 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(d2, d3), i32x4_shuffle::<2, 6, 3, 7>(d2, d3));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(s01, s23), i32x4_shuffle::<2, 3, 6, 7>(s01, s23))
    }

    #[inline(always)]
    pub fn i64s(v: I) -> [i64; 2] {
        [i64x2_extract_lane::<0>(v), i64x2_extract_lane::<1>(v)]
    }

    #[inline(always)]
    pub fn zero_f() -> F {
        f64x2_splat(0.0)
    }

    #[inline(always)]
    pub fn splat_f(v: f64) -> F {
        f64x2_splat(v)
    }

    #[inline(always)]
    pub fn pair_f(lo: f64, hi: f64) -> F {
        f64x2(lo, hi)
    }

    #[inline(always)]
    pub fn to_bits(v: F) -> I {
        v
    }

    #[inline(always)]
    pub fn cvt_lo(v: I) -> F {
        f64x2_convert_low_i32x4(v)
    }

    #[inline(always)]
    pub fn cvt_hi(v: I) -> F {
        f64x2_convert_low_i32x4(i32x4_shuffle::<2, 3, 2, 3>(v, v))
    }

    #[inline(always)]
    pub fn mul_f(a: F, b: F) -> F {
        f64x2_mul(a, b)
    }

    #[inline(always)]
    pub fn add_f(a: F, b: F) -> F {
        f64x2_add(a, b)
    }

    #[inline(always)]
    pub fn sub_f(a: F, b: F) -> F {
        f64x2_sub(a, b)
    }
}
