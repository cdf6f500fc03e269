//! Safe scale-down: a broker leaves only once it holds no partition replica.
//!
//! Lowering `spec.brokers` removes the highest ordinals of the zones'
//! StatefulSets. Removing a broker that still holds replicas would leave
//! its partitions under-replicated for good, or offline (and their records
//! out of reach) where it held the only replica. So while any broker to be
//! removed holds a replica, its StatefulSet keeps its current size and the
//! Cluster reports `ScaleDown=False` (`BrokersHoldReplicas`) naming the
//! brokers and partitions; the user moves the replicas (for example with
//! `kafka-reassign-partitions`) and the scale-down then proceeds. The
//! annotation `runnel.dev/skip-scale-down-check: "true"` removes brokers
//! regardless, as Strimzi's `strimzi.io/skip-broker-scaledown-check`.
//!
//! The controller quorum's voters are the first [`MAX_VOTERS`] brokers and
//! the voter set is fixed, so a scale-down that would remove a voter waits
//! too (`VotersWouldLeave`), annotation or not.

use runnel_operator_api::Cluster;

use super::names::{brokers_in_zone, MAX_VOTERS, NODE_ID_BASE};
use crate::admin::ClusterMetadata;

/// The annotation that skips the check.
pub const SKIP_CHECK_ANNOTATION: &str = "runnel.dev/skip-scale-down-check";

/// How many held partitions a message names before it says "and N more".
const NAMED_PARTITIONS: usize = 5;

/// Whether the Cluster asks to skip the check.
pub fn check_skipped(cluster: &Cluster) -> bool {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CHECK_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The node ids `spec.brokers` removes, given each zone's StatefulSet's
/// current size (`current[i]` for zone `i`; 0 when it does not exist yet).
pub fn removed_brokers(cluster: &Cluster, current: &[i32]) -> Vec<i32> {
    let mut removed = Vec::new();
    for (index, &have) in current.iter().enumerate() {
        let zone_base = NODE_ID_BASE * (i32::try_from(index).unwrap_or(i32::MAX - 1) + 1);
        let want = brokers_in_zone(cluster, index);
        removed.extend((want..have).map(|ordinal| zone_base + ordinal));
    }
    removed
}

/// Why a scale-down to `spec.brokers` would remove controller voters, if it
/// would: fewer brokers than there are voters now.
pub fn removes_voters(cluster: &Cluster, current: &[i32]) -> Option<String> {
    let have: i32 = current.iter().sum();
    let voters = have.min(i32::try_from(MAX_VOTERS).unwrap_or(i32::MAX));
    (cluster.spec.brokers < voters).then(|| {
        format!(
            "spec.brokers {} would remove controller voters: the first {voters} brokers form \
             the controller quorum, whose voters are fixed; keep spec.brokers at {voters} or more",
            cluster.spec.brokers
        )
    })
}

/// The partitions (`topic/partition`) with a replica on one of `brokers`.
pub fn partitions_held(meta: &ClusterMetadata, brokers: &[i32]) -> Vec<String> {
    let mut held = Vec::new();
    for (topic, partitions) in &meta.topics {
        for (index, partition) in partitions {
            if partition.replicas.iter().any(|r| brokers.contains(r)) {
                held.push(format!("{topic}/{index}"));
            }
        }
    }
    held
}

/// The `ScaleDown=False` message: which brokers wait, on which partitions.
pub fn held_message(brokers: &[i32], held: &[String]) -> String {
    let ids: Vec<String> = brokers.iter().map(i32::to_string).collect();
    let mut named = held
        .iter()
        .take(NAMED_PARTITIONS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if held.len() > NAMED_PARTITIONS {
        named.push_str(&format!(" and {} more", held.len() - NAMED_PARTITIONS));
    }
    format!(
        "brokers {} are not removed while they hold replicas of {} partitions ({named}): \
         move the replicas to other brokers (kafka-reassign-partitions), or annotate the \
         Cluster {SKIP_CHECK_ANNOTATION}=true to remove them regardless",
        ids.join(", "),
        held.len()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::admin::PartitionInfo;
    use crate::cluster::tests::cluster;

    #[test]
    fn the_highest_ordinals_of_each_zone_are_removed() {
        // Four brokers over three zones: zone-a has two (1000, 1001).
        let c = cluster(3, &["zone-a", "zone-b", "zone-c"]);
        assert_eq!(removed_brokers(&c, &[2, 1, 1]), vec![1001]);
        let c = cluster(1, &["zone-a", "zone-b", "zone-c"]);
        assert_eq!(removed_brokers(&c, &[2, 1, 1]), vec![1001, 2000, 3000]);
        // Growing, or StatefulSets not created yet: nothing is removed.
        let c = cluster(5, &["zone-a", "zone-b", "zone-c"]);
        assert!(removed_brokers(&c, &[2, 1, 1]).is_empty());
        assert!(removed_brokers(&c, &[0, 0, 0]).is_empty());
    }

    #[test]
    fn a_scale_down_below_the_voters_is_refused() {
        let three = cluster(3, &["zone-a", "zone-b", "zone-c"]);
        assert!(removes_voters(&three, &[2, 1, 1]).is_none());
        let two = cluster(2, &["zone-a", "zone-b", "zone-c"]);
        let why = removes_voters(&two, &[1, 1, 1]).expect("refused");
        assert!(
            why.starts_with("spec.brokers 2 would remove controller voters"),
            "{why}"
        );
        // A single broker growing, or a first start: no voter leaves.
        assert!(removes_voters(&three, &[1, 0, 0]).is_none());
        assert!(removes_voters(&two, &[0, 0, 0]).is_none());
        // Two brokers down to one: one of the two voters would leave.
        let one = cluster(1, &["zone-a"]);
        assert!(removes_voters(&one, &[2]).is_some());
    }

    #[test]
    fn partitions_with_a_replica_on_a_removed_broker_hold_it() {
        let partition = |replicas: &[i32]| PartitionInfo {
            leader: replicas[0],
            replicas: replicas.to_vec(),
        };
        let meta = ClusterMetadata {
            topics: BTreeMap::from([
                (
                    "orders".to_owned(),
                    BTreeMap::from([(0, partition(&[1000, 1001])), (1, partition(&[2000, 3000]))]),
                ),
                (
                    "audit".to_owned(),
                    BTreeMap::from([(0, partition(&[1001]))]),
                ),
            ]),
            ..ClusterMetadata::default()
        };
        let held = partitions_held(&meta, &[1001]);
        assert_eq!(held, vec!["audit/0", "orders/0"]);
        assert!(partitions_held(&meta, &[4000]).is_empty());
        let message = held_message(&[1001], &held);
        assert!(message.starts_with("brokers 1001 are not removed while they hold replicas of 2 partitions (audit/0, orders/0)"), "{message}");
    }

    #[test]
    fn the_check_is_skipped_only_by_its_annotation_set_to_true() {
        let mut c = cluster(3, &["zone-a"]);
        assert!(!check_skipped(&c));
        c.metadata.annotations = Some(BTreeMap::from([(
            SKIP_CHECK_ANNOTATION.to_owned(),
            "yes".to_owned(),
        )]));
        assert!(!check_skipped(&c));
        c.metadata.annotations = Some(BTreeMap::from([(
            SKIP_CHECK_ANNOTATION.to_owned(),
            "true".to_owned(),
        )]));
        assert!(check_skipped(&c));
    }
}
