//! Safe scale-down: a broker leaves only once it holds no partition replica.
//!
//! Lowering `spec.brokers` removes the highest ordinals of the zones'
//! StatefulSets. Removing a broker that still holds replicas would leave
//! its partitions under-replicated for good, or offline (and their records
//! out of reach) where it held the only replica. So while any broker to be
//! removed holds a replica, its StatefulSet keeps its current size, the
//! operator moves the replicas to the remaining brokers
//! (AlterPartitionReassignments, planned by [`plan_drain`]) and the Cluster
//! reports `ScaleDown=False` (`MovingReplicas`); once the brokers hold
//! nothing, the StatefulSets shrink and the condition goes. When the
//! remaining brokers cannot hold every replica (a topic with more replicas
//! than brokers would remain) nothing is moved and the reason is
//! `BrokersHoldReplicas`, naming the partitions. The annotation
//! `runnel.dev/skip-scale-down-check: "true"` removes brokers regardless, as
//! Strimzi's `strimzi.io/skip-broker-scaledown-check`.
//!
//! The controller quorum's voters are fixed when the Cluster is created
//! (the ConfigMap's `controller.voters`), so a scale-down that would remove
//! a voter waits too (`VotersWouldLeave`), annotation or not.

use runnel_operator_api::Cluster;

use super::names::{brokers_in_zone, NODE_ID_BASE};
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

/// Why removing `removed` would take controller voters away, if it would:
/// `voters` is the quorum as the ConfigMap names it (`ID@HOST:PORT,...`).
pub fn removes_voters(removed: &[i32], voters: &str) -> Option<String> {
    let leaving: Vec<String> = voter_ids(voters)
        .into_iter()
        .filter(|id| removed.contains(id))
        .map(|id| id.to_string())
        .collect();
    (!leaving.is_empty()).then(|| {
        format!(
            "brokers {} are controller voters, and the voter set is fixed when the Cluster is \
             created: keep spec.brokers high enough to keep them",
            leaving.join(", ")
        )
    })
}

/// The node ids of `ID@HOST:PORT,...`.
pub fn voter_ids(voters: &str) -> Vec<i32> {
    voters
        .split(',')
        .filter_map(|v| v.split('@').next()?.trim().parse().ok())
        .collect()
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

/// A partition move: topic, partition, the replicas it should end up with.
pub type Move = (String, i32, Vec<i32>);

/// Plans moving every replica off `removed`, for partitions not in
/// `in_progress`: a removed broker's place in a replica list goes to a
/// remaining live broker not already in it, one in the removed broker's rack
/// when there is one, else the one holding the fewest replicas (lowest id on
/// a tie). Errs, naming them, when some partition has more replicas than
/// brokers would remain.
pub fn plan_drain(
    meta: &ClusterMetadata,
    removed: &[i32],
    in_progress: &[(String, i32)],
) -> Result<Vec<Move>, String> {
    let remaining: Vec<&crate::admin::BrokerInfo> = meta
        .brokers
        .iter()
        .filter(|b| !removed.contains(&b.id))
        .collect();
    let rack_of = |id: i32| {
        meta.brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    let mut load: std::collections::BTreeMap<i32, usize> =
        remaining.iter().map(|b| (b.id, 0)).collect();
    for partitions in meta.topics.values() {
        for p in partitions.values() {
            for r in &p.replicas {
                if let Some(n) = load.get_mut(r) {
                    *n += 1;
                }
            }
        }
    }
    let mut moves = Vec::new();
    let mut stuck = Vec::new();
    for (topic, partitions) in &meta.topics {
        for (&index, p) in partitions {
            if !p.replicas.iter().any(|r| removed.contains(r))
                || in_progress.iter().any(|(t, i)| t == topic && *i == index)
            {
                continue;
            }
            let mut target = p.replicas.clone();
            let mut complete = true;
            for slot in 0..target.len() {
                let gone = target[slot];
                if !removed.contains(&gone) {
                    continue;
                }
                let rack = rack_of(gone);
                let pick = remaining
                    .iter()
                    .filter(|b| !target.contains(&b.id))
                    .min_by_key(|b| (rack.is_some() && b.rack != rack, load[&b.id], b.id));
                match pick {
                    Some(b) => {
                        target[slot] = b.id;
                        *load.entry(b.id).or_default() += 1;
                    }
                    None => complete = false,
                }
            }
            if complete {
                moves.push((topic.clone(), index, target));
            } else {
                stuck.push(format!("{topic}/{index} ({} replicas)", p.replicas.len()));
            }
        }
    }
    if stuck.is_empty() {
        Ok(moves)
    } else {
        Err(format!(
            "{} remaining brokers cannot hold every replica of {}: lower those topics' \
             replicas or keep more brokers",
            remaining.len(),
            stuck.join(", ")
        ))
    }
}

/// Which brokers hold which partitions, for the `ScaleDown=False` message:
/// "brokers 1001 hold replicas of 2 partitions (audit/0, orders/0)".
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
        "brokers {} hold replicas of {} partitions ({named})",
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
    fn a_scale_down_that_removes_a_voter_is_refused() {
        let voters = "1000@a-0.b.ns.svc:9093,2000@b-0.b.ns.svc:9093,3000@c-0.b.ns.svc:9093";
        assert_eq!(voter_ids(voters), vec![1000, 2000, 3000]);
        assert!(removes_voters(&[1001], voters).is_none());
        let why = removes_voters(&[1001, 3000], voters).expect("refused");
        assert!(
            why.starts_with("brokers 3000 are controller voters"),
            "{why}"
        );
        assert!(removes_voters(&[], voters).is_none());
    }

    #[test]
    fn partitions_with_a_replica_on_a_removed_broker_hold_it() {
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
        assert_eq!(
            message,
            "brokers 1001 hold replicas of 2 partitions (audit/0, orders/0)"
        );
    }

    fn partition(replicas: &[i32]) -> PartitionInfo {
        PartitionInfo {
            leader: replicas[0],
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
        }
    }

    fn broker(id: i32, rack: &str) -> crate::admin::BrokerInfo {
        crate::admin::BrokerInfo {
            id,
            addr: format!("b{id}:9092"),
            rack: Some(rack.to_owned()),
        }
    }

    #[test]
    fn a_drain_moves_each_replica_to_its_rack_or_the_least_loaded_broker() {
        let meta = ClusterMetadata {
            brokers: vec![
                broker(1000, "zone-a"),
                broker(2000, "zone-b"),
                broker(3000, "zone-c"),
                broker(1001, "zone-a"),
            ],
            topics: BTreeMap::from([
                (
                    "orders".to_owned(),
                    BTreeMap::from([
                        (0, partition(&[1001, 2000])),
                        (1, partition(&[2000, 3000])),
                        (2, partition(&[1000, 1001, 3000])),
                    ]),
                ),
                (
                    "audit".to_owned(),
                    BTreeMap::from([(0, partition(&[1001]))]),
                ),
            ]),
            ..ClusterMetadata::default()
        };
        let moves = plan_drain(&meta, &[1001], &[]).expect("a plan");
        // 1001's place keeps its position; zone-a's 1000 is preferred where
        // it is not a replica already, else the least-loaded broker.
        assert_eq!(
            moves,
            vec![
                ("audit".to_owned(), 0, vec![1000]),
                ("orders".to_owned(), 0, vec![1000, 2000]),
                ("orders".to_owned(), 2, vec![1000, 2000, 3000]),
            ]
        );
        // A partition already being moved is not asked again.
        let moves = plan_drain(&meta, &[1001], &[("orders".to_owned(), 0)]).expect("a plan");
        assert!(
            moves.iter().all(|(t, p, _)| !(t == "orders" && *p == 0)),
            "{moves:?}"
        );
        // Three replicas cannot stay on two brokers.
        let why = plan_drain(&meta, &[1001, 3000], &[]).expect_err("stuck");
        assert!(why.contains("orders/2 (3 replicas)"), "{why}");
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
