//! `User`: a SASL/SCRAM user of a Cluster whose listener asks for
//! authentication (`spec.authentication`).
//!
//! ```yaml
//! apiVersion: runnel.dev/v1alpha1
//! kind: User
//! metadata: { name: orders-app }
//! spec:
//!   cluster: events
//!   authentication: { type: scram-sha-512 }
//!   # passwordSecret: { name: orders-app-password, key: password }
//!   authorization:            # with the Cluster's spec.authorization
//!     acls:
//!       - resource: { type: topic, name: orders }
//!         operations: [Read, Describe]
//!       - resource: { type: group, name: orders-, patternType: prefix }
//!         operations: [Read]
//!   quotas: { producerByteRate: 1048576, consumerByteRate: 2097152 }
//! ```

// kube's `printcolumn(name = .., type_ = ..)` repeats keys across columns,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A SCRAM user in a Cluster's brokers. Its password comes from
/// `passwordSecret`, or the operator makes one and keeps it in a Secret
/// named after the resource (keys `username`, `password` and
/// `sasl.jaas.config`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "User",
    namespaced,
    status = "UserStatus",
    derive = "PartialEq",
    shortname = "rnuser",
    category = "runnel",
    doc = "A SASL/SCRAM user of a Runnel cluster.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "User", type_ = "string", json_path = ".status.userName"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".status.secret"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The Cluster (in this namespace) the user belongs to; it cannot change.
    #[schemars(
        length(min = 1),
        extend("x-kubernetes-validations" = [{
            "rule": "self == oldSelf",
            "message": "cluster cannot change: delete the User and make it again in the other Cluster"
        }])
    )]
    pub cluster: String,
    /// The user's name in the brokers; the resource's name when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._@-]+$"))]
    pub user_name: Option<String>,
    /// How the user authenticates.
    pub authentication: UserAuthentication,
    /// Where the password is: a key of a Secret in this namespace. When
    /// not set, the operator makes a password and writes it to a Secret
    /// named after the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
    /// What the user may do, when the Cluster checks ACLs
    /// (`spec.authorization` there). The operator keeps the user's ACLs
    /// (principal `User:<userName>`) exactly these, removing any other.
    /// Without this field it leaves the user's ACLs alone, unless it
    /// managed them before: then all of them go, as with the User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
    /// Byte-rate quotas of the user, shared by all its clients on each
    /// broker (Kafka's `users/<userName>` quotas). The operator keeps the
    /// user's quotas exactly these; without this field it leaves them
    /// alone, unless it set them before: then they go, as with the User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

/// A user's quotas; a quota not set is no limit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserQuotas {
    /// Produce bytes per second per broker (`producer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub producer_byte_rate: Option<i64>,
    /// Fetch bytes per second per broker (`consumer_byte_rate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub consumer_byte_rate: Option<i64>,
    /// Partitions created or deleted per second per broker
    /// (`controller_mutation_rate`, KIP-599): CreateTopics, CreatePartitions
    /// and DeleteTopics over it are refused with THROTTLING_QUOTA_EXCEEDED
    /// (older clients are slowed down instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("exclusiveMinimum" = true))]
    pub controller_mutation_rate: Option<f64>,
}

/// A user's ACLs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthorization {
    /// The rules; none means the user may do nothing (but what
    /// `allow.everyone.if.no.acl.found` allows).
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub acls: Vec<AclRule>,
}

/// One rule: operations on a resource, allowed or denied.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.resource.type != 'cluster' || !has(self.resource.name) || self.resource.name == 'kafka-cluster'",
    "message": "the cluster resource is named kafka-cluster (or leave the name out)"
}]))]
pub struct AclRule {
    /// What the rule is about.
    pub resource: AclResource,
    /// The operations.
    #[schemars(length(min = 1, max = 12))]
    pub operations: Vec<AclOperation>,
    /// The client address the rule applies to; `*` (any) when not set.
    #[serde(default = "any_host")]
    #[schemars(length(min = 1, max = 45))]
    pub host: String,
    /// `allow` (the default) or `deny`; a deny wins over any allow.
    #[serde(rename = "type", default)]
    pub kind: AclRuleType,
}

fn any_host() -> String {
    "*".to_owned()
}

/// The resource of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.type == 'cluster' || has(self.name)",
    "message": "name is required for topic, group and transactionalId resources"
}]))]
pub struct AclResource {
    /// `topic`, `group`, `transactionalId` or `cluster`.
    #[serde(rename = "type")]
    pub kind: AclResourceType,
    /// The name, a prefix (`patternType: prefix`), or `*` for all; not
    /// needed for the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,
    /// `literal` (the default) or `prefix`.
    #[serde(default)]
    pub pattern_type: AclPatternType,
}

/// A resource type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    /// A topic.
    Topic,
    /// A consumer group.
    Group,
    /// A transactional id.
    TransactionalId,
    /// The cluster.
    Cluster,
}

/// How a rule's name matches.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPatternType {
    /// The name itself (`*`: every resource of the type).
    #[default]
    Literal,
    /// Every name starting with it.
    Prefix,
}

/// Allow or deny.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclRuleType {
    /// Allows the operations.
    #[default]
    Allow,
    /// Denies them, whatever else allows them.
    Deny,
}

/// An operation, as Kafka names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AclOperation {
    /// Every operation.
    All,
    /// Consume; join a group.
    Read,
    /// Produce.
    Write,
    /// Create topics.
    Create,
    /// Delete topics, records, groups.
    Delete,
    /// Change partitions; cluster changes.
    Alter,
    /// See it.
    Describe,
    /// What brokers do to each other.
    ClusterAction,
    /// Read configs.
    DescribeConfigs,
    /// Change configs.
    AlterConfigs,
    /// Idempotent producing.
    IdempotentWrite,
}

/// How a user authenticates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthentication {
    /// The SCRAM mechanism its credential is made for.
    #[serde(rename = "type")]
    pub kind: ScramMechanism,
}

/// A SCRAM mechanism.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl ScramMechanism {
    /// The mechanism's SASL name.
    pub fn sasl_name(self) -> &'static str {
        match self {
            ScramMechanism::ScramSha256 => "SCRAM-SHA-256",
            ScramMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding the password.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// What the operator last saw of a User.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and its reason.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The user's name in the brokers, as last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    /// The mechanism last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The Secret holding the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The version (`uid/resourceVersion`) of the password's Secret last
    /// applied: a new version applies the credential again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_secret_version: Option<String>,
    /// How many ACLs the operator keeps for the user, as last applied;
    /// not set while it manages none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<i32>,
    /// The quotas last applied; not set while the operator manages none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas: Option<UserQuotas>,
}

impl User {
    /// The user's name in the brokers.
    pub fn user_name(&self) -> &str {
        match &self.spec.user_name {
            Some(name) => name,
            None => self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
}
