//! SyncGroup (key 14).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::groups::state::{Reply, SyncResult};

/// v3 static membership, v5 protocol type and name.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers SyncGroup, waiting for the leader's assignment.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let protocol_type = request.protocol_type.as_ref().map(|s| s.to_string());
    let protocol_name = request.protocol_name.as_ref().map(|s| s.to_string());
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let reply = broker.groups.sync(
        &broker.topics,
        &group_id,
        request.member_id.as_str(),
        instance_id.as_deref(),
        request.generation_id,
        protocol_type.as_deref(),
        protocol_name.as_deref(),
        assignments,
        crate::clock::now_ms(),
    );
    let mut result = match reply {
        Reply::Now(r) => r,
        Reply::Later(rx) => rx.await.unwrap_or(SyncResult {
            error: Some(ResponseError::RebalanceInProgress),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }),
    };
    // As Kafka, the assignment goes out once the group record holding it is
    // replicated, so that a new coordinator has the generation members use.
    if result.error.is_none() {
        if let Err(error) = broker
            .groups
            .wait_replicated(&broker.topics, &group_id)
            .await
        {
            result = SyncResult {
                error: Some(error),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            };
        }
    }
    let response = SyncGroupResponse::default()
        .with_error_code(result.error.map_or(0, |e| e.code()))
        .with_assignment(result.assignment);
    if version >= 5 {
        response
            .with_protocol_type(result.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
    } else {
        response
    }
}
