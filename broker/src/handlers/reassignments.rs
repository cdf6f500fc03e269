//! AlterPartitionReassignments (key 45) and ListPartitionReassignments (key
//! 46): moving a partition's replicas, through the controller. The new
//! replicas join as followers; the move completes once they are in sync.
//! As in Kafka, a target list of another length changes the replication
//! factor (`kafka-reassign-partitions.sh` has always raised it this way),
//! unless a v1 request says `allowReplicationFactorChange: false` (KIP-860).

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::broker::Broker;
use crate::cluster::MetadataCommand;

/// v1 adds `allowReplicationFactorChange` (KIP-860).
pub(crate) const ALTER_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };
/// The only version.
pub(crate) const LIST_VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };

/// Answers AlterPartitionReassignments.
pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let target: Option<Vec<i32>> =
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect());
            // The controller checks the partition, the target and (KIP-860)
            // the replica count against the partition as it is then.
            let result = broker
                .write(MetadataCommand::Reassign {
                    topic: name.clone(),
                    partition: p.partition_index,
                    target,
                    allow_replication_factor_change: allow_rf_change,
                })
                .await
                .map(|_| ())
                .map_err(|e| (e.kafka(), e.to_string()));
            let entry =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(()) => entry,
                Err((code, message)) => entry
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}

/// Answers ListPartitionReassignments: partitions with replicas being added or removed.
pub(crate) fn list(
    broker: &Arc<Broker>,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = broker.image();
    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes)))
            .collect(),
        None => image.topics.keys().map(|n| (n.clone(), None)).collect(),
    };
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(topic) = image.topics.get(&name) else {
            continue;
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                (!p.adding.is_empty() || !p.removing.is_empty())
                    && indexes.as_ref().is_none_or(|w| w.contains(&(*i as i32)))
            })
            .map(|(i, p)| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
