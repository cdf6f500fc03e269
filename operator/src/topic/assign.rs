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
//! New partitions are assigned by [`assign_replicas`]; existing partitions
//! are never moved, only resized by [`resize_replicas`] when `spec.replicas`
//! changes, which keeps every replica it can and follows the same rules for
//! the ones it adds or drops.

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
    let wanted = replica_count(brokers, replicas)?;
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

/// New replica lists for the existing partitions whose replica count is not
/// `replicas`, as `(partition, replicas)`; partitions for which `skip` holds
/// (being moved already) are left alone.
///
/// A partition that grows keeps its replicas in order (the leader first) and
/// gains brokers in racks it does not use yet, the least loaded first
/// (replicas of this topic, counted as the lists change), ties broken as in
/// [`assign_replicas`]. A partition that shrinks keeps its first replica
/// (the preferred leader) and drops, in turn, a broker that is not in the
/// cluster's metadata, then one whose rack another replica shares, then the
/// most loaded, then the last.
pub fn resize_replicas(
    brokers: &[Placement],
    existing: &[Vec<i32>],
    replicas: i32,
    skip: impl Fn(usize) -> bool,
) -> Result<Vec<(i32, Vec<i32>)>, AssignError> {
    let wanted = replica_count(brokers, replicas)?;
    let order = interleaved(brokers);
    let n = order.len();
    let rack_of = |id: i32| -> String {
        brokers
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.rack.clone().unwrap_or_else(|| format!("\0broker-{id}")))
            .unwrap_or_else(|| format!("\0gone-{id}"))
    };
    let mut load: BTreeMap<i32, usize> = BTreeMap::new();
    for id in existing.iter().flatten() {
        *load.entry(*id).or_default() += 1;
    }
    let mut out = Vec::new();
    for (p, current) in existing.iter().enumerate() {
        if current.len() == wanted || skip(p) {
            continue;
        }
        let mut list = current.clone();
        let rank = |id: i32| -> usize {
            let pos = order.iter().position(|b| *b == id).unwrap_or(0);
            (pos + n - p % n) % n
        };
        while list.len() < wanted {
            let used: BTreeSet<String> = list.iter().map(|id| rack_of(*id)).collect();
            let next = *order
                .iter()
                .filter(|id| !list.contains(id))
                .min_by_key(|id| {
                    (
                        used.contains(&rack_of(**id)),
                        load.get(*id).copied().unwrap_or(0),
                        rank(**id),
                    )
                })
                .expect("replicas <= brokers leaves a broker to add");
            *load.entry(next).or_default() += 1;
            list.push(next);
        }
        while list.len() > wanted {
            let gone = |id: i32| !brokers.iter().any(|b| b.id == id);
            // The first replica always stays: a broker missing from the
            // metadata may only be restarting (moving replicas off brokers
            // that left is the Cluster's scale-down).
            let victim = (1..list.len())
                .max_by_key(|i| {
                    let id = list[*i];
                    let shared = list
                        .iter()
                        .filter(|other| **other != id && rack_of(**other) == rack_of(id))
                        .count()
                        > 0;
                    (gone(id), shared, load.get(&id).copied().unwrap_or(0), *i)
                })
                .expect("a list longer than wanted >= 1 has a replica to drop");
            let id = list.remove(victim);
            if let Some(count) = load.get_mut(&id) {
                *count = count.saturating_sub(1);
            }
        }
        out.push((i32::try_from(p).unwrap_or(i32::MAX), list));
    }
    Ok(out)
}

/// `replicas` as a count the brokers can hold: at least one, at most one
/// per broker.
fn replica_count(brokers: &[Placement], replicas: i32) -> Result<usize, AssignError> {
    let wanted = usize::try_from(replicas)
        .ok()
        .filter(|w| *w >= 1)
        .ok_or(AssignError::InvalidReplicas(replicas))?;
    if wanted > brokers.len() {
        return Err(AssignError::NotEnoughBrokers {
            replicas,
            brokers: brokers.len(),
        });
    }
    Ok(wanted)
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

    #[test]
    fn raising_replicas_keeps_the_leader_and_adds_other_racks() {
        let b = brokers(&[("a", &[1, 4]), ("b", &[2, 5]), ("c", &[3, 6])]);
        let existing = vec![vec![1], vec![2], vec![3], vec![4]];
        let moves = resize_replicas(&b, &existing, 3, |_| false).expect("resizable");
        assert_eq!(moves.len(), 4);
        let mut load: BTreeMap<i32, usize> = BTreeMap::new();
        for (p, list) in &moves {
            assert_eq!(list[0], existing[*p as usize][0], "leader first: {list:?}");
            assert_eq!(racks_of(&b, list).len(), 3, "{list:?}");
            for r in list {
                *load.entry(*r).or_default() += 1;
            }
        }
        let (min, max) = (load.values().min(), load.values().max());
        assert!(max.zip(min).is_some_and(|(x, n)| x - n <= 1), "{load:?}");
    }

    #[test]
    fn lowering_replicas_drops_gone_brokers_then_shared_racks_and_keeps_the_leader() {
        let b = brokers(&[("a", &[1, 4]), ("b", &[2]), ("c", &[3])]);
        let existing = vec![vec![1, 4, 2], vec![2, 9, 3], vec![9, 1, 2], vec![3, 1, 2]];
        let moves = resize_replicas(&b, &existing, 2, |p| p == 3).expect("resizable");
        assert_eq!(
            moves,
            vec![(0, vec![1, 2]), (1, vec![2, 3]), (2, vec![9, 1])],
            "partition 3 is skipped; 9 is missing from the metadata but a first replica stays"
        );
    }

    #[test]
    fn resizing_checks_the_count() {
        let b = brokers(&[("a", &[1]), ("b", &[2])]);
        assert_eq!(
            resize_replicas(&b, &[vec![1]], 3, |_| false),
            Err(AssignError::NotEnoughBrokers {
                replicas: 3,
                brokers: 2
            })
        );
        assert_eq!(
            resize_replicas(&b, &[vec![1]], 0, |_| false),
            Err(AssignError::InvalidReplicas(0))
        );
        assert_eq!(resize_replicas(&b, &[vec![1, 2]], 2, |_| false), Ok(vec![]));
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
            // Resizing to any count the cluster holds keeps each partition's
            // leader and gives distinct brokers across as many racks as it can.
            for target in 1..=b.len() as i32 {
                let moves = resize_replicas(&b, &first, target, |_| false).expect("resizable");
                for (p, list) in &moves {
                    let before = &first[*p as usize];
                    prop_assert_eq!(list.len(), target as usize);
                    prop_assert_eq!(list[0], before[0]);
                    prop_assert_eq!(list.iter().collect::<BTreeSet<_>>().len(), target as usize);
                    let kept = racks_of(&b, before).len().min(target as usize);
                    prop_assert!(racks_of(&b, list).len() >= kept.min(racks),
                        "{:?} -> {:?}", before, list);
                }
                if target == replicas {
                    prop_assert!(moves.is_empty());
                }
            }
        }
    }
}
