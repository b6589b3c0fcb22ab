//! The registry of AIO contexts created by this library in this process.
//!
//! libaio trusts any non-NULL `io_context_t` and reads `ring->magic` through
//! it, so a bad handle crashes it.  We only ever read a ring whose handle we
//! got back from a successful `io_setup` in this process, since the last
//! `fork()`: every other handle goes straight to the kernel, which answers
//! `-EINVAL`.  After `fork()` the child still sees the parent's ring mapped
//! (it is a shared mapping), but the kernel no longer knows the context in the
//! child; reading the ring there would hand the child the parent's events.
//!
//! # Structure and memory ordering
//!
//! A fixed, lock-free open-addressing table of [`CAPACITY`] cache-line-sized
//! slots.  A slot's `key` is the ring address (0 = never used, [`TOMBSTONE`] =
//! freed).  Readers never lock:
//!
//! * `register` fills the slot's fields, then publishes the key with a
//!   `Release` CAS; `lookup` loads the key with `Acquire`, so a reader that
//!   finds the key also sees the initialised fields.
//! * `unregister` stores [`TOMBSTONE`] (`Release`).  A caller that uses a
//!   context concurrently with `io_destroy` on it is racing the kernel too;
//!   we make sure that such a caller reads at worst a stale slot, never freed
//!   memory (slots are static and never freed).
//! * `fork()`: a `pthread_atfork` child handler bumps [`FORK_GENERATION`];
//!   a slot registered under an older generation is treated as absent.  The
//!   handler is async-signal-safe (one atomic add).
//!
//! A process with more than [`CAPACITY`] live contexts still works: the extra
//! contexts are simply not registered and always take the kernel's path.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Once;

/// Number of slots.  Must be a power of two.
pub const CAPACITY: usize = 1024;
const TOMBSTONE: usize = 1;

/// Per-context state shared by every thread using the context.
#[repr(C, align(64))]
pub struct Context {
    /// Ring address (= `io_context_t` value), 0 or [`TOMBSTONE`].
    key: AtomicUsize,
    /// [`FORK_GENERATION`] when registered.
    generation: AtomicU32,
    /// `nr_events` the context was created with (the caller's request).
    pub max_events: AtomicU32,
    /// Protection-information format for emulated `IO_CMD_P*VM` iocbs
    /// (`pi::encode_format`; 0 = the default).  Set by `io_set_pi_format`,
    /// read at submit time; `Relaxed` is enough: it is a single word, and
    /// an iocb submitted concurrently with the change may use either value.
    pub pi_format: AtomicU32,
}

impl Context {
    const fn new() -> Context {
        Context {
            key: AtomicUsize::new(0),
            generation: AtomicU32::new(0),
            max_events: AtomicU32::new(0),
            pi_format: AtomicU32::new(0),
        }
    }

    /// The ring address this context belongs to.
    pub fn ring_addr(&self) -> usize {
        self.key.load(Ordering::Relaxed)
    }
}

static SLOTS: [Context; CAPACITY] = [const { Context::new() }; CAPACITY];

/// Incremented in every child after `fork()`.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(1);
static ATFORK: Once = Once::new();

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Release);
}

#[inline(always)]
fn home(ctx: usize) -> usize {
    // Rings are page-aligned: drop the zero bits, then Fibonacci-hash.
    ((ctx >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize))
        >> (usize::BITS - CAPACITY.trailing_zeros())
}

/// Find the live context registered for `ctx` in this process, if any.
#[inline]
pub fn lookup(ctx: usize) -> Option<&'static Context> {
    if ctx <= TOMBSTONE {
        return None;
    }
    let gen = FORK_GENERATION.load(Ordering::Acquire);
    let mut i = home(ctx);
    for _ in 0..CAPACITY {
        let slot = &SLOTS[i];
        let k = slot.key.load(Ordering::Acquire);
        if k == ctx {
            return (slot.generation.load(Ordering::Relaxed) == gen).then_some(slot);
        }
        if k == 0 {
            return None;
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    None
}

/// Record a context that `io_setup` just created.
pub fn register(ctx: usize, max_events: u32) {
    if ctx <= TOMBSTONE {
        return;
    }
    ATFORK.call_once(|| {
        // SAFETY: registering a plain function with no preconditions; glibc
        // ties the registration to this DSO and drops it on dlclose.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let gen = FORK_GENERATION.load(Ordering::Acquire);
    let mut i = home(ctx);
    for _ in 0..CAPACITY {
        let slot = &SLOTS[i];
        let k = slot.key.load(Ordering::Acquire);
        let stale = k > TOMBSTONE && slot.generation.load(Ordering::Relaxed) != gen;
        if k == ctx || k == 0 || k == TOMBSTONE || stale {
            // Claim the slot with a sentinel so no reader matches it while we
            // initialise it, then publish the key.
            if k != ctx
                && slot
                    .key
                    .compare_exchange(k, TOMBSTONE, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
            {
                i = (i + 1) & (CAPACITY - 1);
                continue;
            }
            slot.generation.store(gen, Ordering::Relaxed);
            slot.max_events.store(max_events, Ordering::Relaxed);
            slot.pi_format.store(0, Ordering::Relaxed);
            slot.key.store(ctx, Ordering::Release);
            return;
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    // Table full: the context works, through the kernel's path only.
}

/// Forget a context after a successful `io_destroy`.
pub fn unregister(ctx: usize) {
    if let Some(slot) = lookup(ctx) {
        slot.key.store(TOMBSTONE, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_lookup_unregister() {
        let a = 0x7f00_dead_0000usize;
        let b = a + 0x1000;
        assert!(lookup(a).is_none());
        register(a, 8);
        register(b, 16);
        assert_eq!(lookup(a).unwrap().ring_addr(), a);
        assert_eq!(lookup(b).unwrap().max_events.load(Ordering::Relaxed), 16);
        unregister(a);
        assert!(lookup(a).is_none());
        assert!(lookup(b).is_some());
        unregister(b);
        assert!(lookup(b).is_none());
        assert!(lookup(0).is_none());
        assert!(lookup(usize::MAX).is_none());
    }

    #[test]
    fn many_contexts_and_collisions() {
        let base = 0x5500_0000_0000usize;
        for i in 0..300 {
            register(base + i * 0x1000 * 1024, 1);
        }
        for i in 0..300 {
            assert!(lookup(base + i * 0x1000 * 1024).is_some(), "{i}");
        }
        for i in 0..300 {
            unregister(base + i * 0x1000 * 1024);
        }
        for i in 0..300 {
            assert!(lookup(base + i * 0x1000 * 1024).is_none());
        }
    }

    #[test]
    fn a_forked_child_does_not_see_its_parents_contexts() {
        let a = 0x6600_0000_0000usize;
        register(a, 1);
        assert!(lookup(a).is_some());
        // SAFETY: the child only does atomic loads/stores on static memory
        // and then `_exit`s, which is async-signal-safe after fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let unseen = lookup(a).is_none();
            register(a, 1);
            let reseen = lookup(a).is_some();
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(if unseen && reseen { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw the parent's context"
        );
        assert!(lookup(a).is_some(), "the parent keeps its context");
        unregister(a);
    }
}
