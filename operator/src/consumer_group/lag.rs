//! Lag and reset decisions: pure functions of what the brokers report.

use std::collections::BTreeMap;

use runnel_operator_api::{ConsumerGroup, PartitionLag};

use crate::admin::{GroupDescription, TopicPartition};

/// Each committed partition's committed offset, end offset and lag.
pub fn partition_lags(
    committed: &BTreeMap<TopicPartition, i64>,
    ends: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionLag> {
    committed
        .iter()
        .filter_map(|(tp, committed)| {
            let end = *ends.get(tp)?;
            Some(PartitionLag {
                topic: tp.0.clone(),
                partition: tp.1,
                committed: *committed,
                end,
                lag: (end - committed).max(0),
            })
        })
        .collect()
}

/// What to do about `spec.resetOffsets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetDecision {
    /// No reset is requested.
    NotRequested,
    /// This generation's reset was applied already.
    AlreadyApplied,
    /// The group has members: wait.
    WaitForEmpty {
        /// How many.
        members: usize,
    },
    /// Apply it now.
    Apply,
}

/// Whether to apply the group's reset request now.
pub fn reset_decision(
    group: &ConsumerGroup,
    description: Option<&GroupDescription>,
) -> ResetDecision {
    if group.spec.reset_offsets.is_none() {
        return ResetDecision::NotRequested;
    }
    let applied = group
        .status
        .as_ref()
        .and_then(|s| s.reset_applied_generation);
    if applied.is_some() && applied == group.metadata.generation {
        return ResetDecision::AlreadyApplied;
    }
    match description {
        Some(d) if d.members > 0 => ResetDecision::WaitForEmpty { members: d.members },
        _ => ResetDecision::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;
    use runnel_operator_api::{ConsumerGroupSpec, ConsumerGroupStatus, ResetOffsets, ResetTo};

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_owned(), p)
    }

    #[test]
    fn lag_is_end_minus_committed_never_negative() {
        let committed = BTreeMap::from([(tp("a", 0), 3), (tp("a", 1), 10), (tp("gone", 0), 1)]);
        let ends = BTreeMap::from([(tp("a", 0), 10), (tp("a", 1), 8)]);
        let lags = partition_lags(&committed, &ends);
        assert_eq!(lags.len(), 2, "partitions with no end offset are left out");
        assert_eq!((lags[0].committed, lags[0].end, lags[0].lag), (3, 10, 7));
        assert_eq!(lags[1].lag, 0);
    }

    fn group(reset: bool, generation: i64, applied: Option<i64>) -> ConsumerGroup {
        ConsumerGroup {
            metadata: ObjectMeta {
                name: Some("billing".into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            spec: ConsumerGroupSpec {
                cluster: "events".into(),
                group_id: None,
                reset_offsets: reset.then(|| ResetOffsets {
                    to: ResetTo::Earliest,
                    topics: vec!["orders".into()],
                    datetime: None,
                    offset: None,
                }),
            },
            status: Some(ConsumerGroupStatus {
                reset_applied_generation: applied,
                ..ConsumerGroupStatus::default()
            }),
        }
    }

    fn described(members: usize) -> GroupDescription {
        GroupDescription {
            state: if members > 0 { "Stable" } else { "Empty" }.into(),
            members,
        }
    }

    #[test]
    fn a_reset_applies_once_per_generation_and_only_to_an_empty_group() {
        assert_eq!(
            reset_decision(&group(false, 1, None), None),
            ResetDecision::NotRequested
        );
        assert_eq!(
            reset_decision(&group(true, 2, None), Some(&described(2))),
            ResetDecision::WaitForEmpty { members: 2 }
        );
        assert_eq!(
            reset_decision(&group(true, 2, None), Some(&described(0))),
            ResetDecision::Apply
        );
        assert_eq!(
            reset_decision(&group(true, 2, None), None),
            ResetDecision::Apply
        );
        assert_eq!(
            reset_decision(&group(true, 2, Some(2)), Some(&described(0))),
            ResetDecision::AlreadyApplied
        );
        assert_eq!(
            reset_decision(&group(true, 3, Some(2)), Some(&described(0))),
            ResetDecision::Apply,
            "a new generation is a new request"
        );
        assert_eq!(group(true, 1, None).group_id(), "billing");
    }
}
