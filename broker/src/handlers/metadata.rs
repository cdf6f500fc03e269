//! Metadata (key 3): brokers, controller, topics and their partitions.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topics::{validate_topic_name, Topic};

/// v10+ carries topic ids (so Fetch v13+ can be served); v13's top-level
/// error code is not needed yet.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

/// Kafka's "authorized operations not requested" marker.
const NO_AUTHORIZED_OPERATIONS: i32 = i32::MIN;

/// The live brokers as Metadata broker entries (this broker at least).
pub(crate) fn broker_entries(broker: &Broker, version: i16) -> Vec<MetadataResponseBroker> {
    let image = broker.image();
    let mut entries: Vec<MetadataResponseBroker> = image
        .live_brokers()
        .map(|b| broker_entry(version, b.id, &b.host, b.port, b.rack.clone()))
        .collect();
    if !image.is_live(broker.identity.node_id) {
        let id = &broker.identity;
        entries.push(broker_entry(
            version,
            id.node_id,
            &id.host,
            id.port,
            id.rack.clone(),
        ));
    }
    entries
}

fn broker_entry(
    version: i16,
    id: i32,
    host: &str,
    port: i32,
    rack: Option<String>,
) -> MetadataResponseBroker {
    let entry = MetadataResponseBroker::default()
        .with_node_id(BrokerId(id))
        .with_host(StrBytes::from_string(host.to_string()))
        .with_port(port);
    if version >= 1 {
        entry.with_rack(rack.map(StrBytes::from_string))
    } else {
        entry
    }
}

fn topic_entry(broker: &Broker, version: i16, topic: &Topic) -> MetadataResponseTopic {
    let image = broker.image();
    // A broker the controller has fenced by now does not know who leads what
    // it led: it says "no leader" so the client asks another broker.
    let fenced = broker.controller.session_lapsed();
    let me = broker.identity.node_id;
    let ids = |list: &[i32]| list.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
    let partitions = image
        .topics
        .get(&topic.name)
        .map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let offline: Vec<i32> = p
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !image.is_live(*r))
                        .collect();
                    let leader = if fenced && p.leader == me {
                        -1
                    } else {
                        p.leader
                    };
                    let entry = MetadataResponsePartition::default()
                        .with_partition_index(i as i32)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(if version >= 7 { p.leader_epoch } else { -1 })
                        .with_replica_nodes(ids(&p.replicas))
                        .with_isr_nodes(ids(&p.isr))
                        .with_offline_replicas(if version >= 5 {
                            ids(&offline)
                        } else {
                            Vec::new()
                        });
                    if leader < 0 {
                        entry.with_error_code(ResponseError::LeaderNotAvailable.code())
                    } else {
                        entry
                    }
                })
                .collect()
        })
        .unwrap_or_default();
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
pub(crate) async fn handle(
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
        Some(list) => {
            let mut entries = Vec::with_capacity(list.len());
            for wanted in list {
                entries.push(match wanted.name {
                    Some(name) => {
                        let name = name.0.to_string();
                        if let Err(e) = validate_topic_name(&name) {
                            entries.push(error_entry(version, Some(name), Uuid::nil(), &e));
                            continue;
                        }
                        let found = if allow_auto_create {
                            broker.get_or_auto_create(&name).await
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
                        None => error_entry(
                            version,
                            None,
                            wanted.topic_id,
                            &BrokerError::UnknownTopicId,
                        ),
                    },
                });
            }
            entries
        }
    };
    let response = MetadataResponse::default()
        .with_brokers(broker_entries(broker, version))
        .with_topics(topics)
        .with_cluster_authorized_operations(NO_AUTHORIZED_OPERATIONS);
    let response = if version >= 1 {
        response.with_controller_id(BrokerId(broker.identity.node_id))
    } else {
        response
    };
    if version >= 2 {
        response.with_cluster_id(Some(StrBytes::from_string(broker.cluster_id())))
    } else {
        response
    }
}
