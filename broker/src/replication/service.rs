//! The leader side: answers followers' fetches.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::throttle::{self, Side};
use super::{propose, IsrProposal};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::proto::replication::replica_server::Replica;
use crate::proto::replication::{
    FetchPartition, FetchRequest, FetchResponse, FetchedPartition, MarkerResult, VerifyTxnRequest,
    VerifyTxnResponse, WriteMarkersRequest, WriteMarkersResponse,
};
use crate::topics::Role;

/// The longest a follower's fetch waits for records.
const MAX_WAIT_CAP: Duration = Duration::from_secs(5);

/// The gRPC `Replica` service.
#[derive(Debug, Clone)]
pub struct ReplicaService {
    broker: Arc<Broker>,
}

impl ReplicaService {
    /// The service for `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        ReplicaService { broker }
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    #[instrument(skip_all, fields(replica = request.get_ref().replica_id))]
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let request = request.into_inner();
        let max_wait = Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_WAIT_CAP);
        let deadline = Instant::now() + max_wait;
        let mut appended = self.broker.topics.subscribe_appends();
        loop {
            appended.borrow_and_update();
            let (response, bytes, errors) = self.read_once(&request);
            if bytes > 0 || errors || Instant::now() >= deadline {
                return Ok(Response::new(response));
            }
            if tokio::time::timeout_at(deadline, appended.changed())
                .await
                .is_err()
            {
                continue; // one last read at the deadline
            }
        }
    }

    async fn write_markers(
        &self,
        request: Request<WriteMarkersRequest>,
    ) -> Result<Response<WriteMarkersResponse>, Status> {
        Ok(Response::new(
            self.write_markers_here(request.into_inner()).await,
        ))
    }

    async fn verify_txn(
        &self,
        request: Request<VerifyTxnRequest>,
    ) -> Result<Response<VerifyTxnResponse>, Status> {
        let request = request.into_inner();
        let partitions: Vec<(String, i32)> = request
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let verified = match i16::try_from(request.producer_epoch) {
            Ok(epoch) => crate::txn::verify::verify_here(
                &self.broker,
                &request.transactional_id,
                request.producer_id,
                epoch,
                &partitions,
            ),
            Err(_) => Err(ResponseError::InvalidProducerEpoch),
        };
        Ok(Response::new(match verified {
            Ok(results) => VerifyTxnResponse {
                error_code: 0,
                results: partitions
                    .into_iter()
                    .zip(results)
                    .map(|((topic, partition), error)| MarkerResult {
                        topic,
                        partition,
                        error_code: error.map_or(0, |e| i32::from(e.code())),
                    })
                    .collect(),
            },
            Err(error) => VerifyTxnResponse {
                error_code: i32::from(error.code()),
                results: Vec::new(),
            },
        }))
    }
}

impl ReplicaService {
    /// Writes a transaction coordinator's markers (see `txn::write_markers_locally`).
    async fn write_markers_here(&self, request: WriteMarkersRequest) -> WriteMarkersResponse {
        let marker = if request.commit {
            crate::producers::Marker::Commit
        } else {
            crate::producers::Marker::Abort
        };
        let Ok(epoch) = i16::try_from(request.producer_epoch) else {
            return WriteMarkersResponse {
                results: request
                    .partitions
                    .into_iter()
                    .map(|p| MarkerResult {
                        topic: p.topic,
                        partition: p.partition,
                        error_code: i32::from(ResponseError::InvalidProducerEpoch.code()),
                    })
                    .collect(),
            };
        };
        let partitions = request
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition))
            .collect();
        let results = crate::txn::write_markers_locally(
            &self.broker,
            request.producer_id,
            epoch,
            marker,
            request.coordinator_epoch,
            partitions,
        )
        .await;
        WriteMarkersResponse {
            results: results
                .into_iter()
                .map(|((topic, partition), code)| MarkerResult {
                    topic,
                    partition,
                    error_code: i32::from(code),
                })
                .collect(),
        }
    }

    /// One pass over the partitions: the answer, its record bytes, and
    /// whether it must go now even without records (errors, a diverging
    /// log, a moved log start).
    fn read_once(&self, request: &FetchRequest) -> (FetchResponse, usize, bool) {
        let now = crate::clock::now_ms();
        let me = self.broker.identity.node_id;
        let rate = throttle::rate(&self.broker.topics.image(), me, Side::Leader);
        let mut budget = request.max_bytes.max(1) as usize;
        let mut total = 0;
        let mut errors = false;
        let mut partitions = Vec::with_capacity(request.partitions.len());
        for wanted in &request.partitions {
            let limit = (wanted.max_bytes.max(1) as usize).min(budget.max(1));
            let answer = match self.serve(request.replica_id, wanted, limit, total == 0, now, rate)
            {
                Ok(answer) => answer,
                Err(error) => {
                    errors = true;
                    FetchedPartition {
                        topic: wanted.topic.clone(),
                        partition: wanted.partition,
                        error_code: i32::from(error.code()),
                        high_watermark: -1,
                        log_start_offset: -1,
                        log_end_offset: -1,
                        records: Default::default(),
                        diverging_epoch: -1,
                        diverging_end_offset: -1,
                    }
                }
            };
            // Answer now, not at the long poll's end, when the follower
            // must truncate or move its log start (DeleteRecords waits on it).
            let start_moved = wanted
                .log_start_offset
                .is_some_and(|start| answer.log_start_offset > start);
            if answer.diverging_end_offset >= 0 || start_moved {
                errors = true;
            }
            total += answer.records.len();
            budget = budget.saturating_sub(answer.records.len());
            partitions.push(answer);
        }
        (FetchResponse { partitions }, total, errors)
    }

    fn serve(
        &self,
        replica_id: i32,
        wanted: &FetchPartition,
        limit: usize,
        first: bool,
        now: i64,
        leader_rate: Option<u64>,
    ) -> Result<FetchedPartition, BrokerError> {
        let partition = self
            .broker
            .topics
            .partition(&wanted.topic, wanted.partition)?;
        let mut answer = FetchedPartition {
            topic: wanted.topic.clone(),
            partition: wanted.partition,
            error_code: 0,
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            records: Default::default(),
            diverging_epoch: -1,
            diverging_end_offset: -1,
        };
        // KIP-73: the rate this replica's fetches count against, if any.
        let throttle = leader_rate.filter(|_| {
            throttle::throttled_here(&self.broker, Side::Leader, &wanted.topic, wanted.partition)
        });
        let mut held_back = false;
        // The records are named under the partition's lock and copied
        // after it is released, so produce requests do not wait on the copy.
        let (proposal, moved, hw, slices) = partition.with_data(|d| {
            if !d.is_leader() {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            d.check_epoch(wanted.current_leader_epoch)?;
            if !d.replicas.contains(&replica_id) {
                return Err(BrokerError::NotLeaderOrFollower);
            }
            let start = d.log.log_start_offset();
            let end = d.log.log_end_offset();
            answer.log_start_offset = start;
            answer.log_end_offset = end;
            // KIP-320: does the follower's last epoch end where it thinks?
            if wanted.last_fetched_epoch >= 0 {
                match d.log.end_offset_for_epoch(wanted.last_fetched_epoch) {
                    Some((epoch, epoch_end))
                        if epoch != wanted.last_fetched_epoch
                            || epoch_end < wanted.fetch_offset =>
                    {
                        answer.diverging_epoch = epoch;
                        answer.diverging_end_offset = epoch_end;
                        answer.high_watermark = d.high_watermark();
                        return Ok((None, false, answer.high_watermark, None));
                    }
                    None => {
                        answer.diverging_epoch = -1;
                        answer.diverging_end_offset = start;
                        answer.high_watermark = d.high_watermark();
                        return Ok((None, false, answer.high_watermark, None));
                    }
                    Some(_) => {}
                }
            }
            if wanted.fetch_offset < start || wanted.fetch_offset > end {
                answer.error_code = i32::from(ResponseError::OffsetOutOfRange.code());
                answer.high_watermark = d.high_watermark();
                return Ok((None, false, answer.high_watermark, None));
            }
            let (leader_epoch, partition_epoch) = (d.leader_epoch, d.partition_epoch);
            let proposal = match &mut d.role {
                Role::Leader(state) => {
                    if let Some(log_start) = wanted.log_start_offset {
                        state.on_follower_log_start(replica_id, log_start);
                    }
                    state
                        .on_follower_fetch(replica_id, wanted.fetch_offset, end, now)
                        .map(|isr| (isr, leader_epoch, partition_epoch))
                }
                _ => None,
            };
            let moved = d.advance_high_watermark();
            // As Kafka, every throttled replica's bytes are counted, but
            // one in the ISR is never held back.
            held_back = !d.isr.contains(&replica_id)
                && throttle.is_some_and(|rate| {
                    let quotas = &self.broker.replication_quotas;
                    quotas.exceeded(Side::Leader, rate, std::time::Instant::now())
                });
            let slices = if held_back {
                None
            } else {
                let read = d.log.read_slices(wanted.fetch_offset, limit, i64::MAX)?;
                (first || read.len <= limit).then_some(read)
            };
            answer.high_watermark = d.high_watermark();
            Ok((proposal, moved, answer.high_watermark, slices))
        })?;
        if let Some(slices) = slices {
            answer.records = slices.read_whole_batches()?;
        }
        if throttle.is_some() {
            let bytes = answer.records.len();
            let quotas = &self.broker.replication_quotas;
            quotas.record(Side::Leader, bytes, std::time::Instant::now());
            let metrics = &self.broker.metrics;
            metrics.replication_throttled(Side::Leader.label(), bytes, usize::from(held_back));
        }
        if moved {
            partition.publish_high_watermark(hw);
            self.broker.topics.notify();
        }
        if let Some((isr, leader_epoch, partition_epoch)) = proposal {
            propose(
                &self.broker,
                IsrProposal {
                    partition: partition.clone(),
                    leader_epoch,
                    partition_epoch,
                    isr,
                },
            );
        }
        Ok(answer)
    }
}
