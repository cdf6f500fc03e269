//! [`PartitionLog`]: the segments of one partition.
//!
//! ```text
//!   log start offset                                   log end offset
//!   v                                                  v
//!   [segment 0: sealed][segment 4096: sealed][segment 9000: active]
//!    ^ retention deletes whole segments here    appends go here ^
//! ```
//!
//! - Appends go to the last (active) segment; it is rolled (sealed, fsynced,
//!   and a new one created at the log end offset) before an append that would
//!   take it past `segment.bytes`, or once `segment.ms` has passed since its
//!   first append. (Kafka times this from the first batch's max timestamp;
//!   the wall clock of the first append is used instead, so producer clocks
//!   do not matter. After a restart, which loses that time, the first batch's
//!   max timestamp stands in for it, as in Kafka.)
//! - Reads find the segment by base offset, then the batch through the
//!   segment's sparse index.
//! - `close` writes a `.clean_shutdown` marker, which `open` removes. Without
//!   it the active segment is fully checked (CRC of every batch) and a torn
//!   tail cut off. Older segments were fsynced when they were rolled, so only
//!   their indexes are checked, and rebuilt if missing or damaged.
//! - The [`LeaderEpochCache`] follows the log: appends assign new epochs,
//!   truncation and retention trim it, and `open` drops entries outside the
//!   recovered `[log start, log end)`. Its checkpoint is rewritten only when
//!   it changes, and rebuilt from the batch headers if missing.
//! - The high watermark is checkpointed in [`HIGH_WATERMARK_FILE`] when the
//!   broker asks ([`PartitionLog::checkpoint_high_watermark`]), not here.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::batch::{
    set_base_offset_and_leader_epoch, validate_batches, BatchHeader, BATCH_HEADER_LEN,
};
use crate::checkpoint::{self, Loaded};
use crate::epoch::LeaderEpochCache;
use crate::error::io_error;
use crate::segment::{self, Segment};
use crate::Error;

mod clean;

pub use clean::{
    CleanedSegment, FinishedSegment, SealedSegment, CLEANER_OFFSET_FILE, CLEANING_DIR,
};

/// Name of the marker file `close` leaves behind, telling the next `open`
/// that the files are complete and need no recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";

/// Name of the high watermark checkpoint file in the partition directory.
pub const HIGH_WATERMARK_FILE: &str = "high-watermark";

/// Name of the file holding a log start offset that DeleteRecords moved
/// inside the first segment.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";

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
    /// Whether `cleanup.policy` includes `delete`: without it (`compact`
    /// alone) retention deletes nothing and only the cleaner shrinks the log.
    pub delete_policy: bool,
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
            delete_policy: true,
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

/// A high watermark checkpoint still to write (see
/// [`PartitionLog::high_watermark_checkpoint`]).
#[derive(Debug, Clone)]
pub struct HighWatermarkCheckpoint {
    dir: PathBuf,
    high_watermark: i64,
}

impl HighWatermarkCheckpoint {
    /// The high watermark to checkpoint.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Writes the checkpoint file (atomically, synced).
    pub fn write(&self) -> Result<(), Error> {
        checkpoint::write(
            &self.dir,
            HIGH_WATERMARK_FILE,
            &[self.high_watermark.to_string()],
        )
    }
}

/// A byte range of a segment file, to be sent as it is stored (sendfile).
/// Holding it keeps the file open, so a segment deleted by retention after
/// the read can still be sent; a segment truncated meanwhile (a follower
/// diverging from its leader) yields fewer bytes, which the sender must
/// treat as an error.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment's `.log` file.
    pub file: Arc<File>,
    /// Where the range starts in the file.
    pub position: u64,
    /// The range's length in bytes.
    pub len: u64,
}

impl FileSlice {
    /// Copies the range into memory (tests, and senders without sendfile).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_onto(&mut buf)?;
        Ok(buf)
    }

    /// Appends the range's bytes to `out`. A range past the end of the file
    /// (truncated since it was named) is an `UnexpectedEof` error, and
    /// leaves `out` as it was.
    pub fn read_onto(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.len)
            .map_err(|_| std::io::Error::other("file slice larger than memory"))?;
        let at = out.len();
        out.resize(at + len, 0);
        let read = self.file.read_exact_at(&mut out[at..], self.position);
        if read.is_err() {
            out.truncate(at);
        }
        read
    }
}

/// The result of a zero-copy read: ranges of segment files.
#[derive(Debug, Clone)]
pub struct SliceRead {
    /// The ranges, in log order; their concatenation starts with a whole
    /// batch and may end inside one.
    pub slices: Vec<FileSlice>,
    /// The total length of the ranges.
    pub len: usize,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
    /// The log end offset at the time of the read.
    pub log_end_offset: i64,
}

impl SliceRead {
    /// Copies the ranges into memory and drops a partial trailing batch, so
    /// the answer is whole batches: what [`PartitionLog::read`] would have
    /// returned at the time of the slice read. Meant to run without the
    /// partition's lock; a range truncated meanwhile is an error.
    pub fn read_whole_batches(&self) -> Result<Bytes, Error> {
        let mut out = Vec::with_capacity(self.len);
        for slice in &self.slices {
            slice.read_onto(&mut out).map_err(|source| Error::Io {
                path: "(a segment range read for a fetch)".into(),
                source,
            })?;
        }
        let mut whole = 0;
        while whole < out.len() {
            let rest = &out[whole..];
            if rest.len() < BATCH_HEADER_LEN {
                break;
            }
            let size = BatchHeader::parse(rest)?.total_size();
            if size > rest.len() {
                break;
            }
            whole += size;
        }
        out.truncate(whole);
        Ok(Bytes::from(out))
    }
}

/// The header bytes a leader rewrites: base offset, batch length, and
/// partition leader epoch (all before the CRC'd part).
const PATCHED_HEAD_LEN: usize = 16;

/// A producer's batches, checked by [`validate_batches`] (whole v2 batches,
/// CRCs match), with their headers: check once, then look at the headers
/// (sequence numbers) and append without checking again.
#[derive(Debug)]
pub struct CheckedBatches<'a> {
    buf: &'a [u8],
    headers: Vec<BatchHeader>,
}

impl<'a> CheckedBatches<'a> {
    /// Checks `buf`.
    pub fn check(buf: &'a [u8]) -> Result<Self, Error> {
        Ok(CheckedBatches {
            buf,
            headers: validate_batches(buf)?,
        })
    }

    /// The batches' headers, as the producer sent them.
    pub fn headers(&self) -> &[BatchHeader] {
        &self.headers
    }

    /// The batches' total size in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether there are no batches.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
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
    /// Sorted by base offset; never empty, the last one is active.
    segments: Vec<Segment>,
    /// Records appended since the last fsync.
    unflushed_messages: i64,
    /// When the oldest unflushed append happened.
    first_unflushed_ms: Option<i64>,
    /// Which leader epoch starts where; follows the log.
    epochs: LeaderEpochCache,
    /// The value in [`HIGH_WATERMARK_FILE`], if there is one.
    checkpointed_high_watermark: Option<i64>,
    /// The cleaner's progress ([`CLEANER_OFFSET_FILE`]), if it has any.
    cleaner_offset: Option<i64>,
    /// A log start offset inside the first segment
    /// ([`PartitionLog::advance_log_start`], kept in [`LOG_START_OFFSET_FILE`]).
    start_override: Option<i64>,
    /// How many truncations the log has had since it was opened.
    truncations: u64,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering after a crash:
    /// a torn or corrupt tail is truncated at the last valid batch and missing
    /// or damaged indexes are rebuilt.
    ///
    /// The leader epoch checkpoint is loaded (or, if missing or malformed,
    /// rebuilt from the batch headers' partition leader epochs) and trimmed
    /// to the recovered log: entries wholly below the log start go, the one
    /// covering it is moved to start there, and entries at or after the log
    /// end go (so an epoch assigned to an empty log end is forgotten; the
    /// broker assigns it again when it leads). The high watermark
    /// checkpoint is read; a malformed one is logged and ignored.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Self, Error> {
        // Segments loaded from disk take their segment.ms clock from their
        // first batch, and new ones from their first append.
        let _ = now_ms;
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        if clean {
            // Durably gone before anything is written, so a crash from here
            // on is seen as unclean.
            std::fs::remove_file(&marker).map_err(|e| io_error(&marker, e))?;
            sync_dir(dir)?;
        }
        clean::finish_swaps(dir)?;
        let bases = scan_dir(dir)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let recover = !clean && i + 1 == bases.len();
            let (segment, dropped) =
                Segment::open(dir, base, recover, config.index_interval_bytes)?;
            if dropped > 0 && i + 1 < bases.len() {
                warn!(dir = %dir.display(), base_offset = base, bytes_dropped = dropped,
                    "cut a corrupt tail off a sealed segment; its later offsets are lost");
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0)?);
            sync_dir(dir)?;
        }
        let epochs = match LeaderEpochCache::load(dir)? {
            Some(epochs) => epochs,
            None => LeaderEpochCache::rebuild(dir, epochs_in(&segments)?)?,
        };
        let checkpointed_high_watermark = read_high_watermark(dir)?;
        let cleaner_offset = clean::read_cleaner_offset(dir)?;
        let start_override = read_single(dir, LOG_START_OFFSET_FILE)?;
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            unflushed_messages: 0,
            first_unflushed_ms: None,
            epochs,
            checkpointed_high_watermark,
            cleaner_offset,
            start_override,
            truncations: 0,
        };
        let end = log.log_end_offset();
        log.start_override = log.start_override.map(|start| start.min(end));
        if let Some(start) = log.start_override {
            // A crash may have come between moving the start and deleting
            // the segments below it.
            log.drop_segments_below(start)?;
        }
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        log.epochs.truncate_from_start(start)?;
        log.epochs.truncate_from_end(end)?;
        info!(
            dir = %dir.display(),
            clean,
            segments = log.segments.len(),
            log_start_offset = start,
            log_end_offset = end,
            latest_epoch = log.latest_epoch(),
            "opened partition log"
        );
        Ok(log)
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

    /// Checks `batches` ([`CheckedBatches::check`]) and appends them as the
    /// leader ([`PartitionLog::append_batches`]).
    pub fn append(
        &mut self,
        batches: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, Error> {
        self.append_batches(CheckedBatches::check(batches)?, leader_epoch, now_ms)
    }

    /// Appends one or more checked v2 record batches as the leader: checks
    /// `max.message.bytes`, assigns offsets from the log end offset by
    /// rewriting each batch's base offset, sets the partition leader epoch
    /// (both in the stored copy's header: the caller's buffer is not
    /// touched, so it need not be copied), rolls the segment if due, and
    /// flushes per `flush.messages`. Nothing is appended if any batch is
    /// invalid.
    ///
    /// Before writing, `leader_epoch` is assigned to start at the log end
    /// offset in the leader epoch cache (a no-op unless it is newer than the
    /// latest epoch, see [`LeaderEpochCache`]).
    ///
    /// Each batch's record count must also match its offset delta
    /// (`records_count == last_offset_delta + 1`), as Kafka requires of
    /// producers.
    pub fn append_batches(
        &mut self,
        batches: CheckedBatches<'_>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, Error> {
        let CheckedBatches { buf, mut headers } = batches;
        if headers.is_empty() {
            return Err(Error::CorruptBatch(
                "no record batches to append".to_string(),
            ));
        }
        for header in &headers {
            let size = header.total_size();
            if size > self.config.max_message_bytes {
                return Err(Error::MessageTooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
                return Err(Error::CorruptBatch(format!(
                    "record count {} does not match last offset delta {}",
                    header.records_count, header.last_offset_delta
                )));
            }
        }
        let mut next = self.log_end_offset();
        let mut heads = Vec::with_capacity(headers.len());
        let mut pos = 0;
        for header in &mut headers {
            let size = header.total_size();
            let mut head = [0u8; PATCHED_HEAD_LEN];
            head.copy_from_slice(&buf[pos..pos + PATCHED_HEAD_LEN]);
            set_base_offset_and_leader_epoch(&mut head, next, leader_epoch)?;
            heads.push((head, &buf[pos + PATCHED_HEAD_LEN..pos + size]));
            header.base_offset = next;
            header.partition_leader_epoch = leader_epoch;
            next = header.next_offset();
            pos += size;
        }
        let end = self.log_end_offset();
        self.epochs.assign(leader_epoch, end)?;
        let pieces: Vec<&[u8]> = heads
            .iter()
            .flat_map(|(head, rest)| [&head[..], *rest])
            .collect();
        self.append_checked(&pieces, buf.len(), headers, now_ms)
    }

    /// Appends batches that already carry their offsets (a follower copying
    /// its leader); the first batch must start at or after the log end
    /// offset, and every later one at or after where the one before it
    /// ended. A gap is a range the leader's cleaner compacted away.
    /// `max.message.bytes` is not applied: the leader already accepted the
    /// batches, and a follower must not diverge over a config change.
    ///
    /// Before writing, each batch whose partition leader epoch is newer than
    /// the latest known one assigns that epoch to start at its base offset.
    pub fn append_replicated(&mut self, batches: &[u8], now_ms: i64) -> Result<AppendInfo, Error> {
        let headers = validate_batches(batches)?;
        if headers.is_empty() {
            return Err(Error::CorruptBatch(
                "no record batches to append".to_string(),
            ));
        }
        // Offsets only grow; a gap is a range the leader's cleaner removed
        // (log compaction), as Kafka allows.
        let mut expected = self.log_end_offset();
        for header in &headers {
            if header.base_offset < expected {
                return Err(Error::NonContiguousAppend {
                    offset: header.base_offset,
                    end: expected,
                });
            }
            expected = header.next_offset();
        }
        self.epochs.assign_all(
            headers
                .iter()
                .map(|h| (h.partition_leader_epoch, h.base_offset)),
        )?;
        self.append_checked(&[batches], batches.len(), headers, now_ms)
    }

    /// Appends checked batches whose offsets continue the log: `pieces`,
    /// `len` bytes in all, concatenated.
    fn append_checked(
        &mut self,
        pieces: &[&[u8]],
        len: usize,
        headers: Vec<BatchHeader>,
        now_ms: i64,
    ) -> Result<AppendInfo, Error> {
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Err(Error::CorruptBatch(
                "no record batches to append".to_string(),
            ));
        };
        let (base_offset, last_offset) = (first.base_offset, last.last_offset());
        if self.should_roll(len as u64, last_offset, now_ms) {
            self.roll(base_offset)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()
            .append(pieces, len, &headers, interval, now_ms)?;
        let records: i64 = headers.iter().map(|h| i64::from(h.records_count)).sum();
        self.unflushed_messages += records;
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        let max_timestamp = headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            max_timestamp,
            batches: headers,
        })
    }

    /// Whether the active segment must be rolled before appending `size`
    /// bytes ending at `last_offset`: it is not empty and would pass
    /// `segment.bytes` (or the 4 GiB an index position can address), the
    /// offsets would not fit its index, or `segment.ms` has passed since its
    /// first append.
    fn should_roll(&self, size: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let new_size = active.size() + size;
        new_size > self.config.segment_bytes
            || new_size > u64::from(u32::MAX)
            || u32::try_from(last_offset - active.base_offset()).is_err()
            || self.time_roll_due(now_ms)
    }

    /// Whether the non-empty active segment is older than `segment.ms`.
    fn time_roll_due(&self, now_ms: i64) -> bool {
        let active = self.active();
        !active.is_empty()
            && active
                .roll_base_ms()
                .is_some_and(|base| now_ms.saturating_sub(base) > self.config.segment_ms)
    }

    /// Seals the active segment and starts a new one at `base_offset`.
    fn roll(&mut self, base_offset: i64) -> Result<(), Error> {
        self.active_mut().seal()?;
        let segment = Segment::create(&self.dir, base_offset)?;
        sync_dir(&self.dir)?;
        self.segments.push(segment);
        debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(())
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    /// Reads whole batches starting with the one containing `offset`, up to
    /// `max_bytes`, and only batches whose last offset is below `max_offset`
    /// (the high watermark). The first batch is returned even if larger than
    /// `max_bytes` (KIP-74). `offset == log end offset` gives an empty read;
    /// outside `[log start, log end]` is [`Error::OffsetOutOfRange`].
    ///
    /// A read may span segments.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<ReadResult, Error> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        let mut out = Vec::new();
        if offset < end {
            let first = self.segment_index(offset);
            for segment in &self.segments[first..] {
                if segment.read_into(offset, max_bytes, max_offset, &mut out)? {
                    break;
                }
            }
        }
        Ok(ReadResult {
            records: Bytes::from(out),
            log_start_offset: start,
            log_end_offset: end,
        })
    }

    /// Like [`PartitionLog::read`], but without copying: the answer names
    /// ranges of the segment files, to send with sendfile. As in Kafka, the
    /// last range may end inside a batch when `max_bytes` runs out (clients
    /// drop a partial trailing batch); the first batch is always whole
    /// (KIP-74), and no batch at or past `max_offset` is included.
    pub fn read_slices(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<SliceRead, Error> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        let mut slices = Vec::new();
        let mut len = 0;
        if offset < end {
            let first = self.segment_index(offset);
            for segment in &self.segments[first..] {
                if segment.slice_into(offset, max_bytes, max_offset, &mut len, &mut slices)? {
                    break;
                }
            }
        }
        Ok(SliceRead {
            slices,
            len,
            log_start_offset: start,
            log_end_offset: end,
        })
    }

    /// The index of the segment whose range holds `offset`: the last one
    /// with a base offset at or below it (the first if none).
    fn segment_index(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    /// The first batch whose max timestamp is at or after `timestamp`, if any.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<TimestampMatch>, Error> {
        for segment in &self.segments {
            if segment.max_timestamp().is_none_or(|(ts, _)| ts < timestamp) {
                continue;
            }
            if let Some((pos, header)) = segment.find_by_timestamp(timestamp)? {
                let batch = segment.read_at(pos, header.total_size())?;
                return Ok(Some(TimestampMatch {
                    batch: Bytes::from(batch),
                    header,
                }));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the batch's last
    /// record holding it, for ListOffsets' MAX_TIMESTAMP (-3); `None` if empty.
    ///
    /// Of batches sharing the largest timestamp, the earliest is named.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.segments
            .iter()
            .filter_map(Segment::max_timestamp)
            .fold(None, |best, (ts, offset)| match best {
                Some((best_ts, _)) if best_ts >= ts => best,
                _ => Some((ts, offset)),
            })
    }

    /// Deletes the segments wholly below `offset`, never the active one;
    /// how many.
    fn drop_segments_below(&mut self, offset: i64) -> Result<usize, Error> {
        let below = self.segments[1..]
            .iter()
            .take_while(|next| next.base_offset() <= offset)
            .count();
        for _ in 0..below {
            self.segments[0].delete_files()?;
            self.segments.remove(0);
        }
        if below > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(below)
    }

    /// The first offset still in the log: the first segment's base offset,
    /// or past it where DeleteRecords moved it.
    pub fn log_start_offset(&self) -> i64 {
        let first = self.segments.first().map_or(0, Segment::base_offset);
        self.start_override.map_or(first, |start| start.max(first))
    }

    /// Moves the log start offset up to `offset` (at most the log end), as
    /// DeleteRecords does on a leader and a follower does after its leader:
    /// reads below it are out of range, and segments wholly below it are
    /// deleted (never the active one). The new start is written durably
    /// first. Returns whether it moved.
    pub fn advance_log_start(&mut self, offset: i64) -> Result<bool, Error> {
        let offset = offset.min(self.log_end_offset());
        if offset <= self.log_start_offset() {
            return Ok(false);
        }
        checkpoint::write(&self.dir, LOG_START_OFFSET_FILE, &[offset.to_string()])?;
        self.start_override = Some(offset);
        let below = self.drop_segments_below(offset)?;
        self.epochs.truncate_from_start(offset)?;
        info!(dir = %self.dir.display(), log_start_offset = offset, deleted_segments = below,
            "moved the log start offset");
        Ok(true)
    }

    /// The offset the next record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Total bytes of all segments' `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size).sum()
    }

    /// The number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.iter().map(Segment::base_offset).collect()
    }

    /// Deletes whole segments past `retention.ms` / `retention.bytes`, never
    /// the active one, moving the log start offset; returns how many went.
    ///
    /// If every segment including the active one is past retention, a new
    /// empty segment is rolled first so the old active one can go too (as
    /// Kafka does), and an idle partition really expires.
    ///
    /// The leader epoch cache is trimmed to the new log start.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, Error> {
        self.enforce_retention_below(now_ms, i64::MAX)
    }

    /// [`PartitionLog::enforce_retention`], deleting only segments whose
    /// offsets are all below `high_watermark`, as Kafka does so that records
    /// not yet replicated are never deleted.
    pub fn enforce_retention_below(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, Error> {
        let count = if self.config.delete_policy {
            self.retention_count(now_ms, high_watermark)
        } else {
            0
        };
        if count == 0 {
            return Ok(0);
        }
        if count == self.segments.len() {
            let end = self.log_end_offset();
            self.roll(end)?;
        }
        for _ in 0..count {
            self.segments[0].delete_files()?;
            self.segments.remove(0);
        }
        sync_dir(&self.dir)?;
        let start = self.log_start_offset();
        self.epochs.truncate_from_start(start)?;
        info!(
            dir = %self.dir.display(),
            deleted = count,
            log_start_offset = self.log_start_offset(),
            "deleted segments past retention"
        );
        Ok(count)
    }

    /// How many of the oldest segments retention deletes.
    fn retention_count(&self, now_ms: i64, high_watermark: i64) -> usize {
        let n = self.segments.len();
        // An empty active segment holds nothing to delete; a non-empty one
        // can go after a roll.
        let limit = if self.active().is_empty() { n - 1 } else { n };
        let end = self.log_end_offset();
        let below_high_watermark = |i: usize| {
            let upper = self.segments.get(i + 1).map_or(end, Segment::base_offset);
            upper <= high_watermark
        };
        let mut count = 0;
        if self.config.retention_ms >= 0 {
            while count < limit && below_high_watermark(count) {
                let expired = match self.segments[count].max_timestamp() {
                    Some((ts, _)) => now_ms.saturating_sub(ts) > self.config.retention_ms,
                    // An empty sealed segment holds nothing.
                    None => true,
                };
                if !expired {
                    break;
                }
                count += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let remaining: u64 = self.segments[count..].iter().map(Segment::size).sum();
            let mut excess = i128::from(remaining) - i128::from(self.config.retention_bytes);
            while count < limit && below_high_watermark(count) {
                let size = i128::from(self.segments[count].size());
                if excess - size < 0 {
                    break;
                }
                excess -= size;
                count += 1;
            }
        }
        count
    }

    /// Rolls the active segment if `segment.ms` has passed (called periodically).
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<bool, Error> {
        if !self.time_roll_due(now_ms) {
            return Ok(false);
        }
        let end = self.log_end_offset();
        self.roll(end)?;
        Ok(true)
    }

    /// fsyncs if `flush.ms` has passed since the oldest unflushed append.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<(), Error> {
        let due = self
            .first_unflushed_ms
            .is_some_and(|first| now_ms.saturating_sub(first) >= self.config.flush_ms);
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// fsyncs every unflushed segment and index.
    pub fn flush(&mut self) -> Result<(), Error> {
        for segment in &mut self.segments {
            segment.flush()?;
        }
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Removes every record at or after `offset` (follower truncation).
    ///
    /// `offset` must start a batch (or lie past the log end, a no-op, or in a
    /// gap between batches); inside a batch is [`Error::CorruptBatch`] and
    /// nothing is removed. Below the log start offset, everything is removed
    /// and the log restarts at `offset`.
    ///
    /// The leader epoch cache loses the entries starting at or after the new
    /// log end. That happens at or past the log end too, as in Kafka: an
    /// epoch this replica assigned at its log end as leader, but never
    /// appended in, must not stay in front of the new leader's batches.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), Error> {
        let end = self.log_end_offset();
        if offset >= end {
            return self.epochs.truncate_from_end(end);
        }
        if offset <= self.log_start_offset() {
            return self.truncate_fully_and_start_at(offset);
        }
        let keep = self.segment_index(offset);
        let pos = match self.segments[keep].find_position(offset)? {
            // At a batch, or in a gap compaction left before one.
            Some((pos, header)) if header.base_offset >= offset => pos,
            Some((_, header)) => {
                return Err(Error::CorruptBatch(format!(
                    "cannot truncate to offset {offset}: it is inside the batch of offsets {}..={}",
                    header.base_offset,
                    header.last_offset()
                )))
            }
            None => self.segments[keep].size(),
        };
        while self.segments.len() > keep + 1 {
            self.segments[self.segments.len() - 1].delete_files()?;
            self.segments.pop();
        }
        self.truncations += 1;
        self.active_mut().truncate_at(pos, offset)?;
        sync_dir(&self.dir)?;
        self.epochs.truncate_from_end(offset)?;
        self.clamp_cleaner_offset(offset)?;
        info!(dir = %self.dir.display(), offset, log_end_offset = self.log_end_offset(), "truncated log");
        Ok(())
    }

    /// Removes everything and restarts the log empty at `offset`, as a
    /// follower does when its leader's log starts past its own end. The
    /// leader epoch cache is cleared.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), Error> {
        self.truncations += 1;
        while let Some(segment) = self.segments.last() {
            segment.delete_files()?;
            self.segments.pop();
        }
        self.segments.push(Segment::create(&self.dir, offset)?);
        sync_dir(&self.dir)?;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        self.epochs.clear()?;
        self.clamp_cleaner_offset(offset)?;
        if self.start_override.take().is_some() {
            segment::remove_if_exists(&self.dir.join(LOG_START_OFFSET_FILE))?;
        }
        info!(dir = %self.dir.display(), offset, "truncated log fully");
        Ok(())
    }

    /// How many times the log was truncated since it was opened: work
    /// planned on the log before a truncation (the cleaner's) is stale.
    pub fn truncations(&self) -> u64 {
        self.truncations
    }

    /// The leader epochs of this log and where each starts.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// The latest leader epoch recorded, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The end offset of `epoch` in this log and the epoch it belongs to,
    /// for OffsetsForLeaderEpoch: [`LeaderEpochCache::end_offset_for`] at the
    /// current log end offset. `None` means undefined (-1, -1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Records that `epoch` starts at `start_offset`, normally the log end
    /// offset: a new leader does this when it takes over, before any append.
    /// Ignored unless `epoch` is newer than the latest; entries at or after
    /// `start_offset` are replaced (see [`LeaderEpochCache`]).
    pub fn assign_epoch(&mut self, epoch: i32, start_offset: i64) -> Result<(), Error> {
        self.epochs.assign(epoch, start_offset)
    }

    /// Writes `high_watermark` to [`HIGH_WATERMARK_FILE`] atomically, unless
    /// it is the value already there. The broker calls this on its own
    /// schedule and before [`PartitionLog::close`].
    /// The high watermark checkpoint to write, if `high_watermark` is not
    /// the one last checkpointed: write it ([`HighWatermarkCheckpoint::write`])
    /// without holding the log, as the write syncs to disk, then tell the log
    /// ([`PartitionLog::high_watermark_checkpointed`]).
    pub fn high_watermark_checkpoint(
        &self,
        high_watermark: i64,
    ) -> Option<HighWatermarkCheckpoint> {
        (self.checkpointed_high_watermark != Some(high_watermark)).then(|| {
            HighWatermarkCheckpoint {
                dir: self.dir.clone(),
                high_watermark,
            }
        })
    }

    /// Records that `high_watermark` was checkpointed.
    pub fn high_watermark_checkpointed(&mut self, high_watermark: i64) {
        self.checkpointed_high_watermark = Some(high_watermark);
    }

    /// Writes the high watermark checkpoint now if it changed (see
    /// [`PartitionLog::high_watermark_checkpoint`] to write it unlocked).
    pub fn checkpoint_high_watermark(&mut self, high_watermark: i64) -> Result<(), Error> {
        if self.checkpointed_high_watermark == Some(high_watermark) {
            return Ok(());
        }
        checkpoint::write(
            &self.dir,
            HIGH_WATERMARK_FILE,
            &[high_watermark.to_string()],
        )?;
        self.checkpointed_high_watermark = Some(high_watermark);
        Ok(())
    }

    /// The last checkpointed high watermark (read at open, or written since),
    /// clamped to `[log start, log end]`; the log start offset if none was
    /// ever checkpointed.
    pub fn recovered_high_watermark(&self) -> i64 {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        self.checkpointed_high_watermark
            .map_or(start, |hw| hw.clamp(start, end))
    }

    /// Flushes and closes the log, marking it cleanly shut down.
    pub fn close(mut self) -> Result<(), Error> {
        self.active_mut().seal()?;
        self.flush()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        let file = File::create(&marker).map_err(|e| io_error(&marker, e))?;
        file.sync_all().map_err(|e| io_error(&marker, e))?;
        sync_dir(&self.dir)?;
        debug!(dir = %self.dir.display(), "closed partition log");
        Ok(())
    }

    /// Deletes the log and its directory.
    pub fn delete(self) -> Result<(), Error> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        info!(dir = %dir.display(), "deleted partition log");
        Ok(())
    }
}

/// The base offsets of the segments in `dir`, sorted; removes index files
/// left without their `.log` (a crash while deleting a segment).
fn scan_dir(dir: &Path) -> Result<Vec<i64>, Error> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for (base, extension, path) in segment_files(dir)? {
        match extension.as_str() {
            segment::LOG_EXTENSION => logs.push(base),
            segment::INDEX_EXTENSION | segment::TIME_INDEX_EXTENSION => indexes.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in indexes {
        if logs.binary_search(&base).is_err() {
            warn!(path = %path.display(), "removing index without a log");
            segment::remove_if_exists(&path)?;
        }
    }
    Ok(logs)
}

/// The files of `dir` named like a segment's (a 20-digit base offset and an
/// extension): (base offset, extension, path).
pub(crate) fn segment_files(dir: &Path) -> Result<Vec<(i64, String, PathBuf)>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        let (Some(stem), Some(extension)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        if let Some(base) = parse_base_offset(stem) {
            out.push((base, extension.to_string(), path));
        }
    }
    Ok(out)
}

/// Parses a 20-digit segment file stem.
fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The leader epoch assignments the batch headers of `segments` make, in
/// log order: each batch whose partition leader epoch is greater than all
/// before it.
fn epochs_in(segments: &[Segment]) -> Result<Vec<(i32, i64)>, Error> {
    let mut assignments = Vec::new();
    let mut latest = -1;
    for segment in segments {
        segment.for_each_header(|header| {
            if header.partition_leader_epoch > latest {
                latest = header.partition_leader_epoch;
                assignments.push((latest, header.base_offset));
            }
        })?;
    }
    Ok(assignments)
}

/// The single value of a checkpoint file, if it holds one; a malformed one
/// is logged and ignored.
fn read_single(dir: &Path, name: &str) -> Result<Option<i64>, Error> {
    match checkpoint::read(dir, name, |line| line.trim().parse().ok())? {
        Loaded::Entries(values) if values.len() == 1 => Ok(values.first().copied()),
        Loaded::Missing => Ok(None),
        Loaded::Entries(_) | Loaded::Malformed(_) => {
            warn!(dir = %dir.display(), name, "ignoring a malformed checkpoint");
            Ok(None)
        }
    }
}

/// The value in the high watermark checkpoint, if there is a valid one.
fn read_high_watermark(dir: &Path) -> Result<Option<i64>, Error> {
    match checkpoint::read(dir, HIGH_WATERMARK_FILE, |line| line.trim().parse().ok())? {
        Loaded::Entries(values) if values.len() == 1 => Ok(values.first().copied()),
        Loaded::Entries(values) => {
            warn!(dir = %dir.display(), count = values.len(),
                "high watermark checkpoint does not hold one value, ignoring it");
            Ok(None)
        }
        Loaded::Missing => Ok(None),
        Loaded::Malformed(reason) => {
            warn!(dir = %dir.display(), %reason, "malformed high watermark checkpoint, ignoring it");
            Ok(None)
        }
    }
}

/// fsyncs a directory, making file creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

#[cfg(test)]
mod tests;
