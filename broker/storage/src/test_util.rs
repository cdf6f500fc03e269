//! Helpers for tests: encoding valid v2 record batches.

use crate::batch::{BatchHeader, BATCH_HEADER_LEN, CRC_START, LOG_OVERHEAD};

/// A v2 batch of `records` records (at least 1) at `base_offset`, with max
/// timestamp `max_timestamp` and `payload` bytes of opaque record data,
/// carrying a correct CRC.
pub(crate) fn batch(base_offset: i64, records: i32, max_timestamp: i64, payload: usize) -> Vec<u8> {
    assert!(records >= 1, "a produced batch has at least one record");
    let header = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: records - 1,
        base_timestamp: max_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: records,
    };
    encode(header, &payload_bytes(base_offset, payload))
}

/// Encodes `header` followed by `records`, fixing its length and CRC.
pub(crate) fn encode(mut header: BatchHeader, records: &[u8]) -> Vec<u8> {
    header.batch_length =
        i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + records.len()).expect("test batch fits");
    let mut buf = header.encode().to_vec();
    buf.extend_from_slice(records);
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// Deterministic, seed-dependent filler bytes.
fn payload_bytes(seed: i64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(i) as u8)
        .collect()
}

/// Total size of a batch with `payload` bytes of records.
pub(crate) fn batch_size(payload: usize) -> usize {
    BATCH_HEADER_LEN + payload
}
