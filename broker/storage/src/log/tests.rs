use proptest::prelude::*;

use super::*;
use crate::epoch::LEADER_EPOCH_CHECKPOINT_FILE;
use crate::test_util::{batch, batch_size};

/// Small segments and a dense index so tests cross both often; nothing
/// expires or rolls by time unless a test says so.
pub(super) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        segment_ms: i64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        max_message_bytes: 64 * 1024,
        flush_messages: i64::MAX,
        flush_ms: i64::MAX,
        index_interval_bytes: 64,
        delete_policy: true,
    }
}

/// Appends one batch of `records` records as the leader.
fn produce(
    log: &mut PartitionLog,
    records: i32,
    timestamp: i64,
    payload: usize,
    now_ms: i64,
) -> AppendInfo {
    let buf = batch(0, records, timestamp, payload);
    log.append(&buf, 1, now_ms).expect("append")
}

/// Forty batches of 1-4 records and growing payloads, crossing several
/// segments with `config()`; their headers.
fn produce_varied(log: &mut PartitionLog) -> Vec<BatchHeader> {
    (0..40)
        .map(|i| produce(log, i % 4 + 1, 1000 + i64::from(i), 40 + 7 * i as usize, 0).batches[0])
        .collect()
}

/// All whole batches from `offset` on.
fn read_all(log: &PartitionLog, offset: i64) -> Vec<BatchHeader> {
    let read = log.read(offset, usize::MAX, i64::MAX).expect("read");
    validate_batches(&read.records).expect("reads return whole valid batches")
}

fn base_offsets(headers: &[BatchHeader]) -> Vec<i64> {
    headers.iter().map(|h| h.base_offset).collect()
}

/// The path of a segment file.
fn segment_file(dir: &Path, base: i64, extension: &str) -> PathBuf {
    dir.join(segment::file_name(base, extension))
}

#[test]
fn append_assigns_offsets_and_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    assert_eq!(log.max_timestamp(), None);

    let info = produce(&mut log, 3, 100, 10, 0);
    assert_eq!(
        (info.base_offset, info.last_offset, info.max_timestamp),
        (0, 2, 100)
    );

    // Several batches in one append, each with a stale base offset.
    let mut buf = batch(77, 2, 300, 5);
    buf.extend(batch(0, 4, 200, 5));
    let info = log.append(&buf, 9, 0).expect("append");
    assert_eq!(
        (info.base_offset, info.last_offset, info.max_timestamp),
        (3, 8, 300)
    );
    assert_eq!(base_offsets(&info.batches), [3, 5]);
    assert!(info.batches.iter().all(|h| h.partition_leader_epoch == 9));
    // The stored copy carries the new offsets and epoch and still checks
    // out; the caller's buffer is untouched.
    let stored = log.read(3, usize::MAX, i64::MAX).expect("read");
    assert_eq!(
        validate_batches(&stored.records).expect("valid"),
        info.batches
    );
    assert_eq!(
        base_offsets(&validate_batches(&buf).expect("valid")),
        [77, 0]
    );

    assert_eq!(log.log_end_offset(), 9);
    let all = read_all(&log, 0);
    assert_eq!(base_offsets(&all), [0, 3, 5]);
    assert_eq!(all[0].partition_leader_epoch, 1);
    assert_eq!(log.max_timestamp(), Some((300, 4)));
    assert_eq!(
        log.size_bytes(),
        (batch_size(10) + 2 * batch_size(5)) as u64
    );
}

#[test]
fn invalid_appends_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    produce(&mut log, 1, 0, 10, 0);
    let before = (log.log_end_offset(), log.size_bytes());

    let mut bad_crc = batch(0, 1, 0, 10);
    let mut second = batch(0, 1, 0, 10);
    let last = second.len() - 1;
    second[last] ^= 1;
    bad_crc.extend(second);
    assert!(matches!(
        log.append(&bad_crc, 0, 0),
        Err(Error::CrcMismatch { .. })
    ));

    let mut too_large = batch(0, 1, 0, 10);
    too_large.extend(batch(0, 1, 0, 64 * 1024));
    match log.append(&too_large, 0, 0) {
        Err(Error::MessageTooLarge { size, max }) => {
            assert_eq!((size, max), (batch_size(64 * 1024), 64 * 1024))
        }
        other => panic!("expected message too large, got {other:?}"),
    }

    let mut inconsistent = batch(0, 3, 0, 10);
    inconsistent[60] = 2; // records_count 2, last_offset_delta 2
    let crc = crate::compute_crc(&inconsistent);
    inconsistent[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append(&inconsistent, 0, 0),
        Err(Error::CorruptBatch(_))
    ));

    let mut v1 = batch(0, 1, 0, 10);
    v1[16] = 1;
    assert!(matches!(
        log.append(&v1, 0, 0),
        Err(Error::UnsupportedMagic(1))
    ));
    assert!(matches!(log.append(&[], 0, 0), Err(Error::CorruptBatch(_))));
    let mut torn = batch(0, 1, 0, 10);
    torn.pop();
    assert!(matches!(
        log.append(&torn, 0, 0),
        Err(Error::CorruptBatch(_))
    ));

    assert_eq!((log.log_end_offset(), log.size_bytes()), before);
    assert_eq!(base_offsets(&read_all(&log, 0)), [0]);
}

#[test]
fn rolls_by_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    // 261-byte batches: three fit in 1024 bytes, a fourth would not.
    for _ in 0..10 {
        produce(&mut log, 2, 0, 200, 0);
    }
    assert_eq!(log.segment_base_offsets(), [0, 6, 12, 18]);
    assert!(log.segments.iter().all(|s| s.size() <= 1024));
    assert_eq!(log.log_end_offset(), 20);

    // A batch larger than segment.bytes still goes in, alone.
    produce(&mut log, 1, 0, 2000, 0);
    produce(&mut log, 1, 0, 10, 0);
    assert_eq!(log.segment_base_offsets(), [0, 6, 12, 18, 20, 21]);
    assert_eq!(base_offsets(&read_all(&log, 20)), [20, 21]);
}

#[test]
fn rolls_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_ms: 1000,
            ..config()
        },
        0,
    )
    .expect("open");
    assert!(
        !log.roll_if_due(1_000_000).expect("roll"),
        "an empty segment never rolls"
    );

    produce(&mut log, 1, 0, 10, 5000);
    produce(&mut log, 1, 0, 10, 6000);
    assert_eq!(log.segment_count(), 1);
    // More than segment.ms after the segment's first append.
    produce(&mut log, 1, 0, 10, 6001);
    assert_eq!(log.segment_base_offsets(), [0, 2]);

    assert!(!log.roll_if_due(7001).expect("roll"));
    assert!(log.roll_if_due(7002).expect("roll"));
    assert_eq!(log.segment_base_offsets(), [0, 2, 3]);
    assert!(
        !log.roll_if_due(100_000).expect("roll"),
        "the new segment is empty"
    );
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(base_offsets(&read_all(&log, 0)), [0, 1, 2]);
}

#[test]
fn reads_from_inside_a_batch_and_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let batches = produce_varied(&mut log);
    assert!(log.segment_count() > 5);
    for (i, header) in batches.iter().enumerate() {
        for offset in header.base_offset..=header.last_offset() {
            // One byte is enough: the first batch comes whole.
            let read = log.read(offset, 1, i64::MAX).expect("read");
            assert_eq!(
                validate_batches(&read.records).expect("valid"),
                [*header],
                "offset {offset}"
            );
            // Unlimited reads run to the log end across segments.
            assert_eq!(read_all(&log, offset), batches[i..], "offset {offset}");
        }
    }
}

#[test]
fn read_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
        0,
    )
    .expect("open");
    for _ in 0..5 {
        produce(&mut log, 3, 0, 39, 0); // 100 bytes, offsets 3i..3i+2
    }

    // max_bytes: whole batches only.
    assert_eq!(log.read(0, 200, i64::MAX).expect("read").records.len(), 200);
    assert_eq!(log.read(0, 299, i64::MAX).expect("read").records.len(), 200);
    assert_eq!(
        log.read(4, 10_000, i64::MAX).expect("read").records.len(),
        400
    );
    // KIP-74: the first batch even if larger than max_bytes.
    assert_eq!(log.read(7, 0, i64::MAX).expect("read").records.len(), 100);

    // max_offset is exclusive on last offsets: batch 6..=8 needs max_offset 9.
    assert_eq!(
        base_offsets(
            &validate_batches(&log.read(0, 10_000, 8).expect("read").records).expect("valid")
        ),
        [0, 3]
    );
    assert_eq!(
        base_offsets(
            &validate_batches(&log.read(0, 10_000, 9).expect("read").records).expect("valid")
        ),
        [0, 3, 6]
    );
    assert!(log.read(6, 10_000, 8).expect("read").records.is_empty());
    // ...and takes precedence over KIP-74.
    assert!(log.read(6, 0, 8).expect("read").records.is_empty());

    // Offsets outside [start, end].
    let empty = log.read(15, 100, i64::MAX).expect("read at log end");
    assert!(empty.records.is_empty());
    assert_eq!((empty.log_start_offset, empty.log_end_offset), (0, 15));
    assert!(matches!(
        log.read(16, 100, i64::MAX),
        Err(Error::OffsetOutOfRange {
            offset: 16,
            start: 0,
            end: 15
        })
    ));
    assert!(matches!(
        log.read(-1, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn finds_by_timestamp_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let mut batches = Vec::new();
    for i in 0..30i64 {
        // Mostly increasing, with some stragglers.
        let ts = 10_000 + 100 * i - if i % 5 == 4 { 250 } else { 0 };
        batches.push(produce(&mut log, 2, ts, 150, 0).batches[0]);
    }
    assert!(log.segment_count() > 3);
    let max = batches
        .iter()
        .map(|h| h.max_timestamp)
        .max()
        .expect("batches");
    for target in (9_000..=max + 10).step_by(7) {
        let expected = batches.iter().find(|h| h.max_timestamp >= target).copied();
        let found = log.find_by_timestamp(target).expect("find");
        assert_eq!(
            found.as_ref().map(|m| m.header),
            expected,
            "timestamp {target}"
        );
        if let Some(found) = found {
            assert_eq!(
                validate_batches(&found.batch).expect("valid"),
                [found.header]
            );
        }
    }
    let last_max = batches
        .iter()
        .rfind(|h| h.max_timestamp == max)
        .expect("max");
    assert_eq!(log.max_timestamp(), Some((max, last_max.last_offset())));
}

#[test]
fn retention_by_time_moves_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        retention_ms: 1000,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).expect("open");
    for i in 0..12i64 {
        produce(&mut log, 1, 100 * i, 300, 0); // 361 bytes: two per segment
    }
    assert_eq!(log.segment_base_offsets(), [0, 2, 4, 6, 8, 10]);

    // Segment [0, 1] has max timestamp 100, [2, 3] 300, ...
    assert_eq!(log.enforce_retention(1100).expect("retention"), 0);
    assert_eq!(log.enforce_retention(1101).expect("retention"), 1);
    assert_eq!(log.log_start_offset(), 2);
    assert!(matches!(
        log.read(1, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { start: 2, .. })
    ));
    assert_eq!(log.enforce_retention(1501).expect("retention"), 2);
    assert_eq!(log.log_start_offset(), 6);
    assert!(!segment_file(dir.path(), 4, "log").exists());
    assert!(!segment_file(dir.path(), 4, "index").exists());
    assert_eq!(base_offsets(&read_all(&log, 6)), [6, 7, 8, 9, 10, 11]);

    // The high watermark bounds what may go.
    assert_eq!(
        log.enforce_retention_below(1_000_000, 9)
            .expect("retention"),
        1
    );
    assert_eq!(log.log_start_offset(), 8);

    // An idle partition whose every record is past retention expires fully:
    // a new empty segment is rolled and everything before it deleted.
    assert_eq!(log.enforce_retention(1_000_000).expect("retention"), 2);
    assert_eq!(log.segment_base_offsets(), [12]);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (12, 12, 0)
    );
    assert_eq!(log.enforce_retention(2_000_000).expect("retention"), 0);
    assert_eq!(produce(&mut log, 1, 5, 1, 0).base_offset, 12);
}

#[test]
fn retention_by_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment_size = 2 * batch_size(300) as i64;
    let cfg = LogConfig {
        retention_bytes: 2 * segment_size,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).expect("open");
    for _ in 0..9 {
        produce(&mut log, 1, 0, 300, 0);
    }
    assert_eq!(log.segment_base_offsets(), [0, 2, 4, 6, 8]);
    // 4.5 segments of data, 2 allowed: 2 go (deleting a third would leave 1.5).
    assert_eq!(log.enforce_retention(0).expect("retention"), 2);
    assert_eq!(log.segment_base_offsets(), [4, 6, 8]);
    assert_eq!(log.log_start_offset(), 4);
    assert!(log.size_bytes() as i64 - segment_size < 2 * segment_size);
    assert_eq!(log.enforce_retention(0).expect("retention"), 0);

    let mut log_zero = log;
    log_zero.set_config(LogConfig {
        retention_bytes: 0,
        ..config()
    });
    assert_eq!(log_zero.enforce_retention(0).expect("retention"), 3);
    assert_eq!(
        (log_zero.log_start_offset(), log_zero.log_end_offset()),
        (9, 9)
    );
}

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let mut batches = Vec::new();
    for i in 0..25 {
        batches.push(produce(&mut log, 3, 500 + i64::from(i % 7), 100, 0).batches[0]);
    }
    let state = (
        log.segment_base_offsets(),
        log.log_end_offset(),
        log.size_bytes(),
        log.max_timestamp(),
    );
    log.close().expect("close");
    assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());

    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    assert_eq!(
        (
            log.segment_base_offsets(),
            log.log_end_offset(),
            log.size_bytes(),
            log.max_timestamp()
        ),
        state
    );
    assert_eq!(read_all(&log, 0), batches);
    assert_eq!(read_all(&log, 40)[0], batches[13]);
    assert_eq!(
        log.find_by_timestamp(506).expect("find").map(|m| m.header),
        Some(batches[6])
    );
    assert_eq!(produce(&mut log, 1, 0, 1, 0).base_offset, 75);

    // An unclean shutdown (no close) loses nothing that was written either.
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), 76);
    assert_eq!(read_all(&log, 0).len(), 26);
}

/// Writes `count` batches and drops the log without closing it, as a crash
/// would; returns the batches and the active segment's base offset.
fn crashed_log(dir: &Path, count: usize) -> (Vec<BatchHeader>, i64) {
    let mut log = PartitionLog::open(dir, config(), 0).expect("open");
    let batches = (0..count)
        .map(|i| produce(&mut log, 1 + (i % 3) as i32, 1000 + i as i64, 60, 0).batches[0])
        .collect();
    let active = *log.segment_base_offsets().last().expect("a segment");
    drop(log);
    (batches, active)
}

#[test]
fn recovery_cuts_a_torn_tail_at_every_byte() {
    let count = 12;
    let template = tempfile::tempdir().expect("tempdir");
    let (batches, active) = crashed_log(template.path(), count);
    assert!(active > 0, "the tail should be in a later segment");
    let last = batches[count - 1];
    let log_file = segment::file_name(active, "log");
    let full = std::fs::metadata(template.path().join(&log_file))
        .expect("stat")
        .len();
    let last_start = full - last.total_size() as u64;

    for cut in last_start..full {
        let dir = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(template.path()).expect("read dir") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, dir.path().join(path.file_name().expect("name"))).expect("copy");
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(&log_file))
            .expect("open log");
        file.set_len(cut).expect("cut");
        drop(file);

        let mut log = PartitionLog::open(dir.path(), config(), 0).expect("recover");
        assert_eq!(log.log_end_offset(), last.base_offset, "cut at {cut}");
        assert_eq!(read_all(&log, 0), batches[..count - 1], "cut at {cut}");
        assert_eq!(
            std::fs::metadata(dir.path().join(&log_file))
                .expect("stat")
                .len(),
            last_start
        );
        let info = produce(&mut log, 2, 0, 5, 0);
        assert_eq!(info.base_offset, last.base_offset, "cut at {cut}");
        log.close().expect("close");

        let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
        assert_eq!(log.log_end_offset(), last.base_offset + 2);
        assert_eq!(read_all(&log, last.base_offset)[0], info.batches[0]);
    }
}

#[test]
fn recovery_drops_garbage_after_valid_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (batches, active) = crashed_log(dir.path(), 6);
    let path = segment_file(dir.path(), active, "log");
    let valid_len = std::fs::metadata(&path).expect("stat").len();

    // A plausible header claiming a huge batch, then noise.
    let mut garbage = batch(batches[5].next_offset(), 1, 0, 0);
    garbage[8..12].copy_from_slice(&(1i32 << 30).to_be_bytes());
    garbage.extend((0..500u32).map(|i| (i * 7 + 3) as u8));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend(&garbage);
    std::fs::write(&path, &bytes).expect("write");

    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("recover");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), valid_len);
    assert_eq!(read_all(&log, 0), batches);
    assert_eq!(
        produce(&mut log, 1, 0, 0, 0).base_offset,
        batches[5].next_offset()
    );

    // A whole, CRC-valid batch that goes back in offsets is garbage too.
    drop(log);
    let before = std::fs::metadata(&path).expect("stat").len();
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend(batch(0, 1, 0, 10));
    std::fs::write(&path, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), config(), 0).expect("recover");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), before);
    assert_eq!(log.log_end_offset(), batches[5].next_offset() + 1);
}

#[test]
fn a_clean_shutdown_skips_the_crc_check() {
    // With the marker present the tail is trusted; this pins down that the
    // marker, not luck, decides whether recovery runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
        0,
    )
    .expect("open");
    produce(&mut log, 1, 0, 10, 0);
    produce(&mut log, 1, 0, 10, 0);
    log.close().expect("close");
    let path = segment_file(dir.path(), 0, "log");
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).expect("write");

    let log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
        0,
    )
    .expect("open");
    assert_eq!(log.log_end_offset(), 2);
    drop(log); // unclean: the next open checks CRCs and drops the bad batch
    let log = PartitionLog::open(
        dir.path(),
        LogConfig {
            segment_bytes: 1 << 20,
            ..config()
        },
        0,
    )
    .expect("open");
    assert_eq!(log.log_end_offset(), 1);
}

#[test]
fn deleted_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let batches: Vec<_> = (0..30)
        .map(|i| produce(&mut log, 2, 100 + i, 90, 0).batches[0])
        .collect();
    let bases = log.segment_base_offsets();
    let before: Vec<_> = log
        .segments
        .iter()
        .map(|s| s.offset_index().entries().to_vec())
        .collect();
    log.close().expect("close");

    for &base in &bases {
        std::fs::remove_file(segment_file(dir.path(), base, "index")).expect("remove index");
        std::fs::remove_file(segment_file(dir.path(), base, "timeindex"))
            .expect("remove timeindex");
    }
    // A stray index whose log is gone is removed.
    let orphan = segment_file(dir.path(), 99_999, "index");
    std::fs::write(&orphan, [0u8; 8]).expect("write");

    let log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    assert!(!orphan.exists());
    for &base in &bases {
        assert!(segment_file(dir.path(), base, "index").exists());
        assert!(segment_file(dir.path(), base, "timeindex").exists());
    }
    let after: Vec<_> = log
        .segments
        .iter()
        .map(|s| s.offset_index().entries().to_vec())
        .collect();
    assert_eq!(after, before);
    for (i, header) in batches.iter().enumerate() {
        let read = log.read(header.last_offset(), 1, i64::MAX).expect("read");
        assert_eq!(
            validate_batches(&read.records).expect("valid"),
            [batches[i]]
        );
        let found = log
            .find_by_timestamp(header.max_timestamp)
            .expect("find")
            .map(|m| m.header);
        assert_eq!(found, Some(*header));
    }
}

#[test]
fn truncate_to_removes_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let batches: Vec<_> = (0..20)
        .map(|i| produce(&mut log, 3, i, 200, 0).batches[0])
        .collect();
    let segments = log.segment_count();
    assert!(segments > 4);

    // Inside a batch: refused, nothing removed.
    assert!(matches!(log.truncate_to(31), Err(Error::CorruptBatch(_))));
    assert_eq!(log.log_end_offset(), 60);
    // Past the end: a no-op.
    log.truncate_to(60).expect("no-op");
    assert_eq!(log.log_end_offset(), 60);

    // At a batch boundary in an older segment.
    log.truncate_to(30).expect("truncate");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(read_all(&log, 0), batches[..10]);
    assert!(log.segment_count() < segments);
    assert_eq!(log.max_timestamp(), Some((9, 29)));
    assert!(matches!(
        log.read(31, 1, i64::MAX),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let info = produce(&mut log, 1, 0, 10, 0);
    assert_eq!(info.base_offset, 30);

    // At a segment's base offset.
    let second = log.segment_base_offsets()[1];
    log.truncate_to(second).expect("truncate");
    assert_eq!(log.log_end_offset(), second);
    // Kafka keeps the segment starting there, empty, as the active one.
    assert_eq!(log.segment_base_offsets(), [0, second]);
    assert_eq!(log.size_bytes(), log.segments[0].size());

    // At or below the log start: everything goes, the log restarts there.
    log.truncate_to(0).expect("truncate");
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
    log.truncate_fully_and_start_at(500).expect("restart");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 500));
    assert_eq!(produce(&mut log, 1, 0, 1, 0).base_offset, 500);
    log.close().expect("close");
    let log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (500, 501));
}

#[test]
fn replicated_appends_keep_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let mut buf = batch(0, 3, 10, 10);
    buf.extend(batch(3, 2, 20, 10));
    let info = log.append_replicated(&buf, 0).expect("append");
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(
        log.read(0, usize::MAX, i64::MAX).expect("read").records,
        buf
    );

    assert!(matches!(
        log.append_replicated(&batch(4, 1, 0, 0), 0),
        Err(Error::NonContiguousAppend { offset: 4, end: 5 })
    ));
    let mut backwards = batch(5, 2, 0, 0);
    backwards.extend(batch(6, 1, 0, 0));
    assert!(matches!(
        log.append_replicated(&backwards, 0),
        Err(Error::NonContiguousAppend { offset: 6, end: 7 })
    ));
    assert_eq!(
        log.log_end_offset(),
        5,
        "nothing of a refused append is kept"
    );
}

#[test]
fn replicated_appends_may_skip_offsets_a_compacted_leader_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    log.append_replicated(&batch(0, 3, 10, 10), 0)
        .expect("append");
    let mut gapped = batch(6, 1, 20, 10);
    gapped.extend(batch(9, 2, 30, 10));
    log.append_replicated(&gapped, 0)
        .expect("a gap is accepted");
    assert_eq!(log.log_end_offset(), 11);
    let from_gap = log.read(4, usize::MAX, i64::MAX).expect("read in the gap");
    assert_eq!(
        from_gap.records, gapped,
        "a read in a gap starts at the next batch"
    );
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_end_offset(), 11);

    // Truncating to an offset in a gap cuts at the next batch.
    assert_eq!(log.truncations(), 0);
    log.truncate_to(8).expect("truncate in a gap");
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(log.truncations(), 1);
    assert_eq!(base_offsets(&read_all(&log, 0)), [0, 6]);
}

#[test]
fn flushes_per_flush_messages_and_flush_ms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        flush_messages: 5,
        flush_ms: 100,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), cfg, 0).expect("open");
    produce(&mut log, 2, 0, 1, 1000);
    produce(&mut log, 2, 0, 1, 1010);
    assert_eq!(
        (log.unflushed_messages, log.first_unflushed_ms),
        (4, Some(1000))
    );
    produce(&mut log, 1, 0, 1, 1020);
    assert_eq!((log.unflushed_messages, log.first_unflushed_ms), (0, None));
    assert!(!log.active().dirty_for_test());

    produce(&mut log, 1, 0, 1, 2000);
    log.flush_if_due(2099).expect("flush");
    assert_eq!(log.unflushed_messages, 1);
    log.flush_if_due(2100).expect("flush");
    assert_eq!(log.unflushed_messages, 0);
}

#[test]
fn delete_removes_the_directory() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("topic-0");
    let mut log = PartitionLog::open(&dir, config(), 0).expect("open");
    produce(&mut log, 1, 0, 1, 0);
    assert!(dir.exists());
    log.delete().expect("delete");
    assert!(!dir.exists());
}

/// A batch of `records` records at `base_offset` written by a leader in
/// `epoch`, as a follower receives it.
fn leader_batch(base_offset: i64, records: i32, epoch: i32) -> Vec<u8> {
    let mut buf = batch(base_offset, records, 0, 10);
    set_base_offset_and_leader_epoch(&mut buf, base_offset, epoch).expect("rewrite");
    buf
}

/// The leader epoch cache as `(epoch, start offset)` pairs.
fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.leader_epoch_cache()
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// Appends one batch of `records` records as the leader in `epoch`.
fn produce_in(log: &mut PartitionLog, epoch: i32, records: i32) -> AppendInfo {
    let buf = batch(0, records, 0, 10);
    log.append(&buf, epoch, 0).expect("append")
}

#[test]
fn appends_record_leader_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut leader = PartitionLog::open(&dir.path().join("leader"), config(), 0).expect("open");
    assert_eq!(leader.latest_epoch(), None);
    assert_eq!(leader.end_offset_for_epoch(0), None);

    // leader appends in epochs 1, 1, 3.
    produce_in(&mut leader, 1, 3);
    produce_in(&mut leader, 1, 2);
    produce_in(&mut leader, 3, 4);
    assert_eq!(epochs(&leader), [(1, 0), (3, 5)]);
    assert_eq!(leader.latest_epoch(), Some(3));
    assert_eq!(leader.end_offset_for_epoch(1), Some((1, 5)));
    assert_eq!(leader.end_offset_for_epoch(2), Some((1, 5)));
    assert_eq!(leader.end_offset_for_epoch(3), Some((3, 9)));
    assert_eq!(leader.end_offset_for_epoch(4), None);
    assert_eq!(leader.leader_epoch_cache().epoch_for_offset(4), Some(1));

    // an invalid append and a stale epoch change nothing.
    let mut bad = batch(0, 1, 0, 10);
    bad[70] ^= 1;
    assert!(leader.append(&bad, 7, 0).is_err());
    produce_in(&mut leader, 2, 1);
    assert_eq!(epochs(&leader), [(1, 0), (3, 5)]);

    // a follower copying the leader's bytes gets the same epochs.
    let mut follower = PartitionLog::open(&dir.path().join("follower"), config(), 0).expect("open");
    let records = leader.read(0, usize::MAX, i64::MAX).expect("read").records;
    follower.append_replicated(&records, 0).expect("replicate");
    assert_eq!(epochs(&follower), epochs(&leader));

    // replicated batches assign newer epochs only, several per append.
    let mut buf = leader_batch(10, 2, 4);
    buf.extend(leader_batch(12, 1, 4));
    buf.extend(leader_batch(13, 2, 6));
    buf.extend(leader_batch(15, 1, 5));
    buf.extend(leader_batch(16, 1, -1));
    follower.append_replicated(&buf, 0).expect("replicate");
    assert_eq!(epochs(&follower), [(1, 0), (3, 5), (4, 10), (6, 13)]);
    assert_eq!(follower.end_offset_for_epoch(5), Some((4, 13)));
    assert_eq!(follower.end_offset_for_epoch(6), Some((6, 17)));
    // A refused (backwards) replicated append assigns nothing.
    assert!(follower
        .append_replicated(&leader_batch(12, 1, 9), 0)
        .is_err());
    assert_eq!(follower.latest_epoch(), Some(6));
}

#[test]
fn truncation_trims_the_epoch_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    produce_in(&mut log, 1, 3);
    produce_in(&mut log, 1, 2);
    produce_in(&mut log, 3, 4);
    produce_in(&mut log, 5, 1);
    assert_eq!(epochs(&log), [(1, 0), (3, 5), (5, 9)]);

    // truncating to an epoch's start removes it.
    log.truncate_to(9).expect("truncate");
    assert_eq!(epochs(&log), [(1, 0), (3, 5)]);
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));

    // an epoch assigned at the log end and never used goes on truncation.
    log.assign_epoch(7, 9).expect("assign");
    assert_eq!(log.end_offset_for_epoch(7), Some((7, 9)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 9)));
    log.truncate_to(9).expect("truncate at the end");
    assert_eq!(epochs(&log), [(1, 0), (3, 5)]);
    log.truncate_to(100).expect("truncate past the end");
    assert_eq!(epochs(&log), [(1, 0), (3, 5)]);

    // a new leader's epoch replaces one assigned at the same offset.
    log.assign_epoch(7, 9).expect("assign");
    log.assign_epoch(8, 9).expect("assign");
    assert_eq!(epochs(&log), [(1, 0), (3, 5), (8, 9)]);
    produce_in(&mut log, 8, 1);
    assert_eq!(epochs(&log), [(1, 0), (3, 5), (8, 9)]);

    // truncating inside an epoch keeps it; the cache survives a reopen.
    log.truncate_to(3).expect("truncate");
    assert_eq!(epochs(&log), [(1, 0)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 3)));
    assert_eq!(log.end_offset_for_epoch(3), None);
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(epochs(&log), [(1, 0)]);

    // truncating fully clears it.
    log.truncate_fully_and_start_at(50).expect("restart");
    assert_eq!(epochs(&log), []);
    produce_in(&mut log, 9, 1);
    assert_eq!(epochs(&log), [(9, 50)]);
    log.truncate_to(10).expect("below the log start");
    assert_eq!(epochs(&log), []);
}

#[test]
fn epochs_survive_reopen_with_and_without_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    produce_in(&mut log, 1, 3);
    produce_in(&mut log, 1, 2);
    produce_in(&mut log, 3, 4);
    let expected = vec![(1, 0), (3, 5)];
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read"),
        "0\n2\n1 0\n3 5\n"
    );

    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(epochs(&log), expected);

    // killed without close: the checkpoint was written when it changed.
    produce_in(&mut log, 4, 1);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(epochs(&log), [(1, 0), (3, 5), (4, 9)]);

    // an epoch assigned at the log end without appends is forgotten.
    log.assign_epoch(6, 10).expect("assign");
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(epochs(&log), [(1, 0), (3, 5), (4, 9)]);
}

#[test]
fn recovery_drops_epochs_of_a_lost_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    produce_in(&mut log, 1, 3);
    produce_in(&mut log, 2, 2);
    let last = produce_in(&mut log, 3, 2).batches[0];
    let active = *log.segment_base_offsets().last().expect("a segment");
    drop(log);

    // The last batch was torn by the crash.
    let path = segment_file(dir.path(), active, "log");
    let len = std::fs::metadata(&path).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len(len - 1).expect("cut");
    drop(file);

    let log = PartitionLog::open(dir.path(), config(), 0).expect("recover");
    assert_eq!(log.log_end_offset(), last.base_offset);
    assert_eq!(epochs(&log), [(1, 0), (2, 3)]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read"),
        "0\n2\n1 0\n2 3\n"
    );
}

#[test]
fn a_missing_or_malformed_checkpoint_is_rebuilt_from_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About two batches per segment.
    let config = || LogConfig {
        segment_bytes: 150,
        ..config()
    };
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    for (epoch, records) in [(0, 2), (0, 1), (2, 3), (2, 1), (5, 2)] {
        produce_in(&mut log, epoch, records);
    }
    // Batches before any epoch (-1, an old follower's) assign nothing.
    log.append_replicated(&leader_batch(9, 1, -1), 0)
        .expect("replicate");
    let expected = vec![(0, 0), (2, 3), (5, 7)];
    assert_eq!(epochs(&log), expected);
    assert!(log.segment_count() > 1, "the scan should cross segments");
    log.close().expect("close");

    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    for damage in [None, Some("0\n5\n0 0\n"), Some("garbage")] {
        match damage {
            None => std::fs::remove_file(&path).expect("remove"),
            Some(text) => std::fs::write(&path, text).expect("write"),
        }
        let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
        assert_eq!(epochs(&log), expected, "{damage:?}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "0\n3\n0 0\n2 3\n5 7\n"
        );
        log.close().expect("close");
    }

    // A new, empty partition writes an empty checkpoint.
    let empty = tempfile::tempdir().expect("tempdir");
    PartitionLog::open(empty.path(), config(), 0).expect("open");
    assert_eq!(
        std::fs::read_to_string(empty.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read"),
        "0\n0\n"
    );
}

#[test]
fn retention_moves_the_first_epoch_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    // 3 batches of 3 records per segment.
    for (i, epoch) in [1, 1, 1, 1, 1, 2, 2, 2, 2, 4].into_iter().enumerate() {
        let buf = batch(0, 3, i as i64, 200);
        log.append(&buf, epoch, 0).expect("append");
    }
    assert_eq!(epochs(&log), [(1, 0), (2, 15), (4, 27)]);
    assert_eq!(log.segment_base_offsets(), [0, 9, 18, 27]);

    log.set_config(LogConfig {
        retention_ms: 0,
        ..config()
    });
    assert_eq!(log.enforce_retention_below(100, 18).expect("retention"), 2);
    assert_eq!(log.log_start_offset(), 18);
    assert_eq!(epochs(&log), [(2, 18), (4, 27)]);

    // all expired: the latest epoch moves to the new, empty log start.
    assert_eq!(log.enforce_retention(100).expect("retention"), 2);
    assert_eq!(log.log_start_offset(), 30);
    assert_eq!(epochs(&log), [(4, 30)]);
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 30)));
    log.close().expect("close");
    // ... which a reopen drops, as it starts at the log end.
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(epochs(&log), []);
}

#[test]
fn high_watermark_checkpoint_is_clamped_to_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(HIGH_WATERMARK_FILE);
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    assert_eq!(log.recovered_high_watermark(), 0);
    assert!(!path.exists());
    for _ in 0..10 {
        produce(&mut log, 3, 0, 200, 0);
    }

    // checkpointed values survive a reopen, with or without close.
    log.checkpoint_high_watermark(12).expect("checkpoint");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), "0\n1\n12\n");
    assert_eq!(log.recovered_high_watermark(), 12);
    drop(log);
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.recovered_high_watermark(), 12);

    // an unchanged value is not written again.
    std::fs::remove_file(&path).expect("remove");
    log.checkpoint_high_watermark(12).expect("checkpoint");
    assert!(!path.exists());
    log.checkpoint_high_watermark(27).expect("checkpoint");
    log.close().expect("close");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.recovered_high_watermark(), 27);

    // clamped to the log end and the log start.
    log.truncate_to(15).expect("truncate");
    assert_eq!(log.recovered_high_watermark(), 15);
    log.checkpoint_high_watermark(-5).expect("checkpoint");
    assert_eq!(log.recovered_high_watermark(), 0);
    log.checkpoint_high_watermark(15).expect("checkpoint");
    log.set_config(LogConfig {
        retention_ms: 0,
        ..config()
    });
    log.enforce_retention(100).expect("retention");
    assert_eq!(log.log_start_offset(), 15);
    assert_eq!(log.recovered_high_watermark(), 15);
    log.truncate_fully_and_start_at(40).expect("restart");
    assert_eq!(log.recovered_high_watermark(), 40);
    drop(log);

    // a malformed checkpoint counts as none.
    std::fs::write(&path, "0\n1\nnot a number\n").expect("write");
    let log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.recovered_high_watermark(), 40);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the batch sizes, segment size and index density, a read at
    /// any offset starts with the batch holding it and runs to the log end;
    /// also after a clean reopen.
    #[test]
    fn reads_start_at_the_batch_holding_the_offset(
        shapes in proptest::collection::vec((1..6i32, 0..300usize), 1..40),
        segment_bytes in 100..2000u64,
        index_interval_bytes in 0..400u32,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = LogConfig { segment_bytes, index_interval_bytes, ..config() };
        let mut log = PartitionLog::open(dir.path(), cfg.clone(), 0).expect("open");
        let mut batches = Vec::new();
        let mut bytes = Vec::new();
        for (i, &(records, payload)) in shapes.iter().enumerate() {
            let mut buf = batch(0, records, i as i64, payload);
            let info = log.append(&buf, 0, 0).expect("append");
            set_base_offset_and_leader_epoch(&mut buf, info.base_offset, 0).expect("rewrite");
            batches.push((info.batches[0], bytes.len()));
            bytes.extend(buf);
        }
        for reopen in [false, true] {
            if reopen {
                log.close().expect("close");
                log = PartitionLog::open(dir.path(), cfg.clone(), 0).expect("reopen");
            }
            for &(header, start) in &batches {
                for offset in header.base_offset..=header.last_offset() {
                    let read = log.read(offset, usize::MAX, i64::MAX).expect("read");
                    prop_assert_eq!(&read.records[..], &bytes[start..]);
                    let first = log.read(offset, 0, i64::MAX).expect("read");
                    prop_assert_eq!(&first.records[..], &bytes[start..start + header.total_size()]);
                }
            }
        }
    }
}

/// The bytes a zero-copy read names, concatenated.
fn slice_bytes(read: &SliceRead) -> Vec<u8> {
    let mut out = Vec::new();
    for slice in &read.slices {
        out.extend(slice.read().expect("slice readable"));
    }
    assert_eq!(out.len(), read.len, "len is the sum of the slices");
    out
}

/// A zero-copy read names exactly the bytes a copying read returns, except
/// that (as in Kafka) the byte limit may cut the last batch; the first batch
/// is always whole and the high watermark is never passed.
#[test]
fn slice_reads_match_copying_reads_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    let batches = produce_varied(&mut log);
    assert!(log.segment_count() > 5);
    let end = log.log_end_offset();
    let high_watermarks = [
        end,
        end - 1,
        batches[30].base_offset,
        batches[3].base_offset,
    ];
    for header in &batches {
        for offset in [header.base_offset, header.last_offset()] {
            for max_offset in high_watermarks {
                let whole = log.read(offset, usize::MAX, max_offset).expect("read");
                for max_bytes in [0, 1, 100, 333, 1000, 5000, usize::MAX] {
                    let read = log
                        .read_slices(offset, max_bytes, max_offset)
                        .expect("slice read");
                    let bytes = slice_bytes(&read);
                    let copied = log.read(offset, max_bytes, max_offset).expect("read");
                    assert!(
                        whole.records.starts_with(&bytes),
                        "offset {offset} max_bytes {max_bytes} max_offset {max_offset}: \
                         a prefix of the unlimited read"
                    );
                    assert!(
                        bytes.starts_with(&copied.records),
                        "at least the whole batches a copying read returns"
                    );
                    assert_eq!(
                        read.read_whole_batches().expect("whole batches"),
                        copied.records,
                        "offset {offset} max_bytes {max_bytes} max_offset {max_offset}: \
                         the slices' whole batches are the copying read"
                    );
                    if whole.records.is_empty() {
                        assert!(bytes.is_empty());
                        continue;
                    }
                    let first = BatchHeader::parse(&whole.records)
                        .expect("header")
                        .total_size();
                    // Up to the limit, or to the end of a segment whose
                    // successor's first batch does not fit: then whole batches.
                    let limit = whole.records.len().min(max_bytes.max(first));
                    assert!(
                        bytes.len() == limit
                            || (bytes.len() < limit && validate_batches(&bytes).is_ok()),
                        "offset {offset} max_bytes {max_bytes} max_offset {max_offset}: \
                         {} bytes for a limit of {limit}",
                        bytes.len()
                    );
                    assert_eq!(
                        (read.log_start_offset, read.log_end_offset),
                        (copied.log_start_offset, copied.log_end_offset)
                    );
                }
            }
        }
    }
    // Outside [start, end] as for copying reads.
    assert!(matches!(
        log.read_slices(end + 1, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.read_slices(end, 100, i64::MAX).expect("at end").len, 0);
}

/// Slices copied after the log was truncated under them (the lock was
/// released in between) fail rather than return fewer or other bytes than
/// were named.
#[test]
fn whole_batches_of_slices_truncated_meanwhile_are_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), 0).expect("open");
    for i in 0..4 {
        produce(&mut log, 3, i, 200, 0);
    }
    let read = log.read_slices(0, usize::MAX, i64::MAX).expect("slices");
    assert_eq!(
        read.read_whole_batches().expect("whole").len(),
        read.len,
        "all four batches"
    );
    log.truncate_to(6).expect("truncate");
    assert!(matches!(read.read_whole_batches(), Err(Error::Io { .. })));
}

#[test]
fn the_log_start_moves_inside_a_segment_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("open");
    for i in 0..12i64 {
        produce(&mut log, 1, 100 * i, 300, 0); // two per segment
    }
    assert_eq!(log.segment_base_offsets(), [0, 2, 4, 6, 8, 10]);
    assert!(!log.advance_log_start(0).expect("advance"), "not a move");
    assert!(log.advance_log_start(5).expect("advance"));
    assert_eq!(log.log_start_offset(), 5);
    assert_eq!(
        log.segment_base_offsets(),
        [4, 6, 8, 10],
        "segments wholly below go"
    );
    assert!(matches!(
        log.read(4, 100, i64::MAX),
        Err(Error::OffsetOutOfRange { start: 5, .. })
    ));
    assert_eq!(base_offsets(&read_all(&log, 5)), [5, 6, 7, 8, 9, 10, 11]);
    assert!(
        !log.advance_log_start(3).expect("advance"),
        "never backwards"
    );

    drop(log);
    let mut log = PartitionLog::open(dir.path(), config(), 0).expect("reopen");
    assert_eq!(log.log_start_offset(), 5);
    // Up to the end: the active segment stays, empty of readable records.
    assert!(log.advance_log_start(100).expect("advance"));
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
    assert_eq!(log.segment_base_offsets(), [10]);
    assert!(log
        .read(12, 100, i64::MAX)
        .expect("read")
        .records
        .is_empty());
    assert_eq!(produce(&mut log, 1, 0, 300, 0).base_offset, 12);

    // A follower starting over below it forgets it.
    log.truncate_fully_and_start_at(3).expect("start over");
    assert_eq!(log.log_start_offset(), 3);
    assert!(!dir.path().join(LOG_START_OFFSET_FILE).exists());
}
