//! Keeping rayon's other threads at hand through a forward pass ([`Busy`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Rounds of looking for work (about 0.1–0.5 ms; no clock on wasm32) before a thread stops
/// spinning.
const IDLE_ROUNDS: u32 = 4096;

/// While it lives, rayon's other threads look for work without a pause instead of going to
/// sleep between the forward pass's parallel regions. A decode step is some 150 regions of
/// tens of microseconds, with serial work between them; a sleeping thread took 25–35 µs to
/// wake for each (a VM's vCPU, a browser's Web Worker), which cost SmolLM2's two-thread decode
/// most of its second thread. Only from inside the pool (the CLI and the browser's engine
/// thread run there); elsewhere, and on one thread, it does nothing.
///
/// A thread also gives up after [`IDLE_ROUNDS`] rounds without work: rayon may run the spinning
/// job inside a wait of a job it took from the pass (a thread that stole work before it saw
/// the broadcast), and a spinner that only stopped when the pass ends would then never let
/// that job finish.
pub(crate) struct Busy {
    stop: Arc<AtomicBool>,
}

impl Busy {
    pub(crate) fn start() -> Option<Busy> {
        let me = rayon::current_thread_index()?;
        if rayon::current_num_threads() < 2 {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        rayon::spawn_broadcast(move |ctx| {
            // This thread's copy returns at once: it runs the pass (were it to spin here, inside
            // a wait of its own, nothing would stop it).
            if ctx.index() == me {
                return;
            }
            let mut idle = 0;
            while !s.load(Ordering::Acquire) && idle < IDLE_ROUNDS {
                if matches!(rayon::yield_now(), Some(rayon::Yield::Executed)) {
                    idle = 0;
                } else {
                    idle += 1;
                    std::hint::spin_loop();
                }
            }
        });
        Some(Busy { stop })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Native only: the tests' wasm32 build has no threads to make a pool of.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Passes of nested parallel work inside a two-thread pool, each under a [`Busy`], finish
    /// (a spinner that rayon runs inside a wait gives up) and sum as on one thread.
    #[test]
    fn passes_under_busy_finish_with_the_same_sums() {
        let work = |i: u64| (0..2000u64).fold(i, |a, k| a.wrapping_mul(6364136223846793005).wrapping_add(k));
        let pass = |p: u64| -> u64 {
            (0..64u64)
                .into_par_iter()
                .map(|i| (0..8u64).into_par_iter().map(|j| work(p * 512 + i * 8 + j)).sum::<u64>())
                .sum()
        };
        let want: Vec<u64> = (0..200).map(|p| (0..64 * 8).map(|k| work(p * 512 + k)).sum()).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool of two threads");
        let got: Vec<u64> = pool.install(|| {
            (0..200)
                .map(|p| {
                    let busy = Busy::start();
                    assert!(busy.is_some(), "inside a pool of two, a pass keeps the other thread busy");
                    pass(p)
                })
                .collect()
        });
        assert_eq!(got, want);
    }
}
