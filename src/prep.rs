//! The `io_prep_*` helpers: libaio's `static inline` functions, as real
//! functions.  Each zeroes the iocb and fills it, exactly as libaio's do.

use crate::abi::{io_callback_t, io_iocb_cmd, iocb, iovec, IOCB_FLAG_RESFD};
use core::ffi::{c_int, c_longlong, c_short, c_uint, c_ulong, c_void};

/// Zero the iocb and fill the common read/write fields.
pub fn rw(
    io: &mut iocb,
    cmd: io_iocb_cmd,
    fd: c_int,
    buf: *mut c_void,
    nbytes: c_ulong,
    offset: c_longlong,
) {
    *io = iocb::zeroed();
    io.aio_fildes = fd;
    io.aio_lio_opcode = cmd as c_short;
    io.aio_reqprio = 0;
    // Writing a union field is safe; only reading one needs `unsafe`.
    io.u.c.buf = buf;
    io.u.c.nbytes = nbytes;
    io.u.c.offset = offset;
}

/// Vectored variants: `buf` is the iovec array, `nbytes` the count.
pub fn rwv(
    io: &mut iocb,
    cmd: io_iocb_cmd,
    fd: c_int,
    iov: *const iovec,
    iovcnt: c_int,
    offset: c_longlong,
    flags: c_int,
) {
    // libaio stores the `int` count into `unsigned long` (sign-extending).
    rw(io, cmd, fd, iov as *mut c_void, iovcnt as c_ulong, offset);
    io.aio_rw_flags = flags as c_uint;
}

/// `io_prep_fsync`/`io_prep_fdsync`: only fd and opcode.
pub fn sync(io: &mut iocb, cmd: io_iocb_cmd, fd: c_int) {
    *io = iocb::zeroed();
    io.aio_fildes = fd;
    io.aio_lio_opcode = cmd as c_short;
    io.aio_reqprio = 0;
}

/// `io_prep_poll`.
pub fn poll(io: &mut iocb, fd: c_int, events: c_int) {
    *io = iocb::zeroed();
    io.aio_fildes = fd;
    io.aio_lio_opcode = io_iocb_cmd::IO_CMD_POLL as c_short;
    io.aio_reqprio = 0;
    io.u.poll.events = events;
}

/// `io_set_callback`: the callback travels in `data`.
pub fn set_callback(io: &mut iocb, cb: io_callback_t) {
    io.data = match cb {
        Some(f) => f as *mut c_void,
        None => core::ptr::null_mut(),
    };
}

/// `io_set_eventfd`: ORs in `IOCB_FLAG_RESFD` and sets `resfd`; the rest of
/// the iocb is left as it is.
pub fn set_eventfd(io: &mut iocb, eventfd: c_int) {
    // SAFETY: reading `u.c.flags` (for the OR): every member of the union
    // is plain integers and pointers, so any bit pattern is a valid `c_uint`.
    let flags = unsafe { io.u.c.flags };
    io.u.c.flags = flags | IOCB_FLAG_RESFD;
    io.u.c.resfd = eventfd as c_uint;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prep_zeroes_then_fills() {
        let mut io = iocb::zeroed();
        io.key = 77;
        io.u.c.flags = 5; // writing a union field is safe
        let mut buf = [0u8; 8];
        rw(
            &mut io,
            io_iocb_cmd::IO_CMD_PWRITE,
            3,
            buf.as_mut_ptr().cast(),
            8,
            4096,
        );
        assert_eq!(io.key, 0);
        assert_eq!(io.aio_lio_opcode, 1);
        assert_eq!(io.aio_fildes, 3);
        // SAFETY: test-only union reads.
        unsafe {
            assert_eq!(io.u.c.flags, 0);
            assert_eq!(io.u.c.nbytes, 8);
            assert_eq!(io.u.c.offset, 4096);
        }
        set_eventfd(&mut io, 9);
        // SAFETY: test-only union reads.
        unsafe {
            assert_eq!(io.u.c.flags, IOCB_FLAG_RESFD);
            assert_eq!(io.u.c.resfd, 9);
        }
        rwv(
            &mut io,
            io_iocb_cmd::IO_CMD_PREADV,
            4,
            core::ptr::null(),
            3,
            512,
            8,
        );
        assert_eq!(io.aio_rw_flags, 8);
        // SAFETY: test-only union read.
        assert_eq!(unsafe { io.u.c.nbytes }, 3);
        poll(&mut io, 5, 1);
        // SAFETY: test-only union read.
        assert_eq!(unsafe { io.u.poll.events }, 1);
        assert_eq!(io.aio_lio_opcode, 5);
    }
}
