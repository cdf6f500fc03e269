//! [`LeaderEpochCache`]: which leader epoch wrote which offsets of a
//! partition (KIP-101, KIP-279, KIP-320), as Kafka's `LeaderEpochFileCache`.
//!
//! ```text
//!   offsets   0 ............ 100 ................ 250 ......... log end
//!   batches   [epoch 0 ...  ][epoch 3 .........  ][epoch 5 ...]
//!   entries   (0, 0)         (3, 100)             (5, 250)
//! ```
//!
//! An entry says that `epoch` starts at `start_offset` and runs until the
//! next entry's start (the last one to the log end). Entries are strictly
//! increasing in both epoch and start offset. Followers use the cache to find
//! where their log diverges from the leader's (OffsetsForLeaderEpoch) and
//! consumers to detect truncation (KIP-320).
//!
//! The entries are kept in `leader-epoch-checkpoint` in the partition
//! directory, rewritten atomically whenever they change, in Kafka's text
//! format: a version line (`0`), a count line, then `epoch start_offset`
//! lines. A change is written before the in-memory entries are replaced, so
//! after a failed write they are as before (and the file too, unless only
//! the final directory fsync failed).

use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::checkpoint::{self, Loaded};
use crate::Error;

/// Name of the leader epoch checkpoint file in the partition directory.
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// One entry: `epoch` starts at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset written in that epoch.
    pub start_offset: i64,
}

/// The leader epochs of a partition and where each starts.
#[derive(Debug)]
pub struct LeaderEpochCache {
    dir: PathBuf,
    /// Strictly increasing in both epoch and start offset.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`; `None` if it is missing or malformed
    /// (logged), in which case the caller rebuilds it.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>, Error> {
        let loaded = checkpoint::read(dir, LEADER_EPOCH_CHECKPOINT_FILE, parse_entry)?;
        let entries = match loaded {
            Loaded::Entries(entries) => entries,
            Loaded::Missing => {
                info!(dir = %dir.display(), "no leader epoch checkpoint, rebuilding it from the log");
                return Ok(None);
            }
            Loaded::Malformed(reason) => {
                warn!(dir = %dir.display(), %reason,
                    "malformed leader epoch checkpoint, rebuilding it from the log");
                return Ok(None);
            }
        };
        let increasing = entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset < w[1].start_offset);
        if !increasing {
            warn!(dir = %dir.display(), ?entries,
                "leader epoch checkpoint entries are not increasing, rebuilding it from the log");
            return Ok(None);
        }
        Ok(Some(LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries,
        }))
    }

    /// A cache built from `(epoch, start offset)` pairs in log order, by
    /// the rules of [`LeaderEpochCache::assign`]; written to `dir` even if
    /// empty, so that the next load finds it.
    pub(crate) fn rebuild(
        dir: &Path,
        assignments: impl IntoIterator<Item = (i32, i64)>,
    ) -> Result<Self, Error> {
        let mut entries = Vec::new();
        for (epoch, start_offset) in assignments {
            assign_entry(&mut entries, epoch, start_offset);
        }
        write(dir, &entries)?;
        info!(dir = %dir.display(), entries = entries.len(), "rebuilt leader epoch checkpoint");
        Ok(LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// Whether no epoch is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The latest (largest) epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// The epoch of the entry covering `offset`: the last one starting at
    /// or below it. `None` below the first entry; at or past the latest
    /// entry's start, the latest epoch (the log end is not checked).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// The end offset of `requested_epoch` and the epoch it belongs to, as
    /// Kafka's `LeaderEpochFileCache.endOffsetFor` (OffsetsForLeaderEpoch):
    ///
    /// - `requested_epoch` is the latest epoch: `(latest, log_end_offset)`.
    /// - Otherwise, if some epoch is greater: with `floor` the largest epoch
    ///   at or below `requested_epoch` and `next` the start offset of the
    ///   first greater epoch, `(floor, next)`. If no known epoch is at or
    ///   below it (it is older than the first entry, e.g. retention removed
    ///   it), `(requested_epoch, start offset of the first entry)`: Kafka
    ///   answers so, so that a follower truncates to where this log's epochs
    ///   begin and replicates from there.
    /// - `None` (Kafka's `UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`, both
    ///   -1) when the cache is empty, `requested_epoch` is negative, or it is
    ///   greater than the latest epoch.
    pub fn end_offset_for(&self, requested_epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if requested_epoch < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested_epoch) {
            return Some((requested_epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested_epoch);
        let next = self.entries.get(higher)?;
        match higher.checked_sub(1) {
            Some(floor) => Some((self.entries[floor].epoch, next.start_offset)),
            None => Some((requested_epoch, next.start_offset)),
        }
    }

    /// Records that `epoch` starts at `start_offset`.
    ///
    /// Ignored when `epoch` is not greater than the latest epoch (so the
    /// same epoch again is a no-op), or when either is negative (-1 means "no
    /// epoch" in a batch header). Otherwise, entries starting at or after
    /// `start_offset` conflict with the new one and are dropped first (a
    /// leader's epoch that never got an append before the next took over),
    /// as Kafka does. Unlike Kafka, an epoch below the latest is never
    /// assigned: a stale leader cannot rewrite newer history.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<(), Error> {
        self.assign_all([(epoch, start_offset)])
    }

    /// [`LeaderEpochCache::assign`] for each pair, in order, with one write.
    pub(crate) fn assign_all(
        &mut self,
        assignments: impl IntoIterator<Item = (i32, i64)>,
    ) -> Result<(), Error> {
        // The common case, an append in the latest epoch, needs no copy.
        let latest = self.latest_epoch().unwrap_or(-1);
        let newer: Vec<_> = assignments
            .into_iter()
            .filter(|&(epoch, _)| epoch > latest)
            .collect();
        if newer.is_empty() {
            return Ok(());
        }
        self.update(|entries| {
            for (epoch, start_offset) in newer {
                assign_entry(entries, epoch, start_offset);
            }
        })
    }

    /// Removes the entries starting at or after `end_offset`, after the log
    /// was truncated to it.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), Error> {
        self.update(|entries| entries.retain(|e| e.start_offset < end_offset))
    }

    /// Moves the start to `start_offset`, after the log start moved there:
    /// the entries wholly below it go and the entry covering it starts at
    /// it instead.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), Error> {
        self.update(|entries| {
            let covering = entries.partition_point(|e| e.start_offset <= start_offset);
            if let Some(covering) = covering.checked_sub(1) {
                entries.drain(..covering);
                entries[0].start_offset = start_offset;
            }
        })
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) -> Result<(), Error> {
        self.update(Vec::clear)
    }

    /// Applies `change` and, if it changed anything, writes the checkpoint
    /// before keeping the result.
    fn update(&mut self, change: impl FnOnce(&mut Vec<EpochEntry>)) -> Result<(), Error> {
        let mut entries = self.entries.clone();
        change(&mut entries);
        if entries == self.entries {
            return Ok(());
        }
        write(&self.dir, &entries)?;
        debug!(dir = %self.dir.display(), before = ?self.entries, after = ?entries,
            "leader epoch cache changed");
        self.entries = entries;
        Ok(())
    }
}

/// The assignment rule of [`LeaderEpochCache::assign`] on a list of entries.
fn assign_entry(entries: &mut Vec<EpochEntry>, epoch: i32, start_offset: i64) {
    if epoch < 0 || start_offset < 0 || entries.last().is_some_and(|e| epoch <= e.epoch) {
        return;
    }
    let keep = entries.partition_point(|e| e.start_offset < start_offset);
    if keep < entries.len() {
        let dropped = &entries[keep..];
        // An entry at the same offset never got a batch: expected, quiet.
        if dropped.len() > 1 || dropped[0].start_offset != start_offset {
            warn!(
                epoch,
                start_offset,
                ?dropped,
                "new leader epoch drops conflicting entries"
            );
        }
        entries.truncate(keep);
    }
    entries.push(EpochEntry {
        epoch,
        start_offset,
    });
}

fn write(dir: &Path, entries: &[EpochEntry]) -> Result<(), Error> {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| format!("{} {}", e.epoch, e.start_offset))
        .collect();
    checkpoint::write(dir, LEADER_EPOCH_CHECKPOINT_FILE, &lines)
}

/// Parses an `epoch start_offset` line; both must be non-negative.
fn parse_entry(line: &str) -> Option<EpochEntry> {
    let mut fields = line.split_whitespace();
    let epoch = fields.next()?.parse().ok()?;
    let start_offset = fields.next()?.parse().ok()?;
    if fields.next().is_some() || epoch < 0 || start_offset < 0 {
        return None;
    }
    Some(EpochEntry {
        epoch,
        start_offset,
    })
}

#[cfg(test)]
mod tests;
