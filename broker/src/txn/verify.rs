//! KIP-890 (part 1): a partition leader lets a transaction's first batch
//! onto a partition only once the transactional id's coordinator confirms
//! the producer's open transaction includes that partition. Without it a
//! produce that arrives after its transaction was aborted (or one whose
//! AddPartitionsToTxn never happened) opens a transaction no coordinator
//! will ever end, and read_committed readers of the partition stop there.
//!
//! ```text
//!   Produce(tid, transactional batch) on a partition without the producer's
//!   transaction open ─▶ guard = start_verification(pid)
//!        ─▶ verify(tid, pid, epoch, partitions): here, or gRPC VerifyTxn
//!           to the leader of the id's __transaction_state partition
//!        ─▶ append_checked(.., TxnCheck::Verified(guard)): refused unless
//!           the guard is still pending (a marker in between clears it)
//! ```

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::debug;

use super::lock;
use super::log::{TxnState, TXN_TOPIC};
use crate::broker::Broker;

/// How long a leader waits for a coordinator's answer.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// Per partition of `partitions`: `None` when producer `(producer_id,
/// producer_epoch)`'s open transaction includes it, else
/// INVALID_TXN_STATE. An error for the whole request: NOT_COORDINATOR,
/// COORDINATOR_NOT_AVAILABLE, NETWORK_EXCEPTION, INVALID_PRODUCER_ID_MAPPING,
/// PRODUCER_FENCED or CONCURRENT_TRANSACTIONS.
pub(crate) async fn verify(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let index = broker.txns.partition_of(transactional_id);
    let image = broker.image();
    let leader = image
        .partition(TXN_TOPIC, index)
        .map(|p| p.leader)
        .filter(|leader| *leader >= 0)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    if leader == broker.identity.node_id {
        return verify_here(
            broker,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        );
    }
    let address = image
        .brokers
        .get(&leader)
        .map(|b| b.rpc_address.clone())
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    verify_remotely(
        broker,
        &address,
        transactional_id,
        producer_id,
        producer_epoch,
        partitions,
    )
    .await
}

/// [`verify`] by this broker's coordinator (the gRPC VerifyTxn handler
/// calls it too).
pub(crate) fn verify_here(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let coordinator = &broker.txns;
    coordinator.coordinator_epoch(transactional_id)?;
    let txns = lock(&coordinator.txns);
    let m = super::check_producer(txns.get(transactional_id), producer_id, producer_epoch)?;
    if m.state.is_preparing() {
        return Err(ResponseError::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|tp| {
            (m.state != TxnState::Ongoing || !m.partitions.contains(tp))
                .then_some(ResponseError::InvalidTxnState)
        })
        .collect())
}

/// Asks the coordinator at `address` over gRPC.
async fn verify_remotely(
    broker: &Arc<Broker>,
    address: &str,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    use crate::proto::replication::replica_client::ReplicaClient;
    use crate::proto::replication::{MarkerPartition, VerifyTxnRequest};
    let request = VerifyTxnRequest {
        transactional_id: transactional_id.to_string(),
        producer_id,
        producer_epoch: i32::from(producer_epoch),
        partitions: partitions
            .iter()
            .map(|(topic, partition)| MarkerPartition {
                topic: topic.clone(),
                partition: *partition,
            })
            .collect(),
    };
    let channel = broker.txns.channel(address).map_err(|error| {
        debug!(%address, %error, "no channel to a transaction coordinator");
        ResponseError::NetworkException
    })?;
    let mut client = ReplicaClient::new(channel);
    let call = client.verify_txn(request);
    let response = match tokio::time::timeout(VERIFY_TIMEOUT, call).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            debug!(%address, %status, "verifying a transaction failed");
            return Err(ResponseError::NetworkException);
        }
        Err(_) => return Err(ResponseError::NetworkException),
    };
    if response.error_code != 0 {
        return Err(to_error(response.error_code));
    }
    partitions
        .iter()
        .map(|(topic, partition)| {
            let result = response
                .results
                .iter()
                .find(|r| &r.topic == topic && r.partition == *partition)
                .ok_or(ResponseError::NetworkException)?;
            Ok((result.error_code != 0).then(|| to_error(result.error_code)))
        })
        .collect()
}

/// A Kafka error code from the wire; an unknown one is a network failure.
fn to_error(code: i32) -> ResponseError {
    i16::try_from(code)
        .ok()
        .and_then(ResponseError::try_from_code)
        .unwrap_or(ResponseError::NetworkException)
}

/// What a produce is told when its partition could not be verified, as
/// Kafka tells it: a partition outside the transaction is
/// TRANSACTION_ABORTABLE from Produce v11 (INVALID_TXN_STATE before); a
/// coordinator that cannot answer yet becomes NOT_ENOUGH_REPLICAS, which
/// every client retries without a metadata refresh; a fenced producer is
/// INVALID_PRODUCER_EPOCH.
pub(crate) fn produce_error(error: ResponseError, produce_version: i16) -> ResponseError {
    match error {
        ResponseError::InvalidTxnState if produce_version >= 11 => {
            ResponseError::TransactionAbortable
        }
        ResponseError::ConcurrentTransactions
        | ResponseError::NetworkException
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::NotCoordinator => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        other => other,
    }
}
