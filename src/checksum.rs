//! Checksums for T10 protection information.
//!
//! * CRC-16/T10-DIF: poly 0x8BB7, init 0, not reflected, no final xor;
//!   `check("123456789") = 0xD0DB`.
//! * CRC-64/NVME: poly 0xAD93D23594C93659, init/xorout all ones, reflected;
//!   `check("123456789") = 0xAE8B14860A799888`.
//!
//! The `crc` crate is the reference implementation that every faster
//! implementation is cross-checked against in tests.

use crc::{Crc, Table, CRC_16_T10_DIF, CRC_64_NVME};

static T10DIF: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_T10_DIF);
static NVME: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_NVME);

/// CRC-16/T10-DIF of `data`.
pub fn crc16_t10dif(data: &[u8]) -> u16 {
    T10DIF.checksum(data)
}

/// CRC-64/NVME of `data`.
pub fn crc64_nvme(data: &[u8]) -> u64 {
    NVME.checksum(data)
}

/// CRC-16/T10-DIF of each `interval`-byte chunk of `data` into `out`
/// (`data.len() == out.len() * interval`).
pub fn crc16_t10dif_intervals(data: &[u8], interval: usize, out: &mut [u16]) {
    assert_eq!(data.len(), out.len() * interval);
    for (o, chunk) in out.iter_mut().zip(data.chunks_exact(interval)) {
        *o = crc16_t10dif(chunk);
    }
}

/// CRC-64/NVME of each `interval`-byte chunk of `data` into `out`.
pub fn crc64_nvme_intervals(data: &[u8], interval: usize, out: &mut [u64]) {
    assert_eq!(data.len(), out.len() * interval);
    for (o, chunk) in out.iter_mut().zip(data.chunks_exact(interval)) {
        *o = crc64_nvme(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_values() {
        assert_eq!(crc16_t10dif(b"123456789"), 0xD0DB);
        assert_eq!(crc64_nvme(b"123456789"), 0xAE8B_1486_0A79_9888);
    }
}
