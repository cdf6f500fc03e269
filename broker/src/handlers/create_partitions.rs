//! CreatePartitions (key 37).

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::broker::Broker;
use crate::error::BrokerError;

/// v2+ is flexible; v3 changes nothing on the wire.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };

/// Answers CreatePartitions.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = (|| {
                let topic = broker
                    .topics
                    .get(&name)
                    .ok_or(BrokerError::UnknownTopicOrPartition)?;
                if let Some(assignments) = t.assignments.as_ref().filter(|a| !a.is_empty()) {
                    let new = (t.count - topic.partitions.len() as i32).max(0) as usize;
                    if assignments.len() != new {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "{} assignments given for {new} new partitions",
                            assignments.len()
                        )));
                    }
                    if let Some(bad) = assignments.iter().find(|a| {
                        a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.identity.node_id
                    }) {
                        return Err(BrokerError::InvalidReplicaAssignment(format!(
                            "assignment {:?} names brokers other than this one",
                            bad.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>()
                        )));
                    }
                }
                broker
                    .topics
                    .add_partitions(&name, t.count, request.validate_only)
            })();
            let entry = CreatePartitionsTopicResult::default().with_name(t.name);
            match result {
                Ok(()) => entry,
                Err(e) => entry
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
