//! Log compaction: for topics with `cleanup.policy=compact`, the cleaner
//! keeps the latest record of each key and drops the ones it supersedes, as
//! Kafka's log cleaner does. Every replica cleans its own log.
//!
//! ```text
//!   log start        cleaner offset           first uncleanable       log end
//!   v                v                        v                       v
//!   [ clean (cleaned before) ][ dirty (new since) ][ too new, open txns, active ]
//!          rewritten ◀──── key -> latest offset ◀─── map built here
//! ```
//!
//! A pass over a partition, when the dirty share of its cleanable bytes is at
//! least `min.cleanable.dirty.ratio` (or its oldest dirty records are older
//! than `max.compaction.lag.ms`):
//! 1. Cleanable are the sealed segments (a compacted topic's active segment
//!    rolls by `max.compaction.lag.ms` too) wholly below the last stable offset
//!    (so below the high watermark and no open transaction's records), and
//!    older than `min.compaction.lag.ms`.
//! 2. The dirty segments (from the cleaner offset on) give a map from each
//!    key (its 128-bit hash) to its latest offset, up to
//!    `log.cleaner.dedupe.buffer.size` (then the pass stops at a segment
//!    boundary and the next pass goes on).
//! 3. The segments from the log start to the end of the mapped ones are
//!    rewritten, grouped up to `segment.bytes`: a record stays if no later
//!    offset of its key is in the map; a keyless record goes; an aborted
//!    transaction's records go. A batch that keeps a tombstone (null value)
//!    gets a delete horizon, `now + delete.retention.ms` (KIP-534: its base
//!    timestamp, with a flag; record timestamps stay), and a later pass after
//!    the horizon drops its tombstones. A transaction marker gets a horizon
//!    too, and goes after it once no record of its transaction is left (an
//!    abort marker's aborted transaction is then forgotten, so read_committed
//!    fetches no longer report it). A batch keeps its offsets (base offset and last offset delta),
//!    so consumers and idempotent producers see the same offsets and
//!    sequence numbers as before, and a producer's last batch stays, empty
//!    if need be, so producer state can be rebuilt from the log.
//! 4. Each group's copy replaces its segments ([`PartitionLog::replace_with_cleaned`]);
//!    then the cleaner offset moves to the end of the mapped segments.
//!
//! Reading, filtering and writing happen without the partition's lock; only
//! the plan and each swap take it, and a swap finds out if the log changed
//! meanwhile (retention, truncation) and gives up.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::ResponseError;
use runnel_storage::{BatchHeader, PartitionLog, SealedSegment, BATCH_HEADER_LEN, LOG_OVERHEAD};
use tracing::{debug, info, warn};

use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::producers::AbortedTxn;
use crate::topics::{Partition, Topic, TopicTable};

/// Where a batch's record count sits in its header.
const RECORDS_COUNT_AT: usize = 57;
/// Where a batch's length sits in its header.
const LENGTH_AT: usize = 8;
/// Where a batch's CRC sits in its header.
const CRC_AT: usize = 17;
/// Bytes of map per key counted against `log.cleaner.dedupe.buffer.size`:
/// the hash, the offset and the hash table's own share.
const BYTES_PER_KEY: u64 = 48;

/// What a round of passes did, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanerStats {
    /// Partitions whose log was rewritten.
    pub(crate) passes: u64,
    /// Segment bytes before minus after.
    pub(crate) bytes_removed: u64,
    /// Partitions whose pass failed.
    pub(crate) failures: u64,
}

/// One pass over every compacted partition this broker holds a replica of.
pub(crate) fn clean_all(table: &TopicTable, now_ms: i64) -> CleanerStats {
    let mut stats = CleanerStats::default();
    let settings = table.settings();
    for topic in table.all() {
        if !topic.configs.has_policy("compact", settings) {
            continue;
        }
        let policy = Policy::of(&topic.configs, settings);
        for partition in &topic.partitions {
            if !partition.is_local() {
                continue;
            }
            match clean_partition(&topic, partition, &policy, now_ms) {
                Ok(Some((before, after))) => {
                    stats.passes += 1;
                    stats.bytes_removed += before.saturating_sub(after);
                }
                Ok(None) => {}
                Err(error) => {
                    stats.failures += 1;
                    warn!(topic = %topic.name, partition = partition.index, %error, "cleaning the log failed");
                }
            }
        }
    }
    stats
}

/// A compacted topic's cleaning settings.
#[derive(Debug, Clone)]
struct Policy {
    min_dirty_ratio: f64,
    delete_retention_ms: i64,
    min_lag_ms: i64,
    max_lag_ms: i64,
    segment_bytes: u64,
    max_keys: usize,
}

impl Policy {
    fn of(configs: &TopicConfigs, settings: &BrokerSettings) -> Policy {
        let buffer = settings.get_i64("log.cleaner.dedupe.buffer.size").max(1) as u64;
        Policy {
            min_dirty_ratio: configs.effective_f64("min.cleanable.dirty.ratio", settings),
            delete_retention_ms: configs.effective_i64("delete.retention.ms", settings),
            min_lag_ms: configs.effective_i64("min.compaction.lag.ms", settings),
            max_lag_ms: configs.effective_i64("max.compaction.lag.ms", settings),
            segment_bytes: configs.effective_i64("segment.bytes", settings).max(1) as u64,
            max_keys: usize::try_from(buffer / BYTES_PER_KEY).unwrap_or(usize::MAX),
        }
    }
}

/// A sealed segment the pass may clean, and where its offsets end (the next
/// segment's base offset).
#[derive(Debug, Clone)]
struct Cleanable {
    segment: SealedSegment,
    upper: i64,
}

/// What the pass reads under the lock.
struct Plan {
    /// The log's truncation count: a truncation since makes the pass stale.
    truncations: u64,
    /// Where each producer's last batch starts: kept, if only as an empty batch.
    last_batches: std::collections::HashSet<i64>,
    cleanable: Vec<Cleanable>,
    cleaner_offset: i64,
    aborted: Vec<AbortedTxn>,
}

/// Cleans one partition if it is due; the segment bytes it rewrote, before
/// and after, if it did.
fn clean_partition(
    topic: &Topic,
    partition: &Partition,
    policy: &Policy,
    now_ms: i64,
) -> Result<Option<(u64, u64)>, BrokerError> {
    let plan = partition.with_data(|data| {
        let limit = data.last_stable_offset();
        let cleanable = cleanable_segments(&data.log, limit, now_ms - policy.min_lag_ms);
        let upper = cleanable.last().map_or(0, |c| c.upper);
        Ok(Plan {
            truncations: data.log.truncations(),
            last_batches: data.producers.last_batch_offsets(),
            cleaner_offset: data.log.cleaner_offset(),
            aborted: data
                .producers
                .aborted_between(data.log.log_start_offset(), upper),
            cleanable,
        })
    })?;
    let dirty_from = plan
        .cleanable
        .iter()
        .position(|c| c.upper > plan.cleaner_offset);
    let Some(dirty_from) = dirty_from else {
        return Ok(None);
    };
    let total: u64 = plan.cleanable.iter().map(|c| c.segment.size()).sum();
    let dirty: u64 = plan.cleanable[dirty_from..]
        .iter()
        .map(|c| c.segment.size())
        .sum();
    let ratio = if total == 0 {
        1.0
    } else {
        dirty as f64 / total as f64
    };
    let overdue = plan.cleanable[dirty_from]
        .segment
        .max_timestamp()
        .is_some_and(|ts| now_ms.saturating_sub(ts) > policy.max_lag_ms);
    if ratio < policy.min_dirty_ratio && !overdue {
        return Ok(None);
    }
    // Records the pass removes may follow the last producer state snapshot;
    // one taken now covers them, so a restart never replays past a gap.
    partition.snapshot_producers()?;

    let is_aborted = |h: &BatchHeader| {
        h.is_transactional()
            && plan.aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.base_offset < a.last_offset
            })
    };
    let keys = KeyHasher::new();
    let mut latest: HashMap<u128, i64> = HashMap::new();
    let mut mapped = dirty_from;
    for c in &plan.cleanable[dirty_from..] {
        if mapped > dirty_from && latest.len() >= policy.max_keys {
            break;
        }
        c.segment.for_each_batch::<BrokerError>(|header, batch| {
            if header.is_control() || is_aborted(header) {
                return Ok(());
            }
            let (data, spans) = records_of(batch, header)?;
            for span in spans {
                if let Some(key) = span.key {
                    latest.insert(keys.hash(&data[key]), span.offset);
                }
            }
            Ok(())
        })?;
        mapped += 1;
    }
    let mapped_upto = plan.cleanable[mapped - 1].upper;

    // Tombstones kept in this pass may go once this has passed.
    let horizon = now_ms.saturating_add(policy.delete_retention_ms);
    let mut before = 0u64;
    let mut after = 0u64;
    // Per producer, whether its current transaction kept any record so far
    // in this pass (log order): a marker whose transaction kept none goes
    // once its delete horizon has passed.
    let mut txn_kept: HashMap<i64, bool> = HashMap::new();
    for group in groups(&plan.cleanable[..mapped], policy.segment_bytes) {
        let base = group[0].segment.base_offset();
        let mut out = partition.with_log(|log| Ok(log.start_cleaned_segment(base)?))?;
        let mut changed = false;
        // Abort markers removed in this group: (producer id, marker offset).
        let mut removed_aborts: Vec<(i64, i64)> = Vec::new();
        let written = group.iter().try_for_each(|c| {
            c.segment.for_each_batch::<BrokerError>(|header, batch| {
                let aborted = is_aborted(header);
                let expired = delete_horizon(header).is_some_and(|h| h <= now_ms);
                let rewrite = Rewrite {
                    horizon: Some(horizon),
                    keep_empty: header.producer_id >= 0
                        && plan.last_batches.contains(&header.base_offset),
                };
                let drop_marker = header.is_control()
                    && expired
                    && !txn_kept.remove(&header.producer_id).unwrap_or(false);
                let kept = filter_batch(batch, header, rewrite, |record| {
                    if header.is_control() {
                        return !drop_marker;
                    }
                    let Some(key) = record.key else {
                        return false;
                    };
                    let superseded = latest
                        .get(&keys.hash(key))
                        .is_some_and(|&last| record.offset < last);
                    let expired_tombstone = record.tombstone && expired;
                    !(aborted || superseded || expired_tombstone)
                })?;
                if header.is_transactional() && !header.is_control() {
                    let kept_any = match &kept {
                        Kept::Whole => header.records_count > 0,
                        Kept::Nothing => false,
                        Kept::Some(copy) => BatchHeader::parse(copy)?.records_count > 0,
                    };
                    *txn_kept.entry(header.producer_id).or_insert(false) |= kept_any;
                }
                if drop_marker && matches!(kept, Kept::Nothing) {
                    let is_abort = crate::producers::control_marker(batch)
                        .is_some_and(|c| c.marker == crate::producers::Marker::Abort);
                    if is_abort {
                        removed_aborts.push((header.producer_id, header.base_offset));
                    }
                }
                match kept {
                    Kept::Whole => out.append(batch)?,
                    Kept::Nothing => changed = true,
                    Kept::Some(copy) => {
                        changed = true;
                        out.append(&copy)?;
                    }
                }
                Ok(())
            })
        });
        if let Err(error) = written {
            out.discard();
            return Err(error);
        }
        let replaced: Vec<SealedSegment> = group.iter().map(|c| c.segment.clone()).collect();
        if !changed && replaced.len() == 1 {
            out.discard();
            continue;
        }
        let size = out.size();
        let finished = out.finish()?;
        let swapped = partition.with_data(|data| {
            if data.log.truncations() != plan.truncations {
                finished.discard();
                return Ok(false);
            }
            let swapped = data.log.replace_with_cleaned(finished, &replaced)?;
            if swapped {
                data.producers.forget_aborted(&removed_aborts);
            }
            Ok(swapped)
        })?;
        if !swapped {
            debug!(topic = %topic.name, partition = partition.index, "the log changed during cleaning; trying again next pass");
            return Ok(Some((before, after)));
        }
        before += replaced.iter().map(SealedSegment::size).sum::<u64>();
        after += size;
    }
    let current = partition.with_log(|log| {
        let current = log.truncations() == plan.truncations;
        if current {
            log.set_cleaner_offset(mapped_upto)?;
        }
        Ok(current)
    })?;
    if !current {
        return Ok(Some((before, after)));
    }
    info!(
        topic = %topic.name,
        partition = partition.index,
        dirty_ratio = format!("{ratio:.2}"),
        keys = latest.len(),
        cleaned_to = mapped_upto,
        bytes_before = before,
        bytes_after = after,
        "cleaned the log"
    );
    Ok(Some((before, after)))
}

/// The sealed segments wholly below `limit` whose records are all at or
/// before `newest_ms` (`min.compaction.lag.ms`), oldest first.
fn cleanable_segments(log: &PartitionLog, limit: i64, newest_ms: i64) -> Vec<Cleanable> {
    let sealed = log.sealed_segments();
    let active_base = log.segment_base_offsets().last().copied().unwrap_or(0);
    let mut out = Vec::new();
    for (i, segment) in sealed.iter().enumerate() {
        let upper = sealed.get(i + 1).map_or(active_base, |s| s.base_offset());
        let too_new = segment.max_timestamp().is_some_and(|ts| ts > newest_ms);
        if upper > limit || too_new {
            break;
        }
        out.push(Cleanable {
            segment: segment.clone(),
            upper,
        });
    }
    out
}

/// Consecutive runs of `cleanable` to rewrite as one segment each: up to
/// `segment_bytes` (their sizes before cleaning) and offsets that fit a
/// segment's 32-bit relative index.
fn groups(cleanable: &[Cleanable], segment_bytes: u64) -> Vec<&[Cleanable]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (i, c) in cleanable.iter().enumerate() {
        let span = c.upper - cleanable[start].segment.base_offset();
        let fits = size + c.segment.size() <= segment_bytes && span <= i64::from(i32::MAX);
        if i > start && !fits {
            out.push(&cleanable[start..i]);
            start = i;
            size = 0;
        }
        size += c.segment.size();
    }
    if start < cleanable.len() {
        out.push(&cleanable[start..]);
    }
    out
}

/// Hashes keys to 128 bits (two independently keyed SipHashes), so the map
/// holds 16 bytes per key whatever the keys' length; a collision, which
/// would drop a record, has odds of about 2^-128 per pair.
struct KeyHasher(
    std::collections::hash_map::RandomState,
    std::collections::hash_map::RandomState,
);

impl KeyHasher {
    fn new() -> Self {
        KeyHasher(Default::default(), Default::default())
    }

    fn hash(&self, key: &[u8]) -> u128 {
        let mut a = self.0.build_hasher();
        a.write(key);
        let mut b = self.1.build_hasher();
        b.write(key);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    }
}

/// One record of a batch, as the cleaner sees it.
#[derive(Debug, Clone)]
struct RecordSpan {
    /// The record's bytes (length prefix included) in the records section.
    bytes: Range<usize>,
    /// Its offset.
    offset: i64,
    /// Its key, if not null.
    key: Option<Range<usize>>,
    /// Whether its value is null.
    tombstone: bool,
}

/// A record as the keep test sees it.
#[derive(Debug)]
struct RecordRef<'a> {
    offset: i64,
    key: Option<&'a [u8]>,
    tombstone: bool,
}

/// Decodes the records of a non-control batch: its records section
/// (decompressed) and where each record is in it.
fn records_of(batch: &[u8], header: &BatchHeader) -> Result<(Bytes, Vec<RecordSpan>), BrokerError> {
    let data = records_section(batch, header)?;
    let spans = parse_records(&data, header)?;
    Ok((data, spans))
}

/// The compression codec of a batch's attributes.
fn codec(header: &BatchHeader) -> i16 {
    header.attributes & 0x07
}

/// The records section of a batch, decompressed.
fn records_section(batch: &[u8], header: &BatchHeader) -> Result<Bytes, BrokerError> {
    let raw = Bytes::copy_from_slice(&batch[BATCH_HEADER_LEN..]);
    let whole = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let mut input = raw.clone();
    let out = match codec(header) {
        0 => return Ok(raw),
        1 => Gzip::decompress(&mut input, whole),
        2 => Snappy::decompress(&mut input, whole),
        3 => Lz4::decompress(&mut input, whole),
        4 => Zstd::decompress(&mut input, whole),
        other => {
            return Err(corrupt(
                header,
                &format!("unknown compression codec {other}"),
            ));
        }
    };
    out.map_err(|e| corrupt(header, &format!("does not decompress: {e}")))
}

/// Compresses `records` with a batch's codec onto `out`.
fn compress(header: &BatchHeader, records: &[u8], out: &mut Vec<u8>) -> Result<(), BrokerError> {
    let put = |b: &mut BytesMut| {
        b.put_slice(records);
        Ok(())
    };
    let result = match codec(header) {
        0 => {
            out.extend_from_slice(records);
            Ok(())
        }
        1 => Gzip::compress(out, put),
        2 => Snappy::compress(out, put),
        3 => Lz4::compress(out, put),
        4 => Zstd::compress(out, put),
        other => Err(anyhow::anyhow!("unknown compression codec {other}")),
    };
    result.map_err(|e| corrupt(header, &format!("does not compress again: {e}")))
}

fn corrupt(header: &BatchHeader, why: &str) -> BrokerError {
    BrokerError::Storage(runnel_storage::Error::CorruptBatch(format!(
        "batch at offset {}: {why}",
        header.base_offset
    )))
}

/// Finds the records of a records section (`header.records_count` of them).
fn parse_records(data: &[u8], header: &BatchHeader) -> Result<Vec<RecordSpan>, BrokerError> {
    let bad = |what: &str| corrupt(header, what);
    let count = usize::try_from(header.records_count).map_err(|_| bad("negative record count"))?;
    let mut spans = Vec::with_capacity(count.min(data.len()));
    let mut pos = 0;
    for _ in 0..count {
        let mut r = VarReader { data, pos };
        let len = usize::try_from(r.varint()?).map_err(|_| bad("negative record length"))?;
        let end = r.pos.checked_add(len).filter(|&e| e <= data.len());
        let end = end.ok_or_else(|| bad("a record runs past its batch"))?;
        r.skip(1)?; // attributes
        r.varlong()?; // timestamp delta
        let offset_delta = r.varint()?;
        let key_len = r.varint()?;
        let key = if key_len < 0 {
            None
        } else {
            let start = r.pos;
            r.skip(key_len as usize)?;
            Some(start..r.pos)
        };
        let value_len = r.varint()?;
        if r.pos > end {
            return Err(bad("a record's fields run past its length"));
        }
        spans.push(RecordSpan {
            bytes: pos..end,
            offset: header.base_offset + i64::from(offset_delta),
            key,
            tombstone: value_len < 0,
        });
        pos = end;
    }
    Ok(spans)
}

/// Reads Kafka's zigzag varints.
struct VarReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl VarReader<'_> {
    fn unsigned(&mut self, max_bytes: usize) -> Result<u64, BrokerError> {
        let mut value = 0u64;
        for i in 0..max_bytes {
            let byte = *self.data.get(self.pos).ok_or_else(truncated)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(truncated())
    }

    fn varint(&mut self) -> Result<i32, BrokerError> {
        let n = self.unsigned(5)? as u32;
        Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, BrokerError> {
        let n = self.unsigned(10)?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    fn skip(&mut self, n: usize) -> Result<(), BrokerError> {
        self.pos = self
            .pos
            .checked_add(n)
            .filter(|&p| p <= self.data.len())
            .ok_or_else(truncated)?;
        Ok(())
    }
}

fn truncated() -> BrokerError {
    BrokerError::Storage(runnel_storage::Error::CorruptBatch(
        "a record is cut short".into(),
    ))
}

/// What a batch keeps after filtering.
#[derive(Debug)]
enum Kept {
    /// Every record: the batch as it was.
    Whole,
    /// No record: the batch goes.
    Nothing,
    /// Some: a copy with only those, at the same offsets.
    Some(Vec<u8>),
}

/// How a batch is to be rewritten, beyond which records it keeps.
#[derive(Debug, Clone, Copy, Default)]
struct Rewrite {
    /// The delete horizon to stamp on a batch that keeps a tombstone and has
    /// none yet (KIP-534): `now + delete.retention.ms`.
    horizon: Option<i64>,
    /// Keep the batch as an empty one when no record stays: a producer's
    /// last batch, so its state (id, epoch, sequence) can be rebuilt from
    /// the log, as Kafka does.
    keep_empty: bool,
}

/// Where a batch's base timestamp sits in its header.
const BASE_TIMESTAMP_AT: usize = 27;
/// Where a batch's attributes sit in its header.
const ATTRIBUTES_AT: usize = 21;
/// The attribute bit saying the base timestamp is a delete horizon.
const DELETE_HORIZON_FLAG: i16 = 1 << 6;

/// The delete horizon of a batch (KIP-534): after it, the cleaner may drop
/// its tombstones.
fn delete_horizon(header: &BatchHeader) -> Option<i64> {
    (header.attributes & DELETE_HORIZON_FLAG != 0).then_some(header.base_timestamp)
}

/// Keeps the records of `batch` that `keep` accepts. A copy keeps the header (base offset, last offset delta,
/// timestamps, producer and sequence) and changes the record count, the
/// length and the CRC; the kept records are copied byte for byte (their
/// offset and timestamp deltas are relative to the unchanged header), and
/// compressed again with the batch's codec. A batch keeping a tombstone, and
/// a kept marker, gets `rewrite.horizon` as its delete horizon if it has
/// none: its base
/// timestamp becomes the horizon and each record's timestamp delta is
/// rewritten so that the record's timestamp stays the same.
fn filter_batch(
    batch: &[u8],
    header: &BatchHeader,
    rewrite: Rewrite,
    mut keep: impl FnMut(&RecordRef<'_>) -> bool,
) -> Result<Kept, BrokerError> {
    let (data, spans) = records_of(batch, header)?;
    let kept: Vec<&RecordSpan> = spans
        .iter()
        .filter(|span| {
            keep(&RecordRef {
                offset: span.offset,
                key: span.key.clone().map(|k| &data[k]),
                tombstone: span.tombstone,
            })
        })
        .collect();
    let horizon = rewrite.horizon.filter(|_| {
        delete_horizon(header).is_none()
            && !kept.is_empty()
            && (header.is_control() || kept.iter().any(|s| s.tombstone))
    });
    if kept.len() == spans.len() && horizon.is_none() {
        return Ok(Kept::Whole);
    }
    if kept.is_empty() {
        return Ok(if rewrite.keep_empty {
            Kept::Some(empty_batch(batch, header)?)
        } else {
            Kept::Nothing
        });
    }
    let mut records = Vec::with_capacity(data.len());
    for span in &kept {
        let bytes = &data[span.bytes.clone()];
        match horizon {
            None => records.extend_from_slice(bytes),
            Some(base) => rebase_record(bytes, header.base_timestamp, base, &mut records)
                .ok_or_else(|| corrupt(header, "a record does not parse"))?,
        }
    }
    let mut copy = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    copy.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    if let Some(base) = horizon {
        copy[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].copy_from_slice(&base.to_be_bytes());
        let attributes = header.attributes | DELETE_HORIZON_FLAG;
        copy[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    }
    compress(header, &records, &mut copy)?;
    let count = i32::try_from(kept.len()).expect("no more than the batch had");
    copy[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&count.to_be_bytes());
    seal(header, copy).map(Kept::Some)
}

/// Sets a rewritten batch's length and CRC.
fn seal(header: &BatchHeader, mut copy: Vec<u8>) -> Result<Vec<u8>, BrokerError> {
    let length = i32::try_from(copy.len() - LOG_OVERHEAD)
        .map_err(|_| corrupt(header, "a cleaned batch too large"))?;
    copy[LENGTH_AT..LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    let crc = runnel_storage::compute_crc(&copy);
    copy[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(copy)
}

/// A batch's header with no records (uncompressed, record count 0): its
/// offsets, producer, epoch and sequence stay, as in Kafka's cleaner.
fn empty_batch(batch: &[u8], header: &BatchHeader) -> Result<Vec<u8>, BrokerError> {
    let mut copy = batch[..BATCH_HEADER_LEN].to_vec();
    let attributes = header.attributes & !0x07;
    copy[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    copy[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&0i32.to_be_bytes());
    seal(header, copy)
}

/// Appends `record` (its length prefix included) to `out` with its
/// timestamp delta moved from base `old_base` to `new_base`; `None` if it
/// does not parse.
fn rebase_record(record: &[u8], old_base: i64, new_base: i64, out: &mut Vec<u8>) -> Option<()> {
    let mut r = VarReader {
        data: record,
        pos: 0,
    };
    r.varint().ok()?; // length
    let attributes = *record.get(r.pos)?;
    r.skip(1).ok()?;
    let delta = r.varlong().ok()?;
    let rest = &record[r.pos..];
    let timestamp = old_base.checked_add(delta)?;
    let mut body = vec![attributes];
    put_varlong(&mut body, timestamp.checked_sub(new_base)?);
    body.extend_from_slice(rest);
    put_varlong(out, i64::try_from(body.len()).ok()?);
    out.extend_from_slice(&body);
    Some(())
}

/// Appends Kafka's zigzag varint encoding of `value`.
fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// INVALID_RECORD unless every record of `batches` has a key: a compacted
/// topic keeps records by key, so Kafka refuses keyless ones.
pub(crate) fn require_keys(batches: &[u8], topic: &str, partition: i32) -> Result<(), BrokerError> {
    let headers = runnel_storage::validate_batches(batches)?;
    let mut pos = 0;
    for header in &headers {
        let batch = &batches[pos..pos + header.total_size()];
        pos += header.total_size();
        if header.is_control() {
            continue;
        }
        let (_, records) = records_of(batch, header)?;
        if records.iter().any(|r| r.key.is_none()) {
            return Err(BrokerError::Refused {
                code: ResponseError::InvalidRecord,
                message: format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{partition}."
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
