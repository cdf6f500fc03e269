//! OffsetFetch (key 9).

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::groups::offsets::Committed;

/// v2 fetches all topics with a null list, v5 returns leader epochs, v7
/// `require_stable`, v8 batches groups, v9 names the member (KIP-848: a
/// consumer group's member must be at its current epoch).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 9 };

type Found = Vec<(String, i32, Option<Committed>)>;

/// Offsets grouped by topic, in the order first seen; the error code is
/// UNSTABLE_OFFSET_COMMIT where an open transaction commits the partition
/// and the client asked for stable offsets only.
type ByTopic = Vec<(String, Vec<(i32, Committed, i16)>)>;

/// What OffsetFetch reports for a partition without a commit.
fn no_commit() -> Committed {
    Committed {
        offset: -1,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: -1,
    }
}

fn group_offsets(
    broker: &Broker,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Found, ResponseError> {
    broker.groups.fetch(group_id, wanted)
}

fn by_topic(broker: &Broker, group_id: &str, require_stable: bool, found: Found) -> ByTopic {
    let mut topics: ByTopic = Vec::new();
    for (topic, partition, committed) in found {
        let unstable = require_stable && broker.groups.has_pending(group_id, &topic, partition);
        let (committed, code) = if unstable {
            (no_commit(), ResponseError::UnstableOffsetCommit.code())
        } else {
            (committed.unwrap_or_else(no_commit), 0)
        };
        match topics.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, ps)) => ps.push((partition, committed, code)),
            None => topics.push((topic, vec![(partition, committed, code)])),
        }
    }
    topics
}

/// Answers OffsetFetch.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let member = broker.groups.check_fetch_member(
                    g.group_id.0.as_str(),
                    g.member_id.as_ref().map(|m| m.as_str()),
                    g.member_epoch,
                );
                let found = match member
                    .and_then(|()| group_offsets(broker, g.group_id.0.as_str(), wanted))
                {
                    Ok(found) => found,
                    Err(error) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(error.code())
                    }
                };
                let topics = by_topic(broker, g.group_id.0.as_str(), request.require_stable, found)
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, c, code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_error_code(code)
                                            .with_committed_offset(c.offset)
                                            .with_committed_leader_epoch(c.leader_epoch)
                                            .with_metadata(Some(StrBytes::from_string(c.metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.clone().map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let found = match group_offsets(broker, request.group_id.0.as_str(), wanted) {
        Ok(found) => found,
        // v0-1 have no top-level error code: the error goes on each partition.
        Err(error) if version < 2 => {
            let topics = request_partitions_with_error(request.topics, error);
            return OffsetFetchResponse::default().with_topics(topics);
        }
        Err(error) => return OffsetFetchResponse::default().with_error_code(error.code()),
    };
    let require_stable = version >= 7 && request.require_stable;
    let topics = by_topic(broker, request.group_id.0.as_str(), require_stable, found)
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, c, code)| {
                            let entry = OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(code)
                                .with_committed_offset(c.offset)
                                .with_metadata(Some(StrBytes::from_string(c.metadata)));
                            if version >= 5 {
                                entry.with_committed_leader_epoch(c.leader_epoch)
                            } else {
                                entry
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

fn request_partitions_with_error(
    topics: Option<Vec<kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic>>,
    error: ResponseError,
) -> Vec<OffsetFetchResponseTopic> {
    topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partition_indexes
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(error.code())
                        })
                        .collect(),
                )
        })
        .collect()
}
