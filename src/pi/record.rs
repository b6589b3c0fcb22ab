//! Records of emulated PI iocbs: what the reaper needs to translate a
//! shadow's completion, the registry of live records, and the write bounce
//! buffers.
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
//! * `POOL`: recycled bounce allocations, under their own mutex.

use crate::abi::iocb;
use crate::pi::format::Format;
use core::ffi::c_void;
use core::ptr::NonNull;
use core::sync::atomic::AtomicUsize;
use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

/// Alignment of write bounce buffers (satisfies any `O_DIRECT` rule).
const BOUNCE_ALIGN: usize = 4096;

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
        /// The caller's PI buffer (validated writable at submit).
        pi_addr: usize,
        format: Format,
        /// Interval number of the first interval.
        seed: u64,
    },
    /// Data was verified and written from `bounce`.
    Write { _bounce: Bounce },
    /// The PI did not verify: report `-EILSEQ`.
    Rejected,
}

/// One emulated iocb.
pub(super) struct Record {
    /// The iocb the kernel knows; its address is the event's `obj`.
    pub(super) shadow: iocb,
    /// The iovec of a write's shadow (the bounce buffer).
    pub(super) one_iov: libc::iovec,
    /// The context it was submitted to (for `io_destroy`'s clean-up).
    pub(super) ctx: usize,
    /// The caller's iocb and `aio_data`, restored into the event.
    pub(super) user_iocb: *mut iocb,
    pub(super) user_data: *mut c_void,
    pub(super) kind: Kind,
}

/// An aligned heap allocation (4 KiB aligned, power-of-two size).
struct RawBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain bytes with a single owner.
unsafe impl Send for RawBuf {}

impl Drop for RawBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `Bounce::new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Recycled bounce allocations: a stream of PI writes reuses warm,
/// already-faulted buffers instead of allocating and zeroing each time.
/// At most [`POOL_MAX`] buffers of at most [`POOL_BUF_MAX`] bytes are kept.
/// The mutex is taken once per emulated write (never on plain paths).
static POOL: Mutex<Vec<RawBuf>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 32;
const POOL_BUF_MAX: usize = 4 << 20;

/// An aligned buffer for `O_DIRECT` writes; its allocation goes back to
/// `POOL` when dropped.
pub(super) struct Bounce {
    raw: Option<RawBuf>,
    len: usize,
}

impl Bounce {
    pub(super) fn new(len: usize) -> Option<Bounce> {
        let size = len.max(BOUNCE_ALIGN).checked_next_power_of_two()?;
        if size <= POOL_BUF_MAX {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|b| b.layout.size() == size) {
                let raw = pool.swap_remove(i);
                return Some(Bounce {
                    raw: Some(raw),
                    len,
                });
            }
        }
        let layout = Layout::from_size_align(size, BOUNCE_ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size.  Zeroed so that it is
        // initialised memory before we form a slice over it (recycled
        // buffers hold earlier data, which is initialised too).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(Bounce {
            raw: Some(RawBuf { ptr, layout }),
            len,
        })
    }

    pub(super) fn as_ptr(&self) -> *mut u8 {
        self.raw.as_ref().expect("live bounce").ptr.as_ptr()
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len <= layout.size()` initialised bytes we own.
        unsafe { core::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl Drop for Bounce {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            if raw.layout.size() <= POOL_BUF_MAX {
                let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
                if pool.len() < POOL_MAX {
                    pool.push(raw);
                }
                // Otherwise `raw` is freed here, after the guard... order
                // does not matter: dealloc takes no lock of ours.
            }
        }
    }
}
