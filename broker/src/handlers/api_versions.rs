//! ApiVersions (key 18): the versions this broker serves, from the registry,
//! and (v3+) the features it supports and has finalized (KIP-584), which
//! `kafka-features.sh describe` and `Admin.describeFeatures` show.

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::SUPPORTED;

/// v3+ is flexible; v4 only widens the request's accepted forms.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(key, range)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(range.min)
                .with_max_version(range.max)
        })
        .collect()
}

/// The features served: `group.version` 1 is the consumer rebalance
/// protocol (KIP-848), finalized on. Runnel's metadata is not Kafka's KRaft
/// log, so it claims no `metadata.version`; and no `transaction.version`
/// (KIP-890 part 2 is not done: producers use the classic protocol).
const FEATURES: &[(&str, i16, i16)] = &[("group.version", 0, 1)];

/// Answers ApiVersions; `epoch` is the metadata version the features are
/// finalized at.
pub(crate) fn handle(_request: ApiVersionsRequest, epoch: u64) -> ApiVersionsResponse {
    let text = |s: &str| kafka_protocol::protocol::StrBytes::from_string(s.to_string());
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(
            FEATURES
                .iter()
                .map(|(name, min, max)| {
                    SupportedFeatureKey::default()
                        .with_name(text(name))
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        )
        .with_finalized_features_epoch(i64::try_from(epoch).unwrap_or(i64::MAX))
        .with_finalized_features(
            FEATURES
                .iter()
                .map(|(name, _, max)| {
                    FinalizedFeatureKey::default()
                        .with_name(text(name))
                        .with_min_version_level(*max)
                        .with_max_version_level(*max)
                })
                .collect(),
        )
}

/// The response to an ApiVersions request of a version not served (KIP-511),
/// sent in the v0 format.
pub(crate) fn unsupported_version() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
