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
//! freed, [`CLAIMED`] = being filled by `register`).  Readers never lock:
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
//!   handler also empties the proof cache and gives the PI records a fresh
//!   map, without allocating.  A child made without those handlers (`_Fork()`,
//!   `syscall(SYS_fork)`, `clone` without `CLONE_VM`) is caught by the
//!   [`WITNESS`] word, in a page that every such child sees zeroed: the
//!   first lookup there does the handler's work (the ring is a shared
//!   mapping the child inherits, so reading it there would take the
//!   parent's events).
//!
//! A process with more than [`CAPACITY`] live contexts still works: the extra
//! contexts are simply not registered and always take the kernel's path.
//!
//! # Rings that move or go away
//!
//! * `io_destroy` sets [`ReapState::DYING`] and waits for a user-space reaper
//!   to leave the ring before the kernel unmaps it; a thread that looked the
//!   context up just before then finds DYING and takes the system call.
//! * `mremap` of a ring (libaio's harness case 19): the kernel follows the
//!   ring, and the new address is the context from then on.  It is not
//!   registered, so it always takes the kernel's path.  Its `io_destroy`
//!   forgets the entry of the old address (matched by the ring's `id`, see
//!   [`forget_moved`]), so that entry is never read afterwards, even if a
//!   program passes the old address again.  Between the `mremap` and that
//!   `io_destroy`, passing the *old* address (which names no context any
//!   more) would read unmapped memory, as libaio does; there is no way to
//!   notice a move without a system call on every reap.  Memory mapped
//!   there since is read only while its header still says the ring's `id`
//!   and `nr` (`ring::Ring::registered`): other bytes get the kernel's
//!   answer, an exact copy of the old header would not.

use crate::abi::{AioRingHeader, AIO_RING_MAGIC};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Once;

/// Number of slots.  Must be a power of two.
pub const CAPACITY: usize = 1024;
const TOMBSTONE: usize = 1;
/// A slot being filled by `register` (claimed by CAS, so two registrations
/// never fill the same slot).  Rings are page-aligned: never a key.
const CLAIMED: usize = 2;

/// Per-context state shared by every thread using the context.
#[repr(C, align(64))]
pub struct Context {
    /// Ring address (= `io_context_t` value), 0 (never used), [`TOMBSTONE`]
    /// (forgotten), or [`CLAIMED`] (held by `register`/`unregister` for a
    /// few instructions).
    key: AtomicUsize,
    /// [`FORK_GENERATION`] when registered.
    generation: AtomicU32,

    // ---- Completion reaping in user space (src/reap.rs, src/ring.rs) ----
    /// Who may move the ring's `head` right now: see [`ReapState`] below.
    reap_state: AtomicUsize,
    /// `ring->nr` (slots in the ring), read once when the context was
    /// registered; 0 = the ring is not one we read in user space (its header
    /// was not readable or not understood when registered).
    ring_nr: AtomicU32,
    /// `ring->id` when registered: the kernel's index of this context in the
    /// process's context table, unique among live contexts.  Lets `io_destroy`
    /// of a ring that was moved with `mremap` forget the old address.
    ring_id: AtomicU32,
    /// `pthread_self()` of the user-space reaper, 0 when none: the lock
    /// among user reapers (taken with a CAS, `Acquire`; given back with a
    /// `Release` store), held from before taking [`ReapState::USER`] until
    /// after giving it back (see [`Context::try_user_reap`]).  Lets a signal
    /// handler that interrupted a user-space reap on the same context
    /// notice it instead of waiting for itself forever.
    user_owner: AtomicUsize,
    /// [`REGISTRATIONS`] when registered: orders registrations against an
    /// `io_destroy` (see [`forget_moved`]).
    registered_seq: AtomicU64,
    /// The kernel has destroyed this context (`io_destroy(2)` returned 0):
    /// a reap that starts now gets no event of it, so it counts as a
    /// [`ReapState::DEAD_KERNEL`] unit, which `io_destroy` does not wait
    /// for (see [`Context::await_translations`]).  Set once by
    /// `io_destroy`, cleared when the slot is registered again (before its
    /// key is published, `Release`).  A reaper that misses it is merely
    /// waited for; one that sees it checks it again once counted, so a
    /// registration in between makes it count as a live reaper.
    destroyed: AtomicBool,

    // ---- T10 protection information (src/pi) ----
    /// Protection-information format for emulated `IO_CMD_P*VM` iocbs
    /// (`pi::encode`; 0 = the default).  Set by `io_set_pi_format`,
    /// read at submit time; `Relaxed` is enough: it is a single word, and
    /// an iocb submitted concurrently with the change may use either value.
    pub pi_format: AtomicU32,

    // ---- Reapers this library does not know (src/reap.rs) ----
    /// `ring->head` as the last user-space reaper of this library left it,
    /// or [`HEAD_UNKNOWN`] since a reaping system call of this library
    /// began (the kernel moved `head` then) or the context was registered.
    /// Written only by the thread holding USER (and by a kernel reaper
    /// once counted): the `reap_state` word's Acquire/Release orders every
    /// access, so `Relaxed` is enough.  In the same cache line as
    /// `reap_state`, which every reap writes anyway.
    user_head: AtomicU32,
    /// A reaper this library does not know moved `head` (a raw
    /// `io_getevents(2)`, or a program reading the ring itself): this
    /// context is reaped only by the system call from now on, as libaio
    /// does (see [`UserReaper::moved_by_another`]).  Set by the thread
    /// holding USER, read by the next one once it holds USER (ordered as
    /// `user_head`); cleared when the slot is registered again.
    foreign_reaper: AtomicBool,
}

/// [`Context::user_head`] when no user-space reaper of this library has
/// looked at `head` since the kernel last moved it for us.  A real `head`
/// is below `nr`, at most `u32::MAX - 1`.
const HEAD_UNKNOWN: u32 = u32::MAX;

/// Number of `register` calls so far in this process.
static REGISTRATIONS: AtomicU64 = AtomicU64::new(1);

/// The reaper state word of a [`Context`] (`reap_state`).
///
/// The kernel moves `ring->head` under its own `ring_lock` while a thread is
/// inside `io_getevents(2)`; a user-space reaper moves it with no kernel lock
/// at all.  The two must never run at the same time on one ring, or both
/// copy the same events (or one overwrites the other's `head`).  So:
///
/// * bit 0 ([`USER`](ReapState::USER)): a thread is reaping in user space and
///   owns `head`.  Taken only by CAS from exactly 0 (no kernel reaper, not
///   dying, not locked), released with `fetch_and` (`Release`);
/// * bit 1 ([`DYING`](ReapState::DYING)): `io_destroy` started; no user reaper
///   may start, since the ring is about to be unmapped.  Cleared only when the
///   slot is registered again (or `io_destroy` fails for a reason other than
///   "no such context");
/// * bits 2.. of the low half (units of [`KERNEL`](ReapState::KERNEL)):
///   threads currently inside an `io_getevents`/`io_pgetevents` system call
///   on this context, or translating the events they took (PI: see
///   [`Context::await_translations`]).  Incremented (CAS, only while bit 0
///   is clear) before the call and decremented after it;
/// * the high half (units of [`DEAD_KERNEL`](ReapState::DEAD_KERNEL)):
///   the same, for reaps that began after the kernel destroyed the context
///   (they get none of its events, so `io_destroy` does not wait for
///   them, and a thread that keeps reaping a destroyed handle cannot hold
///   it up); they still keep user-space reapers off the ring, in case a
///   new context at the same address takes this slot meanwhile.
///
/// The user critical section only copies from the ring and never blocks, so
/// waiting for bit 0 to clear (spin, then `sched_yield`) is bounded.
/// Ordering: taking bit 0 or a kernel count is `Acquire` and giving it back is
/// `Release`, so whoever reaps next sees the `head` the previous reaper
/// stored, whether it was stored by us or by the kernel during a system call
/// that returned before the count was decremented.
pub struct ReapState;

impl ReapState {
    /// A user-space reaper owns the ring.
    pub const USER: usize = 1;
    /// `io_destroy` is under way or done.
    pub const DYING: usize = 2;
    /// One thread inside a reaping system call.
    pub const KERNEL: usize = 4;
    /// One thread inside a reaping system call begun after the kernel
    /// destroyed the context.
    pub const DEAD_KERNEL: usize = 1 << (usize::BITS / 2);
    /// The KERNEL units (what `io_destroy` waits for).
    const KERNEL_MASK: usize = Self::DEAD_KERNEL - Self::KERNEL;
}

/// Spin briefly, then yield the CPU: used only while another thread holds a
/// short, non-blocking critical section.
#[inline]
fn backoff(spins: &mut u32) {
    if *spins < 64 {
        core::hint::spin_loop();
    } else {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
    *spins = spins.saturating_add(1);
}

/// A reap was attempted from a signal handler that interrupted this same
/// thread's user-space reap of the same ring.
#[derive(Debug)]
pub struct Reentrant;

/// Threads inside a reaping system call counted on no slot (the address
/// named no registration when they looked): user-space reapers keep off
/// every ring meanwhile (`try_user_reap` takes the system call instead).
/// Such a call is on a context this library did not create, as a rule;
/// but a thread that looked before another thread's `io_setup` registered
/// a new context at that address (a destroyed handle reaped again, say)
/// reaches the new context's ring, and a user-space reaper there would
/// take the same events (both move `head`).
///
/// Ordering (a store-load pair on each side): the uncounted reaper
/// increments this (`SeqCst`), then a `SeqCst` fence, then looks the
/// address up again; a user-space reaper looked the address up, takes
/// USER by a `SeqCst` CAS, then loads this (`SeqCst`).  If the lookup
/// after the increment missed a registration, the registration's key was
/// published after it, so a user reaper that found the key loads this
/// after the increment and backs off.  Programs that reap only their own
/// contexts never change it: one load of a shared, unwritten line.
static UNCOUNTED_REAPERS: AtomicUsize = AtomicUsize::new(0);

/// Proof that this thread is counted in [`UNCOUNTED_REAPERS`].
pub struct UncountedReaper(());

impl UncountedReaper {
    /// Count this thread; then look `ctx` up again: `Err(slot)` (not
    /// counted) if a registration names it now, whose count to take
    /// instead.
    pub fn enter(ctx: usize) -> Result<UncountedReaper, &'static Context> {
        let counted = UncountedReaper::hold();
        match lookup_settled(ctx) {
            Some(slot) => Err(slot),
            None => Ok(counted),
        }
    }

    /// Count this thread, whatever names `ctx`.
    pub fn hold() -> UncountedReaper {
        UNCOUNTED_REAPERS.fetch_add(1, Ordering::SeqCst);
        core::sync::atomic::fence(Ordering::SeqCst);
        UncountedReaper(())
    }
}

impl Drop for UncountedReaper {
    fn drop(&mut self) {
        UNCOUNTED_REAPERS.fetch_sub(1, Ordering::Release);
    }
}

/// Why [`Context::enter_kernel_reap`] did not count this thread.
#[derive(Debug)]
pub enum NotCounted {
    /// As [`Reentrant`].
    Reentrant,
    /// The slot no longer names the context: look it up again.
    Stale,
}

/// Proof that this thread reaps the ring in user space; dropping it releases
/// the ring.
pub struct UserReaper<'a> {
    ctx: &'a Context,
    /// The ring address, as checked against the slot's key once USER was
    /// held ([`Context::try_user_reap`]).  Never reloaded from the key: an
    /// `unregister` of an older registration at the same address stores
    /// `CLAIMED` there for a few instructions and puts it back.
    addr: usize,
}

impl UserReaper<'_> {
    /// The registered ring address and slot count.
    pub fn ring(&self) -> (usize, u32) {
        (self.addr, self.ctx.ring_nr.load(Ordering::Relaxed))
    }

    /// The ring's `id` as its header said at registration.
    pub fn ring_id(&self) -> u32 {
        self.ctx.ring_id.load(Ordering::Relaxed)
    }

    /// Whether the ring's `head` (read now, `head`) is not where this
    /// library's reapers left it: something else reaped this ring (a raw
    /// `io_getevents(2)`, or the program moving `head` itself).  The
    /// kernel's reap and ours do not exclude each other (it moves `head`
    /// under its own lock, with no compare-and-swap), so from then on only
    /// the system call reaps this context, as with libaio: the context is
    /// marked, and this reaper should give the ring back and make the
    /// call.  Best effort: a foreign reap that overlaps one of ours
    /// exactly can copy the same events before either move of `head` is
    /// seen (the README says so).  One load and compare per reap.
    #[inline(always)]
    pub fn moved_by_another(&self, head: u32) -> bool {
        let left = self.ctx.user_head.load(Ordering::Relaxed);
        if left != HEAD_UNKNOWN && left != head {
            self.ctx.foreign_reaper.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Record where this reaper left `head` (see
    /// [`UserReaper::moved_by_another`]).
    #[inline(always)]
    pub fn leave_head(&self, head: u32) {
        self.ctx.user_head.store(head, Ordering::Relaxed);
    }
}

impl Drop for UserReaper<'_> {
    #[inline]
    fn drop(&mut self) {
        // USER first, then the owner (see `Context::try_user_reap`).
        // `fetch_and`, not a store: `io_destroy` may set DYING meanwhile.
        self.ctx
            .reap_state
            .fetch_and(!ReapState::USER, Ordering::Release);
        self.ctx.user_owner.store(0, Ordering::Release);
    }
}

impl<'a> UserReaper<'a> {
    /// Give the ring back but stay counted (as a kernel reaper) while the
    /// events just taken are translated (`pi::complete`): an `io_destroy`
    /// of the context then frees its PI records only after that (see
    /// [`Context::await_translations`]).  One atomic step turns USER into a
    /// KERNEL unit, so the count never lapses; this thread is marked as
    /// counted first and the owner cleared last, so that a signal handler
    /// on this thread always recognises itself (see `try_user_reap`).
    pub fn keep_counted(self) -> KernelReaper<'a> {
        let ctx = self.ctx;
        core::mem::forget(self);
        let counted = KernelReaper::mark(ctx);
        ctx.reap_state
            .fetch_add(ReapState::KERNEL - ReapState::USER, Ordering::Release);
        ctx.user_owner.store(0, Ordering::Release);
        counted
    }
}

/// Proof that this thread is counted as a kernel reaper of a context: inside
/// a reaping system call, or translating the events it took, until dropped.
pub struct KernelReaper<'a> {
    ctx: &'a Context,
    /// [`ReapState::KERNEL`], or [`ReapState::DEAD_KERNEL`] for a reap
    /// begun after the context was destroyed.
    unit: usize,
    /// [`COUNTED_ON`] before this one (restored on drop: a signal handler's
    /// reap nests inside its thread's).
    outer: usize,
}

thread_local! {
    /// The [`Context`] (its address) this thread is counted on as a kernel
    /// reaper, 0 if none: lets an `io_destroy` from a signal handler that
    /// interrupted this thread's reap of the same context see that waiting
    /// for the count would wait for itself.  Written and read only by its
    /// own thread and that thread's signal handlers: an atomic for
    /// signal-safety, not for sharing.
    static COUNTED_ON: AtomicUsize = const { AtomicUsize::new(0) };
}

impl<'a> KernelReaper<'a> {
    /// Mark this thread as counted on `ctx` (the count itself is the
    /// caller's step, made after this, so that the mark covers it).
    fn mark(ctx: &'a Context) -> KernelReaper<'a> {
        let me = ctx as *const Context as usize;
        let outer = COUNTED_ON.with(|c| c.swap(me, Ordering::Relaxed));
        KernelReaper {
            ctx,
            unit: ReapState::KERNEL,
            outer,
        }
    }

    /// Take the mark away without having been counted.
    fn unmark(self) {
        COUNTED_ON.with(|c| c.store(self.outer, Ordering::Relaxed));
        core::mem::forget(self);
    }
}

impl Drop for KernelReaper<'_> {
    #[inline]
    fn drop(&mut self) {
        self.ctx.reap_state.fetch_sub(self.unit, Ordering::Release);
        COUNTED_ON.with(|c| c.store(self.outer, Ordering::Relaxed));
    }
}

impl Context {
    const fn new() -> Context {
        Context {
            key: AtomicUsize::new(0),
            generation: AtomicU32::new(0),
            reap_state: AtomicUsize::new(0),
            ring_nr: AtomicU32::new(0),
            ring_id: AtomicU32::new(0),
            registered_seq: AtomicU64::new(0),
            destroyed: AtomicBool::new(false),
            user_owner: AtomicUsize::new(0),
            pi_format: AtomicU32::new(0),
            user_head: AtomicU32::new(HEAD_UNKNOWN),
            foreign_reaper: AtomicBool::new(false),
        }
    }

    /// `ring->nr` read at registration (the kernel's `nr_events`, to which
    /// it clamps a submission), or `None` if the ring was not understood.
    pub fn ring_slots(&self) -> Option<u32> {
        match self.ring_nr.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }

    /// Whether this thread holds USER (so it is a signal handler that
    /// interrupted this thread's own user-space reap).
    #[inline]
    fn held_by_me(&self) -> bool {
        // SAFETY: pthread_self has no preconditions.
        self.user_owner.load(Ordering::Relaxed) == unsafe { libc::pthread_self() } as usize
    }

    /// [`Context::try_user_reap`] for tests that own a free ring: retried
    /// for up to 20 s while it is refused.  Unit tests run in parallel in
    /// one process, and another test's reap of an unregistered context
    /// (counted in `UNCOUNTED_REAPERS`) keeps every user-space reaper off
    /// while it runs: a single try then fails now and then (a CI run saw a
    /// test get 0 holds in 400,000 tries).
    #[cfg(test)]
    pub fn user_reap_for_test(&self, ctx: usize) -> UserReaper<'_> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Ok(Some(r)) = self.try_user_reap(ctx) {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the ring stayed refused for 20 s"
            );
            std::thread::yield_now();
        }
    }

    /// Take the ring for a user-space reap of the context whose handle is
    /// `ctx`, if nobody else reaps it: no user reaper (waits for one to
    /// finish), no thread in a reaping system call, not being destroyed, and
    /// a ring we understood at registration.  `Ok(None)`: use the system
    /// call.  `Err(Reentrant)`: this thread already reaps this ring, or is
    /// taking or giving it back (we are in a signal handler that
    /// interrupted it).
    ///
    /// Two steps: first `user_owner` (0 -> this thread), the lock among user
    /// reapers, then the USER bit of `reap_state`, which excludes kernel
    /// reapers and `io_destroy`.  Owner first, so that from before this
    /// thread can hold USER until after it has given it back, `user_owner`
    /// names it: a signal handler on this thread always recognises itself
    /// (before, a signal between taking USER and storing the owner, or
    /// between clearing the owner and giving USER back, left the handler
    /// waiting for its own thread forever).
    #[inline]
    pub fn try_user_reap(&self, ctx: usize) -> Result<Option<UserReaper<'_>>, Reentrant> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() } as usize;
        let mut spins = 0;
        loop {
            match self
                .user_owner
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(o) if o == me => return Err(Reentrant),
                // A spurious CAS failure on 0.
                Err(0) => {}
                // Another user reaper: it finishes soon, then we try again,
                // unless kernel reapers are in or the context is dying (the
                // system call answers).
                Err(_) => {
                    let s = self.reap_state.load(Ordering::Relaxed);
                    if s & !ReapState::USER != 0 {
                        return Ok(None);
                    }
                    backoff(&mut spins)
                }
            }
        }
        loop {
            // SeqCst (the same instruction as Acquire on x86_64): orders
            // this against the load of UNCOUNTED_REAPERS below (see there).
            match self.reap_state.compare_exchange_weak(
                0,
                ReapState::USER,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(0) => {}
                // Kernel reapers, or dying: the system call answers.
                Err(_) => {
                    self.user_owner.store(0, Ordering::Release);
                    return Ok(None);
                }
            }
        }
        let guard = UserReaper {
            ctx: self,
            addr: ctx,
        };
        if UNCOUNTED_REAPERS.load(Ordering::SeqCst) != 0 {
            // A reaping system call counted on no slot is under way (see
            // `UncountedReaper`): it may be on this very ring.  The system
            // call answers; dropping the guard gives the ring back.
            return Ok(None);
        }
        // The slot may have been recycled for another context between the
        // caller's `lookup` and our CAS; check its key under the lock.
        // While we hold USER the key changes only by `unregister`: to
        // TOMBSTONE (the ring stays mapped until an `io_destroy` that waits
        // for us), or to CLAIMED and back (an older registration's
        // `unregister`, leaving ours).  So the address checked here stays
        // right for the whole hold, and `ring()` returns it rather than the
        // key (which may read CLAIMED meanwhile).
        Ok((self.names(ctx)
            && self.ring_nr.load(Ordering::Relaxed) != 0
            && !self.foreign_reaper.load(Ordering::Relaxed))
        .then_some(guard))
    }

    /// Count this thread as inside a reaping system call on the context
    /// at `ctx`, first waiting until no user-space reaper holds the ring:
    /// a [`ReapState::KERNEL`] unit, or once the kernel has destroyed the
    /// context a [`ReapState::DEAD_KERNEL`] one.  `Err(Stale)`: this slot
    /// no longer names `ctx` (looked up before that context was destroyed
    /// and forgotten); look it up again.  `Err(Reentrant)`: this thread
    /// holds the ring (a signal handler interrupted this thread's own
    /// user-space reap), waiting would never end.
    #[inline]
    pub fn enter_kernel_reap(&self, ctx: usize) -> Result<KernelReaper<'_>, NotCounted> {
        // Marked before it is counted (see `COUNTED_ON`).
        let mut marked = KernelReaper::mark(self);
        let mut spins = 0;
        let mut s = self.reap_state.load(Ordering::Relaxed);
        loop {
            if s & ReapState::USER != 0 {
                if self.held_by_me() {
                    marked.unmark();
                    return Err(NotCounted::Reentrant);
                }
                backoff(&mut spins);
                s = self.reap_state.load(Ordering::Relaxed);
                continue;
            }
            let dead = self.destroyed.load(Ordering::Acquire);
            marked.unit = if dead {
                ReapState::DEAD_KERNEL
            } else {
                ReapState::KERNEL
            };
            match self.reap_state.compare_exchange_weak(
                s,
                s + marked.unit,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {}
                Err(now) => {
                    s = now;
                    continue;
                }
            }
            // Counted.  A slot registered again for a new context since
            // `destroyed` was read: count as a live reaper instead.
            if dead && !self.destroyed.load(Ordering::Acquire) {
                s = self.reap_state.fetch_sub(marked.unit, Ordering::Release) - marked.unit;
                continue;
            }
            if !self.names(ctx) {
                drop(marked);
                return Err(NotCounted::Stale);
            }
            // The kernel is about to move `head` for us: where the last
            // user-space reaper left it no longer tells (see
            // `UserReaper::moved_by_another`).  Ordered by the count.
            self.user_head.store(HEAD_UNKNOWN, Ordering::Relaxed);
            return Ok(marked);
        }
    }

    /// Whether this slot is (still) the registration of the address `ctx`:
    /// an address has at most one entry (a new context at a destroyed
    /// one's address reuses it while it is there), so a reaper counted on
    /// a slot that names `ctx` is counted where that context's
    /// `io_destroy` waits (see [`Context::await_translations`]).  A slot
    /// looked up before its context was destroyed and forgotten names
    /// `ctx` no more, while a new context at that address may be
    /// registered in another slot.
    #[inline]
    pub fn names(&self, ctx: usize) -> bool {
        self.key.load(Ordering::Acquire) == ctx
    }

    /// After `io_destroy(2)` of this context returned 0, before its PI
    /// records are freed: wait until no thread is counted as a kernel
    /// reaper of it.  The kernel has woken every thread waiting in a reap
    /// of it (they return at once), but a thread whose reap already took
    /// events (from the ring or the system call) may not have translated
    /// them yet (`pi::complete`, run while still counted): freeing their
    /// records first would hand it the library's shadow events.  Reaps
    /// that start from now on get no event of this context and are not
    /// counted (`destroyed`), so the wait ends.  Not from a signal handler
    /// that interrupted this thread's own reap of it (that reap would wait
    /// for the handler): then the records go at once, as before.
    /// `Acquire` pairs with each reaper's `Release` decrement: what it did
    /// with the records is done before they are freed.
    pub fn await_translations(&self) {
        self.destroyed.store(true, Ordering::Release);
        let me = self as *const Context as usize;
        if COUNTED_ON.with(|c| c.load(Ordering::Relaxed)) == me {
            return;
        }
        let mut spins = 0;
        while self.reap_state.load(Ordering::Acquire) & ReapState::KERNEL_MASK != 0 {
            backoff(&mut spins);
        }
    }

    /// `io_destroy` is about to unmap the ring: stop new user-space reapers
    /// and wait for the current one to leave the ring.  `Err(Reentrant)`
    /// (and the context is left as it was): this thread holds the ring (a
    /// signal handler interrupted this thread's own user-space reap), so
    /// waiting would never end and unmapping would pull the ring from
    /// under the interrupted copy.
    pub fn begin_destroy(&self) -> Result<(), Reentrant> {
        let before = self
            .reap_state
            .fetch_or(ReapState::DYING, Ordering::Acquire);
        let mut spins = 0;
        while self.reap_state.load(Ordering::Acquire) & ReapState::USER != 0 {
            if self.held_by_me() {
                // Undo only our own mark: another thread's destroy may be
                // waiting for this very reap, with DYING set before ours.
                if before & ReapState::DYING == 0 {
                    self.abort_destroy();
                }
                return Err(Reentrant);
            }
            backoff(&mut spins);
        }
        Ok(())
    }

    /// This registration's number ([`REGISTRATIONS`] when it was made):
    /// tells a context from a later one at the same address.
    pub fn registration(&self) -> u64 {
        self.registered_seq.load(Ordering::Relaxed)
    }

    /// `io_destroy` failed and the context lives on: allow user reaping again.
    pub fn abort_destroy(&self) {
        self.reap_state
            .fetch_and(!ReapState::DYING, Ordering::Release);
    }
}

static SLOTS: [Context; CAPACITY] = [const { Context::new() }; CAPACITY];

/// Incremented in every child after `fork()`.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(1);
static ATFORK: Once = Once::new();

/// The fork witness: a word in a page of ours marked `MADV_WIPEONFORK`
/// (Linux 4.14+), [`WITNESS_SET`] in the process that set it.  Every child
/// created without `CLONE_VM` gets that page zeroed, whether or not
/// `pthread_atfork` handlers ran (`_Fork()`, `syscall(SYS_fork)` and
/// `clone(SIGCHLD)` skip them), so [`generation`] finds 0 there and does the
/// child handler's work before any ring is read.  Made when the library is
/// loaded ([`crate::at_load`]); null where the page cannot be had (the
/// `pthread_atfork` handler alone then covers glibc's `fork`).  The page is
/// never unmapped.
///
/// Ordering: the pointer is published with `Release` after the word was
/// set, and loaded with `Acquire`.  The word is only ever changed by the
/// thread that owns the transition: `WITNESS_SET` → 0 happens only in a new
/// child (the kernel's copy), 0 → [`WITNESS_BUSY`] | its thread id by one
/// CAS winner (or by glibc's atfork handler, alone in the child), and back
/// to `WITNESS_SET` by that thread after it bumped [`FORK_GENERATION`]
/// (`Release`), so a thread that waits for `WITNESS_SET` (`Acquire`) then
/// reads the new generation.  The word names the thread doing the work, in
/// memory no child inherits (no thread-local: in a `dlopen`ed library the
/// first touch of one may call `malloc`, which a raw-fork child must not),
/// so a signal handler on that thread knows not to wait for itself.
static WITNESS: AtomicPtr<AtomicU32> = AtomicPtr::new(core::ptr::null_mut());
const WITNESS_SET: u32 = 1;
/// Set, with the thread id below it, while that thread does the work.
const WITNESS_BUSY: u32 = 0x8000_0000;

/// This thread's id, as the witness holds it.
fn busy_here() -> u32 {
    WITNESS_BUSY | crate::sys::raw6(libc::SYS_gettid, 0, 0, 0, 0, 0, 0) as u32
}

/// Whether this thread is doing the fork witness's work (so this call is
/// a signal handler that interrupted it): PI paths then keep off the
/// record map, which that work is replacing.  Two loads unless a fork
/// just happened.
#[inline(always)]
pub fn fork_work_here() -> bool {
    let w = WITNESS.load(Ordering::Acquire);
    // SAFETY: a non-null witness points into our page, never unmapped.
    !w.is_null()
        && unsafe { (*w).load(Ordering::Acquire) } & WITNESS_BUSY != 0
        && fork_work_here_cold(w)
}

#[cold]
#[inline(never)]
fn fork_work_here_cold(w: *mut AtomicU32) -> bool {
    // SAFETY: as in `fork_work_here`.
    unsafe { (*w).load(Ordering::Acquire) == busy_here() }
}

/// Map the fork witness (once, from [`ensure_atfork`]).
fn make_witness() {
    let Some(p) = crate::sys::wipe_on_fork_page() else {
        return;
    };
    // SAFETY: our own page, readable, writable, zero-filled (a valid
    // AtomicU32), aligned, mapped for the life of the process.
    let w = unsafe { &*(p as *const AtomicU32) };
    w.store(WITNESS_SET, Ordering::Relaxed);
    WITNESS.store(p as *mut AtomicU32, Ordering::Release);
}

/// The current fork generation, after the child handler's work if this is
/// a child that was created without it (see [`WITNESS`]).  Two loads on
/// the lookup path: the witness pointer and its word.
#[inline(always)]
fn generation() -> u32 {
    let w = WITNESS.load(Ordering::Acquire);
    // SAFETY: a non-null witness points into our page, never unmapped.
    if !w.is_null() && unsafe { (*w).load(Ordering::Acquire) } != WITNESS_SET {
        // SAFETY: as above.
        return forked_without_handler(unsafe { &*w });
    }
    FORK_GENERATION.load(Ordering::Acquire)
}

/// In a child that `pthread_atfork` handlers did not run in: one thread
/// does their work; others (threads the child started before its first
/// call into the library) wait for it, without a lock, briefly.  A signal
/// handler that interrupted that work on its own thread cannot wait for
/// it: it gets generation 0, which no registration has, so it finds no
/// context and every call of its goes to the kernel (an independent
/// tester's `t1_sig_lazy.c`: the handler spun for ever).  Returns the
/// generation to use.
#[cold]
#[inline(never)]
fn forked_without_handler(w: &AtomicU32) -> u32 {
    let me = busy_here();
    let mut spins = 0;
    loop {
        match w.compare_exchange(0, me, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                fork_work(Some(w));
                break;
            }
            Err(v) if v == me => return 0,
            Err(WITNESS_SET) => break,
            Err(_) => backoff(&mut spins),
        }
    }
    FORK_GENERATION.load(Ordering::Acquire)
}

/// The `pthread_atfork` child handler: the child's only thread claims the
/// witness (zeroed in the child) and does the work.
extern "C" fn after_fork_in_child() {
    let w = WITNESS.load(Ordering::Acquire);
    // SAFETY: a non-null witness points into our page, never unmapped.
    let w = (!w.is_null()).then(|| unsafe { &*w });
    if let Some(w) = w {
        w.store(busy_here(), Ordering::Relaxed);
    }
    fork_work(w);
}

/// The child's work after a fork, by the thread that claimed the witness
/// `w` (if there is one), which it sets again at the end.
fn fork_work(w: Option<&AtomicU32>) {
    // The child's code after fork() sees the errno it had.
    let _errno = crate::sys::ErrnoGuard::save();
    FORK_GENERATION.fetch_add(1, Ordering::Release);
    // Memory marked MADV_DONTFORK is not in the child: trust no buffer the
    // kernel proved in the parent (see `proven`).
    crate::proven::forget_all();
    // The emulated-PI records: their map's lock may be held by a parent
    // thread, and their contexts are the parent's.
    crate::pi::after_fork_in_child();
    // Done for this process: the witness is set again, after the
    // generation moved on (see `WITNESS`).
    if let Some(w) = w {
        w.store(WITNESS_SET, Ordering::Release);
    }
}

/// Install the library's `pthread_atfork` child handler and map the fork
/// witness (once).  Done when the library is loaded ([`crate::at_load`]), so that
/// no `fork()` can catch another thread inside this `Once` (the child
/// would wait on it for ever at its first `io_setup`: an independent
/// tester's `t8_fork_first_setup.c`, 43 hangs in 400); the calls from
/// `io_setup` and the PI path only find it done (or do it, in a test
/// binary that does not run the library's constructor).
pub fn ensure_atfork() {
    // `Once` waits with a futex when contended, which may set errno.
    let _errno = crate::sys::ErrnoGuard::save();
    ATFORK.call_once(|| {
        make_witness();
        // SAFETY: registering a plain function with no preconditions; glibc
        // ties the registration to this DSO and drops it on dlclose.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
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
    probe(ctx).0
}

/// [`lookup`], and whether a slot on the way was [`CLAIMED`] (held by
/// `register`/`unregister` for a few instructions: it may be this
/// context's, whose key is put back right after).
#[inline(always)]
fn probe(ctx: usize) -> (Option<&'static Context>, bool) {
    if ctx <= CLAIMED {
        return (None, false);
    }
    let gen = generation();
    let mut i = home(ctx);
    let mut claimed = false;
    for _ in 0..CAPACITY {
        let slot = &SLOTS[i];
        let k = slot.key.load(Ordering::Acquire);
        if k == ctx {
            return (
                (slot.generation.load(Ordering::Relaxed) == gen).then_some(slot),
                claimed,
            );
        }
        if k == 0 {
            return (None, claimed);
        }
        claimed |= k == CLAIMED;
        i = (i + 1) & (CAPACITY - 1);
    }
    (None, claimed)
}

/// [`lookup`] for `io_destroy`, which must not miss a registration: a
/// miss would destroy the ring without stopping its user-space reapers.
/// While a slot on the way is [`CLAIMED`] (an older registration's
/// `unregister` holds this very slot for a few instructions), look again.
/// Bounded, for a signal handler that interrupted its own thread there.
#[inline]
pub fn lookup_settled(ctx: usize) -> Option<&'static Context> {
    let mut spins = 0;
    for _ in 0..100_000 {
        match probe(ctx) {
            (None, true) => backoff(&mut spins),
            (found, _) => return found,
        }
    }
    lookup(ctx)
}

/// Record a context that `io_setup` just created.
pub fn register(ctx: usize) {
    if ctx <= CLAIMED {
        return;
    }
    ensure_atfork();
    let gen = generation();
    if gen == 0 {
        // A signal handler inside the fork work (see
        // `forked_without_handler`): the context works, unregistered.
        return;
    }
    // An entry left under this address (a ring that lived here before and
    // was moved away, or is from before a fork) is reused, so the address
    // never has two entries.
    let mut i = home(ctx);
    let mut reuse = false;
    for _ in 0..CAPACITY {
        let k = SLOTS[i].key.load(Ordering::Acquire);
        if k == ctx {
            reuse = true;
            break;
        }
        if k == 0 {
            break;
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    if !reuse {
        i = home(ctx);
    }
    for _ in 0..CAPACITY {
        let slot = &SLOTS[i];
        let k = slot.key.load(Ordering::Acquire);
        let stale = k > CLAIMED && slot.generation.load(Ordering::Relaxed) != gen;
        if k == ctx || k == 0 || k == TOMBSTONE || stale {
            // Claim the slot with a sentinel (CAS: one registration per
            // slot) so no reader matches it while we initialise it, then
            // publish the key.
            if slot
                .key
                .compare_exchange(k, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                i = (i + 1) & (CAPACITY - 1);
                continue;
            }
            let (nr, id) = ring_geometry(ctx);
            if slot.generation.load(Ordering::Relaxed) != gen {
                // Left over from before a fork(): no thread of the parent
                // exists in this process, so nobody holds the state.
                slot.reap_state.store(0, Ordering::Relaxed);
                slot.user_owner.store(0, Ordering::Relaxed);
            } else {
                // Keep the count of threads still inside a system call on a
                // previous context of this slot (they decrement it when they
                // return; meanwhile the new context just uses the kernel).
                // USER cannot be set: the previous context's io_destroy
                // waited for it, and DYING kept new user reapers out.
                slot.reap_state
                    .fetch_and(!ReapState::DYING, Ordering::Relaxed);
            }
            slot.ring_nr.store(nr, Ordering::Relaxed);
            slot.ring_id.store(id, Ordering::Relaxed);
            slot.registered_seq.store(
                REGISTRATIONS.fetch_add(1, Ordering::AcqRel),
                Ordering::Relaxed,
            );
            slot.generation.store(gen, Ordering::Relaxed);
            slot.pi_format.store(0, Ordering::Relaxed);
            slot.user_head.store(HEAD_UNKNOWN, Ordering::Relaxed);
            slot.foreign_reaper.store(false, Ordering::Relaxed);
            slot.destroyed.store(false, Ordering::Release);
            slot.key.store(ctx, Ordering::Release);
            return;
        }
        i = (i + 1) & (CAPACITY - 1);
    }
    // Table full: the context works, through the kernel's path only.
}

/// `(ring->nr, ring->id)` of a ring the kernel just created at `ctx`, read
/// with a kernel-checked copy; `nr` is 0 if the header is not one whose
/// events we know how to read (then the context always uses the kernel).
fn ring_geometry(ctx: usize) -> (u32, u32) {
    let mut hdr = [0u8; core::mem::size_of::<AioRingHeader>()];
    if crate::sys::copy_from_user(&mut hdr, ctx) != 0 {
        return (0, 0);
    }
    let word = |off: usize| u32::from_ne_bytes(hdr[off..off + 4].try_into().unwrap());
    let nr = word(core::mem::offset_of!(AioRingHeader, nr));
    let id = word(core::mem::offset_of!(AioRingHeader, id));
    let understood = word(core::mem::offset_of!(AioRingHeader, magic)) == AIO_RING_MAGIC
        && word(core::mem::offset_of!(AioRingHeader, incompat_features)) == 0
        && word(core::mem::offset_of!(AioRingHeader, header_length)) as usize
            == core::mem::size_of::<AioRingHeader>()
        && (2..1 << 26).contains(&nr);
    if understood {
        // The whole ring, as the kernel maps it (whole pages).
        let len = (core::mem::size_of::<AioRingHeader>() + nr as usize * 32 + 4095) & !4095;
        crate::valgrind::declare_defined(ctx, len);
    }
    (if understood { nr } else { 0 }, id)
}

/// Forget a context after `io_destroy` (which succeeded, or said there is no
/// such context): the registration `seq` ([`Context::registration`], read
/// before the destroy) of `ctx`, unless a context created at the same
/// address meanwhile (by another thread) has replaced it.
pub fn unregister(ctx: usize, seq: u64) {
    if let Some(slot) = lookup(ctx) {
        // Hold the slot (as `register` does) while checking which
        // registration it has, so a new one cannot complete in between; a
        // new context's entry is put back (lookups miss it meanwhile and
        // take the kernel's path, for a few instructions).
        if slot
            .key
            .compare_exchange(ctx, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            let next = if slot.registration() == seq {
                TOMBSTONE
            } else {
                ctx
            };
            slot.key.store(next, Ordering::Release);
        }
    }
}

/// Call before `io_destroy` of an unregistered context; pass the result to
/// [`forget_moved`].
pub fn registrations_so_far() -> u64 {
    REGISTRATIONS.load(Ordering::Acquire)
}

/// The context `ctx` was destroyed but was not registered under that address:
/// it may be a ring that was moved with `mremap` (the kernel then follows the
/// ring, and `ctx` is its new address).  The ring id of a live context is
/// unique, so an entry with the same id under another address, registered
/// before the destroy started (`before`, from [`registrations_so_far`]; a
/// context created since may have been given the freed id), is a stale one
/// for the ring's old address: forget it, so it is never read.
pub fn forget_moved(ctx: usize, ring_id: u32, before: u64) {
    let gen = generation();
    for slot in SLOTS.iter() {
        let k = slot.key.load(Ordering::Acquire);
        if k > CLAIMED
            && k != ctx
            && slot.generation.load(Ordering::Relaxed) == gen
            && slot.ring_nr.load(Ordering::Relaxed) != 0
            && slot.ring_id.load(Ordering::Relaxed) == ring_id
            && slot.registered_seq.load(Ordering::Relaxed) < before
        {
            // Held by this very thread (a signal handler interrupting its
            // reap of that stale entry): leave the entry.
            if slot.begin_destroy().is_err() {
                continue;
            }
            let _ = slot
                .key
                .compare_exchange(k, TOMBSTONE, Ordering::AcqRel, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A signal handler that interrupts the fork witness's work on its own
    /// thread must not wait for it (it would wait for itself: an
    /// independent tester's `t1_sig_lazy.c` hung): it gets generation 0,
    /// which no registration has.  Played here with a witness of our own
    /// claimed by this thread; another thread's claim is waited for.
    #[test]
    fn a_handler_inside_the_fork_work_gets_generation_zero_at_once() {
        static W: AtomicU32 = AtomicU32::new(0);
        let (tx, rx) = std::sync::mpsc::channel();
        // In a thread of its own: were the call to wait for the witness,
        // it never would return, and the deadline below fails the test.
        std::thread::spawn(move || {
            W.store(busy_here(), Ordering::Relaxed);
            let _ = tx.send((forked_without_handler(&W), busy_here()));
        });
        let (got, claim) = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(got, 0);
        assert_eq!(
            W.load(Ordering::Relaxed),
            claim,
            "nothing done, the claim stays"
        );
        assert_ne!(claim, busy_here(), "another thread's id");
        // From another thread, that claim is another's work: waited for,
        // and done once it is set.
        let waiter = std::thread::spawn(|| forked_without_handler(&W));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        W.store(WITNESS_SET, Ordering::Release);
        assert_eq!(
            waiter.join().unwrap(),
            FORK_GENERATION.load(Ordering::Acquire)
        );
        // Generation 0 is never a registration's.
        assert_ne!(FORK_GENERATION.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn register_lookup_unregister() {
        let a = 0x7f00_dead_0000usize;
        let b = a + 0x1000;
        assert!(lookup(a).is_none());
        register(a);
        register(b);
        assert_eq!(lookup(a).unwrap().key.load(Ordering::Relaxed), a);
        assert_eq!(lookup(b).unwrap().key.load(Ordering::Relaxed), b);
        unregister(a, lookup(a).unwrap().registration());
        assert!(lookup(a).is_none());
        assert!(lookup(b).is_some());
        unregister(b, lookup(b).unwrap().registration());
        assert!(lookup(b).is_none());
        // An io_destroy that returns after a new context got the same
        // address (and registered) leaves the new one registered.
        register(a);
        let old = lookup(a).unwrap().registration();
        register(a);
        let new = lookup(a).unwrap().registration();
        assert_ne!(old, new);
        unregister(a, old);
        assert_eq!(lookup(a).map(Context::registration), Some(new));
        unregister(a, new);
        assert!(lookup(a).is_none());
        assert!(lookup(0).is_none());
        assert!(lookup(usize::MAX).is_none());
    }

    #[test]
    fn many_contexts_and_collisions() {
        let base = 0x5500_0000_0000usize;
        for i in 0..300 {
            register(base + i * 0x1000 * 1024);
        }
        for i in 0..300 {
            assert!(lookup(base + i * 0x1000 * 1024).is_some(), "{i}");
        }
        for i in 0..300 {
            let c = base + i * 0x1000 * 1024;
            unregister(c, lookup(c).unwrap().registration());
        }
        for i in 0..300 {
            assert!(lookup(base + i * 0x1000 * 1024).is_none());
        }
    }

    #[test]
    fn a_forked_child_does_not_see_its_parents_contexts() {
        let a = 0x6600_0000_0000usize;
        register(a);
        assert!(lookup(a).is_some());
        // SAFETY: the child only does atomic loads/stores on static memory
        // and then `_exit`s, which is async-signal-safe after fork.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let unseen = lookup(a).is_none();
            register(a);
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
        unregister(a, lookup(a).unwrap().registration());
    }

    /// A ring header the registration understands (nr 8), in our memory,
    /// registered at its address (`addr`); its registration there is
    /// forgotten when dropped.
    struct FakeRing {
        _mem: Vec<u64>,
        addr: usize,
    }

    impl FakeRing {
        fn registered() -> FakeRing {
            let mut mem = vec![0u64; 4096 / 8];
            // SAFETY: `mem` is 4096 zeroed bytes, 8-aligned; a header fits.
            let h = unsafe { &mut *(mem.as_mut_ptr() as *mut AioRingHeader) };
            h.nr = 8;
            h.magic = AIO_RING_MAGIC;
            h.header_length = core::mem::size_of::<AioRingHeader>() as u32;
            let addr = mem.as_ptr() as usize;
            register(addr);
            FakeRing { _mem: mem, addr }
        }
    }

    impl Drop for FakeRing {
        fn drop(&mut self) {
            if let Some(c) = lookup(self.addr) {
                unregister(self.addr, c.registration());
            }
        }
    }

    /// Regression: `io_destroy` from a signal handler that interrupted this
    /// thread's own user-space reap of the ring waited for that reap to
    /// finish, forever.  It now answers at once (`-EINTR` in
    /// `setup::destroy`) and leaves the context usable.
    #[test]
    fn destroying_a_ring_this_thread_holds_does_not_wait() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let c = lookup(a).unwrap();
        // Were it to wait, fail the whole test binary rather than hang.
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let watch = done.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(20));
            if !watch.load(Ordering::Relaxed) {
                eprintln!("begin_destroy waited for this thread's own reap");
                std::process::abort();
            }
        });
        let held = c.user_reap_for_test(a);
        assert!(c.begin_destroy().is_err(), "held by this thread");
        done.store(true, Ordering::Relaxed);
        drop(held);
        // Not left dying: a reap and a real destroy work afterwards.
        drop(c.user_reap_for_test(a));
        assert!(c.begin_destroy().is_ok());
        c.abort_destroy();
    }

    /// `await_translations` waits for another thread still counted on the
    /// context (a reap holding events it has not translated: user-space
    /// take or system call), returns at once for this thread's own count
    /// (a signal handler that interrupted its reap), and from then on new
    /// reaps of the destroyed context are not counted.
    #[test]
    fn destroy_waits_for_translating_reapers_but_not_for_itself() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let c = lookup(a).unwrap();
        // A user-space take kept counted, on another thread.
        let released = &AtomicBool::new(false);
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            s.spawn(move || {
                let held = c.user_reap_for_test(a);
                let counted = held.keep_counted();
                assert_eq!(c.user_owner.load(Ordering::Relaxed), 0, "owner cleared");
                assert_eq!(c.reap_state.load(Ordering::Relaxed), ReapState::KERNEL);
                tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
                released.store(true, Ordering::Relaxed);
                drop(counted);
            });
            rx.recv().unwrap();
            c.await_translations();
            assert!(
                released.load(Ordering::Relaxed),
                "returned before the reaper"
            );
        });
        assert_eq!(c.reap_state.load(Ordering::Relaxed), 0);
        // Destroyed: a new kernel reap counts as a dead one, which keeps
        // user-space reapers off but is not waited for.
        let dead = c.enter_kernel_reap(a).expect("counted");
        assert_eq!(c.reap_state.load(Ordering::Relaxed), ReapState::DEAD_KERNEL);
        assert!(
            c.try_user_reap(a).unwrap().is_none(),
            "no user reap meanwhile"
        );
        c.await_translations();
        drop(dead);
        assert_eq!(c.reap_state.load(Ordering::Relaxed), 0);
        drop(ring);
        // A slot that no longer names the address: stale, not counted.
        assert!(matches!(c.enter_kernel_reap(a), Err(NotCounted::Stale)));
        assert_eq!(c.reap_state.load(Ordering::Relaxed), 0);
        // Registered again: counted as live, and this thread's own count
        // does not make the wait wait for itself.
        let ring = FakeRing::registered();
        let c = lookup(ring.addr).unwrap();
        let mine = c.enter_kernel_reap(ring.addr).expect("counted");
        assert_eq!(c.reap_state.load(Ordering::Relaxed), ReapState::KERNEL);
        c.await_translations();
        drop(mine);
        assert_eq!(c.reap_state.load(Ordering::Relaxed), 0);
    }

    /// A reaping system call counted on no slot keeps user-space reapers
    /// off every ring while it runs (it may be on a ring registered after
    /// it looked: both would take the same events), and an address that
    /// is registered is not reaped uncounted.  Regression: a thread that
    /// reaped a destroyed handle, looked up before a new context was
    /// registered at that address, took events a user-space reaper of the
    /// new context took too (found by an independent stress test, ~7% of
    /// runs: the same PI completion delivered twice, once untranslated).
    #[test]
    fn uncounted_reaps_keep_user_reapers_off() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let c = lookup(a).unwrap();
        assert!(matches!(UncountedReaper::enter(a), Err(s) if core::ptr::eq(s, c)));
        let Ok(held) = UncountedReaper::enter(a + 4096 * 1024) else {
            panic!("an unregistered address found registered");
        };
        assert!(
            c.try_user_reap(a).unwrap().is_none(),
            "user reap while uncounted"
        );
        assert_eq!(c.reap_state.load(Ordering::Relaxed), 0, "USER given back");
        assert_eq!(c.user_owner.load(Ordering::Relaxed), 0, "owner given back");
        drop(held);
        drop(c.user_reap_for_test(a)); // a user reap afterwards
    }

    /// Regression: the refusal above cleared DYING even when another
    /// thread's destroy had set it first and was waiting for this very
    /// reap; once the reap ended, a new user-space reaper could take the
    /// ring while that destroy unmapped it.
    #[test]
    fn a_refused_destroy_leaves_another_threads_mark() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let c = lookup(a).unwrap();
        let held = c.user_reap_for_test(a);
        std::thread::scope(|s| {
            let other = s.spawn(|| c.begin_destroy().is_ok());
            while c.reap_state.load(Ordering::Acquire) & ReapState::DYING == 0 {
                std::thread::yield_now();
            }
            assert!(c.begin_destroy().is_err(), "held by this thread");
            assert_ne!(
                c.reap_state.load(Ordering::Acquire) & ReapState::DYING,
                0,
                "the other thread's destroy mark was cleared"
            );
            drop(held);
            assert!(other.join().unwrap(), "the other destroy goes ahead");
        });
        c.abort_destroy();
    }

    /// Regression: `io_destroy` looked its context up while an older
    /// registration's `unregister` held the slot (CLAIMED), missed it, and
    /// destroyed the ring without stopping its user-space reapers.
    #[test]
    fn destroy_finds_a_context_whose_slot_is_briefly_claimed() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let c = lookup(a).unwrap();
        c.key.store(CLAIMED, Ordering::Release);
        assert!(lookup(a).is_none(), "a plain lookup misses it meanwhile");
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(std::time::Duration::from_millis(5));
                c.key.store(a, Ordering::Release);
            });
            assert!(
                lookup_settled(a).is_some_and(|f| core::ptr::eq(f, c)),
                "io_destroy's lookup waits for the slot"
            );
        });
    }

    /// Regression: `UserReaper::ring` reloaded the slot's key, which an
    /// `unregister` of an older registration at the same address (an
    /// `io_destroy` returning after another thread's `io_setup` got the
    /// address back) sets to CLAIMED (2) for a few instructions: a
    /// user-space reap then read a "ring" at address 2.  Measured before the
    /// fix: 0.7% of holds saw it.
    #[test]
    fn a_held_ring_keeps_its_address_while_an_older_registration_is_forgotten() {
        let ring = FakeRing::registered();
        let a = ring.addr;
        let old = lookup(a).unwrap().registration();
        register(a); // the "new context" at the same address
        let c = lookup(a).unwrap();
        assert_ne!(c.registration(), old);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    unregister(a, old); // CLAIMED, then back to `a`
                }
            });
            // Until 100,000 holds (or 20 s: another test's uncounted reap
            // keeps user-space reapers off while it runs).
            let (mut held, mut wrong) = (0, 0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while held < 100_000 && std::time::Instant::now() < deadline {
                if let Ok(Some(r)) = c.try_user_reap(a) {
                    held += 1;
                    wrong += (r.ring() != (a, 8)) as u32;
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert_eq!(wrong, 0, "a held ring's address changed ({held} holds)");
            assert!(held > 1000, "the ring was held only {held} times");
        });
    }
}
