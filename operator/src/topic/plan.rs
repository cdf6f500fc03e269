//! What to do to a topic so the brokers match a Topic's spec: a pure
//! function of the spec and of what the brokers report.

use std::collections::BTreeMap;

use super::assign::{assign_replicas, resize_replicas, AssignError, Placement};
use crate::admin::ConfigValue;

/// The topic a spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replicas per partition.
    pub replicas: i32,
    /// Topic configs that must have these values.
    pub config: BTreeMap<String, String>,
}

/// The topic as the brokers report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    /// Each partition's replicas, by partition index (during a reassignment,
    /// as Metadata lists them: the target's and those being removed).
    pub partitions: Vec<Vec<i32>>,
    /// Its configs (see [`ConfigValue::set_on_topic`]).
    pub config: BTreeMap<String, ConfigValue>,
    /// The partitions being reassigned, by partition index.
    pub moving: BTreeMap<i32, Moving>,
}

/// A reassignment in flight, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moving {
    /// Replicas joining.
    pub adding: Vec<i32>,
    /// Replicas leaving once the others are in sync.
    pub removing: Vec<i32>,
}

impl ObservedTopic {
    /// Partition `index`'s replicas once its reassignment (if any) is done.
    fn target(&self, index: usize) -> Vec<i32> {
        let replicas = self.partitions.get(index).cloned().unwrap_or_default();
        match i32::try_from(index).ok().and_then(|i| self.moving.get(&i)) {
            Some(m) => replicas
                .into_iter()
                .filter(|r| !m.removing.contains(r))
                .collect(),
            None => replicas,
        }
    }

    /// The replica count partition 0 has now (without replicas still being
    /// added), which is what the topic's replication factor is until a
    /// change completes.
    pub fn replication_factor(&self) -> Option<i32> {
        let replicas = self.partitions.first()?;
        let adding = self.moving.get(&0).map_or(0, |m| m.adding.len());
        i32::try_from(replicas.len().saturating_sub(adding)).ok()
    }
}

/// One change to make in the brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the topic with these replica lists and configs.
    Create {
        /// One replica list per partition.
        assignment: Vec<Vec<i32>>,
        /// Its configs.
        config: BTreeMap<String, String>,
    },
    /// Grow to `total` partitions; the new ones get `assignment`.
    AddPartitions {
        /// The new partition count.
        total: i32,
        /// The new partitions' replica lists.
        assignment: Vec<Vec<i32>>,
    },
    /// Reassign these partitions to lists of `spec.replicas` brokers.
    ChangeReplicas {
        /// `(partition, replicas)`.
        moves: Vec<(i32, Vec<i32>)>,
    },
    /// Set and remove topic configs.
    AlterConfig {
        /// Keys to set.
        set: BTreeMap<String, String>,
        /// Keys to return to the broker default.
        delete: Vec<String>,
    },
}

/// What the spec asks for and cannot be done, or not yet; reported in `Ready`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// Kafka cannot remove partitions.
    #[error("spec.partitions is {want} but the topic has {have} partitions; Kafka cannot remove partitions (delete and recreate the topic to shrink it)")]
    PartitionDecrease {
        /// In the brokers.
        have: i32,
        /// In the spec.
        want: i32,
    },
    /// More replicas than brokers.
    #[error("spec.replicas is {replicas} but the cluster has only {brokers} brokers")]
    NotEnoughBrokers {
        /// In the spec.
        replicas: i32,
        /// Brokers in the cluster.
        brokers: usize,
    },
    /// Partitions are being reassigned to `spec.replicas` replicas.
    #[error("moving {partitions} partition(s) from {have} to {want} replicas (spec.replicas); ready once the new replicas are in sync")]
    ReplicasChanging {
        /// Partitions not yet at `want`.
        partitions: usize,
        /// The replica count before the change.
        have: i32,
        /// In the spec.
        want: i32,
    },
}

impl Blocked {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        use runnel_operator_api::condition::reason;
        match self {
            Blocked::PartitionDecrease { .. } => reason::PARTITION_DECREASE_NOT_ALLOWED,
            Blocked::NotEnoughBrokers { .. } => reason::NOT_ENOUGH_BROKERS,
            Blocked::ReplicasChanging { .. } => reason::REPLICAS_CHANGING,
        }
    }
}

/// The actions that bring the topic to the spec, and what cannot be done.
/// What can be done is planned even when something cannot (configs are
/// still applied to a topic whose spec asks for fewer partitions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes to make, in order.
    pub actions: Vec<Action>,
    /// Why the topic cannot fully match the spec.
    pub blocked: Option<Blocked>,
}

fn blocked_by(err: AssignError) -> Blocked {
    match err {
        AssignError::NotEnoughBrokers { replicas, brokers } => {
            Blocked::NotEnoughBrokers { replicas, brokers }
        }
        // The schema keeps replicas >= 1; count a bad value as unplaceable.
        AssignError::InvalidReplicas(replicas) => Blocked::NotEnoughBrokers {
            replicas,
            brokers: 0,
        },
    }
}

/// A replication factor change: partitions not being moved whose replica
/// count differs from the spec are resized; partitions being moved to
/// another count (or to one the spec no longer asks for) are waited for,
/// and resized afterwards if need be. A move that keeps the count (the
/// Cluster's scale-down) does not hold the topic back.
fn plan_replicas(
    desired: &DesiredTopic,
    observed: &ObservedTopic,
    brokers: &[Placement],
    plan: &mut Plan,
) {
    let want = usize::try_from(desired.replicas).unwrap_or(0);
    let targets: Vec<Vec<i32>> = (0..observed.partitions.len())
        .map(|i| observed.target(i))
        .collect();
    let waiting = observed
        .moving
        .iter()
        .filter(|(i, m)| {
            m.adding.len() != m.removing.len()
                || usize::try_from(**i)
                    .ok()
                    .and_then(|i| targets.get(i))
                    .is_some_and(|t| t.len() != want)
        })
        .count();
    let off = targets
        .iter()
        .enumerate()
        .any(|(i, t)| t.len() != want && !observed.moving.contains_key(&(i as i32)));
    let mut changing = waiting;
    if off {
        let moving = |i: usize| observed.moving.contains_key(&(i as i32));
        match resize_replicas(brokers, &targets, desired.replicas, moving) {
            Ok(moves) => {
                changing += moves.len();
                plan.actions.push(Action::ChangeReplicas { moves });
            }
            Err(e) => {
                plan.blocked = Some(blocked_by(e));
                return;
            }
        }
    }
    if changing > 0 {
        plan.blocked = Some(Blocked::ReplicasChanging {
            partitions: changing,
            have: observed.replication_factor().unwrap_or(desired.replicas),
            want: desired.replicas,
        });
    }
}

/// Plans `desired` against `observed` (`None`: the topic does not exist)
/// on `brokers`.
pub fn plan_topic(
    desired: &DesiredTopic,
    observed: Option<&ObservedTopic>,
    brokers: &[Placement],
) -> Plan {
    let Some(observed) = observed else {
        return match assign_replicas(brokers, desired.partitions, desired.replicas, &[]) {
            Ok(assignment) => Plan {
                actions: vec![Action::Create {
                    assignment,
                    config: desired.config.clone(),
                }],
                blocked: None,
            },
            Err(e) => Plan {
                actions: Vec::new(),
                blocked: Some(blocked_by(e)),
            },
        };
    };

    let mut plan = Plan::default();
    let have = i32::try_from(observed.partitions.len()).unwrap_or(i32::MAX);
    if desired.partitions < have {
        plan.blocked = Some(Blocked::PartitionDecrease {
            have,
            want: desired.partitions,
        });
    } else {
        // The replica count first: partitions are added once every existing
        // one has `spec.replicas` (Kafka refuses new partitions whose
        // replica lists are not as long as partition 0's).
        plan_replicas(desired, observed, brokers, &mut plan);
        if desired.partitions > have && plan.blocked.is_none() {
            match assign_replicas(
                brokers,
                desired.partitions,
                desired.replicas,
                &observed.partitions,
            ) {
                Ok(assignment) => plan.actions.push(Action::AddPartitions {
                    total: desired.partitions,
                    assignment,
                }),
                Err(e) => plan.blocked = Some(blocked_by(e)),
            }
        }
    }

    let set: BTreeMap<String, String> = desired
        .config
        .iter()
        .filter(|(k, v)| {
            observed
                .config
                .get(*k)
                .is_none_or(|c| !c.set_on_topic || c.value.as_deref() != Some(v.as_str()))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = observed
        .config
        .iter()
        .filter(|(k, c)| {
            c.set_on_topic
                && !desired.config.contains_key(*k)
                && !LEFT_TO_REASSIGNMENT_TOOLS.contains(&k.as_str())
        })
        .map(|(k, _)| k.clone())
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.actions.push(Action::AlterConfig { set, delete });
    }
    plan
}

/// Topic configs a reassignment tool sets for the length of a move
/// (`kafka-reassign-partitions --throttle`, Cruise Control; KIP-73) and
/// removes after it: a Topic whose `spec.config` does not name them leaves
/// them alone rather than cut the throttle of a move under way.
const LEFT_TO_REASSIGNMENT_TOOLS: [&str; 2] = [
    "leader.replication.throttled.replicas",
    "follower.replication.throttled.replicas",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn racks3() -> Vec<Placement> {
        ["a", "b", "c"]
            .iter()
            .zip(1..)
            .map(|(r, id)| Placement {
                id,
                rack: Some((*r).to_owned()),
            })
            .collect()
    }

    fn desired(partitions: i32, replicas: i32, config: &[(&str, &str)]) -> DesiredTopic {
        DesiredTopic {
            partitions,
            replicas,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn on_topic(v: &str) -> ConfigValue {
        ConfigValue {
            value: Some(v.to_owned()),
            set_on_topic: true,
        }
    }

    fn default_value(v: &str) -> ConfigValue {
        ConfigValue {
            value: Some(v.to_owned()),
            set_on_topic: false,
        }
    }

    #[test]
    fn a_missing_topic_is_created_with_its_configs() {
        let plan = plan_topic(&desired(3, 3, &[("retention.ms", "1000")]), None, &racks3());
        assert_eq!(plan.blocked, None);
        let [Action::Create { assignment, config }] = plan.actions.as_slice() else {
            panic!("expected one Create, got {:?}", plan.actions);
        };
        assert_eq!(assignment.len(), 3);
        assert_eq!(config.get("retention.ms").map(String::as_str), Some("1000"));
    }

    #[test]
    fn a_topic_in_step_needs_nothing() {
        let observed = ObservedTopic {
            partitions: vec![vec![1, 2, 3]; 3],
            config: BTreeMap::from([
                ("retention.ms".to_owned(), on_topic("1000")),
                ("segment.bytes".to_owned(), default_value("1073741824")),
            ]),
            moving: BTreeMap::new(),
        };
        let plan = plan_topic(
            &desired(3, 3, &[("retention.ms", "1000")]),
            Some(&observed),
            &racks3(),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn growing_adds_partitions_and_drifted_configs_are_put_back() {
        let observed = ObservedTopic {
            partitions: vec![vec![1, 2, 3], vec![2, 3, 1]],
            config: BTreeMap::from([
                ("retention.ms".to_owned(), on_topic("5")),
                ("max.message.bytes".to_owned(), on_topic("100")),
            ]),
            moving: BTreeMap::new(),
        };
        let plan = plan_topic(
            &desired(4, 3, &[("retention.ms", "1000")]),
            Some(&observed),
            &racks3(),
        );
        assert_eq!(plan.blocked, None);
        assert!(matches!(
            &plan.actions[0],
            Action::AddPartitions { total: 4, assignment } if assignment.len() == 2
        ));
        assert_eq!(
            plan.actions[1],
            Action::AlterConfig {
                set: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
                delete: vec!["max.message.bytes".to_owned()],
            }
        );
    }

    /// A reassignment tool's throttled replicas stay until the tool removes
    /// them, unless the spec names them (then the spec wins).
    #[test]
    fn a_reassignment_tools_throttled_replicas_are_left_alone() {
        let observed = ObservedTopic {
            partitions: vec![vec![1, 2, 3]],
            config: BTreeMap::from([
                (
                    "leader.replication.throttled.replicas".to_owned(),
                    on_topic("0:1"),
                ),
                (
                    "follower.replication.throttled.replicas".to_owned(),
                    on_topic("0:4"),
                ),
                ("retention.ms".to_owned(), on_topic("5")),
            ]),
            moving: BTreeMap::new(),
        };
        let plan = plan_topic(&desired(1, 3, &[]), Some(&observed), &racks3());
        assert_eq!(
            plan.actions,
            vec![Action::AlterConfig {
                set: BTreeMap::new(),
                delete: vec!["retention.ms".to_owned()],
            }]
        );
        let spec = [("follower.replication.throttled.replicas", "*")];
        let plan = plan_topic(&desired(1, 3, &spec), Some(&observed), &racks3());
        assert_eq!(
            plan.actions,
            vec![Action::AlterConfig {
                set: BTreeMap::from([(spec[0].0.to_owned(), "*".to_owned())]),
                delete: vec!["retention.ms".to_owned()],
            }]
        );
    }

    #[test]
    fn fewer_partitions_is_blocked_but_configs_still_apply() {
        let observed = ObservedTopic {
            partitions: vec![vec![1]; 4],
            ..ObservedTopic::default()
        };
        let plan = plan_topic(
            &desired(2, 1, &[("retention.ms", "1000")]),
            Some(&observed),
            &racks3(),
        );
        assert_eq!(
            plan.blocked,
            Some(Blocked::PartitionDecrease { have: 4, want: 2 })
        );
        assert_eq!(
            plan.blocked.as_ref().map(Blocked::reason),
            Some("PartitionDecreaseNotAllowed")
        );
        assert!(matches!(
            plan.actions.as_slice(),
            [Action::AlterConfig { .. }]
        ));
    }

    #[test]
    fn too_many_replicas_is_blocked_not_a_panic() {
        let plan = plan_topic(&desired(3, 5, &[]), None, &racks3());
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.blocked,
            Some(Blocked::NotEnoughBrokers {
                replicas: 5,
                brokers: 3
            })
        );
        let observed = ObservedTopic {
            partitions: vec![vec![1, 2]; 2],
            ..ObservedTopic::default()
        };
        let plan = plan_topic(&desired(2, 4, &[]), Some(&observed), &racks3());
        assert_eq!(
            plan.blocked,
            Some(Blocked::NotEnoughBrokers {
                replicas: 4,
                brokers: 3
            })
        );
        assert!(plan.actions.is_empty());
    }

    #[test]
    fn a_new_replica_count_reassigns_each_partition_and_waits_for_it() {
        let observed = ObservedTopic {
            partitions: vec![vec![1], vec![2]],
            ..ObservedTopic::default()
        };
        let plan = plan_topic(&desired(2, 3, &[]), Some(&observed), &racks3());
        let [Action::ChangeReplicas { moves }] = plan.actions.as_slice() else {
            panic!("expected one ChangeReplicas, got {:?}", plan.actions);
        };
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|(p, l)| l.len() == 3 && l[0] == *p + 1));
        assert_eq!(
            plan.blocked,
            Some(Blocked::ReplicasChanging {
                partitions: 2,
                have: 1,
                want: 3
            })
        );
        assert_eq!(
            plan.blocked.as_ref().map(Blocked::reason),
            Some("ReplicasChanging")
        );

        // While the brokers move them: nothing more to do, not ready yet.
        let moving = ObservedTopic {
            partitions: moves.iter().map(|(_, l)| l.clone()).collect(),
            moving: moves
                .iter()
                .map(|(p, l)| {
                    let m = Moving {
                        adding: l[1..].to_vec(),
                        removing: Vec::new(),
                    };
                    (*p, m)
                })
                .collect(),
            ..ObservedTopic::default()
        };
        assert_eq!(moving.replication_factor(), Some(1));
        let plan = plan_topic(&desired(2, 3, &[]), Some(&moving), &racks3());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(matches!(
            plan.blocked,
            Some(Blocked::ReplicasChanging { partitions: 2, .. })
        ));

        // Done: in step.
        let done = ObservedTopic {
            moving: BTreeMap::new(),
            ..moving
        };
        assert_eq!(
            plan_topic(&desired(2, 3, &[]), Some(&done), &racks3()),
            Plan::default()
        );
    }

    #[test]
    fn partitions_are_added_after_a_replica_count_change() {
        let observed = ObservedTopic {
            partitions: vec![vec![1], vec![2]],
            ..ObservedTopic::default()
        };
        let plan = plan_topic(&desired(4, 3, &[]), Some(&observed), &racks3());
        assert!(
            matches!(plan.actions.as_slice(), [Action::ChangeReplicas { .. }]),
            "{:?}",
            plan.actions
        );
        let done = ObservedTopic {
            partitions: vec![vec![1, 2, 3], vec![2, 3, 1]],
            ..ObservedTopic::default()
        };
        let plan = plan_topic(&desired(4, 3, &[]), Some(&done), &racks3());
        assert_eq!(plan.blocked, None);
        assert!(matches!(
            plan.actions.as_slice(),
            [Action::AddPartitions { total: 4, assignment }] if assignment.iter().all(|r| r.len() == 3)
        ));
    }

    #[test]
    fn a_move_that_keeps_the_count_does_not_hold_the_topic_back() {
        // The Cluster's scale-down moving partition 0 from broker 3 to 2.
        let observed = ObservedTopic {
            partitions: vec![vec![1, 2, 3], vec![2, 1]],
            moving: BTreeMap::from([(
                0,
                Moving {
                    adding: vec![2],
                    removing: vec![3],
                },
            )]),
            ..ObservedTopic::default()
        };
        let plan = plan_topic(&desired(2, 2, &[]), Some(&observed), &racks3());
        assert_eq!(plan, Plan::default());
        // A count the spec no longer asks for is waited for, then changed.
        let plan = plan_topic(&desired(2, 1, &[]), Some(&observed), &racks3());
        let [Action::ChangeReplicas { moves }] = plan.actions.as_slice() else {
            panic!("expected one ChangeReplicas, got {:?}", plan.actions);
        };
        assert_eq!(moves, &vec![(1, vec![2])]);
        assert!(matches!(
            plan.blocked,
            Some(Blocked::ReplicasChanging { partitions: 2, .. })
        ));
    }
}
