//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// The path of a real model file: `smollm2` or `gemma3`. `EDGEPROOF_SMOLLM2` /
/// `EDGEPROOF_GEMMA3` name the file; otherwise it is looked up in
/// `$EDGEPROOF_CACHE` (default `~/.cache/edgeproof`), where
/// `scripts/fetch-models.sh` puts it. A missing file fails the test.
#[allow(dead_code)] // Not every test crate that includes this module uses the language models.
pub fn model_path(name: &str) -> PathBuf {
    let (env, file) = match name {
        "smollm2" => ("EDGEPROOF_SMOLLM2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        "gemma3" => ("EDGEPROOF_GEMMA3", "gemma-3-270m-q4_k_m.gguf"),
        _ => panic!("unknown model '{name}' (smollm2, gemma3)"),
    };
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| cache_dir().join(file));
    assert!(path.is_file(), "{} is missing: run scripts/fetch-models.sh {name} (or set {env})", path.display());
    path
}

/// The directory of all-MiniLM-L6-v2 with the files `scripts/fetch-models.sh
/// minilm` puts there: `EDGEPROOF_MINILM`, otherwise `all-MiniLM-L6-v2` in
/// `$EDGEPROOF_CACHE` (default `~/.cache/edgeproof`). A missing file fails the test.
#[allow(dead_code)] // Not every test crate that includes this module uses MiniLM.
pub fn minilm_dir() -> PathBuf {
    let dir =
        std::env::var_os("EDGEPROOF_MINILM").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("all-MiniLM-L6-v2"));
    for file in ["tokenizer.json", "vocab.txt", "config.json", "model.safetensors"] {
        assert!(
            dir.join(file).is_file(),
            "{} has no {file}: run scripts/fetch-models.sh minilm (or set EDGEPROOF_MINILM)",
            dir.display()
        );
    }
    dir
}

/// `$EDGEPROOF_CACHE`, default `~/.cache/edgeproof`: where `scripts/fetch-models.sh` puts models.
fn cache_dir() -> PathBuf {
    std::env::var_os("EDGEPROOF_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache/edgeproof"))
}
