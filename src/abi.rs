//! The C ABI of libaio 0.3.113: `repr(C)` types, constants and layout asserts.
//!
//! `include/libaio.h` is generated from this file by cbindgen (see `build.rs`),
//! so every name here is a C name and is spelled exactly as in libaio's header.
//!
//! libaio builds its structures with the `PADDED*` macros so that each pointer
//! and `unsigned long` occupies 64 bits on every ABI, matching the kernel's
//! `struct iocb`/`struct io_event` (which use `__u64` everywhere).  We build the
//! same layout by construction with `cfg` on the padding fields:
//!
//! | libaio macro          | LE 64-bit  | LE 32-bit          | BE 64-bit          | BE 32-bit          |
//! |-----------------------|------------|--------------------|--------------------|--------------------|
//! | `PADDED(x, y)`        | `x, y`     | `x; unsigned y`    | `unsigned y; x`    | `unsigned y; x`    |
//! | `PADDEDptr(x, y)`     | `x`        | `x; unsigned y`    | `x`                | `unsigned y; x`    |
//! | `PADDEDul(x, y)`      | `ulong x`  | `ulong x; unsigned y` | `ulong x`       | `unsigned y; ulong x` |
//!
//! cbindgen turns the `cfg`s into `#if defined(LIBAIO_RS_32BIT)` /
//! `LIBAIO_RS_BIG_ENDIAN`, which the header derives from the compiler's own
//! `__SIZEOF_LONG__` and `__BYTE_ORDER__`.
#![allow(non_camel_case_types)]

use core::ffi::{c_int, c_long, c_longlong, c_short, c_uint, c_ulong, c_void};
use core::mem::{offset_of, size_of};

/// Opaque handle type behind `io_context_t`.  The value of an
/// `io_context_t` is the user-space address of the kernel's `struct aio_ring`.
// Not `repr(C)`: cbindgen then emits a forward declaration only.
pub struct io_context {
    _opaque: [u8; 0],
}

/// `typedef struct io_context *io_context_t;`
pub type io_context_t = *mut io_context;

/// Forward-declared `struct timespec` (from `<time.h>`); layout is libc's.
// Not `repr(C)`: cbindgen then emits a forward declaration only.
pub struct timespec {
    _opaque: [u8; 0],
}

/// Forward-declared `struct sockaddr`.
// Not `repr(C)`: cbindgen then emits a forward declaration only.
pub struct sockaddr {
    _opaque: [u8; 0],
}

/// Forward-declared `struct iovec` (from `<sys/uio.h>`); layout is libc's.
// Not `repr(C)`: cbindgen then emits a forward declaration only.
pub struct iovec {
    _opaque: [u8; 0],
}

/// `sigset_t` comes from `<signal.h>`, which the header includes.
pub type sigset_t = libc::sigset_t;

/// `io_iocb_cmd_t`: the opcodes of `iocb.aio_lio_opcode`.
///
/// 9 and 10 are the DIX-passthrough commands of the (unmerged) kernel patch
/// "aio/dio: enable DIX passthrough"; this library implements them itself
/// when the kernel does not (see `pi`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum io_iocb_cmd {
    IO_CMD_PREAD = 0,
    IO_CMD_PWRITE = 1,
    IO_CMD_FSYNC = 2,
    IO_CMD_FDSYNC = 3,
    IO_CMD_POLL = 5,
    IO_CMD_NOOP = 6,
    IO_CMD_PREADV = 7,
    IO_CMD_PWRITEV = 8,
    IO_CMD_PREADVM = 9,
    IO_CMD_PWRITEVM = 10,
}

/// Protection-information formats for `io_set_pi_format` (emulated PI).
/// Every field of a tuple is big-endian.
/// T10 DIF, Type 1: 8-byte tuples (bytes 0-1 guard, 2-3 app tag, 4-7
/// reference tag), CRC-16/T10-DIF guard, 32-bit reference tag = interval
/// number, checked (Linux's T10-DIF-TYPE1-CRC; the default, with 512-byte
/// intervals).
pub const IO_PI_T10_DIF_TYPE1_CRC: c_int = 1;
/// T10 DIF, Type 3: as Type 1 but the reference tag is not checked (and
/// reads return 0 there).
pub const IO_PI_T10_DIF_TYPE3_CRC: c_int = 3;
/// NVMe 16b guard, Type 1: 16-byte tuples (bytes 0-7 guard, 8-9 app tag,
/// 10-15 reference tag; no storage tag, as Linux's `crc64_pi_tuple`),
/// CRC-64/NVME guard, 48-bit reference tag = interval number, checked.
pub const IO_PI_NVME_TYPE1_CRC64: c_int = 0x11;
/// NVMe 16b guard, Type 3: the reference tag is not checked; the escape
/// needs app tag 0xFFFF and all 48 reference tag bits set.
pub const IO_PI_NVME_TYPE3_CRC64: c_int = 0x13;

/// `typedef enum io_iocb_cmd io_iocb_cmd_t;`
pub type io_iocb_cmd_t = io_iocb_cmd;

/// `u.poll`: `PADDED(int events, __pad1)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_iocb_poll {
    #[cfg(target_endian = "big")]
    pub __pad1: c_uint,
    pub events: c_int,
    #[cfg(all(target_endian = "little", target_pointer_width = "64"))]
    pub __pad1: c_int,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
}

/// `u.saddr`: result code is the length of the sockaddr, or -errno.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_iocb_sockaddr {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    pub addr: *mut sockaddr,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub len: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad2: c_uint,
}

/// `u.c`: read, write, fsync and the vectored commands (`buf` = iovec array,
/// `nbytes` = iovec count).  Result code is the amount transferred or -errno.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_iocb_common {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    pub buf: *mut c_void,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub nbytes: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub offset: c_longlong,
    pub __pad3: c_longlong,
    /// `IOCB_FLAG_RESFD` (1 << 0), `IOCB_FLAG_IOPRIO` (1 << 1).
    pub flags: c_uint,
    pub resfd: c_uint,
}

/// `u.v`: a view of the vectored commands.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_iocb_vector {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    pub vec: *const iovec,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub nr: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub offset: c_longlong,
}

/// The anonymous union `u` of `struct iocb` (C needs a name; libaio's is
/// anonymous, so this one is named after its member).
#[repr(C)]
#[derive(Clone, Copy)]
pub union io_iocb_u {
    pub c: io_iocb_common,
    pub v: io_iocb_vector,
    pub poll: io_iocb_poll,
    pub saddr: io_iocb_sockaddr,
}

/// `struct iocb`: 64 bytes, byte-identical to the kernel's `struct iocb`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct iocb {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    /// Returned in the completion event.
    pub data: *mut c_void,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    #[cfg(target_endian = "little")]
    pub key: c_uint,
    /// `RWF_*` flags such as `RWF_NOWAIT`.
    pub aio_rw_flags: c_uint,
    #[cfg(target_endian = "big")]
    pub key: c_uint,
    pub aio_lio_opcode: c_short,
    pub aio_reqprio: c_short,
    pub aio_fildes: c_int,
    pub u: io_iocb_u,
}

/// `struct io_event`: 32 bytes, byte-identical to the kernel's.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct io_event {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    pub data: *mut c_void,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad1: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    pub obj: *mut iocb,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad2: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad3: c_uint,
    pub res: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad3: c_uint,
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __pad4: c_uint,
    pub res2: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __pad4: c_uint,
}

/// The sigset argument of `io_pgetevents(2)`: `{ sigmask pointer, size }`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_sigset {
    pub ss: c_ulong,
    pub ss_len: c_ulong,
}

/// The layout a 64-bit kernel's compat `io_pgetevents` expects from 32-bit callers.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct io_sigset_compat {
    #[cfg(all(target_endian = "big", target_pointer_width = "32"))]
    pub __ss_pad: c_uint,
    pub ss: c_ulong,
    #[cfg(all(target_endian = "little", target_pointer_width = "32"))]
    pub __ss_pad: c_uint,
    pub ss_len: c_ulong,
}

/// `typedef void (*io_callback_t)(io_context_t ctx, struct iocb *iocb, long res, long res2);`
pub type io_callback_t = Option<unsafe extern "C" fn(io_context_t, *mut iocb, c_long, c_long)>;

/// `iocb.u.c.flags`: `resfd` is valid (the kernel signals that eventfd on completion).
pub const IOCB_FLAG_RESFD: c_uint = 1 << 0;

/// The kernel's `struct aio_ring` header, found at the address of an
/// `io_context_t` (see `fs/aio.c`).  The `io_event` array starts at
/// `header_length` bytes from the start.
#[repr(C)]
pub struct AioRingHeader {
    pub id: u32,
    pub nr: u32,
    pub head: u32,
    pub tail: u32,
    pub magic: u32,
    pub compat_features: u32,
    pub incompat_features: u32,
    pub header_length: u32,
}

/// `AIO_RING_MAGIC` from `fs/aio.c`.
pub const AIO_RING_MAGIC: u32 = 0xa10a_10a1;

impl iocb {
    /// An all-zero iocb, which is what every `io_prep_*` starts from.
    pub const fn zeroed() -> iocb {
        // SAFETY: every field of `iocb` is an integer, a raw pointer or a union
        // of those, for which the all-zero bit pattern is a valid value.
        unsafe { core::mem::zeroed() }
    }
}

impl io_event {
    /// An all-zero event.
    pub const fn zeroed() -> io_event {
        // SAFETY: integers and raw pointers only; all-zero is valid.
        unsafe { core::mem::zeroed() }
    }
}

// ---- Layout asserts: these must match libaio.h and the kernel's aio_abi.h. ----
const _: () = {
    assert!(size_of::<iocb>() == 64);
    assert!(size_of::<io_event>() == 32);
    assert!(size_of::<io_iocb_common>() == 40);
    assert!(size_of::<io_iocb_vector>() == 24);
    assert!(size_of::<io_iocb_poll>() == 8);
    assert!(size_of::<io_iocb_sockaddr>() == 16);
    assert!(size_of::<io_iocb_u>() == 40);
    assert!(size_of::<AioRingHeader>() == 32);
    // Kernel struct iocb: aio_data@0 aio_key@8 aio_rw_flags@12 (LE),
    // aio_lio_opcode@16 aio_reqprio@18 aio_fildes@20 aio_buf@24 aio_nbytes@32
    // aio_offset@40 aio_reserved2@48 aio_flags@56 aio_resfd@60.
    assert!(offset_of!(iocb, aio_lio_opcode) == 16);
    assert!(offset_of!(iocb, aio_reqprio) == 18);
    assert!(offset_of!(iocb, aio_fildes) == 20);
    assert!(offset_of!(iocb, u) == 24);
    assert!(offset_of!(io_iocb_common, offset) == 16);
    assert!(offset_of!(io_iocb_common, __pad3) == 24);
    assert!(offset_of!(io_iocb_common, flags) == 32);
    assert!(offset_of!(io_iocb_common, resfd) == 36);
    assert!(offset_of!(io_iocb_vector, offset) == 16);
    assert!(offset_of!(AioRingHeader, magic) == 16);
    assert!(offset_of!(AioRingHeader, header_length) == 28);
};

#[cfg(all(target_endian = "little", target_pointer_width = "64"))]
const _: () = {
    assert!(offset_of!(iocb, data) == 0);
    assert!(offset_of!(iocb, key) == 8);
    assert!(offset_of!(iocb, aio_rw_flags) == 12);
    assert!(offset_of!(io_iocb_common, buf) == 0);
    assert!(offset_of!(io_iocb_common, nbytes) == 8);
    assert!(offset_of!(io_event, data) == 0);
    assert!(offset_of!(io_event, obj) == 8);
    assert!(offset_of!(io_event, res) == 16);
    assert!(offset_of!(io_event, res2) == 24);
    assert!(size_of::<io_sigset>() == 16);
    assert!(size_of::<io_sigset_compat>() == 16);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_are_libaios_and_the_dix_patchs() {
        assert_eq!(io_iocb_cmd::IO_CMD_PREAD as i32, 0);
        assert_eq!(io_iocb_cmd::IO_CMD_POLL as i32, 5);
        assert_eq!(io_iocb_cmd::IO_CMD_PWRITEV as i32, 8);
        assert_eq!(io_iocb_cmd::IO_CMD_PREADVM as i32, 9);
        assert_eq!(io_iocb_cmd::IO_CMD_PWRITEVM as i32, 10);
    }
}
