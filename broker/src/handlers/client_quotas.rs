//! DescribeClientQuotas (key 48) and AlterClientQuotas (key 49), KIP-546:
//! the client quotas of [`crate::quotas`], kept in the cluster metadata.
//! `kafka-configs.sh --entity-type users|clients --add-config
//! 'producer_byte_rate=1048576'` sends these (and `--describe` asks them
//! alongside the SCRAM credentials).

use std::sync::Arc;

use kafka_protocol::messages::{
    alter_client_quotas_request, alter_client_quotas_response, describe_client_quotas_response,
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::MetadataCommand;
use crate::quotas::{self, QuotaEntity, Rate, CLIENT_ID, USER};

/// v1 is flexible.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// Match types of a DescribeClientQuotas component.
const EXACT: i8 = 0;
const DEFAULT: i8 = 1;
const ANY: i8 = 2;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// An entity's parts as the protocol lists them.
fn parts(entity: &QuotaEntity) -> Vec<(&'static str, Option<&str>)> {
    let mut parts = Vec::new();
    if let Some(user) = &entity.user {
        parts.push((USER, user.as_deref()));
    }
    if let Some(client_id) = &entity.client_id {
        parts.push((CLIENT_ID, client_id.as_deref()));
    }
    parts
}

/// Answers DescribeClientQuotas: the entities the filter matches, with
/// their values. A malformed filter is INVALID_REQUEST, as in Kafka.
pub(crate) fn describe(
    broker: &Arc<Broker>,
    request: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |code: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_entries(None)
    };
    let has = |kind: &str| {
        request
            .components
            .iter()
            .any(|c| c.entity_type.as_str() == kind)
    };
    if has("ip") && (has(USER) || has(CLIENT_ID)) {
        return refuse(
            ResponseError::InvalidRequest,
            "Invalid entity filter component combination: ip with user or client-id".into(),
        );
    }
    for component in &request.components {
        let entity = component.entity_type.as_str();
        if !matches!(entity, "user" | "client-id" | "ip") {
            // Kafka answers an entity type it does not know so.
            return refuse(
                ResponseError::UnsupportedVersion,
                format!("Custom entity type {entity:?} not supported"),
            );
        }
        let problem = if !(EXACT..=ANY).contains(&component.match_type) {
            Some(format!("Unexpected match type {}", component.match_type))
        } else if component.match_type == EXACT && component._match.is_none() {
            Some(format!("An exact match of {entity} needs a name"))
        } else if component.match_type != EXACT && component._match.is_some() {
            Some(format!("A default or any match of {entity} takes no name"))
        } else if request
            .components
            .iter()
            .filter(|c| c.entity_type == component.entity_type)
            .count()
            > 1
        {
            Some(format!(
                "Duplicate filter component for entity type {entity}"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            return refuse(ResponseError::InvalidRequest, message);
        }
    }
    let image = broker.image();
    let entries = image
        .quotas
        .iter()
        .filter(|(entity, _)| {
            let parts = parts(entity);
            let each = request.components.iter().all(|c| {
                parts
                    .iter()
                    .find(|(kind, _)| *kind == c.entity_type.as_str())
                    .is_some_and(|(_, name)| match c.match_type {
                        EXACT => *name == c._match.as_deref(),
                        DEFAULT => name.is_none(),
                        _ => true,
                    })
            });
            let only = !request.strict
                || parts.iter().all(|(kind, _)| {
                    request
                        .components
                        .iter()
                        .any(|c| c.entity_type.as_str() == *kind)
                });
            each && only
        })
        .map(|(entity, values)| {
            describe_client_quotas_response::EntryData::default()
                .with_entity(
                    parts(entity)
                        .into_iter()
                        .map(|(kind, name)| {
                            describe_client_quotas_response::EntityData::default()
                                .with_entity_type(text(kind))
                                .with_entity_name(name.map(text))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(key, value)| {
                            describe_client_quotas_response::ValueData::default()
                                .with_key(text(key))
                                .with_value(value.0)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default()
        .with_error_message(None)
        .with_entries(Some(entries))
}

/// Reads one entry's entity, or why it is refused.
fn entity(parts: &[alter_client_quotas_request::EntityData]) -> Result<QuotaEntity, String> {
    if parts.is_empty() {
        return Err("a quota entity needs a user or a client-id".into());
    }
    let mut entity = QuotaEntity::default();
    for part in parts {
        let name = part.entity_name.as_ref().map(|n| n.to_string());
        if name.as_deref() == Some("") {
            return Err(format!(
                "an empty {} name (leave it out for the default)",
                part.entity_type.as_str()
            ));
        }
        let slot = match part.entity_type.as_str() {
            USER => &mut entity.user,
            CLIENT_ID => &mut entity.client_id,
            "ip" => {
                return Err(
                    "ip quotas (connection_creation_rate) are not supported by Runnel".into(),
                )
            }
            other => return Err(format!("unknown quota entity type {other:?}")),
        };
        if slot.is_some() {
            return Err(format!(
                "the entity names {} twice",
                part.entity_type.as_str()
            ));
        }
        *slot = Some(name);
    }
    Ok(entity)
}

/// Answers AlterClientQuotas: each entry checked, then written as one
/// metadata entry of its own (unless `validate_only`).
pub(crate) async fn alter(
    broker: &Arc<Broker>,
    request: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let mut results = Vec::with_capacity(request.entries.len());
    for entry in request.entries {
        let echoed: Vec<alter_client_quotas_response::EntityData> = entry
            .entity
            .iter()
            .map(|e| {
                alter_client_quotas_response::EntityData::default()
                    .with_entity_type(e.entity_type.clone())
                    .with_entity_name(e.entity_name.clone())
            })
            .collect();
        let checked = entity(&entry.entity).and_then(|entity| {
            let mut changes = Vec::with_capacity(entry.ops.len());
            for op in &entry.ops {
                let key = op.key.to_string();
                let value = (!op.remove).then_some(op.value);
                quotas::validate(&key, value)?;
                if changes.iter().any(|(k, _)| *k == key) {
                    return Err(format!("the entry changes {key} twice"));
                }
                changes.push((key, value.map(Rate)));
            }
            Ok((entity, changes))
        });
        let outcome = match checked {
            Err(why) => Err((ResponseError::InvalidRequest, why)),
            Ok(_) if request.validate_only => Ok(()),
            Ok((entity, changes)) => broker
                .write(MetadataCommand::AlterClientQuotas { entity, changes })
                .await
                .map(|_| ())
                .map_err(|e| (e.kafka(), e.to_string())),
        };
        let result = alter_client_quotas_response::EntryData::default().with_entity(echoed);
        results.push(match outcome {
            Ok(()) => result.with_error_message(None),
            Err((code, message)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterClientQuotasResponse::default().with_entries(results)
}
