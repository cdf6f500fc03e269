//! FindCoordinator (key 10): this broker coordinates every group and transaction.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// v4+ batches keys (KIP-699).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Answers FindCoordinator.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let id = &broker.identity;
    let key_type_error = match request.key_type {
        KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => None,
        other => Some((
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let entry = Coordinator::default().with_key(key);
                match &key_type_error {
                    Some((code, message)) => entry
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message.clone())))
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    None => entry
                        .with_node_id(BrokerId(id.node_id))
                        .with_host(StrBytes::from_string(id.host.clone()))
                        .with_port(id.port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match key_type_error {
        Some((code, message)) => {
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
        None => response
            .with_node_id(BrokerId(id.node_id))
            .with_host(StrBytes::from_string(id.host.clone()))
            .with_port(id.port),
    }
}
