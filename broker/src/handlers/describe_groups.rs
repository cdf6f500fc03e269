//! DescribeGroups (key 15).

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::groups::state::GroupState;

/// v4 static members, v5 flexible, v6 GROUP_ID_NOT_FOUND with a message.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 6 };

fn text(s: String) -> StrBytes {
    StrBytes::from_string(s)
}

/// Answers DescribeGroups.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group_id| {
            let entry = DescribedGroup::default().with_group_id(group_id.clone());
            let entry = if version >= 3 {
                entry.with_authorized_operations(i32::MIN)
            } else {
                entry
            };
            if let Err(error) = broker.groups.owns(group_id.0.as_str()) {
                return entry
                    .with_error_code(error.code())
                    .with_group_state(StrBytes::from_static_str(""));
            }
            if broker.groups.is_consumer_group(group_id.0.as_str()) {
                // KIP-848: ConsumerGroupDescribe describes it.
                let entry = entry
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_group_state(StrBytes::from_static_str(GroupState::Dead.name()));
                return if version >= 6 {
                    entry.with_error_message(Some(text(format!(
                        "group {} is not a classic group",
                        group_id.0.as_str()
                    ))))
                } else {
                    entry
                };
            }
            match broker.groups.describe(group_id.0.as_str()) {
                None if version >= 6 => entry
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(text(format!(
                        "group {} not found",
                        group_id.0.as_str()
                    ))))
                    .with_group_state(StrBytes::from_static_str(GroupState::Dead.name())),
                None => entry.with_group_state(StrBytes::from_static_str(GroupState::Dead.name())),
                Some(d) => {
                    // The assignment and protocol only mean something once the group is stable.
                    let stable = d.state == GroupState::Stable;
                    let members = d
                        .members
                        .into_iter()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(text(m.member_id))
                                .with_client_id(text(m.client_id))
                                .with_client_host(text(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(if stable {
                                    m.assignment
                                } else {
                                    Default::default()
                                });
                            if version >= 4 {
                                member.with_group_instance_id(m.group_instance_id.map(text))
                            } else {
                                member
                            }
                        })
                        .collect();
                    entry
                        .with_group_state(StrBytes::from_static_str(d.state.name()))
                        .with_protocol_type(text(d.protocol_type))
                        .with_protocol_data(text(d.protocol))
                        .with_members(members)
                }
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
