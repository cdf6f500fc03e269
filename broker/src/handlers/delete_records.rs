//! DeleteRecords (key 21): moves partitions' log start offsets up, as
//! `kafka-delete-records.sh` and Kafka Streams (purging its repartition
//! topics) ask.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::error::BrokerError;

/// v0-2 (v2 is the flexible encoding).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// The offset that means "the high watermark".
const HIGH_WATERMARK: i64 = -1;

/// Answers DeleteRecords. Each partition's leader moves its log start
/// offset to the offset asked (-1: the high watermark; past the high
/// watermark is OFFSET_OUT_OF_RANGE; a topic whose `cleanup.policy` lacks
/// `delete` is POLICY_VIOLATION, as in Kafka) and answers the new low watermark;
/// followers move theirs on their next fetch. Kafka also waits for the
/// followers before answering; Runnel answers once the leader moved.
pub(crate) fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let result = delete_before(broker, &name, p.partition_index, p.offset);
                    let entry = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match result {
                        Ok(low_watermark) => entry.with_low_watermark(low_watermark),
                        Err(error) => entry.with_low_watermark(-1).with_error_code(error.code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves one partition's log start offset; the new one.
fn delete_before(
    broker: &Broker,
    topic: &str,
    index: i32,
    offset: i64,
) -> Result<i64, BrokerError> {
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
    partition.with_data(|d| {
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
}
