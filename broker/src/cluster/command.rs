//! Metadata commands: the entries of the controller quorum's log, and how an
//! image applies them.
//!
//! `ClusterImage::apply` is a pure, deterministic function: every voter
//! applies the same entries in the same order and reaches the same image.
//! Decisions that depend on the image (leader elections, replica placement,
//! whether an ISR change is stale) are made here, at apply time, so they are
//! made against the image the entry actually lands on.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::{AclBinding, AclFilter};
use crate::quotas::{QuotaEntity, Rate};

use super::assign::{assign_replicas, AssignError};
use super::image::{BrokerRegistration, ClusterImage, PartitionImage, ScramCredential, TopicImage};

/// How a new topic's (or new partitions') replicas are placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignment {
    /// The controller places `partitions` partitions of `replication_factor`
    /// replicas each, rack-aware.
    Auto {
        /// How many partitions.
        partitions: i32,
        /// Replicas per partition.
        replication_factor: i16,
    },
    /// The requester's replica lists, one per partition.
    Explicit(Vec<Vec<i32>>),
}

fn allowed() -> bool {
    true
}

/// One entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Sets the cluster id if none is set yet.
    InitCluster {
        /// The id.
        cluster_id: String,
    },
    /// A broker (re)starting. A re-registration with a different incarnation
    /// first fences the old one (leadership and ISR membership move off it).
    RegisterBroker {
        /// The node id.
        id: i32,
        /// Its rack.
        rack: Option<String>,
        /// Advertised Kafka host.
        host: String,
        /// Advertised Kafka port.
        port: i32,
        /// gRPC address.
        rpc_address: String,
        /// Unique per process start.
        incarnation: Uuid,
    },
    /// A broker missed its session: fence it (ignored if `epoch` is stale).
    FenceBroker {
        /// The node id.
        id: i32,
        /// The broker epoch the session belonged to.
        epoch: i64,
    },
    /// A broker shutting down cleanly: move leadership off it first.
    ControlledShutdown {
        /// The node id.
        id: i32,
        /// Its broker epoch.
        epoch: i64,
    },
    /// Creates a topic.
    CreateTopic {
        /// Its name.
        name: String,
        /// Its id.
        id: Uuid,
        /// Config overrides (validated by the requester).
        configs: BTreeMap<String, String>,
        /// Replica placement.
        assignment: Assignment,
    },
    /// Deletes a topic.
    DeleteTopic {
        /// Its name.
        name: String,
    },
    /// Raises a topic's partition count.
    CreatePartitions {
        /// The topic.
        name: String,
        /// The new total count.
        count: i32,
        /// Replica lists for the new partitions only, or `None` to place them.
        assignment: Option<Vec<Vec<i32>>>,
    },
    /// Replaces a topic's config overrides.
    AlterConfigs {
        /// The topic.
        name: String,
        /// The new overrides.
        configs: BTreeMap<String, String>,
    },
    /// A partition leader changing its ISR (KIP-497 AlterPartition).
    AlterPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The requesting leader.
        leader: i32,
        /// Its leader epoch.
        leader_epoch: i32,
        /// The partition epoch it last saw.
        partition_epoch: i32,
        /// The proposed ISR.
        isr: Vec<i32>,
    },
    /// Starts (or with `None` cancels) moving a partition to `target`.
    Reassign {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The replicas it should end up with.
        target: Option<Vec<i32>>,
        /// Whether `target` may have another replica count than the one the
        /// partition has or is heading to (KIP-860; true for entries
        /// written before the flag existed).
        #[serde(default = "allowed")]
        allow_replication_factor_change: bool,
    },
    /// Moves leadership to the preferred (first) replica if it is in sync.
    ElectPreferredLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },
    /// Hands out a block of producer ids.
    AllocateProducerIds {
        /// How many.
        count: i64,
    },
    /// Sets (or with `None` deletes) a user's SCRAM credentials, one per
    /// mechanism, all or none (AlterUserScramCredentials).
    SetScramCredentials {
        /// The user.
        user: String,
        /// Per mechanism (its SASL name), the new credential or `None`.
        changes: Vec<(String, Option<ScramCredential>)>,
    },
    /// Adds ACLs (CreateAcls); ones already there stay as they are.
    CreateAcls {
        /// The new ACLs, checked by the requester.
        acls: Vec<AclBinding>,
    },
    /// Removes every ACL some filter matches (DeleteAcls).
    DeleteAcls {
        /// The filters.
        filters: Vec<AclFilter>,
    },
    /// Sets (or with `None` removes) an entity's quotas (AlterClientQuotas).
    AlterClientQuotas {
        /// Whose quotas.
        entity: QuotaEntity,
        /// Per key, the new value or `None`.
        changes: Vec<(String, Option<Rate>)>,
    },
    /// Sets (or with `None` removes) dynamic broker configs
    /// (IncrementalAlterConfigs on a broker; checked by the requester).
    AlterBrokerConfigs {
        /// The broker id, or empty for the cluster-wide default.
        resource: String,
        /// Per key, the new value or `None`.
        changes: Vec<(String, Option<String>)>,
    },
}

/// What applying a command gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Done.
    Ok,
    /// The broker epoch of a registration.
    BrokerEpoch(i64),
    /// The first id of an allocated block.
    ProducerIds(i64),
    /// The partition after an AlterPartition.
    Partition(PartitionImage),
    /// Per DeleteAcls filter, the ACLs it removed.
    DeletedAcls(Vec<Vec<AclBinding>>),
    /// Refused: a Kafka error code and a message.
    Error {
        /// The Kafka error code.
        code: i16,
        /// What was wrong.
        message: String,
    },
}

impl CommandResult {
    fn error(code: ResponseError, message: impl Into<String>) -> Self {
        CommandResult::Error {
            code: code.code(),
            message: message.into(),
        }
    }
}

impl From<AssignError> for CommandResult {
    fn from(e: AssignError) -> Self {
        let code = match e {
            AssignError::NotEnoughBrokers { .. } | AssignError::BadReplicationFactor(_) => {
                ResponseError::InvalidReplicationFactor
            }
            AssignError::BadPartitionCount(_) => ResponseError::InvalidPartitions,
            AssignError::BadReplicas(_) => ResponseError::InvalidReplicaAssignment,
        };
        CommandResult::error(code, e.to_string())
    }
}

/// Applies per-key changes (`None` removes the key) to `outer[entry]`,
/// dropping the entry once it holds nothing: SCRAM credentials per user,
/// quotas per entity, dynamic configs per broker.
fn apply_changes<E: Ord + Clone, K: Ord + Clone, V: Clone>(
    outer: &mut BTreeMap<E, BTreeMap<K, V>>,
    entry: &E,
    changes: &[(K, Option<V>)],
) {
    let values = outer.entry(entry.clone()).or_default();
    for (key, value) in changes {
        match value {
            Some(value) => {
                values.insert(key.clone(), value.clone());
            }
            None => {
                values.remove(key);
            }
        }
    }
    if values.is_empty() {
        outer.remove(entry);
    }
}

impl ClusterImage {
    /// Applies one log entry at `index`; deterministic.
    pub fn apply(&mut self, index: u64, command: &MetadataCommand) -> CommandResult {
        self.version = self.version.max(index);
        match command {
            MetadataCommand::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
                CommandResult::Ok
            }
            MetadataCommand::RegisterBroker {
                id,
                rack,
                host,
                port,
                rpc_address,
                incarnation,
            } => {
                if self.brokers.get(id).is_some_and(|b| !b.fenced) {
                    // The previous incarnation may have lost in-memory state: it
                    // leaves every ISR before the new one joins as a follower.
                    self.remove_broker_from_partitions(*id);
                }
                let _ = incarnation;
                self.brokers.insert(
                    *id,
                    BrokerRegistration {
                        id: *id,
                        rack: rack.clone(),
                        host: host.clone(),
                        port: *port,
                        rpc_address: rpc_address.clone(),
                        epoch: index as i64,
                        fenced: false,
                        shutting_down: false,
                    },
                );
                self.elect_offline_leaders();
                CommandResult::BrokerEpoch(index as i64)
            }
            MetadataCommand::FenceBroker { id, epoch } => {
                match self.brokers.get_mut(id) {
                    Some(b) if b.epoch == *epoch && !b.fenced => b.fenced = true,
                    _ => return CommandResult::Ok,
                }
                self.remove_broker_from_partitions(*id);
                CommandResult::Ok
            }
            MetadataCommand::ControlledShutdown { id, epoch } => {
                match self.brokers.get_mut(id) {
                    Some(b) if b.epoch == *epoch => b.shutting_down = true,
                    _ => {
                        return CommandResult::error(
                            ResponseError::StaleBrokerEpoch,
                            format!("broker {id} epoch {epoch} is not the registered one"),
                        )
                    }
                }
                self.remove_broker_from_partitions(*id);
                CommandResult::Ok
            }
            MetadataCommand::CreateTopic {
                name,
                id,
                configs,
                assignment,
            } => {
                if self.topics.contains_key(name) {
                    return CommandResult::error(
                        ResponseError::TopicAlreadyExists,
                        format!("topic {name:?} already exists"),
                    );
                }
                let replicas = match self.plan_assignment(assignment, &[]) {
                    Ok(r) => r,
                    Err(e) => return e.into(),
                };
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        id: *id,
                        configs: configs.clone(),
                        partitions: replicas.into_iter().map(PartitionImage::new).collect(),
                    },
                );
                CommandResult::Ok
            }
            MetadataCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => CommandResult::Ok,
                None => CommandResult::error(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ),
            },
            MetadataCommand::CreatePartitions {
                name,
                count,
                assignment,
            } => {
                let Some(topic) = self.topics.get(name) else {
                    return CommandResult::error(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    );
                };
                let current = topic.partitions.len() as i32;
                if *count <= current {
                    return CommandResult::error(
                        ResponseError::InvalidPartitions,
                        format!("topic {name:?} has {current} partitions; the count can only grow, got {count}"),
                    );
                }
                // The replication factor the topic has, or is being reassigned to.
                let replication = topic.partitions.first().map_or(1, |p| p.target().count()) as i16;
                let existing: Vec<Vec<i32>> = topic
                    .partitions
                    .iter()
                    .map(|p| p.replicas.clone())
                    .collect();
                let plan = match assignment {
                    Some(lists) => Assignment::Explicit(lists.clone()),
                    None => Assignment::Auto {
                        partitions: count - current,
                        replication_factor: replication,
                    },
                };
                let new = match self.plan_assignment(&plan, &existing) {
                    Ok(r) => r,
                    Err(e) => return e.into(),
                };
                if new.len() as i32 != count - current {
                    return CommandResult::error(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "{} replica lists given for {} new partitions",
                            new.len(),
                            count - current
                        ),
                    );
                }
                // As Kafka: new partitions have as many replicas as the others.
                if let Some(odd) = new.iter().find(|r| r.len() != replication as usize) {
                    return CommandResult::error(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "a new partition of {name:?} is assigned {} replica(s), but the topic's partitions have {replication}",
                            odd.len()
                        ),
                    );
                }
                if let Some(topic) = self.topics.get_mut(name) {
                    topic
                        .partitions
                        .extend(new.into_iter().map(PartitionImage::new));
                }
                CommandResult::Ok
            }
            MetadataCommand::AlterConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(topic) => {
                    topic.configs = configs.clone();
                    CommandResult::Ok
                }
                None => CommandResult::error(
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ),
            },
            MetadataCommand::AlterPartition {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.alter_partition(
                topic,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                isr,
            ),
            MetadataCommand::Reassign {
                topic,
                partition,
                target,
                allow_replication_factor_change,
            } => self.reassign(
                topic,
                *partition,
                target.as_deref(),
                *allow_replication_factor_change,
            ),
            MetadataCommand::ElectPreferredLeader { topic, partition } => {
                let live = self.electable();
                let Some(p) = self.partition_mut(topic, *partition) else {
                    return CommandResult::error(
                        ResponseError::UnknownTopicOrPartition,
                        format!("{topic}-{partition} does not exist"),
                    );
                };
                match p.replicas.first().copied() {
                    Some(preferred)
                        if p.leader != preferred
                            && p.isr.contains(&preferred)
                            && live.contains(&preferred) =>
                    {
                        p.leader = preferred;
                        p.leader_epoch += 1;
                        p.partition_epoch += 1;
                        CommandResult::Ok
                    }
                    _ => CommandResult::error(
                        ResponseError::PreferredLeaderNotAvailable,
                        format!("the preferred leader of {topic}-{partition} is not electable"),
                    ),
                }
            }
            MetadataCommand::AllocateProducerIds { count } => {
                let start = self.next_producer_id;
                self.next_producer_id += (*count).max(1);
                CommandResult::ProducerIds(start)
            }
            MetadataCommand::SetScramCredentials { user, changes } => {
                let current = self.scram.get(user);
                let missing = changes.iter().find(|(mechanism, credential)| {
                    credential.is_none() && !current.is_some_and(|m| m.contains_key(mechanism))
                });
                if let Some((mechanism, _)) = missing {
                    return CommandResult::error(
                        ResponseError::ResourceNotFound,
                        format!(
                            "Attempt to delete a user credential that does not exist: {user} {mechanism}"
                        ),
                    );
                }
                apply_changes(&mut self.scram, user, changes);
                CommandResult::Ok
            }
            MetadataCommand::CreateAcls { acls } => {
                self.acls.extend(acls.iter().cloned());
                CommandResult::Ok
            }
            MetadataCommand::DeleteAcls { filters } => {
                let deleted = filters
                    .iter()
                    .map(|filter| {
                        let gone: Vec<AclBinding> = self
                            .acls
                            .iter()
                            .filter(|a| filter.matches(a))
                            .cloned()
                            .collect();
                        for acl in &gone {
                            self.acls.remove(acl);
                        }
                        gone
                    })
                    .collect();
                CommandResult::DeletedAcls(deleted)
            }
            MetadataCommand::AlterClientQuotas { entity, changes } => {
                apply_changes(&mut self.quotas, entity, changes);
                CommandResult::Ok
            }
            MetadataCommand::AlterBrokerConfigs { resource, changes } => {
                apply_changes(&mut self.broker_configs, resource, changes);
                CommandResult::Ok
            }
        }
    }

    /// Checks a placement against this image and returns the replica lists.
    pub fn plan_assignment(
        &self,
        assignment: &Assignment,
        existing: &[Vec<i32>],
    ) -> Result<Vec<Vec<i32>>, AssignError> {
        let brokers: Vec<(i32, Option<String>)> = self
            .brokers
            .values()
            .filter(|b| !b.fenced && !b.shutting_down)
            .map(|b| (b.id, b.rack.clone()))
            .collect();
        match assignment {
            Assignment::Auto {
                partitions,
                replication_factor,
            } => assign_replicas(&brokers, *partitions, *replication_factor, existing),
            Assignment::Explicit(lists) => {
                let first = lists.first().map_or(0, Vec::len);
                if let Some(i) = lists.iter().position(|l| l.len() != first) {
                    return Err(AssignError::BadReplicas(format!(
                        "all partitions should have the same number of replicas: partition 0 has {first}, partition {i} has {}",
                        lists[i].len()
                    )));
                }
                for (i, list) in lists.iter().enumerate() {
                    let mut seen = std::collections::HashSet::new();
                    if list.is_empty() || !list.iter().all(|b| seen.insert(*b)) {
                        return Err(AssignError::BadReplicas(format!(
                            "partition {i} needs a non-empty list of distinct brokers"
                        )));
                    }
                    if let Some(unknown) = list.iter().find(|b| !self.brokers.contains_key(b)) {
                        return Err(AssignError::BadReplicas(format!(
                            "partition {i} is assigned to unknown broker {unknown}"
                        )));
                    }
                }
                Ok(lists.clone())
            }
        }
    }

    fn partition_mut(&mut self, topic: &str, index: i32) -> Option<&mut PartitionImage> {
        self.topics.get_mut(topic).and_then(|t| {
            usize::try_from(index)
                .ok()
                .and_then(|i| t.partitions.get_mut(i))
        })
    }

    /// Brokers that may lead: registered, unfenced, not shutting down.
    fn electable(&self) -> Vec<i32> {
        self.brokers
            .values()
            .filter(|b| !b.fenced && !b.shutting_down)
            .map(|b| b.id)
            .collect()
    }

    /// Moves leadership off `id` and drops it from every ISR (never emptying one).
    fn remove_broker_from_partitions(&mut self, id: i32) {
        let live = self.electable();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if !p.replicas.contains(&id) {
                    continue;
                }
                if p.leader == id {
                    let next = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| *r != id && p.isr.contains(r) && live.contains(r));
                    if p.isr.len() > 1 {
                        p.isr.retain(|r| *r != id);
                    }
                    p.leader = next.unwrap_or(-1);
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                } else if p.isr.contains(&id) && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// Gives leaderless partitions a leader from their ISR where one is back.
    fn elect_offline_leaders(&mut self) {
        let live = self.electable();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                if p.leader != -1 {
                    continue;
                }
                if let Some(next) = p
                    .replicas
                    .iter()
                    .copied()
                    .find(|r| p.isr.contains(r) && live.contains(r))
                {
                    p.leader = next;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn alter_partition(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> CommandResult {
        let live = self.electable();
        let Some(p) = self.partition_mut(topic, partition) else {
            return CommandResult::error(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            );
        };
        if p.leader != leader || p.leader_epoch != leader_epoch {
            return CommandResult::error(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "{topic}-{partition}: leader {leader} epoch {leader_epoch} is stale (now {} epoch {})",
                    p.leader, p.leader_epoch
                ),
            );
        }
        if p.partition_epoch != partition_epoch {
            return CommandResult::error(
                ResponseError::InvalidUpdateVersion,
                format!(
                    "{topic}-{partition}: partition epoch {partition_epoch} is stale (now {})",
                    p.partition_epoch
                ),
            );
        }
        if !isr.contains(&leader) {
            return CommandResult::error(
                ResponseError::InvalidRequest,
                "the ISR must contain the leader",
            );
        }
        if let Some(bad) = isr
            .iter()
            .find(|r| !p.replicas.contains(r) || (!p.isr.contains(r) && !live.contains(r)))
        {
            return CommandResult::error(
                ResponseError::IneligibleReplica,
                format!("{topic}-{partition}: replica {bad} cannot join the ISR"),
            );
        }
        let mut new_isr: Vec<i32> = Vec::new();
        for r in isr {
            if !new_isr.contains(r) {
                new_isr.push(*r);
            }
        }
        p.isr = new_isr;
        p.partition_epoch += 1;
        complete_reassignment(p, &live);
        CommandResult::Partition(p.clone())
    }

    fn reassign(
        &mut self,
        topic: &str,
        partition: i32,
        target: Option<&[i32]>,
        allow_rf_change: bool,
    ) -> CommandResult {
        let live = self.electable();
        if let (Some(target), false, Some(p)) =
            (target, allow_rf_change, self.partition(topic, partition))
        {
            // The count the partition has, or is heading to (KIP-860).
            let heading = p.target().count();
            if target.len() != heading {
                return CommandResult::error(
                    ResponseError::InvalidReplicationFactor,
                    format!(
                        "{topic}-{partition} has {heading} replicas; a reassignment to {} replicas would change the replication factor, and allowReplicationFactorChange is false",
                        target.len()
                    ),
                );
            }
        }
        if let Some(target) = target {
            let mut seen = std::collections::HashSet::new();
            if target.is_empty() || !target.iter().all(|b| seen.insert(*b)) {
                return CommandResult::error(
                    ResponseError::InvalidReplicaAssignment,
                    "the target needs a non-empty list of distinct brokers",
                );
            }
            if let Some(unknown) = target.iter().find(|b| !self.brokers.contains_key(b)) {
                return CommandResult::error(
                    ResponseError::InvalidReplicaAssignment,
                    format!("broker {unknown} is not registered"),
                );
            }
        }
        let Some(p) = self.partition_mut(topic, partition) else {
            return CommandResult::error(
                ResponseError::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            );
        };
        match target {
            None => {
                if p.adding.is_empty() && p.removing.is_empty() {
                    return CommandResult::error(
                        ResponseError::NoReassignmentInProgress,
                        format!("{topic}-{partition} is not being reassigned"),
                    );
                }
                // As Kafka: a cancel that would leave no replica of the
                // ISR (only added ones caught up) needs an unclean election,
                // which Runnel never makes.
                if !p.isr.iter().any(|r| !p.adding.contains(r)) {
                    return CommandResult::error(
                        ResponseError::InvalidReplicaAssignment,
                        format!("unable to cancel the reassignment of {topic}-{partition}: every in-sync replica is one being added, so going back would require an unclean leader election"),
                    );
                }
                let adding = std::mem::take(&mut p.adding);
                p.removing.clear();
                p.replicas.retain(|r| !adding.contains(r));
                p.isr.retain(|r| !adding.contains(r));
                if !p.replicas.contains(&p.leader) {
                    p.leader = p
                        .replicas
                        .iter()
                        .copied()
                        .find(|r| p.isr.contains(r) && live.contains(r))
                        .unwrap_or(-1);
                    p.leader_epoch += 1;
                }
                p.partition_epoch += 1;
            }
            Some(target) => {
                // As Kafka: the move starts from every replica the partition
                // has now, those of a move in flight included, so a replica
                // being added that the new target leaves out is removed like
                // any other, and the leader and ISR stay among the replicas.
                let current = p.replicas.clone();
                let adding: Vec<i32> = target
                    .iter()
                    .copied()
                    .filter(|r| !current.contains(r))
                    .collect();
                let removing: Vec<i32> = current
                    .iter()
                    .copied()
                    .filter(|r| !target.contains(r))
                    .collect();
                let mut replicas = target.to_vec();
                replicas.extend(removing.iter().copied());
                if replicas == p.replicas && adding == p.adding && removing == p.removing {
                    return CommandResult::Ok; // nothing changes (Kafka writes nothing)
                }
                p.adding = adding;
                p.removing = removing;
                p.replicas = replicas;
                p.partition_epoch += 1;
                complete_reassignment(p, &live);
            }
        }
        CommandResult::Ok
    }
}

/// Finishes a reassignment once every replica of the target (the replicas
/// that are not leaving) is in the ISR: Kafka's rule since 3.8
/// (KAFKA-15665), so a move never leaves a partition under-replicated or
/// with an ISR of replicas that left.
fn complete_reassignment(p: &mut PartitionImage, live: &[i32]) {
    if p.adding.is_empty() && p.removing.is_empty() {
        return;
    }
    if !p.target().all(|r| p.isr.contains(&r)) {
        return;
    }
    let remaining: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| !p.removing.contains(r))
        .collect();
    let removing = std::mem::take(&mut p.removing);
    p.adding.clear();
    p.replicas.retain(|r| !removing.contains(r));
    p.isr = remaining;
    if removing.contains(&p.leader) {
        p.leader = p
            .replicas
            .iter()
            .copied()
            .find(|r| p.isr.contains(r) && live.contains(r))
            .unwrap_or(-1);
        p.leader_epoch += 1;
    }
    p.partition_epoch += 1;
}
