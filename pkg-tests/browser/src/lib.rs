//! edgeproof's WebGPU backend in headless Chromium, whose WebGPU is Dawn with the Tint shader
//! compiler on SwiftShader (natively the tests run naga on lavapipe): every kernel, the tiny
//! models, a short SmolLM2 run and MiniLM's vectors give the CPU reference's bits. Run by
//! `scripts/test-browser.sh` (`wasm-pack test --headless --chrome --release`).
#![cfg(all(test, target_arch = "wasm32"))]

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod bench;
mod common;
mod encoder;
mod models;
mod ops;
