//! T10 protection information (PI) for `IO_CMD_PREADVM`/`IO_CMD_PWRITEVM`.
//!
//! The iovec array of such an iocb is data followed by one PI buffer.  A
//! kernel with DIX passthrough does the work itself; everywhere else the
//! library emulates it (below): writes are verified (application →
//! library) before any byte is written, reads return PI computed over the
//! data actually read.  The `format` module holds the tuple formats.
//!
//! Hooks, each costing plain users at most one relaxed load or nothing:
//! * `submit::submit` calls [`submit::submit_rest`] only when the kernel
//!   accepted fewer iocbs than asked;
//! * every reaped batch goes through [`complete()`];
//! * `setup::destroy` calls [`context_destroyed`].
//!
//! # Emulation: how an emulated iocb travels
//!
//! Through the kernel's own AIO ring ([`submit`], [`record`], [`mod@complete`]):
//!
//! 1. `submit::submit` issues the plain `io_submit(2)`.  Only if the
//!    kernel accepted fewer than `nr` does [`submit::submit_rest`] run.  A
//!    kernel that accepted opcodes 9/10 (DIX passthrough) never gets here.
//! 2. [`submit::submit_rest`] first looks whether the refused iocb can be
//!    seen, in pages the kernel has just read (the usual array of iocbs):
//!    not a PI iocb → the kernel's count stands, and a plain batch has cost
//!    one system call, as with libaio; a PI iocb → emulated at once.
//!    Otherwise it learns the error of the first refused iocb by submitting
//!    the rest again; if it is `-EINVAL` and the iocb is a PI iocb, or the
//!    refused iocb was seen to be one, it validates it (the
//!    patch's rules), builds a record and submits a *shadow* iocb instead:
//!    `PREADV` into the caller's data buffers, `PWRITEV` from them once
//!    verified, or — for a write whose PI does not verify — a `PWRITEV`
//!    of no iovecs, which the kernel checks like the real write (flags,
//!    priority, eventfd), completes at once without touching the file and
//!    becomes `res = -EILSEQ`.  Each shadow carries the caller's fd,
//!    offset, flags and eventfd.  The PI iocbs that directly follow it in
//!    the batch are read (kernel-checked), validated and submitted with it,
//!    as one batch of shadows.  Then it goes on with the rest of the batch.
//! 3. Every batch of reaped events passes through [`complete()`], which
//!    recognises shadow events by their `obj` (the address of a shadow iocb
//!    in a live record), computes read PI into the caller's PI buffer, and
//!    rewrites the event to `obj` = caller's iocb, `data` = caller's data.
//!
//! Ordering, blocking, threads and exactly-once delivery are the kernel's:
//! each shadow completion is handed to exactly one reaper, which alone
//! removes its record and translates it.
//!
//! # Caller memory
//!
//! Nothing the kernel has not shown readable in the same `io_submit` is
//! read directly ([`caller::CallerMem`]):
//! * the refused iocb and its slot in the array: the kernel has just read
//!   them, so their pages are readable;
//! * the iocbs after it and the iovec arrays: read from pages already
//!   proven in this call, or proven first (a few ranges:
//!   `MADV_POPULATE_READ` each; many: one `process_vm_readv` copy),
//!   `-EFAULT` otherwise;
//! * a write's data is not copied: its tuples and data are proven
//!   readable by the kernel's mapping table where they lie in plain
//!   writable memory (`crate::vma`: one query for the whole mapping);
//!   otherwise every page of them not proven yet (a buffer shared by
//!   several writes of the batch once) is read by the kernel, 8 bytes of it, in a system call that
//!   changes nothing (`sys::page_readable`; where that cannot answer, one
//!   `process_vm_writev` of the tuples and a byte per page, and then
//!   `sys::probe_readable` and the copy above: `CallerMem::read_and_probe`),
//!   the tuples are copied, then verified
//!   directly against the caller's buffers, and the shadow `PWRITEV`
//!   writes from those same buffers.  Every tuple is verified against the
//!   data as it is at `io_submit`, before any byte is written; like any
//!   `O_DIRECT` write, data the application changes while its write is in
//!   flight is written as changed.  (Only an interval straddling two
//!   iovecs is copied, into a stack buffer, to be checksummed.)
//! * a read's data lands in the caller's buffers (checked by the kernel);
//!   its PI buffer is proven writable at submit (the kernel ORs 0 into a
//!   word of each page, `sys::touch_writable`; or a kernel-checked write
//!   of zeros) and filled directly when the
//!   completion is reaped: tuples for the intervals read, zeros after,
//!   once the kernel has shown the data read readable and the PI buffer
//!   writable again (its mapping table, or a load or store on each page:
//!   `CallerMem::prove_readable`, `CallerMem::prove_writable_now`): the caller may have unmapped or
//!   protected either meanwhile, which gives `-EFAULT`, not a crash.
//! * where the kernel cannot show a write's data or tuples, or a read's PI
//!   buffer, usable at submit, the iocb is accepted, transfers nothing
//!   and completes with `-EFAULT` (`record::Kind::Failed`), as the kernel
//!   fails the same plain I/O in its event; only a bad iocb or iovec
//!   array is refused at `io_submit`, as the kernel refuses it.
//!
//! A run of PI iocbs is checked as a whole (each kind of check once for
//! all of them) and its shadows go out in order, in groups split before
//! the verification of the run's 1st, 2nd, 3rd, 5th, 9th, ... write
//! ([`submit`]).
//!
//! The default format and the others are in [`crate::pi::format`]; the
//! format is chosen per context (`io_set_pi_format`) and fixed for an iocb
//! when it is submitted.

pub mod caller;
pub mod complete;
pub mod format;
pub mod record;
pub mod submit;

use crate::abi::{
    io_event, IO_PI_NVME_TYPE1_CRC64, IO_PI_NVME_TYPE3_CRC64, IO_PI_T10_DIF_TYPE1_CRC,
    IO_PI_T10_DIF_TYPE3_CRC,
};
use crate::context::{self, Context};
use core::sync::atomic::Ordering;
use format::{Format, Guard, PiType};

/// The reap hook: translate the emulated-PI events among the `n` events
/// just stored in `events`.  Call after every successful reap, whichever
/// path (system call or user-space ring) produced it.
#[inline(always)]
pub fn complete(events: *mut io_event, n: i32) {
    complete::complete(events, n)
}

/// Whether any emulated PI iocb is in flight in this process (its record
/// not yet taken by a reap): one relaxed load, what [`complete()`] checks.
#[inline(always)]
pub fn in_flight() -> bool {
    record::IN_FLIGHT.load(Ordering::Relaxed) != 0
}

/// Whether this thread is a signal handler that interrupted its own code
/// while it held the PI record map (see `record::interrupted_pi_code`): a
/// reap must then take no event, since it could not translate it.
#[inline(always)]
pub fn interrupted_pi_code() -> bool {
    record::interrupted_pi_code()
}

/// The `fork()` child hook (see `record::after_fork_in_child`).
pub fn after_fork_in_child() {
    record::after_fork_in_child()
}

/// The number to pass to [`context_destroyed`], read before the
/// `io_destroy(2)` system call.
#[inline]
pub fn records_so_far() -> u64 {
    complete::records_so_far()
}

/// The `io_destroy` hook (after the kernel's successful destroy); `before`
/// from [`records_so_far`].
#[inline]
pub fn context_destroyed(ctx: usize, before: u64) {
    complete::forget_context(ctx, before)
}

/// Encode a C format constant and interval for `Context::pi_format`
/// (0 = the default format).
fn encode(format: i32, interval: u32) -> Option<u32> {
    let known = [
        IO_PI_T10_DIF_TYPE1_CRC,
        IO_PI_T10_DIF_TYPE3_CRC,
        IO_PI_NVME_TYPE1_CRC64,
        IO_PI_NVME_TYPE3_CRC64,
    ];
    if !known.contains(&format) || !(interval == 512 || interval == 4096) {
        return None;
    }
    Some(format as u32 | (interval.trailing_zeros() << 8))
}

fn decode(v: u32) -> Format {
    if v == 0 {
        return Format::DEFAULT;
    }
    let (guard, pi_type) = match (v & 0xFF) as i32 {
        IO_PI_T10_DIF_TYPE3_CRC => (Guard::Crc16, PiType::Type3),
        IO_PI_NVME_TYPE1_CRC64 => (Guard::Crc64, PiType::Type1),
        IO_PI_NVME_TYPE3_CRC64 => (Guard::Crc64, PiType::Type3),
        _ => (Guard::Crc16, PiType::Type1),
    };
    Format {
        guard,
        pi_type,
        interval: 1 << (v >> 8),
    }
}

/// The format in force for a context.
pub fn format_of(c: &Context) -> Format {
    decode(c.pi_format.load(Ordering::Relaxed))
}

/// `io_set_pi_format(ctx, format, interval)`: choose the PI format that
/// emulated PI iocbs submitted to `ctx` from now on use.  `-EINVAL` for an
/// unknown format, an interval other than 512/4096, or a context not
/// created by this library in this process.
pub fn set_format(ctx: usize, format: i32, interval: u32) -> i32 {
    let Some(c) = context::lookup(ctx) else {
        return -libc::EINVAL;
    };
    match encode(format, interval) {
        Some(v) => {
            c.pi_format.store(v, Ordering::Relaxed);
            0
        }
        None => -libc::EINVAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_codes_round_trip() {
        assert_eq!(decode(0), Format::DEFAULT);
        for (f, g, t) in [
            (IO_PI_T10_DIF_TYPE1_CRC, Guard::Crc16, PiType::Type1),
            (IO_PI_T10_DIF_TYPE3_CRC, Guard::Crc16, PiType::Type3),
            (IO_PI_NVME_TYPE1_CRC64, Guard::Crc64, PiType::Type1),
            (IO_PI_NVME_TYPE3_CRC64, Guard::Crc64, PiType::Type3),
        ] {
            for iv in [512u32, 4096] {
                let d = decode(encode(f, iv).unwrap());
                assert_eq!((d.guard, d.pi_type, d.interval), (g, t, iv as usize));
            }
        }
        assert_eq!(encode(2, 512), None);
        assert_eq!(encode(IO_PI_T10_DIF_TYPE1_CRC, 1024), None);
        assert_eq!(encode(IO_PI_T10_DIF_TYPE1_CRC, 0), None);
        assert_eq!(
            set_format(0x1234_5000, IO_PI_T10_DIF_TYPE1_CRC, 512),
            -libc::EINVAL
        );
    }
}
