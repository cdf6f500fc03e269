//! Cases mirror Kafka's `LeaderEpochFileCacheTest` where the semantics are
//! the same; where they differ (an epoch below the latest is ignored here)
//! the test says so.

use super::*;

/// An empty cache (with its checkpoint written) in `dir`.
fn empty(dir: &Path) -> LeaderEpochCache {
    LeaderEpochCache::rebuild(dir, []).expect("rebuild")
}

/// A cache holding `pairs` assigned in order.
fn cache_with(dir: &Path, pairs: &[(i32, i64)]) -> LeaderEpochCache {
    let mut cache = empty(dir);
    for &(epoch, start_offset) in pairs {
        cache.assign(epoch, start_offset).expect("assign");
    }
    cache
}

fn pairs(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
    cache
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

fn file_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read checkpoint")
}

#[test]
fn assign_adds_newer_epochs_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cache = empty(dir.path());
    assert_eq!(cache.latest_epoch(), None);
    assert!(cache.is_empty());

    cache.assign(2, 10).expect("assign");
    assert_eq!(cache.latest_epoch(), Some(2));
    assert_eq!(cache.end_offset_for(2, 11), Some((2, 11)));

    // The same epoch again, at a later or an earlier offset: a no-op (Kafka
    // would move the start back for an earlier offset).
    cache.assign(2, 12).expect("assign");
    cache.assign(2, 7).expect("assign");
    assert_eq!(pairs(&cache), [(2, 10)]);

    // An older epoch is ignored (Kafka would drop epoch 3 for it).
    cache.assign(3, 12).expect("assign");
    cache.assign(1, 13).expect("assign");
    assert_eq!(pairs(&cache), [(2, 10), (3, 12)]);
    assert_eq!(cache.latest_epoch(), Some(3));

    // "No epoch" (-1) and negative offsets are ignored.
    cache.assign(-1, 20).expect("assign");
    cache.assign(9, -1).expect("assign");
    assert_eq!(pairs(&cache), [(2, 10), (3, 12)]);
}

#[test]
fn assign_drops_entries_it_conflicts_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A new epoch at the same offset replaces the one that never appended.
    let mut cache = cache_with(dir.path(), &[(2, 6)]);
    cache.assign(3, 6).expect("assign");
    assert_eq!(pairs(&cache), [(3, 6)]);

    // An earlier offset drops every entry starting at or after it.
    let mut cache = cache_with(dir.path(), &[(1, 0), (2, 6), (3, 9), (4, 12)]);
    cache.assign(5, 6).expect("assign");
    assert_eq!(pairs(&cache), [(1, 0), (5, 6)]);
    cache.assign(6, 5).expect("assign");
    assert_eq!(pairs(&cache), [(1, 0), (6, 5)]);
}

#[test]
fn end_offset_for_follows_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");

    // Nothing known, or the undefined epoch asked for: undefined.
    let cache = empty(dir.path());
    assert_eq!(cache.end_offset_for(0, 0), None);
    assert_eq!(cache.end_offset_for(-1, 73), None);

    // The latest epoch: the log end offset, also for a single entry.
    let cache = cache_with(dir.path(), &[(2, 6)]);
    assert_eq!(cache.end_offset_for(2, 7), Some((2, 7)));
    let cache = cache_with(dir.path(), &[(2, 5), (3, 6), (4, 7)]);
    assert_eq!(cache.end_offset_for(4, 100), Some((4, 100)));
    assert_eq!(cache.end_offset_for(-1, 100), None);

    // An older epoch: the start of the next one.
    let cache = cache_with(
        dir.path(),
        &[(1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16)],
    );
    assert_eq!(cache.end_offset_for(2, 17), Some((2, 15)));
    assert_eq!(cache.end_offset_for(1, 17), Some((1, 13)));

    // Between known epochs: the largest below it, ending where the next starts.
    let cache = cache_with(dir.path(), &[(0, 10), (2, 13), (4, 17)]);
    assert_eq!(cache.end_offset_for(1, 0), Some((0, 13)));
    assert_eq!(cache.end_offset_for(2, 0), Some((2, 17)));
    assert_eq!(cache.end_offset_for(3, 0), Some((2, 17)));

    // Below the first entry: the requested epoch and the first start offset.
    let cache = cache_with(dir.path(), &[(5, 11), (6, 12), (7, 13)]);
    assert_eq!(cache.end_offset_for(4, 0), Some((4, 11)));
    assert_eq!(cache.end_offset_for(0, 0), Some((0, 11)));

    // Above the latest: undefined.
    let cache = cache_with(dir.path(), &[(2, 100)]);
    assert_eq!(cache.end_offset_for(3, 0), None);
    let cache = cache_with(dir.path(), &[(5, 11), (6, 12), (7, 13)]);
    assert_eq!(cache.end_offset_for(8, 20), None);
}

#[test]
fn epoch_for_offset_names_the_covering_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(empty(dir.path()).epoch_for_offset(0), None);
    let cache = cache_with(dir.path(), &[(1, 10), (2, 20), (3, 30)]);
    let found: Vec<_> = [0, 9, 10, 15, 19, 20, 25, 30, 50]
        .into_iter()
        .map(|offset| cache.epoch_for_offset(offset))
        .collect();
    assert_eq!(
        found,
        [
            None,
            None,
            Some(1),
            Some(1),
            Some(1),
            Some(2),
            Some(2),
            Some(3),
            Some(3)
        ]
    );
}

#[test]
fn truncate_from_end_drops_entries_at_or_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = [(2, 6), (3, 8), (4, 11)];

    let mut cache = cache_with(dir.path(), &entries);
    cache.truncate_from_end(11).expect("truncate");
    assert_eq!(pairs(&cache), [(2, 6), (3, 8)]);
    assert_eq!(cache.end_offset_for(3, 11), Some((3, 11)));

    let mut cache = cache_with(dir.path(), &entries);
    cache.truncate_from_end(9).expect("truncate");
    assert_eq!(pairs(&cache), [(2, 6), (3, 8)]);

    let mut cache = cache_with(dir.path(), &entries);
    cache.truncate_from_end(12).expect("truncate");
    assert_eq!(pairs(&cache), entries);

    let mut cache = cache_with(dir.path(), &entries);
    cache.truncate_from_end(6).expect("truncate");
    assert!(cache.is_empty());
    assert_eq!(file_text(dir.path()), "0\n0\n");
}

#[test]
fn truncate_from_start_moves_the_covering_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = [(2, 6), (3, 8), (4, 11)];
    let cases: [(i64, &[(i32, i64)]); 6] = [
        // Before or at the first start: nothing to do.
        (1, &entries),
        (6, &entries),
        // Between epochs: the covering entry starts there instead.
        (9, &[(3, 9), (4, 11)]),
        // On an entry's start: the ones before go.
        (8, &[(3, 8), (4, 11)]),
        (11, &[(4, 11)]),
        // Past the latest start: the latest entry moves up.
        (15, &[(4, 15)]),
    ];
    for (start, expected) in cases {
        let mut cache = cache_with(dir.path(), &entries);
        cache.truncate_from_start(start).expect("truncate");
        assert_eq!(pairs(&cache), expected, "start {start}");
        let reloaded = LeaderEpochCache::load(dir.path())
            .expect("load")
            .expect("valid");
        assert_eq!(pairs(&reloaded), expected, "start {start}");
    }

    let mut cache = empty(dir.path());
    cache.truncate_from_start(5).expect("truncate");
    assert!(cache.is_empty());
}

#[test]
fn clear_removes_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cache = cache_with(dir.path(), &[(2, 6), (3, 8)]);
    cache.clear().expect("clear");
    assert!(cache.is_empty());
    assert_eq!(cache.latest_epoch(), None);
    assert!(LeaderEpochCache::load(dir.path())
        .expect("load")
        .expect("valid")
        .is_empty());
    // A fresh start after clearing, even at an earlier epoch.
    cache.assign(1, 100).expect("assign");
    assert_eq!(pairs(&cache), [(1, 100)]);
}

#[test]
fn persists_in_kafkas_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_with(dir.path(), &[(0, 0), (3, 100), (5, 250)]);
    assert_eq!(file_text(dir.path()), "0\n3\n0 0\n3 100\n5 250\n");
    // No close: every change is already durable. A temporary file left by
    // a crash in the middle of a write is not read.
    drop(cache);
    std::fs::write(
        dir.path()
            .join(format!("{LEADER_EPOCH_CHECKPOINT_FILE}.tmp")),
        "0\n9\n1 2",
    )
    .expect("write");
    let cache = LeaderEpochCache::load(dir.path())
        .expect("load")
        .expect("valid");
    assert_eq!(pairs(&cache), [(0, 0), (3, 100), (5, 250)]);
}

#[test]
fn writes_only_on_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    let mut cache = cache_with(dir.path(), &[(2, 6), (3, 8)]);
    // With the file gone, a no-op leaves it gone; a change writes it.
    std::fs::remove_file(&path).expect("remove");
    cache.assign(3, 10).expect("assign");
    cache.assign(1, 10).expect("assign");
    cache.truncate_from_end(9).expect("truncate");
    cache.truncate_from_start(6).expect("truncate");
    assert!(!path.exists());
    cache.assign(4, 10).expect("assign");
    assert_eq!(file_text(dir.path()), "0\n3\n2 6\n3 8\n4 10\n");
}

#[test]
fn a_failed_write_changes_nothing() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("partition");
    std::fs::create_dir(&dir).expect("mkdir");
    let mut cache = cache_with(&dir, &[(2, 6)]);
    std::fs::remove_dir_all(&dir).expect("remove dir");
    assert!(matches!(cache.assign(3, 8), Err(Error::Io { .. })));
    assert!(matches!(cache.clear(), Err(Error::Io { .. })));
    assert_eq!(pairs(&cache), [(2, 6)]);
}

#[test]
fn malformed_checkpoints_are_not_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(LeaderEpochCache::load(dir.path()).expect("load").is_none());
    let path = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
    for text in [
        "",
        "1\n0\n",
        "0\n2\n1 5\n",
        "0\n1\n1 5\n2 6\n",
        "0\n1\n1\n",
        "0\n1\n1 5 7\n",
        "0\n1\nx 5\n",
        "0\n1\n-1 5\n",
        "0\n2\n1 5\n1 6\n",
        "0\n2\n1 5\n2 5\n",
        "0\n2\n2 5\n1 6\n",
    ] {
        std::fs::write(&path, text).expect("write");
        assert!(
            LeaderEpochCache::load(dir.path()).expect("load").is_none(),
            "{text:?}"
        );
    }
    std::fs::write(&path, "0\n2\n1 5\n2 6\n\n").expect("write");
    let cache = LeaderEpochCache::load(dir.path())
        .expect("load")
        .expect("a trailing blank line is fine");
    assert_eq!(pairs(&cache), [(1, 5), (2, 6)]);
}

#[test]
fn rebuild_applies_the_assign_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = LeaderEpochCache::rebuild(
        dir.path(),
        [(-1, 0), (1, 3), (1, 5), (3, 8), (2, 9), (4, 12)],
    )
    .expect("rebuild");
    assert_eq!(pairs(&cache), [(1, 3), (3, 8), (4, 12)]);
    assert_eq!(file_text(dir.path()), "0\n3\n1 3\n3 8\n4 12\n");
}
