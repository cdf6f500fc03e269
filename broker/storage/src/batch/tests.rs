use proptest::prelude::*;

use super::*;
use crate::test_util::{batch, encode};

fn sample_header() -> BatchHeader {
    BatchHeader {
        base_offset: 42,
        batch_length: 0,
        partition_leader_epoch: 7,
        magic: 2,
        crc: 0,
        attributes: 0b0011_1011,
        last_offset_delta: 4,
        base_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_500,
        producer_id: 1234,
        producer_epoch: 3,
        base_sequence: 99,
        records_count: 5,
    }
}

#[test]
fn parses_every_header_field() {
    let buf = encode(sample_header(), &[0xAB; 20]);
    let header = BatchHeader::parse(&buf).expect("parse");
    assert_eq!(header.base_offset, 42);
    assert_eq!(header.batch_length, 49 + 20);
    assert_eq!(header.partition_leader_epoch, 7);
    assert_eq!(header.magic, 2);
    assert_eq!(header.crc, crc32c::crc32c(&buf[21..]));
    assert_eq!(header.attributes, 0b0011_1011);
    assert_eq!(header.last_offset_delta, 4);
    assert_eq!(header.base_timestamp, 1_700_000_000_000);
    assert_eq!(header.max_timestamp, 1_700_000_000_500);
    assert_eq!(header.producer_id, 1234);
    assert_eq!(header.producer_epoch, 3);
    assert_eq!(header.base_sequence, 99);
    assert_eq!(header.records_count, 5);

    assert_eq!(header.last_offset(), 46);
    assert_eq!(header.next_offset(), 47);
    assert_eq!(header.total_size(), buf.len());
    assert_eq!(header.compression(), 3);
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert!(header.is_transactional());
    assert!(header.is_control());
}

#[test]
fn plain_attributes_mean_uncompressed_create_time() {
    let header = BatchHeader::parse(&batch(0, 1, 10, 5)).expect("parse");
    assert_eq!(header.compression(), 0);
    assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
    assert!(!header.is_transactional());
    assert!(!header.is_control());
}

#[test]
fn validates_a_buffer_of_batches() {
    let mut buf = batch(0, 3, 100, 10);
    buf.extend(batch(3, 1, 101, 0));
    buf.extend(batch(4, 10, 99, 300));
    let headers = validate_batches(&buf).expect("valid");
    let bases: Vec<i64> = headers.iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, [0, 3, 4]);
    assert_eq!(
        headers.iter().map(BatchHeader::total_size).sum::<usize>(),
        buf.len()
    );
    assert_eq!(validate_batches(&[]).expect("empty is valid"), []);
}

#[test]
fn flipping_any_covered_byte_is_a_crc_mismatch() {
    let good = batch(5, 2, 1000, 40);
    // Attributes, timestamps, producer fields and records; the offset delta
    // and record count (23..27, 57..61) can turn negative and are covered by
    // the other test below.
    let covered = (21..23).chain(27..57).chain(61..good.len());
    for at in covered {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        match validate_batches(&bad) {
            Err(Error::CrcMismatch { stored, computed }) => {
                assert_eq!(stored, BatchHeader::parse(&good).expect("parse").crc);
                assert_ne!(stored, computed);
            }
            other => panic!("byte {at}: expected crc mismatch, got {other:?}"),
        }
    }
    for at in (23..27).chain(57..61) {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(validate_batches(&bad).is_err(), "byte {at}");
    }
}

#[test]
fn corrupt_stored_crc_is_a_mismatch() {
    let mut bad = batch(0, 1, 0, 8);
    bad[18] ^= 0xFF;
    assert!(matches!(
        validate_batches(&bad),
        Err(Error::CrcMismatch { .. })
    ));
}

#[test]
fn offset_and_epoch_rewrite_keeps_the_crc_valid() {
    let mut buf = batch(0, 4, 1000, 32);
    set_base_offset_and_leader_epoch(&mut buf, 1_000_000, 12).expect("rewrite");
    let headers = validate_batches(&buf).expect("still valid");
    assert_eq!(headers[0].base_offset, 1_000_000);
    assert_eq!(headers[0].partition_leader_epoch, 12);
    assert_eq!(headers[0].last_offset(), 1_000_003);
    assert!(set_base_offset_and_leader_epoch(&mut [0u8; 15], 0, 0).is_err());
}

#[test]
fn rejects_other_magics() {
    let mut v1 = batch(0, 1, 0, 10);
    v1[16] = 1;
    assert!(matches!(
        validate_batches(&v1),
        Err(Error::UnsupportedMagic(1))
    ));
    // A v0 message set entry can be shorter than a v2 header.
    let mut v0 = vec![0u8; 34];
    v0[8..12].copy_from_slice(&22i32.to_be_bytes());
    assert!(matches!(
        validate_batches(&v0),
        Err(Error::UnsupportedMagic(0))
    ));
}

#[test]
fn rejects_short_partial_and_undersized_batches() {
    let good = batch(0, 1, 0, 10);
    assert!(matches!(
        validate_batches(&good[..10]),
        Err(Error::CorruptBatch(_))
    ));
    assert!(matches!(
        validate_batches(&good[..60]),
        Err(Error::CorruptBatch(_))
    ));
    assert!(matches!(
        validate_batches(&good[..good.len() - 1]),
        Err(Error::CorruptBatch(_))
    ));

    let mut two = good.clone();
    two.extend_from_slice(&good[..30]);
    assert!(matches!(
        validate_batches(&two),
        Err(Error::CorruptBatch(_))
    ));

    let mut small = good.clone();
    small[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(matches!(
        validate_batches(&small),
        Err(Error::CorruptBatch(_))
    ));
    let mut negative = good;
    negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        validate_batches(&negative),
        Err(Error::CorruptBatch(_))
    ));
}

fn any_header() -> impl Strategy<Value = BatchHeader> {
    (
        (
            any::<i64>(),
            49..i32::MAX,
            any::<i32>(),
            any::<u32>(),
            any::<i16>(),
            0..i32::MAX,
        ),
        (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i16>(),
            any::<i32>(),
            0..i32::MAX,
        ),
    )
        .prop_map(
            |(
                (
                    base_offset,
                    batch_length,
                    partition_leader_epoch,
                    crc,
                    attributes,
                    last_offset_delta,
                ),
                (
                    base_timestamp,
                    max_timestamp,
                    producer_id,
                    producer_epoch,
                    base_sequence,
                    records_count,
                ),
            )| BatchHeader {
                base_offset,
                batch_length,
                partition_leader_epoch,
                magic: 2,
                crc,
                attributes,
                last_offset_delta,
                base_timestamp,
                max_timestamp,
                producer_id,
                producer_epoch,
                base_sequence,
                records_count,
            },
        )
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(header in any_header()) {
        prop_assert_eq!(BatchHeader::parse(&header.encode()).expect("parse"), header);
    }
}
