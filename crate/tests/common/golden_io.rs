//! Model files for the golden tests, which run natively and in wasm32 under Node
//! (`scripts/test-wasm.sh`, which fetches the models and names them in the environment).

#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)] // Not every golden test uses the language models.
pub fn model_bytes(name: &str) -> Vec<u8> {
    let p = super::common::model_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A file of the MiniLM checkpoint's directory.
#[cfg(not(target_arch = "wasm32"))]
#[allow(dead_code)] // Not every golden test uses MiniLM.
pub fn minilm_file(file: &str) -> Vec<u8> {
    let p = super::common::minilm_dir().join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[cfg(not(target_arch = "wasm32"))]
pub fn bless() -> bool {
    std::env::var_os("EDGEPROOF_BLESS").is_some()
}

#[cfg(target_arch = "wasm32")]
mod node {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen(module = "fs")]
    extern "C" {
        #[wasm_bindgen(js_name = readFileSync, catch)]
        fn read_file_sync(path: &str) -> Result<js_sys::Uint8Array, JsValue>;
    }

    pub fn env(key: &str) -> Option<String> {
        let process = js_sys::Reflect::get(&js_sys::global(), &"process".into()).ok()?;
        let env = js_sys::Reflect::get(&process, &"env".into()).ok()?;
        js_sys::Reflect::get(&env, &key.into()).ok()?.as_string()
    }

    pub fn read(path: &str, fetch: &str) -> Vec<u8> {
        match read_file_sync(path) {
            Ok(a) => a.to_vec(),
            Err(e) => panic!("{path}: {e:?} (scripts/fetch-models.sh {fetch})"),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn env_path(var: &str) -> String {
    node::env(var).unwrap_or_else(|| panic!("{var} is not set: run scripts/test-wasm.sh (it fetches the models)"))
}

#[cfg(target_arch = "wasm32")]
#[allow(dead_code)]
pub fn model_bytes(name: &str) -> Vec<u8> {
    node::read(&env_path(&format!("EDGEPROOF_{}", name.to_uppercase())), name)
}

#[cfg(target_arch = "wasm32")]
#[allow(dead_code)]
pub fn minilm_file(file: &str) -> Vec<u8> {
    node::read(&format!("{}/{file}", env_path("EDGEPROOF_MINILM")), "minilm")
}

#[cfg(target_arch = "wasm32")]
pub fn bless() -> bool {
    false
}
