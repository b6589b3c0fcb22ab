//! T10 protection information (PI) for `IO_CMD_PREADVM`/`IO_CMD_PWRITEVM`.
//!
//! The iovec array of such an iocb is data followed by one PI buffer.  A
//! kernel with DIX passthrough does the work itself; everywhere else the
//! library emulates it ([`emulate`]): writes are verified (application →
//! library) before any byte is written, reads return PI computed over the
//! data actually read.  The `format` module holds the tuple formats.
//!
//! Hooks, each costing plain users at most one relaxed load or nothing:
//! * `submit::submit` calls [`emulate::submit_rest`] only when the kernel
//!   accepted fewer iocbs than asked;
//! * every reaped batch goes through [`complete`];
//! * `setup::destroy` calls [`context_destroyed`].

pub mod emulate;
pub mod format;

use crate::abi::{
    io_event, IO_PI_NVME_TYPE1_CRC64, IO_PI_NVME_TYPE3_CRC64, IO_PI_T10_DIF_TYPE1_CRC,
    IO_PI_T10_DIF_TYPE3_CRC,
};
use crate::context::{self, Context};
use core::sync::atomic::Ordering;
use format::{Format, Guard, PiType};

/// The reap hook: translate the emulated-PI events among the `n` events
/// just stored in `events` for context `ctx`.  Call after every successful
/// reap, whichever path (system call or user-space ring) produced it.
#[inline(always)]
pub fn complete(_ctx: usize, events: *mut io_event, n: i32) {
    emulate::complete(events, n)
}

/// The `io_destroy` hook (after the kernel's successful destroy).
#[inline]
pub fn context_destroyed(ctx: usize) {
    emulate::forget_context(ctx)
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
