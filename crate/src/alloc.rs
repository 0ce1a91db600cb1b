//! [`KeepLarge`]: a global allocator for native programs (the CLI's) that keeps freed blocks of
//! [`MIN`] bytes and more for the next allocation of about their size.
//!
//! A batched pass (a prefill, a verification) makes and frees its sums and outputs per
//! matmul: Gemma 3's logits alone are 134 MB of sums, then 67 MB of normalized rows and 67 MB
//! of f32 per 64 rows. glibc maps blocks that large afresh each time (above its mmap threshold,
//! or beyond a thread arena's 64 MiB heap) and unmaps them on free, and the kernel zeroes every
//! page at its first touch: about 100 000 page faults per Gemma 3 verification, a quarter of its
//! time on an AMD EPYC (Zen 5). A kept block is already mapped; one asked for zeroed is cleared
//! with `memset`. The CLI's Gemma 3 verification (two passes) took 0.41–0.47 s instead of
//! 0.50–0.59 s there, and a process's later verifications 0.37 s instead of 0.48–0.60 s
//! (docs/BENCHMARKS.md). wasm32 needs none of this: its memory only grows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::{Mutex, MutexGuard};

/// The smallest block kept: below it glibc's heaps (with the CLI's thresholds) keep blocks.
pub const MIN: usize = 4 << 20;
/// At most this many bytes kept: the oldest go back to the system to make room.
pub const KEEP: usize = 512 << 20;
/// At most this many blocks kept, and lent out larger than asked (fixed tables: the allocator
/// must not allocate).
const SLOTS: usize = 32;

/// Whether a block of this layout is one [`KeepLarge`] handles (large, page-aligned at most).
fn large(l: &Layout) -> bool {
    l.size() >= MIN && l.align() <= 4096
}

/// The blocks kept (`(address, size, align)`, oldest first) and their bytes; the kept blocks
/// lent out for smaller sizes than theirs (`(address, size)`), to be freed with their own.
struct Tables {
    kept: [(usize, usize, usize); SLOTS],
    n_kept: usize,
    bytes: usize,
    lent: [(usize, usize); SLOTS],
    n_lent: usize,
}

/// The system allocator, keeping freed large blocks for reuse (see the module's comment).
/// `#[global_allocator] static A: KeepLarge = KeepLarge::new();`
pub struct KeepLarge {
    t: Mutex<Tables>,
}

impl Default for KeepLarge {
    fn default() -> Self {
        Self::new()
    }
}

impl KeepLarge {
    pub const fn new() -> KeepLarge {
        KeepLarge {
            t: Mutex::new(Tables { kept: [(0, 0, 0); SLOTS], n_kept: 0, bytes: 0, lent: [(0, 0); SLOTS], n_lent: 0 }),
        }
    }

    /// The tables (no panic can happen while they are held, so a poisoned lock's are whole).
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.tables().bytes
    }

    /// The smallest kept block that holds `l` with at most a quarter to spare (a verification's
    /// passes differ by a few rows), taken out of the table.
    fn take(&self, l: &Layout) -> Option<*mut u8> {
        let (size, max) = (l.size(), l.size() + l.size() / 4);
        let mut t = self.tables();
        let n = t.n_kept;
        let i = (0..n)
            .filter(|&i| (size..=max).contains(&t.kept[i].1) && t.kept[i].2 == l.align())
            .min_by_key(|&i| t.kept[i].1)?;
        let (p, have, _) = t.kept[i];
        if have != size {
            if t.n_lent == SLOTS {
                return None;
            }
            let k = t.n_lent;
            t.lent[k] = (p, have);
            t.n_lent += 1;
        }
        t.kept.copy_within(i + 1..n, i);
        t.n_kept -= 1;
        t.bytes -= have;
        Some(p as *mut u8)
    }
}

// SAFETY: every block handed out holds at least its layout's size, at its alignment, and goes
// back to the system with the layout it was made with (its own size, from `lent` where that is
// not the size it was last asked for); a kept block is handed out to one caller at a time
// (taken out of the table under the lock).
unsafe impl GlobalAlloc for KeepLarge {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match large(&l).then(|| self.take(&l)).flatten() {
            Some(p) => p,
            // SAFETY: the caller's layout, as given.
            None => unsafe { System.alloc(l) },
        }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        match large(&l).then(|| self.take(&l)).flatten() {
            // SAFETY: the block holds at least `l.size()` bytes.
            Some(p) => unsafe {
                std::ptr::write_bytes(p, 0, l.size());
                p
            },
            // SAFETY: the caller's layout, as given.
            None => unsafe { System.alloc_zeroed(l) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let mut size = l.size();
        if large(&l) {
            let mut t = self.tables();
            if let Some(i) = (0..t.n_lent).find(|&i| t.lent[i].0 == p as usize) {
                size = t.lent[i].1;
                t.lent[i] = t.lent[t.n_lent - 1];
                t.n_lent -= 1;
            }
            if size <= KEEP {
                // The oldest kept blocks go back to make room: what a pass no longer asks for
                // does not hold the budget.
                while t.n_kept == SLOTS || t.bytes + size > KEEP {
                    let (q, qs, qa) = t.kept[0];
                    let n = t.n_kept;
                    t.kept.copy_within(1..n, 0);
                    t.n_kept -= 1;
                    t.bytes -= qs;
                    // SAFETY: a kept block came from `System` with its size and alignment.
                    unsafe { System.dealloc(q as *mut u8, Layout::from_size_align_unchecked(qs, qa)) };
                }
                let n = t.n_kept;
                t.kept[n] = (p as usize, size, l.align());
                t.n_kept += 1;
                t.bytes += size;
                return;
            }
        }
        // SAFETY: `p` came from `System` with this size (its own) and alignment.
        unsafe { System.dealloc(p, Layout::from_size_align_unchecked(size, l.align())) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (both arms): the caller's block and layout, as given; `new_size` is non-zero
        // and, rounded up to the alignment, does not overflow (GlobalAlloc's contract).
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if !large(&l) && !large(&new) {
            return unsafe { System.realloc(p, l, new_size) };
        }
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
            q
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_large_block_is_reused_and_a_zeroed_one_is_cleared() {
        let a = KeepLarge::new();
        // Gemma 3's logits sums in a verification's two passes: 65 rows, then 63.
        let [l65, l63] = [65, 63].map(|r| Layout::from_size_align(r * 262_144 * 8, 8).unwrap());
        unsafe {
            let p = a.alloc(l65);
            assert!(!p.is_null());
            std::ptr::write_bytes(p, 0xAB, l65.size());
            a.dealloc(p, l65);
            assert_eq!(a.kept_bytes(), l65.size());
            // A smaller size within a quarter gets the same block, cleared when asked for zeroes.
            let q = a.alloc_zeroed(l63);
            assert_eq!(q, p);
            assert_eq!(a.kept_bytes(), 0);
            assert!(std::slice::from_raw_parts(q, l63.size()).iter().all(|&b| b == 0));
            // Freed with the smaller layout, it is kept at its own size.
            a.dealloc(q, l63);
            assert_eq!(a.kept_bytes(), l65.size());
            // Grown, a block moves with its bytes, and the old one is kept.
            let r = a.alloc(l63);
            assert_eq!(r, p);
            *r = 7;
            let s = a.realloc(r, l63, 3 * l65.size());
            assert!(!s.is_null() && s != r && *s == 7);
            assert_eq!(a.kept_bytes(), l65.size());
            a.dealloc(s, Layout::from_size_align(3 * l65.size(), 8).unwrap());
            // Another alignment, or a size the kept blocks exceed by more than a quarter, does
            // not take a kept block.
            for l in [Layout::from_size_align(l63.size(), 64).unwrap(), Layout::from_size_align(MIN, 8).unwrap()] {
                let t = a.alloc(l);
                assert!(!t.is_null() && t != p && t != s);
                a.dealloc(t, l);
            }
        }
    }

    #[test]
    fn small_blocks_and_blocks_beyond_the_budget_go_back() {
        let a = KeepLarge::new();
        unsafe {
            let small = Layout::from_size_align(MIN - 1, 8).unwrap();
            let p = a.alloc(small);
            a.dealloc(p, small);
            assert_eq!(a.kept_bytes(), 0);
            let huge = Layout::from_size_align(KEEP / 2 + 1, 8).unwrap();
            let (x, y) = (a.alloc(huge), a.alloc(huge));
            assert!(!x.is_null() && !y.is_null());
            a.dealloc(x, huge);
            a.dealloc(y, huge);
            assert_eq!(a.kept_bytes(), huge.size(), "the first went back for the second");
            // The second is the one kept.
            assert_eq!(a.alloc(huge), y);
            a.dealloc(y, huge);
        }
    }
}
