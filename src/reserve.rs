//! The library's allocator: the system allocator, and a small reserve for
//! when it fails.
//!
//! # Why
//!
//! Plain I/O never allocates, but the PI emulation does (records, copies of
//! iovec arrays, tuples: a few small blocks per operation), and Rust ends
//! the process when an allocation fails.  Out of memory (an `RLIMIT_AS`
//! reached, say), a PI `io_submit` or the reap of a PI completion aborted
//! the program (an independent tester's `t9_limits.c`), where the kernel
//! answers `-EAGAIN` for a request it cannot allocate and never loses a
//! completion.  With the reserve:
//!
//! * a PI submission while the reserve is in use gets `-EAGAIN` (for its
//!   first iocb; the count accepted before it otherwise), as from the
//!   kernel ([`memory_short`], asked by `pi::submit`);
//! * the PI iocbs already in flight are still completed and translated:
//!   their reaps' blocks come from the reserve.
//!
//! # Shape
//!
//! [`SLOTS`] blocks of [`SLOT`] bytes in a static, page-aligned array (in
//! BSS: address space from load time, no memory until used), one bit each
//! in [`IN_USE`].  Used only when the system allocator returns NULL, for
//! blocks of at most [`SLOT`] bytes and alignment; a larger block still
//! fails (the process aborts, as before).  Freeing a block checks whether
//! it lies in the reserve (two compares) before handing it to the system
//! allocator: the only cost on the normal path.
//!
//! # Ordering
//!
//! A block is claimed by a compare-and-swap that sets its bit (`Acquire`:
//! the previous owner's writes to it, released when it cleared the bit,
//! happen before ours) and given back by clearing it (`Release`).  The
//! bits are the only shared state.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::System;

/// Bytes per reserve block (and the largest alignment served).
pub const SLOT: usize = 4096;
/// Blocks in the reserve.
pub const SLOTS: usize = 256;
const WORDS: usize = SLOTS / 64;

#[repr(C, align(4096))]
struct Blocks(UnsafeCell<[u8; SLOT * SLOTS]>);
// SAFETY: the bytes of a block are only touched by the owner of its bit in
// `IN_USE` (see the module documentation).
unsafe impl Sync for Blocks {}

static BLOCKS: Blocks = Blocks(UnsafeCell::new([0; SLOT * SLOTS]));
/// Bit `i` set: block `i` is in use.
static IN_USE: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

/// The reserve: blocks of `SLOT` bytes from `base`, one bit each in `bits`
/// (the process's [`RESERVE`]; tests make their own).
struct Pool {
    /// Address of the first block; 0 for the process's [`BLOCKS`] (a
    /// static's address is not a constant a static can hold as an integer).
    base: usize,
    bits: &'static [AtomicU64],
}

static RESERVE: Pool = Pool {
    base: 0,
    bits: &IN_USE,
};

impl Pool {
    fn base(&self) -> usize {
        if self.base == 0 {
            BLOCKS.0.get() as usize
        } else {
            self.base
        }
    }

    /// The block holding `p`, if it is one of ours.
    fn block_of(&self, p: *mut u8) -> Option<usize> {
        let off = (p as usize).wrapping_sub(self.base());
        (off < SLOT * 64 * self.bits.len()).then_some(off / SLOT)
    }

    /// A free block for `layout`, or NULL.
    fn take(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SLOT || layout.align() > SLOT {
            return core::ptr::null_mut();
        }
        for (w, word) in self.bits.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros() as usize;
                match word.compare_exchange_weak(
                    cur,
                    cur | 1 << bit,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return (self.base() + (w * 64 + bit) * SLOT) as *mut u8,
                    Err(now) => cur = now,
                }
            }
        }
        core::ptr::null_mut()
    }

    /// Give back block `i`.
    fn give_back(&self, i: usize) {
        self.bits[i / 64].fetch_and(!(1u64 << (i % 64)), Ordering::Release);
    }

    /// Blocks in use now.
    fn in_use(&self) -> usize {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

/// Reserve blocks in use now.
pub fn in_use() -> usize {
    RESERVE.in_use()
}

/// Whether the system allocator has failed lately: some of the reserve is
/// in use.  A new PI submission is then refused with `-EAGAIN`, which
/// keeps the rest for the completions of those in flight.
#[inline]
pub fn memory_short() -> bool {
    IN_USE.iter().any(|w| w.load(Ordering::Relaxed) != 0)
}

/// The allocator of the library's Rust code (see the module documentation).
pub struct WithReserve;

impl WithReserve {
    fn pool(&self) -> &'static Pool {
        &RESERVE
    }
}

// SAFETY: every block handed out is either the system allocator's (for the
// layout asked) or a whole reserve block of `SLOT` bytes aligned to `SLOT`
// (only for layouts that fit it), owned by the caller until it is given
// back; `dealloc` and `realloc` route each pointer to where it came from.
unsafe impl GlobalAlloc for WithReserve {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (non-zero size).
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            self.pool().take(layout)
        } else {
            p
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            return p;
        }
        let p = self.pool().take(layout);
        if !p.is_null() {
            // SAFETY: a reserve block of at least `layout.size()` bytes,
            // ours now.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.pool().block_of(ptr) {
            Some(i) => self.pool().give_back(i),
            // SAFETY: not a reserve block, so the system allocator's, for
            // this layout (forwarded contract).
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.pool().block_of(ptr).is_none() {
            // SAFETY: the system allocator's block (forwarded contract).
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                return p;
            }
        } else if new_size <= SLOT {
            // The whole block is ours: it holds the new size as it is.
            return ptr;
        }
        // Move to a new block (the reserve's, or the system's for a
        // reserve block that must grow past `SLOT`).
        // SAFETY: the caller guarantees `new_size` with this alignment is
        // a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: non-zero size (`realloc`'s contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least the smaller size long and
            // distinct (the old one is still ours).
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: the old block, given back once.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of 64 blocks of its own (the process's reserve is left
    /// alone: a block of it in use would refuse other tests' PI I/O).
    fn test_pool() -> Pool {
        let layout = Layout::from_size_align(64 * SLOT, SLOT).unwrap();
        // SAFETY: non-zero size; leaked on purpose (`bits` is 'static too).
        let base = unsafe { System.alloc(layout) } as usize;
        assert_ne!(base, 0);
        let bits: &'static [AtomicU64] = Box::leak(Box::new([AtomicU64::new(0)]));
        Pool { base, bits }
    }

    #[test]
    fn blocks_are_aligned_distinct_and_given_back() {
        let pool = test_pool();
        let layout = Layout::from_size_align(100, 64).unwrap();
        let a = pool.take(layout);
        let b = pool.take(layout);
        assert!(!a.is_null() && !b.is_null() && a != b);
        assert_eq!(a as usize % SLOT, 0);
        assert_eq!(
            pool.block_of(a).map(|i| pool.base() + i * SLOT),
            Some(a as usize)
        );
        assert_eq!(pool.in_use(), 2);
        pool.give_back(pool.block_of(a).unwrap());
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.take(layout), a, "the freed block is taken again");
        assert!(pool
            .take(Layout::from_size_align(SLOT + 1, 8).unwrap())
            .is_null());
        assert!(pool.block_of(core::ptr::null_mut()).is_none());
        assert!(pool
            .block_of((pool.base() + 64 * SLOT) as *mut u8)
            .is_none());
        // All 64 taken: the next one fails.
        for _ in 2..64 {
            assert!(!pool.take(layout).is_null());
        }
        assert!(pool.take(layout).is_null());
    }

    #[test]
    fn the_process_reserve_is_idle_and_routes_system_blocks_to_the_system() {
        assert!(RESERVE.block_of(BLOCKS.0.get() as *mut u8).is_some());
        let v = Box::new([7u8; 100]);
        assert!(RESERVE.block_of(v.as_ptr() as *mut u8).is_none());
        // Nothing here ran out of memory.
        assert!(!memory_short());
    }
}
