//! Records of emulated PI iocbs: what the reaper needs to translate a
//! shadow's completion and the registry of live records.
//!
//! # Shared state and its synchronisation
//!
//! * `LIVE`: a mutex-protected map from shadow-iocb address to its
//!   record (owned, as a raw `Box` pointer).  Inserted before the shadow is
//!   submitted, removed by the one reaper that got its event (or by
//!   `io_destroy`'s clean-up, or on a failed submission).  A record is only
//!   dereferenced by whoever removed it from the map, or under the lock.
//!   In a child after `fork()` ([`after_fork_in_child`]) the lock may
//!   have been held by a parent thread that does not exist there (and the
//!   parent's records belong to contexts the child does not have): the
//!   child moves the parent's map aside (`PARENT_MAPS`: kept, never freed)
//!   and writes a new, empty, unlocked map in its place, without
//!   allocating or freeing (a raw-fork child may have inherited `malloc`'s
//!   lock held).  While no PI iocb is in flight the map holds no node at
//!   all (`Live`'s drop).  Done by the fork handler while the
//!   child has one thread, or by the one thread that wins the fork witness
//!   (`context`), while any other thread of the child waits for it before
//!   it can reach a record (every path to the map starts with a registry
//!   lookup, which waits), and a signal handler of the working thread is
//!   kept off by `interrupted_pi_code`.
//! * `IN_FLIGHT`: number of records in `LIVE`.  The reap hook's only
//!   cost for plain users is one `Relaxed` load of it.  `Relaxed` suffices:
//!   the increment precedes (in program order) the `io_submit` of the
//!   shadow, and a reaper can only obtain the shadow's event after the
//!   kernel posted it, which is ordered after that submission by the
//!   kernel's own locking; so by coherence a reaper holding a shadow event
//!   reads a value that includes its record's increment (the matching
//!   decrement is done by that same reaper, later).
//! * `RECORD_SEQ`: numbers records in creation order, so that `io_destroy`
//!   frees only records created before it began (see
//!   `complete::forget_context`).  `Relaxed` suffices: a record of a
//!   context created at the same address after the destroy began is made
//!   by a thread that learned that address from an `io_setup(2)` which
//!   returned after the destroyed ring was unmapped, inside the destroy's
//!   system call, after its `RECORD_SEQ` load; that load therefore
//!   happens-before the record's `fetch_add`, which by coherence returns a
//!   larger value.

use crate::abi::iocb;
use crate::pi::format::Format;
use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Threads now holding (or waiting for) the record map's lock ([`Live`]):
/// while it is 0 a reap need not look at [`HOLDS_LIVE`].
static LOCKING_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread holds, or is taking, the record map's lock.  Written
    /// and read only by its own thread (and that thread's signal
    /// handlers): an atomic for signal-safety, not for sharing.
    static HOLDS_LIVE: AtomicBool = const { AtomicBool::new(false) };
}

/// The record map, locked; marks this thread as holding it (see
/// [`interrupted_pi_code`]) from before it asks for the lock until after
/// it has given it back.
pub(super) struct Live {
    // Declared first, dropped first: the lock is released before the mark
    // is taken away.
    guard: MutexGuard<'static, BTreeMap<usize, RecordPtr>>,
    _mark: LockMark,
}

impl Drop for Live {
    /// A map left empty gives back its root node (a `BTreeMap` keeps it
    /// when its last entry is removed): so an idle emulation holds no
    /// memory, and a child made by `fork()` while no PI iocb was in flight
    /// inherits nothing it must leave behind (see [`after_fork_in_child`]),
    /// nor does a program that unloads the library (`ctests/pi_dlclose.c`,
    /// which LeakSanitizer checks).  At QD1 this is one more `free` per
    /// operation, and one more `malloc` at the next submission, beside the
    /// dozen the PI path makes (~10 ns each here: RESULTS.md).  Runs before
    /// the fields are dropped, under the lock.
    fn drop(&mut self) {
        if self.guard.is_empty() {
            // Dropping an empty map without a root frees nothing.
            *self.guard = BTreeMap::new();
        }
    }
}

impl core::ops::Deref for Live {
    type Target = BTreeMap<usize, RecordPtr>;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl core::ops::DerefMut for Live {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

struct LockMark;

impl LockMark {
    fn set() -> LockMark {
        LOCKING_THREADS.fetch_add(1, Ordering::Relaxed);
        HOLDS_LIVE.with(|b| b.store(true, Ordering::Relaxed));
        // A signal handler runs on this thread between two instructions:
        // program order is all it needs, provided the compiler does not
        // move the locking above these stores.
        compiler_fence(Ordering::SeqCst);
        LockMark
    }
}

impl Drop for LockMark {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        HOLDS_LIVE.with(|b| b.store(false, Ordering::Relaxed));
        LOCKING_THREADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether this thread is a signal handler that interrupted its own code
/// while it held (or was taking) the record map's lock: it must then not
/// lock it (a deadlock).  Plain users pay one relaxed load, and two for the fork witness.  Sound without
/// more ordering: the interrupted code's own earlier increment and store
/// (see [`LockMark`]) are visible to a handler on the same thread.  The
/// map is never locked twice by one thread otherwise, so the mark is never
/// nested.
#[inline(always)]
pub(crate) fn interrupted_pi_code() -> bool {
    (LOCKING_THREADS.load(Ordering::Relaxed) != 0 && HOLDS_LIVE.with(|b| b.load(Ordering::Relaxed)))
        // Or a handler that interrupted its thread's work after a fork,
        // which is replacing the map (see `context::fork_work_here`).
        || crate::context::fork_work_here()
}

/// Number of live records (see the module documentation).
pub(super) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Next record number (see the module documentation).
pub(super) static RECORD_SEQ: AtomicU64 = AtomicU64::new(0);

/// The record map's type.
type Map = Mutex<BTreeMap<usize, RecordPtr>>;

/// Live records by shadow-iocb address, in a cell so that a child after
/// `fork()` can write a fresh map over it (see the module documentation).
struct LiveMap(UnsafeCell<Map>);
// SAFETY: the map is only reached through its mutex, except by
// `after_fork_in_child`, which runs while no other thread can reach it.
unsafe impl Sync for LiveMap {}

static LIVE: LiveMap = LiveMap(UnsafeCell::new(Mutex::new(BTreeMap::new())));

/// How many generations of inherited maps a process keeps (see
/// [`PARENT_MAPS`]).
const PARENT_SLOTS: usize = 8;

/// In a child after `fork()`: the maps its ancestors left with PI iocbs in
/// flight, kept (never used, never dropped) so that their nodes and the
/// records in them stay reachable.  Leak checkers (valgrind,
/// LeakSanitizer) then count them as memory the library still holds, not
/// as lost.  A slot per generation, filled in order and inherited with the
/// rest of memory, so a grandchild keeps its grandparent's map as well as
/// its parent's; past [`PARENT_SLOTS`] generations that kept one, the last
/// slot is reused (the map in it is then lost to the checkers).  An idle
/// map has no node at all (see `Live`'s drop) and takes no slot.
struct ParentMaps(UnsafeCell<[core::mem::MaybeUninit<Map>; PARENT_SLOTS]>);
// SAFETY: written only by `after_fork_in_child` (no other thread can run
// then) and never read.
unsafe impl Sync for ParentMaps {}

static PARENT_MAPS: ParentMaps = ParentMaps(UnsafeCell::new(
    [const { core::mem::MaybeUninit::uninit() }; PARENT_SLOTS],
));
/// How many slots of [`PARENT_MAPS`] hold a map (at most
/// [`PARENT_SLOTS`]).  Only `after_fork_in_child` touches it, while the
/// child has no other thread: `Relaxed`.
static PARENT_MAPS_USED: AtomicUsize = AtomicUsize::new(0);

/// In a child after `fork()` (called by the library's `pthread_atfork`
/// child handler, or by the fork witness's winner in a child made without
/// it): start with no records and a lock nobody holds.  The parent's
/// records are left alone (kept in [`PARENT_MAPS`], never freed): a thread
/// of the parent may have been changing the map.  No allocation nor free:
/// `malloc`'s lock may be held by a parent thread too (after `_Fork()`,
/// `syscall(SYS_fork)`).
pub(crate) fn after_fork_in_child() {
    IN_FLIGHT.store(0, Ordering::Relaxed);
    // SAFETY: no other thread of this process can be using the map now,
    // nor a signal handler of this one (`interrupted_pi_code` keeps them
    // off while the fork work runs; module documentation).  The old map is
    // moved bit for bit out of `LIVE`, and the new one needs no allocation.
    let parents: Map = unsafe { core::ptr::read(LIVE.0.get()) };
    // SAFETY: as above; `LIVE` now holds a map that was moved out, so it is
    // overwritten without being dropped.
    unsafe { core::ptr::write(LIVE.0.get(), Mutex::new(BTreeMap::new())) };
    // Whether the parent's map may hold memory.  Its lock free means no
    // parent thread was changing it, so it is whole, and an empty one has no
    // node (`Live`'s drop frees the root at each unlock): nothing to keep.
    // Held (by a parent thread that does not exist here), it may be half
    // changed, and is kept whatever it says.  The lock taken here is on our
    // own moved copy, and released at once (no waiter: no system call).
    let idle = match parents.try_lock() {
        Ok(map) => map.is_empty(),
        Err(_) => false,
    };
    if idle {
        // No node, so no memory: nothing to drop, and `forget` keeps even
        // that from calling anything.
        core::mem::forget(parents);
    } else {
        let used = PARENT_MAPS_USED.load(Ordering::Relaxed);
        let slot = used.min(PARENT_SLOTS - 1);
        // SAFETY: as above (only this function touches `PARENT_MAPS`);
        // `slot` is in bounds.  A map already in the last slot is
        // overwritten without being dropped (see `PARENT_MAPS`).  Volatile:
        // a static that is never read is one the optimiser may drop with
        // every store to it (it did: the nodes were still lost).
        unsafe {
            let slots = &mut *PARENT_MAPS.0.get();
            core::ptr::write_volatile(slots[slot].as_mut_ptr(), parents);
        }
        PARENT_MAPS_USED.store((used + 1).min(PARENT_SLOTS), Ordering::Relaxed);
    }
    // Other threads of the parent were counted; they do not exist here.
    // (The forking thread itself never forks while holding the map.)
    LOCKING_THREADS.store(0, Ordering::Relaxed);
}

/// An owned `Box<Record>` kept as a raw pointer, so that the kernel may
/// write to the shadow iocb inside it (its `aio_key`) without aliasing a
/// Rust reference.
pub(super) struct RecordPtr(pub(super) *mut Record);
// SAFETY: a record is owned by exactly one party at a time (the map under
// its lock, or whoever removed it), so moving it between threads is fine.
unsafe impl Send for RecordPtr {}

pub(super) fn live() -> Live {
    let mark = LockMark::set();
    // The library aborts on panic, so the lock cannot really be poisoned.
    Live {
        guard: live_map().lock().unwrap_or_else(|e| e.into_inner()),
        _mark: mark,
    }
}

/// The record map.
fn live_map() -> &'static Map {
    // SAFETY: shared access to the mutex; only `after_fork_in_child`
    // writes the cell, while nobody can be here (module documentation).
    unsafe { &*LIVE.0.get() }
}

/// The `aio_data` of a record's shadow, so that its event is told from
/// the event of a caller's plain iocb at the same address (a program may
/// free an iocb once submitted, and the record may then be allocated
/// there): all high bits set, never a user-space pointer nor a small
/// number, and unique among live records.
pub(super) fn shadow_tag(seq: u64) -> usize {
    !(seq as usize)
}

/// What to do with a shadow's completion.
pub(super) enum Kind {
    /// Compute PI over the data read into the caller's buffers.
    Read {
        /// The caller's data iovecs (our copy; the shadow points at it).
        data: Vec<libc::iovec>,
        /// The caller's PI buffer (proven writable at submit) and the
        /// bytes of it that the tuples of the whole data take.
        pi_addr: usize,
        pi_len: usize,
        format: Format,
        /// Interval number of the first interval.
        seed: u64,
    },
    /// Data was verified in place and is written from the caller's
    /// buffers.
    Write {
        /// The caller's data iovecs (our copy; the shadow points at it).
        data: Vec<libc::iovec>,
    },
    /// Nothing is transferred, and the event reports `errno` (negative):
    /// `-EILSEQ` for a write whose PI does not verify; `-EFAULT` for
    /// caller memory the kernel cannot show usable at submit (a write's
    /// data or tuples, a read's PI buffer), which the kernel reports in
    /// the event for the same plain I/O (a plain write from an unreadable
    /// buffer is accepted and completes with `-EFAULT`), so the rest of
    /// the batch goes in.  The shadow is the iocb's read or write (`read`)
    /// of no iovec: see `submit::fill_shadow`.
    Failed { errno: i32, read: bool },
}

/// One emulated iocb.
pub(super) struct Record {
    /// The iocb the kernel knows; its address is the event's `obj`.
    pub(super) shadow: iocb,
    /// The context it was submitted to, and its number in `RECORD_SEQ`
    /// (for `io_destroy`'s clean-up).
    pub(super) ctx: usize,
    pub(super) seq: u64,
    /// The caller's iocb and `aio_data`, restored into the event.
    pub(super) user_iocb: *mut iocb,
    pub(super) user_data: *mut c_void,
    pub(super) kind: Kind,
}
