//! Submit + reap of one cached 4 KiB read at queue depth 1, per operation,
//! through the crate's Rust API:
//!
//! * `user_reap`: `io_getevents(ctx, 1, 1, ..., NULL)`: the completion is
//!   already in the ring (buffered reads of cached data complete inside
//!   `io_submit`), so it is copied out in user space: one system call per op;
//! * `syscall_reap`: `io_pgetevents` with an (empty) signal mask, which always
//!   takes the system call: two system calls per op, as with libaio.
use aio::abi::{io_event, io_iocb_cmd, iocb};
use aio::{prep, reap, setup, submit};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::os::fd::AsRawFd;

fn bench(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("libaio-rs-bench-{}", std::process::id()));
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let ctx = setup::setup_local(32).unwrap() as usize;
    let mut buf = vec![0u8; 4096];
    let mut io = iocb::zeroed();
    let mut ev = io_event::zeroed();
    let mut off = 0i64;
    let mut one_op = |pget: bool| {
        off = (off + 4096) % (1 << 20);
        prep::rw(
            &mut io,
            io_iocb_cmd::IO_CMD_PREAD,
            file.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            4096,
            off,
        );
        let mut p = &mut io as *mut iocb;
        assert_eq!(submit::submit(ctx, 1, &mut p), 1);
        let n = if pget {
            // SAFETY: an all-zero sigset_t is a valid (empty) set.
            let mask: libc::sigset_t = unsafe { core::mem::zeroed() };
            reap::pgetevents(ctx, 1, 1, &mut ev, core::ptr::null_mut(), &mask)
        } else {
            reap::getevents(ctx, 1, 1, &mut ev, core::ptr::null_mut())
        };
        assert_eq!(n, 1);
        assert_eq!(ev.res, 4096);
        black_box(&ev);
    };
    let mut g = c.benchmark_group("qd1_cached_4k_read");
    g.bench_function("user_reap", |b| b.iter(|| one_op(false)));
    g.bench_function("syscall_reap", |b| b.iter(|| one_op(true)));
    g.finish();
    assert_eq!(setup::destroy(ctx), 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
