//! The cleaner: batch filtering in every codec, keyless produce refusal, and
//! whole passes over a partition (latest per key at its offset, tombstones,
//! transactions, the dirty ratio).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use uuid::Uuid;

use super::*;
use crate::cluster::{Assignment, ClusterImage, MetadataCommand};
use crate::producers::Marker;

/// A batch at `base_offset` of `(key, value)` records, one offset each,
/// compressed with `compression`, for producer 7 at sequence 0.
fn batch(
    base_offset: i64,
    entries: &[(Option<&str>, Option<&str>)],
    compression: Compression,
) -> Vec<u8> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: base_offset + i as i64,
            sequence: i as i32,
            timestamp: 1_000 + i as i64,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encodes");
    buf.to_vec()
}

/// The (offset, key, value) of every record of `bytes`.
fn decoded(bytes: &[u8]) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: Option<Bytes>| b.map(|b| String::from_utf8(b.to_vec()).expect("utf-8"));
    let mut buf = Bytes::copy_from_slice(bytes);
    RecordBatchDecoder::decode_all(&mut buf)
        .expect("decodes")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| (r.offset, text(r.key), text(r.value)))
        .collect()
}

#[test]
fn a_filtered_batch_keeps_its_offsets_in_every_codec() {
    let entries = [
        (Some("a"), Some("1")),
        (Some("b"), Some("2")),
        (Some("a"), Some("3")),
        (Some("c"), None),
        (Some("b"), Some("5")),
    ];
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let original = batch(100, &entries, compression);
        let header = BatchHeader::parse(&original).expect("header");
        let kept = filter_batch(&original, &header, Rewrite::default(), |r| {
            r.offset == 102 || r.offset == 103
        })
        .expect("filters");
        let Kept::Some(copy) = kept else {
            panic!("{compression:?}: expected a copy, got {kept:?}");
        };
        let headers = runnel_storage::validate_batches(&copy).expect("a valid batch, CRC included");
        let new = headers[0];
        assert_eq!(new.base_offset, 100, "{compression:?}");
        assert_eq!(
            new.last_offset_delta, 4,
            "{compression:?}: the last offset stays"
        );
        assert_eq!(new.records_count, 2, "{compression:?}");
        assert_eq!(
            new.attributes & 7,
            header.attributes & 7,
            "{compression:?}: same codec"
        );
        assert_eq!(
            (new.producer_id, new.base_sequence),
            (7, 0),
            "{compression:?}: the producer's sequence numbers stay"
        );
        assert_eq!(
            decoded(&copy),
            [
                (102, Some("a".into()), Some("3".into())),
                (103, Some("c".into()), None)
            ],
            "{compression:?}"
        );
        assert!(matches!(
            filter_batch(&original, &header, Rewrite::default(), |_| true).expect("filters"),
            Kept::Whole
        ));
        assert!(matches!(
            filter_batch(&original, &header, Rewrite::default(), |_| false).expect("filters"),
            Kept::Nothing
        ));

        // A batch keeping a tombstone gets a delete horizon; its records
        // keep their timestamps.
        let stamp = Rewrite {
            horizon: Some(9_999_999),
            keep_empty: false,
        };
        let Kept::Some(stamped) =
            filter_batch(&original, &header, stamp, |r| r.offset >= 102).expect("filters")
        else {
            panic!("{compression:?}: expected a copy");
        };
        let new = runnel_storage::validate_batches(&stamped).expect("valid")[0];
        assert_eq!(delete_horizon(&new), Some(9_999_999), "{compression:?}");
        let stamps: Vec<(i64, i64)> = {
            let mut buf = Bytes::from(stamped.clone());
            let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
            set.records
                .iter()
                .map(|r| (r.offset, r.timestamp))
                .collect()
        };
        assert_eq!(
            stamps,
            [(102, 1_002), (103, 1_003), (104, 1_004)],
            "{compression:?}"
        );
        // A batch with a horizon already, or keeping no tombstone, gets none.
        let later = Rewrite {
            horizon: Some(20_000_000),
            keep_empty: false,
        };
        assert!(matches!(
            filter_batch(&stamped, &new, later, |_| true).expect("filters"),
            Kept::Whole
        ));
        assert!(matches!(
            filter_batch(&original, &header, stamp, |r| r.offset != 103).expect("filters"),
            Kept::Some(ref b) if delete_horizon(&BatchHeader::parse(b).expect("header")).is_none()
        ));

        // A producer's last batch stays as an empty one.
        let keep_empty = Rewrite {
            horizon: None,
            keep_empty: true,
        };
        let Kept::Some(empty) =
            filter_batch(&original, &header, keep_empty, |_| false).expect("filters")
        else {
            panic!("{compression:?}: expected an empty batch");
        };
        let new = runnel_storage::validate_batches(&empty).expect("valid")[0];
        assert_eq!(
            (new.base_offset, new.last_offset_delta, new.records_count),
            (100, 4, 0)
        );
        assert_eq!(
            (new.producer_id, new.base_sequence, new.attributes & 7),
            (7, 0, 0)
        );
        assert!(decoded(&empty).is_empty());
    }
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    for compression in [Compression::None, Compression::Lz4] {
        let keyed = batch(0, &[(Some("a"), Some("1"))], compression);
        require_keys(&keyed, "t", 0).expect("keyed records are welcome");
        let keyless = batch(0, &[(Some("a"), Some("1")), (None, Some("2"))], compression);
        let error = require_keys(&keyless, "t", 3).expect_err("refused");
        assert_eq!(error.kafka(), ResponseError::InvalidRecord);
        assert_eq!(
            error.to_string(),
            "Compacted topic cannot accept message without key in topic partition t-3."
        );
    }
}

#[test]
fn garbage_records_are_an_error_not_a_panic() {
    let mut original = batch(0, &[(Some("key"), Some("value"))], Compression::None);
    let header = BatchHeader::parse(&original).expect("header");
    original.truncate(BATCH_HEADER_LEN + 3);
    assert!(filter_batch(&original, &header, Rewrite::default(), |_| true).is_err());
    assert!(parse_records(&[0x7f], &header).is_err());
}

/// A one-broker table holding topic "c" (one partition, led here) with
/// `configs`; every append to it rolls a segment.
fn compacted(dir: &Path, configs: &[(&str, &str)]) -> TopicTable {
    let mut image = ClusterImage::with_broker_1();
    let mut all: BTreeMap<String, String> = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "100"),
        ("min.cleanable.dirty.ratio", "0"),
    ]
    .iter()
    .chain(configs)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    all.retain(|_, v| !v.is_empty());
    image.apply(
        2,
        &MetadataCommand::CreateTopic {
            name: "c".into(),
            id: Uuid::from_u128(9),
            configs: all,
            assignment: Assignment::Explicit(vec![vec![1]]),
        },
    );
    let settings = Arc::new(BrokerSettings::from_pairs(&[]).expect("valid"));
    let table = TopicTable::open(dir, settings, 1).expect("open");
    table.sync(&Arc::new(image));
    table
}

/// Appends one record at timestamp `ts`; its offset.
fn put(table: &TopicTable, key: &str, value: Option<&str>, ts: i64) -> i64 {
    let p = table.partition("c", 0).expect("partition");
    let records = crate::records::encode_batch(
        vec![(
            Some(Bytes::copy_from_slice(key.as_bytes())),
            value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        )],
        ts,
        None,
    )
    .expect("encodes");
    table
        .append(&p, &records, None)
        .expect("append")
        .base_offset
}

/// (offset, key, value) of everything in the log.
fn contents(table: &TopicTable) -> Vec<(i64, Option<String>, Option<String>)> {
    let p = table.partition("c", 0).expect("partition");
    let read = p
        .with_log(|log| Ok(log.read(log.log_start_offset(), usize::MAX, i64::MAX)?))
        .expect("read");
    decoded(&read.records)
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> (i64, Option<String>, Option<String>) {
    (offset, Some(key.into()), value.map(Into::into))
}

/// A transaction of `producer_id` (epoch 0) on "c": one record of key "k"
/// at timestamp `ts`, then its marker.
fn transaction(table: &TopicTable, producer_id: i64, value: &str, marker: Marker, ts: i64) {
    let p = table.partition("c", 0).expect("partition");
    let data = crate::records::encode_transactional_batch(
        vec![(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from(value.to_string())),
        )],
        ts,
        producer_id,
        0,
    )
    .expect("encodes");
    table.append(&p, &data, None).expect("append");
    table
        .append_marker(&p, producer_id, 0, marker, 0)
        .expect("marker");
}

#[test]
fn a_pass_keeps_the_latest_record_of_each_key_and_tombstones_go_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(dir.path(), &[("delete.retention.ms", "1000")]);
    let now = 10_000;
    for (key, value) in [
        ("k1", Some("a")),
        ("k2", Some("b")),
        ("k1", Some("c")),
        ("k3", Some("d")),
        ("k2", None),
        ("k1", Some("e")),
        ("k9", Some("active")),
    ] {
        put(&table, key, value, now);
    }
    let p = table.partition("c", 0).expect("partition");
    let segments = || p.with_log(|log| Ok(log.segment_count())).expect("log");
    assert_eq!(segments(), 7, "one segment per record");

    let stats = clean_all(&table, now);
    assert_eq!((stats.passes, stats.failures), (1, 0));
    assert!(stats.bytes_removed > 0, "{stats:?}");
    assert_eq!(
        contents(&table),
        [
            kv(3, "k3", Some("d")),
            kv(4, "k2", None),
            kv(5, "k1", Some("e")),
            kv(6, "k9", Some("active"))
        ],
        "the latest of each key at its own offset; a fresh tombstone stays"
    );
    assert_eq!(
        segments(),
        7,
        "each segment was cleaned alone (full ones do not merge)"
    );
    assert_eq!(p.with_log(|log| Ok(log.cleaner_offset())).expect("log"), 6);
    assert_eq!(
        p.with_log(|log| Ok(log.log_start_offset())).expect("log"),
        0
    );

    // Nothing new: a pass does nothing, even long after.
    assert_eq!(clean_all(&table, now + 5_000), CleanerStats::default());
    assert_eq!(contents(&table).len(), 4);

    // New records make the log dirty again; the tombstone, cleaned before
    // and older than delete.retention.ms, goes now, and k9 is superseded.
    put(&table, "k9", Some("newer"), now);
    put(&table, "k4", Some("f"), now);
    clean_all(&table, now + 5_000);
    assert_eq!(
        contents(&table),
        [
            kv(3, "k3", Some("d")),
            kv(5, "k1", Some("e")),
            kv(7, "k9", Some("newer")),
            kv(8, "k4", Some("f"))
        ]
    );
    assert!(
        segments() < 9,
        "segments emptied by the first pass were merged into their neighbours: {}",
        segments()
    );

    // The log reads the same after a restart, and appends go on at the end.
    table.close();
    drop(table);
    let table = compacted(dir.path(), &[("delete.retention.ms", "1000")]);
    assert_eq!(contents(&table).len(), 4);
    assert_eq!(put(&table, "k5", Some("g"), now), 9);
}

#[test]
fn a_pass_waits_for_the_dirty_ratio_and_the_compaction_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(
        dir.path(),
        &[
            ("min.cleanable.dirty.ratio", "0.9"),
            ("min.compaction.lag.ms", "1000"),
        ],
    );
    let now = 100_000;
    for i in 0..5 {
        put(&table, "k", Some(&i.to_string()), now);
    }
    clean_all(&table, now + 500);
    assert_eq!(
        contents(&table).len(),
        5,
        "records younger than min.compaction.lag.ms stay"
    );
    clean_all(&table, now + 2_000);
    assert_eq!(
        contents(&table),
        [kv(3, "k", Some("3")), kv(4, "k", Some("4"))],
        "all dirty: cleaned up to the active segment"
    );
    // One dirty segment against a clean one is a ratio of 0.5 < 0.9.
    put(&table, "k", Some("5"), now);
    clean_all(&table, now + 2_000);
    assert_eq!(contents(&table).len(), 3, "below min.cleanable.dirty.ratio");
}

#[test]
fn aborted_transactions_go_and_markers_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(dir.path(), &[]);
    // Markers carry the wall clock.
    let now = crate::clock::now_ms() + 1_000;
    put(&table, "k", Some("committed-before"), now);
    let txn = |producer_id, value, marker| transaction(&table, producer_id, value, marker, now);
    txn(5, "aborted", Marker::Abort);
    put(&table, "other", Some("x"), now);
    put(&table, "active", Some("y"), now);
    clean_all(&table, now);
    let values: Vec<_> = contents(&table)
        .into_iter()
        .map(|(offset, _, value)| (offset, value))
        .collect();
    assert_eq!(
        values,
        [
            (0, Some("committed-before".to_string())),
            (
                2,
                Some(String::from_utf8(vec![0, 0, 0, 0, 0, 0]).expect("marker value"))
            ),
            (3, Some("x".into())),
            (4, Some("y".into()))
        ],
        "the aborted record neither stays nor hides the committed one; its marker stays"
    );

    txn(6, "committed-later", Marker::Commit);
    put(&table, "active2", Some("z"), now);
    clean_all(&table, now);
    let kept: Vec<_> = contents(&table)
        .into_iter()
        .filter_map(|(_, key, value)| (key.as_deref() == Some("k")).then_some(value))
        .collect();
    assert_eq!(kept, [Some("committed-later".to_string())]);
}

#[test]
fn a_replay_reads_a_batch_that_lost_its_last_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(dir.path(), &[("segment.bytes", "200")]);
    let p = table.partition("c", 0).expect("partition");
    let now = 10_000;
    let two = crate::records::encode_batch(
        vec![
            (
                Some(Bytes::from_static(b"k1")),
                Some(Bytes::from_static(b"a")),
            ),
            (
                Some(Bytes::from_static(b"k2")),
                Some(Bytes::from_static(b"b")),
            ),
        ],
        now,
        None,
    )
    .expect("encodes");
    table.append(&p, &two, None).expect("append");
    put(&table, "k2", Some("c"), now);
    put(&table, "k3", Some("filler-1"), now);
    put(&table, "k4", Some("filler-2"), now);
    put(&table, "k5", Some("active"), now);
    clean_all(&table, now);
    assert_eq!(
        contents(&table)[..2],
        [kv(0, "k1", Some("a")), kv(2, "k2", Some("c"))]
    );
    let mut replayed = Vec::new();
    p.replay(|record| replayed.push(record.offset))
        .expect("replay");
    assert_eq!(replayed, [0, 2, 3, 4, 5]);
}

#[test]
fn a_producers_last_batch_stays_empty_so_its_state_survives_a_rebuild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(dir.path(), &[]);
    let p = table.partition("c", 0).expect("partition");
    let now = 10_000;
    let idempotent = crate::records::encode_batch(
        vec![(
            Some(Bytes::from_static(b"k")),
            Some(Bytes::from_static(b"old")),
        )],
        now,
        Some(crate::records::ProducerStamp {
            id: 42,
            epoch: 3,
            base_sequence: 0,
        }),
    )
    .expect("encodes");
    table.append(&p, &idempotent, None).expect("append");
    put(&table, "k", Some("new"), now);
    put(&table, "filler", Some("x"), now);
    put(&table, "active", Some("y"), now);
    clean_all(&table, now);
    assert_eq!(
        contents(&table),
        [
            kv(1, "k", Some("new")),
            kv(2, "filler", Some("x")),
            kv(3, "active", Some("y"))
        ]
    );
    let first = p
        .with_log(|log| Ok(log.read(0, usize::MAX, i64::MAX)?))
        .expect("read")
        .records;
    let header = BatchHeader::parse(&first).expect("header");
    assert_eq!(
        (
            header.base_offset,
            header.records_count,
            header.producer_id,
            header.producer_epoch
        ),
        (0, 0, 42, 3),
        "the producer's only batch stays, empty"
    );
    // Rebuilt from the log alone (no snapshot), the state still knows the
    // producer: its next batch is in sequence, a replay of the first a duplicate.
    std::fs::remove_file(dir.path().join("c-0").join(crate::producers::SNAPSHOT_FILE)).ok();
    p.with_data(|d| {
        d.reload_producers()?;
        let next = BatchHeader {
            base_sequence: 1,
            base_offset: 4,
            ..header
        };
        assert_eq!(
            d.producers.check(&next),
            crate::producers::SequenceCheck::Append
        );
        let wrong = BatchHeader {
            base_sequence: 5,
            ..next
        };
        assert!(matches!(
            d.producers.check(&wrong),
            crate::producers::SequenceCheck::Reject(_)
        ));
        Ok(())
    })
    .expect("partition");
}

#[test]
fn markers_go_after_their_horizon_once_their_transaction_left_no_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = compacted(dir.path(), &[("delete.retention.ms", "0")]);
    let p = table.partition("c", 0).expect("partition");
    // Markers carry the wall clock.
    let now = crate::clock::now_ms() + 1_000;
    put(&table, "k", Some("before"), now);
    let txn = |producer_id, value, marker| transaction(&table, producer_id, value, marker, now);
    txn(5, "aborted", Marker::Abort);
    txn(6, "committed", Marker::Commit);
    put(&table, "filler", Some("x"), now);
    put(&table, "active", Some("y"), now);
    let offsets = |table: &TopicTable| -> Vec<i64> {
        let p = table.partition("c", 0).expect("partition");
        let read = p
            .with_log(|log| Ok(log.read(0, usize::MAX, i64::MAX)?))
            .expect("read");
        runnel_storage::validate_batches(&read.records)
            .expect("valid")
            .iter()
            .map(|h| h.base_offset)
            .collect()
    };
    let aborted = || {
        p.with_data(|d| Ok(d.producers.aborted_between(0, i64::MAX).len()))
            .expect("partition")
    };
    clean_all(&table, now);
    assert_eq!(
        offsets(&table),
        [2, 3, 4, 5, 6],
        "both markers stay the first time"
    );
    assert_eq!(aborted(), 1);

    put(&table, "more", Some("z"), now);
    clean_all(&table, now + 1);
    assert_eq!(
        offsets(&table),
        [3, 4, 5, 6, 7],
        "the abort marker goes; the commit marker of a kept record stays"
    );
    assert_eq!(
        aborted(),
        0,
        "a read_committed fetch no longer reports the aborted transaction"
    );
}
