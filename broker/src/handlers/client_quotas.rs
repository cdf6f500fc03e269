//! DescribeClientQuotas (key 48): Runnel has no client quotas (KIP-546's
//! AlterClientQuotas is not served), so every filter matches nothing. Kafka's
//! tools ask it alongside other things: `kafka-configs.sh --describe
//! --entity-type users` lists SCRAM credentials and quotas together.

use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

/// v1 is flexible.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };

/// Answers DescribeClientQuotas: a malformed filter is INVALID_REQUEST, as
/// in Kafka; a valid one matches no quota.
pub(crate) fn describe(request: DescribeClientQuotasRequest) -> DescribeClientQuotasResponse {
    for component in &request.components {
        let entity = component.entity_type.as_str();
        let problem = if !matches!(entity, "user" | "client-id" | "ip") {
            Some(format!("Unexpected quota entity type {entity:?}"))
        } else if !(0..=2).contains(&component.match_type) {
            Some(format!("Unexpected match type {}", component.match_type))
        } else if component.match_type == 0 && component._match.is_none() {
            Some(format!("An exact match of {entity} needs a name"))
        } else {
            None
        };
        if let Some(message) = problem {
            return DescribeClientQuotasResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_entries(None);
        }
    }
    DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
}
