//! Swapping cleaned segments in: offsets kept, stale swaps refused, and a
//! crash at either side of the commit point.

use std::path::Path;

use super::*;
use crate::batch::validate_batches;
use crate::log::tests::config;
use crate::test_util::batch;
use crate::LogConfig;

/// A log of 12 one-record batches at offsets 0..12, timestamps 100 * i,
/// in segments [0, 2, 4, 6, 8, 10].
fn twelve(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, config(), 0).expect("open");
    for i in 0..12i64 {
        log.append(&batch(0, 1, 100 * i, 300), 1, 0)
            .expect("append");
    }
    assert_eq!(log.segment_base_offsets(), [0, 2, 4, 6, 8, 10]);
    log
}

/// The base offsets of the batches readable from `offset`.
fn offsets_from(log: &PartitionLog, offset: i64) -> Vec<i64> {
    let read = log.read(offset, usize::MAX, i64::MAX).expect("read");
    validate_batches(&read.records)
        .expect("whole valid batches")
        .iter()
        .map(|h| h.base_offset)
        .collect()
}

/// Writes the batches of `sealed` whose base offset `keep` accepts into a
/// cleaned segment.
fn clean(
    log: &PartitionLog,
    sealed: &[SealedSegment],
    keep: impl Fn(i64) -> bool,
) -> FinishedSegment {
    let mut out = log
        .start_cleaned_segment(sealed[0].base_offset())
        .expect("start");
    for segment in sealed {
        segment
            .for_each_batch::<Error>(|header, bytes| {
                if keep(header.base_offset) {
                    out.append(bytes)?;
                }
                Ok(())
            })
            .expect("read sealed segment");
    }
    out.finish().expect("finish")
}

/// How many files the staging directory holds.
fn staged(dir: &Path) -> usize {
    std::fs::read_dir(dir.join(CLEANING_DIR)).map_or(0, |d| d.count())
}

fn files_with(dir: &Path, extension: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("read dir")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == extension)
        })
        .count()
}

#[test]
fn cleaned_segments_replace_the_old_ones_at_the_same_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(dir.path());
    let sealed = log.sealed_segments();
    assert_eq!(
        sealed
            .iter()
            .map(SealedSegment::base_offset)
            .collect::<Vec<_>>(),
        [0, 2, 4, 6, 8],
        "every segment but the active one"
    );
    assert_eq!(sealed[1].max_timestamp(), Some(300));

    let group = &sealed[..3];
    let cleaned = clean(&log, group, |offset| offset % 2 == 1);
    assert!(log.replace_with_cleaned(cleaned, group).expect("replace"));
    assert_eq!(log.segment_base_offsets(), [0, 6, 8, 10]);
    assert_eq!(offsets_from(&log, 0), [1, 3, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(
        offsets_from(&log, 2),
        [3, 5, 6, 7, 8, 9, 10, 11],
        "a read in a gap starts at the next batch"
    );
    assert_eq!(
        log.log_start_offset(),
        0,
        "the log start stays where it was"
    );
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(files_with(dir.path(), "swap"), 0);
    assert_eq!(staged(dir.path()), 0, "the staging directory is left empty");
    assert_eq!(
        files_with(dir.path(), "log"),
        4,
        "the replaced segments' files are gone"
    );

    // Appends go on, and a restart sees the same log.
    log.append(&batch(0, 1, 5000, 300), 1, 0).expect("append");
    log.close().expect("close");
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(offsets_from(&log, 0), [1, 3, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert_eq!(
        log.find_by_timestamp(250)
            .expect("by time")
            .map(|m| m.header.base_offset),
        Some(3)
    );
}

#[test]
fn a_cleaned_segment_may_be_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(dir.path());
    let sealed = log.sealed_segments();
    let cleaned = clean(&log, &sealed[..2], |_| false);
    assert!(log
        .replace_with_cleaned(cleaned, &sealed[..2])
        .expect("replace"));
    assert_eq!(log.segment_base_offsets(), [0, 4, 6, 8, 10]);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(offsets_from(&log, 0), [4, 5, 6, 7, 8, 9, 10, 11]);
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(offsets_from(&log, 1), [4, 5, 6, 7, 8, 9, 10, 11]);
}

#[test]
fn a_log_changed_since_the_segments_were_read_refuses_the_cleaned_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(dir.path());
    let sealed = log.sealed_segments();
    let cleaned = clean(&log, &sealed[..2], |offset| offset != 0);
    log.set_config(LogConfig {
        retention_ms: 1000,
        ..config()
    });
    assert_eq!(log.enforce_retention(1101).expect("retention"), 1);
    assert!(!log
        .replace_with_cleaned(cleaned, &sealed[..2])
        .expect("replace"));
    assert_eq!(staged(dir.path()), 0, "the unused copy is removed");
    assert_eq!(offsets_from(&log, 2), (2..12).collect::<Vec<_>>());

    // Nor may a copy replace the active segment.
    let other = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(other.path());
    let sealed = log.sealed_segments();
    let mut active_too = sealed.clone();
    let mut stale = sealed[4].clone();
    stale.base_offset = 10;
    active_too.push(stale);
    let cleaned = clean(&log, &sealed, |_| true);
    assert!(!log
        .replace_with_cleaned(cleaned, &active_too)
        .expect("replace"));
}

#[test]
fn a_crash_after_the_commit_point_finishes_the_swap_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = twelve(dir.path());
    let sealed = log.sealed_segments();
    let cleaned = clean(&log, &sealed[1..4], |offset| offset == 3 || offset == 7);
    // The crash: the copy was renamed to .swap, nothing else happened.
    let swap = dir.path().join(segment::file_name(2, SWAP_EXTENSION));
    std::fs::rename(cleaned.path(segment::LOG_EXTENSION), &swap).expect("rename");
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.segment_base_offsets(), [0, 2, 8, 10]);
    assert_eq!(offsets_from(&log, 0), [0, 1, 3, 7, 8, 9, 10, 11]);
    assert!(!swap.exists());
    for gone in [4, 6] {
        for extension in ["log", "index", "timeindex"] {
            assert!(!dir
                .path()
                .join(segment::file_name(gone, extension))
                .exists());
        }
    }
}

#[test]
fn a_crash_before_the_commit_point_leaves_the_old_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = twelve(dir.path());
    let sealed = log.sealed_segments();
    let cleaned = clean(&log, &sealed[..3], |_| false);
    assert_eq!(staged(dir.path()), 3, "the copy and its two indexes");
    drop((log, cleaned));
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(offsets_from(&log, 0), (0..12).collect::<Vec<_>>());
    assert!(!dir.path().join(CLEANING_DIR).exists(), "removed on open");
}

#[test]
fn the_cleaner_offset_survives_restarts_and_follows_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(dir.path());
    assert_eq!(log.cleaner_offset(), 0, "nothing cleaned: the log start");
    log.set_cleaner_offset(8).expect("set");
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.cleaner_offset(), 8);
    log.truncate_to(6).expect("truncate");
    assert_eq!(log.cleaner_offset(), 6);
    for _ in 0..4 {
        log.append(&batch(0, 1, 0, 300), 1, 0).expect("append");
    }
    assert_eq!(
        log.cleaner_offset(),
        6,
        "records after a truncation are not clean"
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.cleaner_offset(), 6);
}

#[test]
fn compact_alone_leaves_nothing_to_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = twelve(dir.path());
    log.set_config(LogConfig {
        retention_ms: 1,
        retention_bytes: 1,
        delete_policy: false,
        ..config()
    });
    assert_eq!(log.enforce_retention(1_000_000).expect("retention"), 0);
    assert_eq!(log.log_start_offset(), 0);
}

#[test]
fn a_crash_after_the_indexes_moved_in_finishes_the_swap_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = twelve(dir.path());
    let sealed = log.sealed_segments();
    let cleaned = clean(&log, &sealed[1..4], |offset| offset % 2 == 1);
    let swap = dir.path().join(segment::file_name(2, SWAP_EXTENSION));
    std::fs::rename(cleaned.path(segment::LOG_EXTENSION), &swap).expect("rename");
    for old in [2, 4, 6] {
        for extension in ["log", "index", "timeindex"] {
            std::fs::remove_file(dir.path().join(segment::file_name(old, extension)))
                .expect("remove");
        }
    }
    for extension in ["index", "timeindex"] {
        std::fs::rename(
            cleaned.path(extension),
            dir.path().join(segment::file_name(2, extension)),
        )
        .expect("move index");
    }
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.segment_base_offsets(), [0, 2, 8, 10]);
    assert_eq!(offsets_from(&log, 0), [0, 1, 3, 5, 7, 8, 9, 10, 11]);
    assert_eq!(offsets_from(&log, 4), [5, 7, 8, 9, 10, 11]);
}
