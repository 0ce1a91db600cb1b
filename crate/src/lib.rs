//! edgeproof: verifiable, bit-exact small language model inference.

/// `body(args)`, through a copy compiled for AVX2 where the CPU has it, so that the plain loops
/// of an `#[inline(always)]` body vectorize wider; then returns from the calling function with
/// its result. A macro, because a closure handed to a generic wrapper is compiled once, outside
/// the AVX2 copy (measured: it stayed scalar).
macro_rules! with_avx2 {
    ($body:ident $(<$lt:lifetime>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            fn wide $(<$lt>)? ($($arg: $ty),*) $(-> $ret)? {
                $body($($arg),*)
            }
            // SAFETY: AVX2 is present.
            return unsafe { wide($($arg),*) };
        }
        $body($($arg),*)
    }};
}

#[cfg(not(target_arch = "wasm32"))]
pub mod alloc;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod quant;
pub mod tokenizer;

pub use error::{Error, Result};
pub mod backend;
pub mod embed;
pub mod engine;
pub mod model;
pub mod numerics;
pub mod ppl;
pub mod receipt;
pub mod sampling;
pub mod tiny;
#[cfg(target_arch = "wasm32")]
pub mod web;
