//! Runnel's partition log: the on-disk commit log of one partition.
//!
//! A partition is a directory of segments. Each segment is a `.log` file of
//! Kafka v2 record batches stored exactly as the producer sent them (only the
//! base offset and partition leader epoch, which the CRC does not cover, are
//! rewritten by the leader), a sparse `.index` (relative offset -> file
//! position) and a `.timeindex` (max timestamp -> relative offset). Files are
//! named by the segment's base offset, zero-padded to 20 digits, as in Kafka.
//!
//! ```text
//!   partition dir/
//!     00000000000000000000.log        [batch][batch][batch]...
//!     00000000000000000000.index      [rel_off u32|pos u32]...
//!     00000000000000000000.timeindex  [ts i64|rel_off u32]...
//!     00000000000000004096.log        <- active segment, appends go here
//!     ...
//!     leader-epoch-checkpoint         0 / 2 / "0 0" / "3 4100"  (epoch start)
//!     high-watermark                  0 / 1 / "4120"
//! ```
//!
//! Only positional I/O (`read_at`/`write_at`) is used, so reads need just
//! `&PartitionLog` and there is no `unsafe` mmap. [`PartitionLog::close`]
//! leaves a [`CLEAN_SHUTDOWN_FILE`] marker; when [`PartitionLog::open`] does
//! not find it, the active segment's batches are all checked (CRC32C
//! included) and a torn tail is cut off, logged with a `warn!`. Sealed
//! segments were fsynced when rolled; any missing or damaged index is
//! rebuilt from its `.log`.
//!
//! # Layout
//! - `batch`: parsing and checking of v2 record batch headers (CRC32C, magic).
//! - `index`: the offset and time indexes.
//! - `segment`: one segment: its files, append, read, recovery.
//! - `log`: [`PartitionLog`], the segments of one partition: roll, retention,
//!   flush, lookup; `log::clean`, swapping in segments the cleaner rewrote
//!   (log compaction), crash-safely.
//! - `epoch`: [`LeaderEpochCache`], the leader epochs of a partition and
//!   their start offsets (KIP-101/KIP-320), kept in `leader-epoch-checkpoint`.
//! - `checkpoint`: Kafka-style text checkpoint files, rewritten atomically
//!   (the leader epochs, the high watermark).
//! - `error`: [`Error`].
//! - `test_util` (tests only): encodes valid v2 batches.

mod batch;
mod checkpoint;
mod epoch;
mod error;
mod index;
mod log;
mod segment;
#[cfg(test)]
mod test_util;

pub use batch::{
    compute_crc, set_base_offset_and_leader_epoch, validate_batches, BatchHeader, TimestampType,
    BATCH_HEADER_LEN, LOG_OVERHEAD,
};
pub use epoch::{EpochEntry, LeaderEpochCache, LEADER_EPOCH_CHECKPOINT_FILE};
pub use error::Error;
pub use log::{
    AppendInfo, CheckedBatches, CleanedSegment, FileSlice, FinishedSegment,
    HighWatermarkCheckpoint, LogConfig, PartitionLog, ReadResult, SealedSegment, SliceRead,
    TimestampMatch, CLEANER_OFFSET_FILE, CLEANING_DIR, CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE,
    LOG_START_OFFSET_FILE,
};
