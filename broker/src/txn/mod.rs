//! The transaction coordinator: transactional ids, their producer ids and
//! epochs, and the two-phase commit of a transaction's partitions.
//!
//! ```text
//!   InitProducerId(tid) ─▶ pid + epoch (bumped: older producers are fenced)
//!   AddPartitionsToTxn / AddOffsetsToTxn ─▶ Ongoing {partitions}
//!   EndTxn(commit|abort) ─▶ PrepareCommit|PrepareAbort   (answered here)
//!        ─▶ markers: each partition's leader appends a control batch
//!           (gRPC Replica.WriteMarkers, or a local append)
//!        ─▶ CompleteCommit|CompleteAbort
//!   every state is a record in __transaction_state (same log as user data)
//! ```
//!
//! The coordinator of a transactional id is the leader of its
//! `__transaction_state` partition (`abs(javaHashCode(id)) % partitions`):
//! becoming leader replays the partition and finishes the transactions it
//! finds half-completed; losing leadership forgets them. Transactions open
//! longer than their timeout are aborted with the producer's epoch bumped,
//! so the producer is fenced.

pub(crate) mod log;
pub(crate) mod verify;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::{BrokerSettings, TopicConfigs};
use crate::error::BrokerError;
use crate::groups::offsets::{partition_for, OFFSETS_TOPIC};
use crate::producers::Marker;
use crate::topics::{Partition, RoleChange, TopicTable};
use log::{TxnMetadata, TxnState, TXN_TOPIC};

/// How long a write to `__transaction_state` or a marker waits for the ISR.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between attempts to deliver markers.
const MAX_MARKER_BACKOFF: Duration = Duration::from_secs(1);

/// The coordinator of every transactional id whose partition this broker leads.
#[derive(Debug)]
pub(crate) struct TransactionCoordinator {
    /// `__transaction_state` partitions led here, with their leader epoch
    /// (the coordinator epoch the markers carry).
    owned: Mutex<HashMap<i32, i32>>,
    txns: Mutex<HashMap<String, TxnMetadata>>,
    /// Transactional ids whose markers a task is delivering.
    completing: Mutex<BTreeSet<String>>,
    partitions: i32,
    max_timeout_ms: i64,
    /// `transactional.id.expiration.ms`.
    id_expiration_ms: i64,
    /// gRPC channels to other brokers, by address: markers to partition
    /// leaders, verifications to coordinators (see `verify`).
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
    /// `transaction.partition.verification.enable` (KIP-890).
    verification: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A transaction as ListTransactions and DescribeTransactions show it.
#[derive(Debug, Clone)]
pub(crate) struct TxnListing {
    /// The transactional id.
    pub(crate) transactional_id: String,
    /// Its metadata.
    pub(crate) metadata: TxnMetadata,
}

impl TransactionCoordinator {
    /// A coordinator configured from the broker settings.
    pub(crate) fn new(settings: &BrokerSettings) -> Self {
        TransactionCoordinator {
            owned: Mutex::new(HashMap::new()),
            txns: Mutex::new(HashMap::new()),
            completing: Mutex::new(BTreeSet::new()),
            partitions: settings.get_i64("transaction.state.log.num.partitions") as i32,
            max_timeout_ms: settings.get_i64("transaction.max.timeout.ms"),
            id_expiration_ms: settings.get_i64("transactional.id.expiration.ms"),
            channels: Mutex::new(HashMap::new()),
            verification: settings.get_bool("transaction.partition.verification.enable"),
        }
    }

    /// Whether transactional batches are verified with their coordinator
    /// (`transaction.partition.verification.enable`, KIP-890).
    pub(crate) fn verification_enabled(&self) -> bool {
        self.verification
    }

    /// A lazily connecting channel to the broker whose gRPC listener is at
    /// `address`, kept for the next call.
    fn channel(&self, address: &str) -> Result<tonic::transport::Channel, String> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = crate::controller::network::channel(address).map_err(|e| e.to_string())?;
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// The `__transaction_state` partition of a transactional id.
    pub(crate) fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.partitions)
    }

    /// The number of `__transaction_state` partitions.
    pub(crate) fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The configs `__transaction_state` is created with, Kafka's:
    /// compacted (each transactional id's latest state stays, expired ids
    /// go with their tombstones), in segments of
    /// `transaction.state.log.segment.bytes`.
    pub(crate) fn topic_configs(settings: &BrokerSettings) -> TopicConfigs {
        crate::groups::internal_topic_configs(settings.get("transaction.state.log.segment.bytes"))
    }

    /// The coordinator epoch, or NOT_COORDINATOR unless this broker leads
    /// the id's partition.
    fn coordinator_epoch(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        lock(&self.owned)
            .get(&self.partition_of(transactional_id))
            .copied()
            .ok_or(ResponseError::NotCoordinator)
    }

    /// Follows `__transaction_state` leadership; returns the transactional
    /// ids found half-completed, whose markers are to be delivered.
    pub(crate) fn on_role_changes(
        &self,
        topics: &TopicTable,
        changes: &[RoleChange],
    ) -> Vec<String> {
        let mut resume = Vec::new();
        for change in changes {
            match change {
                RoleChange::BecameLeader(topic, p) if topic == TXN_TOPIC => {
                    match self.load_partition(topics, *p) {
                        Ok(epoch) => {
                            lock(&self.owned).insert(*p, epoch);
                            resume.extend(
                                lock(&self.txns)
                                    .iter()
                                    .filter(|(id, m)| {
                                        m.state.is_preparing() && self.partition_of(id) == *p
                                    })
                                    .map(|(id, _)| id.clone()),
                            );
                        }
                        Err(error) => {
                            warn!(partition = p, %error, "loading transaction state failed")
                        }
                    }
                }
                RoleChange::LostLeadership(topic, p) if topic == TXN_TOPIC => {
                    lock(&self.owned).remove(p);
                    lock(&self.txns).retain(|id, _| self.partition_of(id) != *p);
                    info!(
                        partition = p,
                        "no longer coordinating the transactions of this partition"
                    );
                }
                _ => {}
            }
        }
        resume
    }

    /// Replays one `__transaction_state` partition; its leader epoch.
    fn load_partition(&self, topics: &TopicTable, index: i32) -> Result<i32, BrokerError> {
        let partition = topics.partition(TXN_TOPIC, index)?;
        let epoch = partition.with_data(|d| Ok(d.leader_epoch))?;
        let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
        partition.replay(|record| {
            let Some(id) = record.key.as_ref().and_then(log::decode_key) else {
                return;
            };
            match record.value.as_ref().and_then(log::decode_value) {
                Some(m) => {
                    loaded.insert(id, m);
                }
                None => {
                    loaded.remove(&id);
                }
            }
        })?;
        let count = loaded.len();
        let mut txns = lock(&self.txns);
        txns.retain(|id, _| self.partition_of(id) != index);
        txns.extend(loaded);
        info!(
            partition = index,
            transactional_ids = count,
            "coordinating the transactions of this partition"
        );
        Ok(epoch)
    }

    /// Appends an id's new metadata (`None`: a tombstone, the id expired)
    /// to its partition; the partition and the offset after the record, to
    /// wait for.
    fn append(
        &self,
        topics: &TopicTable,
        transactional_id: &str,
        metadata: Option<&TxnMetadata>,
    ) -> Result<(Arc<Partition>, i64), BrokerError> {
        let batch = crate::records::encode_batch(
            vec![(
                Some(log::encode_key(transactional_id)),
                metadata.map(log::encode_value),
            )],
            crate::clock::now_ms(),
            None,
        )?;
        let partition = topics.partition(TXN_TOPIC, self.partition_of(transactional_id))?;
        let appended = topics.append(&partition, &batch, None)?;
        Ok((partition, appended.end_offset))
    }

    /// Every transaction this broker coordinates (ListTransactions).
    pub(crate) fn list(&self) -> Vec<TxnListing> {
        let mut listed: Vec<TxnListing> = lock(&self.txns)
            .iter()
            .map(|(id, m)| TxnListing {
                transactional_id: id.clone(),
                metadata: m.clone(),
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        listed
    }

    /// One transaction (DescribeTransactions).
    pub(crate) fn describe(
        &self,
        transactional_id: &str,
    ) -> Result<Option<TxnMetadata>, ResponseError> {
        self.coordinator_epoch(transactional_id)?;
        Ok(lock(&self.txns).get(transactional_id).cloned())
    }
}

/// Kafka's mapping of a failed state write to what the client is told.
fn write_error(error: &BrokerError) -> ResponseError {
    match error.kafka() {
        ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
        ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::UnknownTopicOrPartition => ResponseError::NotCoordinator,
        _ => ResponseError::UnknownServerError,
    }
}

/// Waits until the ISR has a state write.
async fn replicated(written: (Arc<Partition>, i64)) -> Result<(), ResponseError> {
    let (partition, end) = written;
    TopicTable::wait_for_high_watermark(&partition, end, WRITE_TIMEOUT)
        .await
        .map_err(|e| write_error(&e))
}

/// The next epoch of a producer: the same id one epoch on, or a new id
/// (from `spare`) once the epoch would overflow.
fn bump(m: &mut TxnMetadata, spare: &mut Option<i64>) -> bool {
    if m.producer_epoch < i16::MAX - 1 {
        m.producer_epoch += 1;
        true
    } else if let Some(id) = spare.take() {
        m.producer_id = id;
        m.producer_epoch = 0;
        true
    } else {
        false
    }
}

/// What InitProducerId decided under the lock.
enum InitStep {
    /// A fresh producer id is needed first.
    NeedId,
    /// Wait for this write, then answer with the id and epoch.
    Answer((Arc<Partition>, i64), i64, i16),
    /// The open transaction is being aborted; the client retries.
    Aborting((Arc<Partition>, i64)),
}

/// InitProducerId for a transactional id: a producer id and a new epoch,
/// fencing every older producer with the same transactional id.
pub(crate) async fn init_producer_id(
    broker: &Arc<Broker>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    let coordinator = &broker.txns;
    coordinator.coordinator_epoch(transactional_id)?;
    if timeout_ms <= 0 || i64::from(timeout_ms) > coordinator.max_timeout_ms {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    let mut spare: Option<i64> = None;
    loop {
        let step = {
            let mut txns = lock(&coordinator.txns);
            let now = crate::clock::now_ms();
            let current = txns.get(transactional_id).cloned();
            let next = match current {
                None => match spare.take() {
                    None => Err(InitStep::NeedId),
                    Some(id) => Ok(TxnMetadata {
                        producer_id: id,
                        producer_epoch: 0,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        last_update_ms: now,
                        start_ms: -1,
                    }),
                },
                Some(m) => {
                    if let Some((id, epoch)) = expected {
                        // KIP-360: only the current producer may bump its
                        // epoch. One epoch behind is a retry of a bump that
                        // happened (its answer was lost) or of a request
                        // that fenced an open transaction first.
                        let retried = epoch.checked_add(1) == Some(m.producer_epoch);
                        if id != m.producer_id || (epoch != m.producer_epoch && !retried) {
                            return Err(ResponseError::ProducerFenced);
                        }
                        if retried && m.state == TxnState::Empty {
                            return Ok((m.producer_id, m.producer_epoch));
                        }
                    }
                    if m.state.is_preparing() {
                        return Err(ResponseError::ConcurrentTransactions);
                    }
                    let mut next = m.clone();
                    if !bump(&mut next, &mut spare) {
                        Err(InitStep::NeedId)
                    } else if m.state == TxnState::Ongoing {
                        // Fence the open transaction's producer and abort it.
                        next.state = TxnState::PrepareAbort;
                        next.last_update_ms = now;
                        let written = coordinator
                            .append(&broker.topics, transactional_id, Some(&next))
                            .map_err(|e| write_error(&e))?;
                        txns.insert(transactional_id.to_string(), next);
                        Err(InitStep::Aborting(written))
                    } else {
                        next.state = TxnState::Empty;
                        next.timeout_ms = timeout_ms;
                        next.partitions.clear();
                        next.start_ms = -1;
                        next.last_update_ms = now;
                        Ok(next)
                    }
                }
            };
            match next {
                Err(step) => step,
                Ok(next) => {
                    let written = coordinator
                        .append(&broker.topics, transactional_id, Some(&next))
                        .map_err(|e| write_error(&e))?;
                    let answer = InitStep::Answer(written, next.producer_id, next.producer_epoch);
                    txns.insert(transactional_id.to_string(), next);
                    answer
                }
            }
        };
        match step {
            InitStep::NeedId => {
                let id = broker
                    .producer_ids
                    .next_id(&broker.controller)
                    .await
                    .map_err(|error| {
                        warn!(%error, "allocating a producer id failed");
                        ResponseError::CoordinatorNotAvailable
                    })?;
                spare = Some(id);
            }
            InitStep::Answer(written, id, epoch) => {
                replicated(written).await?;
                return Ok((id, epoch));
            }
            InitStep::Aborting(written) => {
                return finish_abort(broker, transactional_id, written).await;
            }
        }
    }
}

/// After an abort was prepared for InitProducerId: start the markers and
/// tell the client to retry.
async fn finish_abort(
    broker: &Arc<Broker>,
    transactional_id: &str,
    written: (Arc<Partition>, i64),
) -> Result<(i64, i16), ResponseError> {
    replicated(written).await?;
    spawn_completion(broker, transactional_id.to_string());
    Err(ResponseError::ConcurrentTransactions)
}

/// Checks that a request comes from the current producer of an id.
fn check_producer(
    m: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<TxnMetadata, ResponseError> {
    let m = m.ok_or(ResponseError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(m.clone())
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
/// partition): the partitions join the open transaction. Per partition:
/// `None` when added.
pub(crate) async fn add_partitions(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<((String, i32), Option<ResponseError>)>, ResponseError> {
    let coordinator = &broker.txns;
    coordinator.coordinator_epoch(transactional_id)?;
    let image = broker.image();
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(t, p)| image.partition(t, *p).is_none())
        .collect();
    if unknown.iter().any(|u| *u) {
        return Ok(partitions
            .into_iter()
            .zip(unknown)
            .map(|(tp, unknown)| {
                let error = if unknown {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                };
                (tp, Some(error))
            })
            .collect());
    }
    let written = {
        let mut txns = lock(&coordinator.txns);
        let m = check_producer(txns.get(transactional_id), producer_id, producer_epoch)?;
        if m.state.is_preparing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let added_already =
            m.state == TxnState::Ongoing && partitions.iter().all(|tp| m.partitions.contains(tp));
        if added_already {
            None
        } else {
            let now = crate::clock::now_ms();
            let mut next = m.clone();
            if next.state != TxnState::Ongoing {
                next.partitions.clear();
                next.start_ms = now;
                next.state = TxnState::Ongoing;
            }
            next.partitions.extend(partitions.iter().cloned());
            next.last_update_ms = now;
            let written = coordinator
                .append(&broker.topics, transactional_id, Some(&next))
                .map_err(|e| write_error(&e))?;
            txns.insert(transactional_id.to_string(), next);
            Some(written)
        }
    };
    if let Some(written) = written {
        replicated(written).await?;
    }
    Ok(partitions.into_iter().map(|tp| (tp, None)).collect())
}

/// EndTxn: prepares the commit or abort, answers once that is durable, and
/// delivers the markers in the background.
pub(crate) async fn end_txn(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), ResponseError> {
    let coordinator = &broker.txns;
    coordinator.coordinator_epoch(transactional_id)?;
    let written = {
        let mut txns = lock(&coordinator.txns);
        let m = check_producer(txns.get(transactional_id), producer_id, producer_epoch)?;
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = m.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = crate::clock::now_ms();
                let written = coordinator
                    .append(&broker.topics, transactional_id, Some(&next))
                    .map_err(|e| write_error(&e))?;
                txns.insert(transactional_id.to_string(), next);
                written
            }
            // A retry of an EndTxn that went through.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            _ => return Err(ResponseError::InvalidTxnState),
        }
    };
    replicated(written).await?;
    spawn_completion(broker, transactional_id.to_string());
    Ok(())
}

/// Aborts, with the producer fenced, every transaction open longer than
/// its timeout, and forgets (with a tombstone) the transactional ids idle
/// for `transactional.id.expiration.ms`, as Kafka does.
pub(crate) fn housekeeping(broker: &Arc<Broker>, now_ms: i64) {
    let coordinator = &broker.txns;
    let mut aborted = Vec::new();
    {
        let mut txns = lock(&coordinator.txns);
        let idle: Vec<String> = txns
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && m
                    .last_update_ms
                    .saturating_add(coordinator.id_expiration_ms)
                    < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            match coordinator.append(&broker.topics, &id, None) {
                Ok(_) => {
                    info!(transactional_id = %id, "transactional id expired");
                    txns.remove(&id);
                }
                Err(error) => {
                    warn!(transactional_id = %id, %error, "expiring a transactional id failed")
                }
            }
        }
        let expired: Vec<String> = txns
            .iter()
            .filter(|(_, m)| {
                m.state == TxnState::Ongoing
                    && m.start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Some(mut next) = txns.get(&id).cloned() else {
                continue;
            };
            // Without a spare id an exhausted epoch stays: the markers still fence by state.
            bump(&mut next, &mut None);
            next.state = TxnState::PrepareAbort;
            next.last_update_ms = now_ms;
            match coordinator.append(&broker.topics, &id, Some(&next)) {
                Ok(written) => {
                    info!(transactional_id = %id, producer_id = next.producer_id,
                        epoch = next.producer_epoch, "aborting a transaction past its timeout");
                    txns.insert(id.clone(), next);
                    aborted.push((id, written));
                }
                Err(error) => {
                    warn!(transactional_id = %id, %error, "aborting a timed-out transaction failed")
                }
            }
        }
    }
    for (id, written) in aborted {
        let broker = broker.clone();
        tokio::spawn(async move {
            if replicated(written).await.is_ok() {
                spawn_completion(&broker, id);
            }
        });
    }
}

/// Delivers the markers of transactions found half-completed.
pub(crate) fn resume(broker: &Arc<Broker>, transactional_ids: Vec<String>) {
    for id in transactional_ids {
        spawn_completion(broker, id);
    }
}

fn spawn_completion(broker: &Arc<Broker>, transactional_id: String) {
    if !lock(&broker.txns.completing).insert(transactional_id.clone()) {
        return; // a task is on it
    }
    let broker = broker.clone();
    tokio::spawn(async move {
        complete(&broker, &transactional_id).await;
        lock(&broker.txns.completing).remove(&transactional_id);
    });
}

/// Writes a prepared transaction's markers to every partition, then
/// records it complete. Retries until done or this broker stops
/// coordinating the id.
async fn complete(broker: &Arc<Broker>, transactional_id: &str) {
    let coordinator = &broker.txns;
    let mut delivered: BTreeSet<(String, i32)> = BTreeSet::new();
    let mut backoff = Duration::from_millis(20);
    loop {
        let Ok(coordinator_epoch) = coordinator.coordinator_epoch(transactional_id) else {
            return;
        };
        let Some(m) = lock(&coordinator.txns).get(transactional_id).cloned() else {
            return;
        };
        let (marker, done_state) = match m.state {
            TxnState::PrepareCommit => (Marker::Commit, TxnState::CompleteCommit),
            TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                (Marker::Abort, TxnState::CompleteAbort)
            }
            _ => return,
        };
        let image = broker.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, p) in &m.partitions {
            if delivered.contains(&(topic.clone(), *p)) {
                continue;
            }
            match image.partition(topic, *p) {
                // Deleted since: nothing to mark.
                None => {
                    delivered.insert((topic.clone(), *p));
                }
                Some(partition) => by_leader
                    .entry(partition.leader)
                    .or_default()
                    .push((topic.clone(), *p)),
            }
        }
        for (leader, partitions) in by_leader {
            let results = if leader == broker.identity.node_id {
                write_markers_locally(
                    broker,
                    m.producer_id,
                    m.producer_epoch,
                    marker,
                    coordinator_epoch,
                    partitions,
                )
                .await
            } else {
                let address = image.brokers.get(&leader).map(|b| b.rpc_address.clone());
                match address {
                    Some(address) => {
                        remote_markers(broker, &address, &m, marker, coordinator_epoch, partitions)
                            .await
                    }
                    None => Vec::new(), // offline: try again later
                }
            };
            for (tp, code) in results {
                if code == 0 || code == ResponseError::UnknownTopicOrPartition.code() {
                    delivered.insert(tp);
                }
            }
        }
        if m.partitions.iter().all(|tp| delivered.contains(tp)) {
            let written = {
                let mut txns = lock(&coordinator.txns);
                match txns.get(transactional_id) {
                    Some(current) if *current == m => {
                        let mut next = m.clone();
                        next.state = done_state;
                        next.partitions.clear();
                        next.last_update_ms = crate::clock::now_ms();
                        match coordinator.append(&broker.topics, transactional_id, Some(&next)) {
                            Ok(written) => {
                                txns.insert(transactional_id.to_string(), next);
                                Some(written)
                            }
                            Err(error) => {
                                warn!(transactional_id, %error, "recording a completed transaction failed");
                                None
                            }
                        }
                    }
                    _ => return,
                }
            };
            if let Some(written) = written {
                if let Err(error) = replicated(written).await {
                    warn!(
                        transactional_id,
                        ?error,
                        "a completed transaction's record was not replicated"
                    );
                }
                return;
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_MARKER_BACKOFF);
    }
}

/// Asks another broker to write markers to the partitions it leads.
async fn remote_markers(
    broker: &Broker,
    address: &str,
    m: &TxnMetadata,
    marker: Marker,
    coordinator_epoch: i32,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    use crate::proto::replication::replica_client::ReplicaClient;
    use crate::proto::replication::{MarkerPartition, WriteMarkersRequest};
    let request = WriteMarkersRequest {
        producer_id: m.producer_id,
        producer_epoch: i32::from(m.producer_epoch),
        commit: marker == Marker::Commit,
        coordinator_epoch,
        partitions: partitions
            .into_iter()
            .map(|(topic, partition)| MarkerPartition { topic, partition })
            .collect(),
    };
    let call = async {
        let channel = broker.txns.channel(address)?;
        ReplicaClient::new(channel)
            .write_markers(request)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(WRITE_TIMEOUT + Duration::from_secs(5), call).await {
        Ok(Ok(response)) => response
            .into_inner()
            .results
            .into_iter()
            .map(|r| ((r.topic, r.partition), r.error_code as i16))
            .collect(),
        Ok(Err(error)) => {
            warn!(%address, %error, "writing transaction markers failed");
            Vec::new()
        }
        Err(_) => {
            warn!(%address, "writing transaction markers timed out");
            Vec::new()
        }
    }
}

/// Appends a marker to each of `partitions` this broker leads and waits
/// for their ISR; a Kafka error code per partition. A commit marker on a
/// `__consumer_offsets` partition makes the transaction's offsets visible.
pub(crate) async fn write_markers_locally(
    broker: &Arc<Broker>,
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    let mut results = Vec::with_capacity(partitions.len());
    let mut waits = Vec::new();
    for (topic, index) in partitions {
        let appended = broker
            .topics
            .partition(&topic, index)
            .and_then(|partition| {
                let end = broker.topics.append_marker(
                    &partition,
                    producer_id,
                    producer_epoch,
                    marker,
                    coordinator_epoch,
                )?;
                Ok((partition, end))
            });
        match appended {
            Ok((partition, end)) => waits.push(((topic, index), partition, end)),
            Err(error) => results.push(((topic, index), error.code())),
        }
    }
    for ((topic, index), partition, end) in waits {
        let code = match TopicTable::wait_for_high_watermark(&partition, end, WRITE_TIMEOUT).await {
            Ok(()) => {
                if topic == OFFSETS_TOPIC {
                    broker
                        .groups
                        .complete_txn(index, producer_id, marker == Marker::Commit);
                }
                0
            }
            Err(error) => error.code(),
        };
        results.push(((topic, index), code));
    }
    results
}
