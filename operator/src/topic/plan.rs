//! What to do to a topic so the brokers match a Topic's spec: a pure
//! function of the spec and of what the brokers report.

use std::collections::BTreeMap;

use super::assign::{assign_replicas, AssignError, Placement};
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
    /// Each partition's replicas, by partition index.
    pub partitions: Vec<Vec<i32>>,
    /// Its configs (see [`ConfigValue::set_on_topic`]).
    pub config: BTreeMap<String, ConfigValue>,
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
    /// Set and remove topic configs.
    AlterConfig {
        /// Keys to set.
        set: BTreeMap<String, String>,
        /// Keys to return to the broker default.
        delete: Vec<String>,
    },
}

/// What the spec asks for and cannot be done; reported in `Ready`.
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
    /// The replication factor of an existing topic differs from the spec.
    #[error("spec.replicas is {want} but the topic has {have} replicas per partition; changing the replication factor of an existing topic is not supported yet")]
    ReplicasChange {
        /// In the brokers.
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
            Blocked::ReplicasChange { .. } => reason::REPLICAS_CHANGE_NOT_SUPPORTED,
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
    let have_replicas = observed.partitions.first().map_or(desired.replicas, |p| {
        i32::try_from(p.len()).unwrap_or(i32::MAX)
    });
    if desired.partitions < have {
        plan.blocked = Some(Blocked::PartitionDecrease {
            have,
            want: desired.partitions,
        });
    } else if desired.partitions > have {
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
    if plan.blocked.is_none() && have_replicas != desired.replicas {
        plan.blocked = Some(if desired.replicas as usize > brokers.len() {
            Blocked::NotEnoughBrokers {
                replicas: desired.replicas,
                brokers: brokers.len(),
            }
        } else {
            Blocked::ReplicasChange {
                have: have_replicas,
                want: desired.replicas,
            }
        });
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
        .filter(|(k, c)| c.set_on_topic && !desired.config.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.actions.push(Action::AlterConfig { set, delete });
    }
    plan
}

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

    #[test]
    fn fewer_partitions_is_blocked_but_configs_still_apply() {
        let observed = ObservedTopic {
            partitions: vec![vec![1]; 4],
            config: BTreeMap::new(),
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
            config: BTreeMap::new(),
        };
        let plan = plan_topic(&desired(2, 3, &[]), Some(&observed), &racks3());
        assert_eq!(
            plan.blocked,
            Some(Blocked::ReplicasChange { have: 2, want: 3 })
        );
    }
}
