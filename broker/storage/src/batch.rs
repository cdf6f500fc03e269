//! Kafka v2 record batch headers.

use crate::Error;

/// Length of the fixed v2 record batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// The fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field (the whole batch is `batch_length + 12`).
    pub batch_length: i32,
    /// Epoch of the leader that appended it.
    pub partition_leader_epoch: i32,
    /// Message format; 2.
    pub magic: i8,
    /// CRC32C of everything from `attributes` on.
    pub crc: u32,
    /// Compression (bits 0-2), timestamp type (3), transactional (4), control (5).
    pub attributes: i16,
    /// Last offset minus base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

/// Checks a buffer of whole v2 batches and returns their headers.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, Error> {
    let _ = buf;
    todo!()
}
