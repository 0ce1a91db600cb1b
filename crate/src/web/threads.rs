//! The threaded build's rayon pool (feature `threads`): Web Workers that instantiate this
//! module on its shared memory and run rayon's worker loop (`threads.js` starts them,
//! `js/edgeproof-thread.js` is their script).
//!
//! wasm-bindgen-rayon does the same, but its workers import the glue as a bundler's package
//! root (`'../../..'`, which a browser cannot load and which here is the JS API, not the glue),
//! and its pool leaves out the calling thread: every parallel operation would then be handed to
//! a sleeping worker and waited for, about 200 hand-offs per token. Here the engine's thread is
//! the pool's first worker (`use_current_thread`), as the CLI runs inside its pool.

use super::{js_error, JsResult};
use crate::error::Error;
use rayon::ThreadBuilder;
use std::sync::{mpsc, Mutex, OnceLock, PoisonError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(module = "/src/web/threads.js")]
extern "C" {
    #[wasm_bindgen(js_name = spawnThread)]
    fn spawn_thread(module: JsValue, memory: JsValue) -> js_sys::Promise;
}

type Channel = (Mutex<mpsc::Sender<ThreadBuilder>>, Mutex<mpsc::Receiver<ThreadBuilder>>);

fn channel() -> &'static Channel {
    static CHANNEL: OnceLock<Channel> = OnceLock::new();
    CHANNEL.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        (Mutex::new(tx), Mutex::new(rx))
    })
}

/// Make rayon's global pool of `n` threads: this one and `n − 1` workers, started here, that
/// wait in [`run_thread`]. Once per module; from a worker (parallel work blocks this thread).
pub async fn start(n: usize) -> JsResult<usize> {
    let started: Vec<JsFuture> =
        (1..n).map(|_| JsFuture::from(spawn_thread(wasm_bindgen::module(), wasm_bindgen::memory()))).collect();
    for s in started {
        s.await?;
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .use_current_thread()
        .spawn_handler(|t| {
            let tx = channel().0.lock().unwrap_or_else(PoisonError::into_inner);
            tx.send(t).map_err(|_| std::io::Error::other("no thread to run a rayon worker"))
        })
        .build_global()
        .map_err(|e| js_error(Error::InvalidArgument(format!("thread pool of {n}: {e}"))))?;
    Ok(rayon::current_num_threads())
}

/// A worker's thread: wait for its rayon worker and run it (never returns while the pool lives).
#[wasm_bindgen(js_name = runThread)]
pub fn run_thread() {
    let t = channel().1.lock().unwrap_or_else(PoisonError::into_inner).recv();
    if let Ok(t) = t {
        t.run();
    }
}
