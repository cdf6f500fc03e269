//! Transaction metadata and its records in `__transaction_state`.
//!
//! Records use Kafka's own formats, so Kafka tooling reading the topic sees
//! what it expects: key v0 `(transactional id)`, value v0 `(producer id,
//! producer epoch, timeout, status, partitions, last update, start)`; a
//! null value deletes.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::groups::offsets::{get_string, put_string};

/// The internal topic holding transaction metadata.
pub(crate) const TXN_TOPIC: &str = "__transaction_state";

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// A transaction's state, with Kafka's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions were added; records may be written.
    Ongoing,
    /// Committing: markers are being written.
    PrepareCommit,
    /// Aborting: markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
    /// The transactional id expired.
    Dead,
    /// Fencing a producer (Kafka's; read back, never written here).
    PrepareEpochFence,
}

impl TxnState {
    /// Kafka's status code.
    pub(crate) fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name, as DescribeTransactions and ListTransactions show it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Whether markers are being written (the coordinator answers
    /// CONCURRENT_TRANSACTIONS meanwhile).
    pub(crate) fn is_preparing(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// One transactional id's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnMetadata {
    /// The producer id it was given.
    pub(crate) producer_id: i64,
    /// Its current epoch; older epochs are fenced.
    pub(crate) producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub(crate) timeout_ms: i32,
    /// Where the transaction stands.
    pub(crate) state: TxnState,
    /// The partitions of the open (or completing) transaction.
    pub(crate) partitions: BTreeSet<(String, i32)>,
    /// When this was last written (ms).
    pub(crate) last_update_ms: i64,
    /// When the open transaction started (ms), -1 if none.
    pub(crate) start_ms: i64,
}

/// The record key of a transactional id.
pub(crate) fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

/// The record value of a transactional id's metadata.
pub(crate) fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(m.producer_id);
    buf.put_i16(m.producer_epoch);
    buf.put_i32(m.timeout_ms);
    buf.put_i8(m.state.code());
    let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
            _ => topics.push((topic.as_str(), vec![*partition])),
        }
    }
    buf.put_i32(topics.len() as i32);
    for (topic, partitions) in topics {
        put_string(&mut buf, topic);
        buf.put_i32(partitions.len() as i32);
        for p in partitions {
            buf.put_i32(p);
        }
    }
    buf.put_i64(m.last_update_ms);
    buf.put_i64(m.start_ms);
    buf.freeze()
}

/// The transactional id of a record key (`None` for another record type).
pub(crate) fn decode_key(key: &Bytes) -> Option<String> {
    let mut buf = key.clone();
    if buf.remaining() < 2 || buf.get_i16() != KEY_VERSION {
        return None;
    }
    get_string(&mut buf)
}

/// The metadata in a record value (v0; the fields v1 adds are tagged).
pub(crate) fn decode_value(value: &Bytes) -> Option<TxnMetadata> {
    let mut buf = value.clone();
    if buf.remaining() < 2 + 8 + 2 + 4 + 1 + 4 || buf.get_i16() != VALUE_VERSION {
        return None;
    }
    let producer_id = buf.get_i64();
    let producer_epoch = buf.get_i16();
    let timeout_ms = buf.get_i32();
    let state = TxnState::from_code(buf.get_i8())?;
    let topics = buf.get_i32();
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let topic = get_string(&mut buf)?;
        if buf.remaining() < 4 {
            return None;
        }
        let n = buf.get_i32();
        for _ in 0..n.max(0) {
            if buf.remaining() < 4 {
                return None;
            }
            partitions.insert((topic.clone(), buf.get_i32()));
        }
    }
    if buf.remaining() < 16 {
        return None;
    }
    Some(TxnMetadata {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms: buf.get_i64(),
        start_ms: buf.get_i64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let m = TxnMetadata {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 1),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 17,
            start_ms: 11,
        };
        assert_eq!(decode_key(&encode_key("tx-1")).as_deref(), Some("tx-1"));
        assert_eq!(decode_value(&encode_value(&m)), Some(m));
        assert_eq!(decode_value(&Bytes::from_static(b"\x00\x00")), None);
    }
}
