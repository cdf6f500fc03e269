//! The topic table: every topic this broker hosts, its partitions' logs, and
//! the metadata file that lets them survive a restart.
//!
//! ```text
//!   TopicTable ── name ──▶ Arc<Topic> ── [Arc<Partition>] ── Mutex<PartitionLog>
//!        │                   (immutable snapshot; replaced on create-partitions
//!        │                    or config change)
//!        └── watch<u64>: bumped on every append, wakes long-polling fetches
//! ```
//!
//! Until the controller quorum exists, topic metadata lives in
//! `DATA/__runnel_topics.json`, rewritten atomically on every change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::ResponseError;
use runnel_storage::PartitionLog;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::producers::{ProducerStateTable, SequenceCheck};

/// The longest legal topic name, as in Kafka.
const MAX_TOPIC_NAME_LEN: usize = 249;

/// The file holding topic metadata in the data directory.
const TOPICS_FILE: &str = "__runnel_topics.json";

/// What a partition's lock guards: its log and its producers' sequence state,
/// kept together so a sequence check and its append are one step.
#[derive(Debug)]
struct PartitionData {
    log: PartitionLog,
    producers: ProducerStateTable,
}

/// What a produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The offset of the first record.
    pub base_offset: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Whether the batches were a retry already in the log (nothing appended).
    pub duplicate: bool,
}

/// One partition of a topic: its log.
#[derive(Debug)]
pub struct Partition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub index: i32,
    data: Mutex<Option<PartitionData>>,
}

impl Partition {
    /// Runs `f` on the log, or fails if the partition was deleted meanwhile.
    pub fn with_log<R>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<R, BrokerError>,
    ) -> Result<R, BrokerError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(data) => f(&mut data.log),
            None => Err(BrokerError::UnknownTopicOrPartition),
        }
    }

    /// Appends as leader, checking idempotent producers' sequences first.
    fn append(&self, records: &mut [u8]) -> Result<Appended, BrokerError> {
        let mut guard = self.lock();
        let data = guard.as_mut().ok_or(BrokerError::UnknownTopicOrPartition)?;
        let headers = runnel_storage::validate_batches(records)?;
        for (i, header) in headers.iter().enumerate() {
            match data.producers.check(header) {
                SequenceCheck::Append => {}
                // A retried request: its batches are in the log already.
                SequenceCheck::Duplicate { base_offset } if i == 0 => {
                    return Ok(Appended {
                        base_offset,
                        log_start_offset: data.log.log_start_offset(),
                        duplicate: true,
                    });
                }
                SequenceCheck::Duplicate { .. } => {
                    return Err(BrokerError::Producer(
                        ResponseError::DuplicateSequenceNumber,
                    ))
                }
                SequenceCheck::Reject(error) => return Err(BrokerError::Producer(error)),
            }
        }
        let info = data.log.append(records, 0, now_ms())?;
        for header in &info.batches {
            data.producers.record(header);
        }
        Ok(Appended {
            base_offset: info.base_offset,
            log_start_offset: data.log.log_start_offset(),
            duplicate: false,
        })
    }

    /// Writes the producer state snapshot if it changed.
    fn snapshot_producers(&self) -> Result<(), BrokerError> {
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(data) if data.producers.is_dirty() => {
                let end = data.log.log_end_offset();
                data.producers.write_snapshot(data.log.dir(), end)
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<PartitionData>> {
        // A panic while holding the lock leaves the log as it was on disk;
        // carry on with it rather than poisoning the partition forever.
        self.data
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self) -> Option<PartitionLog> {
        self.lock().take().map(|data| data.log)
    }

    /// Snapshots producer state and closes the log (clean shutdown).
    fn close(&self) -> Result<(), BrokerError> {
        if let Some(mut data) = self.lock().take() {
            let end = data.log.log_end_offset();
            data.producers.write_snapshot(data.log.dir(), end)?;
            data.log.close()?;
        }
        Ok(())
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
    /// The partitions, by index.
    pub partitions: Vec<Arc<Partition>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    configs: std::collections::BTreeMap<String, String>,
}

/// Every topic on this broker.
#[derive(Debug)]
pub struct TopicTable {
    data_dir: PathBuf,
    settings: Arc<BrokerSettings>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises changes (create, delete, alter) and the metadata file.
    change: Mutex<()>,
    appended: watch::Sender<u64>,
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

impl TopicTable {
    /// Loads the topics recorded in `data_dir`, recovering their logs.
    pub fn open(data_dir: &Path, settings: Arc<BrokerSettings>) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BrokerError::MetadataIo(format!("create {}: {e}", data_dir.display())))?;
        let table = TopicTable {
            data_dir: data_dir.to_path_buf(),
            settings,
            topics: RwLock::new(HashMap::new()),
            change: Mutex::new(()),
            appended: watch::channel(0).0,
        };
        let path = data_dir.join(TOPICS_FILE);
        let records: Vec<TopicRecord> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| BrokerError::MetadataIo(format!("parse {}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(BrokerError::MetadataIo(format!(
                    "read {}: {e}",
                    path.display()
                )))
            }
        };
        let mut topics = HashMap::new();
        for record in records {
            let configs = TopicConfigs(record.configs);
            let partitions = (0..record.partitions)
                .map(|p| table.open_partition(&record.name, p, &configs))
                .collect::<Result<Vec<_>, _>>()?;
            info!(topic = %record.name, partitions = record.partitions, "topic loaded");
            topics.insert(
                record.name.clone(),
                Arc::new(Topic {
                    name: record.name,
                    id: record.id,
                    configs,
                    partitions,
                }),
            );
        }
        *table.topics.write().unwrap_or_else(|p| p.into_inner()) = topics;
        Ok(table)
    }

    /// The broker settings.
    pub fn settings(&self) -> &BrokerSettings {
        &self.settings
    }

    fn open_partition(
        &self,
        topic: &str,
        index: i32,
        configs: &TopicConfigs,
    ) -> Result<Arc<Partition>, BrokerError> {
        let dir = self.data_dir.join(format!("{topic}-{index}"));
        let log = PartitionLog::open(&dir, configs.log_config(&self.settings), now_ms())?;
        let producers = ProducerStateTable::load(&log)?;
        Ok(Arc::new(Partition {
            topic: topic.to_string(),
            index,
            data: Mutex::new(Some(PartitionData { log, producers })),
        }))
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

    /// Returns the topic, creating it with the defaults if allowed.
    pub fn get_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.get(name) {
            return Ok(t);
        }
        if !self.auto_create_enabled() {
            return Err(BrokerError::UnknownTopicOrPartition);
        }
        validate_topic_name(name)?;
        let partitions = self.settings.get_i64("num.partitions") as i32;
        match self.create(name, partitions, TopicConfigs::default(), false) {
            Ok(t) => Ok(t),
            Err(BrokerError::TopicExists(_)) => {
                self.get(name).ok_or(BrokerError::UnknownTopicOrPartition)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a topic (or only checks that it could be, with `validate_only`).
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: TopicConfigs,
        validate_only: bool,
    ) -> Result<Arc<Topic>, BrokerError> {
        validate_topic_name(name)?;
        if partitions < 1 {
            return Err(BrokerError::InvalidPartitions(format!(
                "number of partitions must be at least 1, got {partitions}"
            )));
        }
        for (k, v) in &configs.0 {
            TopicConfigs::validate(k, v)?;
        }
        let _change = lock(&self.change);
        if self.get(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                name: name.to_string(),
                id: Uuid::nil(),
                configs,
                partitions: Vec::new(),
            }));
        }
        let parts = (0..partitions)
            .map(|p| self.open_partition(name, p, &configs))
            .collect::<Result<Vec<_>, _>>()?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            configs,
            partitions: parts,
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), topic.clone());
        self.persist()?;
        info!(topic = %name, partitions, "topic created");
        Ok(topic)
    }

    /// Deletes a topic and its logs.
    pub fn delete(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        let _change = lock(&self.change);
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        self.persist()?;
        for partition in &topic.partitions {
            if let Some(log) = partition.take() {
                if let Err(error) = log.delete() {
                    warn!(topic = %name, partition = partition.index, %error, "deleting partition log failed");
                }
            }
        }
        info!(topic = %name, "topic deleted");
        Ok(topic)
    }

    /// Raises a topic's partition count to `count`.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let _change = lock(&self.change);
        let topic = self.get(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name:?} has {current} partitions; the count can only grow, got {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            partitions.push(self.open_partition(name, p, &topic.configs)?);
        }
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            configs: topic.configs.clone(),
            partitions,
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), updated);
        self.persist()?;
        info!(topic = %name, from = current, to = count, "partitions added");
        Ok(())
    }

    /// Replaces a topic's config overrides (already validated).
    pub fn set_configs(&self, name: &str, configs: TopicConfigs) -> Result<(), BrokerError> {
        let _change = lock(&self.change);
        let topic = self.get(name).ok_or(BrokerError::UnknownTopicOrPartition)?;
        let log_config = configs.log_config(&self.settings);
        for partition in &topic.partitions {
            partition.with_log(|log| {
                log.set_config(log_config.clone());
                Ok(())
            })?;
        }
        let updated = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            configs,
            partitions: topic.partitions.clone(),
        });
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), updated);
        self.persist()?;
        info!(topic = %name, "topic configs changed");
        Ok(())
    }

    fn persist(&self) -> Result<(), BrokerError> {
        let records: Vec<TopicRecord> = self
            .all()
            .iter()
            .map(|t| TopicRecord {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partitions.len() as i32,
                configs: t.configs.0.clone(),
            })
            .collect();
        let json = serde_json::to_vec_pretty(&records)
            .map_err(|e| BrokerError::MetadataIo(format!("encode topics: {e}")))?;
        crate::clock::write_atomically(&self.data_dir.join(TOPICS_FILE), &json)
            .map_err(|e| BrokerError::MetadataIo(format!("write {TOPICS_FILE}: {e}")))
    }

    /// Appends as leader to a partition and wakes waiting fetches.
    pub fn append(
        &self,
        partition: &Partition,
        records: &mut [u8],
    ) -> Result<Appended, BrokerError> {
        let appended = partition.append(records)?;
        if !appended.duplicate {
            self.appended.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(appended)
    }

    /// A receiver that changes whenever any partition gets records.
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Periodic work: segment rolls and time-based flushes; retention when `retention` is set.
    pub fn housekeeping(&self, retention: bool) {
        let now = now_ms();
        for topic in self.all() {
            for partition in &topic.partitions {
                if retention {
                    // Before retention drops batches, so their producers' state survives them.
                    if let Err(error) = partition.snapshot_producers() {
                        warn!(topic = %topic.name, partition = partition.index, %error, "producer state snapshot failed");
                    }
                }
                let result = partition.with_log(|log| {
                    log.roll_if_due(now)?;
                    log.flush_if_due(now)?;
                    if retention {
                        let deleted = log.enforce_retention(now)?;
                        if deleted > 0 {
                            info!(topic = %topic.name, partition = partition.index, deleted,
                                log_start_offset = log.log_start_offset(), "retention deleted segments");
                        }
                    }
                    Ok(())
                });
                if let Err(error) = result {
                    warn!(topic = %topic.name, partition = partition.index, %error, "log housekeeping failed");
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
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retried_batches_are_recognised_after_clean_and_unclean_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = Arc::new(BrokerSettings::from_pairs(&[]).expect("valid"));
        {
            let table = TopicTable::open(dir.path(), settings.clone()).expect("open");
            table
                .create("t", 1, TopicConfigs::default(), false)
                .expect("create");
            let p = table.partition("t", 0).expect("partition");
            let first = table
                .append(&p, &mut idempotent_batch(42, 0, 3))
                .expect("append");
            assert!(!first.duplicate);
            let retry = table
                .append(&p, &mut idempotent_batch(42, 0, 3))
                .expect("retry");
            assert!(retry.duplicate);
            assert_eq!(retry.base_offset, first.base_offset);
            assert_eq!(end(&table), 3);
            table.close(); // writes the snapshot
        }
        {
            let table = TopicTable::open(dir.path(), settings.clone())
                .expect("reopen after clean shutdown");
            let p = table.partition("t", 0).expect("partition");
            assert!(
                table
                    .append(&p, &mut idempotent_batch(42, 0, 3))
                    .expect("retry")
                    .duplicate
            );
            let gap = table.append(&p, &mut idempotent_batch(42, 7, 1));
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
                .append(&p, &mut idempotent_batch(42, 3, 2))
                .expect("next in sequence");
            assert_eq!(end(&table), 5);
            // No close: as after kill -9, the snapshot is behind the log.
        }
        let table = TopicTable::open(dir.path(), settings).expect("reopen after crash");
        let p = table.partition("t", 0).expect("partition");
        let retry = table
            .append(&p, &mut idempotent_batch(42, 3, 2))
            .expect("retry of the unsnapshotted batch");
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 3);
        assert_eq!(end(&table), 5);
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
