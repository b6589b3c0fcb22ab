//! CRC throughput over protection intervals: the `crc` crate's slice-by-16
//! tables (the reference), this crate's single-buffer and multi-buffer
//! functions, and the `crc-fast` crate (dev-dependency, comparison only).
//!
//! Each group checksums 64 KiB split into 512- or 4096-byte intervals.
//! `cargo bench --bench crc`; medians are in target/criterion/*/*/new/.
//! After criterion, an alternating pass (lines starting `AB`) times the
//! contenders in turn, round after round, and prints medians and ratios:
//! on a shared machine that is the fairer comparison.
//! `cargo bench --bench crc -- nomatch` runs only the alternating pass.

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use aio::checksum::{crc16_t10dif, crc16_t10dif_intervals, crc64_nvme, crc64_nvme_intervals};
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

fn t10dif(c: &mut Criterion) {
    let d = data();
    for interval in [512usize, 4096] {
        let n = TOTAL / interval;
        let mut g = c.benchmark_group(format!("t10dif_{interval}"));
        g.throughput(Throughput::Bytes(TOTAL as u64));
        let mut out = vec![0u16; n];
        // Same answer from every contender, or the numbers mean nothing.
        crc16_t10dif_intervals(&d, interval, &mut out);
        for (i, ch) in d.chunks_exact(interval).enumerate() {
            assert_eq!(out[i], TABLE16.checksum(ch));
            assert_eq!(
                out[i] as u64,
                crc_fast::checksum(CrcAlgorithm::Crc16T10Dif, ch)
            );
        }
        g.bench_function(BenchmarkId::new("crc_table16", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = TABLE16.checksum(ch);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("ours_single", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = crc16_t10dif(ch);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("ours_intervals", interval), |b| {
            b.iter(|| {
                crc16_t10dif_intervals(black_box(&d), interval, &mut out);
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("crc_fast", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = crc_fast::checksum(CrcAlgorithm::Crc16T10Dif, ch) as u16;
                }
                black_box(&out);
            })
        });
        g.finish();
    }
}

fn nvme(c: &mut Criterion) {
    let d = data();
    for interval in [512usize, 4096] {
        let n = TOTAL / interval;
        let mut g = c.benchmark_group(format!("nvme_{interval}"));
        g.throughput(Throughput::Bytes(TOTAL as u64));
        let mut out = vec![0u64; n];
        crc64_nvme_intervals(&d, interval, &mut out);
        for (i, ch) in d.chunks_exact(interval).enumerate() {
            assert_eq!(out[i], TABLE64.checksum(ch));
            assert_eq!(out[i], crc_fast::checksum(CrcAlgorithm::Crc64Nvme, ch));
        }
        g.bench_function(BenchmarkId::new("crc_table16", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = TABLE64.checksum(ch);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("ours_single", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = crc64_nvme(ch);
                }
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("ours_intervals", interval), |b| {
            b.iter(|| {
                crc64_nvme_intervals(black_box(&d), interval, &mut out);
                black_box(&out);
            })
        });
        g.bench_function(BenchmarkId::new("crc_fast", interval), |b| {
            b.iter(|| {
                for (o, ch) in out.iter_mut().zip(black_box(&d).chunks_exact(interval)) {
                    *o = crc_fast::checksum(CrcAlgorithm::Crc64Nvme, ch);
                }
                black_box(&out);
            })
        });
        g.finish();
    }
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
        let n = TOTAL / interval;
        let chunks = move || black_box(d).chunks_exact(interval);
        let (mut a, mut b, mut c, mut e) =
            (vec![0u16; n], vec![0u16; n], vec![0u16; n], vec![0u16; n]);
        let mut c16: Vec<Contender<'_>> = vec![
            (
                "crc_table16",
                Box::new(move || {
                    for (o, ch) in a.iter_mut().zip(chunks()) {
                        *o = TABLE16.checksum(ch);
                    }
                    black_box(&a);
                }),
            ),
            (
                "ours_single",
                Box::new(move || {
                    for (o, ch) in b.iter_mut().zip(chunks()) {
                        *o = crc16_t10dif(ch);
                    }
                    black_box(&b);
                }),
            ),
            (
                "ours_intervals",
                Box::new(move || {
                    crc16_t10dif_intervals(black_box(d), interval, &mut c);
                    black_box(&c);
                }),
            ),
            (
                "crc_fast",
                Box::new(move || {
                    for (o, ch) in e.iter_mut().zip(chunks()) {
                        *o = crc_fast::checksum(CrcAlgorithm::Crc16T10Dif, ch) as u16;
                    }
                    black_box(&e);
                }),
            ),
        ];
        alternating(&format!("t10dif_{interval}"), &mut c16);
        let (mut a, mut b, mut c, mut e) =
            (vec![0u64; n], vec![0u64; n], vec![0u64; n], vec![0u64; n]);
        let mut c64: Vec<Contender<'_>> = vec![
            (
                "crc_table16",
                Box::new(move || {
                    for (o, ch) in a.iter_mut().zip(chunks()) {
                        *o = TABLE64.checksum(ch);
                    }
                    black_box(&a);
                }),
            ),
            (
                "ours_single",
                Box::new(move || {
                    for (o, ch) in b.iter_mut().zip(chunks()) {
                        *o = crc64_nvme(ch);
                    }
                    black_box(&b);
                }),
            ),
            (
                "ours_intervals",
                Box::new(move || {
                    crc64_nvme_intervals(black_box(d), interval, &mut c);
                    black_box(&c);
                }),
            ),
            (
                "crc_fast",
                Box::new(move || {
                    for (o, ch) in e.iter_mut().zip(chunks()) {
                        *o = crc_fast::checksum(CrcAlgorithm::Crc64Nvme, ch);
                    }
                    black_box(&e);
                }),
            ),
        ];
        alternating(&format!("nvme_{interval}"), &mut c64);
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The alternating pass takes a few seconds.
    alternating_report();
}
