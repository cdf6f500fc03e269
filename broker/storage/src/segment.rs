//! One segment of a partition log: a `.log` file of whole record batches and
//! its `.index` and `.timeindex`.
//!
//! ```text
//!   00000000000000004096.log    [batch 4096..4099][batch 4100..4100][batch 4101..4130]...
//!                                ^pos 0           ^pos 812         ^pos 1650
//!   00000000000000004096.index  [rel 4 -> pos 812][rel 34 -> pos 1650]...  (every index.interval.bytes)
//! ```
//!
//! An offset index entry points at the start of the batch whose *last* offset
//! it names; a lookup takes the greatest entry at or below the target and
//! scans batch headers forward from there. Time index entries name the
//! largest timestamp so far and the batch that first reached it.
//!
//! All reads are positional (`read_at`), so a segment can be read through a
//! shared reference while nothing appends to it.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::batch::{BatchHeader, BATCH_HEADER_LEN, CRC_START};
use crate::error::io_error;
use crate::index::{Damage, OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::{Error, FileSlice};

/// Bytes read at a time when scanning batch headers: small batches are
/// common, so one read covers many headers without reading much body.
const SCAN_CHUNK: usize = 16 * 1024;
/// How much of a segment [`Segment::walk_headers`] reads at a time: Kafka's
/// default `index.interval.bytes` and then some.
const WALK_CHUNK: usize = 8 * 1024;

/// Bytes read at a time when checking a batch's CRC during recovery, so a
/// corrupt length cannot make us allocate a whole segment.
const CRC_CHUNK: usize = 64 * 1024;

/// The file name of a segment file: the base offset padded to 20 digits.
pub(crate) fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// Extension of the record batch file.
pub(crate) const LOG_EXTENSION: &str = "log";
/// Extension of the offset index.
pub(crate) const INDEX_EXTENSION: &str = "index";
/// Extension of the time index.
pub(crate) const TIME_INDEX_EXTENSION: &str = "timeindex";

/// Writes `pieces` one after another at `position` with `pwritev`, as many
/// per call as the kernel takes (`IOV_MAX`).
fn write_all_vectored_at(file: &File, pieces: &[&[u8]], position: u64) -> std::io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut at = position;
    for group in pieces.chunks(IOV_MAX) {
        let mut slices: Vec<std::io::IoSlice<'_>> = group
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| std::io::IoSlice::new(p))
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let offset = i64::try_from(at).map_err(std::io::Error::other)?;
            let written = match nix::sys::uio::pwritev(file, rest, offset) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            at += written as u64;
            std::io::IoSlice::advance_slices(&mut rest, written);
        }
    }
    Ok(())
}

/// One segment and its indexes.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared with [`FileSlice`]s handed out for zero-copy sends.
    log: Arc<File>,
    /// Bytes of whole batches in the `.log`.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    /// The offset after the last batch; `base_offset` when empty.
    next_offset: i64,
    /// Largest timestamp and the last offset of the first batch holding it.
    max_timestamp: Option<(i64, i64)>,
    /// Bytes appended since the last offset index entry.
    bytes_since_index: u64,
    /// When the segment.ms clock started: the wall clock time of the first
    /// append, or for a segment loaded from disk its first batch's max
    /// timestamp (the closest thing to it that the files keep). `None` while
    /// empty.
    roll_base_ms: Option<i64>,
    /// Written to since the last fsync.
    dirty: bool,
}

impl Segment {
    /// Creates a new, empty segment in `dir`.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment, Error> {
        let log_path = dir.join(file_name(base_offset, LOG_EXTENSION));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map_err(|e| io_error(&log_path, e))?;
        for extension in [INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
            remove_if_exists(&dir.join(file_name(base_offset, extension)))?;
        }
        let (offset_index, _) =
            OffsetIndex::open(&dir.join(file_name(base_offset, INDEX_EXTENSION)))?;
        let (time_index, _) =
            TimeIndex::open(&dir.join(file_name(base_offset, TIME_INDEX_EXTENSION)))?;
        Ok(Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size: 0,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: None,
            bytes_since_index: 0,
            roll_base_ms: None,
            dirty: true,
        })
    }

    /// Opens an existing segment. With `recover`, or when an index is missing
    /// or damaged, every batch is checked (CRC included), a torn or corrupt
    /// tail is cut off and the indexes are rebuilt. Returns the segment and
    /// the number of bytes cut off.
    pub(crate) fn open(
        dir: &Path,
        base_offset: i64,
        recover: bool,
        index_interval_bytes: u32,
    ) -> Result<(Segment, u64), Error> {
        let log_path = dir.join(file_name(base_offset, LOG_EXTENSION));
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| io_error(&log_path, e))?;
        let size = log.metadata().map_err(|e| io_error(&log_path, e))?.len();
        let (offset_index, offset_damage) =
            OffsetIndex::open(&dir.join(file_name(base_offset, INDEX_EXTENSION)))?;
        let (time_index, time_damage) =
            TimeIndex::open(&dir.join(file_name(base_offset, TIME_INDEX_EXTENSION)))?;
        let mut segment = Segment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            offset_index,
            time_index,
            next_offset: base_offset,
            max_timestamp: None,
            bytes_since_index: 0,
            roll_base_ms: None,
            dirty: false,
        };
        let damage = offset_damage
            .map(|d| (segment.offset_index.path().to_path_buf(), d))
            .or_else(|| time_damage.map(|d| (segment.time_index.path().to_path_buf(), d)));
        let dropped = if recover {
            info!(path = %segment.log_path.display(), "recovering segment after unclean shutdown");
            segment.recover(index_interval_bytes)?
        } else if let Some((path, damage)) = damage {
            if !(damage == Damage::Missing && size == 0) {
                info!(path = %path.display(), %damage, "rebuilding index");
            }
            segment.recover(index_interval_bytes)?
        } else if let Err(error) = segment.load_tail() {
            warn!(path = %segment.log_path.display(), %error, "index disagrees with log, rebuilding");
            segment.recover(index_interval_bytes)?
        } else {
            0
        };
        if segment.size > 0 {
            let first = segment.read_at(0, BATCH_HEADER_LEN)?;
            segment.roll_base_ms = Some(BatchHeader::parse(&first)?.max_timestamp);
        }
        Ok((segment, dropped))
    }

    /// Sets the in-memory state from trusted indexes and the batch headers
    /// after the last offset index entry; fails if they do not agree.
    fn load_tail(&mut self) -> Result<(), Error> {
        let start = self
            .offset_index
            .last()
            .map_or(0, |e| u64::from(e.position));
        if start > self.size {
            return Err(self.corrupt(start, "offset index points past the end of the log"));
        }
        let mut max_timestamp = self
            .time_index
            .last()
            .map(|e| (e.timestamp, self.base_offset + i64::from(e.relative_offset)));
        let mut next_offset = self.base_offset;
        let indexed_last = self
            .offset_index
            .last()
            .map(|e| self.base_offset + i64::from(e.relative_offset));
        let mut first = true;
        let mismatch = self.scan_headers(start, |pos, header| {
            if first {
                first = false;
                if indexed_last.is_some_and(|last| last != header.last_offset()) {
                    return ControlFlow::Break(pos);
                }
            }
            if max_timestamp.is_none_or(|(ts, _)| header.max_timestamp > ts) {
                max_timestamp = Some((header.max_timestamp, header.last_offset()));
            }
            next_offset = header.next_offset();
            ControlFlow::Continue(())
        })?;
        if let Some(pos) = mismatch {
            return Err(self.corrupt(pos, "offset index entry does not name this batch"));
        }
        if first && indexed_last.is_some() {
            return Err(self.corrupt(start, "offset index entry points at the end of the log"));
        }
        if let Some((_, offset)) = max_timestamp {
            if offset >= next_offset {
                return Err(self.corrupt(
                    self.size,
                    "time index names an offset past the end of the log",
                ));
            }
        }
        self.max_timestamp = max_timestamp;
        self.next_offset = next_offset;
        self.bytes_since_index = self.size - start;
        Ok(())
    }

    /// Checks every batch from the start, cuts the file at the first torn or
    /// invalid one, and rebuilds both indexes. Returns the bytes cut off.
    pub(crate) fn recover(&mut self, index_interval_bytes: u32) -> Result<u64, Error> {
        self.offset_index.truncate(0)?;
        self.time_index.truncate(0)?;
        self.next_offset = self.base_offset;
        self.max_timestamp = None;
        self.bytes_since_index = 0;
        let end = self.size;
        let mut pos = 0;
        let mut chunk = Vec::new();
        let mut invalid = None;
        while pos < end {
            match self.check_batch(pos, end, &mut chunk)? {
                Ok(header) => {
                    self.index_batch(pos, &header, index_interval_bytes);
                    pos += header.total_size() as u64;
                }
                Err(reason) => {
                    invalid = Some(reason);
                    break;
                }
            }
        }
        let dropped = end - pos;
        if let Some(reason) = invalid {
            warn!(
                path = %self.log_path.display(),
                position = pos,
                bytes_dropped = dropped,
                %reason,
                "truncating torn or corrupt tail of segment"
            );
            self.log
                .set_len(pos)
                .map_err(|e| io_error(&self.log_path, e))?;
            self.size = pos;
        }
        self.dirty = true;
        self.flush()?;
        Ok(dropped)
    }

    /// Checks the batch at `pos` fully (header, bounds, offsets, CRC).
    /// The outer error is I/O; the inner one says why the batch is invalid.
    fn check_batch(
        &self,
        pos: u64,
        end: u64,
        chunk: &mut Vec<u8>,
    ) -> Result<Result<BatchHeader, String>, Error> {
        let remaining = end - pos;
        if remaining < BATCH_HEADER_LEN as u64 {
            return Ok(Err(format!(
                "{remaining} trailing bytes are shorter than a batch header"
            )));
        }
        let head = self.read_at(pos, BATCH_HEADER_LEN)?;
        let header = match BatchHeader::parse(&head) {
            Ok(header) => header,
            Err(error) => return Ok(Err(error.to_string())),
        };
        let size = header.total_size() as u64;
        if size > remaining {
            return Ok(Err(format!(
                "batch of {size} bytes runs past the end of the file, {remaining} bytes left"
            )));
        }
        if header.base_offset < self.next_offset {
            return Ok(Err(format!(
                "batch base offset {} is below the expected {}",
                header.base_offset, self.next_offset
            )));
        }
        if u32::try_from(header.last_offset() - self.base_offset).is_err() {
            return Ok(Err(format!(
                "batch last offset {} does not fit relative to segment base {}",
                header.last_offset(),
                self.base_offset
            )));
        }
        let mut crc = crc32c::crc32c(&head[CRC_START..]);
        let mut at = pos + BATCH_HEADER_LEN as u64;
        let batch_end = pos + size;
        while at < batch_end {
            let len = CRC_CHUNK.min((batch_end - at) as usize);
            chunk.resize(len, 0);
            self.log
                .read_exact_at(chunk, at)
                .map_err(|e| io_error(&self.log_path, e))?;
            crc = crc32c::crc32c_append(crc, chunk);
            at += len as u64;
        }
        if crc != header.crc {
            return Ok(Err(Error::CrcMismatch {
                stored: header.crc,
                computed: crc,
            }
            .to_string()));
        }
        Ok(Ok(header))
    }

    /// Updates the in-memory state and indexes for a batch written at `pos`.
    /// Index writes that fail are logged and skipped: the index is sparse, so
    /// a missing entry only makes lookups scan further.
    fn index_batch(&mut self, pos: u64, header: &BatchHeader, index_interval_bytes: u32) {
        if self
            .max_timestamp
            .is_none_or(|(ts, _)| header.max_timestamp > ts)
        {
            self.max_timestamp = Some((header.max_timestamp, header.last_offset()));
        }
        if self.bytes_since_index >= u64::from(index_interval_bytes) {
            let entry = self
                .relative(header.last_offset())
                .zip(u32::try_from(pos).ok());
            if let Some((relative_offset, position)) = entry {
                if let Err(error) = self.offset_index.append(OffsetEntry {
                    relative_offset,
                    position,
                }) {
                    warn!(%error, "offset index append failed, continuing without the entry");
                }
                self.append_time_entry();
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_size() as u64;
        self.next_offset = header.next_offset();
    }

    /// Records the largest timestamp so far in the time index, if it grew.
    fn append_time_entry(&mut self) {
        let Some((timestamp, offset)) = self.max_timestamp else {
            return;
        };
        let Some(relative_offset) = self.relative(offset) else {
            return;
        };
        if let Err(error) = self.time_index.append(TimeEntry {
            timestamp,
            relative_offset,
        }) {
            warn!(%error, "time index append failed, continuing without the entry");
        }
    }

    /// `offset` relative to the base offset, if it fits an index entry.
    fn relative(&self, offset: i64) -> Option<u32> {
        u32::try_from(offset - self.base_offset).ok()
    }

    /// Appends whole, already checked batches with their headers.
    pub(crate) fn append(
        &mut self,
        pieces: &[&[u8]],
        len: usize,
        headers: &[BatchHeader],
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<(), Error> {
        let start = self.size;
        if let Err(e) = write_all_vectored_at(&self.log, pieces, start) {
            // Best effort: drop whatever part was written; it is past `size`
            // and would be overwritten or cut by recovery anyway.
            let _ = self.log.set_len(start);
            return Err(io_error(&self.log_path, e));
        }
        self.size += len as u64;
        self.dirty = true;
        self.roll_base_ms.get_or_insert(now_ms);
        let mut pos = start;
        for header in headers {
            self.index_batch(pos, header, index_interval_bytes);
            pos += header.total_size() as u64;
        }
        Ok(())
    }

    /// The position and header of the first batch whose last offset is at
    /// least `offset`, if the segment has one.
    pub(crate) fn find_position(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, Error> {
        self.walk_headers(self.indexed_position(offset), |header| {
            header.last_offset() >= offset
        })
    }

    /// Where to start looking for `offset`: the position the offset index
    /// gives for the greatest indexed offset at or below it (0 if none).
    /// Batches from there to `offset` span at most `index.interval.bytes`.
    fn indexed_position(&self, offset: i64) -> u64 {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX));
        let relative = u32::try_from(relative).expect("clamped to the u32 range");
        self.offset_index
            .lookup(relative)
            .map_or(0, |e| u64::from(e.position))
    }

    /// The position and header of the first batch whose max timestamp is at
    /// least `timestamp`.
    pub(crate) fn find_by_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(u64, BatchHeader)>, Error> {
        // Every batch before the one a time entry names has a smaller max
        // timestamp, so the scan can start there.
        let start = match self.time_index.lookup(timestamp) {
            Some(entry) => self
                .offset_index
                .lookup(entry.relative_offset)
                .map_or(0, |e| u64::from(e.position)),
            None => 0,
        };
        self.scan_headers(start, |pos, header| {
            if header.max_timestamp >= timestamp {
                ControlFlow::Break((pos, *header))
            } else {
                ControlFlow::Continue(())
            }
        })
    }

    /// Appends whole batches to `out`, starting with the one containing
    /// `offset` (or the first after it), while their last offset is below
    /// `max_offset` and `out` stays within `max_bytes`, except that the first
    /// batch of the whole read (`out` empty) is taken even if larger.
    /// Returns whether the read is complete (a limit was hit) rather than the
    /// end of this segment reached.
    pub(crate) fn read_into(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        out: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let Some((start, first)) = self.find_position(offset)? else {
            return Ok(false);
        };
        if first.last_offset() >= max_offset {
            return Ok(true);
        }
        let budget = max_bytes.saturating_sub(out.len());
        let first_size = first.total_size();
        if first_size > budget {
            if out.is_empty() {
                out.extend_from_slice(&self.read_at(start, first_size)?);
            }
            return Ok(true);
        }
        let available = usize::try_from(self.size - start).unwrap_or(usize::MAX);
        let want = budget.min(available);
        let old_len = out.len();
        out.resize(old_len + want, 0);
        self.log
            .read_exact_at(&mut out[old_len..], start)
            .map_err(|e| io_error(&self.log_path, e))?;
        let mut taken = 0;
        let mut complete = false;
        while taken < want {
            let header = match BatchHeader::parse(&out[old_len + taken..]) {
                Ok(header) => header,
                // A header cut by the byte budget: the budget is used up.
                Err(_) if want - taken < BATCH_HEADER_LEN && want < available => {
                    complete = true;
                    break;
                }
                Err(error) => {
                    out.truncate(old_len);
                    return Err(self.corrupt(start + taken as u64, &error.to_string()));
                }
            };
            if header.last_offset() >= max_offset || taken + header.total_size() > want {
                complete = true;
                break;
            }
            taken += header.total_size();
        }
        out.truncate(old_len + taken);
        Ok(complete || want < available)
    }

    /// Like [`Segment::read_into`], but names byte ranges of the file
    /// instead of copying them, for zero-copy sends, and (as Kafka does) may
    /// end inside a batch when `max_bytes` runs out: clients drop a partial
    /// trailing batch and fetch it again. Batches at or past `max_offset`
    /// are never included. `taken` is what earlier segments contributed.
    /// Returns whether the read is complete rather than the end of this
    /// segment reached.
    pub(crate) fn slice_into(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        taken: &mut usize,
        out: &mut Vec<FileSlice>,
    ) -> Result<bool, Error> {
        let Some((start, first)) = self.find_position(offset)? else {
            return Ok(false);
        };
        if first.last_offset() >= max_offset {
            return Ok(true);
        }
        let budget = max_bytes.saturating_sub(*taken) as u64;
        let first_size = first.total_size() as u64;
        if first_size > budget {
            if *taken == 0 {
                self.push_slice(start, first_size, taken, out);
            }
            return Ok(true);
        }
        // Where the batches below `max_offset` end in this segment.
        let readable_end = if max_offset >= self.next_offset {
            self.size
        } else {
            self.position_of_first_at_or_past(start, max_offset)?
        };
        let end = readable_end.min(start.saturating_add(budget));
        self.push_slice(start, end - start, taken, out);
        Ok(end < self.size)
    }

    fn push_slice(&self, position: u64, len: u64, taken: &mut usize, out: &mut Vec<FileSlice>) {
        if len == 0 {
            return;
        }
        *taken += usize::try_from(len).unwrap_or(usize::MAX);
        out.push(FileSlice {
            file: self.log.clone(),
            position,
            len,
        });
    }

    /// The position of the first batch from `from` on whose last offset is
    /// at or past `offset` (the segment size if none).
    fn position_of_first_at_or_past(&self, from: u64, offset: i64) -> Result<u64, Error> {
        let start = self.indexed_position(offset).max(from);
        Ok(self
            .walk_headers(start, |header| header.last_offset() >= offset)?
            .map_or(self.size, |(pos, _)| pos))
    }

    /// Reads headers from `pos` until `stop` says so, a window of
    /// [`WALK_CHUNK`] bytes at a time: enough for every small batch between
    /// an index entry and the offset it leads to (`index.interval.bytes`
    /// apart by default) in one read, without reading far into large ones.
    fn walk_headers(
        &self,
        pos: u64,
        stop: impl Fn(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>, Error> {
        self.scan_headers_in(pos, WALK_CHUNK, |pos, header| {
            if stop(header) {
                ControlFlow::Break((pos, *header))
            } else {
                ControlFlow::Continue(())
            }
        })
    }

    /// Reads `len` bytes at `pos`.
    pub(crate) fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0; len];
        self.log
            .read_exact_at(&mut buf, pos)
            .map_err(|e| io_error(&self.log_path, e))?;
        Ok(buf)
    }

    /// Calls `f` with the header of each batch, in order.
    pub(crate) fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<(), Error> {
        self.scan_headers(0, |_, header| {
            f(header);
            ControlFlow::<()>::Continue(())
        })?;
        Ok(())
    }

    /// Calls `f` with the position and header of each batch from `from` on,
    /// until it breaks. The file is trusted: a header that does not parse or
    /// a batch past the end is an error.
    fn scan_headers<T>(
        &self,
        from: u64,
        f: impl FnMut(u64, &BatchHeader) -> ControlFlow<T>,
    ) -> Result<Option<T>, Error> {
        self.scan_headers_in(from, SCAN_CHUNK, f)
    }

    /// [`Segment::scan_headers`], reading `chunk` bytes at a time.
    fn scan_headers_in<T>(
        &self,
        from: u64,
        chunk: usize,
        mut f: impl FnMut(u64, &BatchHeader) -> ControlFlow<T>,
    ) -> Result<Option<T>, Error> {
        let mut window = Vec::new();
        let mut window_start = from;
        let mut pos = from;
        while pos < self.size {
            let remaining = self.size - pos;
            if remaining < BATCH_HEADER_LEN as u64 {
                return Err(self.corrupt(pos, "trailing bytes are shorter than a batch header"));
            }
            let window_end = window_start + window.len() as u64;
            if pos < window_start || pos + BATCH_HEADER_LEN as u64 > window_end {
                let len = usize::try_from(remaining).map_or(chunk, |r| r.min(chunk));
                window.resize(len, 0);
                self.log
                    .read_exact_at(&mut window, pos)
                    .map_err(|e| io_error(&self.log_path, e))?;
                window_start = pos;
            }
            let at = usize::try_from(pos - window_start).expect("position is inside the window");
            let header =
                BatchHeader::parse(&window[at..]).map_err(|e| self.corrupt(pos, &e.to_string()))?;
            let size = header.total_size() as u64;
            if size > remaining {
                return Err(self.corrupt(pos, "batch runs past the end of the log"));
            }
            if let ControlFlow::Break(found) = f(pos, &header) {
                return Ok(Some(found));
            }
            pos += size;
        }
        Ok(None)
    }

    fn corrupt(&self, pos: u64, what: &str) -> Error {
        Error::CorruptBatch(format!(
            "{} at position {pos}: {what}",
            self.log_path.display()
        ))
    }

    /// Cuts the segment at `pos`, a batch boundary where `offset` starts (or
    /// the end), and trims the indexes to match.
    pub(crate) fn truncate_at(&mut self, pos: u64, offset: i64) -> Result<(), Error> {
        self.log
            .set_len(pos)
            .map_err(|e| io_error(&self.log_path, e))?;
        self.size = pos;
        self.dirty = true;
        self.offset_index
            .truncate_while(|e| u64::from(e.position) < pos)?;
        let base = self.base_offset;
        self.time_index
            .truncate_while(|e| base + i64::from(e.relative_offset) < offset)?;
        if self.size == 0 {
            self.roll_base_ms = None;
        }
        self.load_tail()
    }

    /// Prepares a segment that stops being active: records its final
    /// largest timestamp in the time index and fsyncs everything.
    pub(crate) fn seal(&mut self) -> Result<(), Error> {
        self.append_time_entry();
        self.dirty = true;
        self.flush()
    }

    /// fsyncs the log and indexes if written to since the last fsync.
    pub(crate) fn flush(&mut self) -> Result<(), Error> {
        if self.dirty {
            self.log
                .sync_data()
                .map_err(|e| io_error(&self.log_path, e))?;
            self.offset_index.flush()?;
            self.time_index.flush()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Removes the segment's files; the `.log` first, so a crash in between
    /// leaves only orphan indexes, which the next open removes.
    pub(crate) fn delete_files(&self) -> Result<(), Error> {
        remove_if_exists(&self.log_path)?;
        remove_if_exists(self.offset_index.path())?;
        remove_if_exists(self.time_index.path())
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// The `.log` file, shared.
    pub(crate) fn log_file(&self) -> Arc<File> {
        self.log.clone()
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Largest timestamp and the last offset of the first batch holding it.
    pub(crate) fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.max_timestamp
    }

    pub(crate) fn roll_base_ms(&self) -> Option<i64> {
        self.roll_base_ms
    }

    #[cfg(test)]
    pub(crate) fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    #[cfg(test)]
    pub(crate) fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    #[cfg(test)]
    pub(crate) fn dirty_for_test(&self) -> bool {
        self.dirty
    }
}

/// Removes a file, which may already be gone.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, e)),
    }
}

#[cfg(test)]
mod tests;
