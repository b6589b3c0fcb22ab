//! Caller memory the kernel has proven usable: the per-thread cache that
//! lets the user-space reaper (`reap`) write events and read timeouts
//! without a system call, and without trusting an unchecked pointer.
//!
//! # Why
//!
//! The user-space fast path copies ready events from the ring straight into
//! the caller's `events` buffer, and libaio's zero-timeout peek reads
//! `*timeout`.  A pointer that merely *looks* like user memory
//! (`sys::plausible_user_range`) may still be unmapped, read-only or too
//! short: dereferencing it kills the program with `SIGSEGV`, where the system
//! libaio (which makes the system call) gets `-EFAULT` from the kernel.  So
//! we write or read caller memory in user space only where the kernel itself
//! has just done so successfully:
//!
//! * **events**: a successful `io_getevents`/`io_pgetevents` system call that
//!   returned `r > 0` *wrote* `[events, events + r * 32)`; that byte span is
//!   recorded as writable.  The fast path then copies at most as many events
//!   as fit in the recorded span starting at the caller's `events` pointer
//!   (`events_room`), and asks the kernel for anything beyond it (which, if
//!   it succeeds, extends the span: adjacent or overlapping spans merge).
//!   An `events` pointer in no span gets the system call, once.
//! * **timeouts**: a system call that returned `>= 0` with a non-NULL
//!   timeout *read* `*timeout` (the kernel copies the timeout before doing
//!   anything else, and fails with `-EFAULT` if it cannot); that exact
//!   pointer is recorded as readable.  The peek reads only such a pointer.
//!   (Only non-negative results count: an error may come from a seccomp
//!   filter that never let the kernel look at the pointer.)
//!
//! So the first call with a new buffer or timeout costs one system call; a
//! loop that reuses its buffers pays nothing after that.
//!
//! # Shape and cost
//!
//! Per thread ([`thread_local!`] with `const` initialisation and no
//! destructor, so no registration at thread start or exit): [`SPANS`] event
//! spans and [`TIMEOUTS`] timeout pointers, replaced round-robin, plus the
//! [`EPOCH`] they were recorded in.  A lookup is a TLS address computation,
//! one relaxed load of the shared epoch and a scan of a few words.  Per
//! thread rather than per process: a proof is a fact about the process's
//! memory and would be valid for every thread, but a shared cache would need
//! atomic two-word updates or a lock on the hot path, and buffers are almost
//! always per thread anyway; another thread using the same buffer pays its
//! own first system call.
//!
//! # Forgetting
//!
//! [`forget_all`] (called by `io_destroy`, and in the child after `fork()`)
//! bumps the process-wide [`EPOCH`]; every thread's cache is then empty at
//! its next lookup.  Programs commonly free their event buffers when they
//! tear a context down, and in a `fork()` child memory marked
//! `MADV_DONTFORK` is gone (otherwise the child's copy of memory, and of
//! this thread's cache, would still be right).  The epoch is loaded
//! `Relaxed`: a program that frees a buffer after `io_destroy` in one thread
//! and uses it in another (a bug anyway) must order those steps itself, and
//! that ordering also orders our bump before the other thread's load.
//!
//! # Residual risk
//!
//! Memory unmapped or made read-only (`munmap`, `mprotect`, `free` of a large
//! `malloc` block, a thread stack that went away) *after* the kernel proved
//! it, and then passed to `io_getevents` again without an `io_destroy` in
//! between: we write to it in user space and the program gets `SIGSEGV`,
//! like any library writing through a dangling pointer, where the system
//! libaio would get `-EFAULT`.  There is no way to notice an unmap without a
//! system call on every reap.  `LIBAIO_RS_NO_USER_REAP=1` avoids it.
//!
//! # Signal handlers
//!
//! A signal handler may call `io_getevents` while the interrupted code of the
//! same thread is inside this module.  Words are atomics (relaxed, with
//! `compiler_fence`s: a handler runs on the same thread, so program order on
//! one CPU is all that matters).  A writer marks the cache busy; a handler
//! that finds it busy neither reads nor writes it (its call just makes the
//! system call).  A reader reads a span's `end`, `start`, `end` again and uses
//! it only if both `end`s agree, so a handler that replaced the span in
//! between cannot make it see a mix of two spans.  Note that the first touch
//! of a thread-local in a library loaded with `dlopen` may make glibc
//! allocate the thread's TLS block (`__tls_get_addr`), which is not
//! async-signal-safe: a program whose *first* reap in a thread happens in a
//! signal handler, with this library `dlopen`ed, inherits that glibc
//! limitation (as with any TLS use in a `dlopen`ed library).

use crate::abi::io_event;
use core::sync::atomic::{compiler_fence, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

/// Event spans remembered per thread (a thread reaping several contexts
/// into different buffers, or alternating buffers).
pub const SPANS: usize = 4;
/// Timeout pointers remembered per thread (typically a zero one and a
/// waiting one; programs with a few in turn).  Since c621e94 the fast
/// path needs a remembered timeout (or none), so a thread rotating among
/// more than this many pointers makes a system call per reap, as libaio
/// does (an independent tester's `t7_timeouts`: 3 pointers, 2000 calls of
/// 2000 with the earlier 2).
pub const TIMEOUTS: usize = 8;

const EVENT: usize = core::mem::size_of::<io_event>();

/// Process-wide generation of all caches; bumped by [`forget_all`].
/// Starts at 1 so that a never-used cache (epoch 0) is stale.
static EPOCH: AtomicUsize = AtomicUsize::new(1);

/// One thread's proofs.  All fields are only ever touched by the owning
/// thread (and its signal handlers): atomics for signal-safety, not for
/// sharing.
pub struct Proven {
    /// [`EPOCH`] when the contents were recorded.
    epoch: AtomicUsize,
    /// A writer (possibly the code a signal handler interrupted) is
    /// changing the cache.
    busy: AtomicUsize,
    /// `[start, end)` byte spans the kernel wrote; `end == 0`: unused.
    starts: [AtomicUsize; SPANS],
    ends: [AtomicUsize; SPANS],
    next_span: AtomicUsize,
    /// Timeout pointers the kernel read; 0: unused.
    timeouts: [AtomicUsize; TIMEOUTS],
    next_timeout: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicUsize = AtomicUsize::new(0);

impl Proven {
    /// An empty cache.
    pub const fn new() -> Proven {
        Proven {
            epoch: ZERO,
            busy: ZERO,
            starts: [ZERO; SPANS],
            ends: [ZERO; SPANS],
            next_span: ZERO,
            timeouts: [ZERO; TIMEOUTS],
            next_timeout: ZERO,
        }
    }

    /// Whether the cache may be read now (current epoch, no writer).
    #[inline(always)]
    fn readable(&self, epoch: usize) -> bool {
        self.busy.load(Relaxed) == 0 && self.epoch.load(Relaxed) == epoch
    }

    /// How many events starting at `events` (at most `nr`) lie in one
    /// recorded span, i.e. may be written in user space.  0 if none.
    #[inline(always)]
    pub fn events_room(&self, epoch: usize, events: usize, nr: usize) -> usize {
        if !self.readable(epoch) {
            return 0;
        }
        let mut room = 0;
        for i in 0..SPANS {
            let end = self.ends[i].load(Relaxed);
            compiler_fence(SeqCst);
            let start = self.starts[i].load(Relaxed);
            compiler_fence(SeqCst);
            if end == 0 || self.ends[i].load(Relaxed) != end {
                continue;
            }
            if start <= events && events < end {
                room = room.max((end - events) / EVENT);
            }
        }
        room.min(nr)
    }

    /// Whether the exact pointer `timeout` was read by the kernel.
    #[inline(always)]
    pub fn timeout_readable(&self, epoch: usize, timeout: usize) -> bool {
        timeout != 0
            && self.readable(epoch)
            && self.timeouts.iter().any(|t| t.load(Relaxed) == timeout)
    }

    /// Run `f` as the only writer; skipped if we interrupted a writer (we
    /// are its signal handler: it would overwrite our changes half-way).
    #[inline]
    fn write(&self, epoch: usize, f: impl FnOnce()) {
        if self.busy.load(Relaxed) != 0 {
            return;
        }
        self.busy.store(1, Relaxed);
        compiler_fence(SeqCst);
        if self.epoch.load(Relaxed) != epoch {
            for i in 0..SPANS {
                self.ends[i].store(0, Relaxed);
            }
            for t in &self.timeouts {
                t.store(0, Relaxed);
            }
            self.epoch.store(epoch, Relaxed);
        }
        f();
        compiler_fence(SeqCst);
        self.busy.store(0, Relaxed);
    }

    /// Record that the kernel wrote `[start, start + len)`.
    pub fn record_events(&self, epoch: usize, start: usize, len: usize) {
        let Some(end) = start.checked_add(len) else {
            return;
        };
        if len == 0 {
            return;
        }
        self.write(epoch, || {
            // Union with every span it touches (overlapping or adjacent:
            // both were proven, so the union is), into the first of them.
            let (mut s, mut e, mut into) = (start, end, None);
            for i in 0..SPANS {
                let (si, ei) = (self.starts[i].load(Relaxed), self.ends[i].load(Relaxed));
                if ei != 0 && si <= e && s <= ei {
                    s = s.min(si);
                    e = e.max(ei);
                    if into.is_none() {
                        into = Some(i);
                    } else {
                        self.ends[i].store(0, Relaxed);
                    }
                }
            }
            let i = into.unwrap_or_else(|| {
                let n = self.next_span.load(Relaxed);
                self.next_span.store((n + 1) % SPANS, Relaxed);
                n % SPANS
            });
            // Readers check `end` before and after `start`, so clear it
            // first (see the module docs on signal handlers).
            self.ends[i].store(0, Relaxed);
            compiler_fence(SeqCst);
            self.starts[i].store(s, Relaxed);
            compiler_fence(SeqCst);
            self.ends[i].store(e, Relaxed);
        });
    }

    /// Record that the kernel read the timeout at `timeout`.
    pub fn record_timeout(&self, epoch: usize, timeout: usize) {
        if timeout == 0 {
            return;
        }
        self.write(epoch, || {
            if self.timeouts.iter().any(|t| t.load(Relaxed) == timeout) {
                return;
            }
            let n = self.next_timeout.load(Relaxed);
            self.next_timeout.store((n + 1) % TIMEOUTS, Relaxed);
            self.timeouts[n % TIMEOUTS].store(timeout, Relaxed);
        });
    }
}

impl Default for Proven {
    fn default() -> Proven {
        Proven::new()
    }
}

thread_local! {
    /// This thread's proofs.  `const`, and `Proven` needs no `Drop`: plain
    /// TLS, no lazy initialisation, no destructor.
    static PROVEN: Proven = const { Proven::new() };
}

/// How many of `nr` events may be written at `events` in user space
/// (0: the kernel must be asked).
#[inline(always)]
pub fn events_room(events: *const io_event, nr: usize) -> usize {
    let epoch = EPOCH.load(Relaxed);
    PROVEN.with(|p| p.events_room(epoch, events as usize, nr))
}

/// Whether `*timeout` may be read in user space.
#[inline(always)]
pub fn timeout_readable<T>(timeout: *const T) -> bool {
    let epoch = EPOCH.load(Relaxed);
    PROVEN.with(|p| p.timeout_readable(epoch, timeout as usize))
}

/// Learn from a reaping system call's result `r`: `r > 0` events were
/// written at `events`; `r >= 0` means a non-NULL `timeout` was read.
#[inline]
pub fn learn<T>(events: *const io_event, timeout: *const T, r: core::ffi::c_long) {
    if r < 0 {
        return;
    }
    let epoch = EPOCH.load(Relaxed);
    PROVEN.with(|p| {
        if r > 0 {
            p.record_events(epoch, events as usize, r as usize * EVENT);
        }
        p.record_timeout(epoch, timeout as usize);
    });
}

/// Forget every thread's proofs (memory may have been unmapped).
/// Async-signal-safe: one atomic add.
pub fn forget_all() {
    EPOCH.fetch_add(1, Relaxed);
}

/// The current epoch: tests use it to notice a [`forget_all`] by a test
/// running in parallel (every `io_destroy` calls it).
#[cfg(test)]
pub(crate) fn epoch() -> usize {
    EPOCH.load(Relaxed)
}

/// Run `f` until no [`forget_all`] happened during it (tests only; `f`
/// must be repeatable).
#[cfg(test)]
pub(crate) fn without_forgetting<R>(mut f: impl FnMut() -> R) -> R {
    for _ in 0..1000 {
        let before = epoch();
        let r = f();
        if epoch() == before {
            return r;
        }
    }
    panic!("the epoch never stayed still");
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: usize = EVENT;
    const BASE: usize = 0x10_0000;

    #[test]
    fn nothing_is_trusted_before_the_kernel_proved_it() {
        let p = Proven::new();
        assert_eq!(p.events_room(7, BASE, 8), 0);
        assert!(!p.timeout_readable(7, BASE));
        assert!(!p.timeout_readable(7, 0));
        p.record_timeout(7, BASE);
        assert!(p.timeout_readable(7, BASE));
        assert!(!p.timeout_readable(7, BASE + 8), "only the exact pointer");
        assert!(!p.timeout_readable(7, 0));
        assert_eq!(p.events_room(7, BASE, 8), 0, "a timeout proves no events");
    }

    #[test]
    fn room_is_what_the_span_holds_from_the_pointer_on() {
        let p = Proven::new();
        p.record_events(1, BASE, 4 * E);
        assert_eq!(p.events_room(1, BASE, 8), 4);
        assert_eq!(p.events_room(1, BASE, 3), 3, "capped at nr");
        assert_eq!(p.events_room(1, BASE + E, 8), 3, "a pointer inside");
        assert_eq!(p.events_room(1, BASE + 3 * E, 8), 1);
        assert_eq!(
            p.events_room(1, BASE + 3 * E + 1, 8),
            0,
            "not a whole event"
        );
        assert_eq!(p.events_room(1, BASE + 4 * E, 8), 0, "end is exclusive");
        assert_eq!(p.events_room(1, BASE - E, 8), 0, "before the span");
        assert_eq!(p.events_room(1, BASE - 1, 8), 0);
    }

    #[test]
    fn adjacent_and_overlapping_proofs_extend_a_span() {
        let p = Proven::new();
        p.record_events(1, BASE, E);
        assert_eq!(p.events_room(1, BASE, 32), 1);
        // The kernel filled the rest after the one we took in user space.
        p.record_events(1, BASE + E, 3 * E);
        assert_eq!(p.events_room(1, BASE, 32), 4);
        // Overlapping, reaching further.
        p.record_events(1, BASE + 2 * E, 6 * E);
        assert_eq!(p.events_room(1, BASE, 32), 8);
        // A proof in front of the span, adjacent.
        p.record_events(1, BASE - 2 * E, 2 * E);
        assert_eq!(p.events_room(1, BASE - 2 * E, 32), 10);
        // One that bridges two spans merges them.
        p.record_events(1, BASE + 9 * E, E);
        assert_eq!(p.events_room(1, BASE - 2 * E, 32), 10, "gap not bridged");
        p.record_events(1, BASE + 8 * E, E);
        assert_eq!(p.events_room(1, BASE - 2 * E, 32), 12);
        // A gap is never bridged by itself.
        p.record_events(1, BASE + 20 * E, E);
        assert_eq!(p.events_room(1, BASE - 2 * E, 32), 12);
        assert_eq!(p.events_room(1, BASE + 15 * E, 32), 0);
        assert_eq!(p.events_room(1, BASE + 20 * E, 32), 1);
    }

    #[test]
    fn old_proofs_are_replaced_round_robin() {
        let p = Proven::new();
        let buf = |i: usize| BASE + i * 0x1000;
        for i in 0..SPANS {
            p.record_events(1, buf(i), 2 * E);
        }
        for i in 0..SPANS {
            assert_eq!(p.events_room(1, buf(i), 8), 2);
        }
        p.record_events(1, buf(SPANS), E);
        assert_eq!(p.events_room(1, buf(0), 8), 0, "the oldest went");
        assert_eq!(p.events_room(1, buf(SPANS), 8), 1);
        assert_eq!(p.events_room(1, buf(1), 8), 2);
        for i in 0..TIMEOUTS + 1 {
            p.record_timeout(1, buf(i));
        }
        assert!(!p.timeout_readable(1, buf(0)));
        assert!(p.timeout_readable(1, buf(TIMEOUTS)));
    }

    #[test]
    fn a_new_epoch_forgets_everything() {
        let p = Proven::new();
        p.record_events(1, BASE, 4 * E);
        p.record_timeout(1, BASE + 0x1000);
        assert_eq!(p.events_room(2, BASE, 8), 0);
        assert!(!p.timeout_readable(2, BASE + 0x1000));
        p.record_events(2, BASE + 0x2000, E);
        assert_eq!(p.events_room(2, BASE, 8), 0, "not revived by a write");
        assert!(!p.timeout_readable(2, BASE + 0x1000));
        assert_eq!(p.events_room(2, BASE + 0x2000, 8), 1);
    }

    #[test]
    fn a_writer_interrupted_by_a_handler_is_not_trusted_by_it() {
        let p = Proven::new();
        p.record_events(1, BASE, 4 * E);
        p.record_timeout(1, BASE + 0x1000);
        // What a signal handler sees in the middle of a write.
        p.busy.store(1, Relaxed);
        assert_eq!(p.events_room(1, BASE, 8), 0);
        assert!(!p.timeout_readable(1, BASE + 0x1000));
        p.record_events(1, BASE + 0x2000, E); // ignored
        p.busy.store(0, Relaxed);
        assert_eq!(p.events_room(1, BASE + 0x2000, 8), 0);
        assert_eq!(p.events_room(1, BASE, 8), 4);
    }

    #[test]
    fn the_thread_cache_learns_only_from_successes() {
        let ev = [io_event::zeroed(); 4];
        let t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let (evp, tp) = (ev.as_ptr(), &t as *const libc::timespec);
        // Results are (room, readable) pairs; checked after the epoch stayed
        // still (tests running in parallel call io_destroy).
        // (A retry follows a forget_all, so every attempt starts empty.)
        forget_all();
        let steps = without_forgetting(|| {
            let mut seen = vec![(events_room(evp, 4), timeout_readable(tp))];
            learn(evp, tp, -(libc::EFAULT as core::ffi::c_long));
            seen.push((events_room(evp, 4), timeout_readable(tp)));
            learn(evp, tp, 0);
            seen.push((events_room(evp, 4), timeout_readable(tp)));
            learn(evp, tp, 2);
            seen.push((events_room(evp, 4), timeout_readable(tp)));
            // Another thread knows nothing of it.
            let (e, t2) = (evp as usize, tp as usize);
            let other = std::thread::spawn(move || {
                (
                    events_room(e as *const io_event, 4),
                    timeout_readable(t2 as *const libc::timespec),
                )
            })
            .join()
            .unwrap();
            seen.push(other);
            seen
        });
        assert_eq!(
            steps,
            [(0, false), (0, false), (0, true), (2, true), (0, false)],
            "nothing; nothing from -EFAULT; 0 events prove the timeout only; \
             2 events; another thread"
        );
        forget_all();
        assert_eq!(events_room(evp, 4), 0);
        assert!(!timeout_readable(tp));
    }
}
