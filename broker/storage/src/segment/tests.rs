use super::*;
use crate::batch::validate_batches;
use crate::test_util::batch;

const INTERVAL: u32 = 100;

/// Appends `count` batches of 1-3 records with growing (but not always
/// increasing) timestamps to `segment`, one append each; returns their headers.
fn fill(segment: &mut Segment, count: usize) -> Vec<BatchHeader> {
    let mut headers = Vec::new();
    let mut offset = segment.next_offset();
    for i in 0..count {
        let records = (i % 3) as i32 + 1;
        // Timestamps wobble: every fourth batch goes back in time.
        let timestamp = 1000 + 10 * i as i64 - if i % 4 == 3 { 25 } else { 0 };
        let buf = batch(offset, records, timestamp, 17 * (i % 5));
        let batch_headers = validate_batches(&buf).expect("valid");
        // Written in two pieces, as a leader writes its rewritten header.
        let (head, rest) = buf.split_at(16);
        segment
            .append(&[head, rest], buf.len(), &batch_headers, INTERVAL, 0)
            .expect("append");
        offset = batch_headers[0].next_offset();
        headers.extend(batch_headers);
    }
    headers
}

fn positions(headers: &[BatchHeader]) -> Vec<u64> {
    headers
        .iter()
        .scan(0u64, |pos, h| {
            let at = *pos;
            *pos += h.total_size() as u64;
            Some(at)
        })
        .collect()
}

#[test]
fn index_entries_name_the_batch_at_their_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 100).expect("create");
    let headers = fill(&mut segment, 60);
    let starts = positions(&headers);

    let entries = segment.offset_index().entries();
    assert!(
        entries.len() > 5,
        "expected several index entries, got {}",
        entries.len()
    );
    for entry in entries {
        let i = starts
            .iter()
            .position(|&p| p == u64::from(entry.position))
            .expect("entry at a batch start");
        assert_eq!(
            headers[i].last_offset(),
            100 + i64::from(entry.relative_offset)
        );
    }
    for pair in entries.windows(2) {
        // Entries are about INTERVAL bytes apart; batches here are at most 129 bytes.
        let gap = pair[1].position - pair[0].position;
        assert!(
            (u64::from(INTERVAL)..u64::from(INTERVAL) + 130).contains(&u64::from(gap)),
            "gap {gap}"
        );
    }
    let time_entries = segment.time_index().entries();
    assert!(!time_entries.is_empty());
    assert!(time_entries
        .windows(2)
        .all(|p| p[0].timestamp < p[1].timestamp));
}

#[test]
fn find_position_returns_the_batch_holding_each_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 0).expect("create");
    let headers = fill(&mut segment, 40);
    let starts = positions(&headers);
    for (header, &start) in headers.iter().zip(&starts) {
        for offset in header.base_offset..=header.last_offset() {
            let (pos, found) = segment
                .find_position(offset)
                .expect("find")
                .expect("present");
            assert_eq!((pos, found), (start, *header), "offset {offset}");
        }
    }
    assert_eq!(
        segment.find_position(segment.next_offset()).expect("find"),
        None
    );
}

#[test]
fn find_by_timestamp_returns_first_batch_reaching_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 0).expect("create");
    let headers = fill(&mut segment, 50);
    let max = headers
        .iter()
        .map(|h| h.max_timestamp)
        .max()
        .expect("batches");
    assert_eq!(segment.max_timestamp().map(|(ts, _)| ts), Some(max));
    for target in 900..=max + 1 {
        let expected = headers.iter().find(|h| h.max_timestamp >= target).copied();
        let found = segment
            .find_by_timestamp(target)
            .expect("find")
            .map(|(_, h)| h);
        assert_eq!(found, expected, "timestamp {target}");
    }
}

#[test]
fn recovery_cuts_at_a_corrupt_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 0).expect("create");
    let headers = fill(&mut segment, 20);
    let starts = positions(&headers);
    segment.flush().expect("flush");
    drop(segment);

    // Corrupt one byte in the records of batch 12.
    let path = dir.path().join(file_name(0, LOG_EXTENSION));
    let mut bytes = std::fs::read(&path).expect("read");
    let at = starts[12] as usize + headers[12].total_size() - 1;
    bytes[at] ^= 0x55;
    std::fs::write(&path, &bytes).expect("write");

    let (segment, dropped) = Segment::open(dir.path(), 0, true, INTERVAL).expect("open");
    assert_eq!(dropped, bytes.len() as u64 - starts[12]);
    assert_eq!(segment.size(), starts[12]);
    assert_eq!(segment.next_offset(), headers[12].base_offset);
    assert!(segment
        .offset_index()
        .entries()
        .iter()
        .all(|e| u64::from(e.position) < starts[12]));
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), starts[12]);
}

#[test]
fn damaged_or_missing_indexes_are_rebuilt_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 7).expect("create");
    fill(&mut segment, 30);
    segment.seal().expect("seal");
    let offsets = segment.offset_index().entries().to_vec();
    let times = segment.time_index().entries().to_vec();
    let state = (
        segment.next_offset(),
        segment.max_timestamp(),
        segment.size(),
    );
    drop(segment);

    let index = dir.path().join(file_name(7, INDEX_EXTENSION));
    let time_index = dir.path().join(file_name(7, TIME_INDEX_EXTENSION));

    // Intact files load as they are.
    let (segment, _) = Segment::open(dir.path(), 7, false, INTERVAL).expect("open");
    assert_eq!(
        (
            segment.next_offset(),
            segment.max_timestamp(),
            segment.size()
        ),
        state
    );
    drop(segment);

    // A missing offset index.
    std::fs::remove_file(&index).expect("remove");
    let (segment, dropped) = Segment::open(dir.path(), 7, false, INTERVAL).expect("open");
    assert_eq!(dropped, 0);
    assert_eq!(segment.offset_index().entries(), offsets);
    assert_eq!(
        (
            segment.next_offset(),
            segment.max_timestamp(),
            segment.size()
        ),
        state
    );
    drop(segment);

    // A time index with a torn entry.
    let mut bytes = std::fs::read(&time_index).expect("read");
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&time_index, bytes).expect("write");
    let (segment, _) = Segment::open(dir.path(), 7, false, INTERVAL).expect("open");
    // The rebuilt time index lacks the final entry sealing added, but knows
    // the same maximum.
    assert!(times.starts_with(segment.time_index().entries()));
    assert_eq!(
        (
            segment.next_offset(),
            segment.max_timestamp(),
            segment.size()
        ),
        state
    );
    drop(segment);

    // An offset index pointing into the middle of a batch.
    let mut bytes = std::fs::read(&index).expect("read");
    let last = bytes.len() - 1;
    bytes[last] = bytes[last].wrapping_add(1);
    std::fs::write(&index, bytes).expect("write");
    let (segment, _) = Segment::open(dir.path(), 7, false, INTERVAL).expect("open");
    assert_eq!(segment.offset_index().entries(), offsets);
    assert_eq!(
        (
            segment.next_offset(),
            segment.max_timestamp(),
            segment.size()
        ),
        state
    );
}

#[test]
fn a_log_cut_behind_its_index_is_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 0).expect("create");
    let headers = fill(&mut segment, 30);
    let starts = positions(&headers);
    segment.seal().expect("seal");
    let entry = *segment.offset_index().last().expect("an entry");
    drop(segment);

    // The log ends exactly where the last index entry points.
    let cut = u64::from(entry.position);
    let file = OpenOptions::new()
        .write(true)
        .open(dir.path().join(file_name(0, LOG_EXTENSION)))
        .expect("open");
    file.set_len(cut).expect("cut");
    drop(file);

    let (segment, _) = Segment::open(dir.path(), 0, false, INTERVAL).expect("open");
    let kept = starts
        .iter()
        .position(|&p| p == cut)
        .expect("cut at a batch start");
    assert_eq!(segment.size(), cut);
    assert_eq!(segment.next_offset(), headers[kept].base_offset);
    let max = headers[..kept].iter().map(|h| h.max_timestamp).max();
    assert_eq!(segment.max_timestamp().map(|(ts, _)| ts), max);
    assert!(segment
        .offset_index()
        .entries()
        .iter()
        .all(|e| u64::from(e.position) < cut));
}

#[test]
fn truncate_at_trims_log_and_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut segment = Segment::create(dir.path(), 0).expect("create");
    let headers = fill(&mut segment, 40);
    let starts = positions(&headers);
    segment
        .truncate_at(starts[25], headers[25].base_offset)
        .expect("truncate");
    assert_eq!(segment.size(), starts[25]);
    assert_eq!(segment.next_offset(), headers[25].base_offset);
    let max = headers[..25].iter().map(|h| h.max_timestamp).max();
    assert_eq!(segment.max_timestamp().map(|(ts, _)| ts), max);
    assert!(segment
        .offset_index()
        .entries()
        .iter()
        .all(|e| u64::from(e.position) < starts[25]));
    // Appends continue where the cut was.
    let more = fill(&mut segment, 3);
    assert_eq!(more[0].base_offset, headers[25].base_offset);
    assert_eq!(
        segment
            .find_position(more[2].base_offset)
            .expect("find")
            .map(|(_, h)| h),
        Some(more[2])
    );
}
