//! DescribeConfigs (key 32), IncrementalAlterConfigs (key 44) and the
//! legacy AlterConfigs (key 33).

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::config::{TopicConfigs, BROKER_SETTINGS, TOPIC_CONFIGS};
use crate::error::BrokerError;

/// v3 adds config types and documentation; v4 is flexible.
pub(crate) const DESCRIBE_VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };
/// v1 is flexible.
pub(crate) const ALTER_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };
/// The legacy AlterConfigs; v2 is flexible.
pub(crate) const LEGACY_ALTER_VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource codes.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Kafka's replication throttles (KIP-73), per broker. Runnel does not
/// throttle replication, so these are never set: deleting them is the no-op
/// Kafka's reassignment tool does after every move, and setting them is
/// refused.
const BROKER_THROTTLE_CONFIGS: [&str; 3] = [
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];
/// The per-topic halves of KIP-73: which replicas the rates apply to.
const TOPIC_THROTTLE_CONFIGS: [&str; 2] = [
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

fn throttle_refused(key: &str) -> (ResponseError, String) {
    (
        ResponseError::InvalidConfig,
        format!("{key}: replication throttles are not supported by Runnel (deleting them is accepted, they are never set)"),
    )
}

/// IncrementalAlterConfigs on a broker (or, with an empty name, the cluster
/// default): only deleting the unset throttle configs is accepted.
fn plan_broker_alter(
    broker: &Broker,
    name: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<(), (ResponseError, String)> {
    if !name.is_empty() {
        let known = name
            .parse::<i32>()
            .is_ok_and(|id| broker.image().brokers.contains_key(&id));
        if !known {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource name {name:?} is not a broker id of this cluster"),
            ));
        }
    }
    for op in ops {
        let key = op.name.as_str();
        let throttle = BROKER_THROTTLE_CONFIGS.contains(&key);
        match op.config_operation {
            OP_DELETE if throttle => {}
            OP_SET if throttle => return Err(throttle_refused(key)),
            _ => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("{key}: broker settings are static; set them with --set at start-up"),
                ))
            }
        }
    }
    Ok(())
}

/// Sets one topic config after checking it.
fn set_topic_config(
    configs: &mut TopicConfigs,
    key: String,
    value: Option<&str>,
) -> Result<(), (ResponseError, String)> {
    let value = value.ok_or((
        ResponseError::InvalidRequest,
        format!("config {key} has a null value"),
    ))?;
    TopicConfigs::validate(&key, value).map_err(|e| {
        let e = BrokerError::from(e);
        (e.kafka(), e.to_string())
    })?;
    configs.0.insert(key, value.to_string());
    Ok(())
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Every config of a topic: its override or the broker default.
pub(crate) fn describe_topic_configs(
    broker: &Broker,
    configs: &TopicConfigs,
) -> Vec<DescribeConfigsResourceResult> {
    let settings = broker.topics.settings();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, overridden) = configs.effective(def.name, settings);
            let broker_source = if settings.is_overridden(def.broker_key) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut synonyms = Vec::new();
            if overridden {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(text(def.name))
                        .with_value(Some(text(value)))
                        .with_source(SOURCE_DYNAMIC_TOPIC),
                );
            }
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(text(def.broker_key))
                    .with_value(Some(text(settings.get(def.broker_key))))
                    .with_source(broker_source),
            );
            DescribeConfigsResourceResult::default()
                .with_name(text(def.name))
                .with_value(Some(text(value)))
                .with_config_source(if overridden {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    broker_source
                })
                .with_config_type(def.kind.type_code())
                .with_synonyms(synonyms)
        })
        .collect()
}

fn describe_broker_configs(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    let settings = broker.topics.settings();
    BROKER_SETTINGS
        .iter()
        .map(|def| {
            let source = if settings.is_overridden(def.name) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let value = Some(text(settings.get(def.name)));
            DescribeConfigsResourceResult::default()
                .with_name(text(def.name))
                .with_value(value.clone())
                .with_read_only(true)
                .with_config_source(source)
                .with_config_type(def.kind.type_code())
                .with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(text(def.name))
                    .with_value(value)
                    .with_source(source)])
        })
        .collect()
}

fn is_this_broker(broker: &Broker, name: &str) -> bool {
    name.is_empty() || name == broker.identity.node_id.to_string()
}

/// Answers DescribeConfigs.
pub(crate) fn describe(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let entry = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(&name) {
                    Some(topic) => Ok(describe_topic_configs(broker, &topic.configs)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    )),
                },
                RESOURCE_BROKER if is_this_broker(broker, &name) => {
                    Ok(describe_broker_configs(broker))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("broker {name:?} is not this broker"),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            match configs {
                Ok(mut configs) => {
                    if let Some(keys) = &resource.configuration_keys {
                        configs.retain(|c| keys.contains(&c.name));
                    }
                    for c in &mut configs {
                        if !request.include_synonyms {
                            c.synonyms.clear();
                        }
                        if version < 3 {
                            c.config_type = 0;
                        }
                    }
                    entry.with_configs(configs)
                }
                Err((code, message)) => entry
                    .with_error_code(code.code())
                    .with_error_message(Some(text(&message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// Answers IncrementalAlterConfigs: SET and DELETE of topic configs.
pub(crate) async fn incremental_alter(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let planned: Result<Option<TopicConfigs>, (ResponseError, String)> = match resource
            .resource_type
        {
            RESOURCE_TOPIC => (|| {
                let topic = broker.topics.get(&name).ok_or((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ))?;
                let mut configs = topic.configs.clone();
                for op in &resource.configs {
                    let key = op.name.to_string();
                    match op.config_operation {
                            OP_DELETE if TOPIC_THROTTLE_CONFIGS.contains(&key.as_str()) => {}
                            OP_SET if TOPIC_THROTTLE_CONFIGS.contains(&key.as_str()) => {
                                return Err(throttle_refused(&key))
                            }
                            OP_SET => set_topic_config(&mut configs, key, op.value.as_deref())?,
                            OP_DELETE => {
                                if !TOPIC_CONFIGS.iter().any(|d| d.name == key) {
                                    return Err((ResponseError::InvalidConfig, format!("unknown topic config {key:?}")));
                                }
                                configs.0.remove(&key);
                            }
                            other => {
                                return Err((
                                    ResponseError::InvalidRequest,
                                    format!("operation {other} on {key}: APPEND and SUBTRACT need a list config, and none is alterable"),
                                ))
                            }
                        }
                }
                if request.validate_only {
                    return Ok(None);
                }
                Ok(Some(configs))
            })(),
            RESOURCE_BROKER => plan_broker_alter(broker, &name, &resource.configs).map(|()| None),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        let result = apply_plan(broker, &name, planned).await;
        let entry = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match result {
            Ok(()) => entry,
            Err((code, message)) => entry
                .with_error_code(code.code())
                .with_error_message(Some(text(&message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Writes a topic's planned configs (`None`: nothing to write, as for a
/// validate-only request or a broker resource).
async fn apply_plan(
    broker: &Broker,
    name: &str,
    planned: Result<Option<TopicConfigs>, (ResponseError, String)>,
) -> Result<(), (ResponseError, String)> {
    match planned? {
        Some(configs) => broker
            .set_configs(name, configs)
            .await
            .map_err(|e| (e.kafka(), e.to_string())),
        None => Ok(()),
    }
}

/// Answers AlterConfigs (the legacy form, which kafka-python with
/// `incremental=False`, librdkafka's alter_configs and Sarama send): the
/// given configs replace all of a topic's overrides, as in Kafka (those
/// left out go back to the broker defaults). Broker settings are static, so
/// a broker resource accepts only an empty set.
pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let planned: Result<Option<TopicConfigs>, (ResponseError, String)> = match resource
            .resource_type
        {
            RESOURCE_TOPIC => (|| {
                if broker.topics.get(&name).is_none() {
                    return Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    ));
                }
                let mut configs = TopicConfigs::default();
                for entry in &resource.configs {
                    let key = entry.name.to_string();
                    if TOPIC_THROTTLE_CONFIGS.contains(&key.as_str()) {
                        if entry.value.as_deref().is_some_and(|v| !v.is_empty()) {
                            return Err(throttle_refused(&key));
                        }
                        continue;
                    }
                    set_topic_config(&mut configs, key, entry.value.as_deref())?;
                }
                Ok((!request.validate_only).then_some(configs))
            })(),
            RESOURCE_BROKER => {
                let ops: Vec<_> = resource
                        .configs
                        .iter()
                        .map(|entry| {
                            kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(entry.name.clone())
                                .with_config_operation(OP_SET)
                                .with_value(entry.value.clone())
                        })
                        .collect();
                plan_broker_alter(broker, &name, &ops).map(|()| None)
            }
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        let result = apply_plan(broker, &name, planned).await;
        let entry = LegacyResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match result {
            Ok(()) => entry,
            Err((code, message)) => entry
                .with_error_code(code.code())
                .with_error_message(Some(text(&message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
