//! [`PartitionLog`]: the segments of one partition.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::Error;

/// Per-topic log settings, named after their Kafka topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it reaches this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest timestamp is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 is unlimited.
    pub retention_bytes: i64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `flush.messages`: fsync after this many records; `i64::MAX` leaves it to the OS.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the oldest unflushed append is this old; `i64::MAX` leaves it to the OS.
    pub flush_ms: i64,
    /// `index.interval.bytes`: add an index entry after this many bytes.
    pub index_interval_bytes: u32,
}

impl Default for LogConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
        }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest record timestamp among the appended batches.
    pub max_timestamp: i64,
    /// The headers of the appended batches, with their assigned offsets.
    pub batches: Vec<BatchHeader>,
}

/// The result of a read: whole record batches, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Concatenated whole batches; empty when nothing is readable.
    pub records: Bytes,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
    /// The log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// The batch holding the first record at or after a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampMatch {
    /// The batch, as stored; the caller decodes records to find the exact one.
    pub batch: Bytes,
    /// Its header.
    pub header: BatchHeader,
}

/// The commit log of one partition.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering after a crash:
    /// a torn or corrupt tail is truncated at the last valid batch and missing
    /// or damaged indexes are rebuilt.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Self, Error> {
        let _ = now_ms;
        Ok(PartitionLog { dir: dir.to_path_buf(), config })
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the settings (a config change); takes effect from the next append.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The current settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Appends one or more v2 record batches as the leader: checks each (CRC,
    /// magic, length, `max.message.bytes`), assigns offsets from the log end
    /// offset by rewriting each batch's base offset, sets the partition leader
    /// epoch, rolls the segment if due, and flushes per `flush.messages`.
    /// Nothing is appended if any batch is invalid.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo, Error> {
        let _ = (batches, leader_epoch, now_ms);
        todo!()
    }

    /// Appends batches that already carry their offsets (a follower copying
    /// its leader); the first batch must start at the log end offset.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, Error> {
        let _ = (batches, now_ms);
        todo!()
    }

    /// Reads whole batches starting with the one containing `offset`, up to
    /// `max_bytes`, and only batches whose last offset is below `max_offset`
    /// (the high watermark). The first batch is returned even if larger than
    /// `max_bytes` (KIP-74). `offset == log end offset` gives an empty read;
    /// outside `[log start, log end]` is [`Error::OffsetOutOfRange`].
    pub fn read(&self, offset: i64, max_bytes: usize, max_offset: i64) -> Result<ReadResult, Error> {
        let _ = (offset, max_bytes, max_offset);
        todo!()
    }

    /// The first batch whose max timestamp is at or after `timestamp`, if any.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<TimestampMatch>, Error> {
        let _ = timestamp;
        todo!()
    }

    /// The largest timestamp in the log and the offset of the batch's last
    /// record holding it, for ListOffsets' MAX_TIMESTAMP (-3); `None` if empty.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        todo!()
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }

    /// Total bytes of all segments' `.log` files.
    pub fn size_bytes(&self) -> u64 {
        todo!()
    }

    /// The number of segments.
    pub fn segment_count(&self) -> usize {
        todo!()
    }

    /// Deletes whole segments past `retention.ms` / `retention.bytes`, never
    /// the active one, moving the log start offset; returns how many went.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, Error> {
        let _ = now_ms;
        todo!()
    }

    /// Rolls the active segment if `segment.ms` has passed (called periodically).
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<bool, Error> {
        let _ = now_ms;
        todo!()
    }

    /// fsyncs if `flush.ms` has passed since the oldest unflushed append.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<(), Error> {
        let _ = now_ms;
        todo!()
    }

    /// fsyncs every unflushed segment and index.
    pub fn flush(&mut self) -> Result<(), Error> {
        todo!()
    }

    /// Removes every record at or after `offset` (follower truncation).
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), Error> {
        let _ = offset;
        todo!()
    }

    /// Flushes and closes the log, marking it cleanly shut down.
    pub fn close(self) -> Result<(), Error> {
        todo!()
    }

    /// Deletes the log and its directory.
    pub fn delete(self) -> Result<(), Error> {
        todo!()
    }
}
