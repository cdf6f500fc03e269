//! DeleteGroups (key 42).

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::protocol::VersionRange;

use crate::broker::Broker;

/// v2 is flexible.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Answers DeleteGroups: only empty groups go, with their offsets.
pub(crate) fn handle(broker: &Arc<Broker>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let results = request
        .groups_names
        .into_iter()
        .map(|group_id| {
            let error = broker
                .groups
                .delete_group(&broker.topics, group_id.0.as_str());
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    DeleteGroupsResponse::default().with_results(results)
}
