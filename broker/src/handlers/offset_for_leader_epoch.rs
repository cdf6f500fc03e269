//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's
//! log, so a consumer (KIP-320) can tell whether its position was truncated
//! away after a leader change.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::protocol::VersionRange;

use crate::broker::Broker;
use crate::error::BrokerError;

/// v3 adds the replica id, v4 is flexible; v2 is the oldest clients use.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 2, max: 4 };

/// Answers OffsetForLeaderEpoch.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = broker
                        .topics
                        .partition(&name, p.partition)
                        .and_then(|part| {
                            part.with_data(|d| {
                                if !d.is_leader() {
                                    return Err(BrokerError::NotLeaderOrFollower);
                                }
                                d.check_epoch(p.current_leader_epoch)?;
                                // Consumers must not learn of offsets above the high watermark.
                                let hw = d.high_watermark();
                                Ok(d.log
                                    .end_offset_for_epoch(p.leader_epoch)
                                    .map_or((-1, -1), |(e, o)| (e, o.min(hw))))
                            })
                        });
                    let entry = EpochEndOffset::default().with_partition(p.partition);
                    match result {
                        Ok((epoch, offset)) => {
                            entry.with_leader_epoch(epoch).with_end_offset(offset)
                        }
                        Err(e) => entry
                            .with_error_code(e.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
