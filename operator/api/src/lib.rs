//! Runnel's custom resource types: the `runnel.dev/v1alpha1` kinds the
//! operator serves, as Rust types from which the CRDs are generated.
//!
//! This crate knows nothing of the Kubernetes client or of tokio (the
//! compiler keeps it so: it depends on `kube` with only the `derive` feature),
//! so it can be used by anything that reads or writes these resources.
//!
//! # Layout
//!
//! - [`cluster`]: `Cluster`, a set of brokers spread over zones;
//! - [`topic`]: `Topic`, a topic in a cluster's brokers;
//! - [`consumer_group`]: `ConsumerGroup`, an observed consumer group, with
//!   lag in its status and an offset-reset request in its spec;
//! - [`condition`]: the `conditions` every status carries, and the reasons.

pub mod cluster;
pub mod condition;
pub mod consumer_group;
pub mod topic;
pub mod user;

pub use cluster::{
    AuthenticationType, Cluster, ClusterAuthentication, ClusterAuthorization, ClusterSpec,
    ClusterStatus, ClusterTls, StorageSpec,
};
pub use condition::Condition;
pub use consumer_group::{
    ConsumerGroup, ConsumerGroupSpec, ConsumerGroupStatus, PartitionLag, ResetOffsets, ResetTo,
};
pub use topic::{Topic, TopicSpec, TopicStatus};
pub use user::{
    AclOperation, AclPatternType, AclResource, AclResourceType, AclRule, AclRuleType,
    ScramMechanism, SecretKeyRef, User, UserAuthentication, UserAuthorization, UserQuotas,
    UserSpec, UserStatus,
};

/// The API group of every Runnel resource.
pub const GROUP: &str = "runnel.dev";

/// The API version of every Runnel resource.
pub const VERSION: &str = "v1alpha1";

/// `runnel.dev/managed: "false"` on a resource stops the operator managing
/// what it names (a Topic's topic is then neither changed nor deleted).
pub const MANAGED_ANNOTATION: &str = "runnel.dev/managed";

/// Whether a resource's annotations leave it managed (anything but
/// `runnel.dev/managed: "false"` does).
pub fn is_managed(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(MANAGED_ANNOTATION))
        .is_none_or(|v| v != "false")
}
