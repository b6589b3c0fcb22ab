//! The kernel's completion ring (`struct aio_ring`, `fs/aio.c`), which the
//! kernel maps into the process at the address of the context.
//!
//! ```text
//! offset 0   id nr head tail magic compat_features incompat_features header_length
//! offset 32  struct io_event[nr]        (header_length == 32 == one io_event)
//! ```
//!
//! Protocol (Linux 6.x): `aio_complete` writes the event at `tail`, issues
//! `smp_wmb()`, then stores the new `tail` (< `nr`).  A reaper reads `head`
//! and `tail`, copies the events in between, then stores the new `head`; the
//! kernel reads `head` (when it refills its free request count) to know which
//! slots it may write again.  It never has more than `nr - 1` events in
//! flight, so the slots in `[head, tail)` are not written while we copy them.
//!
//! Here: `tail` is loaded with `Acquire` (pairs with the kernel's write
//! barrier before its `tail` store), and `head` is stored with `Release`
//! (our copies of the slots complete before the kernel may see them free).
//! Exclusion between reapers is not this module's business: callers hold a
//! [`crate::context::UserReaper`] (or own the memory, in tests).

use crate::abi::{io_event, AioRingHeader, AIO_RING_MAGIC};
use core::mem::{offset_of, size_of};
use core::sync::atomic::{AtomicU32, Ordering};

/// A mapped ring of `nr` slots.
#[derive(Clone, Copy)]
pub struct Ring {
    base: *mut u8,
    nr: u32,
    /// The ring's `id` as registered: a header whose `id` or `nr` differ
    /// is not that ring (see [`Ring::registered`]).
    id: u32,
}

/// The ring's header is not what it was when the context was created (the
/// program wrote into it, or it is not a ring we understand): let the kernel
/// answer.
#[derive(Debug, PartialEq, Eq)]
pub struct NotUnderstood;

impl Ring {
    /// The registered ring at `addr` with `nr` slots, whose header said
    /// `id` and `nr` at `io_setup`: a header that no longer does is not
    /// read from (the kernel answers).  The kernel never changes either;
    /// memory that now holds other bytes at that address does, as where a
    /// program moved the ring with `mremap` and mapped something ring-like
    /// at the old address (an independent tester's differential fuzzer:
    /// events "taken" from those bytes, where libaio's system call got
    /// -EINVAL).
    ///
    /// # Safety
    /// `addr` must be the start of a mapping of at least
    /// `size_of::<AioRingHeader>() + nr * size_of::<io_event>()` bytes,
    /// 4-byte aligned, that stays mapped while the `Ring` is used, and that
    /// nothing else but the kernel (and the caller) writes meanwhile.
    #[inline(always)]
    pub unsafe fn registered(addr: usize, nr: u32, id: u32) -> Ring {
        Ring {
            base: addr as *mut u8,
            nr,
            id,
        }
    }

    #[inline(always)]
    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: by `Ring::registered`'s contract the header is mapped; its fields
        // are naturally aligned u32s that the kernel writes concurrently, so
        // we only access them as atomics.
        unsafe { &*(self.base.add(offset) as *const AtomicU32) }
    }

    /// `(head, tail)` if the header still describes the ring we registered.
    #[inline(always)]
    fn head_tail(&self) -> Result<(u32, u32), NotUnderstood> {
        let magic = self.word(offset_of!(AioRingHeader, magic));
        let incompat = self.word(offset_of!(AioRingHeader, incompat_features));
        if magic.load(Ordering::Relaxed) != AIO_RING_MAGIC || incompat.load(Ordering::Relaxed) != 0
        {
            return Err(NotUnderstood);
        }
        if self
            .word(offset_of!(AioRingHeader, id))
            .load(Ordering::Relaxed)
            != self.id
            || self
                .word(offset_of!(AioRingHeader, nr))
                .load(Ordering::Relaxed)
                != self.nr
        {
            return Err(NotUnderstood);
        }
        let head = self.head_now();
        let tail = self
            .word(offset_of!(AioRingHeader, tail))
            .load(Ordering::Acquire);
        if head >= self.nr || tail >= self.nr {
            // Written by someone else; the kernel copes (it reduces modulo
            // nr), we do not guess.
            return Err(NotUnderstood);
        }
        Ok((head, tail))
    }

    /// `(head, tail, events ready between them)`, as [`Ring::head_tail`].
    #[inline(always)]
    fn head_tail_ready(&self) -> Result<(u32, u32, u32), NotUnderstood> {
        let (head, tail) = self.head_tail()?;
        let ready = if tail >= head {
            tail - head
        } else {
            self.nr - head + tail
        };
        Ok((head, tail, ready))
    }

    /// The event slots, right after the 32-byte header (`header_length`,
    /// checked at registration) inside the mapping.
    #[inline(always)]
    fn slots(&self) -> *const io_event {
        // SAFETY: `Ring::registered`'s contract: the mapping holds the header and
        // `nr` events after it.
        unsafe { self.base.add(size_of::<AioRingHeader>()) as *const io_event }
    }

    /// libaio's test for an empty ring (`aio_ring_is_empty`): the magic,
    /// and `head == tail`, whatever else the header says (a header we
    /// would not reap from, say with `incompat_features` set, can still be
    /// empty for libaio's peek: an independent tester's differential).
    #[inline]
    pub fn empty_for_libaio(&self) -> bool {
        self.word(offset_of!(AioRingHeader, magic))
            .load(Ordering::Relaxed)
            == AIO_RING_MAGIC
            && self.head_now()
                == self
                    .word(offset_of!(AioRingHeader, tail))
                    .load(Ordering::Acquire)
    }

    /// The `head` word as it is now, unchecked ([`Ring::head_tail`] checks
    /// it against `nr`; [`Ring::empty_for_libaio`] compares it with `tail`,
    /// [`crate::context::UserReaper::moved_by_another`] with where this
    /// library's last reaper left it).  `Relaxed`: the last
    /// store to it was our own, or the kernel's, ordered by the caller's
    /// reaper lock (a foreign reaper's store is only compared, never
    /// trusted to publish anything).
    #[inline(always)]
    pub fn head_now(&self) -> u32 {
        self.word(offset_of!(AioRingHeader, head))
            .load(Ordering::Relaxed)
    }

    /// Number of events ready to be reaped.
    #[inline]
    pub fn ready(&self) -> Result<u32, NotUnderstood> {
        Ok(self.head_tail_ready()?.2)
    }

    /// Copy up to `max` ready events to `out`, oldest first, and consume
    /// them (store the new `head`).  Returns how many were copied, and how
    /// many more were ready (left in the ring because `max` was reached).
    ///
    /// # Safety
    /// The caller is the only reaper of this ring for the whole call, and
    /// `out` is valid for writes of `max` events (for caller memory: proven
    /// writable by the kernel, see `proven`) and does not overlap the ring.
    #[inline]
    pub unsafe fn take(
        &self,
        out: *mut io_event,
        max: usize,
    ) -> Result<(usize, usize), NotUnderstood> {
        let (head, tail, ready) = self.head_tail_ready()?;
        let ready = ready as usize;
        if ready == 0 || max == 0 {
            return Ok((0, ready));
        }
        let slots = self.slots();
        let (head, nr) = (head as usize, self.nr as usize);
        // Up to two runs: [head, tail) or [head, nr) then [0, tail).
        let first_end = if tail as usize >= head {
            tail as usize
        } else {
            nr
        };
        let first = (first_end - head).min(max);
        // SAFETY: slots [head, head + first) are inside the ring and hold
        // published events (before `tail`, which we loaded with Acquire) that
        // the kernel does not write until we move `head` past them; `out`
        // has room for `max >= first` events and does not overlap the ring
        // (the caller's contract).
        unsafe { core::ptr::copy_nonoverlapping(slots.add(head), out, first) };
        let mut taken = first;
        if first_end == nr && taken < max {
            let second = (tail as usize).min(max - taken);
            // SAFETY: as above, for slots [0, second) after the wrap.
            unsafe { core::ptr::copy_nonoverlapping(slots, out.add(taken), second) };
            taken += second;
        }
        let new_head = ((head + taken) % nr) as u32;
        self.word(offset_of!(AioRingHeader, head))
            .store(new_head, Ordering::Release);
        Ok((taken, ready - taken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::io_event;

    /// A ring in ordinary memory, playing the kernel's part by hand.
    struct FakeRing {
        mem: Vec<io_event>, // mem[0] is the header
        nr: u32,
    }

    impl FakeRing {
        fn new(nr: u32) -> FakeRing {
            let mut f = FakeRing {
                mem: vec![io_event::zeroed(); nr as usize + 1],
                nr,
            };
            let h = f.hdr();
            h.nr = nr;
            h.magic = AIO_RING_MAGIC;
            h.header_length = 32;
            f
        }
        fn hdr(&mut self) -> &mut AioRingHeader {
            // SAFETY: mem[0] is 32 bytes, aligned for u32s.
            unsafe { &mut *(self.mem.as_mut_ptr() as *mut AioRingHeader) }
        }
        fn ring(&mut self) -> Ring {
            // SAFETY: the Vec holds header + nr events and outlives the
            // Ring.  Its header's `id` is 0 (zeroed), its `nr` set in `new`.
            unsafe { Ring::registered(self.mem.as_mut_ptr() as usize, self.nr, 0) }
        }
        /// The kernel's aio_complete: event at tail, then tail + 1.
        fn complete(&mut self, tag: u64) {
            let tail = self.hdr().tail;
            self.mem[tail as usize + 1].res = tag as _;
            self.hdr().tail = (tail + 1) % self.nr;
        }
    }

    #[test]
    fn wraps_many_times_with_partial_copies_at_the_wrap_point() {
        let nr = 7u32;
        let mut f = FakeRing::new(nr);
        let (mut next_tag, mut expect) = (0u64, 0u64);
        let mut out = [io_event::zeroed(); 8];
        for round in 0..5000usize {
            // Keep at most nr - 1 in the ring, as the kernel does.
            let ready = f.ring().ready().unwrap() as usize;
            let add = (round * 5 + 3) % nr as usize;
            for _ in 0..add.min(nr as usize - 1 - ready) {
                f.complete(next_tag);
                next_tag += 1;
            }
            let ready = f.ring().ready().unwrap() as usize;
            let want = (round % 4) + 1;
            // SAFETY: we are the only reaper; out has room for 8.
            let (n, left) = unsafe { f.ring().take(out.as_mut_ptr(), want) }.unwrap();
            assert_eq!(n, want.min(ready), "round {round}");
            assert_eq!(left, ready - n, "round {round}");
            for ev in &out[..n] {
                assert_eq!(ev.res, expect, "round {round}");
                expect += 1;
            }
            assert!(f.hdr().head < nr);
        }
        assert!(expect > 5 * nr as u64 * 100, "the head wrapped many times");
    }

    #[test]
    fn a_corrupted_header_is_not_read() {
        let mut f = FakeRing::new(4);
        f.complete(1);
        f.hdr().head = 9;
        let mut out = [io_event::zeroed(); 4];
        // SAFETY: as above.
        let r = unsafe { f.ring().take(out.as_mut_ptr(), 4) };
        assert_eq!(r, Err(NotUnderstood));
        f.hdr().head = 0;
        f.hdr().magic = 0;
        assert_eq!(f.ring().ready(), Err(NotUnderstood));
        f.hdr().magic = AIO_RING_MAGIC;
        f.hdr().incompat_features = 1;
        assert_eq!(f.ring().ready(), Err(NotUnderstood));
        f.hdr().incompat_features = 0;
        // SAFETY: as above.
        let r = unsafe { f.ring().take(out.as_mut_ptr(), 4) };
        assert_eq!(r, Ok((1, 0)));
        assert_eq!(out[0].res, 1);
        f.complete(2);
        f.complete(3);
        // SAFETY: as above.
        let r = unsafe { f.ring().take(out.as_mut_ptr(), 1) };
        assert_eq!(r, Ok((1, 1)), "one taken, one left");
        // SAFETY: as above.
        let r = unsafe { f.ring().take(out.as_mut_ptr(), 0) };
        assert_eq!(r, Ok((0, 1)));
    }
}
