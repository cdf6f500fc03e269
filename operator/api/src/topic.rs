//! `Topic`: a topic in a Cluster's brokers.
//!
//! ```yaml
//! apiVersion: runnel.dev/v1alpha1
//! kind: Topic
//! metadata: { name: orders }
//! spec:
//!   cluster: events
//!   partitions: 6
//!   replicas: 3
//!   config: { retention.ms: "86400000" }
//! ```

// kube's `printcolumn(name = .., type_ = ..)` repeats keys across columns,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A topic in a Cluster's brokers, with the partition count, replication
/// factor and topic configs of its spec.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    derive = "PartialEq",
    shortname = "rntopic",
    category = "runnel",
    doc = "A topic in a Runnel cluster's brokers.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topicName"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
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
pub struct TopicSpec {
    /// The Cluster (in this namespace) the topic lives in.
    #[schemars(length(min = 1))]
    pub cluster: String,
    /// The topic's name in the brokers; the resource's name when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_name: Option<String>,
    /// How many partitions. It can grow; Kafka cannot take partitions away.
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: i32,
    /// How many replicas each partition has, in distinct zones where there
    /// are enough. Changing it on an existing topic reassigns its partitions
    /// (replicas are added in zones the partition does not use yet, or
    /// dropped keeping the first, preferred leader); `Ready` is False with
    /// reason `ReplicasChanging` until the new replicas are in sync.
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: i32,
    /// Topic configs (`retention.ms`, `cleanup.policy`, ...). Keys set here
    /// are kept at these values; other keys are left to the brokers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
}

/// What the operator last saw of a Topic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and its reason.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The topic's name in the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic's partition count in the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// The topic's replication factor in the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

impl Topic {
    /// The topic's name in the brokers.
    pub fn topic_name(&self) -> &str {
        match &self.spec.topic_name {
            Some(name) => name,
            None => self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
}
