//! ListGroups (key 16).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::broker::Broker;

/// v4 filters by state, v5 by type ("classic" or "consumer", KIP-848).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 5 };

/// Answers ListGroups.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_lowercase()))
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            let entry = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let entry = if version >= 4 {
                entry.with_group_state(StrBytes::from_static_str(g.state))
            } else {
                entry
            };
            if version >= 5 {
                entry.with_group_type(StrBytes::from_static_str(g.group_type))
            } else {
                entry
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
