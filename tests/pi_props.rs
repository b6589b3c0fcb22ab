//! End-to-end property test of emulated PI I/O: random data, offsets,
//! iovec splits and formats, through real O_DIRECT files.  Written PI is
//! generated independently (bit-at-a-time CRCs); read PI must equal an
//! independent computation over the data read; a random corruption must
//! give -EILSEQ and leave the file unchanged.
//!
//! Run with `cargo test --release --test pi_props`.

use aio::abi::{
    io_context_t, io_event, iocb, IO_PI_NVME_TYPE1_CRC64, IO_PI_NVME_TYPE3_CRC64,
    IO_PI_T10_DIF_TYPE1_CRC, IO_PI_T10_DIF_TYPE3_CRC,
};
use aio::ffi;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8BB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn crc64(data: &[u8]) -> u64 {
    let mut crc: u64 = !0;
    for &b in data {
        crc ^= b as u64;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x9A6C_9329_AC4B_C9B5
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[derive(Clone, Copy, Debug)]
struct Fmt {
    code: i32,
    interval: usize,
}

impl Fmt {
    fn wide(&self) -> bool {
        self.code == IO_PI_NVME_TYPE1_CRC64 || self.code == IO_PI_NVME_TYPE3_CRC64
    }
    fn type1(&self) -> bool {
        self.code == IO_PI_T10_DIF_TYPE1_CRC || self.code == IO_PI_NVME_TYPE1_CRC64
    }
    fn tuple(&self) -> usize {
        if self.wide() {
            16
        } else {
            8
        }
    }
    /// Independent tuples for `data` at `offset` with app tag `app`.
    fn tuples(&self, data: &[u8], offset: u64, app: u16) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, chunk) in data.chunks(self.interval).enumerate() {
            let seed = offset / self.interval as u64 + i as u64;
            let r = if self.type1() { seed } else { 0 };
            if self.wide() {
                out.extend_from_slice(&crc64(chunk).to_be_bytes());
                out.extend_from_slice(&app.to_be_bytes());
                out.extend_from_slice(&(r & 0xFFFF_FFFF_FFFF).to_be_bytes()[2..]);
            } else {
                out.extend_from_slice(&crc16(chunk).to_be_bytes());
                out.extend_from_slice(&app.to_be_bytes());
                out.extend_from_slice(&(r as u32).to_be_bytes());
            }
        }
        out
    }
}

/// 4 KiB-aligned buffer.
struct Buf {
    ptr: *mut u8,
    len: usize,
    layout: std::alloc::Layout,
}
impl Buf {
    fn new(len: usize) -> Buf {
        let layout = std::alloc::Layout::from_size_align(len.max(1), 4096).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Buf { ptr, len, layout }
    }
    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: our allocation of `len` initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Split `[0, len)` of `buf` into random 512-multiple iovecs (O_DIRECT
/// alignment), some empty, then append the PI iovec.
fn split(rng: &mut Rng, buf: &mut Buf, len: usize, pi: &mut Buf) -> Vec<libc::iovec> {
    let blocks = len / 512;
    let mut cuts: Vec<usize> = (0..rng.below(5))
        .map(|_| rng.below(blocks as u64 + 1) as usize)
        .collect();
    cuts.push(0);
    cuts.push(blocks);
    cuts.sort();
    let mut v: Vec<libc::iovec> = cuts
        .windows(2)
        .map(|w| libc::iovec {
            // SAFETY: inside the buffer.
            iov_base: unsafe { buf.ptr.add(w[0] * 512) }.cast(),
            iov_len: (w[1] - w[0]) * 512,
        })
        .collect();
    v.push(libc::iovec {
        iov_base: pi.ptr.cast(),
        iov_len: pi.len,
    });
    v
}

/// Prepare a PI write (or read) of `iov` at `offset` with the exported
/// `io_prep_*vm`, submit it alone and wait for it: its `res`.
fn run_pi(ctx: io_context_t, fd: i32, write: bool, iov: &[libc::iovec], offset: i64) -> i64 {
    let prep = if write {
        ffi::io_prep_pwritevm
    } else {
        ffi::io_prep_preadvm
    };
    let mut io = iocb::zeroed();
    // SAFETY: the iovecs point at live buffers the caller owns.
    unsafe { prep(&mut io, fd, iov.as_ptr().cast(), iov.len() as i32, offset) };
    let mut list = [&mut io as *mut iocb];
    // SAFETY: valid context, iocb and buffers owned by the caller.
    let r = unsafe { ffi::io_submit(ctx, 1, list.as_mut_ptr()) };
    if r != 1 {
        return r as i64;
    }
    let mut ev = io_event::zeroed();
    // SAFETY: one event of room; blocking wait.
    let n = unsafe { ffi::io_getevents(ctx, 1, 1, &mut ev, std::ptr::null_mut()) };
    assert_eq!(n, 1);
    assert_eq!(
        ev.obj, &mut io as *mut iocb,
        "event names the caller's iocb"
    );
    ev.res as i64
}

#[test]
fn random_pi_io_matches_an_independent_computation() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pi_props");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data.bin");
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
    {
        Ok(f) => f,
        // Only a file system without O_DIRECT skips; any other failure to
        // make the file is a failure.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!("skipped: no O_DIRECT here ({e})");
            return;
        }
        Err(e) => panic!("cannot create {}: {e}", path.display()),
    };
    let fd = file.as_raw_fd();
    const FILE: usize = 4 << 20;
    file.set_len(FILE as u64).unwrap();
    let mut ctx: io_context_t = std::ptr::null_mut();
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { ffi::io_setup(8, &mut ctx) }, 0);
    let formats = [
        Fmt {
            code: IO_PI_T10_DIF_TYPE1_CRC,
            interval: 512,
        },
        Fmt {
            code: IO_PI_T10_DIF_TYPE1_CRC,
            interval: 4096,
        },
        Fmt {
            code: IO_PI_T10_DIF_TYPE3_CRC,
            interval: 512,
        },
        Fmt {
            code: IO_PI_NVME_TYPE1_CRC64,
            interval: 512,
        },
        Fmt {
            code: IO_PI_NVME_TYPE1_CRC64,
            interval: 4096,
        },
        Fmt {
            code: IO_PI_NVME_TYPE3_CRC64,
            interval: 4096,
        },
    ];
    let mut rng = Rng(0x5E_ED0F_7E57);
    for round in 0..120 {
        let f = formats[round % formats.len()];
        // SAFETY: registered context.
        assert_eq!(
            unsafe { ffi::io_set_pi_format(ctx, f.code, f.interval as u32) },
            0
        );
        let n = 1 + rng.below(32) as usize;
        let len = n * f.interval;
        let offset = rng.below(((FILE - len) / f.interval) as u64 + 1) * f.interval as u64;
        let mut data = Buf::new(len);
        for b in data.bytes() {
            *b = rng.next() as u8;
        }
        let app = rng.next() as u16 & 0x7FFF;
        let mut pi = Buf::new(n * f.tuple() + rng.below(3) as usize * f.tuple());
        let want_pi = f.tuples(data.bytes(), offset, app);
        pi.bytes()[..want_pi.len()].copy_from_slice(&want_pi);

        // Good write.
        let iov = split(&mut rng, &mut data, len, &mut pi);
        assert_eq!(
            run_pi(ctx, fd, true, &iov, offset as i64),
            len as i64,
            "round {round} {f:?}: write"
        );

        // Corrupted write: one random bit of data or PI (not an escape).
        let mut bad = Buf::new(len);
        bad.bytes().copy_from_slice(data.bytes());
        let mut bad_pi = Buf::new(pi.len);
        bad_pi.bytes().copy_from_slice(pi.bytes());
        let bit = rng.below(8) as u8;
        if rng.below(2) == 0 {
            let at = rng.below(len as u64) as usize;
            bad.bytes()[at] ^= 1 << bit;
        } else {
            // Guard bytes (always checked) of a random tuple.
            let t = rng.below(n as u64) as usize;
            bad_pi.bytes()[t * f.tuple()] ^= 1 << bit;
        }
        let iov = split(&mut rng, &mut bad, len, &mut bad_pi);
        assert_eq!(
            run_pi(ctx, fd, true, &iov, offset as i64),
            -(libc::EILSEQ as i64),
            "round {round} {f:?}: corruption"
        );

        // Read back (new random split): data unchanged, PI independent.
        let mut back = Buf::new(len);
        let mut back_pi = Buf::new(n * f.tuple());
        back_pi.bytes().fill(0xEE);
        let iov = split(&mut rng, &mut back, len, &mut back_pi);
        assert_eq!(
            run_pi(ctx, fd, false, &iov, offset as i64),
            len as i64,
            "round {round} {f:?}: read"
        );
        assert!(
            back.bytes() == data.bytes(),
            "round {round} {f:?}: data (corrupt write must not land)"
        );
        let expect = f.tuples(back.bytes(), offset, 0);
        assert!(
            back_pi.bytes() == &expect[..],
            "round {round} {f:?}: read PI"
        );
    }
    // SAFETY: our context.
    assert_eq!(unsafe { ffi::io_destroy(ctx) }, 0);
    drop(file);
    let _ = std::fs::remove_file(&path);
}
