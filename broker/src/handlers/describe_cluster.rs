//! DescribeCluster (key 60): the brokers and the controller.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;

/// v1 adds the endpoint type; v2 the fenced-broker flag.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Endpoint type 1: brokers (2 would be controllers).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// Answers DescribeCluster.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.identity.node_id))
        .with_cluster_authorized_operations(i32::MIN);
    let response = if version >= 1 {
        response.with_endpoint_type(ENDPOINT_TYPE_BROKERS)
    } else {
        response
    };
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "only broker endpoints (endpoint type 1) are served",
            )));
    }
    let brokers = super::metadata::broker_entries(broker, 1)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    response.with_brokers(brokers)
}
