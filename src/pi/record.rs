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
//! * `IN_FLIGHT`: number of records in `LIVE`.  The reap hook's only
//!   cost for plain users is one `Relaxed` load of it.  `Relaxed` suffices:
//!   the increment precedes (in program order) the `io_submit` of the
//!   shadow, and a reaper can only obtain the shadow's event after the
//!   kernel posted it, which is ordered after that submission by the
//!   kernel's own locking; so by coherence a reaper holding a shadow event
//!   reads a value that includes its record's increment (the matching
//!   decrement is done by that same reaper, later).

use crate::abi::iocb;
use crate::pi::format::Format;
use core::ffi::c_void;
use core::sync::atomic::AtomicUsize;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Number of live records (see the module documentation).
pub(super) static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Live records by shadow-iocb address.
pub(super) static LIVE: Mutex<BTreeMap<usize, RecordPtr>> = Mutex::new(BTreeMap::new());

/// An owned `Box<Record>` kept as a raw pointer, so that the kernel may
/// write to the shadow iocb inside it (its `aio_key`) without aliasing a
/// Rust reference.
pub(super) struct RecordPtr(pub(super) *mut Record);
// SAFETY: a record is owned by exactly one party at a time (the map under
// its lock, or whoever removed it), so moving it between threads is fine.
unsafe impl Send for RecordPtr {}

pub(super) fn live() -> MutexGuard<'static, BTreeMap<usize, RecordPtr>> {
    // The library aborts on panic, so the lock cannot really be poisoned.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
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
    /// The PI did not verify: report `-EILSEQ`.
    Rejected,
}

/// One emulated iocb.
pub(super) struct Record {
    /// The iocb the kernel knows; its address is the event's `obj`.
    pub(super) shadow: iocb,
    /// The context it was submitted to (for `io_destroy`'s clean-up).
    pub(super) ctx: usize,
    /// The caller's iocb and `aio_data`, restored into the event.
    pub(super) user_iocb: *mut iocb,
    pub(super) user_data: *mut c_void,
    pub(super) kind: Kind,
}
