//! Metadata (key 3): brokers, controller, topics and their partitions.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topics::{validate_topic_name, Topic};

/// v10+ carries topic ids (so Fetch v13+ can be served); v13's top-level
/// error code is not needed yet.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// Kafka's "authorized operations not requested" marker.
const NO_AUTHORIZED_OPERATIONS: i32 = i32::MIN;

/// This broker as a Metadata broker entry.
pub(crate) fn self_broker(broker: &Broker, version: i16) -> MetadataResponseBroker {
    let id = &broker.identity;
    let entry = MetadataResponseBroker::default()
        .with_node_id(BrokerId(id.node_id))
        .with_host(StrBytes::from_string(id.host.clone()))
        .with_port(id.port);
    if version >= 1 {
        entry.with_rack(id.rack.clone().map(StrBytes::from_string))
    } else {
        entry
    }
}

fn topic_entry(broker: &Broker, version: i16, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.identity.node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(if version >= 10 { topic.id } else { Uuid::nil() })
        .with_is_internal(version >= 1 && topic.name.starts_with("__"))
        .with_partitions(partitions)
        .with_topic_authorized_operations(NO_AUTHORIZED_OPERATIONS)
}

fn error_entry(
    version: i16,
    name: Option<String>,
    id: Uuid,
    error: &BrokerError,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
        .with_topic_id(if version >= 10 { id } else { Uuid::nil() })
        .with_error_code(error.code())
        .with_topic_authorized_operations(NO_AUTHORIZED_OPERATIONS)
}

/// Answers Metadata.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    // v0 has no null list: an empty list means all topics. From v1 null means all.
    let wanted = match request.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list),
    };
    // Before v4 the request has no flag and auto-creation is always allowed.
    let allow_auto_create = version < 4 || request.allow_auto_topic_creation;
    let topics = match wanted {
        None => broker
            .topics
            .all()
            .iter()
            .map(|t| topic_entry(broker, version, t))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| match wanted.name {
                Some(name) => {
                    let name = name.0.to_string();
                    if let Err(e) = validate_topic_name(&name) {
                        return error_entry(version, Some(name), Uuid::nil(), &e);
                    }
                    let found = if allow_auto_create {
                        broker.topics.get_or_auto_create(&name)
                    } else {
                        broker
                            .topics
                            .get(&name)
                            .ok_or(BrokerError::UnknownTopicOrPartition)
                    };
                    match found {
                        Ok(t) => topic_entry(broker, version, &t),
                        Err(e) => error_entry(version, Some(name), Uuid::nil(), &e),
                    }
                }
                None => match broker.topics.get_by_id(wanted.topic_id) {
                    Some(t) => topic_entry(broker, version, &t),
                    None => {
                        error_entry(version, None, wanted.topic_id, &BrokerError::UnknownTopicId)
                    }
                },
            })
            .collect(),
    };
    let response = MetadataResponse::default()
        .with_brokers(vec![self_broker(broker, version)])
        .with_topics(topics)
        .with_cluster_authorized_operations(NO_AUTHORIZED_OPERATIONS);
    let response = if version >= 1 {
        response.with_controller_id(BrokerId(broker.identity.node_id))
    } else {
        response
    };
    if version >= 2 {
        response.with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
    } else {
        response
    }
}
