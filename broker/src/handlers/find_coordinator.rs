//! FindCoordinator (key 10): a group's coordinator is the leader of its
//! `__consumer_offsets` partition, a transactional id's the leader of its
//! `__transaction_state` partition.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use tracing::warn;

use crate::broker::Broker;
use crate::cluster::Assignment;
use crate::error::BrokerError;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::txn::log::TXN_TOPIC;

/// v4+ batches keys (KIP-699).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: (node id, host, port) or why not known.
async fn locate(
    broker: &Broker,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), ResponseError> {
    let (topic, partition) = if key_type == KEY_TYPE_TRANSACTION {
        if key.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        ensure_txn_topic(broker).await?;
        (TXN_TOPIC, broker.txns.partition_of(key))
    } else {
        ensure_offsets_topic(broker).await?;
        (OFFSETS_TOPIC, broker.groups.partition_of(key))
    };
    let image = broker.image();
    let leader = image
        .partition(topic, partition)
        .map(|p| p.leader)
        .unwrap_or(-1);
    match image.brokers.get(&leader).filter(|b| !b.fenced) {
        Some(b) => Ok((b.id, b.host.clone(), b.port)),
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Creates `__consumer_offsets` on first use, replicated like Kafka's
/// (`offsets.topic.replication.factor`, capped by the cluster size).
pub(crate) async fn ensure_offsets_topic(broker: &Broker) -> Result<(), ResponseError> {
    ensure_internal_topic(
        broker,
        OFFSETS_TOPIC,
        broker.groups.offsets_partitions(),
        "offsets.topic.replication.factor",
        crate::groups::GroupCoordinator::offsets_topic_configs(&broker.settings),
    )
    .await
}

/// Creates `__transaction_state` on first use
/// (`transaction.state.log.replication.factor`, capped by the cluster size).
async fn ensure_txn_topic(broker: &Broker) -> Result<(), ResponseError> {
    ensure_internal_topic(
        broker,
        TXN_TOPIC,
        broker.txns.partitions(),
        "transaction.state.log.replication.factor",
        crate::txn::TransactionCoordinator::topic_configs(&broker.settings),
    )
    .await
}

async fn ensure_internal_topic(
    broker: &Broker,
    name: &str,
    partitions: i32,
    replication_setting: &str,
    configs: crate::config::TopicConfigs,
) -> Result<(), ResponseError> {
    if broker.topics.get(name).is_some() {
        return Ok(());
    }
    let image = broker.image();
    let live = image.live_brokers().count();
    let wanted = broker.settings.get_i64(replication_setting).max(1) as usize;
    // Wait for the expected cluster (the controller voters) to register
    // rather than create the topic with too few replicas.
    let factor = wanted.min(broker.voters.max(live));
    if live < factor {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let assignment = Assignment::Auto {
        partitions,
        replication_factor: factor as i16,
    };
    match broker.create_topic(name, assignment, configs.0).await {
        Ok(_) => Ok(()),
        Err(BrokerError::Refused {
            code: ResponseError::TopicAlreadyExists,
            ..
        }) => Ok(()),
        Err(error) => {
            warn!(topic = name, %error, "creating an internal topic failed");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }
}

/// Answers FindCoordinator.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let key_type_error = match request.key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => None,
        other => Some((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    };
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let entry = Coordinator::default().with_key(key.clone());
            let located = match &key_type_error {
                Some((code, message)) => Err((*code, message.clone())),
                None => locate(broker, request.key_type, key.as_str())
                    .await
                    .map_err(|e| (e, format!("{e:?}"))),
            };
            coordinators.push(match located {
                Err((code, message)) => entry
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
                    .with_node_id(BrokerId(-1))
                    .with_port(-1),
                Ok((id, host, port)) => entry
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    let located = match key_type_error {
        Some(e) => Err(e),
        None => locate(broker, request.key_type, request.key.as_str())
            .await
            .map_err(|e| (e, format!("{e:?}"))),
    };
    match located {
        Err((code, message)) => {
            let response = response
                .with_error_code(code.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1);
            if version >= 1 {
                response.with_error_message(Some(StrBytes::from_string(message)))
            } else {
                response
            }
        }
        Ok((id, host, port)) => response
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host))
            .with_port(port),
    }
}
