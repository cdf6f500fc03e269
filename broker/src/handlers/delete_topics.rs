//! DeleteTopics (key 20).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use uuid::Uuid;

use super::RequestContext;
use crate::broker::Broker;
use crate::error::BrokerError;

/// v6 names topics by name or id.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 6 };

/// Answers DeleteTopics.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let version = ctx.version;
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let topic = match &name {
            Some(n) => broker
                .topics
                .get(n.0.as_str())
                .ok_or(BrokerError::UnknownTopicOrPartition),
            None => broker
                .topics
                .get_by_id(id)
                .ok_or(BrokerError::UnknownTopicId),
        };
        let result = match topic {
            // KIP-599: v5+ clients are refused while their quota is in debt.
            Ok(topic) => {
                match super::take_mutations(broker, ctx, topic.partitions.len(), version >= 5) {
                    Ok(()) => broker.delete_topic(&topic.name).await.map(|()| topic),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        let entry = DeletableTopicResult::default().with_name(name);
        let entry = match result {
            Ok(topic) => {
                let entry =
                    entry.with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))));
                if version >= 6 {
                    entry.with_topic_id(topic.id)
                } else {
                    entry
                }
            }
            Err(e) => {
                let entry = entry.with_error_code(e.code());
                if version >= 5 {
                    entry.with_error_message(Some(StrBytes::from_string(e.to_string())))
                } else {
                    entry
                }
            }
        };
        responses.push(if version >= 6 && entry.topic_id.is_nil() {
            entry.with_topic_id(id)
        } else {
            entry
        });
    }
    DeleteTopicsResponse::default()
        .with_responses(responses)
        .with_throttle_time_ms(super::mutation_throttle_ms(broker, ctx))
}
