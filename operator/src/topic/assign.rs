//! Rack-aware replica assignment: which brokers hold each new partition.
//!
//! The rules, in order of precedence:
//! 1. a partition's replicas are distinct brokers;
//! 2. they are in distinct racks while there are racks left unused by the
//!    partition (so with as many racks as replicas, every replica is in its
//!    own rack);
//! 3. leaders (the first replica) are spread evenly: a new partition's
//!    leader is a broker that leads the fewest partitions, counting the
//!    existing ones;
//! 4. replicas are spread evenly, the same way;
//! 5. ties go to brokers in rack-interleaved order (`a1, b1, c1, a2, ...`),
//!    rotated per partition, so equal clusters get equal assignments.
//!
//! Existing partitions are never moved: only new partitions are assigned.

use std::collections::{BTreeMap, BTreeSet};

/// A broker as the assignment sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The broker's node id.
    pub id: i32,
    /// Its rack; a broker without one is a rack of its own.
    pub rack: Option<String>,
}

/// Why no assignment can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignError {
    /// More replicas than brokers.
    #[error("{replicas} replicas need {replicas} brokers, the cluster has {brokers}")]
    NotEnoughBrokers {
        /// Replicas asked for.
        replicas: i32,
        /// Brokers there are.
        brokers: usize,
    },
    /// Fewer than one replica.
    #[error("replicas must be at least 1, not {0}")]
    InvalidReplicas(i32),
}

/// The replica lists of partitions `existing.len()..partitions`, given the
/// brokers and the replica lists of the partitions that exist. Returns an
/// empty list when `partitions <= existing.len()`.
pub fn assign_replicas(
    brokers: &[Placement],
    partitions: i32,
    replicas: i32,
    existing: &[Vec<i32>],
) -> Result<Vec<Vec<i32>>, AssignError> {
    if replicas < 1 {
        return Err(AssignError::InvalidReplicas(replicas));
    }
    let wanted = usize::try_from(replicas).map_err(|_| AssignError::InvalidReplicas(replicas))?;
    if wanted > brokers.len() {
        return Err(AssignError::NotEnoughBrokers {
            replicas,
            brokers: brokers.len(),
        });
    }
    let total = usize::try_from(partitions).unwrap_or(0);
    if total <= existing.len() {
        return Ok(Vec::new());
    }

    let order = interleaved(brokers);
    let rack_of: BTreeMap<i32, String> = brokers
        .iter()
        .map(|b| {
            let rack = b
                .rack
                .clone()
                .unwrap_or_else(|| format!("\0broker-{}", b.id));
            (b.id, rack)
        })
        .collect();
    let mut leaders: BTreeMap<i32, usize> = order.iter().map(|id| (*id, 0)).collect();
    let mut load: BTreeMap<i32, usize> = leaders.clone();
    for partition in existing {
        if let Some(count) = partition.first().and_then(|l| leaders.get_mut(l)) {
            *count += 1;
        }
        for replica in partition {
            if let Some(count) = load.get_mut(replica) {
                *count += 1;
            }
        }
    }

    let n = order.len();
    let mut out = Vec::with_capacity(total - existing.len());
    for p in existing.len()..total {
        // Position of each broker in the interleaved order, rotated by p.
        let rank = |id: i32| -> usize {
            let pos = order.iter().position(|b| *b == id).unwrap_or(0);
            (pos + n - p % n) % n
        };
        let leader = *order
            .iter()
            .min_by_key(|id| (leaders[id], load[id], rank(**id)))
            .expect("there is at least one broker, as replicas >= 1 <= brokers");
        let mut chosen = vec![leader];
        let mut racks: BTreeSet<&str> = BTreeSet::from([rack_of[&leader].as_str()]);
        while chosen.len() < wanted {
            let next = *order
                .iter()
                .filter(|id| !chosen.contains(id))
                .min_by_key(|id| {
                    let after_leader = (rank(**id) + n - rank(leader)) % n;
                    (racks.contains(rack_of[id].as_str()), load[id], after_leader)
                })
                .expect("replicas <= brokers leaves a broker to choose");
            racks.insert(rack_of[&next].as_str());
            chosen.push(next);
        }
        for id in &chosen {
            *load.get_mut(id).expect("every broker has a load") += 1;
        }
        *leaders.get_mut(&leader).expect("every broker has a count") += 1;
        out.push(chosen);
    }
    Ok(out)
}

/// Broker ids ordered rack by rack in turn: the first broker of each rack
/// (racks by name, brokers by id), then the second of each, and so on.
fn interleaved(brokers: &[Placement]) -> Vec<i32> {
    let mut by_rack: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for b in brokers {
        let rack = b
            .rack
            .clone()
            .unwrap_or_else(|| format!("\0broker-{}", b.id));
        by_rack.entry(rack).or_default().push(b.id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| by_rack.values().filter_map(move |ids| ids.get(i).copied()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(racks: &[(&str, &[i32])]) -> Vec<Placement> {
        racks
            .iter()
            .flat_map(|(rack, ids)| {
                ids.iter().map(|id| Placement {
                    id: *id,
                    rack: Some((*rack).to_owned()),
                })
            })
            .collect()
    }

    fn racks_of(b: &[Placement], replicas: &[i32]) -> BTreeSet<String> {
        replicas
            .iter()
            .map(|r| {
                b.iter()
                    .find(|x| x.id == *r)
                    .and_then(|x| x.rack.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn leader_counts(all: &[Vec<i32>]) -> BTreeMap<i32, usize> {
        let mut m = BTreeMap::new();
        for p in all {
            *m.entry(p[0]).or_default() += 1;
        }
        m
    }

    #[test]
    fn three_racks_three_replicas_every_partition_spans_every_rack() {
        let b = brokers(&[("zone-a", &[1]), ("zone-b", &[2]), ("zone-c", &[3])]);
        let a = assign_replicas(&b, 6, 3, &[]).expect("assignable");
        assert_eq!(a.len(), 6);
        for p in &a {
            assert_eq!(racks_of(&b, p).len(), 3, "{p:?}");
        }
        assert_eq!(leader_counts(&a), BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    }

    #[test]
    fn two_brokers_per_rack_balances_leaders_and_load() {
        let b = brokers(&[("a", &[1, 4]), ("b", &[2, 5]), ("c", &[3, 6])]);
        let a = assign_replicas(&b, 12, 3, &[]).expect("assignable");
        for p in &a {
            assert_eq!(racks_of(&b, p).len(), 3, "{p:?}");
        }
        assert!(leader_counts(&a).values().all(|c| *c == 2), "{a:?}");
        let mut load: BTreeMap<i32, usize> = BTreeMap::new();
        for r in a.iter().flatten() {
            *load.entry(*r).or_default() += 1;
        }
        assert!(load.values().all(|c| *c == 6), "{load:?}");
    }

    #[test]
    fn fewer_racks_than_replicas_still_uses_every_rack() {
        let b = brokers(&[("a", &[1, 3]), ("b", &[2])]);
        let a = assign_replicas(&b, 3, 3, &[]).expect("assignable");
        for p in &a {
            assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), 3);
            assert_eq!(racks_of(&b, p).len(), 2);
        }
    }

    #[test]
    fn more_replicas_than_brokers_is_an_error() {
        let b = brokers(&[("a", &[1]), ("b", &[2])]);
        assert_eq!(
            assign_replicas(&b, 3, 3, &[]),
            Err(AssignError::NotEnoughBrokers {
                replicas: 3,
                brokers: 2
            })
        );
        assert_eq!(
            assign_replicas(&b, 3, 0, &[]),
            Err(AssignError::InvalidReplicas(0))
        );
    }

    #[test]
    fn new_partitions_go_to_brokers_leading_least_and_old_ones_stay() {
        let b = brokers(&[("a", &[1]), ("b", &[2]), ("c", &[3])]);
        let existing = vec![vec![1, 2, 3], vec![1, 3, 2]];
        let a = assign_replicas(&b, 4, 3, &existing).expect("assignable");
        assert_eq!(a.len(), 2, "only the new partitions are returned");
        let leaders: BTreeSet<i32> = a.iter().map(|p| p[0]).collect();
        assert_eq!(leaders, BTreeSet::from([2, 3]));
        assert!(assign_replicas(&b, 2, 3, &existing)
            .expect("nothing to do")
            .is_empty());
    }

    #[test]
    fn brokers_without_racks_are_racks_of_their_own() {
        let b = vec![
            Placement { id: 1, rack: None },
            Placement { id: 2, rack: None },
        ];
        let a = assign_replicas(&b, 2, 2, &[]).expect("assignable");
        assert_eq!(leader_counts(&a), BTreeMap::from([(1, 1), (2, 1)]));
    }

    proptest! {
        #[test]
        fn assignments_keep_every_rule(
            rack_sizes in proptest::collection::vec(1usize..4, 1..5),
            partitions in 1i32..40,
            replicas in 1i32..5,
            existing_count in 0usize..5,
        ) {
            let mut b = Vec::new();
            let mut id = 1;
            for (r, size) in rack_sizes.iter().enumerate() {
                for _ in 0..*size {
                    b.push(Placement { id, rack: Some(format!("rack-{r}")) });
                    id += 1;
                }
            }
            let result = assign_replicas(&b, partitions, replicas, &[]);
            if replicas as usize > b.len() {
                prop_assert!(result.is_err());
                return Ok(());
            }
            let first = result.expect("assignable");
            prop_assert_eq!(first.len(), partitions as usize);
            let racks = rack_sizes.len();
            for p in &first {
                prop_assert_eq!(p.iter().collect::<BTreeSet<_>>().len(), replicas as usize);
                prop_assert_eq!(racks_of(&b, p).len(), (replicas as usize).min(racks));
            }
            let counts = leader_counts(&first);
            let max = counts.values().max().copied().unwrap_or(0);
            let min = if counts.len() < b.len() { 0 } else { counts.values().min().copied().unwrap_or(0) };
            prop_assert!(max - min <= 1, "leaders {:?}", counts);
            // Growing keeps the old partitions and stays balanced.
            let existing: Vec<Vec<i32>> = first.iter().take(existing_count).cloned().collect();
            let more = assign_replicas(&b, existing.len() as i32 + 5, replicas, &existing)
                .expect("assignable");
            prop_assert_eq!(more.len(), 5);
        }
    }
}
