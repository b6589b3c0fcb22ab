//! A view of the kernel's completion ring (`struct aio_ring`, `fs/aio.c`),
//! which the kernel maps into the process at the address of the context.
//!
//! The kernel writes events and then publishes `tail` (with `smp_wmb()`); a
//! reaper reads `tail`, copies events, then publishes `head`.  We read `head`
//! and `tail` with atomic loads (`Acquire` on `tail` pairs with the kernel's
//! write barrier before it stores `tail`).

use crate::abi::{AioRingHeader, AIO_RING_MAGIC};
use crate::context::Context;
use core::sync::atomic::{AtomicU32, Ordering};

/// A ring that belongs to a context registered in this process.
#[derive(Clone, Copy)]
pub struct Ring {
    hdr: *const AioRingHeader,
}

impl Ring {
    /// The ring of a registered context, if its header is one we understand
    /// (right magic, no incompatible features).
    #[inline]
    pub fn of(ctx: &Context) -> Option<Ring> {
        let hdr = ctx.ring_addr() as *const AioRingHeader;
        let ring = Ring { hdr };
        (ring
            .word(core::mem::offset_of!(AioRingHeader, magic))
            .load(Ordering::Relaxed)
            == AIO_RING_MAGIC
            && ring
                .word(core::mem::offset_of!(AioRingHeader, incompat_features))
                .load(Ordering::Relaxed)
                == 0)
            .then_some(ring)
    }

    #[inline(always)]
    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `hdr` is the address of a ring that the kernel mapped for a
        // context created by this library in this process and not destroyed
        // (guaranteed by `context::lookup`).  The header is 32 bytes of
        // naturally aligned u32s inside that mapping; the kernel writes them
        // concurrently, so we only access them as atomics.
        unsafe { &*((self.hdr as *const u8).add(offset) as *const AtomicU32) }
    }

    /// `head == tail`: nothing to reap right now.
    #[inline]
    pub fn is_empty(&self) -> bool {
        let tail = self
            .word(core::mem::offset_of!(AioRingHeader, tail))
            .load(Ordering::Acquire);
        let head = self
            .word(core::mem::offset_of!(AioRingHeader, head))
            .load(Ordering::Relaxed);
        head == tail
    }
}
