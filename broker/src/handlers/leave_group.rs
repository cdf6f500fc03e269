//! LeaveGroup (key 13).

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::VersionRange;

use crate::broker::Broker;

/// v3 batches members (KIP-345), v5 adds a reason.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers LeaveGroup.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    match broker
        .groups
        .leave(&broker.topics, &group_id, &members, crate::clock::now_ms())
    {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, error)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default()
            .with_error_code(results.first().copied().flatten().map_or(0, |e| e.code())),
    }
}
