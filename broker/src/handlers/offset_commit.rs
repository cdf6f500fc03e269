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
/// comes with the consumer protocol (KIP-848): a consumer group's members
/// send their member epoch as the generation, and may get
/// STALE_MEMBER_EPOCH.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 2, max: 9 };

/// What a commit request asks for one partition, as an entry to commit.
pub(super) fn commit_entry(
    topic: &str,
    partition: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: Option<&StrBytes>,
    now: i64,
) -> CommitEntry {
    CommitEntry {
        topic: topic.to_string(),
        partition,
        committed: Committed {
            offset,
            leader_epoch,
            metadata: metadata.map(|m| m.to_string()).unwrap_or_default(),
            commit_timestamp: now,
        },
    }
}

/// Each entry's outcome: the coordinator's answer, counted once the ISR has
/// the records (as an acks=all write), or the error for all of them.
pub(super) async fn settle(
    broker: &Broker,
    group_id: &str,
    entries: Vec<CommitEntry>,
    commit: impl FnOnce(
        Vec<CommitEntry>,
    ) -> Result<Vec<(CommitEntry, Option<ResponseError>)>, ResponseError>,
) -> Vec<(CommitEntry, Option<ResponseError>)> {
    if group_id.is_empty() {
        return entries
            .into_iter()
            .map(|e| (e, Some(ResponseError::InvalidGroupId)))
            .collect();
    }
    match commit(entries.clone()) {
        Ok(results) => match broker
            .groups
            .wait_replicated(&broker.topics, group_id)
            .await
        {
            Ok(()) => results,
            Err(error) => results.into_iter().map(|(e, _)| (e, Some(error))).collect(),
        },
        Err(error) => entries.into_iter().map(|e| (e, Some(error))).collect(),
    }
}

/// The outcomes grouped by topic, in the order first seen, each partition
/// made by `partition`.
pub(super) fn by_topic<P>(
    results: Vec<(CommitEntry, Option<ResponseError>)>,
    partition: impl Fn(i32, i16) -> P,
) -> Vec<(String, Vec<P>)> {
    let mut topics: Vec<(String, Vec<P>)> = Vec::new();
    for (entry, error) in results {
        let p = partition(entry.partition, error.map_or(0, |e| e.code()));
        match topics.iter_mut().find(|(t, _)| *t == entry.topic) {
            Some((_, ps)) => ps.push(p),
            None => topics.push((entry.topic, vec![p])),
        }
    }
    topics
}

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
            t.partitions.iter().map(move |p| {
                let epoch = if version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                };
                let metadata = p.committed_metadata.as_ref();
                commit_entry(
                    &t.name.0,
                    p.partition_index,
                    p.committed_offset,
                    epoch,
                    metadata,
                    now,
                )
            })
        })
        .collect();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let results = settle(broker, &group_id, entries, |entries| {
        broker.groups.commit(
            &broker.topics,
            &group_id,
            request.member_id.as_str(),
            instance_id.as_deref(),
            request.generation_id_or_member_epoch,
            entries,
        )
    })
    .await;
    let topics = by_topic(results, |index, code| {
        OffsetCommitResponsePartition::default()
            .with_partition_index(index)
            .with_error_code(code)
    })
    .into_iter()
    .map(|(name, partitions)| {
        OffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_string(name)))
            .with_partitions(partitions)
    })
    .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
