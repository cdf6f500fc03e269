//! Fetch (key 1): whole stored record batches, with long polling.
//!
//! Fetch sessions (KIP-227) are declined: every response carries session id
//! 0, so clients keep sending full fetch requests, which KIP-227 allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, VersionRange};
use kafka_protocol::ResponseError;
use runnel_storage::FileSlice;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::metrics::TopicLabel;
use crate::outgoing::{Chunk, Outgoing};
use crate::records::put_unsigned_varint;
use crate::topics::Topic;

/// v4 is the first with record batch v2; v13+ name topics by id, which
/// Metadata v10+ returns; v17 (replica directory ids) is for KRaft replicas.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 4, max: 16 };

/// The longest a fetch may wait, whatever the client asks (Kafka clients ask 500 ms).
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// A Fetch response whose records are still in the segment files:
/// `records[t][p]` are the ranges for `response.responses[t].partitions[p]`
/// (whose own `records` field is empty).
#[derive(Debug, Default)]
pub(crate) struct FetchAnswer {
    pub(crate) response: FetchResponse,
    pub(crate) records: Vec<Vec<Vec<FileSlice>>>,
}

impl From<FetchResponse> for FetchAnswer {
    fn from(response: FetchResponse) -> Self {
        FetchAnswer {
            response,
            records: Vec::new(),
        }
    }
}

/// Answers Fetch, waiting up to `max_wait_ms` for `min_bytes`.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FetchRequest,
) -> FetchAnswer {
    if request.session_id != 0 || request.session_epoch > 0 {
        // We never hand out session ids, so any incremental fetch names an unknown session.
        let code = if request.session_id != 0 {
            ResponseError::FetchSessionIdNotFound
        } else {
            ResponseError::InvalidFetchSessionEpoch
        };
        return FetchResponse::default()
            .with_error_code(code.code())
            .with_session_id(0)
            .into();
    }
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let mut appended = broker.topics.subscribe_appends();
    loop {
        appended.borrow_and_update();
        let (answer, bytes, errors) = read_once(broker, version, &request);
        if bytes >= request.min_bytes.max(0) as usize || errors || Instant::now() >= deadline {
            for (t, topic) in request.topics.iter().enumerate() {
                let size: u64 = answer
                    .records
                    .get(t)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|slice| slice.len)
                    .sum();
                if size > 0 {
                    let name = if version >= 13 {
                        broker
                            .topics
                            .get_by_id(topic.topic_id)
                            .map(|t| t.name.clone())
                            .unwrap_or_default()
                    } else {
                        topic.topic.0.to_string()
                    };
                    let label = TopicLabel { topic: name };
                    broker.metrics.bytes_out.get_or_create(&label).inc_by(size);
                }
            }
            broker.metrics.fetch_consumer_bytes.inc_by(bytes as u64);
            return answer;
        }
        if tokio::time::timeout_at(deadline, appended.changed())
            .await
            .is_err()
        {
            continue; // one last read at the deadline
        }
    }
}

fn resolve(
    broker: &Broker,
    version: i16,
    name: &TopicName,
    id: uuid::Uuid,
) -> Result<Arc<Topic>, BrokerError> {
    if version >= 13 {
        broker
            .topics
            .get_by_id(id)
            .ok_or(BrokerError::UnknownTopicId)
    } else {
        broker
            .topics
            .get(name.0.as_str())
            .ok_or(BrokerError::UnknownTopicOrPartition)
    }
}

/// What one partition of a fetch gets.
enum Served {
    /// Records (ranges of segment files, possibly none), their length, and
    /// where the log stands.
    Records(Vec<FileSlice>, usize, Offsets),
    /// KIP-392: read from this replica instead.
    Preferred(i32, Offsets),
}

/// Where a partition's log stands, for a fetch response.
struct Offsets {
    log_start: i64,
    high_watermark: i64,
    last_stable: i64,
    /// For read_committed fetches: the aborted transactions in what is read.
    aborted: Option<Vec<AbortedTransaction>>,
}

/// Isolation level 1: consumers see only committed transactions, up to
/// the last stable offset.
const READ_COMMITTED: i8 = 1;

/// An in-sync replica in the consumer's rack, when the leader is not in it.
fn preferred_replica(broker: &Broker, isr: &[i32], rack: &str) -> Option<i32> {
    if rack.is_empty() || broker.identity.rack.as_deref() == Some(rack) {
        return None;
    }
    let image = broker.image();
    isr.iter().copied().find(|r| {
        image
            .brokers
            .get(r)
            .is_some_and(|b| !b.fenced && b.rack.as_deref() == Some(rack))
    })
}

/// One pass over the requested partitions: the response, its record bytes,
/// and whether any partition failed (which ends a long poll early).
fn read_once(broker: &Broker, version: i16, request: &FetchRequest) -> (FetchAnswer, usize, bool) {
    let mut budget = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let rack = if version >= 11 {
        request.rack_id.as_str()
    } else {
        ""
    };
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    let mut all_records = Vec::with_capacity(request.topics.len());
    for wanted in &request.topics {
        let topic = resolve(broker, version, &wanted.topic, wanted.topic_id);
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
        let mut topic_records = Vec::with_capacity(wanted.partitions.len());
        for p in &wanted.partitions {
            let base = PartitionData::default().with_partition_index(p.partition);
            let result = topic.as_ref().map_err(|e| e.code()).and_then(|topic| {
                let partition = usize::try_from(p.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get(i))
                    .ok_or(BrokerError::UnknownTopicOrPartition.code())?;
                partition
                    .with_data(|d| {
                        if version >= 9 {
                            d.check_epoch(p.current_leader_epoch)?;
                        }
                        let leader = d.is_leader();
                        if !leader && !matches!(d.role, crate::topics::Role::Follower { .. }) {
                            return Err(BrokerError::NotLeaderOrFollower);
                        }
                        let start = d.log.log_start_offset();
                        let hw = d.high_watermark();
                        let lso = d.last_stable_offset();
                        let offsets = |aborted| Offsets {
                            log_start: start,
                            high_watermark: hw,
                            last_stable: lso,
                            aborted,
                        };
                        if leader {
                            if let Some(replica) = preferred_replica(broker, &d.isr, rack) {
                                return Ok(Served::Preferred(replica, offsets(None)));
                            }
                        }
                        let end = d.log.log_end_offset();
                        if p.fetch_offset < start || (leader && p.fetch_offset > end) {
                            return Err(runnel_storage::Error::OffsetOutOfRange {
                                offset: p.fetch_offset,
                                start,
                                end,
                            }
                            .into());
                        }
                        // read_committed consumers stop at the last stable offset.
                        let upto = if read_committed { lso } else { hw };
                        let nothing = || {
                            let aborted = read_committed.then(Vec::new);
                            Ok(Served::Records(Vec::new(), 0, offsets(aborted)))
                        };
                        // A follower may be behind the offset the consumer reached at
                        // the leader: nothing to read yet.
                        if p.fetch_offset >= upto {
                            return nothing();
                        }
                        let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                        if limit == 0 {
                            return nothing();
                        }
                        let read = d.log.read_slices(p.fetch_offset, limit, upto)?;
                        // Only the first partition with data may exceed the limits (KIP-74).
                        if total > 0 && read.len > limit {
                            return nothing();
                        }
                        let aborted = read_committed.then(|| {
                            d.producers
                                .aborted_between(p.fetch_offset, upto)
                                .into_iter()
                                .map(|a| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(a.producer_id))
                                        .with_first_offset(a.first_offset)
                                })
                                .collect()
                        });
                        Ok(Served::Records(read.slices, read.len, offsets(aborted)))
                    })
                    .map_err(|e| e.code())
            });
            let mut slices = Vec::new();
            partitions.push(match result {
                Ok(Served::Records(records, len, offsets)) => {
                    total += len;
                    budget = budget.saturating_sub(len);
                    slices = records;
                    let base = base
                        .with_high_watermark(offsets.high_watermark)
                        .with_last_stable_offset(offsets.last_stable)
                        .with_aborted_transactions(offsets.aborted)
                        .with_records(Some(Bytes::new()));
                    if version >= 5 {
                        base.with_log_start_offset(offsets.log_start)
                    } else {
                        base
                    }
                }
                Ok(Served::Preferred(replica, offsets)) => {
                    // An answer to act on: end the long poll.
                    errors = true;
                    base.with_high_watermark(offsets.high_watermark)
                        .with_last_stable_offset(offsets.last_stable)
                        .with_log_start_offset(offsets.log_start)
                        .with_preferred_read_replica(BrokerId(replica))
                        .with_records(Some(Bytes::new()))
                }
                Err(code) => {
                    errors = true;
                    base.with_error_code(code)
                        .with_high_watermark(-1)
                        .with_records(Some(Bytes::new()))
                }
            });
            topic_records.push(slices);
        }
        all_records.push(topic_records);
        let entry = FetchableTopicResponse::default().with_partitions(partitions);
        responses.push(if version >= 13 {
            entry.with_topic_id(wanted.topic_id)
        } else {
            entry.with_topic(wanted.topic.clone())
        });
    }
    let response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(responses);
    let answer = FetchAnswer {
        response,
        records: all_records,
    };
    (answer, total, errors)
}

/// Encodes a whole Fetch response frame (size and header included) the way
/// `FetchResponse::encode` does, except that each partition's records are
/// the file ranges of `answer.records`, left in place for sendfile.
pub(crate) fn encode(
    version: i16,
    correlation_id: i32,
    answer: FetchAnswer,
) -> Result<Outgoing, String> {
    let failed = |e: anyhow::Error| format!("encoding Fetch v{version} response failed: {e}");
    let FetchAnswer { response, records } = answer;
    if records.iter().flatten().all(Vec::is_empty) {
        // Nothing in files: the ordinary encoder.
        return crate::handlers::encode_response(
            ApiKey::Fetch,
            version,
            correlation_id,
            kafka_protocol::messages::ResponseKind::Fetch(response),
        )
        .map(Outgoing::from);
    }
    let flexible = version >= 12;
    let mut chunks = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // the size, filled in at the end
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, ApiKey::Fetch.response_header_version(version))
        .map_err(failed)?;
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    }
    if !response.unknown_tagged_fields.is_empty() || !response.node_endpoints.is_empty() {
        return Err(format!(
            "Fetch v{version} response with top-level tagged fields cannot be sent zero-copy"
        ));
    }
    put_array_len(&mut buf, response.responses.len(), flexible);
    for (t, topic) in response.responses.iter().enumerate() {
        if !topic.unknown_tagged_fields.is_empty() {
            return Err(format!(
                "Fetch v{version} topic with tagged fields cannot be sent zero-copy"
            ));
        }
        if version <= 12 {
            put_string(&mut buf, topic.topic.0.as_str(), flexible);
        }
        if version >= 13 {
            buf.put_slice(topic.topic_id.as_bytes());
        }
        put_array_len(&mut buf, topic.partitions.len(), flexible);
        for (p, partition) in topic.partitions.iter().enumerate() {
            let slices = records.get(t).and_then(|ps| ps.get(p));
            match slices {
                Some(slices) if !slices.is_empty() => {
                    encode_partition_around(&mut buf, &mut chunks, partition, slices, version)
                        .map_err(failed)?;
                }
                _ => partition.encode(&mut buf, version).map_err(failed)?,
            }
        }
        if flexible {
            put_unsigned_varint(&mut buf, 0); // the topic's tagged fields
        }
    }
    if flexible {
        put_unsigned_varint(&mut buf, 0); // the response's tagged fields
    }
    chunks.push(Chunk::Bytes(buf.split().freeze()));
    let mut outgoing = Outgoing::from_chunks(chunks);
    let size = i32::try_from(outgoing.len() - 4)
        .map_err(|_| format!("Fetch v{version} response larger than 2 GiB"))?;
    outgoing.set_size_prefix(size);
    Ok(outgoing)
}

/// Encodes `partition` with its records field written as a length followed
/// by `slices`: the fields before the records go into `buf`, which is then
/// moved to `chunks` with the slices; the fields after (tagged fields) start
/// the new `buf`.
fn encode_partition_around(
    buf: &mut BytesMut,
    chunks: &mut Vec<Chunk>,
    partition: &PartitionData,
    slices: &[FileSlice],
    version: i16,
) -> anyhow::Result<()> {
    let flexible = version >= 12;
    // With null records, the encoding is: prefix, the null marker, tagged
    // fields. The same without tagged fields shows where the prefix ends.
    let mut with_null = partition.clone().with_records(None);
    let mut whole = BytesMut::new();
    with_null.encode(&mut whole, version)?;
    with_null.diverging_epoch = Default::default();
    with_null.current_leader = Default::default();
    with_null.snapshot_id = Default::default();
    with_null.unknown_tagged_fields = Default::default();
    let bare = with_null.compute_size(version)?;
    let (null_len, empty_tags) = if flexible { (1, 1) } else { (4, 0) };
    let prefix = bare - null_len - empty_tags;
    let len: u64 = slices.iter().map(|s| s.len).sum();
    buf.extend_from_slice(&whole[..prefix]);
    if flexible {
        put_unsigned_varint(buf, u32::try_from(len + 1)?);
    } else {
        buf.put_i32(i32::try_from(len)?);
    }
    chunks.push(Chunk::Bytes(buf.split().freeze()));
    chunks.extend(slices.iter().cloned().map(Chunk::File));
    buf.extend_from_slice(&whole[prefix + null_len..]);
    Ok(())
}

fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, u32::try_from(len + 1).unwrap_or(u32::MAX));
    } else {
        buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
    }
}

fn put_string(buf: &mut BytesMut, s: &str, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, u32::try_from(s.len() + 1).unwrap_or(u32::MAX));
    } else {
        buf.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    }
    buf.put_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use kafka_protocol::messages::fetch_response::EpochEndOffset;
    use kafka_protocol::messages::ResponseKind;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    /// The zero-copy encoding is byte for byte what `FetchResponse::encode`
    /// gives with the records in memory, at every served version, with
    /// partitions with and without records, errors, a preferred replica and
    /// tagged fields.
    #[test]
    fn zero_copy_encoding_matches_the_ordinary_one() {
        let mut file = tempfile::tempfile().expect("tempfile");
        let content: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        file.write_all(&content).expect("write");
        let file = Arc::new(file);
        let slice = |position: u64, len: u64| FileSlice {
            file: file.clone(),
            position,
            len,
        };
        // (slices, error code) per partition, two topics.
        let layout: Vec<Vec<(Vec<FileSlice>, i16)>> = vec![
            vec![
                (vec![slice(0, 1000)], 0),
                (Vec::new(), 0),
                (vec![slice(5000, 300), slice(100, 7)], 0),
            ],
            vec![
                (Vec::new(), ResponseError::NotLeaderOrFollower.code()),
                (vec![slice(19_000, 1000)], 0),
            ],
        ];
        for version in VERSIONS.min..=VERSIONS.max {
            let mut responses = Vec::new();
            let mut in_memory = Vec::new();
            for (t, partitions) in layout.iter().enumerate() {
                let mut ours = Vec::new();
                let mut theirs = Vec::new();
                for (p, (slices, code)) in partitions.iter().enumerate() {
                    let mut data = PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_error_code(*code)
                        .with_high_watermark(1000 + p as i64)
                        .with_last_stable_offset(999)
                        .with_records(Some(Bytes::new()));
                    if version >= 5 {
                        data = data.with_log_start_offset(7);
                    }
                    if version >= 11 && p == 1 {
                        data = data.with_preferred_read_replica(BrokerId(3));
                    }
                    if version >= 12 && p == 2 {
                        data = data.with_diverging_epoch(
                            EpochEndOffset::default().with_epoch(4).with_end_offset(77),
                        );
                    }
                    let bytes: Vec<u8> = slices
                        .iter()
                        .flat_map(|s| s.read().expect("readable"))
                        .collect();
                    theirs.push(data.clone().with_records(Some(Bytes::from(bytes))));
                    ours.push(data);
                }
                let topic = |partitions| {
                    let entry = FetchableTopicResponse::default().with_partitions(partitions);
                    if version >= 13 {
                        entry.with_topic_id(uuid::Uuid::from_u128(0xabc0 + t as u128))
                    } else {
                        entry.with_topic(TopicName(StrBytes::from_string(format!("topic-{t}"))))
                    }
                };
                responses.push(topic(ours));
                in_memory.push(topic(theirs));
            }
            let mut response = FetchResponse::default().with_responses(responses);
            let mut expected_response = FetchResponse::default().with_responses(in_memory);
            if version >= 7 {
                response = response.with_error_code(0).with_throttle_time_ms(5);
                expected_response = expected_response.with_throttle_time_ms(5);
            }
            let expected = crate::handlers::encode_response(
                ApiKey::Fetch,
                version,
                42,
                ResponseKind::Fetch(expected_response),
            )
            .expect("ordinary encoding");
            let answer = FetchAnswer {
                response,
                records: layout
                    .iter()
                    .map(|ps| ps.iter().map(|(s, _)| s.clone()).collect())
                    .collect(),
            };
            let ours = encode(version, 42, answer).expect("zero-copy encoding");
            let got = ours.to_bytes().expect("readable");
            assert_eq!(got.len(), expected.len(), "Fetch v{version}: length");
            assert!(got == expected, "Fetch v{version}: bytes differ");
        }
    }
}
