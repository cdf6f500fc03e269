//! The follower side: one task per leader this broker follows, pulling
//! records and applying them to the local replicas.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::throttle::{self, Side};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::replication::replica_client::ReplicaClient;
use crate::proto::replication::{FetchPartition, FetchRequest, FetchedPartition};
use crate::topics::{Followed, Partition, PartitionData, Role};

/// How often the fetcher manager looks for leaders to follow.
const MANAGER_INTERVAL: Duration = Duration::from_millis(100);
/// Backoff after a failed connection or fetch.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// How long a fetcher whose every partition is held back by a replication
/// throttle waits before it looks again (Kafka's `replica.fetch.backoff.ms`).
const THROTTLED_BACKOFF: Duration = Duration::from_millis(1000);
/// Per-partition byte limit of one fetch.
const PARTITION_MAX_BYTES: u32 = 1 << 20;

/// Runs fetcher tasks for every leader this broker follows until shutdown.
pub async fn run_fetchers(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut tasks: HashMap<i32, JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(MANAGER_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        tasks.retain(|_, task| !task.is_finished());
        for leader in broker.topics.followed_leaders().into_keys() {
            if leader != broker.identity.node_id && !tasks.contains_key(&leader) {
                debug!(leader, "starting replica fetcher");
                tasks.insert(
                    leader,
                    tokio::spawn(fetch_from(broker.clone(), leader, shutdown.clone())),
                );
            }
        }
    }
    for (_, task) in tasks {
        task.abort();
    }
}

async fn fetch_from(broker: Arc<Broker>, leader: i32, shutdown: CancellationToken) {
    let wait_ms = broker.settings.get_i64("replica.fetch.wait.max.ms").max(0) as u32;
    let max_bytes = broker.settings.get_i64("replica.fetch.max.bytes").max(1) as u32;
    let mut client: Option<(String, ReplicaClient<Channel>)> = None;
    // Throttled partitions whose last answer found them caught up.
    let mut caught_up: HashSet<(String, i32)> = HashSet::new();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let followed = broker.topics.followed_from(leader);
        if followed.is_empty() {
            return;
        }
        let image = broker.topics.image();
        let Some(address) = image.brokers.get(&leader).map(|b| b.rpc_address.clone()) else {
            tokio::time::sleep(RETRY_BACKOFF).await;
            continue;
        };
        if client.as_ref().is_none_or(|(a, _)| *a != address) {
            match connect(&address).await {
                Ok(c) => client = Some((address.clone(), c)),
                Err(error) => {
                    debug!(leader, %address, %error, "cannot reach leader");
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
            }
        }
        let Some((_, rpc)) = client.as_mut() else {
            continue;
        };
        // KIP-73: partitions under a follower throttle count against it;
        // those not caught up with the leader (as of its last answer) sit
        // this fetch out while it is exceeded.
        let rate = throttle::rate(&image, broker.identity.node_id, Side::Follower);
        let throttled: Vec<bool> = followed
            .iter()
            .map(|f| {
                let (topic, index) = (&f.partition.topic, f.partition.index);
                rate.is_some() && throttle::throttled_here(&broker, Side::Follower, topic, index)
            })
            .collect();
        let exceeded = throttled.iter().any(|t| *t)
            && rate.is_some_and(|rate| {
                let now = std::time::Instant::now();
                broker
                    .replication_quotas
                    .exceeded(Side::Follower, rate, now)
            });
        let behind =
            |f: &Followed| !caught_up.contains(&(f.partition.topic.clone(), f.partition.index));
        let followed: Vec<(&Followed, bool)> = followed
            .iter()
            .zip(throttled.iter().copied())
            .filter(|(f, t)| !(exceeded && *t && behind(f)))
            .collect();
        let held_back = throttled.len() - followed.len();
        if held_back > 0 {
            broker
                .metrics
                .replication_throttled(Side::Follower.label(), 0, held_back);
        }
        if followed.is_empty() {
            // Everything is held back: wait for the rate to fall.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(THROTTLED_BACKOFF) => {}
            }
            continue;
        }
        let request = FetchRequest {
            replica_id: broker.identity.node_id,
            broker_epoch: broker.controller.broker_epoch(),
            max_wait_ms: wait_ms,
            max_bytes,
            partitions: followed
                .iter()
                .map(|(f, _)| FetchPartition {
                    topic: f.partition.topic.clone(),
                    partition: f.partition.index,
                    fetch_offset: f.fetch_offset,
                    last_fetched_epoch: f.last_fetched_epoch,
                    current_leader_epoch: f.leader_epoch,
                    max_bytes: PARTITION_MAX_BYTES.min(max_bytes),
                    log_start_offset: Some(f.log_start_offset),
                })
                .collect(),
        };
        let timeout = Duration::from_millis(u64::from(wait_ms)) + Duration::from_secs(10);
        let response = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, rpc.fetch(request)) => r,
        };
        let response = match response {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                debug!(leader, %status, "replica fetch failed");
                client = None;
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            Err(_) => {
                debug!(leader, "replica fetch timed out");
                client = None;
                continue;
            }
        };
        let mut pause = false;
        let mut throttled_bytes = 0;
        for fetched in response.partitions {
            let Some((f, throttled)) = followed.iter().find(|(f, _)| {
                f.partition.topic == fetched.topic && f.partition.index == fetched.partition
            }) else {
                continue;
            };
            let partition = &f.partition;
            match apply(&broker, partition, f.leader_epoch, leader, &fetched) {
                Ok(true) => {}
                Ok(false) => pause = true,
                Err(error) => {
                    warn!(topic = %partition.topic, partition = partition.index, %error, "applying fetched records failed");
                    pause = true;
                }
            }
            if *throttled {
                throttled_bytes += fetched.records.len();
                // Kafka's "in sync" for a follower throttle: no lag behind
                // the high watermark of the leader's last answer.
                let end = partition.with_data(|d| Ok(d.log.log_end_offset()));
                let key = (partition.topic.clone(), partition.index);
                if fetched.error_code == 0 && end.is_ok_and(|end| end >= fetched.high_watermark) {
                    caught_up.insert(key);
                } else {
                    caught_up.remove(&key);
                }
            }
        }
        if throttled_bytes > 0 {
            let quotas = &broker.replication_quotas;
            quotas.record(Side::Follower, throttled_bytes, std::time::Instant::now());
            let metrics = &broker.metrics;
            metrics.replication_throttled(Side::Follower.label(), throttled_bytes, 0);
        }
        if pause {
            // Errors the leader will not fix by itself (epochs, leadership):
            // give the metadata a moment to move on.
            tokio::time::sleep(RETRY_BACKOFF).await;
        }
    }
}

async fn connect(address: &str) -> Result<ReplicaClient<Channel>, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    let channel = match crate::tls::inter_broker() {
        Some(tls) => {
            endpoint
                .connect_with_connector(crate::tls::rpc_connector(tls))
                .await?
        }
        None => endpoint.connect().await?,
    };
    Ok(ReplicaClient::new(channel).max_decoding_message_size(256 << 20))
}

/// Applies one partition's answer; `Ok(false)` when the leader refused in a
/// way only new metadata fixes.
fn apply(
    broker: &Broker,
    partition: &Arc<Partition>,
    epoch: i32,
    leader: i32,
    fetched: &FetchedPartition,
) -> Result<bool, BrokerError> {
    let code = i16::try_from(fetched.error_code).unwrap_or(-1);
    let outcome = partition.with_data(|d| {
        // The role may have changed while the fetch was in flight.
        if !matches!(d.role, Role::Follower { leader: l } if l == leader) || d.leader_epoch != epoch
        {
            return Ok((true, None));
        }
        if code == ResponseError::OffsetOutOfRange.code() {
            out_of_range(d, partition, fetched)?;
            return Ok((true, None));
        }
        if code != 0 {
            debug!(topic = %partition.topic, partition = partition.index, code, "leader refused fetch");
            return Ok((false, None));
        }
        if fetched.diverging_end_offset >= 0 {
            let mut target = fetched.diverging_end_offset;
            if fetched.diverging_epoch >= 0 {
                if let Some((_, own_end)) = d.log.end_offset_for_epoch(fetched.diverging_epoch) {
                    target = target.min(own_end);
                }
            }
            info!(topic = %partition.topic, partition = partition.index,
                epoch = fetched.diverging_epoch, offset = target,
                log_end_offset = d.log.log_end_offset(), "log diverges from the leader's; truncating");
            truncate(d, target)?;
            return Ok((true, None));
        }
        if !fetched.records.is_empty() {
            let info = match d.log.append_replicated(&fetched.records, crate::clock::now_ms()) {
                Ok(info) => info,
                Err(error) => {
                    warn!(topic = %partition.topic, partition = partition.index, %error,
                        "replicated records do not follow the local log; truncating to the high watermark");
                    let hw = d.high_watermark();
                    truncate(d, hw)?;
                    return Ok((true, None));
                }
            };
            d.producers.record_all(&fetched.records, &info.batches);
        }
        // DeleteRecords on the leader moves its log start; follow it.
        if fetched.log_start_offset > d.log.log_start_offset()
            && d.log.advance_log_start(fetched.log_start_offset)?
        {
            d.producers.prune_aborted(d.log.log_start_offset());
        }
        let moved = d.set_follower_high_watermark(fetched.high_watermark);
        Ok((true, moved.then(|| d.high_watermark())))
    })?;
    let (ok, hw) = outcome;
    if let Some(hw) = hw {
        partition.publish_high_watermark(hw);
    }
    if !fetched.records.is_empty() || hw.is_some() {
        broker.topics.notify();
    }
    Ok(ok)
}

fn out_of_range(
    d: &mut PartitionData,
    partition: &Partition,
    fetched: &FetchedPartition,
) -> Result<(), BrokerError> {
    let end = d.log.log_end_offset();
    if end < fetched.log_start_offset {
        info!(topic = %partition.topic, partition = partition.index,
            leader_log_start = fetched.log_start_offset, "leader's log starts past ours; starting over there");
        d.log
            .truncate_fully_and_start_at(fetched.log_start_offset)?;
        d.reload_producers()?;
    } else if fetched.log_end_offset >= 0 && end > fetched.log_end_offset {
        truncate(d, fetched.log_end_offset)?;
    }
    Ok(())
}

/// Truncates to `offset`, falling back to the high watermark and then to the
/// log start when `offset` is not a batch boundary here.
fn truncate(d: &mut PartitionData, offset: i64) -> Result<(), BrokerError> {
    let attempt = d.log.truncate_to(offset);
    if let Err(error) = attempt {
        let hw = d.high_watermark().min(offset);
        warn!(offset, %error, fallback = hw, "truncation inside a batch; truncating further");
        if d.log.truncate_to(hw).is_err() {
            let start = d.log.log_start_offset();
            d.log.truncate_fully_and_start_at(start)?;
        }
    }
    d.reload_producers()
}
