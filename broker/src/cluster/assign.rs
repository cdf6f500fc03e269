//! Rack-aware replica placement: each partition's replicas on distinct racks
//! where there are enough racks, and leaders (first replicas) spread evenly.
//!
//! Brokers are laid out in a ring that alternates racks (a1 b1 c1 a2 b2 c2 ...).
//! Partition `i` is led by the broker at ring position `i`; its followers are
//! taken walking the ring onwards, preferring racks not yet used. Partitions
//! added later continue the rotation where the existing ones stopped.

use std::collections::BTreeMap;

/// Why replicas cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// More replicas asked for than brokers available.
    #[error(
        "replication factor {replication_factor} is larger than the {brokers} available brokers"
    )]
    NotEnoughBrokers {
        /// What was asked.
        replication_factor: i16,
        /// What there is.
        brokers: usize,
    },
    /// A replication factor below 1.
    #[error("replication factor must be at least 1, got {0}")]
    BadReplicationFactor(i16),
    /// A partition count below 1.
    #[error("number of partitions must be at least 1, got {0}")]
    BadPartitionCount(i32),
    /// An explicit assignment that cannot be used.
    #[error("{0}")]
    BadReplicas(String),
}

/// Places `partitions` new partitions of `replication_factor` replicas over
/// `brokers` (id, rack), after the `existing` partitions' replica lists.
pub fn assign_replicas(
    brokers: &[(i32, Option<String>)],
    partitions: i32,
    replication_factor: i16,
    existing: &[Vec<i32>],
) -> Result<Vec<Vec<i32>>, AssignError> {
    if partitions < 1 {
        return Err(AssignError::BadPartitionCount(partitions));
    }
    if replication_factor < 1 {
        return Err(AssignError::BadReplicationFactor(replication_factor));
    }
    let rf = replication_factor as usize;
    if rf > brokers.len() {
        return Err(AssignError::NotEnoughBrokers {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let ring = rack_alternating(brokers);
    let rack_of: BTreeMap<i32, Option<String>> = brokers.iter().cloned().collect();
    let n = ring.len();
    let mut out = Vec::with_capacity(partitions as usize);
    for i in 0..partitions as usize {
        let index = existing.len() + i;
        let start = index % n;
        // Vary which follower comes second, so a leader's load spreads too.
        let shift = (index / n) % n.max(1);
        let mut replicas = vec![ring[start]];
        let mut racks: Vec<Option<String>> = vec![rack_of[&ring[start]].clone()];
        let candidates: Vec<i32> = (0..n - 1)
            .map(|k| ring[(start + 1 + (k + shift) % (n - 1)) % n])
            .collect();
        for pass in 0..2 {
            for &b in &candidates {
                if replicas.len() == rf {
                    break;
                }
                if replicas.contains(&b) {
                    continue;
                }
                let rack = &rack_of[&b];
                let new_rack = rack.is_none() || !racks.contains(rack);
                if pass == 1 || new_rack {
                    replicas.push(b);
                    racks.push(rack.clone());
                }
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Brokers ordered so consecutive ones are on different racks where possible.
fn rack_alternating(brokers: &[(i32, Option<String>)]) -> Vec<i32> {
    let mut by_rack: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.clone()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let mut ring = Vec::with_capacity(brokers.len());
    let mut round = 0;
    while ring.len() < brokers.len() {
        for ids in by_rack.values() {
            if let Some(id) = ids.get(round) {
                ring.push(*id);
            }
        }
        round += 1;
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    fn racked(n: i32, racks: &[&str]) -> Vec<(i32, Option<String>)> {
        (1..=n)
            .map(|id| (id, Some(racks[(id as usize - 1) % racks.len()].to_string())))
            .collect()
    }

    #[test]
    fn replicas_land_on_distinct_racks_and_leaders_balance() {
        let brokers = racked(6, &["zone-a", "zone-b", "zone-c"]);
        let rack = |id: i32| brokers[id as usize - 1].1.clone();
        let plan = assign_replicas(&brokers, 12, 3, &[]).expect("placeable");
        let mut leaders = BTreeMap::new();
        for replicas in &plan {
            assert_eq!(replicas.len(), 3);
            let racks: std::collections::BTreeSet<_> = replicas.iter().map(|r| rack(*r)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?} shares a rack");
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.len(), 6);
        assert!(leaders.values().all(|n| *n == 2), "{leaders:?}");
    }

    #[test]
    fn new_partitions_continue_the_rotation() {
        let brokers = racked(3, &["a", "b", "c"]);
        let first = assign_replicas(&brokers, 2, 2, &[]).expect("placeable");
        let more = assign_replicas(&brokers, 1, 2, &first).expect("placeable");
        let leaders: Vec<i32> = first.iter().chain(&more).map(|r| r[0]).collect();
        let distinct: std::collections::BTreeSet<_> = leaders.iter().collect();
        assert_eq!(distinct.len(), 3, "{leaders:?}");
    }

    #[test]
    fn fewer_racks_than_replicas_still_places_every_replica() {
        let brokers = racked(4, &["a", "b"]);
        for replicas in assign_replicas(&brokers, 8, 3, &[]).expect("placeable") {
            let distinct: std::collections::BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), 3);
        }
        let unracked: Vec<_> = (1..=3).map(|id| (id, None)).collect();
        assert_eq!(
            assign_replicas(&unracked, 3, 3, &[])
                .expect("placeable")
                .len(),
            3
        );
    }

    #[test]
    fn impossible_requests_are_refused_with_the_reason() {
        let brokers = racked(2, &["a", "b"]);
        assert_eq!(
            assign_replicas(&brokers, 1, 3, &[]),
            Err(AssignError::NotEnoughBrokers {
                replication_factor: 3,
                brokers: 2
            })
        );
        assert!(assign_replicas(&brokers, 0, 1, &[]).is_err());
        assert!(assign_replicas(&brokers, 1, 0, &[]).is_err());
    }
}
