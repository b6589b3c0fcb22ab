//! CRC throughput over protection intervals: the `crc` crate's slice-by-16
//! tables (the reference), this crate's single-buffer and multi-buffer
//! functions, and the `crc-fast` crate (dev-dependency, comparison only).
//!
//! Each group checksums 64 KiB split into 512- or 4096-byte intervals.
//! `cargo bench --bench crc`; medians are in target/criterion/*/*/new/.
//! After criterion, an alternating pass (lines starting `AB`) times the
//! contenders in turn, round after round, and prints medians and ratios:
//! on a shared machine that is the fairer comparison.
//! `cargo bench --bench crc -- nomatch` runs only the alternating pass
//! and the prefetch comparison (lines starting `FETCH`).

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use aio::checksum::{
    crc16_t10dif, crc16_t10dif_intervals, crc16_t10dif_intervals_fetch, crc64_nvme,
    crc64_nvme_intervals, Fetch,
};
use crc::{Crc, Table, CRC_16_T10_DIF, CRC_64_NVME};
use crc_fast::CrcAlgorithm;

static TABLE16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_T10_DIF);
static TABLE64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_NVME);

const TOTAL: usize = 64 * 1024;

fn data() -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    (0..TOTAL)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect()
}

/// One CRC as this bench compares it: how each contender computes it.
/// Generic over the functions (closures and function items are types of
/// their own), so every contender's call is direct and inlinable, as if
/// written out.
#[derive(Clone, Copy)]
struct Subject<Table, Single, Intervals, Fast> {
    name: &'static str,
    /// The `crc` crate's `Table<16>` (the reference).
    table: Table,
    /// Ours, one interval per call.
    single: Single,
    /// Ours, all intervals in one call.
    intervals: Intervals,
    /// crc-fast, as it answers (a `u64`).
    fast: Fast,
}

/// A checksum as the benches store it.
trait Sum: Copy + Default + PartialEq + std::fmt::Debug + Into<u64> {
    /// crc-fast's `u64` answer, stored at this width.
    fn narrow(v: u64) -> Self;
}

impl Sum for u16 {
    fn narrow(v: u64) -> u16 {
        v as u16
    }
}

impl Sum for u64 {
    fn narrow(v: u64) -> u64 {
        v
    }
}

/// `out[i] = f(interval i of d)`.
#[inline(always)]
fn each<T>(d: &[u8], interval: usize, out: &mut [T], f: impl Fn(&[u8]) -> T) {
    for (o, ch) in out.iter_mut().zip(black_box(d).chunks_exact(interval)) {
        *o = f(ch);
    }
    black_box(out);
}

impl<T, Tb, Sg, Iv, Fs> Subject<Tb, Sg, Iv, Fs>
where
    T: Sum,
    Tb: Fn(&[u8]) -> T + Copy,
    Sg: Fn(&[u8]) -> T + Copy,
    Iv: Fn(&[u8], usize, &mut [T]) + Copy,
    Fs: Fn(&[u8]) -> u64 + Copy,
{
    /// The criterion group `{name}_{interval}` for both intervals.
    fn group(self, c: &mut Criterion) {
        let d = data();
        for interval in [512usize, 4096] {
            let n = TOTAL / interval;
            let mut g = c.benchmark_group(format!("{}_{interval}", self.name));
            g.throughput(Throughput::Bytes(TOTAL as u64));
            let mut out = vec![T::default(); n];
            // Same answer from every contender, or the numbers mean nothing.
            (self.intervals)(&d, interval, &mut out);
            for (i, ch) in d.chunks_exact(interval).enumerate() {
                assert_eq!(out[i], (self.table)(ch));
                assert_eq!(out[i].into(), (self.fast)(ch));
            }
            let Subject {
                table,
                single,
                intervals,
                fast,
                ..
            } = self;
            g.bench_function(BenchmarkId::new("crc_table16", interval), |b| {
                b.iter(|| each(&d, interval, &mut out, table))
            });
            g.bench_function(BenchmarkId::new("ours_single", interval), |b| {
                b.iter(|| each(&d, interval, &mut out, single))
            });
            g.bench_function(BenchmarkId::new("ours_intervals", interval), |b| {
                b.iter(|| {
                    intervals(black_box(&d), interval, &mut out);
                    black_box(&out);
                })
            });
            g.bench_function(BenchmarkId::new("crc_fast", interval), |b| {
                b.iter(|| each(&d, interval, &mut out, |ch| T::narrow(fast(ch))))
            });
            g.finish();
        }
    }

    /// The four contenders over `interval`-byte intervals of `d`, for the
    /// alternating pass, each with an output buffer of its own.
    fn contenders<'a>(self, d: &'a [u8], interval: usize) -> Vec<Contender<'a>>
    where
        T: 'a,
        Tb: 'a,
        Sg: 'a,
        Iv: 'a,
        Fs: 'a,
    {
        let n = TOTAL / interval;
        let Subject {
            table,
            single,
            intervals,
            fast,
            ..
        } = self;
        let (mut a, mut b, mut c, mut e) = (
            vec![T::default(); n],
            vec![T::default(); n],
            vec![T::default(); n],
            vec![T::default(); n],
        );
        vec![
            (
                "crc_table16",
                Box::new(move || each(d, interval, &mut a, table)),
            ),
            (
                "ours_single",
                Box::new(move || each(d, interval, &mut b, single)),
            ),
            (
                "ours_intervals",
                Box::new(move || {
                    intervals(black_box(d), interval, &mut c);
                    black_box(&c);
                }),
            ),
            (
                "crc_fast",
                Box::new(move || each(d, interval, &mut e, |ch| T::narrow(fast(ch)))),
            ),
        ]
    }
}

/// CRC-16/T10-DIF (8-byte T10 tuples).
#[allow(clippy::type_complexity)]
fn t10dif_crc() -> Subject<
    impl Fn(&[u8]) -> u16 + Copy,
    impl Fn(&[u8]) -> u16 + Copy,
    impl Fn(&[u8], usize, &mut [u16]) + Copy,
    impl Fn(&[u8]) -> u64 + Copy,
> {
    Subject {
        name: "t10dif",
        table: |b: &[u8]| TABLE16.checksum(b),
        single: crc16_t10dif,
        intervals: crc16_t10dif_intervals,
        fast: |b: &[u8]| crc_fast::checksum(CrcAlgorithm::Crc16T10Dif, b),
    }
}

/// CRC-64/NVME (16-byte NVMe tuples).
#[allow(clippy::type_complexity)]
fn nvme_crc() -> Subject<
    impl Fn(&[u8]) -> u64 + Copy,
    impl Fn(&[u8]) -> u64 + Copy,
    impl Fn(&[u8], usize, &mut [u64]) + Copy,
    impl Fn(&[u8]) -> u64 + Copy,
> {
    Subject {
        name: "nvme",
        table: |b: &[u8]| TABLE64.checksum(b),
        single: crc64_nvme,
        intervals: crc64_nvme_intervals,
        fast: |b: &[u8]| crc_fast::checksum(CrcAlgorithm::Crc64Nvme, b),
    }
}

fn t10dif(c: &mut Criterion) {
    t10dif_crc().group(c)
}

fn nvme(c: &mut Criterion) {
    nvme_crc().group(c)
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group!(name = benches; config = config(); targets = t10dif, nvme);

/// One contender: a name and a function that checksums all 64 KiB.
type Contender<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Alternating A/B timing: the machine is shared, so besides criterion's
/// one-after-the-other runs, time every contender once per round in turn
/// (rotating the order) and report per-contender medians, which a load
/// change affects for all contenders alike.
fn alternating(group: &str, contenders: &mut [Contender<'_>]) {
    const ROUNDS: usize = 400;
    const REPS: u32 = 4;
    let mut times = vec![Vec::with_capacity(ROUNDS); contenders.len()];
    for round in 0..ROUNDS {
        for j in 0..contenders.len() {
            let k = (j + round) % contenders.len();
            let t = std::time::Instant::now();
            for _ in 0..REPS {
                (contenders[k].1)();
            }
            times[k].push(t.elapsed().as_secs_f64() / REPS as f64);
        }
    }
    let gbps: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(|a, b| a.total_cmp(b));
            TOTAL as f64 / t[t.len() / 2] / 1e9
        })
        .collect();
    let base = gbps[0];
    let fast = contenders
        .iter()
        .position(|c| c.0 == "crc_fast")
        .map(|i| gbps[i]);
    for (c, g) in contenders.iter().zip(&gbps) {
        let vs_fast = fast.map_or(String::new(), |f| format!("  {:5.2}x crc_fast", g / f));
        println!(
            "AB {group:12} {:15} {g:7.2} GB/s  {:5.2}x table16{vs_fast}",
            c.0,
            g / base
        );
    }
}

fn alternating_report() {
    let d = &data();
    for interval in [512usize, 4096] {
        alternating(
            &format!("t10dif_{interval}"),
            &mut t10dif_crc().contenders(d, interval),
        );
        alternating(
            &format!("nvme_{interval}"),
            &mut nvme_crc().contenders(d, interval),
        );
    }
}

/// The multi-buffer kernel's two prefetch patterns ([`Fetch`]) on data in
/// cache and in DRAM: 64 KiB in 512-byte intervals, the buffer chosen at
/// random among `span` of a 256 MiB array (1: one buffer, in L2; 256: 16
/// MiB, in L3; 4096: all of it, mostly DRAM).  Alternating, medians of
/// nine rounds of 2000 buffers each; lines start `FETCH`.
fn fetch_report() {
    const BUF: usize = 64 * 1024;
    const SPANS: [usize; 3] = [1, 256, 4096];
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let big: Vec<u8> = (0..SPANS[2] * BUF)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    let mut out = [0u16; BUF / 512];
    let mut pick = 0usize;
    for span in SPANS {
        let mut ns = [Vec::new(), Vec::new()];
        for _ in 0..9 {
            for (k, fetch) in [Fetch::Near, Fetch::Far].into_iter().enumerate() {
                let t = std::time::Instant::now();
                for _ in 0..2000 {
                    pick = (pick * 2_654_435_761 + 12_345) % span;
                    let d = &big[pick * BUF..(pick + 1) * BUF];
                    crc16_t10dif_intervals_fetch(black_box(d), 512, &mut out, fetch);
                    black_box(&out);
                }
                ns[k].push(t.elapsed().as_nanos() as f64 / 2000.0);
            }
        }
        for v in &mut ns {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        let (near, far) = (ns[0][4], ns[1][4]);
        println!(
            "FETCH span {span:4} x 64 KiB: Near {near:6.0} ns  Far {far:6.0} ns  Far/Near {:.2}",
            far / near
        );
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The alternating pass takes a few seconds.
    alternating_report();
    fetch_report();
}
