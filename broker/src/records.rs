//! Building record batches the broker writes itself (offset commits) and
//! tests send, through kafka-protocol's encoder.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::BrokerError;

/// Writes Kafka's unsigned varint: the lengths and tag fields of flexible
/// versions.
pub(crate) fn put_unsigned_varint(buf: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// An idempotent producer's identity for a batch: id, epoch, first sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProducerStamp {
    /// The producer id.
    pub(crate) id: i64,
    /// The producer epoch.
    pub(crate) epoch: i16,
    /// The sequence of the first record.
    pub(crate) base_sequence: i32,
}

/// One uncompressed v2 batch of `(key, value)` records, all at `timestamp`.
pub(crate) fn encode_batch(
    entries: Vec<(Option<Bytes>, Option<Bytes>)>,
    timestamp: i64,
    producer: Option<ProducerStamp>,
) -> Result<BytesMut, BrokerError> {
    encode(entries, timestamp, producer, BatchKind::Plain)
}

/// A transactional batch of `(key, value)` records written for producer
/// `(id, epoch)` without a sequence (offsets a transaction commits).
pub(crate) fn encode_transactional_batch(
    entries: Vec<(Option<Bytes>, Option<Bytes>)>,
    timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<BytesMut, BrokerError> {
    let stamp = ProducerStamp {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence: -1,
    };
    encode(entries, timestamp, Some(stamp), BatchKind::Transactional)
}

/// A transaction marker: a control batch of one record whose key is
/// (version 0, type 0 abort | 1 commit) and whose value is (version 0,
/// coordinator epoch), as Kafka's `EndTransactionMarker`.
pub(crate) fn encode_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: crate::producers::Marker,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<BytesMut, BrokerError> {
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control_type().to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let stamp = ProducerStamp {
        id: producer_id,
        epoch: producer_epoch,
        base_sequence: -1,
    };
    encode(
        vec![(Some(key.freeze()), Some(value.freeze()))],
        timestamp,
        Some(stamp),
        BatchKind::Control,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Plain,
    Transactional,
    Control,
}

fn encode(
    entries: Vec<(Option<Bytes>, Option<Bytes>)>,
    timestamp: i64,
    producer: Option<ProducerStamp>,
    kind: BatchKind,
) -> Result<BytesMut, BrokerError> {
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: kind != BatchKind::Plain,
            control: kind == BatchKind::Control,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer
                .filter(|p| p.base_sequence >= 0)
                .map_or(-1, |p| p.base_sequence + i as i32),
            timestamp,
            key,
            value,
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| BrokerError::InvalidRequest(format!("encoding a record batch: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::{control_marker, Marker};

    #[test]
    fn markers_are_transactional_control_batches_that_say_what_they_mark() {
        for marker in [Marker::Abort, Marker::Commit] {
            let batch = encode_marker(42, 3, marker, 7, 1_000).expect("encode");
            let header = runnel_storage::BatchHeader::parse(&batch).expect("header");
            assert!(header.is_control() && header.is_transactional());
            assert_eq!((header.producer_id, header.producer_epoch), (42, 3));
            assert_eq!(header.base_sequence, -1);
            let control = control_marker(&batch).expect("a marker");
            assert_eq!((control.marker, control.coordinator_epoch), (marker, 7));
        }
        let data =
            encode_transactional_batch(vec![(None, Some(Bytes::from_static(b"v")))], 0, 9, 1)
                .expect("encode");
        let header = runnel_storage::BatchHeader::parse(&data).expect("header");
        assert!(header.is_transactional() && !header.is_control());
        assert_eq!(header.base_sequence, -1);
        assert_eq!(control_marker(&data), None);
    }
}
