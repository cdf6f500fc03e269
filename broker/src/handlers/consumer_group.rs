//! ConsumerGroupHeartbeat (key 68) and ConsumerGroupDescribe (key 69): the
//! consumer rebalance protocol of KIP-848 (`group.protocol=consumer`).

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    self as describe, DescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{self as heartbeat, Assignment};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::broker::Broker;
use crate::groups::consumer::{Catalog, Heartbeat, Parts, TopicMeta};

/// v1 adds regular-expression subscriptions and members making their own ids.
pub(crate) const HEARTBEAT_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };
/// v1 adds each member's type.
pub(crate) const DESCRIBE_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// The cluster's topics, internal ones left out (as subscriptions see them).
fn catalog(broker: &Broker) -> Catalog {
    broker
        .topics
        .all()
        .into_iter()
        .filter(|t| !t.name.starts_with("__"))
        .map(|t| {
            (
                t.name.clone(),
                TopicMeta {
                    id: t.id,
                    partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                },
            )
        })
        .collect()
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Answers ConsumerGroupHeartbeat.
pub(crate) async fn handle_heartbeat(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let request_epoch = request.member_epoch;
    let owned = request.topic_partitions.map(|topics| {
        let mut parts = Parts::new();
        for t in topics {
            parts
                .entry(t.topic_id)
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        parts
    });
    let beat = Heartbeat {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    let mut answer = broker.groups.consumer_heartbeat(
        &broker.topics,
        &group_id,
        beat,
        &catalog(broker),
        crate::clock::now_ms(),
    );
    // As Kafka, the answer waits until the group's new state is replicated,
    // so that a new coordinator has what the member was told.
    if answer.error.is_none() {
        if let Err(error) = broker
            .groups
            .wait_replicated(&broker.topics, &group_id)
            .await
        {
            answer.error = Some((error, format!("group {group_id}'s state is not replicated")));
            answer.member_epoch = request_epoch;
            answer.assignment = None;
        }
    }
    let response = ConsumerGroupHeartbeatResponse::default()
        .with_member_id(Some(text(answer.member_id)))
        .with_member_epoch(answer.member_epoch)
        .with_heartbeat_interval_ms(answer.heartbeat_interval_ms)
        .with_assignment(answer.assignment.map(|parts| {
            Assignment::default().with_topic_partitions(
                parts
                    .into_iter()
                    .map(|(topic_id, ps)| {
                        heartbeat::TopicPartitions::default()
                            .with_topic_id(topic_id)
                            .with_partitions(ps.into_iter().collect())
                    })
                    .collect(),
            )
        }));
    match answer.error {
        Some((error, message)) => response
            .with_error_code(error.code())
            .with_error_message(Some(text(message))),
        None => response,
    }
}

/// Partitions with their topics' names, for ConsumerGroupDescribe.
fn described(parts: &Parts, name_of: &dyn Fn(&uuid::Uuid) -> String) -> describe::Assignment {
    describe::Assignment::default().with_topic_partitions(
        parts
            .iter()
            .map(|(id, ps)| {
                describe::TopicPartitions::default()
                    .with_topic_id(*id)
                    .with_topic_name(TopicName(text(name_of(id))))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// Answers ConsumerGroupDescribe.
pub(crate) fn handle_describe(
    broker: &Arc<Broker>,
    version: i16,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let groups = request
        .group_ids
        .into_iter()
        .map(|GroupId(id)| {
            let entry = DescribedGroup::default()
                .with_group_id(GroupId(id.clone()))
                .with_authorized_operations(i32::MIN);
            let group = match broker.groups.describe_consumer_group(id.as_str()) {
                Ok(group) => group,
                Err((error, message)) => {
                    return entry
                        .with_error_code(error.code())
                        .with_error_message(Some(text(message)))
                        .with_group_state(text("Dead"))
                }
            };
            let name_of = |topic: &uuid::Uuid| -> String {
                group
                    .topic_name(topic)
                    .map(str::to_string)
                    .or_else(|| broker.topics.get_by_id(*topic).map(|t| t.name.clone()))
                    .unwrap_or_default()
            };
            let members = group
                .members
                .values()
                .map(|m| {
                    let member = describe::Member::default()
                        .with_member_id(text(m.id.clone()))
                        .with_instance_id(m.instance_id.clone().map(text))
                        .with_rack_id(m.rack_id.clone().map(text))
                        .with_member_epoch(m.epoch)
                        .with_client_id(text(m.client_id.clone()))
                        .with_client_host(text(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .iter()
                                .map(|t| TopicName(text(t.clone())))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(m.regex.clone().map(text))
                        .with_assignment(described(&m.assigned, &name_of))
                        .with_target_assignment(described(
                            group.target.get(&m.id).unwrap_or(&Parts::new()),
                            &name_of,
                        ));
                    if version >= 1 {
                        // 1: a member of the consumer protocol.
                        member.with_member_type(1)
                    } else {
                        member
                    }
                })
                .collect();
            entry
                .with_group_state(text(group.state()))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.assignment_epoch)
                .with_assignor_name(text(group.assignor()))
                .with_members(members)
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
