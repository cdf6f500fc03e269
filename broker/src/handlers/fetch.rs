//! Fetch (key 1): whole stored record batches, with long polling.
//!
//! Fetch sessions (KIP-227) are declined: every response carries session id
//! 0, so clients keep sending full fetch requests, which KIP-227 allows.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::metrics::TopicLabel;
use crate::topics::Topic;

/// v4 is the first with record batch v2; v13+ name topics by id, which
/// Metadata v10+ returns; v17 (replica directory ids) is for KRaft replicas.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 4, max: 16 };

/// The longest a fetch may wait, whatever the client asks (Kafka clients ask 500 ms).
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// Answers Fetch, waiting up to `max_wait_ms` for `min_bytes`.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    if request.session_id != 0 || request.session_epoch > 0 {
        // We never hand out session ids, so any incremental fetch names an unknown session.
        let code = if request.session_id != 0 {
            ResponseError::FetchSessionIdNotFound
        } else {
            ResponseError::InvalidFetchSessionEpoch
        };
        return FetchResponse::default()
            .with_error_code(code.code())
            .with_session_id(0);
    }
    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let mut appended = broker.topics.subscribe_appends();
    loop {
        appended.borrow_and_update();
        let (response, bytes, errors) = read_once(broker, version, &request);
        if bytes >= request.min_bytes.max(0) as usize || errors || Instant::now() >= deadline {
            for topic in &response.responses {
                let size: usize = topic
                    .partitions
                    .iter()
                    .map(|p| p.records.as_ref().map_or(0, Bytes::len))
                    .sum();
                if size > 0 {
                    let label = TopicLabel {
                        topic: topic.topic.0.to_string(),
                    };
                    broker
                        .metrics
                        .bytes_out
                        .get_or_create(&label)
                        .inc_by(size as u64);
                }
            }
            broker.metrics.fetch_consumer_bytes.inc_by(bytes as u64);
            return response;
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
    /// Records (possibly none), the log start offset, the high watermark.
    Records(Bytes, i64, i64),
    /// KIP-392: read from this replica instead.
    Preferred(i32, i64, i64),
}

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
fn read_once(
    broker: &Broker,
    version: i16,
    request: &FetchRequest,
) -> (FetchResponse, usize, bool) {
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
    let mut total = 0usize;
    let mut errors = false;
    let mut responses = Vec::with_capacity(request.topics.len());
    for wanted in &request.topics {
        let topic = resolve(broker, version, &wanted.topic, wanted.topic_id);
        let mut partitions = Vec::with_capacity(wanted.partitions.len());
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
                        if leader {
                            if let Some(replica) = preferred_replica(broker, &d.isr, rack) {
                                return Ok(Served::Preferred(replica, start, hw));
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
                        // A follower may be behind the offset the consumer reached at
                        // the leader: nothing to read yet.
                        if p.fetch_offset >= hw {
                            return Ok(Served::Records(Bytes::new(), start, hw));
                        }
                        let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                        let records = if limit == 0 {
                            Bytes::new()
                        } else {
                            let read = d.log.read(p.fetch_offset, limit, hw)?;
                            // Only the first partition with data may exceed the limits (KIP-74).
                            if total > 0 && read.records.len() > limit {
                                Bytes::new()
                            } else {
                                read.records
                            }
                        };
                        Ok(Served::Records(records, start, hw))
                    })
                    .map_err(|e| e.code())
            });
            partitions.push(match result {
                Ok(Served::Records(records, log_start, hw)) => {
                    total += records.len();
                    budget = budget.saturating_sub(records.len());
                    let base = base
                        .with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_records(Some(records));
                    if version >= 5 {
                        base.with_log_start_offset(log_start)
                    } else {
                        base
                    }
                }
                Ok(Served::Preferred(replica, log_start, hw)) => {
                    // An answer to act on: end the long poll.
                    errors = true;
                    base.with_high_watermark(hw)
                        .with_last_stable_offset(hw)
                        .with_log_start_offset(log_start)
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
        }
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
    (response, total, errors)
}
