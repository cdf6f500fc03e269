//! The metadata log: openraft's storage suite, then recovery: reopen after
//! every kind of record, a tail cut at every byte, a corrupt tail, compaction.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload};
use tempfile::TempDir;

use super::*;
use crate::cluster::MetadataCommand;
use crate::controller::state_machine::StateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let io = |e: ControllerError| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, io::Error::other(e))
        };
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let log = LogStore::open(dir.path()).map_err(io)?;
        let (state_machine, _) = StateMachine::open(dir.path()).map_err(io)?;
        Ok((dir, log, state_machine))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("the store passes openraft's suite");
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(MetadataCommand::AllocateProducerIds {
            count: index as i64,
        }),
    }
}

/// What a journal holds, comparable: vote, committed, purged, entries.
type JournalState = (
    Option<Vote<u64>>,
    Option<LogId<u64>>,
    Option<LogId<u64>>,
    Vec<LogId<u64>>,
);

fn state(j: &Journal) -> JournalState {
    (
        j.vote,
        j.committed,
        j.purged,
        j.entries.values().map(|e| e.log_id).collect(),
    )
}

fn ids(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<LogId<u64>> {
    indexes.map(|i| log_id(term, i)).collect()
}

#[test]
fn every_record_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = Journal::open(dir.path()).expect("open");
    assert_eq!(state(&journal), (None, None, None, vec![]));
    journal.save_vote(&Vote::new(1, 1)).expect("vote");
    journal
        .append((0..=5).map(|i| entry(1, i)).collect())
        .expect("append");
    journal
        .save_committed(Some(log_id(1, 3)))
        .expect("committed");
    // A new leader overwrites index 5 on: truncate, then append its entries.
    journal.save_vote(&Vote::new(2, 2)).expect("vote");
    journal.truncate(5).expect("truncate");
    journal
        .append((5..=7).map(|i| entry(2, i)).collect())
        .expect("append");
    journal.purge(log_id(1, 2)).expect("purge");
    let expected = (
        Some(Vote::new(2, 2)),
        Some(log_id(1, 3)),
        Some(log_id(1, 2)),
        [ids(1, 3..=4), ids(2, 5..=7)].concat(),
    );
    assert_eq!(state(&journal), expected);
    drop(journal);
    let reopened = Journal::open(dir.path()).expect("reopen");
    assert_eq!(state(&reopened), expected);
}

#[test]
fn an_entry_at_an_existing_index_replaces_the_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut journal = Journal::open(dir.path()).expect("open");
    journal
        .append((1..=5).map(|i| entry(1, i)).collect())
        .expect("append");
    journal.append(vec![entry(2, 3)]).expect("append");
    let expected = [ids(1, 1..=2), ids(2, 3..=3)].concat();
    assert_eq!(state(&journal).3, expected);
    drop(journal);
    assert_eq!(
        state(&Journal::open(dir.path()).expect("reopen")).3,
        expected
    );
}

#[test]
fn a_torn_tail_is_cut_at_every_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL_FILE);
    let mut journal = Journal::open(dir.path()).expect("open");
    journal.save_vote(&Vote::new(1, 1)).expect("vote");
    journal
        .append((1..=3).map(|i| entry(1, i)).collect())
        .expect("append");
    let before = state(&journal);
    let whole = std::fs::metadata(&path).expect("stat").len();
    journal.append(vec![entry(1, 4)]).expect("append");
    let after = state(&journal);
    drop(journal);
    let full = std::fs::read(&path).expect("read");
    for cut in whole..full.len() as u64 {
        let torn = tempfile::tempdir().expect("temp dir");
        let torn_path = torn.path().join(JOURNAL_FILE);
        std::fs::write(&torn_path, &full[..cut as usize]).expect("write");
        let mut journal = Journal::open(torn.path()).expect("open a torn journal");
        assert_eq!(state(&journal), before, "cut at byte {cut}");
        assert_eq!(
            std::fs::metadata(&torn_path).expect("stat").len(),
            whole,
            "the torn record is cut off (cut at byte {cut})"
        );
        // Appends after recovery land after the last whole record.
        journal.append(vec![entry(2, 4)]).expect("append");
        drop(journal);
        let reopened = Journal::open(torn.path()).expect("reopen");
        assert_eq!(
            state(&reopened).3,
            [ids(1, 1..=3), ids(2, 4..=4)].concat(),
            "cut at byte {cut}"
        );
    }
    let intact = Journal::open(dir.path()).expect("reopen");
    assert_eq!(state(&intact), after);
}

#[test]
fn a_corrupt_tail_record_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL_FILE);
    let mut journal = Journal::open(dir.path()).expect("open");
    journal
        .append((1..=3).map(|i| entry(1, i)).collect())
        .expect("append");
    let whole = std::fs::metadata(&path).expect("stat").len() as usize;
    journal.append(vec![entry(1, 4)]).expect("append");
    drop(journal);
    let mut bytes = std::fs::read(&path).expect("read");
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write");
    let journal = Journal::open(dir.path()).expect("open");
    assert_eq!(state(&journal).3, ids(1, 1..=3));
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len() as usize,
        whole
    );
}

#[test]
fn a_whole_record_that_does_not_decode_stops_the_open_without_cutting_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL_FILE);
    let mut journal = Journal::open(dir.path()).expect("open");
    journal
        .append((1..=3).map(|i| entry(1, i)).collect())
        .expect("append");
    drop(journal);
    // A record a newer version might write: framed and checksummed, but a
    // kind this version does not know.
    let payload = br#"{"FromTheFuture":{"x":1}}"#;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(&path, &bytes).expect("write");
    let error = Journal::open(dir.path()).expect_err("refused").to_string();
    assert!(error.contains("newer Runnel"), "{error}");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "nothing cut off"
    );
}

#[test]
fn dead_records_are_compacted_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(JOURNAL_FILE);
    let mut journal = Journal::open(dir.path()).expect("open");
    journal.save_vote(&Vote::new(3, 1)).expect("vote");
    let mut grew_to = 0;
    for i in 1..=1500 {
        journal.append(vec![entry(3, i)]).expect("append");
        journal
            .save_committed(Some(log_id(3, i)))
            .expect("committed");
        if i % 100 == 0 {
            journal.purge(log_id(3, i - 50)).expect("purge");
        }
        grew_to = grew_to.max(std::fs::metadata(&path).expect("stat").len());
    }
    let expected = state(&journal);
    assert_eq!(expected.3, ids(3, 1451..=1500));
    let size = std::fs::metadata(&path).expect("stat").len();
    assert!(
        size < grew_to,
        "the journal was rewritten: {size} bytes now, at most {grew_to}"
    );
    assert!(journal.records <= 2 * journal.live_records() + COMPACT_SLACK);
    drop(journal);
    assert_eq!(state(&Journal::open(dir.path()).expect("reopen")), expected);
}
