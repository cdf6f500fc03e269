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
use crate::cluster::MetadataCommand;
use crate::config::{TopicConfigs, BROKER_SETTINGS, TOPIC_CONFIGS};
use crate::error::BrokerError;
use crate::replication::throttle;

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
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Kafka's ConfigType code of a list.
const LIST_TYPE: i8 = 7;

/// Kafka's dynamic broker configs Runnel takes: the replication throttle
/// rates (KIP-73, see `replication::throttle`), per broker or cluster-wide.
const DYNAMIC_BROKER_CONFIGS: [&str; 2] = [throttle::LEADER_RATE, throttle::FOLLOWER_RATE];
/// Kafka's throttle of moves between a broker's log dirs: Runnel has one log
/// dir per broker, so this is never set; deleting it is the no-op Kafka's
/// reassignment tool does once a move is done.
const LOG_DIRS_THROTTLE: &str = "replica.alter.log.dirs.io.max.bytes.per.second";

/// Per dynamic broker config, the new value or `None` to delete it.
type BrokerChanges = Vec<(String, Option<String>)>;

fn check_rate(key: &str, value: Option<&str>) -> Result<String, (ResponseError, String)> {
    let value = value.unwrap_or_default().trim();
    match value.parse::<i64>() {
        Ok(rate) if rate >= 0 => Ok(rate.to_string()),
        _ => Err((
            ResponseError::InvalidConfig,
            format!("{key}: {value:?} is not a rate: it must be a whole number of bytes per second, at least 0"),
        )),
    }
}

/// Checks a change to a broker's (or, with an empty name, the cluster
/// default's) configs: the dynamic ones, per key the new value or `None`.
fn plan_broker_alter(
    broker: &Broker,
    name: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BrokerChanges, (ResponseError, String)> {
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
    let mut changes: BrokerChanges = Vec::new();
    for op in ops {
        let key = op.name.as_str();
        if changes.iter().any(|(k, _)| k == key) {
            return Err((
                ResponseError::InvalidRequest,
                format!("{key} is changed twice in one request"),
            ));
        }
        let dynamic = DYNAMIC_BROKER_CONFIGS.contains(&key);
        match op.config_operation {
            OP_SET if dynamic => {
                changes.push((key.to_string(), Some(check_rate(key, op.value.as_deref())?)));
            }
            OP_DELETE if dynamic => changes.push((key.to_string(), None)),
            OP_DELETE if key == LOG_DIRS_THROTTLE => {}
            OP_SET if key == LOG_DIRS_THROTTLE => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("{key}: Runnel keeps one log dir per broker, so there are no moves between log dirs to throttle"),
                ))
            }
            OP_SET | OP_DELETE if BROKER_SETTINGS.iter().any(|d| d.name == key) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("{key}: this broker setting is static; set it with --set at start-up"),
                ))
            }
            OP_SET | OP_DELETE => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("{key}: unknown broker config (the dynamic ones are {})", DYNAMIC_BROKER_CONFIGS.join(", ")),
                ))
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("operation {other} on {key}: APPEND and SUBTRACT need a list config, and the dynamic broker configs are numbers"),
                ))
            }
        }
    }
    Ok(changes)
}

/// Writes a broker's config changes (none: nothing to write).
async fn apply_broker_plan(
    broker: &Broker,
    name: &str,
    changes: BrokerChanges,
) -> Result<(), (ResponseError, String)> {
    if changes.is_empty() {
        return Ok(());
    }
    broker
        .write(MetadataCommand::AlterBrokerConfigs {
            resource: name.to_string(),
            changes,
        })
        .await
        .map(|_| ())
        .map_err(|e| (e.kafka(), e.to_string()))
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
            if !def.broker_key.is_empty() {
                synonyms.push(
                    DescribeConfigsSynonym::default()
                        .with_name(text(def.broker_key))
                        .with_value(Some(text(settings.get(def.broker_key))))
                        .with_source(broker_source),
                );
            }
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

/// The dynamic broker configs of `name` (a broker id, or empty for the
/// cluster default) that are set, with Kafka's sources and synonyms: the
/// broker's own value, then the cluster default.
fn describe_dynamic_configs(broker: &Broker, name: &str) -> Vec<DescribeConfigsResourceResult> {
    let image = broker.image();
    let layer = |resource: &str, key: &str| {
        image
            .broker_configs
            .get(resource)
            .and_then(|c| c.get(key))
            .cloned()
    };
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .filter_map(|key| {
            let mut synonyms = Vec::new();
            if !name.is_empty() {
                if let Some(v) = layer(name, key) {
                    synonyms.push((v, SOURCE_DYNAMIC_BROKER));
                }
            }
            if let Some(v) = layer("", key) {
                synonyms.push((v, SOURCE_DYNAMIC_DEFAULT_BROKER));
            }
            // As Kafka, whose throttle rates are dynamic-only configs: an
            // unset rate is not listed (Cruise Control reads a listed one as
            // a throttle someone else set).
            if synonyms.is_empty() {
                return None;
            }
            let (value, source) = synonyms[0].clone();
            Some(
                DescribeConfigsResourceResult::default()
                    .with_name(text(key))
                    .with_value(Some(text(&value)))
                    .with_read_only(false)
                    .with_config_source(source)
                    .with_config_type(5)
                    .with_synonyms(
                        synonyms
                            .into_iter()
                            .map(|(v, source)| {
                                DescribeConfigsSynonym::default()
                                    .with_name(text(key))
                                    .with_value(Some(text(&v)))
                                    .with_source(source)
                            })
                            .collect(),
                    ),
            )
        })
        .collect()
}

fn describe_broker_configs(broker: &Broker, name: &str) -> Vec<DescribeConfigsResourceResult> {
    if name.is_empty() {
        return describe_dynamic_configs(broker, name);
    }
    let settings = broker.topics.settings();
    let mut configs: Vec<DescribeConfigsResourceResult> = BROKER_SETTINGS
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
        .collect();
    configs.extend(describe_dynamic_configs(broker, name));
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    configs
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
                    Ok(describe_broker_configs(broker, &name))
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

/// One resource's checked change: a topic's new overrides, or a broker's
/// config changes.
enum Plan {
    Topic(TopicConfigs),
    Broker(BrokerChanges),
}

/// Answers IncrementalAlterConfigs: SET, DELETE, and APPEND and SUBTRACT on
/// list configs, of topic configs and the dynamic broker configs.
pub(crate) async fn incremental_alter(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let planned = match resource.resource_type {
            RESOURCE_TOPIC => plan_topic_alter(broker, &name, &resource.configs).map(Plan::Topic),
            RESOURCE_BROKER => {
                plan_broker_alter(broker, &name, &resource.configs).map(Plan::Broker)
            }
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        let result = match planned {
            Ok(_) if request.validate_only => Ok(()),
            Ok(plan) => apply_plan(broker, &name, plan).await,
            Err(e) => Err(e),
        };
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

/// A topic's overrides after the operations, checked.
fn plan_topic_alter(
    broker: &Broker,
    name: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<TopicConfigs, (ResponseError, String)> {
    let topic = broker.topics.get(name).ok_or((
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    ))?;
    let settings = broker.topics.settings();
    let mut configs = topic.configs.clone();
    for op in ops {
        let key = op.name.to_string();
        let Some(def) = TOPIC_CONFIGS.iter().find(|d| d.name == key) else {
            return Err((
                ResponseError::InvalidConfig,
                format!("unknown topic config {key:?}"),
            ));
        };
        match op.config_operation {
            OP_SET => set_topic_config(&mut configs, key, op.value.as_deref())?,
            OP_DELETE => {
                configs.0.remove(&key);
            }
            op_code @ (OP_APPEND | OP_SUBTRACT) => {
                if def.kind.type_code() != LIST_TYPE {
                    return Err((
                        ResponseError::InvalidConfig,
                        format!("{key} is not a list: APPEND and SUBTRACT apply to list configs only"),
                    ));
                }
                let items = |v: &str| -> Vec<String> {
                    v.split(',')
                        .map(str::trim)
                        .filter(|i| !i.is_empty())
                        .map(str::to_string)
                        .collect()
                };
                let mut current = items(configs.effective(&key, settings).0);
                let given = items(op.value.as_deref().unwrap_or_default());
                if op_code == OP_APPEND {
                    for item in given {
                        if !current.contains(&item) {
                            current.push(item);
                        }
                    }
                } else {
                    current.retain(|item| !given.contains(item));
                }
                let value = current.join(",");
                set_topic_config(&mut configs, key, Some(&value))?;
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("operation {other} on {key} is not one of SET (0), DELETE (1), APPEND (2), SUBTRACT (3)"),
                ))
            }
        }
    }
    Ok(configs)
}

/// Writes a planned change.
async fn apply_plan(
    broker: &Broker,
    name: &str,
    plan: Plan,
) -> Result<(), (ResponseError, String)> {
    match plan {
        Plan::Topic(configs) => broker
            .set_configs(name, configs)
            .await
            .map_err(|e| (e.kafka(), e.to_string())),
        Plan::Broker(changes) => apply_broker_plan(broker, name, changes).await,
    }
}

/// Answers AlterConfigs (the legacy form, which kafka-python with
/// `incremental=False`, librdkafka's alter_configs and Sarama send): the
/// given configs replace all of a topic's overrides, or all of a broker's
/// dynamic configs, as in Kafka (those left out go back to their defaults).
pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let planned = match resource.resource_type {
            RESOURCE_TOPIC => (|| {
                if broker.topics.get(&name).is_none() {
                    return Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    ));
                }
                let mut configs = TopicConfigs::default();
                for entry in &resource.configs {
                    set_topic_config(&mut configs, entry.name.to_string(), entry.value.as_deref())?;
                }
                Ok(Plan::Topic(configs))
            })(),
            RESOURCE_BROKER => {
                use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
                // Every dynamic config not given goes back to its default.
                let current = broker
                    .image()
                    .broker_configs
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                let mut ops: Vec<AlterableConfig> = resource
                    .configs
                    .iter()
                    .map(|entry| {
                        AlterableConfig::default()
                            .with_name(entry.name.clone())
                            .with_config_operation(OP_SET)
                            .with_value(entry.value.clone())
                    })
                    .collect();
                for key in current.keys() {
                    if !ops.iter().any(|op| op.name.as_str() == key) {
                        ops.push(
                            AlterableConfig::default()
                                .with_name(text(key))
                                .with_config_operation(OP_DELETE),
                        );
                    }
                }
                plan_broker_alter(broker, &name, &ops).map(Plan::Broker)
            }
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            )),
        };
        let result = match planned {
            Ok(_) if request.validate_only => Ok(()),
            Ok(plan) => apply_plan(broker, &name, plan).await,
            Err(e) => Err(e),
        };
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
