//! OffsetDelete (key 47).

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// Only v0 exists.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Answers OffsetDelete: offsets of topics the group is not consuming.
pub(crate) fn handle(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    if broker.groups.describe(&group_id).is_none() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let mut topics = Vec::new();
    let mut group_error = None;
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let subscribed = broker.groups.subscribed_to(&group_id, &name);
        let deletable: Vec<(String, i32)> = if subscribed {
            Vec::new()
        } else {
            topic
                .partitions
                .iter()
                .map(|p| (name.clone(), p.partition_index))
                .collect()
        };
        let error = if subscribed {
            Some(ResponseError::GroupSubscribedToTopic)
        } else {
            broker
                .groups
                .delete_offsets(&broker.topics, &group_id, &deletable)
                .err()
        };
        if let Some(ResponseError::GroupSubscribedToTopic) = error {
        } else if let Some(e) = error {
            group_error = Some(e);
        }
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.map_or(0, |e| e.code()))
                        })
                        .collect(),
                ),
        );
    }
    OffsetDeleteResponse::default()
        .with_error_code(group_error.map_or(0, |e| e.code()))
        .with_topics(topics)
}
