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
//! blocks of at most [`MAX_RUN`] slots (64 KiB) and [`SLOT`] alignment: a
//! block of more than one slot takes that many adjacent free slots of one
//! 64-bit word of [`IN_USE`].  Every block the PI paths size from an iocb
//! is at most that (an iovec array of `UIO_MAXIOV` entries is 16 KiB),
//! except a write's copy of its tuples, which is allocated fallibly: out
//! of memory, that write gets `-EAGAIN` (`pi::submit`).  A larger block
//! still fails.  Freeing a block checks whether it lies in the reserve
//! (two compares) before handing it to the system allocator: the only
//! cost on the normal path.
//!
//! # Ordering
//!
//! A block is claimed by a compare-and-swap that sets its bits, all in one
//! word (`Acquire`: the previous owners' writes to its slots, released when
//! they cleared the bits, happen before ours) and given back by clearing
//! them (`Release`).  The bits are the only shared state.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::System;

/// Bytes per reserve slot (and the largest alignment served).
pub const SLOT: usize = 4096;
/// The most slots one block takes (64 KiB): adjacent bits of one word.
pub const MAX_RUN: usize = 16;
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

/// Slots a block of `size` bytes takes (at least one).
fn slots_for(size: usize) -> usize {
    size.div_ceil(SLOT).max(1)
}

/// `k` (1 ..= [`MAX_RUN`]) low bits set.
fn run_mask(k: usize) -> u64 {
    debug_assert!((1..=MAX_RUN).contains(&k));
    (1u64 << k) - 1
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
        if layout.size() > MAX_RUN * SLOT || layout.align() > SLOT {
            return core::ptr::null_mut();
        }
        let k = slots_for(layout.size());
        let run = run_mask(k);
        for (w, word) in self.bits.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            loop {
                // Bit b of `starts`: bits b .. b + k of `cur` are all free.
                let free = !cur;
                let starts = (1..k).fold(free, |m, i| m & (free >> i));
                if starts == 0 {
                    break;
                }
                let bit = starts.trailing_zeros() as usize;
                match word.compare_exchange_weak(
                    cur,
                    cur | run << bit,
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

    /// Give back the `k` slots from slot `i` (one block, or its tail).
    fn give_back(&self, i: usize, k: usize) {
        self.bits[i / 64].fetch_and(!(run_mask(k) << (i % 64)), Ordering::Release);
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
pub struct WithReserve {
    /// The process's [`RESERVE`] (a test's own pool in tests).
    pool: &'static Pool,
}

impl WithReserve {
    /// The allocator with the process's reserve.
    pub const fn new() -> WithReserve {
        WithReserve { pool: &RESERVE }
    }
}

impl Default for WithReserve {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either the system allocator's (for the
// layout asked) or a run of reserve slots aligned to `SLOT` holding the
// layout's size (only for layouts that fit `MAX_RUN` slots), owned by the
// caller until it is given back; `dealloc` and `realloc` route each
// pointer to where it came from, and give back exactly the slots the
// layout they are given took (`realloc` gives back at once those a smaller
// size no longer needs).
unsafe impl GlobalAlloc for WithReserve {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract (non-zero size).
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            self.pool.take(layout)
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
        let p = self.pool.take(layout);
        if !p.is_null() {
            // SAFETY: a reserve block of at least `layout.size()` bytes,
            // ours now.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.pool.block_of(ptr) {
            Some(i) => self.pool.give_back(i, slots_for(layout.size())),
            // SAFETY: not a reserve block, so the system allocator's, for
            // this layout (forwarded contract).
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match self.pool.block_of(ptr) {
            None => {
                // SAFETY: the system allocator's block (forwarded contract).
                let p = unsafe { System.realloc(ptr, layout, new_size) };
                if !p.is_null() {
                    return p;
                }
            }
            Some(i) => {
                let (had, needs) = (slots_for(layout.size()), slots_for(new_size));
                if needs <= had {
                    // The block holds the new size as it is; slots it no
                    // longer needs go back now (its `dealloc`, with the new
                    // size, gives back only `needs`).
                    if needs < had {
                        self.pool.give_back(i + needs, had - needs);
                    }
                    return ptr;
                }
            }
        }
        // Move to a new block (the reserve's, or the system's for a
        // reserve block that must grow past its slots).
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
        pool.give_back(pool.block_of(a).unwrap(), 1);
        assert_eq!(pool.in_use(), 1);
        assert_eq!(pool.take(layout), a, "the freed block is taken again");
        assert!(pool
            .take(Layout::from_size_align(MAX_RUN * SLOT + 1, 8).unwrap())
            .is_null());
        assert!(pool
            .take(Layout::from_size_align(64, 2 * SLOT).unwrap())
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

    /// Blocks of several slots: adjacent free slots of one word, given
    /// back whole; a word too fragmented for a run is skipped.
    #[test]
    fn blocks_of_several_slots_take_adjacent_free_slots() {
        let pool = test_pool();
        let one = Layout::from_size_align(8, 8).unwrap();
        let three = Layout::from_size_align(2 * SLOT + 1, 8).unwrap();
        let most = Layout::from_size_align(MAX_RUN * SLOT, SLOT).unwrap();
        let a = pool.take(one);
        let b = pool.take(three);
        assert_eq!(pool.block_of(a), Some(0));
        assert_eq!(pool.block_of(b), Some(1), "slots 1-3");
        assert_eq!(pool.in_use(), 4);
        let c = pool.take(one);
        assert_eq!(pool.block_of(c), Some(4));
        // Slot 0 free again: too small a gap for three slots.
        pool.give_back(0, 1);
        let d = pool.take(three);
        assert_eq!(pool.block_of(d), Some(5));
        pool.give_back(pool.block_of(b).unwrap(), slots_for(three.size()));
        assert_eq!(pool.in_use(), 4, "c and d");
        assert_eq!(pool.block_of(pool.take(three)), Some(0), "slots 0-2 now");
        let e = pool.take(most);
        assert_eq!(pool.block_of(e), Some(8));
        // Slots 24..64 left: two more runs of 16 fit, a third does not.
        assert!(!pool.take(most).is_null());
        assert!(!pool.take(most).is_null());
        assert!(pool.take(most).is_null());
        assert_eq!(pool.in_use(), 3 + 1 + 3 + 3 * MAX_RUN);
        // A single slot goes to the first gap: slot 3 (b's last), then the
        // 8 slots after the runs.
        assert_eq!(pool.block_of(pool.take(one)), Some(3));
        assert_eq!(pool.block_of(pool.take(one)), Some(56));
    }

    /// `realloc` of a reserve block: shrinking keeps it and gives back the
    /// slots it no longer needs, growing within its slots keeps it,
    /// growing past them moves it (to the system allocator here).
    #[test]
    fn realloc_of_a_reserve_block_keeps_the_slots_it_needs() {
        let pool: &'static Pool = Box::leak(Box::new(test_pool()));
        let alloc = WithReserve { pool };
        let big = Layout::from_size_align(3 * SLOT, 8).unwrap();
        let p = pool.take(big);
        assert_eq!(pool.in_use(), 3);
        // SAFETY: a reserve block of `big`, ours; written within its size.
        unsafe {
            p.write(42);
            let q = alloc.realloc(p, big, SLOT + 1);
            assert_eq!(q, p);
            assert_eq!(pool.in_use(), 2, "the third slot is back");
            let smaller = Layout::from_size_align(SLOT + 1, 8).unwrap();
            let q = alloc.realloc(p, smaller, 2 * SLOT);
            assert_eq!(q, p, "fits its two slots");
            let two = Layout::from_size_align(2 * SLOT, 8).unwrap();
            let r = alloc.realloc(p, two, 5 * SLOT);
            assert!(!r.is_null() && r != p);
            assert!(pool.block_of(r).is_none(), "moved to the system allocator");
            assert_eq!(r.read(), 42);
            assert_eq!(pool.in_use(), 0, "both slots given back");
            alloc.dealloc(r, Layout::from_size_align(5 * SLOT, 8).unwrap());
        }
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
