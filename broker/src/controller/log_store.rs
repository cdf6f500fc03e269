//! The durable Raft log: one append-only journal file,
//! `DATA/__cluster_metadata/metadata.log`, of records
//!
//! ```text
//! ┌──────────────┬────────────────┬──────────────────────────────┐
//! │ length u32 BE│ crc32c u32 BE  │ JSON Record (length bytes)   │ ...
//! └──────────────┴────────────────┴──────────────────────────────┘
//!   Vote | Entry 0 | Entry 1 | Committed | Entry 2 | Truncate{2} | Entry 2' | Purge(1) | ...
//! ```
//!
//! Replaying the journal from the start rebuilds the vote, the committed log
//! id, the purged log id and the entries. Appends, votes, truncations and
//! purges are fsynced before openraft hears they are done; the committed log
//! id is written without a sync (it is an optimisation: losing it only means
//! re-applying fewer entries at start-up). A crash mid-write leaves a torn or
//! corrupt last record, which the CRC catches: replay stops there and the
//! file is cut back to the last whole record. When dead records outnumber
//! live ones the journal is rewritten (temporary file, fsync, rename), so it
//! stays about as large as the entries openraft keeps.
//!
//! The entries stay in memory too: metadata logs are small, and openraft
//! keeps them short by snapshotting and purging.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, StorageError, Vote};
use serde::{Deserialize, Serialize};

use super::error::ControllerError;
use super::TypeConfig;

/// The journal's file name in the metadata directory.
pub(crate) const JOURNAL_FILE: &str = "metadata.log";

/// Bytes before each record's JSON: length and CRC32C.
const HEADER: usize = 8;

/// The largest record accepted on replay: far above any metadata entry, and
/// low enough that a corrupt length is not taken for a record.
const MAX_RECORD: usize = 256 << 20;

/// Dead records tolerated before a rewrite, beyond one per live record: keeps
/// rewrites rare when the log is short.
const COMPACT_SLACK: usize = 1024;

/// One journal record.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Record {
    /// The vote, replacing earlier ones.
    Vote(Vote<u64>),
    /// The last committed log id, replacing earlier ones.
    Committed(Option<LogId<u64>>),
    /// An entry; one at an index already present replaces it and every
    /// later entry.
    Entry(Entry<TypeConfig>),
    /// Deletes the entries at `since` and after.
    Truncate {
        /// The first index deleted.
        since: u64,
    },
    /// Deletes the entries up to and including this log id.
    Purge(LogId<u64>),
}

/// What replaying a journal gives.
#[derive(Debug, Default)]
struct Replayed {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// Bytes of whole, valid records from the start.
    valid_len: usize,
    /// How many records those are.
    records: usize,
}

impl Replayed {
    fn apply(&mut self, record: Record) {
        match record {
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = committed,
            Record::Entry(entry) => {
                let index = entry.log_id.index;
                drop(self.entries.split_off(&index));
                self.entries.insert(index, entry);
            }
            Record::Truncate { since } => drop(self.entries.split_off(&since)),
            Record::Purge(log_id) => {
                if self.purged.is_none_or(|p| p.index < log_id.index) {
                    self.purged = Some(log_id);
                }
                self.entries = self.entries.split_off(&(log_id.index + 1));
            }
        }
    }
}

/// Replays journal bytes up to the first record that is torn or fails its
/// CRC. A whole record with a good CRC that does not decode is an error, not
/// a tail to cut off: it was written whole, most likely by a newer Runnel
/// (a metadata command this version does not know), and cutting it would
/// lose committed metadata.
fn replay(bytes: &[u8]) -> Result<Replayed, String> {
    let mut state = Replayed::default();
    let mut at = 0;
    while let Some(next) = next_record(&bytes[at..]) {
        let (record, len) = next.map_err(|why| {
            format!(
                "the metadata log record at byte {at} is whole (its checksum holds) but does not decode: {why}; it was most likely written by a newer Runnel, which this one cannot read back (downgrade after the upgrade wrote new kinds of metadata)"
            )
        })?;
        state.apply(record);
        at += len;
        state.valid_len = at;
        state.records += 1;
    }
    Ok(state)
}

/// The record at the start of `bytes` and its framed length; `None` if it
/// is torn or fails its CRC, an error if it is whole but does not decode.
fn next_record(bytes: &[u8]) -> Option<Result<(Record, usize), String>> {
    let header = bytes.get(..HEADER)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(HEADER..HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    Some(
        serde_json::from_slice(payload)
            .map(|record| (record, HEADER + len))
            .map_err(|e| e.to_string()),
    )
}

/// Appends one framed record to `out`.
fn frame(record: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(record).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_RECORD)
        .ok_or_else(|| io::Error::other(format!("record of {} bytes", payload.len())))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// The open journal: the file and the state it holds.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
    records: usize,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    purged: Option<LogId<u64>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, cutting off a torn tail.
    fn open(dir: &Path) -> Result<Journal, ControllerError> {
        let path = dir.join(JOURNAL_FILE);
        let storage = |source| ControllerError::Storage {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(storage)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(storage)?;
        let state = replay(&bytes).map_err(|reason| ControllerError::Corrupt {
            path: path.clone(),
            reason,
        })?;
        if state.valid_len < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                kept = state.valid_len,
                dropped = bytes.len() - state.valid_len,
                "metadata log ends in a torn or corrupt record; cutting it off"
            );
            file.set_len(state.valid_len as u64).map_err(storage)?;
            file.sync_all().map_err(storage)?;
        }
        Ok(Journal {
            path: path.clone(),
            file,
            len: state.valid_len as u64,
            records: state.records,
            vote: state.vote,
            committed: state.committed,
            purged: state.purged,
            entries: state.entries,
        })
    }

    /// Writes records at the end, fsyncing when `sync`. On failure the file
    /// is cut back so no half record stays in front of later ones.
    fn write(&mut self, records: &[Record], sync: bool) -> io::Result<()> {
        let mut buf = Vec::new();
        for record in records {
            frame(record, &mut buf)?;
        }
        let written =
            self.file.write_all(&buf).and_then(
                |()| {
                    if sync {
                        self.file.sync_data()
                    } else {
                        Ok(())
                    }
                },
            );
        if let Err(error) = written {
            // Best effort: the caller reports the error and openraft stops.
            let _ = self.file.set_len(self.len);
            return Err(error);
        }
        self.len += buf.len() as u64;
        self.records += records.len();
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = entries.into_iter().map(Record::Entry).collect();
        self.write(&records, true)?;
        for record in records {
            if let Record::Entry(entry) = record {
                let index = entry.log_id.index;
                drop(self.entries.split_off(&index));
                self.entries.insert(index, entry);
            }
        }
        self.compact_if_worth_it()
    }

    fn save_vote(&mut self, vote: &Vote<u64>) -> io::Result<()> {
        self.write(&[Record::Vote(*vote)], true)?;
        self.vote = Some(*vote);
        self.compact_if_worth_it()
    }

    fn save_committed(&mut self, committed: Option<LogId<u64>>) -> io::Result<()> {
        self.write(&[Record::Committed(committed)], false)?;
        self.committed = committed;
        self.compact_if_worth_it()
    }

    fn truncate(&mut self, since: u64) -> io::Result<()> {
        self.write(&[Record::Truncate { since }], true)?;
        drop(self.entries.split_off(&since));
        self.compact_if_worth_it()
    }

    fn purge(&mut self, upto: LogId<u64>) -> io::Result<()> {
        self.write(&[Record::Purge(upto)], true)?;
        if self.purged.is_none_or(|p| p.index < upto.index) {
            self.purged = Some(upto);
        }
        self.entries = self.entries.split_off(&(upto.index + 1));
        self.compact_if_worth_it()
    }

    /// Records that replay would still need.
    fn live_records(&self) -> usize {
        self.entries.len() + 3
    }

    fn compact_if_worth_it(&mut self) -> io::Result<()> {
        if self.records > 2 * self.live_records() + COMPACT_SLACK {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with only the live records, atomically.
    fn compact(&mut self) -> io::Result<()> {
        let mut records = Vec::with_capacity(self.live_records());
        if let Some(vote) = self.vote {
            records.push(Record::Vote(vote));
        }
        if let Some(purged) = self.purged {
            records.push(Record::Purge(purged));
        }
        records.extend(self.entries.values().cloned().map(Record::Entry));
        if self.committed.is_some() {
            records.push(Record::Committed(self.committed));
        }
        let mut buf = Vec::new();
        for record in &records {
            frame(record, &mut buf)?;
        }
        crate::clock::write_atomically(&self.path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.len = buf.len() as u64;
        self.records = records.len();
        tracing::debug!(path = %self.path.display(), records = self.records, "metadata log compacted");
        Ok(())
    }
}

/// openraft's log storage over the journal. Clones share the journal (the
/// log reader openraft asks for is a clone).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    journal: Arc<Mutex<Journal>>,
}

impl LogStore {
    /// Opens the journal in `dir` (which must exist).
    pub(crate) fn open(dir: &Path) -> Result<LogStore, ControllerError> {
        Ok(LogStore {
            journal: Arc::new(Mutex::new(Journal::open(dir)?)),
        })
    }

    fn read<R>(&self, f: impl FnOnce(&Journal) -> R) -> R {
        f(&super::lock(&self.journal))
    }

    /// Runs a write on a blocking thread (it fsyncs).
    async fn write(
        &self,
        subject: ErrorSubject<u64>,
        f: impl FnOnce(&mut Journal) -> io::Result<()> + Send + 'static,
    ) -> Result<(), StorageError<u64>> {
        let journal = self.journal.clone();
        let result = tokio::task::spawn_blocking(move || f(&mut super::lock(&journal)))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)));
        result.map_err(|e| StorageError::from_io_error(subject, ErrorVerb::Write, e))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        Ok(self.read(|j| j.entries.range(range).map(|(_, e)| e.clone()).collect()))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        Ok(self.read(|j| {
            let last = j
                .entries
                .values()
                .next_back()
                .map(|e| e.log_id)
                .or(j.purged);
            LogState {
                last_purged_log_id: j.purged,
                last_log_id: last,
            }
        }))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.write(ErrorSubject::Vote, move |j| j.save_vote(&vote))
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.read(|j| j.vote))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.write(ErrorSubject::Store, move |j| j.save_committed(committed))
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.read(|j| j.committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let journal = self.journal.clone();
        let result = tokio::task::spawn_blocking(move || super::lock(&journal).append(entries))
            .await
            .unwrap_or_else(|join| Err(io::Error::other(join)));
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let kind = error.kind();
                callback.log_io_completed(Err(io::Error::new(kind, error.to_string())));
                Err(StorageError::from_io_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Write,
                    error,
                ))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.write(ErrorSubject::Logs, move |j| j.truncate(log_id.index))
            .await
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.write(ErrorSubject::Logs, move |j| j.purge(log_id))
            .await
    }
}

#[cfg(test)]
mod tests;
