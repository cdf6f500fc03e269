//! Heartbeat (key 12).

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use kafka_protocol::protocol::VersionRange;

use crate::broker::Broker;

/// v3 static membership, v4 flexible.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// Answers Heartbeat.
pub(crate) fn handle(broker: &Arc<Broker>, request: HeartbeatRequest) -> HeartbeatResponse {
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let error = broker.groups.heartbeat(
        &broker.topics,
        request.group_id.0.as_str(),
        request.member_id.as_str(),
        instance_id.as_deref(),
        request.generation_id,
        crate::clock::now_ms(),
    );
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
