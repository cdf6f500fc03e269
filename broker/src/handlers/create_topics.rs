//! CreateTopics (key 19).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::configs::describe_topic_configs;
use super::RequestContext;
use crate::broker::Broker;
use crate::cluster::Assignment;
use crate::config::TopicConfigs;
use crate::error::BrokerError;

/// v5+ returns the created topic's configs, v7 its id.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 2, max: 7 };

/// The partition count and configs a create request asks for, checked.
fn plan(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<(i32, i16, TopicConfigs, Assignment), BrokerError> {
    let image = broker.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced && !b.shutting_down)
        .count()
        .max(1) as i32;
    let settings = broker.topics.settings();
    let (partitions, replication) = if topic.assignments.is_empty() {
        let partitions = if topic.num_partitions == -1 {
            settings.get_i64("num.partitions") as i32
        } else {
            topic.num_partitions
        };
        let replication = if topic.replication_factor == -1 {
            settings.get_i64("default.replication.factor") as i16
        } else {
            topic.replication_factor
        };
        (partitions, replication)
    } else {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(BrokerError::InvalidRequest(
                "both a replica assignment and numPartitions/replicationFactor were given".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut replication = None;
        for a in &topic.assignments {
            if !seen.insert(a.partition_index) {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {} is assigned twice",
                    a.partition_index
                )));
            }
            let distinct: HashSet<_> = a.broker_ids.iter().collect();
            if a.broker_ids.is_empty() || distinct.len() != a.broker_ids.len() {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {} needs a non-empty list of distinct brokers",
                    a.partition_index
                )));
            }
            if let Some(unknown) = a
                .broker_ids
                .iter()
                .find(|b| !image.brokers.contains_key(&b.0))
            {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "partition {} is assigned to unknown broker {}",
                    a.partition_index, unknown.0
                )));
            }
            if *replication.get_or_insert(a.broker_ids.len()) != a.broker_ids.len() {
                return Err(BrokerError::InvalidReplicaAssignment(
                    "every partition needs the same number of replicas".into(),
                ));
            }
        }
        let n = topic.assignments.len() as i32;
        if (0..n).any(|p| !seen.contains(&p)) {
            return Err(BrokerError::InvalidReplicaAssignment(format!(
                "partitions must be numbered 0..{n} without gaps"
            )));
        }
        (n, replication.unwrap_or(1) as i16)
    };
    if partitions < 1 {
        return Err(BrokerError::InvalidPartitions(format!(
            "number of partitions must be at least 1, got {partitions}"
        )));
    }
    if replication < 1 {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor must be at least 1, got {replication}"
        )));
    }
    if i32::from(replication) > brokers {
        return Err(BrokerError::InvalidReplicationFactor(format!(
            "replication factor {replication} is larger than the {brokers} available broker(s)"
        )));
    }
    let mut configs = TopicConfigs::default();
    for c in &topic.configs {
        let name = c.name.to_string();
        let value = c
            .value
            .as_ref()
            .ok_or_else(|| BrokerError::InvalidRequest(format!("config {name} has a null value")))?
            .to_string();
        TopicConfigs::validate(&name, &value)?;
        configs.0.insert(name, value);
    }
    let assignment = if topic.assignments.is_empty() {
        Assignment::Auto {
            partitions,
            replication_factor: replication,
        }
    } else {
        let mut lists = topic.assignments.iter().collect::<Vec<_>>();
        lists.sort_by_key(|a| a.partition_index);
        Assignment::Explicit(
            lists
                .into_iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect(),
        )
    };
    Ok((partitions, replication, configs, assignment))
}

/// Answers CreateTopics.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = ctx.version;
    let mut names = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !names.insert(t.name.0.to_string()))
        .map(|t| t.name.0.to_string())
        .collect();
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if duplicates.contains(&name) {
            Err(BrokerError::InvalidRequest(format!(
                "topic {name:?} appears more than once in the request"
            )))
        } else {
            create(broker, ctx, topic, &name, request.validate_only).await
        };
        results.push(match outcome {
            Ok((id, configs, partitions, replication)) => {
                let configs = describe_topic_configs(broker, &configs)
                    .into_iter()
                    .map(|c| {
                        CreatableTopicConfigs::default()
                            .with_name(c.name)
                            .with_value(c.value)
                            .with_read_only(c.read_only)
                            .with_config_source(c.config_source)
                            .with_is_sensitive(c.is_sensitive)
                    })
                    .collect();
                let result = if version >= 7 {
                    result.with_topic_id(id)
                } else {
                    result
                };
                if version >= 5 {
                    result
                        .with_num_partitions(partitions)
                        .with_replication_factor(replication)
                        .with_configs(Some(configs))
                } else {
                    result
                }
            }
            Err(e) => {
                let code = match e {
                    // Kafka reports a duplicate in the request as INVALID_REQUEST.
                    BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest.code(),
                    ref other => other.code(),
                };
                result
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(e.to_string())))
            }
        });
    }
    CreateTopicsResponse::default()
        .with_topics(results)
        .with_throttle_time_ms(super::mutation_throttle_ms(broker, ctx))
}

/// Plans and (unless only validating) creates one topic: its id, configs,
/// partition count and replication factor.
async fn create(
    broker: &Broker,
    ctx: &RequestContext,
    topic: &CreatableTopic,
    name: &str,
    validate_only: bool,
) -> Result<(uuid::Uuid, TopicConfigs, i32, i16), BrokerError> {
    crate::topics::validate_topic_name(name)?;
    let (partitions, replication, configs, assignment) = plan(broker, topic)?;
    if validate_only {
        if broker.topics.get(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        broker
            .image()
            .plan_assignment(&assignment, &[])
            .map_err(|e| BrokerError::InvalidReplicationFactor(e.to_string()))?;
        return Ok((uuid::Uuid::nil(), configs, partitions, replication));
    }
    // KIP-599: v6+ clients are refused while their quota is in debt.
    super::take_mutations(broker, ctx, partitions.max(0) as usize, ctx.version >= 6)?;
    let created = broker
        .create_topic(name, assignment, configs.0.clone())
        .await?;
    Ok((created.id, configs, partitions, replication))
}
