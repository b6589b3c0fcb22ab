//! Checksums for T10 protection information.
//!
//! * CRC-16/T10-DIF: poly 0x8BB7, init 0, not reflected, no final xor;
//!   `check("123456789") = 0xD0DB`.
//! * CRC-64/NVME: poly 0xAD93D23594C93659, init/xorout all ones, reflected;
//!   `check("123456789") = 0xAE8B14860A799888`.
//!
//! On x86_64 whole 16-byte blocks are folded with carry-less
//! multiplication, chosen at run time (`is_x86_feature_detected!`):
//! VPCLMULQDQ on 512-bit registers when the CPU has AVX-512
//! (`checksum/x86/avx512.rs`, compiled by Rust >= 1.89), else PCLMULQDQ on
//! 128-bit registers (`checksum/x86.rs`). The folding constants are derived
//! from the polynomials at compile time (`checksum/consts.rs`). Tails of
//! fewer than 16 bytes, and everything on other CPUs and targets, go
//! through the `crc` crate's slice-by-16 tables. The `crc` crate is also
//! the reference every fast path is cross-checked against in the tests.
//!
//! The `*_intervals` functions checksum many independent protection
//! intervals at once: short intervals (512 bytes) are walked eight at a
//! time in lockstep, so the multiply latency chains of different intervals
//! overlap and their final reductions run in parallel.

mod consts;
#[cfg(target_arch = "x86_64")]
mod x86;

use crc::{Crc, Table, CRC_16_T10_DIF, CRC_64_NVME};

static T10DIF: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_T10_DIF);
static NVME: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_NVME);

/// Shortest buffer worth handing to the folding kernel.
#[cfg(target_arch = "x86_64")]
const MIN_FOLD_LEN: usize = 16;

/// Finishes a CRC-16/T10-DIF from the register after the folded blocks.
#[cfg(target_arch = "x86_64")]
fn t10dif_finish(register: u16, tail: &[u8]) -> u16 {
    if tail.is_empty() {
        return register; // no final XOR
    }
    // Not reflected, width 16: the crate's initial value is the register.
    let mut d = T10DIF.digest_with_initial(register);
    d.update(tail);
    d.finalize()
}

/// Finishes a CRC-64/NVME from the (reflected) register after the folded
/// blocks.
#[cfg(target_arch = "x86_64")]
fn nvme_finish(register: u64, tail: &[u8]) -> u64 {
    if tail.is_empty() {
        return register ^ CRC_64_NVME.xorout;
    }
    // The crate reflects a custom initial value of a reflected CRC, so hand
    // it the register reflected back.
    let mut d = NVME.digest_with_initial(register.reverse_bits());
    d.update(tail);
    d.finalize()
}

/// Which kernels a call may use (the tests pin each one in turn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))] // outside tests only `Best` is used
enum Kernel {
    /// The fastest the CPU supports.
    Best,
    /// At most the 128-bit PCLMULQDQ kernel.
    Narrow,
    /// The table code only.
    Portable,
}

/// Which implementation the dispatching functions use on this CPU.
pub fn implementation() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if x86::wide_available() {
        return "x86_64 avx512 vpclmulqdq";
    } else if x86::available() {
        return "x86_64 pclmulqdq";
    }
    "portable slice-by-16"
}

/// CRC-16/T10-DIF of `data`.
pub fn crc16_t10dif(data: &[u8]) -> u16 {
    crc16_with(data, Kernel::Best)
}

/// CRC-64/NVME of `data`.
pub fn crc64_nvme(data: &[u8]) -> u64 {
    crc64_with(data, Kernel::Best)
}

/// CRC-16/T10-DIF of `data` with the table code only (no SIMD).
pub fn crc16_t10dif_portable(data: &[u8]) -> u16 {
    T10DIF.checksum(data)
}

/// CRC-64/NVME of `data` with the table code only (no SIMD).
pub fn crc64_nvme_portable(data: &[u8]) -> u64 {
    NVME.checksum(data)
}

/// How the multi-buffer kernel prefetches the data it is about to read
/// (it walks `LANES` intervals in lockstep, as interleaved streams the
/// hardware prefetcher does not follow).  Results are the same either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// The next group of intervals, into L1: for data partly in cache,
    /// such as a read the device has just stored (there `Far` measured
    /// slower: ~3.7 against ~2.6 us of CRC per 64 KiB read, `perf` samples
    /// of the QD1 PI read stream).
    Near,
    /// The group after next into L2, and the next into L1 as `Near` does:
    /// for data that may be in DRAM, such as a write's buffer filled long
    /// before.  64 KiB in 512-byte intervals (`cargo bench --bench crc`,
    /// `FETCH` lines): in DRAM ~5.0 us against ~6.2 with `Near`; in L3
    /// 0.95-1.02x; in L2 ~6% slower (+0.09 us).
    Far,
}

/// CRC-16/T10-DIF of each `interval`-byte chunk of `data` into `out`
/// (`data.len() == out.len() * interval`).
pub fn crc16_t10dif_intervals(data: &[u8], interval: usize, out: &mut [u16]) {
    crc16_t10dif_intervals_fetch(data, interval, out, Fetch::Near)
}

/// CRC-64/NVME of each `interval`-byte chunk of `data` into `out`
/// (`data.len() == out.len() * interval`).
pub fn crc64_nvme_intervals(data: &[u8], interval: usize, out: &mut [u64]) {
    crc64_nvme_intervals_fetch(data, interval, out, Fetch::Near)
}

/// [`crc16_t10dif_intervals`] with the prefetching chosen by `fetch`.
pub fn crc16_t10dif_intervals_fetch(data: &[u8], interval: usize, out: &mut [u16], fetch: Fetch) {
    intervals_with(&T10DIF_ALGO, data, interval, out, Kernel::Best, fetch)
}

/// [`crc64_nvme_intervals`] with the prefetching chosen by `fetch`.
pub fn crc64_nvme_intervals_fetch(data: &[u8], interval: usize, out: &mut [u64], fetch: Fetch) {
    intervals_with(&NVME_ALGO, data, interval, out, Kernel::Best, fetch)
}

/// What tells the two CRCs apart in the shared dispatch below: the folding
/// constants and bit order for the SIMD kernels, how to finish a CRC from a
/// folded register and the bytes after the last 16-byte block, and the
/// table code for everything else.
struct Algo<T> {
    #[cfg(target_arch = "x86_64")]
    consts: &'static consts::FoldConsts,
    #[cfg(target_arch = "x86_64")]
    reflected: bool,
    #[cfg(target_arch = "x86_64")]
    finish: fn(u64, &[u8]) -> T,
    portable: fn(&[u8]) -> T,
}

static T10DIF_ALGO: Algo<u16> = Algo {
    #[cfg(target_arch = "x86_64")]
    consts: &consts::T10DIF,
    #[cfg(target_arch = "x86_64")]
    reflected: false,
    #[cfg(target_arch = "x86_64")]
    finish: |register, tail| t10dif_finish(register as u16, tail),
    portable: crc16_t10dif_portable,
};

static NVME_ALGO: Algo<u64> = Algo {
    #[cfg(target_arch = "x86_64")]
    consts: &consts::NVME,
    #[cfg(target_arch = "x86_64")]
    reflected: true,
    #[cfg(target_arch = "x86_64")]
    finish: nvme_finish,
    portable: crc64_nvme_portable,
};

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn crc_with<T>(algo: &Algo<T>, data: &[u8], kernel: Kernel) -> T {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= MIN_FOLD_LEN && kernel != Kernel::Portable {
        let wide = kernel == Kernel::Best;
        if let Some(reg) = x86::register(data, algo.consts, algo.reflected, wide) {
            return (algo.finish)(reg, &data[data.len() & !15..]);
        }
    }
    (algo.portable)(data)
}

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn intervals_with<T: Copy>(
    algo: &Algo<T>,
    data: &[u8],
    interval: usize,
    out: &mut [T],
    kernel: Kernel,
    fetch: Fetch,
) {
    assert_eq!(data.len(), out.len() * interval);
    #[cfg(target_arch = "x86_64")]
    if interval >= MIN_FOLD_LEN && kernel != Kernel::Portable {
        let blocks = interval & !15;
        let wide = kernel == Kernel::Best;
        let done = x86::registers_of_intervals(
            data,
            interval,
            algo.consts,
            algo.reflected,
            wide,
            fetch,
            |i, reg| {
                let tail = &data[i * interval + blocks..(i + 1) * interval];
                out[i] = (algo.finish)(reg, tail);
            },
        );
        if done {
            return;
        }
    }
    if interval == 0 {
        // Every interval is empty (and so is `data`).
        out.fill((algo.portable)(&[]));
        return;
    }
    for (o, chunk) in out.iter_mut().zip(data.chunks_exact(interval)) {
        *o = (algo.portable)(chunk);
    }
}

fn crc16_with(data: &[u8], kernel: Kernel) -> u16 {
    crc_with(&T10DIF_ALGO, data, kernel)
}

fn crc64_with(data: &[u8], kernel: Kernel) -> u64 {
    crc_with(&NVME_ALGO, data, kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent reference: the `crc` crate's bitwise implementation.
    static REF16: Crc<u16, crc::NoTable> = Crc::<u16, crc::NoTable>::new(&CRC_16_T10_DIF);
    static REF64: Crc<u64, crc::NoTable> = Crc::<u64, crc::NoTable>::new(&CRC_64_NVME);

    /// Every kernel this build can run; each test checks all of them (the
    /// dispatch falls back by itself where the CPU lacks one).
    const KERNELS: [Kernel; 3] = [Kernel::Best, Kernel::Narrow, Kernel::Portable];

    /// Both prefetch patterns of the multi-buffer kernel (same results).
    const FETCHES: [Fetch; 2] = [Fetch::Near, Fetch::Far];

    /// xorshift64*: deterministic, dependency-free test data.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn standard_check_values() {
        assert_eq!(crc16_t10dif(b"123456789"), 0xD0DB);
        assert_eq!(crc64_nvme(b"123456789"), 0xAE8B_1486_0A79_9888);
        assert_eq!(crc16_t10dif_portable(b"123456789"), 0xD0DB);
        assert_eq!(crc64_nvme_portable(b"123456789"), 0xAE8B_1486_0A79_9888);
        // Long enough for the folding path (with a 9-byte tail).
        let long = b"123456789".repeat(20);
        assert_eq!(crc16_t10dif(&long), REF16.checksum(&long));
        assert_eq!(crc64_nvme(&long), REF64.checksum(&long));
    }

    #[test]
    fn empty_and_zero_inputs() {
        assert_eq!(crc16_t10dif(&[]), 0);
        assert_eq!(crc64_nvme(&[]), 0);
        for n in [1, 15, 16, 17, 128, 512, 4096] {
            let z = vec![0u8; n];
            assert_eq!(crc16_t10dif(&z), 0, "T10-DIF of {n} zeros");
            assert_eq!(crc64_nvme(&z), REF64.checksum(&z), "NVME of {n} zeros");
        }
    }

    #[test]
    fn every_length_up_to_1100_matches_reference() {
        // Every tail length, with and without the wide loops (256 bytes for
        // AVX-512, 128 for SSE) and several of their loop-count boundaries.
        let mut rng = Rng(1);
        let buf = rng.bytes(1100 + 64);
        for len in 0..=1100 {
            let off = rng.below(64);
            let d = &buf[off..off + len];
            for k in KERNELS {
                assert_eq!(
                    crc16_with(d, k),
                    REF16.checksum(d),
                    "crc16 {k:?} len {len} off {off}"
                );
                assert_eq!(
                    crc64_with(d, k),
                    REF64.checksum(d),
                    "crc64 {k:?} len {len} off {off}"
                );
            }
        }
    }

    #[test]
    fn exact_size_allocations() {
        // Each input in its own exactly-sized heap block, so that any read
        // past the end leaves the allocation (caught by AddressSanitizer:
        // RUSTFLAGS=-Zsanitizer=address cargo +nightly test).
        let mut rng = Rng(3);
        for len in (0..=700).chain([1023, 1024, 1025, 4095, 4096, 4097]) {
            let v = rng.bytes(len);
            for k in KERNELS {
                assert_eq!(crc16_with(&v, k), REF16.checksum(&v), "{k:?} len {len}");
                assert_eq!(crc64_with(&v, k), REF64.checksum(&v), "{k:?} len {len}");
            }
        }
        for interval in [16, 64, 100, 512, 4096] {
            for count in [1, 8, 9] {
                let v = rng.bytes(interval * count);
                for (k, f) in KERNELS.into_iter().flat_map(|k| FETCHES.map(|f| (k, f))) {
                    let mut o16 = vec![0u16; count];
                    let mut o64 = vec![0u64; count];
                    intervals_with(&T10DIF_ALGO, &v, interval, &mut o16, k, f);
                    intervals_with(&NVME_ALGO, &v, interval, &mut o64, k, f);
                    for (i, ch) in v.chunks_exact(interval).enumerate() {
                        let what = format!("{k:?} {f:?} {interval}x{count} #{i}");
                        assert_eq!(o16[i], REF16.checksum(ch), "{what}");
                        assert_eq!(o64[i], REF64.checksum(ch), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn random_lengths_and_offsets_match_reference() {
        let mut rng = Rng(0x5eed);
        let buf = rng.bytes(70_000 + 64);
        for round in 0..200 {
            let len = if round == 0 {
                70_000
            } else {
                rng.below(70_001)
            };
            let off = rng.below(64);
            let d = &buf[off..off + len];
            let (want16, want64) = (T10DIF.checksum(d), NVME.checksum(d));
            for k in KERNELS {
                assert_eq!(crc16_with(d, k), want16, "crc16 {k:?} len {len} off {off}");
                assert_eq!(crc64_with(d, k), want64, "crc64 {k:?} len {len} off {off}");
            }
        }
    }

    #[test]
    fn single_bit_errors_change_the_crc() {
        let mut rng = Rng(7);
        let mut d = rng.bytes(4096);
        let (a, b) = (crc16_t10dif(&d), crc64_nvme(&d));
        for _ in 0..200 {
            let bit = rng.below(d.len() * 8);
            d[bit / 8] ^= 1 << (bit % 8);
            assert_ne!(crc16_t10dif(&d), a, "bit {bit}");
            assert_ne!(crc64_nvme(&d), b, "bit {bit}");
            d[bit / 8] ^= 1 << (bit % 8);
        }
    }

    #[test]
    fn intervals_match_reference_and_single_buffer() {
        let mut rng = Rng(42);
        let buf = rng.bytes(20 * 4104 + 64);
        // DIF sizes, sizes around the 16- and 64-byte block widths, and
        // odd ones with tails.
        let sizes = [
            512, 4096, 520, 4104, 1, 7, 15, 16, 17, 31, 32, 48, 63, 64, 65, 80, 100, 129, 255, 256,
            257, 1000,
        ];
        for interval in sizes {
            // Counts below, at and above the lockstep width (8), plus an
            // odd count with a partial last group.
            for count in [0, 1, 3, 7, 8, 9, 16, 19] {
                let off = rng.below(64);
                let d = &buf[off..off + count * interval];
                intervals_match_reference(d, interval, true, &format!("count {count} off {off}"));
            }
        }
    }

    #[test]
    fn intervals_random() {
        let mut rng = Rng(99);
        let buf = rng.bytes(70_000 + 64);
        for _ in 0..100 {
            let interval = 1 + rng.below(5000);
            let count = rng.below(70_000 / interval + 1);
            let off = rng.below(64);
            let d = &buf[off..off + count * interval];
            intervals_match_reference(d, interval, false, "random");
        }
    }

    /// Every kernel's per-interval CRC-16 and CRC-64 of `d` equal the `crc`
    /// crate's (and, with `single`, the same kernel's single-buffer CRC).
    fn intervals_match_reference(d: &[u8], interval: usize, single: bool, what: &str) {
        let count = d.len() / interval;
        for (k, f) in KERNELS.into_iter().flat_map(|k| FETCHES.map(|f| (k, f))) {
            let mut o16 = vec![0u16; count];
            let mut o64 = vec![0u64; count];
            intervals_with(&T10DIF_ALGO, d, interval, &mut o16, k, f);
            intervals_with(&NVME_ALGO, d, interval, &mut o64, k, f);
            for (i, chunk) in d.chunks_exact(interval).enumerate() {
                let what = format!("{k:?} {f:?} interval {interval} #{i} {what}");
                assert_eq!(o16[i], T10DIF.checksum(chunk), "crc16 {what}");
                assert_eq!(o64[i], NVME.checksum(chunk), "crc64 {what}");
                if single {
                    assert_eq!(o16[i], crc16_with(chunk, k), "crc16 single {what}");
                    assert_eq!(o64[i], crc64_with(chunk, k), "crc64 single {what}");
                }
            }
        }
    }

    #[test]
    fn intervals_are_independent_of_neighbours() {
        // Corrupting one interval changes exactly that interval's CRC: the
        // lockstep lanes must not leak into each other.
        let mut rng = Rng(5);
        let mut d = rng.bytes(16 * 512);
        let mut before = vec![0u16; 16];
        crc16_t10dif_intervals(&d, 512, &mut before);
        for victim in [0, 5, 7, 8, 15] {
            d[victim * 512 + 200] ^= 0x10;
            let mut after = vec![0u16; 16];
            crc16_t10dif_intervals(&d, 512, &mut after);
            for i in 0..16 {
                assert_eq!(
                    after[i] != before[i],
                    i == victim,
                    "victim {victim} lane {i}"
                );
            }
            d[victim * 512 + 200] ^= 0x10;
        }
    }

    #[test]
    fn zero_sized_intervals() {
        let mut o16 = [1u16; 3];
        let mut o64 = [1u64; 3];
        crc16_t10dif_intervals(&[], 0, &mut o16);
        crc64_nvme_intervals(&[], 0, &mut o64);
        assert_eq!(o16, [0; 3]);
        assert_eq!(o64, [0; 3]);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_paths_are_used_when_available() {
        // Makes the cross-checks above meaningful: on a CPU with these
        // features they exercised the folding kernels, not only the tables.
        let has = std::is_x86_feature_detected!("pclmulqdq")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1");
        let d = [0xA5u8; 512];
        assert_eq!(
            x86::register(&d, &consts::T10DIF, false, false).is_some(),
            has
        );
        assert_eq!(x86::available(), has);
        if x86::wide_available() {
            assert_eq!(implementation(), "x86_64 avx512 vpclmulqdq");
        } else if has {
            assert_eq!(implementation(), "x86_64 pclmulqdq");
        }
        println!("checksum implementation: {}", implementation());
    }
}
