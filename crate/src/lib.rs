//! edgeproof: verifiable, bit-exact small language model inference.

pub mod error;
pub mod gguf;
pub mod quant;

pub use error::{Error, Result};
