//! The partition log's side of log compaction: reading sealed segments
//! without the log's lock, writing their cleaned replacement, and swapping
//! it in so that a crash at any point leaves either the old segments or the
//! new one.
//!
//! ```text
//!   cleaner (no lock)                          log (under the partition lock)
//!   sealed_segments() ─▶ [0][100][200] read ─▶ cleaning/00..0.log written,
//!                                              checked, indexed, fsynced
//!                                              replace_with_cleaned():
//!                                                cleaning/<base>.log ─rename─▶ <base>.swap
//!                                                  (the commit point)
//!                                                old segments' files removed
//!                                                its indexes moved in, .swap ─rename─▶ .log
//! ```
//!
//! [`PartitionLog::open`] finishes a swap a crash interrupted: a `.swap`
//! file replaces every segment whose base offset lies in its offset range
//! (its indexes are rebuilt), and the `cleaning` directory (a copy not yet
//! committed) is removed. Which batches and
//! records a cleaned segment keeps is the broker's business (its cleaner);
//! here a cleaned segment is any sequence of whole batches with growing
//! offsets, kept at the offsets they had.
//!
//! The cleaner's progress, the first offset it has not cleaned, is kept in
//! [`CLEANER_OFFSET_FILE`].

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use super::{sync_dir, PartitionLog};
use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::checkpoint;
use crate::error::io_error;
use crate::segment::{self, Segment};
use crate::Error;

/// The file in the partition directory holding the cleaner's progress.
pub const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";

/// The subdirectory of a partition where a cleaned segment is written, as a
/// segment of its own (`<base>.log` and its indexes), before it is swapped in.
pub const CLEANING_DIR: &str = "cleaning";
/// Extension of a cleaned segment committed to replace the old ones.
const SWAP_EXTENSION: &str = "swap";

/// Bytes read at a time when walking a sealed segment's batches.
const READ_CHUNK: usize = 1 << 20;

/// A sealed segment, readable without the log's lock: sealed segments are
/// never appended to, and the open file outlives a deletion.
#[derive(Debug, Clone)]
pub struct SealedSegment {
    base_offset: i64,
    next_offset: i64,
    size: u64,
    max_timestamp: Option<i64>,
    file: Arc<File>,
    path: PathBuf,
}

impl SealedSegment {
    /// Its first offset (the file's name).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The offset after its last batch (`base_offset` when empty).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The largest timestamp of its batches, if it has any.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    /// Hands every batch, its header and its whole bytes, to `f` in log
    /// order, reading [`READ_CHUNK`] bytes at a time.
    pub fn for_each_batch<E: From<Error>>(
        &self,
        mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut buf = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            let want = usize::try_from((self.size - pos).min(READ_CHUNK as u64))
                .expect("at most READ_CHUNK");
            buf.resize(want, 0);
            self.read_exact_at(&mut buf, pos)?;
            let mut at = 0;
            while buf.len() - at >= BATCH_HEADER_LEN {
                let header = BatchHeader::parse(&buf[at..])?;
                let size = header.total_size();
                if size <= buf.len() - at {
                    f(&header, &buf[at..at + size])?;
                    at += size;
                    continue;
                }
                if at == 0 {
                    // A batch larger than a chunk: read it whole.
                    if pos + size as u64 > self.size {
                        return Err(self.corrupt(pos, "a batch runs past the end").into());
                    }
                    buf.resize(size, 0);
                    self.read_exact_at(&mut buf, pos)?;
                    f(&header, &buf)?;
                    at = size;
                }
                break;
            }
            if at == 0 {
                return Err(self
                    .corrupt(pos, "trailing bytes shorter than a batch header")
                    .into());
            }
            pos += at as u64;
        }
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> Result<(), Error> {
        self.file
            .read_exact_at(buf, pos)
            .map_err(|e| io_error(&self.path, e))
    }

    fn corrupt(&self, pos: u64, what: &str) -> Error {
        Error::CorruptBatch(format!("{} at position {pos}: {what}", self.path.display()))
    }
}

/// A cleaned segment being written (without the log's lock): whole batches
/// in offset order, to replace some sealed segments.
#[derive(Debug)]
pub struct CleanedSegment {
    base_offset: i64,
    /// The staging directory ([`CLEANING_DIR`]).
    dir: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    next_offset: i64,
    index_interval_bytes: u32,
}

impl CleanedSegment {
    /// Appends one whole batch; its offsets must follow the last one's.
    pub fn append(&mut self, batch: &[u8]) -> Result<(), Error> {
        let header = BatchHeader::parse(batch)?;
        if header.total_size() != batch.len() {
            return Err(Error::CorruptBatch(format!(
                "a cleaned batch of {} bytes says it has {}",
                batch.len(),
                header.total_size()
            )));
        }
        if header.base_offset < self.next_offset {
            return Err(Error::CorruptBatch(format!(
                "cleaned batch at offset {} is below the previous batch's end {}",
                header.base_offset, self.next_offset
            )));
        }
        self.out
            .write_all(batch)
            .map_err(|e| io_error(&self.path, e))?;
        self.size += batch.len() as u64;
        self.next_offset = header.next_offset();
        Ok(())
    }

    /// The bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes out and fsyncs what was appended, and builds (and fsyncs) its
    /// indexes, all without the log's lock: the swap then only renames.
    pub fn finish(self) -> Result<FinishedSegment, Error> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&self.path, e))?;
        drop(file);
        let finished = FinishedSegment {
            base_offset: self.base_offset,
            dir: self.dir,
        };
        // A segment of the staging directory: opening it with recovery
        // checks every batch and writes its indexes.
        let (_, dropped) = Segment::open(
            &finished.dir,
            self.base_offset,
            true,
            self.index_interval_bytes,
        )?;
        if dropped > 0 {
            finished.discard();
            return Err(Error::CorruptBatch(format!(
                "the cleaned copy of segment {} lost {dropped} bytes when checked",
                self.base_offset
            )));
        }
        Ok(finished)
    }

    /// Removes the files (the cleaning was given up).
    pub fn discard(self) {
        discard(&self.dir, self.base_offset);
    }
}

/// A cleaned segment on disk, with its indexes, not yet in the log.
#[derive(Debug)]
pub struct FinishedSegment {
    base_offset: i64,
    dir: PathBuf,
}

impl FinishedSegment {
    /// Removes the files (the cleaning was given up).
    pub fn discard(self) {
        discard(&self.dir, self.base_offset);
    }

    fn path(&self, extension: &str) -> PathBuf {
        self.dir
            .join(segment::file_name(self.base_offset, extension))
    }
}

/// Removes a staged segment's files.
fn discard(dir: &Path, base_offset: i64) {
    for extension in SEGMENT_EXTENSIONS {
        let path = dir.join(segment::file_name(base_offset, extension));
        if let Err(error) = segment::remove_if_exists(&path) {
            warn!(path = %path.display(), %error, "removing an unused cleaned segment failed");
        }
    }
}

/// The files of a segment.
const SEGMENT_EXTENSIONS: [&str; 3] = [
    segment::LOG_EXTENSION,
    segment::INDEX_EXTENSION,
    segment::TIME_INDEX_EXTENSION,
];

impl PartitionLog {
    /// The sealed segments (all but the active one), oldest first.
    pub fn sealed_segments(&self) -> Vec<SealedSegment> {
        self.segments[..self.segments.len() - 1]
            .iter()
            .map(|s| SealedSegment {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp().map(|(ts, _)| ts),
                file: s.log_file(),
                path: s.log_path().to_path_buf(),
            })
            .collect()
    }

    /// The first offset the cleaner has not cleaned: the log start offset
    /// until it has cleaned something, and never past the log end.
    pub fn cleaner_offset(&self) -> i64 {
        self.cleaner_offset
            .unwrap_or(0)
            .clamp(self.log_start_offset(), self.log_end_offset())
    }

    /// Records (durably) that the log is clean below `offset`.
    pub fn set_cleaner_offset(&mut self, offset: i64) -> Result<(), Error> {
        checkpoint::write(&self.dir, CLEANER_OFFSET_FILE, &[offset.to_string()])?;
        self.cleaner_offset = Some(offset);
        Ok(())
    }

    /// Keeps the cleaner's progress at or below `end` (truncation).
    pub(super) fn clamp_cleaner_offset(&mut self, end: i64) -> Result<(), Error> {
        match self.cleaner_offset {
            Some(offset) if offset > end => self.set_cleaner_offset(end),
            _ => Ok(()),
        }
    }

    /// Starts writing a cleaned segment that will begin at `base_offset`
    /// (the base offset of the first segment it replaces).
    pub fn start_cleaned_segment(&self, base_offset: i64) -> Result<CleanedSegment, Error> {
        let dir = self.dir.join(CLEANING_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        discard(&dir, base_offset);
        let path = dir.join(segment::file_name(base_offset, segment::LOG_EXTENSION));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        Ok(CleanedSegment {
            base_offset,
            dir,
            path,
            out: BufWriter::with_capacity(256 * 1024, file),
            size: 0,
            next_offset: base_offset,
            index_interval_bytes: self.config.index_interval_bytes,
        })
    }

    /// Replaces `replaced`, consecutive sealed segments as
    /// [`PartitionLog::sealed_segments`] named them, by `cleaned`, which
    /// must start at the first one's base offset. If the log changed since
    /// (retention, truncation, another swap), nothing is replaced, the
    /// cleaned file is removed and the answer is `false`.
    pub fn replace_with_cleaned(
        &mut self,
        cleaned: FinishedSegment,
        replaced: &[SealedSegment],
    ) -> Result<bool, Error> {
        let Some(first) = replaced.first() else {
            cleaned.discard();
            return Ok(false);
        };
        let at = self
            .segments
            .iter()
            .position(|s| s.base_offset() == first.base_offset);
        let unchanged = cleaned.base_offset == first.base_offset
            && at.is_some_and(|at| {
                at + replaced.len() < self.segments.len()
                    && replaced.iter().zip(&self.segments[at..]).all(|(r, s)| {
                        r.base_offset == s.base_offset()
                            && r.size == s.size()
                            && r.next_offset == s.next_offset()
                    })
            });
        let (true, Some(at)) = (unchanged, at) else {
            cleaned.discard();
            return Ok(false);
        };
        let base = first.base_offset;
        let swap = self.dir.join(segment::file_name(base, SWAP_EXTENSION));
        let staged = cleaned.path(segment::LOG_EXTENSION);
        std::fs::rename(&staged, &swap).map_err(|e| io_error(&swap, e))?;
        sync_dir(&self.dir)?;
        for old in &self.segments[at..at + replaced.len()] {
            old.delete_files()?;
        }
        // The indexes built beside the copy; were a crash to come before
        // the last rename, opening the log rebuilds them.
        for extension in [segment::INDEX_EXTENSION, segment::TIME_INDEX_EXTENSION] {
            let to = self.dir.join(segment::file_name(base, extension));
            std::fs::rename(cleaned.path(extension), &to).map_err(|e| io_error(&to, e))?;
        }
        let log_path = self
            .dir
            .join(segment::file_name(base, segment::LOG_EXTENSION));
        std::fs::rename(&swap, &log_path).map_err(|e| io_error(&log_path, e))?;
        sync_dir(&self.dir)?;
        let (segment, _) = Segment::open(&self.dir, base, false, self.config.index_interval_bytes)?;
        let before: u64 = replaced.iter().map(|r| r.size).sum();
        info!(
            dir = %self.dir.display(),
            base_offset = base,
            segments = replaced.len(),
            bytes_before = before,
            bytes_after = segment.size(),
            "replaced segments with their cleaned copy"
        );
        self.segments.splice(at..at + replaced.len(), [segment]);
        Ok(true)
    }
}

/// The cleaner's progress as [`CLEANER_OFFSET_FILE`] holds it, if valid.
pub(super) fn read_cleaner_offset(dir: &Path) -> Result<Option<i64>, Error> {
    super::read_single(dir, CLEANER_OFFSET_FILE)
}

/// Finishes what a crash interrupted: a cleaned segment not yet committed
/// (in [`CLEANING_DIR`]) is removed; a committed one (`.swap`) replaces
/// every segment whose base offset lies in its offset range, then takes
/// its place as a `.log` (its indexes are rebuilt).
pub(super) fn finish_swaps(dir: &Path) -> Result<(), Error> {
    let staging = dir.join(CLEANING_DIR);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_error(&staging, e))?;
    }
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    let mut touched = false;
    for (base, extension, path) in super::segment_files(dir)? {
        match extension.as_str() {
            SWAP_EXTENSION => swaps.push((base, path)),
            segment::LOG_EXTENSION => logs.push(base),
            _ => {}
        }
    }
    swaps.sort_unstable();
    for (base, path) in swaps {
        let file = File::open(&path).map_err(|e| io_error(&path, e))?;
        let size = file.metadata().map_err(|e| io_error(&path, e))?.len();
        let swap = SealedSegment {
            base_offset: base,
            next_offset: base,
            size,
            max_timestamp: None,
            file: Arc::new(file),
            path: path.clone(),
        };
        let mut end = base + 1;
        swap.for_each_batch::<Error>(|header, _| {
            end = end.max(header.next_offset());
            Ok(())
        })?;
        // The replaced segments go, and whatever index files stand under
        // the swap's own name (old ones, or new ones moved in before the
        // crash): they are rebuilt from the swap.
        let replaced = logs.iter().copied().filter(|&b| b > base && b < end);
        for old in std::iter::once(base).chain(replaced) {
            for extension in SEGMENT_EXTENSIONS {
                segment::remove_if_exists(&dir.join(segment::file_name(old, extension)))?;
            }
        }
        let log_path = dir.join(segment::file_name(base, segment::LOG_EXTENSION));
        std::fs::rename(&path, &log_path).map_err(|e| io_error(&log_path, e))?;
        info!(path = %log_path.display(), "finished swapping in a cleaned segment after a crash");
        touched = true;
    }
    if touched {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
