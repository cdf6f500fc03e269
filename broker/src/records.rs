//! Building record batches the broker writes itself (offset commits) and
//! tests send, through kafka-protocol's encoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::BrokerError;

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
    let records: Vec<Record> = entries
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |p| p.id),
            producer_epoch: producer.map_or(-1, |p| p.epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: producer.map_or(-1, |p| p.base_sequence + i as i32),
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
