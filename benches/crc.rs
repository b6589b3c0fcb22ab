//! CRC throughput over protection intervals: the `crc` crate's slice-by-16
//! tables (the reference), this crate's single-buffer and multi-buffer
//! functions, and the `crc-fast` crate (dev-dependency, comparison only).
//!
//! Each group checksums 64 KiB split into 512- or 4096-byte intervals.
//! `cargo bench --bench crc`; medians are in target/criterion/*/*/new/.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
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
criterion_main!(benches);
