//! edgeproof: verifiable, bit-exact small language model inference.

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
