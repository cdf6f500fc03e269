//! CreatePartitions (key 37).

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use super::RequestContext;
use crate::broker::Broker;
use crate::error::BrokerError;

/// v2+ is flexible; v3 changes nothing on the wire.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// Answers CreatePartitions.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = add(broker, ctx, &name, &t, request.validate_only).await;
        let entry = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match result {
            Ok(()) => entry,
            Err(e) => entry
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        });
    }
    CreatePartitionsResponse::default()
        .with_results(results)
        .with_throttle_time_ms(super::mutation_throttle_ms(broker, ctx))
}

async fn add(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), BrokerError> {
    let topic = broker
        .topics
        .get(name)
        .ok_or(BrokerError::UnknownTopicOrPartition)?;
    let current = topic.partitions.len() as i32;
    if t.count <= current {
        return Err(BrokerError::InvalidPartitions(format!(
            "topic {name:?} has {current} partitions; the count can only grow, got {}",
            t.count
        )));
    }
    let assignment = match t.assignments.as_ref().filter(|a| !a.is_empty()) {
        Some(assignments) => {
            let new = (t.count - current) as usize;
            if assignments.len() != new {
                return Err(BrokerError::InvalidReplicaAssignment(format!(
                    "{} assignments given for {new} new partitions",
                    assignments.len()
                )));
            }
            Some(
                assignments
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
            )
        }
        None => None,
    };
    if validate_only {
        return Ok(());
    }
    // KIP-599: v3 clients are refused while their quota is in debt.
    super::take_mutations(broker, ctx, (t.count - current) as usize, ctx.version >= 3)?;
    broker.create_partitions(name, t.count, assignment).await
}
