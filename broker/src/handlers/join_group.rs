//! JoinGroup (key 11).

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::groups::state::{JoinRequest, JoinResult, Reply};

/// v4 requires a known member id (KIP-394), v5 static membership (KIP-345),
/// v7 returns the protocol type, v9 the skip-assignment flag (always false).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 9 };

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

fn response(version: i16, result: JoinResult) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|m| {
            let member = JoinGroupResponseMember::default()
                .with_member_id(text(m.member_id))
                .with_metadata(m.metadata);
            if version >= 5 {
                member.with_group_instance_id(m.group_instance_id.map(text))
            } else {
                member
            }
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, |e| e.code()))
        .with_generation_id(result.generation_id)
        .with_protocol_name(result.protocol_name.map(text))
        .with_leader(text(result.leader))
        .with_member_id(text(result.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(result.protocol_type.map(text))
    } else {
        response
    }
}

/// Answers JoinGroup, waiting for the rebalance to complete.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = ctx.version;
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let result = match broker
        .groups
        .join(&broker.topics, &group_id, join, crate::clock::now_ms())
    {
        Reply::Now(result) => result,
        Reply::Later(rx) => rx.await.unwrap_or(JoinResult {
            error: Some(ResponseError::UnknownMemberId),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        }),
    };
    response(version, result)
}
