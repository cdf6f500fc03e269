//! Kafka v2 record batch headers.
//!
//! The log never decodes records; it only needs the fixed 61-byte header in
//! front of every batch (all fields big endian):
//!
//! ```text
//!  0 base_offset i64          <- rewritten by the leader, not under the CRC
//!  8 batch_length i32            (bytes after this field)
//! 12 partition_leader_epoch i32  <- rewritten by the leader, not under the CRC
//! 16 magic i8 (= 2)
//! 17 crc u32                     CRC32C of bytes 21..end of batch
//! 21 attributes i16
//! 23 last_offset_delta i32
//! 27 base_timestamp i64
//! 35 max_timestamp i64
//! 43 producer_id i64
//! 51 producer_epoch i16
//! 53 base_sequence i32
//! 57 records_count i32
//! 61 records...
//! ```

use crate::Error;

/// Length of the fixed v2 record batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before `batch_length` ends: `base_offset` and `batch_length` itself.
/// The whole batch is `batch_length + LOG_OVERHEAD` bytes.
pub const LOG_OVERHEAD: usize = 12;

/// Offset of the magic byte; the same in v0/v1 message sets and v2 batches.
const MAGIC_OFFSET: usize = 16;

/// Offset of `attributes`, where the CRC-covered part starts.
pub(crate) const CRC_START: usize = 21;

/// The only message format accepted.
const MAGIC_V2: i8 = 2;

/// Attribute bits: compression codec (0-2).
const COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit: timestamp type (3).
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
/// Attribute bit: transactional (4).
const TRANSACTIONAL_BIT: i16 = 0x10;
/// Attribute bit: control batch (5).
const CONTROL_BIT: i16 = 0x20;

/// What a batch's timestamps mean (attribute bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when appending.
    LogAppendTime,
}

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

impl BatchHeader {
    /// Parses the header at the start of `buf` without checking the CRC.
    ///
    /// Fails with [`Error::UnsupportedMagic`] if byte 16 is not 2 (v0/v1
    /// message sets keep their magic there too), and with
    /// [`Error::CorruptBatch`] if `buf` is shorter than a header, the batch
    /// length is smaller than a header, or the offset delta or record count is
    /// negative. Does not check that `buf` holds the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, Error> {
        if let Some(&magic) = buf.get(MAGIC_OFFSET) {
            let magic = i8::from_be_bytes([magic]);
            if magic != MAGIC_V2 {
                return Err(Error::UnsupportedMagic(magic));
            }
        }
        let Some(buf) = buf.get(..BATCH_HEADER_LEN) else {
            return Err(Error::CorruptBatch(format!(
                "{} bytes is shorter than the {BATCH_HEADER_LEN}-byte batch header",
                buf.len()
            )));
        };
        let mut r = Reader(buf);
        let header = BatchHeader {
            base_offset: r.i64(),
            batch_length: r.i32(),
            partition_leader_epoch: r.i32(),
            magic: r.i8(),
            crc: r.u32(),
            attributes: r.i16(),
            last_offset_delta: r.i32(),
            base_timestamp: r.i64(),
            max_timestamp: r.i64(),
            producer_id: r.i64(),
            producer_epoch: r.i16(),
            base_sequence: r.i32(),
            records_count: r.i32(),
        };
        let min_length = BATCH_HEADER_LEN - LOG_OVERHEAD;
        if usize::try_from(header.batch_length).map_or(true, |len| len < min_length) {
            return Err(Error::CorruptBatch(format!(
                "batch length {} at base offset {} is below the minimum {min_length}",
                header.batch_length, header.base_offset
            )));
        }
        if header.last_offset_delta < 0 {
            return Err(Error::CorruptBatch(format!(
                "negative last offset delta {} at base offset {}",
                header.last_offset_delta, header.base_offset
            )));
        }
        if header.records_count < 0 {
            return Err(Error::CorruptBatch(format!(
                "negative record count {} at base offset {}",
                header.records_count, header.base_offset
            )));
        }
        Ok(header)
    }

    /// Encodes the header into its 61 bytes (the inverse of [`BatchHeader::parse`]).
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&self.base_offset.to_be_bytes());
        put(&self.batch_length.to_be_bytes());
        put(&self.partition_leader_epoch.to_be_bytes());
        put(&self.magic.to_be_bytes());
        put(&self.crc.to_be_bytes());
        put(&self.attributes.to_be_bytes());
        put(&self.last_offset_delta.to_be_bytes());
        put(&self.base_timestamp.to_be_bytes());
        put(&self.max_timestamp.to_be_bytes());
        put(&self.producer_id.to_be_bytes());
        put(&self.producer_epoch.to_be_bytes());
        put(&self.base_sequence.to_be_bytes());
        put(&self.records_count.to_be_bytes());
        out
    }

    /// Offset of the last record (`base_offset + last_offset_delta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Size of the whole batch in bytes (`batch_length + 12`); 0 if the
    /// length is negative (which [`BatchHeader::parse`] rejects).
    pub fn total_size(&self) -> usize {
        usize::try_from(self.batch_length).map_or(0, |len| len + LOG_OVERHEAD)
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        // The mask keeps 3 bits, so the value always fits.
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// What the timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds a control record (transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Rewrites a batch's base offset and partition leader epoch in place; the
/// CRC does not cover them, so it stays valid.
pub fn set_base_offset_and_leader_epoch(
    batch: &mut [u8],
    base_offset: i64,
    partition_leader_epoch: i32,
) -> Result<(), Error> {
    let len = batch.len();
    let Some(head) = batch.get_mut(..MAGIC_OFFSET) else {
        return Err(Error::CorruptBatch(format!(
            "{len} bytes is too short to rewrite a batch header"
        )));
    };
    head[0..8].copy_from_slice(&base_offset.to_be_bytes());
    head[12..16].copy_from_slice(&partition_leader_epoch.to_be_bytes());
    Ok(())
}

/// The CRC32C a whole batch should carry: over bytes 21 to its end.
/// Returns 0 for a buffer shorter than the CRC offset.
pub fn compute_crc(batch: &[u8]) -> u32 {
    batch.get(CRC_START..).map_or(0, crc32c::crc32c)
}

/// Checks a buffer of whole v2 batches and returns their headers.
///
/// Every batch must be complete, v2, and carry a matching CRC32C; a trailing
/// partial batch is [`Error::CorruptBatch`]. An empty buffer holds no batches.
pub fn validate_batches(buf: &[u8]) -> Result<Vec<BatchHeader>, Error> {
    let mut headers = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let header = BatchHeader::parse(rest)?;
        let size = header.total_size();
        let Some(batch) = rest.get(..size) else {
            return Err(Error::CorruptBatch(format!(
                "batch at base offset {} is {size} bytes but only {} remain",
                header.base_offset,
                rest.len()
            )));
        };
        let computed = compute_crc(batch);
        if computed != header.crc {
            return Err(Error::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        headers.push(header);
        pos += size;
    }
    Ok(headers)
}

/// Big-endian reads from a buffer known to be long enough.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().expect("split_at returned exactly N bytes")
    }

    fn i8(&mut self) -> i8 {
        i8::from_be_bytes(self.take())
    }

    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }

    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }
}

#[cfg(test)]
mod tests;
