//! DeleteRecords (key 21): moves partitions' log start offsets up, as
//! `kafka-delete-records.sh` and Kafka Streams (purging its repartition
//! topics) ask.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topics::{Partition, Role};

/// How often a DeleteRecords answer looks again whether the followers moved
/// their log starts (they say so on their fetches).
const REPLICA_POLL: Duration = Duration::from_millis(20);

/// v0-2 (v2 is the flexible encoding).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The offset that means "the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// A partition whose log start moved, and the offset its replicas must
/// reach; or why it did not move.
type Moved = Result<(Arc<Partition>, i64), BrokerError>;

/// Answers DeleteRecords. Each partition's leader moves its log start
/// offset to the offset asked (-1: the high watermark; past the high
/// watermark is OFFSET_OUT_OF_RANGE; a topic whose `cleanup.policy` lacks
/// `delete` is POLICY_VIOLATION, as in Kafka). Followers move theirs on
/// their next fetch and say so on the one after; as in Kafka the answer
/// waits (up to the request's timeout, else REQUEST_TIMED_OUT) until every
/// live replica has, and carries that low watermark.
pub(crate) async fn handle(
    broker: &Broker,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    // Every partition moves first; then the answer waits for all of them.
    let moved: Vec<Vec<Moved>> = request
        .topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|p| delete_before(broker, &topic.name.0, p.partition_index, p.offset))
                .collect()
        })
        .collect();
    // Wake the followers' waiting fetches: they learn the new start now.
    broker.topics.notify();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (topic, moved) in request.topics.into_iter().zip(moved) {
        let mut partitions = Vec::with_capacity(moved.len());
        for (p, moved) in topic.partitions.iter().zip(moved) {
            let result = match moved {
                Ok((partition, target)) => {
                    wait_for_replicas(broker, &partition, target, deadline).await
                }
                Err(error) => Err((error.code(), -1)),
            };
            let entry =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(low_watermark) => entry.with_low_watermark(low_watermark),
                Err((code, low_watermark)) => entry
                    .with_low_watermark(low_watermark)
                    .with_error_code(code),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Waits until every live replica's log starts at `target` or later; the
/// low watermark then, or an error code with the low watermark so far.
async fn wait_for_replicas(
    broker: &Broker,
    partition: &Partition,
    target: i64,
    deadline: tokio::time::Instant,
) -> Result<i64, (i16, i64)> {
    loop {
        let image = broker.image();
        let live = |id: i32| image.brokers.get(&id).is_some_and(|b| !b.fenced);
        let low = partition
            .with_data(|d| match &d.role {
                Role::Leader(state) => Ok(state.low_watermark(d.log.log_start_offset(), live)),
                _ => Err(BrokerError::NotLeaderOrFollower),
            })
            .map_err(|e| (e.code(), -1))?;
        if low >= target {
            return Ok(low);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err((ResponseError::RequestTimedOut.code(), low));
        }
        tokio::time::sleep(REPLICA_POLL.min(deadline - tokio::time::Instant::now())).await;
    }
}

/// Moves one partition's log start offset as its leader; the partition
/// and the offset its replicas must reach.
fn delete_before(broker: &Broker, topic: &str, index: i32, offset: i64) -> Moved {
    let partition = broker.topics.partition(topic, index)?;
    let compact_only = broker
        .topics
        .get(topic)
        .is_some_and(|t| !t.configs.has_policy("delete", broker.topics.settings()));
    if compact_only {
        return Err(BrokerError::Refused {
            code: ResponseError::PolicyViolation,
            message: format!(
                "Records of partition {topic}-{index} can not be deleted due to the configured policy"
            ),
        });
    }
    partition
        .with_data(|d| {
            if !d.is_leader() {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            let hw = d.high_watermark();
            let target = if offset == HIGH_WATERMARK { hw } else { offset };
            if target < 0 || target > hw {
                return Err(BrokerError::Kafka(ResponseError::OffsetOutOfRange));
            }
            if d.log.advance_log_start(target)? {
                d.producers.prune_aborted(d.log.log_start_offset());
            }
            Ok(d.log.log_start_offset())
        })
        .map(|start| (partition, start))
}
