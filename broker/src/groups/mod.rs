//! The group coordinator: consumer-group membership (the classic protocol)
//! and committed offsets stored in `__consumer_offsets`.
//!
//! ```text
//!   JoinGroup/SyncGroup/Heartbeat/LeaveGroup ─▶ state::Group (pure state machine,
//!                                               deferred replies via oneshot)
//!   OffsetCommit ─▶ record in __consumer_offsets (same log as user data)
//!                 ─▶ offsets::OffsetTable (in memory, rebuilt from the log on start)
//!   timer (lib.rs) ─▶ tick(): session expiry, rebalance deadlines
//! ```

pub(crate) mod offsets;
pub(crate) mod state;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::topics::TopicTable;
use offsets::{Committed, OffsetTable, OFFSETS_TOPIC};
use state::{
    Group, GroupConfig, GroupDescription, GroupState, JoinRequest, JoinResult, Reply, SyncResult,
};

/// Bytes read per step when replaying `__consumer_offsets` at start-up.
const REPLAY_READ_BYTES: usize = 1 << 20;

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

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub(crate) struct ListedGroup {
    /// The group id.
    pub(crate) group_id: String,
    /// The protocol type ("consumer" for consumers).
    pub(crate) protocol_type: String,
    /// Its state, by Kafka's name.
    pub(crate) state: &'static str,
}

/// The coordinator of every group on this broker.
#[derive(Debug)]
pub(crate) struct GroupCoordinator {
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<OffsetTable>,
    config: GroupConfig,
    offsets_partitions: i32,
    offsets_retention_ms: i64,
    metadata_max_bytes: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// A coordinator configured from the broker settings.
    pub(crate) fn new(settings: &BrokerSettings) -> Self {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(OffsetTable::default()),
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

    /// Creates `__consumer_offsets` if needed and replays it into memory.
    pub(crate) fn load(&self, topics: &TopicTable) -> Result<(), BrokerError> {
        let topic = match topics.get(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                // Offsets must outlive time-based retention until compaction exists.
                let mut configs = TopicConfigs::default();
                configs.0.insert("retention.ms".into(), "-1".into());
                configs
                    .0
                    .insert("segment.bytes".into(), (100 * 1024 * 1024).to_string());
                topics.create(OFFSETS_TOPIC, self.offsets_partitions, configs, false)?
            }
        };
        let mut table = lock(&self.offsets);
        let mut records = 0usize;
        for partition in &topic.partitions {
            let mut offset = partition.with_log(|log| Ok(log.log_start_offset()))?;
            loop {
                let read = partition
                    .with_log(|log| Ok(log.read(offset, REPLAY_READ_BYTES, i64::MAX)?))?;
                if read.records.is_empty() {
                    break;
                }
                let mut buf = read.records.clone();
                let batches = RecordBatchDecoder::decode_all(&mut buf).map_err(|e| {
                    BrokerError::InvalidRequest(format!(
                        "{OFFSETS_TOPIC}-{} does not decode: {e}",
                        partition.index
                    ))
                })?;
                for batch in batches {
                    for record in batch.records {
                        offset = record.offset + 1;
                        if let Some(key) = &record.key {
                            table.apply_record(key, record.value.as_ref());
                            records += 1;
                        }
                    }
                }
            }
        }
        info!(
            records,
            groups = table.group_ids().len(),
            "committed offsets loaded"
        );
        Ok(())
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

    /// JoinGroup.
    pub(crate) fn join(
        &self,
        group_id: &str,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let joiner = request.member_id.clone();
        self.with_group(group_id, true, |g| g.join(request, now_ms))
            .unwrap_or_else(|| {
                Reply::Now(JoinResult {
                    error: Some(ResponseError::CoordinatorNotAvailable),
                    generation_id: -1,
                    protocol_type: None,
                    protocol_name: None,
                    leader: String::new(),
                    member_id: joiner,
                    members: Vec::new(),
                })
            })
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        self.with_group(group_id, false, |g| {
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
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        self.with_group(group_id, false, |g| {
            g.heartbeat(member_id, instance_id, generation_id, now_ms)
        })
        .unwrap_or(Some(ResponseError::UnknownMemberId))
    }

    /// LeaveGroup: one result per member.
    pub(crate) fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.with_group(group_id, false, |g| g.leave(members, now_ms))
            .ok_or(ResponseError::UnknownMemberId)
    }

    /// Advances every group's timers.
    pub(crate) fn tick(&self, now_ms: i64) {
        let mut groups = lock(&self.groups);
        for group in groups.values_mut() {
            group.tick(now_ms);
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
        let known = self.with_group(group_id, false, |g| {
            g.accept_offset_commit(
                member_id,
                instance_id,
                generation_id,
                crate::clock::now_ms(),
            )
        });
        match known {
            Some(result) => result?,
            // Kafka accepts commits for a group it does not know only from
            // standalone consumers (generation -1).
            None if generation_id < 0 => {}
            None => return Err(ResponseError::IllegalGeneration),
        }
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
        let mut buf = crate::records::encode_batch(entries, crate::clock::now_ms(), None)?;
        let partition = topics.partition(
            OFFSETS_TOPIC,
            offsets::partition_for(group_id, self.offsets_partitions),
        )?;
        topics.append(&partition, &mut buf)?;
        Ok(())
    }

    /// OffsetFetch: the committed offsets of the wanted partitions (all when `None`).
    pub(crate) fn fetch(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Vec<(String, i32, Option<Committed>)> {
        let table = lock(&self.offsets);
        match wanted {
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
        }
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
            })
            .collect();
        for id in lock(&self.offsets).group_ids() {
            if !groups.contains_key(&id) {
                listed.push(ListedGroup {
                    group_id: id,
                    protocol_type: String::new(),
                    state: GroupState::Empty.name(),
                });
            }
        }
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listed
    }

    /// DescribeGroups: `None` for a group that does not exist.
    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
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
        let mut groups = lock(&self.groups);
        let exists_in_memory = match groups.get_mut(group_id) {
            Some(g) if !g.is_empty() => return Some(ResponseError::NonEmptyGroup),
            Some(g) => {
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
        self.with_group(group_id, false, |g| g.is_empty())
            .unwrap_or(true)
    }

    /// Drops committed offsets of empty groups older than `offsets.retention.minutes`.
    pub(crate) fn expire_offsets(&self, topics: &TopicTable, now_ms: i64) {
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
                    info!(group = %id, partitions = expired.len(), "expired committed offsets")
                }
                Err(error) => warn!(group = %id, %error, "expiring committed offsets failed"),
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
        let topics = TopicTable::open(dir, s.clone()).expect("open");
        topics
            .create("orders", partitions, TopicConfigs::default(), false)
            .expect("create");
        let coordinator = GroupCoordinator::new(s);
        coordinator.load(&topics).expect("load");
        (topics, coordinator)
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
        let topics = TopicTable::open(dir.path(), s.clone()).expect("reopen");
        let coordinator = GroupCoordinator::new(&s);
        coordinator.load(&topics).expect("replay");
        let g1 = coordinator.fetch("g1", None);
        assert_eq!(g1.len(), 1, "{g1:?}");
        assert_eq!(g1[0].2.as_ref().map(|c| c.offset), Some(5));
        assert_eq!(
            coordinator.fetch("g2", Some(vec![("orders".into(), vec![0, 1])]))[0]
                .2
                .as_ref()
                .map(|c| c.offset),
            Some(9)
        );
        assert_eq!(
            coordinator.fetch("g2", Some(vec![("orders".into(), vec![1])]))[0].2,
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
            coordinator.fetch("old", None).is_empty(),
            "expired offsets are gone"
        );
        assert_eq!(
            coordinator.fetch("fresh", None).len(),
            1,
            "recent offsets stay"
        );
        // The expiry is durable: a replay of the log agrees.
        let replayed = GroupCoordinator::new(&s);
        replayed.load(&topics).expect("replay");
        assert!(replayed.fetch("old", None).is_empty());
        assert_eq!(replayed.fetch("fresh", None).len(), 1);
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
}
