//! Idempotent producers: producer ids, and per-partition sequence state that
//! turns a retried batch into a no-op and rejects gaps.
//!
//! ```text
//!   InitProducerId ─▶ ProducerIdManager (blocks of ids persisted in DATA/producer_ids)
//!   Produce batch (pid, epoch, first..last seq)
//!        ─▶ ProducerStateTable::check ─▶ Append | Duplicate(original offsets) | Error
//!        ─▶ after the append: ProducerStateTable::record
//!   close / housekeeping ─▶ producer_state.snapshot beside the log (JSON),
//!   open ─▶ snapshot + replay of the batches after its offset
//! ```
//!
//! The same table follows transactions on the partition: a transactional
//! batch opens its producer's transaction (its first offset bounds the last
//! stable offset), a commit or abort marker (a control batch the
//! transaction coordinator has the leader write) closes it, and an aborted
//! transaction's offsets are kept for read_committed fetches.
//!
//! KIP-890 (part 1): a transactional batch may open a transaction here only
//! once the coordinator has confirmed the partition is in it. The produce
//! path starts a verification ([`ProducerStateTable::start_verification`],
//! a guard), asks the coordinator, and appends with the guard; a marker or
//! transactional batch of the producer in between clears the guard, so a
//! confirmation that an abort overtook cannot open a hanging transaction.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kafka_protocol::ResponseError;
use runnel_storage::{BatchHeader, PartitionLog};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::BrokerError;

/// Batches remembered per producer for duplicate detection; Kafka keeps 5,
/// matching the client's maximum in-flight requests with idempotence.
const CACHED_BATCHES: usize = 5;

/// Producer ids are handed out from blocks this large, each persisted before use.
const ID_BLOCK: i64 = 1000;

/// The snapshot file in each partition directory.
pub(crate) const SNAPSHOT_FILE: &str = "producer_state.snapshot";

/// Bytes read per step when replaying batches at start-up.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// How long an unfinished verification is kept (Kafka's default
/// `transaction.max.timeout.ms`): a producer that never came back with its
/// batch leaves nothing behind for longer.
const VERIFICATION_TTL_MS: i64 = 15 * 60 * 1000;

/// Verification guards are unique across tables, so a guard handed out
/// before a table was rebuilt never matches the new table's.
static GUARDS: AtomicU64 = AtomicU64::new(1);

/// A pending verification: the guard handed to the produce that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verification {
    guard: u64,
    started_ms: i64,
}

/// What a transactional append must show (KIP-890).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnCheck {
    /// Nothing: verification is off, or the writer is the broker itself.
    Unchecked,
    /// The producer's transaction must be open here already, or this guard
    /// (from [`ProducerStateTable::start_verification`]) still be pending.
    Verified(Option<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// The first offset of the producer's open transaction on this partition.
    #[serde(default)]
    txn_first_offset: Option<i64>,
    /// The largest timestamp of its last batch (-1 before the first).
    #[serde(default = "minus_one")]
    last_timestamp: i64,
    /// The coordinator epoch of its last marker (-1 before the first).
    #[serde(default = "minus_one_i32")]
    coordinator_epoch: i32,
}

fn minus_one() -> i64 {
    -1
}

fn minus_one_i32() -> i32 {
    -1
}

/// A transaction marker as stored: what it says and the epoch of the
/// coordinator that wrote it (the leader epoch of its `__transaction_state`
/// partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControlRecord {
    /// Commit or abort.
    pub(crate) marker: Marker,
    /// The writer's coordinator epoch.
    pub(crate) coordinator_epoch: i32,
}

/// A producer as DescribeProducers shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerView {
    /// The producer id.
    pub(crate) producer_id: i64,
    /// Its epoch.
    pub(crate) epoch: i16,
    /// The sequence of its last record, -1 if none.
    pub(crate) last_sequence: i32,
    /// The largest timestamp of its last batch, -1 if none.
    pub(crate) last_timestamp: i64,
    /// The first offset of its open transaction, -1 if none.
    pub(crate) txn_start_offset: i64,
    /// The coordinator epoch of its last marker, -1 if none.
    pub(crate) coordinator_epoch: i32,
}

/// What a transaction marker (control batch) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// The transaction aborted: read_committed consumers skip its records.
    Abort,
    /// The transaction committed.
    Commit,
}

impl Marker {
    /// The control record type Kafka writes in the marker's key.
    pub(crate) fn control_type(self) -> i16 {
        match self {
            Marker::Abort => 0,
            Marker::Commit => 1,
        }
    }
}

/// An aborted transaction on one partition, as Fetch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AbortedTxn {
    /// The producer.
    pub(crate) producer_id: i64,
    /// Its first record on the partition.
    pub(crate) first_offset: i64,
    /// The offset of its abort marker.
    pub(crate) last_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// Already in the log at these offsets: acknowledge without appending.
    Duplicate {
        /// The original first offset.
        base_offset: i64,
    },
    /// Refuse it.
    Reject(ResponseError),
}

/// Tells tables apart, so a snapshot taken from a table that has since been
/// rebuilt (after a truncation) is never installed.
static TABLE_IDS: AtomicU64 = AtomicU64::new(0);

/// Sequence state of every producer that wrote to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Aborted transactions, in the order of their markers.
    aborted: Vec<AbortedTxn>,
    /// Verifications in flight, by producer id (in memory only).
    verifying: HashMap<i64, Verification>,
    /// This table's identity (see `TABLE_IDS`).
    id: u64,
    /// Changes recorded so far, and how many of them the snapshot on disk holds.
    changes: u64,
    snapshotted: u64,
}

impl Default for ProducerStateTable {
    fn default() -> Self {
        Self {
            producers: HashMap::new(),
            ongoing: BTreeMap::new(),
            aborted: Vec::new(),
            verifying: HashMap::new(),
            id: TABLE_IDS.fetch_add(1, Ordering::Relaxed),
            changes: 0,
            snapshotted: 0,
        }
    }
}

/// A snapshot taken under the partition lock, to be written without it:
/// `stage` writes and syncs a temporary file, `ProducerStateTable::install`
/// (under the lock again) renames it into place if it is still valid.
#[derive(Debug)]
pub(crate) struct ProducerSnapshot {
    path: PathBuf,
    table: u64,
    changes: u64,
    snapshot: Snapshot,
}

/// A snapshot written to its temporary file, not yet in place.
#[derive(Debug)]
pub(crate) struct StagedSnapshot {
    tmp: PathBuf,
    path: PathBuf,
    table: u64,
    changes: u64,
    end_offset: i64,
}

impl ProducerSnapshot {
    /// Writes and syncs the temporary file; no lock is needed.
    pub(crate) fn stage(self) -> Result<StagedSnapshot, BrokerError> {
        let tmp = self.path.with_extension("staged");
        let json = serde_json::to_vec(&self.snapshot)
            .map_err(|e| BrokerError::MetadataIo(format!("encode producer state: {e}")))?;
        crate::clock::write_synced(&tmp, &json)
            .map_err(|e| BrokerError::MetadataIo(format!("write {}: {e}", tmp.display())))?;
        Ok(StagedSnapshot {
            tmp,
            path: self.path,
            table: self.table,
            changes: self.changes,
            end_offset: self.snapshot.end_offset,
        })
    }
}

impl StagedSnapshot {
    /// Makes the rename durable; called after `install`, without the lock.
    pub(crate) fn sync_dir(&self) -> Result<(), BrokerError> {
        crate::clock::sync_parent_dir(&self.path).map_err(|e| {
            BrokerError::MetadataIo(format!(
                "sync the directory of {}: {e}",
                self.path.display()
            ))
        })
    }
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateTable {
    /// Decides what to do with a batch (before it is appended).
    pub(crate) fn check(&self, h: &BatchHeader) -> SequenceCheck {
        if h.producer_id < 0 || h.base_sequence < 0 {
            return SequenceCheck::Append;
        }
        let last_seq = h.base_sequence.wrapping_add(h.last_offset_delta);
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ResponseError::InvalidProducerEpoch);
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return SequenceCheck::Duplicate {
                base_offset: dup.first_offset,
            };
        }
        match entry.batches.back() {
            Some(last) if h.base_sequence != next_seq(last.last_seq) => {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            None if h.base_sequence != 0 => {
                SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Starts verifying that `producer_id`'s transaction includes this
    /// partition: `None` when its transaction is open here already (no
    /// need), else the guard its append must carry. A verification already
    /// pending is shared.
    pub(crate) fn start_verification(&mut self, producer_id: i64, now_ms: i64) -> Option<u64> {
        if self.has_open_txn(producer_id) {
            return None;
        }
        self.verifying
            .retain(|_, v| now_ms - v.started_ms < VERIFICATION_TTL_MS);
        let v = self
            .verifying
            .entry(producer_id)
            .or_insert_with(|| Verification {
                guard: GUARDS.fetch_add(1, Ordering::Relaxed),
                started_ms: now_ms,
            });
        Some(v.guard)
    }

    /// Whether a transactional batch of `producer_id` may be appended:
    /// INVALID_TXN_STATE unless its transaction is open here or `check`
    /// carries the producer's pending guard.
    pub(crate) fn check_txn(&self, producer_id: i64, check: TxnCheck) -> Result<(), ResponseError> {
        match check {
            TxnCheck::Unchecked => Ok(()),
            _ if self.has_open_txn(producer_id) => Ok(()),
            TxnCheck::Verified(Some(guard))
                if self.verifying.get(&producer_id).map(|v| v.guard) == Some(guard) =>
            {
                Ok(())
            }
            TxnCheck::Verified(_) => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Whether `producer_id` has a transaction open on this partition.
    fn has_open_txn(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|e| e.txn_first_offset.is_some())
    }

    /// Remembers an appended batch (its header carries the assigned offsets);
    /// `marker` is what a control batch says (see [`control_marker`]).
    pub(crate) fn record(&mut self, h: &BatchHeader, marker: Option<ControlRecord>) {
        if h.producer_id < 0 {
            return;
        }
        if h.is_transactional() {
            // The transaction is open now, or over: either way a pending
            // verification no longer stands.
            self.verifying.remove(&h.producer_id);
        }
        if h.is_control() {
            if let Some(marker) = marker {
                self.complete_txn(h, marker);
            }
            return;
        }
        let sequenced = h.base_sequence >= 0;
        if !sequenced && !h.is_transactional() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                txn_first_offset: None,
                last_timestamp: -1,
                coordinator_epoch: -1,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = h.max_timestamp;
        if h.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        if sequenced {
            entry.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: h.base_sequence.wrapping_add(h.last_offset_delta),
                first_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
            while entry.batches.len() > CACHED_BATCHES {
                entry.batches.pop_front();
            }
        }
        self.changes += 1;
    }

    /// Remembers every batch of `bytes` (whose headers are `headers`, in
    /// order), reading what each control batch says.
    pub(crate) fn record_all(&mut self, bytes: &[u8], headers: &[BatchHeader]) {
        let mut position = 0usize;
        for h in headers {
            let size = h.total_size();
            let marker = if h.is_control() {
                bytes
                    .get(position..position + size)
                    .and_then(control_marker)
            } else {
                None
            };
            self.record(h, marker);
            position += size;
        }
    }

    /// A marker closes the producer's open transaction. A marker at a newer
    /// epoch (the coordinator fenced the producer) restarts its sequences.
    fn complete_txn(&mut self, h: &BatchHeader, control: ControlRecord) {
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                txn_first_offset: None,
                last_timestamp: -1,
                coordinator_epoch: -1,
            });
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(control.coordinator_epoch);
        if let Some(first) = entry.txn_first_offset.take() {
            self.ongoing.remove(&first);
            if control.marker == Marker::Abort {
                self.aborted.push(AbortedTxn {
                    producer_id: h.producer_id,
                    first_offset: first,
                    last_offset: h.base_offset,
                });
            }
        }
        self.changes += 1;
    }

    /// TRANSACTION_COORDINATOR_FENCED for a marker from a coordinator older
    /// than the one that wrote the producer's last marker (a deposed
    /// coordinator's late marker), as Kafka checks.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.producers.get(&producer_id) {
            Some(e) if coordinator_epoch < e.coordinator_epoch => {
                Err(ResponseError::TransactionCoordinatorFenced)
            }
            _ => Ok(()),
        }
    }

    /// Every producer this partition knows, by id (DescribeProducers).
    pub(crate) fn describe(&self) -> Vec<ProducerView> {
        let mut views: Vec<ProducerView> = self
            .producers
            .iter()
            .map(|(id, e)| ProducerView {
                producer_id: *id,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
                coordinator_epoch: e.coordinator_epoch,
            })
            .collect();
        views.sort_by_key(|v| v.producer_id);
        views
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset cannot pass it.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Where each producer's last batch (as this table knows it) starts.
    pub(crate) fn last_batch_offsets(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .filter_map(|e| e.batches.back().map(|b| b.first_offset))
            .collect()
    }

    /// The aborted transactions a read_committed fetch of `[from, to)` must
    /// be told about: those with records in that range.
    pub(crate) fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions wholly before the log start (retention).
    pub(crate) fn prune_aborted(&mut self, log_start_offset: i64) {
        let before = self.aborted.len();
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
        if self.aborted.len() != before {
            self.changes += 1;
        }
    }

    /// Forgets the aborted transactions whose abort markers the cleaner
    /// removed, given as (producer id, marker offset): with marker and
    /// records gone, a read_committed fetch must not report them (a client
    /// would skip the producer's records until an abort marker that never
    /// comes).
    pub(crate) fn forget_aborted(&mut self, removed: &[(i64, i64)]) {
        let before = self.aborted.len();
        self.aborted
            .retain(|a| !removed.contains(&(a.producer_id, a.last_offset)));
        if self.aborted.len() != before {
            self.changes += 1;
        }
    }

    /// Whether anything changed since the snapshot on disk.
    pub(crate) fn is_dirty(&self) -> bool {
        self.changes != self.snapshotted
    }

    /// The snapshot of this table for a log in `dir` ending at `end_offset`,
    /// if it changed since the last one.
    pub(crate) fn snapshot_due(&self, dir: &Path, end_offset: i64) -> Option<ProducerSnapshot> {
        self.is_dirty().then(|| self.snapshot(dir, end_offset))
    }

    /// The snapshot of this table for a log in `dir` ending at `end_offset`.
    fn snapshot(&self, dir: &Path, end_offset: i64) -> ProducerSnapshot {
        ProducerSnapshot {
            path: dir.join(SNAPSHOT_FILE),
            table: self.id,
            changes: self.changes,
            snapshot: Snapshot {
                end_offset,
                producers: self.producers.clone(),
                aborted: self.aborted.clone(),
            },
        }
    }

    /// Renames a staged snapshot into place, unless this table was rebuilt
    /// since it was taken or the log now ends before it (truncated): then
    /// it describes records that are gone, and is dropped. Only a rename
    /// happens here, so the partition lock is held for no disk wait.
    pub(crate) fn install(
        &mut self,
        staged: &StagedSnapshot,
        log_end_offset: i64,
    ) -> Result<bool, BrokerError> {
        if staged.table != self.id || staged.end_offset > log_end_offset {
            let _ = std::fs::remove_file(&staged.tmp);
            return Ok(false);
        }
        std::fs::rename(&staged.tmp, &staged.path).map_err(|e| {
            BrokerError::MetadataIo(format!("rename {}: {e}", staged.tmp.display()))
        })?;
        self.snapshotted = self.snapshotted.max(staged.changes);
        Ok(true)
    }

    /// Writes the snapshot for a log ending at `end_offset` (clean shutdown).
    pub(crate) fn write_snapshot(
        &mut self,
        dir: &Path,
        end_offset: i64,
    ) -> Result<(), BrokerError> {
        let staged = self.snapshot(dir, end_offset).stage()?;
        // Taken from this table at the log's end: it is always installed.
        self.install(&staged, end_offset)?;
        staged.sync_dir()
    }

    /// Loads the snapshot beside `log` and replays the batches after it.
    pub(crate) fn load(log: &PartitionLog) -> Result<Self, BrokerError> {
        let path = log.dir().join(SNAPSHOT_FILE);
        let end = log.log_end_offset();
        let mut table = ProducerStateTable::default();
        let mut from = log.log_start_offset();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Snapshot>(&bytes) {
                // A snapshot below the log start (retention, DeleteRecords)
                // still knows the producers; only what follows is replayed.
                Ok(s) if s.end_offset <= end => {
                    table.ongoing = s
                        .producers
                        .iter()
                        .filter_map(|(pid, e)| e.txn_first_offset.map(|first| (first, *pid)))
                        .collect();
                    table.producers = s.producers;
                    table.aborted = s.aborted;
                    table.prune_aborted(from);
                    from = from.max(s.end_offset);
                }
                // Past the log end it describes records since truncated: were
                // it kept, it would be taken once the log grew past it again
                // (Kafka deletes such snapshots on truncation too).
                Ok(s) if s.end_offset > end => {
                    if let Err(error) = std::fs::remove_file(&path) {
                        warn!(path = %path.display(), %error, "removing a producer state snapshot past the log end failed");
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    warn!(path = %path.display(), %error, "ignoring unreadable producer state snapshot")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(BrokerError::MetadataIo(format!(
                    "read {}: {e}",
                    path.display()
                )))
            }
        }
        let mut replayed = 0usize;
        while from < end {
            let read = log.read(from, REPLAY_READ_BYTES, i64::MAX)?;
            if read.records.is_empty() {
                break;
            }
            let headers = runnel_storage::validate_batches(&read.records)?;
            let mut position = 0usize;
            for header in headers {
                let size = header.total_size();
                if header.last_offset() >= from {
                    let marker = if header.is_control() {
                        read.records
                            .get(position..position + size)
                            .and_then(control_marker)
                    } else {
                        None
                    };
                    table.record(&header, marker);
                    replayed += 1;
                }
                position += size;
                from = from.max(header.next_offset());
            }
        }
        // With nothing replayed the snapshot on disk is current; otherwise
        // it is due (the replayed batches may be compacted away or deleted
        // before the next snapshot, and a second restart must not need them).
        if replayed == 0 {
            table.snapshotted = table.changes;
        }
        Ok(table)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    end_offset: i64,
    producers: HashMap<i64, ProducerEntry>,
    #[serde(default)]
    aborted: Vec<AbortedTxn>,
}

/// What a control batch says: the type in its first record's key
/// (version i16, type i16; 0 abort, 1 commit) and the coordinator epoch in
/// its value (version i16, epoch i32). `None` for anything else.
pub(crate) fn control_marker(batch: &[u8]) -> Option<ControlRecord> {
    let mut r = batch.get(runnel_storage::BATCH_HEADER_LEN..)?;
    let _length = read_varint(&mut r)?;
    let (_attributes, rest) = r.split_first()?;
    r = rest;
    let _timestamp_delta = read_varint(&mut r)?;
    let _offset_delta = read_varint(&mut r)?;
    let key_len = usize::try_from(read_varint(&mut r)?).ok()?;
    if key_len < 4 {
        return None;
    }
    let key = r.get(..4)?;
    let marker = match i16::from_be_bytes([key[2], key[3]]) {
        0 => Marker::Abort,
        1 => Marker::Commit,
        _ => return None,
    };
    r = r.get(key_len..)?;
    let value_len = read_varint(&mut r)?;
    let coordinator_epoch = match r.get(2..6) {
        Some(epoch) if value_len >= 6 => {
            i32::from_be_bytes([epoch[0], epoch[1], epoch[2], epoch[3]])
        }
        _ => -1,
    };
    Some(ControlRecord {
        marker,
        coordinator_epoch,
    })
}

/// A zigzag varint (as record fields are encoded).
fn read_varint(r: &mut &[u8]) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = r.split_first()?;
        *r = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// Hands out producer ids that are never reused anywhere in the cluster:
/// blocks come from the controller quorum (`AllocateProducerIds`).
#[derive(Debug, Default)]
pub(crate) struct ProducerIdManager {
    /// (next id, end of the current block)
    next: tokio::sync::Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// The next producer id, asking the controller for a block when needed.
    pub(crate) async fn next_id(
        &self,
        controller: &crate::controller::Controller,
    ) -> Result<i64, BrokerError> {
        let mut next = self.next.lock().await;
        if next.0 >= next.1 {
            let (_, result) = controller
                .write(crate::cluster::MetadataCommand::AllocateProducerIds { count: ID_BLOCK })
                .await
                .map_err(|e| BrokerError::Controller(e.to_string()))?;
            match result {
                crate::cluster::CommandResult::ProducerIds(start) => {
                    *next = (start, start + ID_BLOCK);
                }
                other => {
                    return Err(BrokerError::Controller(format!(
                        "producer id block refused: {other:?}"
                    )))
                }
            }
        }
        let id = next.0;
        next.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn retried_batch_is_a_duplicate_and_gaps_are_refused() {
        let mut t = ProducerStateTable::default();
        let first = header(7, 0, 0, 3, 10);
        assert_eq!(t.check(&first), SequenceCheck::Append);
        t.record(&first, None);
        assert_eq!(
            t.check(&header(7, 0, 0, 3, 0)),
            SequenceCheck::Duplicate { base_offset: 10 }
        );
        assert_eq!(
            t.check(&header(7, 0, 5, 1, 0)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(t.check(&header(7, 0, 3, 1, 0)), SequenceCheck::Append);
        assert_eq!(
            t.check(&header(8, 0, 4, 1, 0)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(t.check(&header(-1, -1, -1, 1, 0)), SequenceCheck::Append);
    }

    #[test]
    fn epochs_fence_and_reset_sequences() {
        let mut t = ProducerStateTable::default();
        t.record(&header(7, 2, 0, 1, 0), None);
        assert_eq!(
            t.check(&header(7, 1, 1, 1, 0)),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(t.check(&header(7, 3, 0, 1, 0)), SequenceCheck::Append);
        assert_eq!(
            t.check(&header(7, 3, 4, 1, 0)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn a_snapshot_written_outside_the_lock_is_installed_only_if_still_valid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut t = ProducerStateTable::default();
        t.record(&header(7, 0, 0, 3, 0), None);
        let taken = t.snapshot_due(dir.path(), 3).expect("dirty");
        // Appends go on while the snapshot is being written.
        t.record(&header(7, 0, 3, 1, 3), None);
        let staged = taken.stage().expect("stage");
        assert!(!path.exists(), "staged, not yet in place");
        assert!(t.install(&staged, 4).expect("install"));
        staged.sync_dir().expect("sync");
        let on_disk: Snapshot =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("decode");
        assert_eq!(on_disk.end_offset, 3);
        assert!(t.is_dirty(), "the change made while writing is not in it");
        assert!(t.snapshot_due(dir.path(), 4).is_some());

        // Taken from a table since rebuilt, or past the (truncated) log end:
        // dropped, and the snapshot in place stays.
        let stale = t
            .snapshot_due(dir.path(), 4)
            .expect("dirty")
            .stage()
            .expect("stage");
        let mut rebuilt = ProducerStateTable::default();
        assert!(!rebuilt.install(&stale, 4).expect("install"));
        let truncated = t
            .snapshot_due(dir.path(), 4)
            .expect("dirty")
            .stage()
            .expect("stage");
        assert!(!t.install(&truncated, 2).expect("install"));
        let on_disk: Snapshot =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("decode");
        assert_eq!(on_disk.end_offset, 3);
        assert!(!dir.path().join("producer_state.staged").exists());
    }

    fn txn_header(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..header(pid, epoch, seq, count, offset)
        }
    }

    fn control(marker: Marker) -> ControlRecord {
        ControlRecord {
            marker,
            coordinator_epoch: 0,
        }
    }

    fn marker(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            attributes: 0x30,
            base_sequence: -1,
            ..header(pid, epoch, -1, 1, offset)
        }
    }

    #[test]
    fn a_transaction_opens_only_with_its_pending_verification_guard() {
        let mut t = ProducerStateTable::default();
        let verified = |t: &ProducerStateTable, guard| t.check_txn(7, TxnCheck::Verified(guard));
        // No transaction open: a guard is needed, and only the pending one will do.
        assert_eq!(verified(&t, None), Err(ResponseError::InvalidTxnState));
        let guard = t.start_verification(7, 1_000).expect("a guard");
        assert_eq!(
            t.start_verification(7, 1_001),
            Some(guard),
            "shared while pending"
        );
        assert_eq!(verified(&t, Some(guard)), Ok(()));
        assert_eq!(
            verified(&t, Some(guard + 1)),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(t.check_txn(7, TxnCheck::Unchecked), Ok(()));
        // The batch opens the transaction: no verification from then on.
        t.record(&txn_header(7, 0, 0, 1, 0), None);
        assert_eq!(t.start_verification(7, 1_002), None);
        assert_eq!(verified(&t, None), Ok(()));
        // An abort closes it; the next batch needs a new verification.
        t.record(&marker(7, 0, 1), Some(control(Marker::Abort)));
        assert_eq!(verified(&t, None), Err(ResponseError::InvalidTxnState));
    }

    #[test]
    fn a_marker_between_the_verification_and_the_append_voids_the_guard() {
        // The coordinator confirmed the partition, then aborted the
        // transaction (its marker landed here) before the batch did: the
        // confirmation is stale and the batch must not open a transaction
        // no coordinator knows.
        let mut t = ProducerStateTable::default();
        let stale = t.start_verification(7, 1_000).expect("a guard");
        t.record(&marker(7, 0, 0), Some(control(Marker::Abort)));
        assert_eq!(
            t.check_txn(7, TxnCheck::Verified(Some(stale))),
            Err(ResponseError::InvalidTxnState)
        );
        // A later verification gets a different guard: the stale one never
        // matches again (the ABA case).
        let fresh = t.start_verification(7, 1_001).expect("a guard");
        assert_ne!(fresh, stale);
        assert_eq!(
            t.check_txn(7, TxnCheck::Verified(Some(stale))),
            Err(ResponseError::InvalidTxnState)
        );
        assert_eq!(t.check_txn(7, TxnCheck::Verified(Some(fresh))), Ok(()));
        // Another producer's guard is its own.
        assert_eq!(
            t.check_txn(8, TxnCheck::Verified(Some(fresh))),
            Err(ResponseError::InvalidTxnState)
        );
        // An unfinished verification expires.
        let later = 1_001 + VERIFICATION_TTL_MS;
        let other = t.start_verification(8, later).expect("a guard");
        assert_ne!(t.start_verification(7, later), Some(fresh));
        assert_eq!(t.check_txn(8, TxnCheck::Verified(Some(other))), Ok(()));
    }

    #[test]
    fn open_transactions_bound_the_stable_offset_and_aborts_are_remembered() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 2, 0), None); // idempotent, not transactional
        assert_eq!(t.first_unstable_offset(), None);
        t.record(&txn_header(7, 0, 0, 2, 2), None);
        t.record(&txn_header(8, 0, 0, 1, 4), None);
        t.record(&txn_header(7, 0, 2, 1, 5), None);
        assert_eq!(t.first_unstable_offset(), Some(2));
        t.record(&marker(7, 0, 6), Some(control(Marker::Abort)));
        assert_eq!(t.first_unstable_offset(), Some(4), "8 is still open");
        t.record(&marker(8, 0, 7), Some(control(Marker::Commit)));
        assert_eq!(t.first_unstable_offset(), None);
        let aborted = AbortedTxn {
            producer_id: 7,
            first_offset: 2,
            last_offset: 6,
        };
        assert_eq!(t.aborted_between(0, 8), vec![aborted]);
        assert_eq!(t.aborted_between(6, 8), vec![aborted]);
        assert!(
            t.aborted_between(7, 8).is_empty(),
            "wholly before the fetch"
        );
        assert!(t.aborted_between(0, 2).is_empty(), "wholly after the fetch");
        // The next transaction of 7 starts at its next batch.
        t.record(&txn_header(7, 0, 3, 1, 8), None);
        assert_eq!(t.first_unstable_offset(), Some(8));

        // Both survive a snapshot, and retention forgets old aborts.
        let dir = tempfile::tempdir().expect("tempdir");
        let staged = t.snapshot(dir.path(), 9).stage().expect("stage");
        assert!(t.install(&staged, 9).expect("install"));
        let on_disk: Snapshot =
            serde_json::from_slice(&std::fs::read(dir.path().join(SNAPSHOT_FILE)).expect("read"))
                .expect("decode");
        assert_eq!(on_disk.aborted, vec![aborted]);
        assert_eq!(on_disk.producers[&7].txn_first_offset, Some(8));
        t.prune_aborted(7);
        assert!(t.aborted_between(0, 9).is_empty());
    }

    #[test]
    fn a_marker_at_a_newer_epoch_fences_the_old_producer() {
        let mut t = ProducerStateTable::default();
        t.record(&txn_header(7, 0, 0, 3, 0), None);
        // The coordinator aborted it on a timeout, bumping the epoch.
        t.record(&marker(7, 1, 3), Some(control(Marker::Abort)));
        assert_eq!(
            t.check(&txn_header(7, 0, 3, 1, 0)),
            SequenceCheck::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(t.check(&txn_header(7, 1, 0, 1, 0)), SequenceCheck::Append);
        // A marker from a deposed coordinator (an older coordinator epoch) is refused.
        let newer = ControlRecord {
            marker: Marker::Commit,
            coordinator_epoch: 3,
        };
        t.record(&marker(7, 1, 4), Some(newer));
        assert_eq!(
            t.check_marker(7, 2),
            Err(ResponseError::TransactionCoordinatorFenced)
        );
        assert_eq!(t.check_marker(7, 3), Ok(()));
        assert_eq!(t.check_marker(8, 0), Ok(()), "a producer never marked");
        assert_eq!(t.describe()[0].coordinator_epoch, 3);
        assert_eq!(
            t.check(&txn_header(7, 1, 3, 1, 0)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(&header(1, 0, i, 1, i64::from(i)), None);
        }
        assert_eq!(
            t.check(&header(1, 0, 6, 1, 0)),
            SequenceCheck::Duplicate { base_offset: 6 }
        );
        assert_eq!(
            t.check(&header(1, 0, 2, 1, 0)),
            SequenceCheck::Duplicate { base_offset: 2 }
        );
        assert_eq!(
            t.check(&header(1, 0, 1, 1, 0)),
            SequenceCheck::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }
}
