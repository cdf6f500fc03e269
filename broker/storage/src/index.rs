//! The sparse offset and time indexes of a segment.
//!
//! Both are kept whole in memory (a `Vec` of entries, binary searched) and
//! appended to their file as they grow; the file is only read when a segment
//! is opened. An index is a hint: a lookup returns the greatest entry at or
//! below the target, and the segment scans batch headers forward from there.
//!
//! ```text
//! .index      [relative offset u32 BE | file position u32 BE]   8 bytes each
//! .timeindex  [max timestamp i64 BE   | relative offset u32 BE] 12 bytes each
//! ```
//!
//! A file whose size is not a whole number of entries, or whose entries are
//! not increasing, is reported as damaged and the segment rebuilds it from
//! its `.log`.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::io_error;
use crate::Error;

/// One fixed-size index entry.
pub(crate) trait Entry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// The key entries are ordered and searched by.
    type Key: Ord + Copy;

    fn key(&self) -> Self::Key;
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes from exactly [`Entry::SIZE`] bytes.
    fn decode(buf: &[u8]) -> Self;
    /// Whether `self` may follow `prev` in a well-formed index.
    fn follows(&self, prev: &Self) -> bool;
}

/// An `.index` entry: the batch whose last offset is `base + relative_offset`
/// starts at `position` in the `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    type Key = u32;

    fn key(&self) -> u32 {
        self.relative_offset
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes(array(&buf[0..4])),
            position: u32::from_be_bytes(array(&buf[4..8])),
        }
    }

    fn follows(&self, prev: &Self) -> bool {
        self.relative_offset > prev.relative_offset && self.position > prev.position
    }
}

/// A `.timeindex` entry: the largest timestamp in the segment up to and
/// including the batch whose last offset is `base + relative_offset`, which
/// is the first batch to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) relative_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    type Key = i64;

    fn key(&self) -> i64 {
        self.timestamp
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Self {
        TimeEntry {
            timestamp: i64::from_be_bytes(array(&buf[0..8])),
            relative_offset: u32::from_be_bytes(array(&buf[8..12])),
        }
    }

    fn follows(&self, prev: &Self) -> bool {
        self.timestamp > prev.timestamp && self.relative_offset >= prev.relative_offset
    }
}

fn array<const N: usize>(buf: &[u8]) -> [u8; N] {
    buf.try_into().expect("callers slice exactly N bytes")
}

/// The offset index of a segment.
pub(crate) type OffsetIndex = Index<OffsetEntry>;
/// The time index of a segment.
pub(crate) type TimeIndex = Index<TimeEntry>;

/// An index file and its entries in memory.
#[derive(Debug)]
pub(crate) struct Index<E> {
    path: PathBuf,
    file: File,
    entries: Vec<E>,
}

/// Why an index file could not be used as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    Missing,
    PartialEntry { len: u64 },
    NotIncreasing { entry: usize },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing => write!(f, "file is missing"),
            Damage::PartialEntry { len } => {
                write!(f, "size {len} is not a whole number of entries")
            }
            Damage::NotIncreasing { entry } => write!(f, "entry {entry} does not increase"),
        }
    }
}

impl<E: Entry> Index<E> {
    /// Opens (creating if missing) the index at `path` and loads its entries.
    /// A damaged file loads as empty, with the damage reported, so the caller
    /// can rebuild it.
    pub(crate) fn open(path: &Path) -> Result<(Self, Option<Damage>), Error> {
        let existed = match std::fs::metadata(path) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io_error(path, e)),
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let mut index = Index {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
        };
        if !existed {
            return Ok((index, Some(Damage::Missing)));
        }
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        if bytes.len() % E::SIZE != 0 {
            let len = bytes.len() as u64;
            return Ok((index, Some(Damage::PartialEntry { len })));
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE).map(E::decode).collect();
        if let Some(bad) = (1..entries.len()).find(|&i| !entries[i].follows(&entries[i - 1])) {
            return Ok((index, Some(Damage::NotIncreasing { entry: bad })));
        }
        index.entries = entries;
        Ok((index, None))
    }

    /// The entries, in increasing order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    /// The last entry.
    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    /// The greatest entry whose key is at most `key`.
    pub(crate) fn lookup(&self, key: E::Key) -> Option<E> {
        let after = self.entries.partition_point(|e| e.key() <= key);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// Appends `entry` if it follows the last one; returns whether it did.
    pub(crate) fn append(&mut self, entry: E) -> Result<bool, Error> {
        if self.entries.last().is_some_and(|last| !entry.follows(last)) {
            return Ok(false);
        }
        let mut buf = Vec::with_capacity(E::SIZE);
        entry.encode(&mut buf);
        let at = (self.entries.len() * E::SIZE) as u64;
        self.file
            .write_all_at(&buf, at)
            .map_err(|e| io_error(&self.path, e))?;
        self.entries.push(entry);
        Ok(true)
    }

    /// Keeps only the first `len` entries.
    pub(crate) fn truncate(&mut self, len: usize) -> Result<(), Error> {
        self.entries.truncate(len);
        let size = (self.entries.len() * E::SIZE) as u64;
        self.file.set_len(size).map_err(|e| io_error(&self.path, e))
    }

    /// Keeps only the entries for which `keep` holds, which must be a prefix.
    pub(crate) fn truncate_while(&mut self, keep: impl Fn(&E) -> bool) -> Result<(), Error> {
        let len = self.entries.partition_point(keep);
        self.truncate(len)
    }

    /// fsyncs the file.
    pub(crate) fn flush(&self) -> Result<(), Error> {
        self.file.sync_data().map_err(|e| io_error(&self.path, e))
    }

    /// The path of the file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_entry(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn lookup_finds_greatest_entry_at_or_below() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut index, damage) = OffsetIndex::open(&dir.path().join("0.index")).expect("open");
        assert_eq!(damage, Some(Damage::Missing));
        for (off, pos) in [(10, 100), (20, 200), (30, 300)] {
            assert!(index.append(offset_entry(off, pos)).expect("append"));
        }
        assert_eq!(index.lookup(5), None);
        assert_eq!(index.lookup(10), Some(offset_entry(10, 100)));
        assert_eq!(index.lookup(19), Some(offset_entry(10, 100)));
        assert_eq!(index.lookup(20), Some(offset_entry(20, 200)));
        assert_eq!(index.lookup(u32::MAX), Some(offset_entry(30, 300)));
    }

    #[test]
    fn append_skips_entries_that_do_not_increase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut index, _) = TimeIndex::open(&dir.path().join("0.timeindex")).expect("open");
        assert!(index
            .append(TimeEntry {
                timestamp: 100,
                relative_offset: 0
            })
            .expect("append"));
        assert!(!index
            .append(TimeEntry {
                timestamp: 100,
                relative_offset: 5
            })
            .expect("append"));
        assert!(!index
            .append(TimeEntry {
                timestamp: 90,
                relative_offset: 6
            })
            .expect("append"));
        assert!(index
            .append(TimeEntry {
                timestamp: 101,
                relative_offset: 7
            })
            .expect("append"));
        assert_eq!(index.entries().len(), 2);
        assert_eq!(index.lookup(99), None);
        assert_eq!(
            index.lookup(100),
            Some(TimeEntry {
                timestamp: 100,
                relative_offset: 0
            })
        );
        assert_eq!(
            index.lookup(1000),
            Some(TimeEntry {
                timestamp: 101,
                relative_offset: 7
            })
        );
    }

    #[test]
    fn reopen_loads_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        {
            let (mut index, _) = OffsetIndex::open(&path).expect("open");
            index.append(offset_entry(1, 10)).expect("append");
            index.append(offset_entry(2, 20)).expect("append");
            index.append(offset_entry(3, 30)).expect("append");
            index.truncate_while(|e| e.position < 30).expect("truncate");
        }
        let (index, damage) = OffsetIndex::open(&path).expect("reopen");
        assert_eq!(damage, None);
        assert_eq!(index.entries(), &[offset_entry(1, 10), offset_entry(2, 20)]);
    }

    #[test]
    fn damaged_files_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = dir.path().join("partial.index");
        std::fs::write(&partial, [0u8; 13]).expect("write");
        let (index, damage) = OffsetIndex::open(&partial).expect("open");
        assert_eq!(damage, Some(Damage::PartialEntry { len: 13 }));
        assert!(index.entries().is_empty());

        let unordered = dir.path().join("unordered.index");
        let mut bytes = Vec::new();
        offset_entry(5, 50).encode(&mut bytes);
        offset_entry(4, 60).encode(&mut bytes);
        std::fs::write(&unordered, bytes).expect("write");
        let (_, damage) = OffsetIndex::open(&unordered).expect("open");
        assert_eq!(damage, Some(Damage::NotIncreasing { entry: 1 }));
    }
}
