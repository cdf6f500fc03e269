//! OffsetCommit (key 8).

use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::groups::offsets::Committed;
use crate::groups::CommitEntry;

/// v6 carries leader epochs, v7 static membership, v8 is flexible; v9
/// belongs to the new consumer protocol (member epochs), not served yet.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 2, max: 8 };

/// Answers OffsetCommit.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let now = crate::clock::now_ms();
    let group_id = request.group_id.0.to_string();
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                committed: Committed {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    commit_timestamp: now,
                },
            })
        })
        .collect();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let results: Vec<(CommitEntry, Option<ResponseError>)> = if group_id.is_empty() {
        entries
            .into_iter()
            .map(|e| (e, Some(ResponseError::InvalidGroupId)))
            .collect()
    } else {
        match broker.groups.commit(
            &broker.topics,
            &group_id,
            request.member_id.as_str(),
            instance_id.as_deref(),
            request.generation_id_or_member_epoch,
            entries.clone(),
        ) {
            // A commit counts once the ISR has it, as an acks=all write.
            Ok(results) => match broker
                .groups
                .wait_replicated(&broker.topics, &group_id)
                .await
            {
                Ok(()) => results,
                Err(error) => results.into_iter().map(|(e, _)| (e, Some(error))).collect(),
            },
            Err(error) => entries.into_iter().map(|e| (e, Some(error))).collect(),
        }
    };
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (entry, error) in results {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(entry.partition)
            .with_error_code(error.map_or(0, |e| e.code()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == entry.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(entry.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}
