//! The topic table: every topic of the cluster as this broker sees it, the
//! logs of the partitions it holds a replica of, and each replica's role.
//!
//! ```text
//!   ClusterImage ──sync()──▶ TopicTable ── name ──▶ Arc<Topic> ── [Arc<Partition>]
//!   (controller quorum)          │                                   │
//!                                │        Mutex<Option<PartitionData>>: log, producers,
//!                                │        role (Leader(LeaderState) | Follower | Offline)
//!                                └── watch<u64>: bumped on appends and high-watermark
//!                                    moves; wakes long-polling fetches
//! ```
//!
//! The table never decides leadership: it follows the image. A replica whose
//! image says "leader at epoch E" records E at its log end and serves writes;
//! one that says "follower" is fed by the replica fetcher.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::ResponseError;
use runnel_replication::LeaderState;
use runnel_storage::PartitionLog;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::cluster::{ClusterImage, PartitionImage};
use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::producers::{ProducerStateTable, SequenceCheck, TxnCheck};

/// The longest legal topic name, as in Kafka.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// The file in a partition directory naming the topic id it belongs to, so a
/// topic deleted and re-created under the same name never reuses old data.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// A partition this broker follows, as its next fetch asks for it.
#[derive(Debug, Clone)]
pub(crate) struct Followed {
    pub(crate) partition: Arc<Partition>,
    /// The follower's log end: where it fetches from.
    pub(crate) fetch_offset: i64,
    /// The epoch of its last batch, -1 when its log is empty.
    pub(crate) last_fetched_epoch: i32,
    /// The leader epoch it believes current.
    pub(crate) leader_epoch: i32,
    /// Where its log starts.
    pub(crate) log_start_offset: i64,
}

/// A replica's role, from the image.
#[derive(Debug)]
pub(crate) enum Role {
    /// Serves writes and followers.
    Leader(LeaderState),
    /// Fetches from `leader`.
    Follower {
        /// The leader's node id.
        leader: i32,
    },
    /// No live leader in the ISR.
    Offline,
}

/// What a partition's lock guards: its log, its producers' sequence state and
/// its replication role, kept together so each step sees them consistently.
#[derive(Debug)]
pub(crate) struct PartitionData {
    pub(crate) log: PartitionLog,
    pub(crate) producers: ProducerStateTable,
    pub(crate) role: Role,
    pub(crate) leader_epoch: i32,
    pub(crate) partition_epoch: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
    /// The high watermark as a follower knows it (the leader's is in its state).
    follower_high_watermark: i64,
}

impl PartitionData {
    /// The high watermark: what consumers may read.
    pub(crate) fn high_watermark(&self) -> i64 {
        let hw = match &self.role {
            Role::Leader(state) => state.high_watermark(),
            _ => self.follower_high_watermark,
        };
        hw.min(self.log.log_end_offset())
            .max(self.log.log_start_offset())
    }

    /// The last stable offset: read_committed consumers read up to it,
    /// the high watermark or the first offset of the oldest open
    /// transaction, whichever is lower.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.producers
            .first_unstable_offset()
            .map_or(hw, |first| first.min(hw))
    }

    /// Whether this replica leads.
    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// Checks a client's idea of the leader epoch (KIP-320): -1 means "any".
    pub(crate) fn check_epoch(&self, current_leader_epoch: i32) -> Result<(), BrokerError> {
        if current_leader_epoch < 0 || current_leader_epoch == self.leader_epoch {
            Ok(())
        } else if current_leader_epoch < self.leader_epoch {
            Err(BrokerError::Kafka(ResponseError::FencedLeaderEpoch))
        } else {
            Err(BrokerError::Kafka(ResponseError::UnknownLeaderEpoch))
        }
    }

    /// Recomputes the leader's high watermark; whether it moved.
    pub(crate) fn advance_high_watermark(&mut self) -> bool {
        let end = self.log.log_end_offset();
        match &mut self.role {
            Role::Leader(state) => state.advance_high_watermark(end),
            _ => false,
        }
    }

    /// A follower learns the leader's high watermark.
    pub(crate) fn set_follower_high_watermark(&mut self, hw: i64) -> bool {
        let hw = hw.min(self.log.log_end_offset());
        if hw > self.follower_high_watermark {
            self.follower_high_watermark = hw;
            true
        } else {
            false
        }
    }

    /// Rebuilds producer state after the log was truncated.
    pub(crate) fn reload_producers(&mut self) -> Result<(), BrokerError> {
        self.producers = ProducerStateTable::load(&self.log)?;
        Ok(())
    }
}

/// What a produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The offset of the first record.
    pub base_offset: i64,
    /// The offset after the last record: acks=all waits for the high watermark to reach it.
    pub end_offset: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Whether the batches were a retry already in the log (nothing appended).
    pub duplicate: bool,
}

/// One partition of a topic.
#[derive(Debug)]
pub struct Partition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub index: i32,
    data: Mutex<Option<PartitionData>>,
    /// The high watermark, for acks=all waiters.
    high_watermark: watch::Sender<i64>,
}

impl Partition {
    fn new(topic: &str, index: i32) -> Self {
        Partition {
            topic: topic.to_string(),
            index,
            data: Mutex::new(None),
            high_watermark: watch::channel(-1).0,
        }
    }

    /// Runs `f` on the log, or fails if this broker holds no replica.
    pub fn with_log<R>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        self.with_data(|data| f(&mut data.log))
    }

    /// Runs `f` on the replica, or fails if this broker holds none.
    pub(crate) fn with_data<R>(
        &self,
        f: impl FnOnce(&mut PartitionData) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(data) => f(data),
            None => Err(BrokerError::NotLeaderOrFollower),
        }
    }

    /// Whether this broker holds a replica.
    pub fn is_local(&self) -> bool {
        self.lock().is_some()
    }

    /// Publishes the current high watermark to waiters.
    pub(crate) fn publish_high_watermark(&self, hw: i64) {
        self.high_watermark.send_if_modified(|v| {
            if *v != hw {
                *v = hw;
                true
            } else {
                false
            }
        });
    }

    /// A receiver of high-watermark changes.
    pub(crate) fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Appends as leader, checking idempotent producers' sequences first.
    fn append(
        &self,
        records: &[u8],
        min_isr: Option<usize>,
        txn: TxnCheck,
    ) -> Result<(Appended, i64), BrokerError> {
        let mut guard = self.lock();
        let data = guard.as_mut().ok_or(BrokerError::NotLeaderOrFollower)?;
        if !data.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        if let Some(min_isr) = min_isr {
            if data.isr.len() < min_isr {
                return Err(BrokerError::NotEnoughReplicas {
                    isr: data.isr.len(),
                    min_isr: min_isr as i64,
                });
            }
        }
        let checked = runnel_storage::CheckedBatches::check(records)?;
        // As Kafka: a partition's records larger than a whole segment are
        // refused (each batch's own limit, max.message.bytes, comes first).
        let config = data.log.config();
        if records.len() as u64 > config.segment_bytes
            && checked
                .headers()
                .iter()
                .all(|h| h.total_size() <= config.max_message_bytes)
        {
            return Err(BrokerError::Refused {
                code: ResponseError::RecordListTooLarge,
                message: format!(
                    "Message batch size is {} bytes in append to partition {}-{} which exceeds the maximum configured segment size of {}.",
                    records.len(),
                    self.topic,
                    self.index,
                    config.segment_bytes
                ),
            });
        }
        for (i, header) in checked.headers().iter().enumerate() {
            if header.is_control() {
                // Only the transaction coordinator writes markers.
                return Err(BrokerError::Producer(ResponseError::InvalidRecord));
            }
            // As Kafka: a retried batch is acknowledged before anything
            // else is looked at; then a transactional batch must be in an
            // open or verified transaction; then its sequence must follow.
            let sequence = data.producers.check(header);
            let duplicate = matches!(sequence, SequenceCheck::Duplicate { .. });
            if header.is_transactional() && !duplicate {
                data.producers
                    .check_txn(header.producer_id, txn)
                    .map_err(|code| BrokerError::Refused {
                        code,
                        message: "Record was not part of an ongoing transaction".into(),
                    })?;
            }
            match sequence {
                SequenceCheck::Append => {}
                // A retried request: its batches are in the log already.
                SequenceCheck::Duplicate { base_offset } if i == 0 => {
                    return Ok((
                        Appended {
                            base_offset,
                            end_offset: base_offset + 1,
                            log_start_offset: data.log.log_start_offset(),
                            duplicate: true,
                        },
                        data.high_watermark(),
                    ));
                }
                SequenceCheck::Duplicate { .. } => {
                    return Err(BrokerError::Producer(
                        ResponseError::DuplicateSequenceNumber,
                    ))
                }
                SequenceCheck::Reject(error) => return Err(BrokerError::Producer(error)),
            }
        }
        let info = data
            .log
            .append_batches(checked, data.leader_epoch, now_ms())?;
        for header in &info.batches {
            data.producers.record(header, None);
        }
        data.advance_high_watermark();
        Ok((
            Appended {
                base_offset: info.base_offset,
                end_offset: info.last_offset + 1,
                log_start_offset: data.log.log_start_offset(),
                duplicate: false,
            },
            data.high_watermark(),
        ))
    }

    /// Starts verifying that `producer_id`'s transaction includes this
    /// partition, as its leader (see
    /// [`ProducerStateTable::start_verification`]).
    pub(crate) fn start_verification(&self, producer_id: i64) -> Result<Option<u64>, BrokerError> {
        let mut guard = self.lock();
        let data = guard.as_mut().ok_or(BrokerError::NotLeaderOrFollower)?;
        if !data.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        Ok(data.producers.start_verification(producer_id, now_ms()))
    }

    /// Appends a transaction marker as leader; the offset after it, and the
    /// high watermark.
    fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: crate::producers::Marker,
        coordinator_epoch: i32,
    ) -> Result<(i64, i64), BrokerError> {
        let batch = crate::records::encode_marker(
            producer_id,
            producer_epoch,
            marker,
            coordinator_epoch,
            now_ms(),
        )?;
        let mut guard = self.lock();
        let data = guard.as_mut().ok_or(BrokerError::NotLeaderOrFollower)?;
        if !data.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        data.producers
            .check_marker(producer_id, coordinator_epoch)
            .map_err(BrokerError::Kafka)?;
        let checked = runnel_storage::CheckedBatches::check(&batch)?;
        let info = data
            .log
            .append_batches(checked, data.leader_epoch, now_ms())?;
        let control = crate::producers::ControlRecord {
            marker,
            coordinator_epoch,
        };
        for header in &info.batches {
            data.producers.record(header, Some(control));
        }
        data.advance_high_watermark();
        Ok((info.last_offset + 1, data.high_watermark()))
    }

    /// Writes the producer state snapshot if it changed. It is taken under
    /// the partition lock but written and synced without it (only the
    /// rename into place holds the lock), so produce and fetch never wait
    /// for the disk here.
    pub(crate) fn snapshot_producers(&self) -> Result<(), BrokerError> {
        let due = self.with_data(|d| {
            Ok(d.producers
                .snapshot_due(d.log.dir(), d.log.log_end_offset()))
        })?;
        let Some(snapshot) = due else {
            return Ok(());
        };
        let staged = snapshot.stage()?;
        if self.with_data(|d| d.producers.install(&staged, d.log.log_end_offset()))? {
            staged.sync_dir()?;
        }
        Ok(())
    }

    /// Decodes every record of the log from its start, in order, and hands
    /// each to `each` (the internal topics' coordinators rebuild their state
    /// this way when they become leader).
    pub(crate) fn replay(
        &self,
        mut each: impl FnMut(kafka_protocol::records::Record),
    ) -> Result<(), BrokerError> {
        /// Bytes read per step.
        const READ_BYTES: usize = 1 << 20;
        let mut offset = self.with_log(|log| Ok(log.log_start_offset()))?;
        loop {
            let read = self.with_log(|log| Ok(log.read(offset, READ_BYTES, i64::MAX)?))?;
            if read.records.is_empty() {
                return Ok(());
            }
            // Batch by batch: a compacted batch may have lost its last
            // records, so the next read starts after its last offset, not
            // after its last record.
            let headers = runnel_storage::validate_batches(&read.records)?;
            let mut position = 0;
            for header in headers {
                let mut batch = read.records.slice(position..position + header.total_size());
                position += header.total_size();
                let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch)
                    .map_err(|e| {
                        BrokerError::InvalidRequest(format!(
                            "{}-{} does not decode: {e}",
                            self.topic, self.index
                        ))
                    })?;
                for record in decoded.records {
                    if record.offset >= offset {
                        each(record);
                    }
                }
                offset = offset.max(header.next_offset());
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<PartitionData>> {
        // A panic while holding the lock leaves the log as it was on disk;
        // carry on with it rather than poisoning the partition forever.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes the high watermark checkpoint if it moved. The file is
    /// written and synced without holding the partition, so produce and
    /// fetch never wait for the disk here.
    fn checkpoint_high_watermark(&self) -> Result<(), BrokerError> {
        let due = self.with_data(|d| Ok(d.log.high_watermark_checkpoint(d.high_watermark())))?;
        let Some(checkpoint) = due else {
            return Ok(());
        };
        checkpoint.write()?;
        let _ = self.with_data(|d| {
            d.log
                .high_watermark_checkpointed(checkpoint.high_watermark());
            Ok(())
        });
        Ok(())
    }

    /// Snapshots producer state and closes the log (clean shutdown).
    fn close(&self) -> Result<(), BrokerError> {
        if let Some(mut data) = self.lock().take() {
            let end = data.log.log_end_offset();
            let hw = data.high_watermark();
            data.producers.write_snapshot(data.log.dir(), end)?;
            data.log.checkpoint_high_watermark(hw)?;
            data.log.close()?;
        }
        Ok(())
    }

    /// Drops the replica and deletes its files.
    fn delete_local(&self) {
        if let Some(data) = self.lock().take() {
            if let Err(error) = data.log.delete() {
                warn!(topic = %self.topic, partition = self.index, %error, "deleting partition log failed");
            }
        }
    }
}

/// A topic: its id, configs and partitions.
#[derive(Debug)]
pub struct Topic {
    /// The topic name.
    pub name: String,
    /// The topic id (KIP-516).
    pub id: Uuid,
    /// The topic's config overrides.
    pub configs: TopicConfigs,
    /// The partitions, by index (local replica or not).
    pub partitions: Vec<Arc<Partition>>,
}

/// Checks a topic name as Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    if name.is_empty() {
        return Err(BrokerError::InvalidTopic("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(BrokerError::InvalidTopic(format!(
            "topic name {name:?} is not allowed"
        )));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(BrokerError::InvalidTopic(format!(
            "topic name is {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(BrokerError::InvalidTopic(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        )));
    }
    Ok(())
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A leadership change `sync` made on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleChange {
    /// This broker now leads the partition.
    BecameLeader(String, i32),
    /// This broker no longer leads it.
    LostLeadership(String, i32),
}

/// Every topic, and this broker's replicas.
#[derive(Debug)]
pub struct TopicTable {
    data_dir: PathBuf,
    settings: Arc<BrokerSettings>,
    node_id: i32,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    image: RwLock<Arc<ClusterImage>>,
    /// Serialises syncs.
    change: Mutex<()>,
    appended: watch::Sender<u64>,
    synced: watch::Sender<u64>,
}

impl TopicTable {
    /// An empty table; `sync` fills it from the cluster image.
    pub fn open(
        data_dir: &Path,
        settings: Arc<BrokerSettings>,
        node_id: i32,
    ) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BrokerError::MetadataIo(format!("create {}: {e}", data_dir.display())))?;
        Ok(TopicTable {
            data_dir: data_dir.to_path_buf(),
            settings,
            node_id,
            topics: RwLock::new(HashMap::new()),
            image: RwLock::new(Arc::new(ClusterImage::default())),
            change: Mutex::new(()),
            appended: watch::channel(0).0,
            synced: watch::channel(0).0,
        })
    }

    /// The data directory the partition logs are in.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The broker settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The image the table was last synced to.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Announces that the image of `version` is fully applied (the table
    /// and everything that follows its role changes).
    pub fn mark_synced(&self, version: u64) {
        self.synced.send_replace(version);
    }

    /// Waits until the table has been synced to an image of at least `version`.
    pub async fn wait_synced(&self, version: u64) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// A partition by topic name and index.
    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>, BrokerError> {
        let topic = self
            .get(topic)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| topic.partitions.get(i).cloned())
            .ok_or(BrokerError::UnknownTopicOrPartition)
    }

    /// Whether auto-creation is on.
    pub fn auto_create_enabled(&self) -> bool {
        self.settings.get_bool("auto.create.topics.enable")
    }

    /// Brings the table to `image`: opens logs of new local replicas, deletes
    /// those of replicas moved away or topics deleted, and applies leader and
    /// ISR changes. Returns the leadership changes made.
    pub fn sync(&self, image: &Arc<ClusterImage>) -> Vec<RoleChange> {
        let _change = lock(&self.change);
        let now = now_ms();
        let mut changes = Vec::new();
        let old: HashMap<String, Arc<Topic>> = self
            .topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut next = HashMap::with_capacity(image.topics.len());
        for (name, t) in &image.topics {
            let previous = old.get(name).filter(|p| p.id == t.id);
            if let Some(stale) = old.get(name).filter(|p| p.id != t.id) {
                info!(topic = %name, "topic re-created; dropping the old incarnation's replicas");
                self.drop_topic(stale, &mut changes);
            }
            let configs = TopicConfigs(t.configs.clone());
            let log_config = configs.log_config(&self.settings);
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for (i, p) in t.partitions.iter().enumerate() {
                let index = i as i32;
                let partition = previous
                    .and_then(|prev| prev.partitions.get(i).cloned())
                    .unwrap_or_else(|| Arc::new(Partition::new(name, index)));
                if p.replicas.contains(&self.node_id) {
                    let mut guard = partition.lock();
                    if guard.is_none() {
                        match self.open_replica(name, index, t.id, &configs, p) {
                            Ok(data) => *guard = Some(data),
                            Err(error) => {
                                warn!(topic = %name, partition = index, %error, "opening replica failed");
                            }
                        }
                    }
                    if let Some(data) = guard.as_mut() {
                        data.log.set_config(log_config.clone());
                        if let Some(change) = apply_partition_image(data, p, self.node_id, now) {
                            info!(topic = %name, partition = index, leader = p.leader,
                                leader_epoch = p.leader_epoch, isr = ?p.isr, "replica role changed");
                            changes.push(match change {
                                true => RoleChange::BecameLeader(name.clone(), index),
                                false => RoleChange::LostLeadership(name.clone(), index),
                            });
                        }
                        let hw = data.high_watermark();
                        drop(guard);
                        partition.publish_high_watermark(hw);
                    }
                } else if partition.is_local() {
                    info!(topic = %name, partition = index, "replica moved away; deleting it");
                    if partition.with_data(|d| Ok(d.is_leader())).unwrap_or(false) {
                        changes.push(RoleChange::LostLeadership(name.clone(), index));
                    }
                    partition.delete_local();
                }
                partitions.push(partition);
            }
            next.insert(
                name.clone(),
                Arc::new(Topic {
                    name: name.clone(),
                    id: t.id,
                    configs,
                    partitions,
                }),
            );
        }
        for (name, topic) in &old {
            if !image.topics.contains_key(name) {
                info!(topic = %name, "topic deleted");
                self.drop_topic(topic, &mut changes);
            }
        }
        *self.topics.write().unwrap_or_else(|p| p.into_inner()) = next;
        *self.image.write().unwrap_or_else(|p| p.into_inner()) = image.clone();
        self.notify();
        changes
    }

    fn drop_topic(&self, topic: &Topic, changes: &mut Vec<RoleChange>) {
        for partition in &topic.partitions {
            if partition.with_data(|d| Ok(d.is_leader())).unwrap_or(false) {
                changes.push(RoleChange::LostLeadership(
                    topic.name.clone(),
                    partition.index,
                ));
            }
            partition.delete_local();
        }
    }

    fn open_replica(
        &self,
        topic: &str,
        index: i32,
        id: Uuid,
        configs: &TopicConfigs,
        image: &PartitionImage,
    ) -> Result<PartitionData, BrokerError> {
        let dir = self.data_dir.join(format!("{topic}-{index}"));
        let marker = dir.join(PARTITION_METADATA_FILE);
        let expected = format!("version: 0\ntopic_id: {id}\n");
        match std::fs::read_to_string(&marker) {
            Ok(text) if text != expected => {
                warn!(dir = %dir.display(), "partition directory belongs to an older topic of the same name; removing it");
                std::fs::remove_dir_all(&dir).map_err(|e| {
                    BrokerError::MetadataIo(format!("remove {}: {e}", dir.display()))
                })?;
            }
            _ => {}
        }
        let log = PartitionLog::open(&dir, configs.log_config(&self.settings), now_ms())?;
        crate::clock::write_atomically(&marker, expected.as_bytes())
            .map_err(|e| BrokerError::MetadataIo(format!("write {}: {e}", marker.display())))?;
        let producers = ProducerStateTable::load(&log)?;
        let hw = log.recovered_high_watermark();
        Ok(PartitionData {
            log,
            producers,
            role: Role::Offline,
            // Anything below the image's epoch: the first apply sets the role.
            leader_epoch: -1,
            partition_epoch: -1,
            replicas: image.replicas.clone(),
            isr: image.isr.clone(),
            follower_high_watermark: hw,
        })
    }

    /// Appends as leader and wakes waiting fetches. With `min_isr` (acks=all)
    /// the ISR must have at least that many replicas.
    pub fn append(
        &self,
        partition: &Partition,
        records: &[u8],
        min_isr: Option<usize>,
    ) -> Result<Appended, BrokerError> {
        self.append_checked(partition, records, min_isr, TxnCheck::Unchecked)
    }

    /// [`Self::append`] for a client's records: transactional batches must
    /// pass `txn` (KIP-890).
    pub(crate) fn append_checked(
        &self,
        partition: &Partition,
        records: &[u8],
        min_isr: Option<usize>,
        txn: TxnCheck,
    ) -> Result<Appended, BrokerError> {
        let (appended, hw) = partition.append(records, min_isr, txn)?;
        partition.publish_high_watermark(hw);
        if !appended.duplicate {
            self.notify();
        }
        Ok(appended)
    }

    /// Appends a transaction marker as leader and wakes waiting fetches;
    /// the offset after it (acks=all waits for the high watermark to reach it).
    pub(crate) fn append_marker(
        &self,
        partition: &Partition,
        producer_id: i64,
        producer_epoch: i16,
        marker: crate::producers::Marker,
        coordinator_epoch: i32,
    ) -> Result<i64, BrokerError> {
        let (end, hw) =
            partition.append_marker(producer_id, producer_epoch, marker, coordinator_epoch)?;
        partition.publish_high_watermark(hw);
        self.notify();
        Ok(end)
    }

    /// Waits until the partition's high watermark reaches `offset`, the
    /// replica stops leading, or `timeout` passes.
    pub async fn wait_for_high_watermark(
        partition: &Partition,
        offset: i64,
        timeout: std::time::Duration,
    ) -> Result<(), BrokerError> {
        let mut rx = partition.subscribe_high_watermark();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (hw, leader) = partition.with_data(|d| Ok((d.high_watermark(), d.is_leader())))?;
            if hw >= offset {
                return Ok(());
            }
            if !leader {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            // Wake on a high-watermark move, and now and then to notice a
            // leadership change.
            let step = tokio::time::Instant::now() + std::time::Duration::from_millis(200);
            if tokio::time::timeout_at(step.min(deadline), rx.changed())
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Err(BrokerError::Kafka(ResponseError::RequestTimedOut));
            }
        }
    }

    /// Wakes long-polling fetches (records appended or a high watermark moved).
    pub(crate) fn notify(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever any partition gets records or a
    /// high watermark moves.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Periodic work: segment rolls, time-based flushes and high-watermark
    /// checkpoints; retention when `retention` is set.
    pub fn housekeeping(&self, retention: bool, checkpoint_high_watermarks: bool) {
        let now = now_ms();
        for topic in self.all() {
            for partition in &topic.partitions {
                if !partition.is_local() {
                    continue;
                }
                if retention {
                    // Before retention drops batches, so their producers' state survives them.
                    if let Err(error) = partition.snapshot_producers() {
                        warn!(topic = %topic.name, partition = partition.index, %error, "producer state snapshot failed");
                    }
                }
                let result = partition.with_data(|data| {
                    data.log.roll_if_due(now)?;
                    data.log.flush_if_due(now)?;
                    let hw = data.high_watermark();
                    if retention {
                        let deleted = data.log.enforce_retention_below(now, hw)?;
                        if deleted > 0 {
                            info!(topic = %topic.name, partition = partition.index, deleted,
                                log_start_offset = data.log.log_start_offset(), "retention deleted segments");
                            data.producers.prune_aborted(data.log.log_start_offset());
                        }
                    }
                    Ok(())
                });
                if let Err(error) = result {
                    warn!(topic = %topic.name, partition = partition.index, %error, "log housekeeping failed");
                }
                if checkpoint_high_watermarks {
                    if let Err(error) = partition.checkpoint_high_watermark() {
                        warn!(topic = %topic.name, partition = partition.index, %error, "high watermark checkpoint failed");
                    }
                }
            }
        }
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn close(&self) {
        for topic in self.all() {
            for partition in &topic.partitions {
                if let Err(error) = partition.close() {
                    warn!(topic = %topic.name, partition = partition.index, %error, "closing log failed");
                }
            }
        }
    }

    /// Per-partition counts for the metrics: (led, under-replicated, offline).
    pub fn replica_counts(&self) -> (i64, i64, i64) {
        let image = self.image();
        let (mut led, mut under, mut offline) = (0, 0, 0);
        for t in image.topics.values() {
            for p in &t.partitions {
                if p.leader == self.node_id {
                    led += 1;
                    if p.isr.len() < p.replicas.len() {
                        under += 1;
                    }
                }
                if p.leader == -1 && p.replicas.first() == Some(&self.node_id) {
                    offline += 1;
                }
            }
        }
        (led, under, offline)
    }

    /// The topics with a partition led here, and with a replica here.
    pub fn local_topics(&self) -> (Vec<String>, Vec<String>) {
        let image = self.image();
        let (mut led, mut hosted) = (Vec::new(), Vec::new());
        for (name, t) in &image.topics {
            if t.partitions.iter().any(|p| p.leader == self.node_id) {
                led.push(name.clone());
            }
            if t.partitions
                .iter()
                .any(|p| p.replicas.contains(&self.node_id))
            {
                hosted.push(name.clone());
            }
        }
        (led, hosted)
    }

    /// The partitions this broker follows `leader` for:
    /// (partition, fetch offset, last fetched epoch, leader epoch).
    pub(crate) fn followed_from(&self, leader: i32) -> Vec<Followed> {
        let mut out = Vec::new();
        for topic in self.all() {
            for partition in &topic.partitions {
                let state = partition.with_data(|d| {
                    Ok(match d.role {
                        Role::Follower { leader: l } if l == leader => Some((
                            d.log.log_end_offset(),
                            d.log.latest_epoch().unwrap_or(-1),
                            d.leader_epoch,
                            d.log.log_start_offset(),
                        )),
                        _ => None,
                    })
                });
                if let Ok(Some((
                    fetch_offset,
                    last_fetched_epoch,
                    leader_epoch,
                    log_start_offset,
                ))) = state
                {
                    out.push(Followed {
                        partition: partition.clone(),
                        fetch_offset,
                        last_fetched_epoch,
                        leader_epoch,
                        log_start_offset,
                    });
                }
            }
        }
        out
    }

    /// Leaders currently followed by this broker.
    pub(crate) fn followed_leaders(&self) -> BTreeMap<i32, usize> {
        let mut leaders = BTreeMap::new();
        for topic in self.all() {
            for partition in &topic.partitions {
                if let Ok(Role::Follower { leader }) = partition.with_data(|d| {
                    Ok(match d.role {
                        Role::Follower { leader } => Role::Follower { leader },
                        _ => Role::Offline,
                    })
                }) {
                    *leaders.entry(leader).or_insert(0) += 1;
                }
            }
        }
        leaders
    }
}

/// Applies the image's view of one partition to the local replica. Returns
/// `Some(true)` when it became leader, `Some(false)` when it stopped leading.
fn apply_partition_image(
    data: &mut PartitionData,
    p: &PartitionImage,
    me: i32,
    now: i64,
) -> Option<bool> {
    let new_epoch = p.leader_epoch != data.leader_epoch;
    let was_leader = data.is_leader();
    data.replicas = p.replicas.clone();
    data.isr = p.isr.clone();
    data.partition_epoch = p.partition_epoch;
    data.leader_epoch = p.leader_epoch;
    if p.leader == me {
        if !was_leader || new_epoch {
            // Records from here on belong to the new epoch (KIP-101).
            let end = data.log.log_end_offset();
            if let Err(error) = data.log.assign_epoch(p.leader_epoch, end) {
                warn!(%error, epoch = p.leader_epoch, "recording the new leader epoch failed");
            }
            let hw = data.high_watermark();
            let mut state = LeaderState::new(me, &p.replicas, &p.isr, hw, now);
            state.advance_high_watermark(end);
            data.role = Role::Leader(state);
            return (!was_leader).then_some(true);
        }
        if let Role::Leader(state) = &mut data.role {
            state.on_committed(&p.replicas, &p.isr, now);
        }
        data.advance_high_watermark();
        None
    } else {
        // A leader stepping down keeps what it knew as its high watermark.
        data.follower_high_watermark = data.high_watermark();
        data.role = if p.leader >= 0 {
            Role::Follower { leader: p.leader }
        } else {
            Role::Offline
        };
        was_leader.then_some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Assignment, MetadataCommand};

    fn idempotent_batch(producer_id: i64, sequence: i32, count: i32) -> bytes::BytesMut {
        let entries = (0..count)
            .map(|i| (None, Some(bytes::Bytes::from(format!("v{}", sequence + i)))))
            .collect();
        let stamp = crate::records::ProducerStamp {
            id: producer_id,
            epoch: 0,
            base_sequence: sequence,
        };
        crate::records::encode_batch(entries, 1_000, Some(stamp)).expect("encodes")
    }

    fn end(table: &TopicTable) -> i64 {
        table
            .partition("t", 0)
            .expect("partition")
            .with_log(|l| Ok(l.log_end_offset()))
            .expect("log")
    }

    /// A one-broker image with topic "t" (one partition) led by broker 1.
    fn image_with_topic() -> Arc<ClusterImage> {
        let mut image = ClusterImage::with_broker_1();
        image.apply(
            2,
            &MetadataCommand::CreateTopic {
                name: "t".into(),
                id: Uuid::from_u128(7),
                configs: Default::default(),
                assignment: Assignment::Explicit(vec![vec![1]]),
            },
        );
        Arc::new(image)
    }

    /// A data directory, default settings and the one-topic image: what a
    /// test needs to open, and reopen, a topic table.
    fn fixture() -> (tempfile::TempDir, Arc<BrokerSettings>, Arc<ClusterImage>) {
        (
            tempfile::tempdir().expect("tempdir"),
            Arc::new(BrokerSettings::from_pairs(&[]).expect("valid")),
            image_with_topic(),
        )
    }

    fn open(dir: &Path, settings: &Arc<BrokerSettings>, image: &Arc<ClusterImage>) -> TopicTable {
        let table = TopicTable::open(dir, settings.clone(), 1).expect("open");
        let changes = table.sync(image);
        assert_eq!(changes, vec![RoleChange::BecameLeader("t".into(), 0)]);
        table
    }

    #[test]
    fn retried_batches_are_recognised_after_clean_and_unclean_restarts() {
        let (dir, settings, image) = fixture();
        {
            let table = open(dir.path(), &settings, &image);
            let p = table.partition("t", 0).expect("partition");
            let first = table
                .append(&p, &idempotent_batch(42, 0, 3), None)
                .expect("append");
            assert!(!first.duplicate);
            let retry = table
                .append(&p, &idempotent_batch(42, 0, 3), None)
                .expect("retry");
            assert!(retry.duplicate);
            assert_eq!(retry.base_offset, first.base_offset);
            assert_eq!(end(&table), 3);
            table.close(); // writes the snapshot
        }
        {
            let table = open(dir.path(), &settings, &image);
            let p = table.partition("t", 0).expect("partition");
            assert!(
                table
                    .append(&p, &idempotent_batch(42, 0, 3), None)
                    .expect("retry")
                    .duplicate
            );
            let gap = table.append(&p, &idempotent_batch(42, 7, 1), None);
            assert!(
                matches!(
                    gap,
                    Err(BrokerError::Producer(
                        ResponseError::OutOfOrderSequenceNumber
                    ))
                ),
                "{gap:?}"
            );
            table
                .append(&p, &idempotent_batch(42, 3, 2), None)
                .expect("next in sequence");
            assert_eq!(end(&table), 5);
            // No close: as after kill -9, the snapshot is behind the log.
        }
        let table = open(dir.path(), &settings, &image);
        let p = table.partition("t", 0).expect("partition");
        let retry = table
            .append(&p, &idempotent_batch(42, 3, 2), None)
            .expect("retry of the unsnapshotted batch");
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 3);
        assert_eq!(end(&table), 5);
    }

    #[test]
    fn a_producer_snapshot_past_a_truncation_is_never_used() {
        let (dir, settings, image) = fixture();
        {
            let table = open(dir.path(), &settings, &image);
            let p = table.partition("t", 0).expect("partition");
            table
                .append(&p, &idempotent_batch(42, 0, 3), None)
                .expect("append");
            p.snapshot_producers().expect("snapshot");
            let snapshot = p
                .with_data(|d| Ok(d.log.dir().join(crate::producers::SNAPSHOT_FILE)))
                .expect("local");
            assert!(snapshot.exists());
            // A follower truncating away the batch, as after a leader change.
            p.with_data(|d| {
                d.log.truncate_to(0)?;
                d.reload_producers()
            })
            .expect("truncate");
            assert!(!snapshot.exists(), "a snapshot past the log end is removed");
            // Another producer's records take the offsets again; no snapshot
            // before the crash.
            table
                .append(&p, &idempotent_batch(43, 0, 5), None)
                .expect("append");
        }
        let table = open(dir.path(), &settings, &image);
        let p = table.partition("t", 0).expect("partition");
        let again = table
            .append(&p, &idempotent_batch(42, 0, 3), None)
            .expect("append");
        assert!(!again.duplicate, "producer 42's batch was truncated away");
        assert_eq!(again.base_offset, 5);
    }

    #[test]
    fn a_single_replica_leader_commits_at_once_and_refuses_when_the_isr_is_short() {
        let (dir, settings, image) = fixture();
        let table = open(dir.path(), &settings, &image);
        let p = table.partition("t", 0).expect("partition");
        let appended = table
            .append(&p, &idempotent_batch(1, 0, 2), Some(1))
            .expect("append");
        assert_eq!(appended.end_offset, 2);
        assert_eq!(p.with_data(|d| Ok(d.high_watermark())).expect("local"), 2);
        let short = table.append(&p, &idempotent_batch(1, 2, 1), Some(2));
        assert!(
            matches!(short, Err(BrokerError::NotEnoughReplicas { isr: 1, .. })),
            "{short:?}"
        );
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("bad/name").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
    }
}
