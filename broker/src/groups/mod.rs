//! The group coordinator: consumer-group membership (the classic protocol,
//! and the consumer protocol of KIP-848) and committed offsets stored in
//! `__consumer_offsets`.
//!
//! ```text
//!   JoinGroup/SyncGroup/Heartbeat/LeaveGroup ─▶ state::Group (pure state machine,
//!                                               deferred replies via oneshot)
//!   ConsumerGroupHeartbeat ─▶ consumer::ConsumerGroup (pure state machine)
//!   OffsetCommit ─▶ record in __consumer_offsets (same log as user data)
//!                 ─▶ offsets::OffsetTable (in memory, rebuilt from the log on start)
//!   classic group stable or empty ─▶ stored::StoredGroup record in __consumer_offsets
//!                                    (a new coordinator rebuilds the group from it)
//!   timer (lib.rs) ─▶ tick(): session expiry, rebalance deadlines
//! ```

pub(crate) mod consumer;
pub(crate) mod offsets;
pub(crate) mod state;
pub(crate) mod stored;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::topics::{RoleChange, TopicTable};
use consumer::{Catalog, ConsumerGroup, ConsumerGroupConfig, Heartbeat, HeartbeatAnswer};
use offsets::{Committed, OffsetTable, OFFSETS_TOPIC};
use state::{
    Group, GroupConfig, GroupDescription, GroupState, JoinRequest, JoinResult, Reply, SyncResult,
};

/// Records to write to `__consumer_offsets`: key and value (`None`: a tombstone).
type Records = Vec<(Bytes, Option<Bytes>)>;

/// How long an offset commit waits for the ISR to have it.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One offset to commit.
#[derive(Debug, Clone)]
pub(crate) struct CommitEntry {
    /// The topic.
    pub(crate) topic: String,
    /// The partition.
    pub(crate) partition: i32,
    /// What to commit.
    pub(crate) committed: Committed,
}

/// An offset committed in a transaction still open.
#[derive(Debug, Clone)]
struct PendingCommit {
    group: String,
    topic: String,
    partition: i32,
    committed: Committed,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct ListedGroup {
    /// The group id.
    pub(crate) group_id: String,
    /// The protocol type ("consumer" for consumers).
    pub(crate) protocol_type: String,
    /// Its state, by Kafka's name.
    pub(crate) state: &'static str,
    /// "classic" or "consumer" (KIP-848).
    pub(crate) group_type: &'static str,
}

/// Why a consumer-protocol request cannot use a group id.
fn not_a_consumer_group(group_id: &str) -> (ResponseError, String) {
    (
        ResponseError::GroupIdNotFound,
        format!("group {group_id} is a classic group with members, not a consumer group"),
    )
}

/// The coordinator of every group on this broker.
#[derive(Debug)]
pub(crate) struct GroupCoordinator {
    /// The `__consumer_offsets` partitions this broker leads, loaded.
    owned: Mutex<HashSet<i32>>,
    groups: Mutex<HashMap<String, Group>>,
    /// Groups of the consumer protocol (KIP-848). A group id is in at most
    /// one of the two maps.
    consumer_groups: Mutex<HashMap<String, ConsumerGroup>>,
    consumer_config: ConsumerGroupConfig,
    offsets: Mutex<OffsetTable>,
    /// Offsets committed in open transactions, by producer id: they count
    /// once the transaction's commit marker is written.
    pending: Mutex<HashMap<i64, Vec<PendingCommit>>>,
    config: GroupConfig,
    offsets_partitions: i32,
    offsets_retention_ms: i64,
    metadata_max_bytes: usize,
}

/// The configs of an internal topic (`__consumer_offsets`,
/// `__transaction_state`): compacted, in segments of `segment_bytes`.
pub(crate) fn internal_topic_configs(segment_bytes: &str) -> TopicConfigs {
    let mut configs = TopicConfigs::default();
    configs.0.insert("cleanup.policy".into(), "compact".into());
    configs
        .0
        .insert("segment.bytes".into(), segment_bytes.to_string());
    configs
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// A coordinator configured from the broker settings.
    pub(crate) fn new(settings: &BrokerSettings) -> Self {
        GroupCoordinator {
            owned: Mutex::new(HashSet::new()),
            groups: Mutex::new(HashMap::new()),
            consumer_groups: Mutex::new(HashMap::new()),
            consumer_config: ConsumerGroupConfig {
                session_timeout_ms: settings.get_i64("group.consumer.session.timeout.ms"),
                heartbeat_interval_ms: settings.get_i64("group.consumer.heartbeat.interval.ms")
                    as i32,
                max_size: settings.get_i64("group.consumer.max.size").max(1) as usize,
            },
            offsets: Mutex::new(OffsetTable::default()),
            pending: Mutex::new(HashMap::new()),
            config: GroupConfig {
                min_session_timeout_ms: settings.get_i64("group.min.session.timeout.ms") as i32,
                max_session_timeout_ms: settings.get_i64("group.max.session.timeout.ms") as i32,
                initial_rebalance_delay_ms: settings.get_i64("group.initial.rebalance.delay.ms"),
                max_size: settings.get_i64("group.max.size").max(1) as usize,
            },
            offsets_partitions: settings.get_i64("offsets.topic.num.partitions") as i32,
            offsets_retention_ms: settings
                .get_i64("offsets.retention.minutes")
                .saturating_mul(60_000),
            metadata_max_bytes: settings.get_i64("offset.metadata.max.bytes").max(0) as usize,
        }
    }

    /// The `__consumer_offsets` partition that holds a group.
    pub(crate) fn partition_of(&self, group_id: &str) -> i32 {
        offsets::partition_for(group_id, self.offsets_partitions)
    }

    /// The number of `__consumer_offsets` partitions.
    pub(crate) fn offsets_partitions(&self) -> i32 {
        self.offsets_partitions
    }

    /// The configs `__consumer_offsets` is created with, Kafka's: compacted
    /// (the latest commit of each group and partition stays, and offsets
    /// deleted or expired go with their tombstones), never deleted by age,
    /// in segments of `offsets.topic.segment.bytes`.
    pub(crate) fn offsets_topic_configs(settings: &BrokerSettings) -> TopicConfigs {
        internal_topic_configs(settings.get("offsets.topic.segment.bytes"))
    }

    /// NOT_COORDINATOR unless this broker leads the group's partition.
    pub(crate) fn owns(&self, group_id: &str) -> Result<(), ResponseError> {
        if lock(&self.owned).contains(&self.partition_of(group_id)) {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// Follows `__consumer_offsets` leadership: loads the groups of partitions
    /// this broker now leads, forgets those of partitions it no longer leads.
    pub(crate) fn on_role_changes(&self, topics: &TopicTable, changes: &[RoleChange]) {
        for change in changes {
            match change {
                RoleChange::BecameLeader(topic, p) if topic == OFFSETS_TOPIC => {
                    match self.load_partition(topics, *p) {
                        Ok(()) => {
                            lock(&self.owned).insert(*p);
                        }
                        Err(error) => {
                            warn!(partition = p, %error, "loading committed offsets failed")
                        }
                    }
                }
                RoleChange::LostLeadership(topic, p) if topic == OFFSETS_TOPIC => {
                    lock(&self.owned).remove(p);
                    self.unload_partition(*p);
                }
                _ => {}
            }
        }
    }

    fn unload_partition(&self, partition: i32) {
        let n = self.offsets_partitions;
        lock(&self.groups).retain(|id, _| offsets::partition_for(id, n) != partition);
        lock(&self.consumer_groups).retain(|id, _| offsets::partition_for(id, n) != partition);
        for commits in lock(&self.pending).values_mut() {
            commits.retain(|c| offsets::partition_for(&c.group, n) != partition);
        }
        let mut table = lock(&self.offsets);
        for id in table.group_ids() {
            if offsets::partition_for(&id, n) == partition {
                for (t, p, _) in table.group(&id) {
                    table.remove(&id, &t, p);
                }
            }
        }
        info!(
            partition,
            "no longer coordinating the groups of this offsets partition"
        );
    }

    /// Replays one `__consumer_offsets` partition into memory.
    fn load_partition(&self, topics: &TopicTable, index: i32) -> Result<(), BrokerError> {
        let partition = topics.partition(OFFSETS_TOPIC, index)?;
        let mut table = lock(&self.offsets);
        let mut records = 0usize;
        // The latest metadata record of each classic group (`None`: deleted).
        let mut stored_groups: HashMap<String, Option<stored::StoredGroup>> = HashMap::new();
        let mut consumer_records = consumer::stored::Restorer::default();
        let mut undecodable: HashSet<String> = HashSet::new();
        partition.replay(|record| {
            let Some(key) = &record.key else {
                return;
            };
            if record.control {
                // A transaction's marker: its offsets count, or never will.
                let commit = key.len() >= 4 && key[2..4] == [0, 1];
                if let Some(commits) = lock(&self.pending).remove(&record.producer_id) {
                    for c in commits {
                        if commit {
                            table.put(&c.group, &c.topic, c.partition, c.committed);
                        }
                    }
                }
            } else if record.transactional {
                if let Some((group, topic, partition, committed)) =
                    offsets::decode_commit(key, record.value.as_ref())
                {
                    lock(&self.pending)
                        .entry(record.producer_id)
                        .or_default()
                        .push(PendingCommit {
                            group,
                            topic,
                            partition,
                            committed,
                        });
                }
            } else if consumer_records.offer(key, record.value.as_ref()) {
                records += 1;
            } else if let Some(group) = stored::decode_key(key) {
                let value = record.value.as_ref().and_then(stored::decode_value);
                let bad = record.value.is_some() && value.is_none();
                if bad {
                    warn!(group = %group, "a group metadata record does not decode; the group starts empty");
                    undecodable.insert(group.clone());
                } else {
                    undecodable.remove(&group);
                }
                stored_groups.insert(group, value);
                records += 1;
            } else {
                table.apply_record(key, record.value.as_ref());
                records += 1;
            }
        })?;
        drop(table);
        let now_ms = crate::clock::now_ms();
        let mut groups = lock(&self.groups);
        let mut restored = 0usize;
        for (id, value) in stored_groups {
            if let Some(value) = value {
                groups.insert(
                    id.clone(),
                    Group::restore(id, self.config.clone(), value, now_ms),
                );
                restored += 1;
            }
        }
        // Records no group is rebuilt from are deleted, so that none comes
        // back later: those that do not decode, and the kind that lost.
        let mut cleanup: Vec<(String, Records)> = Vec::new();
        for id in undecodable {
            cleanup.push((id.clone(), vec![(stored::encode_key(&id), None)]));
        }
        let (consumer_groups, bad) = consumer_records.finish(&self.consumer_config, now_ms);
        for (id, keys) in bad {
            warn!(group = %id, "a consumer group's records do not decode; the group starts empty");
            cleanup.push((id, keys.into_iter().map(|k| (k, None)).collect()));
        }
        let mut consumers = lock(&self.consumer_groups);
        for group in consumer_groups {
            let id = group.id().to_string();
            // A group id is of one kind: the one with members wins.
            if groups.get(&id).is_some_and(|g| !g.is_empty()) {
                cleanup.push((id, consumer::stored::tombstones(&group)));
                continue;
            }
            if groups.remove(&id).is_some() {
                cleanup.push((id.clone(), vec![(stored::encode_key(&id), None)]));
            }
            consumers.insert(id, group);
            restored += 1;
        }
        drop(consumers);
        drop(groups);
        for (id, records) in cleanup {
            if let Err(error) = self.write(topics, &id, records) {
                warn!(group = %id, %error, "deleting a group's unusable records failed");
            }
        }
        info!(
            partition = index,
            records, restored, "coordinating the groups of this offsets partition"
        );
        Ok(())
    }

    /// Waits until everything written to the group's offsets partition so
    /// far is replicated to the ISR (commits are acks=all writes).
    pub(crate) async fn wait_replicated(
        &self,
        topics: &TopicTable,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let partition = topics
            .partition(OFFSETS_TOPIC, self.partition_of(group_id))
            .map_err(|_| ResponseError::NotCoordinator)?;
        let end = partition
            .with_log(|log| Ok(log.log_end_offset()))
            .map_err(|_| ResponseError::NotCoordinator)?;
        TopicTable::wait_for_high_watermark(&partition, end, COMMIT_TIMEOUT)
            .await
            .map_err(|e| match e.kafka() {
                ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                other => other,
            })
    }

    fn with_group<R>(
        &self,
        group_id: &str,
        create: bool,
        f: impl FnOnce(&mut Group) -> R,
    ) -> Option<R> {
        let mut groups = lock(&self.groups);
        if create && !groups.contains_key(group_id) {
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), self.config.clone()),
            );
        }
        groups.get_mut(group_id).map(f)
    }

    /// Runs `f` on an existing group, then stores the group if `f` changed
    /// it in a way Kafka stores.
    fn with_group_stored<R>(
        &self,
        topics: &TopicTable,
        group_id: &str,
        f: impl FnOnce(&mut Group) -> R,
    ) -> Option<R> {
        let mut groups = lock(&self.groups);
        let group = groups.get_mut(group_id)?;
        let result = f(group);
        self.store(topics, group_id, group);
        Some(result)
    }

    /// Writes the group's metadata record if its machine marked a change
    /// (under the groups lock, so a group's records are written in order).
    fn store(&self, topics: &TopicTable, group_id: &str, group: &mut Group) {
        let Some(value) = group.take_store() else {
            return;
        };
        let record = (
            stored::encode_key(group_id),
            Some(stored::encode_value(&value)),
        );
        if let Err(error) = self.write(topics, group_id, vec![record]) {
            warn!(group = %group_id, %error, "storing the group's metadata failed (tried again with the group's next request)");
            group.store_failed(value);
        }
    }

    /// Writes what changed of a consumer group since it was last stored
    /// (only `member`'s records unless more changed).
    fn store_consumer(&self, topics: &TopicTable, group: &mut ConsumerGroup, member: Option<&str>) {
        let changes = consumer::stored::changes(group, member);
        if changes.records.is_empty() {
            return;
        }
        match self.write(topics, group.id(), changes.records.clone()) {
            Ok(()) => consumer::stored::written(group, changes),
            Err(error) => {
                warn!(group = %group.id(), %error, "storing the consumer group failed (tried again with its next change)")
            }
        }
    }

    /// Writes tombstones for everything stored of a consumer group.
    fn forget_consumer(
        &self,
        topics: &TopicTable,
        group: &ConsumerGroup,
    ) -> Result<(), BrokerError> {
        let records = consumer::stored::tombstones(group);
        if records.is_empty() {
            return Ok(());
        }
        self.write(topics, group.id(), records)
    }

    /// Writes a tombstone for a classic group's metadata record.
    fn forget_stored(&self, topics: &TopicTable, group_id: &str) -> Result<(), BrokerError> {
        self.write(topics, group_id, vec![(stored::encode_key(group_id), None)])
    }

    /// JoinGroup.
    pub(crate) fn join(
        &self,
        topics: &TopicTable,
        group_id: &str,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let joiner = request.member_id.clone();
        if let Err(error) = self.owns(group_id) {
            return Reply::Now(JoinResult::failed(joiner, error));
        }
        // Both maps are locked, classic first (as everywhere), so a group id
        // cannot become both kinds at once.
        let mut groups = lock(&self.groups);
        {
            let mut consumer_groups = lock(&self.consumer_groups);
            if consumer_groups.get(group_id).is_some_and(|g| !g.is_empty()) {
                return Reply::Now(JoinResult::failed(
                    joiner,
                    ResponseError::InconsistentGroupProtocol,
                ));
            }
            // An empty consumer group becomes a classic one; what was
            // stored of it goes.
            if let Some(old) = consumer_groups.get(group_id) {
                if let Err(error) = self.forget_consumer(topics, old) {
                    warn!(group = %group_id, %error, "converting the group failed");
                    return Reply::Now(JoinResult::failed(joiner, error.kafka()));
                }
            }
            consumer_groups.remove(group_id);
        }
        if !groups.contains_key(group_id) {
            groups.insert(
                group_id.to_string(),
                Group::new(group_id.to_string(), self.config.clone()),
            );
        }
        groups
            .get_mut(group_id)
            .map(|g| {
                let reply = g.join(request, now_ms);
                self.store(topics, group_id, g);
                reply
            })
            .unwrap_or_else(|| {
                Reply::Now(JoinResult::failed(
                    joiner,
                    ResponseError::CoordinatorNotAvailable,
                ))
            })
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &self,
        topics: &TopicTable,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        if let Err(error) = self.owns(group_id) {
            return Reply::Now(SyncResult {
                error: Some(error),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            });
        }
        self.with_group_stored(topics, group_id, |g| {
            g.sync(
                member_id,
                instance_id,
                generation_id,
                protocol_type,
                protocol_name,
                assignments,
                now_ms,
            )
        })
        .unwrap_or_else(|| {
            Reply::Now(SyncResult {
                error: Some(ResponseError::UnknownMemberId),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            })
        })
    }

    /// Heartbeat.
    pub(crate) fn heartbeat(
        &self,
        topics: &TopicTable,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if let Err(error) = self.owns(group_id) {
            return Some(error);
        }
        self.with_group_stored(topics, group_id, |g| {
            g.heartbeat(member_id, instance_id, generation_id, now_ms)
        })
        .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    /// LeaveGroup: one result per member.
    pub(crate) fn leave(
        &self,
        topics: &TopicTable,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.owns(group_id)?;
        self.with_group_stored(topics, group_id, |g| g.leave(members, now_ms))
            .ok_or(ResponseError::UnknownMemberId)
    }

    /// Advances every group's timers.
    pub(crate) fn tick(&self, topics: &TopicTable, now_ms: i64) {
        let mut groups = lock(&self.groups);
        for (id, group) in groups.iter_mut() {
            group.tick(now_ms);
            self.store(topics, id, group);
        }
        drop(groups);
        for (id, group) in lock(&self.consumer_groups).iter_mut() {
            let gone = group.tick(now_ms);
            for member in &gone {
                info!(group = %id, %member, "member removed: no heartbeat within its session timeout, or no revocation within its rebalance timeout");
            }
            if !gone.is_empty() {
                self.store_consumer(topics, group, None);
            }
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub(crate) fn consumer_heartbeat(
        &self,
        topics: &TopicTable,
        group_id: &str,
        request: Heartbeat,
        catalog: &Catalog,
        now_ms: i64,
    ) -> HeartbeatAnswer {
        let refuse = |(error, message): (ResponseError, String)| HeartbeatAnswer {
            error: Some((error, message)),
            member_id: request.member_id.clone(),
            member_epoch: request.member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        };
        if group_id.is_empty() {
            return refuse((ResponseError::InvalidRequest, "GroupId is empty".into()));
        }
        if let Err(error) = self.owns(group_id) {
            return refuse((error, format!("not the coordinator of group {group_id}")));
        }
        // Classic first, then consumer groups, as in `join`: a group id
        // cannot become both kinds at once.
        let mut classic = lock(&self.groups);
        match classic.get(group_id) {
            Some(g) if !g.is_empty() => return refuse(not_a_consumer_group(group_id)),
            Some(_) => {
                // An empty classic group becomes a consumer group; its
                // stored record goes, so no coordinator brings it back.
                if let Err(error) = self.forget_stored(topics, group_id) {
                    return refuse((
                        error.kafka(),
                        format!("converting group {group_id} failed: {error}"),
                    ));
                }
                classic.remove(group_id);
            }
            None => {}
        }
        let mut groups = lock(&self.consumer_groups);
        drop(classic);
        if !groups.contains_key(group_id) {
            if request.member_epoch != 0 {
                return refuse((
                    ResponseError::UnknownMemberId,
                    format!("group {group_id} has no member {}", request.member_id),
                ));
            }
            groups.insert(
                group_id.to_string(),
                ConsumerGroup::new(group_id.to_string(), self.consumer_config.clone()),
            );
        }
        match groups.get_mut(group_id) {
            Some(group) => {
                let answer = group.heartbeat(request, catalog, now_ms);
                let member = answer.member_id.clone();
                self.store_consumer(topics, group, Some(&member));
                answer
            }
            None => refuse((ResponseError::CoordinatorNotAvailable, String::new())),
        }
    }

    /// ConsumerGroupDescribe: the group, or why not.
    pub(crate) fn describe_consumer_group(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroup, (ResponseError, String)> {
        self.owns(group_id)
            .map_err(|e| (e, format!("not the coordinator of group {group_id}")))?;
        if let Some(group) = lock(&self.consumer_groups).get(group_id) {
            return Ok(group.clone());
        }
        if lock(&self.groups).contains_key(group_id) {
            return Err((
                ResponseError::GroupIdNotFound,
                format!("group {group_id} is not a consumer group"),
            ));
        }
        Err((
            ResponseError::GroupIdNotFound,
            format!("group {group_id} not found"),
        ))
    }

    /// Whether `group_id` is a group of the consumer protocol (KIP-848).
    pub(crate) fn is_consumer_group(&self, group_id: &str) -> bool {
        lock(&self.consumer_groups).contains_key(group_id)
    }

    /// Checks an OffsetFetch's member (v9+) against a consumer group.
    pub(crate) fn check_fetch_member(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            return Ok(());
        };
        match lock(&self.consumer_groups).get(group_id) {
            Some(group) => group.check_member_epoch(member_id, member_epoch),
            None => Ok(()),
        }
    }

    /// OffsetCommit: checks membership, writes the records, then updates memory.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn commit(
        &self,
        topics: &TopicTable,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        entries: Vec<CommitEntry>,
    ) -> Result<Vec<(CommitEntry, Option<ResponseError>)>, ResponseError> {
        self.owns(group_id)?;
        self.check_member(group_id, member_id, instance_id, generation_id)?;
        let (results, records) = self.commit_records(topics, group_id, entries);
        let mut table = lock(&self.offsets);
        if !records.is_empty() {
            if let Err(e) = self.write(topics, group_id, records) {
                warn!(group = %group_id, error = %e, "writing offset commit failed");
                return Err(e.kafka());
            }
        }
        for (entry, error) in &results {
            if error.is_none() {
                table.put(
                    group_id,
                    &entry.topic,
                    entry.partition,
                    entry.committed.clone(),
                );
            }
        }
        Ok(results)
    }

    /// Checks that a commit comes from a member of the group's current
    /// generation. Kafka accepts commits for a group it does not know only
    /// from standalone consumers (generation -1).
    fn check_member(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if let Some(group) = lock(&self.consumer_groups).get(group_id) {
            // The consumer protocol: the generation is the member's epoch.
            return group.check_member_epoch(member_id, generation_id);
        }
        let known = self.with_group(group_id, false, |g| {
            g.accept_offset_commit(
                member_id,
                instance_id,
                generation_id,
                crate::clock::now_ms(),
            )
        });
        match known {
            Some(result) => result,
            None if generation_id < 0 => Ok(()),
            None => Err(ResponseError::IllegalGeneration),
        }
    }

    /// Each entry's error (`None`: valid) and the records of the valid ones.
    #[allow(clippy::type_complexity)]
    fn commit_records(
        &self,
        topics: &TopicTable,
        group_id: &str,
        entries: Vec<CommitEntry>,
    ) -> (
        Vec<(CommitEntry, Option<ResponseError>)>,
        Vec<(Bytes, Option<Bytes>)>,
    ) {
        let mut results = Vec::with_capacity(entries.len());
        let mut records = Vec::new();
        for entry in entries {
            let error = if entry.committed.metadata.len() > self.metadata_max_bytes {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else if topics.partition(&entry.topic, entry.partition).is_err() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else {
                records.push((
                    offsets::encode_key(group_id, &entry.topic, entry.partition),
                    Some(offsets::encode_value(&entry.committed)),
                ));
                None
            };
            results.push((entry, error));
        }
        (results, records)
    }

    fn write(
        &self,
        topics: &TopicTable,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), BrokerError> {
        let entries = records
            .into_iter()
            .map(|(key, value)| (Some(key), value))
            .collect();
        let buf = crate::records::encode_batch(entries, crate::clock::now_ms(), None)?;
        let partition = topics.partition(
            OFFSETS_TOPIC,
            offsets::partition_for(group_id, self.offsets_partitions),
        )?;
        topics.append(&partition, &buf, None)?;
        Ok(())
    }

    /// TxnOffsetCommit: writes the offsets as part of producer
    /// `(producer_id, producer_epoch)`'s transaction; they count once its
    /// commit marker is written (`complete_txn`). The batch must pass `txn`
    /// (KIP-890).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn txn_commit(
        &self,
        topics: &TopicTable,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member: Option<(&str, Option<&str>, i32)>,
        entries: Vec<CommitEntry>,
        txn: crate::producers::TxnCheck,
    ) -> Result<Vec<(CommitEntry, Option<ResponseError>)>, ResponseError> {
        self.owns(group_id)?;
        if let Some((member_id, instance_id, generation_id)) = member {
            // v3: a member of a live group must be of its current generation.
            if generation_id >= 0 {
                self.check_member(group_id, member_id, instance_id, generation_id)?;
            }
        }
        let (results, records) = self.commit_records(topics, group_id, entries);
        let records: Vec<(Option<Bytes>, Option<Bytes>)> =
            records.into_iter().map(|(k, v)| (Some(k), v)).collect();
        let mut pending = lock(&self.pending);
        if !records.is_empty() {
            let batch = crate::records::encode_transactional_batch(
                records,
                crate::clock::now_ms(),
                producer_id,
                producer_epoch,
            )
            .map_err(|e| e.kafka())?;
            let partition = topics
                .partition(OFFSETS_TOPIC, self.partition_of(group_id))
                .map_err(|_| ResponseError::NotCoordinator)?;
            if let Err(e) = topics.append_checked(&partition, &batch, None, txn) {
                warn!(group = %group_id, error = %e, "writing a transactional offset commit failed");
                return Err(e.kafka());
            }
        }
        let commits = pending.entry(producer_id).or_default();
        for (entry, error) in &results {
            if error.is_none() {
                commits.push(PendingCommit {
                    group: group_id.to_string(),
                    topic: entry.topic.clone(),
                    partition: entry.partition,
                    committed: entry.committed.clone(),
                });
            }
        }
        Ok(results)
    }

    /// A transaction's marker was written to `__consumer_offsets`
    /// partition `partition`: its offsets there count (commit) or are
    /// dropped (abort).
    pub(crate) fn complete_txn(&self, partition: i32, producer_id: i64, commit: bool) {
        let n = self.offsets_partitions;
        let done: Vec<PendingCommit> = {
            let mut pending = lock(&self.pending);
            let Some(commits) = pending.get_mut(&producer_id) else {
                return;
            };
            let (done, rest): (Vec<_>, Vec<_>) = commits
                .drain(..)
                .partition(|c| offsets::partition_for(&c.group, n) == partition);
            *commits = rest;
            if commits.is_empty() {
                pending.remove(&producer_id);
            }
            done
        };
        if commit {
            let mut table = lock(&self.offsets);
            for c in done {
                table.put(&c.group, &c.topic, c.partition, c.committed);
            }
        }
    }

    /// Whether an open transaction has committed an offset for a group's
    /// partition (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT).
    pub(crate) fn has_pending(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        lock(&self.pending)
            .values()
            .flatten()
            .any(|c| c.group == group_id && c.topic == topic && c.partition == partition)
    }

    /// OffsetFetch: the committed offsets of the wanted partitions (all when `None`).
    pub(crate) fn fetch(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, i32, Option<Committed>)>, ResponseError> {
        self.owns(group_id)?;
        let table = lock(&self.offsets);
        Ok(match wanted {
            None => table
                .group(group_id)
                .into_iter()
                .map(|(t, p, c)| (t, p, Some(c)))
                .collect(),
            Some(wanted) => wanted
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .map(|p| (topic.clone(), p, table.get(group_id, &topic, p).cloned()))
                        .collect::<Vec<_>>()
                })
                .collect(),
        })
    }

    /// ListGroups: every group with members or committed offsets.
    pub(crate) fn list(&self) -> Vec<ListedGroup> {
        let groups = lock(&self.groups);
        let mut listed: Vec<ListedGroup> = groups
            .iter()
            .filter(|(_, g)| g.state() != GroupState::Dead)
            .map(|(id, g)| ListedGroup {
                group_id: id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state().name(),
                group_type: "classic",
            })
            .collect();
        let consumer_groups = lock(&self.consumer_groups);
        for (id, g) in consumer_groups.iter() {
            listed.push(ListedGroup {
                group_id: id.clone(),
                protocol_type: "consumer".to_string(),
                state: g.state(),
                group_type: "consumer",
            });
        }
        for id in lock(&self.offsets).group_ids() {
            if !groups.contains_key(&id) && !consumer_groups.contains_key(&id) {
                listed.push(ListedGroup {
                    group_id: id,
                    protocol_type: String::new(),
                    state: GroupState::Empty.name(),
                    group_type: "classic",
                });
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// DescribeGroups: `None` for a group that does not exist.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        if self.owns(group_id).is_err() {
            return None;
        }
        if let Some(d) = self.with_group(group_id, false, |g| g.describe()) {
            if d.state != GroupState::Dead {
                return Some(d);
            }
        }
        let has_offsets = !lock(&self.offsets).group(group_id).is_empty();
        has_offsets.then(|| GroupDescription {
            state: GroupState::Empty,
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
            generation_id: 0,
        })
    }

    /// DeleteGroups: removes an empty group and its offsets.
    pub(crate) fn delete_group(
        &self,
        topics: &TopicTable,
        group_id: &str,
    ) -> Option<ResponseError> {
        if let Err(error) = self.owns(group_id) {
            return Some(error);
        }
        let consumer_group = {
            let mut consumer_groups = lock(&self.consumer_groups);
            match consumer_groups.get(group_id) {
                Some(g) if !g.is_empty() => return Some(ResponseError::NonEmptyGroup),
                Some(g) => {
                    if let Err(error) = self.forget_consumer(topics, g) {
                        warn!(group = %group_id, %error, "deleting the group's stored records failed");
                        return Some(error.kafka());
                    }
                    consumer_groups.remove(group_id).is_some()
                }
                None => false,
            }
        };
        let mut groups = lock(&self.groups);
        let exists_in_memory = consumer_group
            || match groups.get_mut(group_id) {
                Some(g) if !g.is_empty() => return Some(ResponseError::NonEmptyGroup),
                Some(g) => {
                    // The tombstone first: a group whose record stays is
                    // not deleted.
                    if let Err(error) = self.forget_stored(topics, group_id) {
                        warn!(group = %group_id, %error, "deleting the group's stored metadata failed");
                        return Some(error.kafka());
                    }
                    g.mark_dead();
                    true
                }
                None => false,
            };
        groups.remove(group_id);
        drop(groups);
        let committed = lock(&self.offsets).group(group_id);
        if committed.is_empty() && !exists_in_memory {
            return Some(ResponseError::GroupIdNotFound);
        }
        let deletes: Vec<(String, i32)> = committed.into_iter().map(|(t, p, _)| (t, p)).collect();
        self.delete_offsets(topics, group_id, &deletes).err()
    }

    /// Writes tombstones for, and forgets, some of a group's offsets.
    pub(crate) fn delete_offsets(
        &self,
        topics: &TopicTable,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(), ResponseError> {
        self.owns(group_id)?;
        if partitions.is_empty() {
            return Ok(());
        }
        let mut table = lock(&self.offsets);
        let records = partitions
            .iter()
            .map(|(t, p)| (offsets::encode_key(group_id, t, *p), None))
            .collect();
        self.write(topics, group_id, records)
            .map_err(|e| e.kafka())?;
        for (t, p) in partitions {
            table.remove(group_id, t, *p);
        }
        Ok(())
    }

    /// The group's state and whether it is subscribed to `topic` (for OffsetDelete).
    pub(crate) fn subscribed_to(&self, group_id: &str, topic: &str) -> bool {
        if let Some(g) = lock(&self.consumer_groups).get(group_id) {
            return g.subscribes_to(topic);
        }
        self.with_group(group_id, false, |g| {
            let d = g.describe();
            d.protocol_type == "consumer"
                && d.members
                    .iter()
                    .any(|m| subscription_topics(&m.metadata).iter().any(|t| t == topic))
        })
        .unwrap_or(false)
    }

    /// Whether the group has no members (or does not exist).
    pub(crate) fn is_empty(&self, group_id: &str) -> bool {
        if let Some(g) = lock(&self.consumer_groups).get(group_id) {
            return g.is_empty();
        }
        self.with_group(group_id, false, |g| g.is_empty())
            .unwrap_or(true)
    }

    /// Drops committed offsets of empty groups older than `offsets.retention.minutes`.
    pub(crate) fn expire_offsets(&self, topics: &TopicTable, now_ms: i64) {
        // Empty consumer groups with no committed offsets are gone, as in
        // Kafka (those with offsets go with their last ones, below).
        {
            // The order `list` takes them in: consumer groups, then offsets.
            let mut consumer_groups = lock(&self.consumer_groups);
            let table = lock(&self.offsets);
            consumer_groups.retain(|id, g| {
                let keep = !g.is_empty() || !table.group(id).is_empty();
                if !keep {
                    if let Err(error) = self.forget_consumer(topics, g) {
                        warn!(group = %id, %error, "removing an empty consumer group failed");
                        return true;
                    }
                }
                keep
            });
        }
        let ids = lock(&self.offsets).group_ids();
        for id in ids {
            if !self.is_empty(&id) {
                continue;
            }
            let expired: Vec<(String, i32)> = lock(&self.offsets)
                .group(&id)
                .into_iter()
                .filter(|(_, _, c)| {
                    c.commit_timestamp.saturating_add(self.offsets_retention_ms) < now_ms
                })
                .map(|(t, p, _)| (t, p))
                .collect();
            if expired.is_empty() {
                continue;
            }
            match self.delete_offsets(topics, &id, &expired) {
                Ok(()) => {
                    info!(group = %id, partitions = expired.len(), "expired committed offsets");
                    // An empty consumer group goes with its last offsets, as in Kafka.
                    if lock(&self.offsets).group(&id).is_empty() {
                        let mut consumer_groups = lock(&self.consumer_groups);
                        if let Some(g) = consumer_groups.get(&id).filter(|g| g.is_empty()) {
                            match self.forget_consumer(topics, g) {
                                Ok(()) => {
                                    consumer_groups.remove(&id);
                                }
                                Err(error) => {
                                    warn!(group = %id, %error, "removing an empty consumer group failed")
                                }
                            }
                        }
                    }
                }
                Err(error) => warn!(group = %id, %error, "expiring committed offsets failed"),
            }
        }
        // Empty classic groups without committed offsets go, with their
        // stored record, as in Kafka.
        let mut groups = lock(&self.groups);
        let gone: Vec<String> = {
            let table = lock(&self.offsets);
            groups
                .iter()
                .filter(|(id, g)| {
                    g.state() == GroupState::Empty
                        && table.group(id).is_empty()
                        && self.owns(id).is_ok()
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in gone {
            match self.forget_stored(topics, &id) {
                Ok(()) => {
                    groups.remove(&id);
                    info!(group = %id, "empty group without committed offsets removed");
                }
                Err(error) => warn!(group = %id, %error, "removing an empty group failed"),
            }
        }
    }
}

/// The topics in a consumer-protocol subscription (best effort; empty if it does not parse).
fn subscription_topics(metadata: &Bytes) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3))
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn settings(extra: &[&str]) -> Arc<BrokerSettings> {
        let mut pairs = vec!["offsets.topic.num.partitions=3".to_string()];
        pairs.extend(extra.iter().map(|s| s.to_string()));
        Arc::new(BrokerSettings::from_pairs(&pairs).expect("valid settings"))
    }

    /// A topic table with an "orders" topic, and a coordinator loaded over it.
    fn open_with_orders(
        dir: &std::path::Path,
        s: &Arc<BrokerSettings>,
        partitions: i32,
    ) -> (TopicTable, GroupCoordinator) {
        let topics = TopicTable::open(dir, s.clone(), 1).expect("open");
        let coordinator = GroupCoordinator::new(s);
        let changes = topics.sync(&image(s, partitions));
        coordinator.on_role_changes(&topics, &changes);
        (topics, coordinator)
    }

    /// One broker leading "orders" and `__consumer_offsets`.
    fn image(s: &BrokerSettings, partitions: i32) -> Arc<crate::cluster::ClusterImage> {
        use crate::cluster::{Assignment, ClusterImage, MetadataCommand};
        let mut image = ClusterImage::with_broker_1();
        let offsets = s.get_i64("offsets.topic.num.partitions") as usize;
        for (i, (name, n)) in [("orders", partitions as usize), (OFFSETS_TOPIC, offsets)]
            .into_iter()
            .enumerate()
        {
            image.apply(
                2 + i as u64,
                &MetadataCommand::CreateTopic {
                    name: name.into(),
                    id: uuid::Uuid::from_u128(i as u128 + 1),
                    configs: Default::default(),
                    assignment: Assignment::Explicit(vec![vec![1]; n]),
                },
            );
        }
        Arc::new(image)
    }

    /// A coordinator that just became leader of every offsets partition.
    fn replay(topics: &TopicTable, s: &BrokerSettings) -> GroupCoordinator {
        let coordinator = GroupCoordinator::new(s);
        let changes: Vec<RoleChange> = (0..coordinator.offsets_partitions())
            .map(|p| RoleChange::BecameLeader(OFFSETS_TOPIC.into(), p))
            .collect();
        coordinator.on_role_changes(topics, &changes);
        coordinator
    }

    fn commit_entry(topic: &str, partition: i32, offset: i64, at: i64) -> CommitEntry {
        CommitEntry {
            topic: topic.into(),
            partition,
            committed: Committed {
                offset,
                leader_epoch: -1,
                metadata: "m".into(),
                commit_timestamp: at,
            },
        }
    }

    #[test]
    fn commits_survive_reopen_and_deletes_stay_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(&[]);
        {
            let (topics, coordinator) = open_with_orders(dir.path(), &s, 2);
            let now = crate::clock::now_ms();
            let results = coordinator
                .commit(
                    &topics,
                    "g1",
                    "",
                    None,
                    -1,
                    vec![
                        commit_entry("orders", 0, 5, now),
                        commit_entry("orders", 1, 7, now),
                    ],
                )
                .expect("simple commit accepted");
            assert!(results.iter().all(|(_, e)| e.is_none()));
            coordinator
                .commit(
                    &topics,
                    "g2",
                    "",
                    None,
                    -1,
                    vec![commit_entry("orders", 0, 9, now)],
                )
                .expect("commit");
            coordinator
                .delete_offsets(&topics, "g1", &[("orders".into(), 1)])
                .expect("delete");
            let unknown = coordinator
                .commit(
                    &topics,
                    "g1",
                    "",
                    None,
                    -1,
                    vec![commit_entry("missing", 0, 1, now)],
                )
                .expect("request accepted");
            assert_eq!(unknown[0].1, Some(ResponseError::UnknownTopicOrPartition));
            topics.close();
        }
        let topics = TopicTable::open(dir.path(), s.clone(), 1).expect("reopen");
        topics.sync(&image(&s, 2));
        let coordinator = replay(&topics, &s);
        let g1 = coordinator.fetch("g1", None).expect("coordinated here");
        assert_eq!(g1.len(), 1, "{g1:?}");
        assert_eq!(g1[0].2.as_ref().map(|c| c.offset), Some(5));
        assert_eq!(
            coordinator
                .fetch("g2", Some(vec![("orders".into(), vec![0, 1])]))
                .expect("coordinated here")[0]
                .2
                .as_ref()
                .map(|c| c.offset),
            Some(9)
        );
        assert_eq!(
            coordinator
                .fetch("g2", Some(vec![("orders".into(), vec![1])]))
                .expect("coordinated here")[0]
                .2,
            None
        );
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(&["offsets.retention.minutes=1"]);
        let (topics, coordinator) = open_with_orders(dir.path(), &s, 1);
        let now = crate::clock::now_ms();
        coordinator
            .commit(
                &topics,
                "old",
                "",
                None,
                -1,
                vec![commit_entry("orders", 0, 3, now - 120_000)],
            )
            .expect("commit");
        coordinator
            .commit(
                &topics,
                "fresh",
                "",
                None,
                -1,
                vec![commit_entry("orders", 0, 4, now)],
            )
            .expect("commit");
        coordinator.expire_offsets(&topics, now);
        assert!(
            coordinator
                .fetch("old", None)
                .expect("coordinated here")
                .is_empty(),
            "expired offsets are gone"
        );
        assert_eq!(
            coordinator
                .fetch("fresh", None)
                .expect("coordinated here")
                .len(),
            1,
            "recent offsets stay"
        );
        // The expiry is durable: a replay of the log agrees.
        let replayed = replay(&topics, &s);
        assert!(replayed
            .fetch("old", None)
            .expect("coordinated here")
            .is_empty());
        assert_eq!(
            replayed
                .fetch("fresh", None)
                .expect("coordinated here")
                .len(),
            1
        );
    }

    #[test]
    fn commits_from_strangers_need_generation_minus_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(&[]);
        let (topics, coordinator) = open_with_orders(dir.path(), &s, 1);
        let now = crate::clock::now_ms();
        let refused = coordinator.commit(
            &topics,
            "nobody",
            "member-1",
            None,
            3,
            vec![commit_entry("orders", 0, 1, now)],
        );
        assert_eq!(refused.err(), Some(ResponseError::IllegalGeneration));
    }

    fn join_request(client: &str) -> JoinRequest {
        JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"sub"))],
            require_known_member_id: false,
        }
    }

    fn answer<T>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(value) => value,
            Reply::Later(mut rx) => rx.try_recv().expect("answered"),
        }
    }

    #[test]
    fn a_stable_group_survives_a_new_coordinator_and_deletes_and_expiry_stay() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(&["group.initial.rebalance.delay.ms=0"]);
        let (topics, coordinator) = open_with_orders(dir.path(), &s, 1);
        let now = crate::clock::now_ms();
        let joined = answer(coordinator.join(&topics, "g", join_request("a"), now));
        assert_eq!(joined.error, None);
        let assignment = Bytes::from_static(b"orders-0");
        let synced = answer(coordinator.sync(
            &topics,
            "g",
            &joined.member_id,
            None,
            joined.generation_id,
            Some("consumer"),
            Some("range"),
            vec![(joined.member_id.clone(), assignment.clone())],
            now,
        ));
        assert_eq!(synced.error, None);
        // A group that empties is stored too, and one deleted stays deleted.
        let left = answer(coordinator.join(&topics, "gone", join_request("b"), now));
        let _ = coordinator.leave(&topics, "gone", &[(left.member_id.clone(), None)], now);
        let deleted = answer(coordinator.join(&topics, "deleted", join_request("c"), now));
        let _ = coordinator.leave(&topics, "deleted", &[(deleted.member_id, None)], now);
        assert_eq!(coordinator.delete_group(&topics, "deleted"), None);

        let next = replay(&topics, &s);
        let d = next.describe("g").expect("the group is back");
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.generation_id, joined.generation_id);
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.members[0].member_id, joined.member_id);
        assert_eq!(d.members[0].assignment, assignment);
        assert_eq!(
            next.heartbeat(
                &topics,
                "g",
                &joined.member_id,
                None,
                joined.generation_id,
                now + 1
            ),
            None,
            "the member carries on without a rebalance"
        );
        let commit = next.commit(
            &topics,
            "g",
            &joined.member_id,
            None,
            joined.generation_id,
            vec![commit_entry("orders", 0, 3, now)],
        );
        assert!(commit.is_ok(), "{commit:?}");
        let gone = next.describe("gone").expect("the empty group is back");
        assert_eq!(gone.state, GroupState::Empty);
        assert_eq!(gone.generation_id, left.generation_id + 1);
        assert_eq!(next.describe("deleted"), None);

        // Empty groups without offsets go at the offsets expiry check, for good.
        next.expire_offsets(&topics, now + 2);
        assert_eq!(next.describe("gone"), None);
        assert!(next.describe("g").is_some(), "a group with members stays");
        let last = replay(&topics, &s);
        assert_eq!(last.describe("gone"), None);
        assert_eq!(
            last.describe("g").map(|d| d.state),
            Some(GroupState::Stable)
        );
    }
}
