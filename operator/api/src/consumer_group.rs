//! `ConsumerGroup`: an observed consumer group.
//!
//! The resource does not create or own the group: the group exists while
//! its consumers do. The status reports its state, members and lag; the
//! spec's `resetOffsets` is a request, applied once per change of the spec
//! and only while the group has no members.
//!
//! ```yaml
//! apiVersion: runnel.dev/v1alpha1
//! kind: ConsumerGroup
//! metadata: { name: billing }
//! spec:
//!   cluster: events
//!   resetOffsets: { to: earliest, topics: [orders] }
//! ```

// kube's `printcolumn(name = .., type_ = ..)` repeats keys across columns,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A consumer group in a Cluster, observed; optionally a request to reset
/// its committed offsets.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "runnel.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    namespaced,
    status = "ConsumerGroupStatus",
    derive = "PartialEq",
    shortname = "rngroup",
    category = "runnel",
    doc = "A consumer group in a Runnel cluster: its state and lag, and offset resets.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.cluster"),
    printcolumn(name = "Group", type_ = "string", json_path = ".status.groupId"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.lag"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// The Cluster (in this namespace) the group lives in.
    #[schemars(length(min = 1))]
    pub cluster: String,
    /// The group's id in the brokers; the resource's name when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub group_id: Option<String>,
    /// A request to move the group's committed offsets, applied once per
    /// change of the spec while the group has no members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_offsets: Option<ResetOffsets>,
}

/// Where to move a group's committed offsets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.to != 'datetime' || has(self.datetime)",
        "message": "resetOffsets.datetime is required when resetOffsets.to is datetime"
    },
    {
        "rule": "self.to != 'offset' || has(self.offset)",
        "message": "resetOffsets.offset is required when resetOffsets.to is offset"
    }
]))]
pub struct ResetOffsets {
    /// `earliest`, `latest`, `datetime` (the first offset at or after
    /// `datetime`) or `offset` (`offset` on every partition).
    pub to: ResetTo,
    /// The topics whose partitions are reset (every partition of each).
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub topics: Vec<String>,
    /// For `to: datetime`: an RFC 3339 time such as `2024-05-01T00:00:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub datetime: Option<String>,
    /// For `to: offset`: the offset, clamped to each partition's range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub offset: Option<i64>,
}

/// Where a reset moves offsets to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResetTo {
    /// Each partition's log start offset.
    Earliest,
    /// Each partition's end offset.
    Latest,
    /// The first offset whose timestamp is at or after `datetime`.
    Datetime,
    /// A given offset.
    Offset,
}

/// What the operator last saw of a ConsumerGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, and `OffsetsReset` when a reset was requested.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The group's id in the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The group's state as the coordinator reports it (`Empty`, `Stable`,
    /// `PreparingRebalance`, `CompletingRebalance`, `Dead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// How many members the group has.
    #[serde(default)]
    pub members: i32,
    /// The sum of every partition's lag.
    #[serde(default)]
    pub lag: i64,
    /// Committed offset, end offset and lag of each partition the group has
    /// committed to.
    #[serde(default)]
    pub partitions: Vec<PartitionLag>,
    /// The `metadata.generation` whose `resetOffsets` was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_applied_generation: Option<i64>,
    /// When the status was last refreshed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refreshed: Option<String>,
}

/// One partition's position.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset.
    pub committed: i64,
    /// The partition's end offset (high watermark).
    pub end: i64,
    /// `end - committed`, at least 0.
    pub lag: i64,
}

impl ConsumerGroup {
    /// The group's id in the brokers.
    pub fn group_id(&self) -> &str {
        match &self.spec.group_id {
            Some(id) => id,
            None => self.metadata.name.as_deref().unwrap_or_default(),
        }
    }
}
