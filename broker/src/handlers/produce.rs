//! Produce (key 0): appends record batches to partition logs.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use runnel_storage::BatchHeader;
use tracing::debug;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::metrics::TopicLabel;
use crate::producers::TxnCheck;
use crate::topics::Partition;
use crate::txn::verify::{produce_error, verify};

/// Advertised from v0 because librdkafka turns compression off when Produce
/// v0 is missing; v0-2 (message format v0/v1) are refused at dispatch.
/// v13 (topic ids) is not served yet.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 12 };

fn partition_error(version: i16, index: i32, error: &BrokerError) -> PartitionProduceResponse {
    let entry = PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1);
    if version >= 8 {
        entry.with_error_message(Some(StrBytes::from_string(error.to_string())))
    } else {
        entry
    }
}

/// Appends every partition's batches; `None` when acks=0 (no response).
/// With acks=all the answer waits until the ISR has every appended record.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let staged = stage(broker, version, request).await;
    complete(staged).await
}

/// A produce whose batches are appended, waiting to be acknowledged.
pub(crate) struct Staged {
    acks: i16,
    version: i16,
    timeout: Duration,
    responses: Vec<TopicProduceResponse>,
    /// (topic response index, partition response index, partition, end offset, min ISR)
    waits: Vec<(usize, usize, Arc<Partition>, i64, usize)>,
}

/// The first half of a produce: appends every partition's batches, in
/// request order. The connection may go on to its next request while
/// [`complete`] waits for replication.
pub(crate) async fn stage(broker: &Arc<Broker>, version: i16, request: ProduceRequest) -> Staged {
    let acks = request.acks;
    let invalid_acks = !matches!(acks, -1..=1);
    let mut verified = verify_transactional(broker, version, &request).await;
    let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
    // Fenced by the controller by now: this broker leads nothing.
    let fenced = broker.controller.session_lapsed();
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // (topic response index, partition response index, partition, end offset)
    let mut waits = Vec::new();
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        // Refused requests must not auto-create topics.
        let topic = if invalid_acks {
            None
        } else {
            broker.get_or_auto_create(&name).await.ok()
        };
        let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let result = (|| {
                if invalid_acks {
                    return Err(BrokerError::InvalidRequiredAcks(acks));
                }
                if fenced {
                    return Err(BrokerError::NotLeaderOrFollower);
                }
                let topic = topic.as_ref().ok_or(BrokerError::UnknownTopicOrPartition)?;
                let partition = usize::try_from(data.index)
                    .ok()
                    .and_then(|i| topic.partitions.get(i))
                    .ok_or(BrokerError::UnknownTopicOrPartition)?;
                let records = data.records.ok_or_else(|| {
                    BrokerError::InvalidRequest("partition data has null records".into())
                })?;
                let txn = verified.check(&name, data.index)?;
                let min_isr = (acks == -1).then(|| {
                    let (min_isr, _) = topic
                        .configs
                        .effective("min.insync.replicas", broker.topics.settings());
                    min_isr.parse::<usize>().unwrap_or(1)
                });
                if topic
                    .configs
                    .has_policy("compact", broker.topics.settings())
                {
                    crate::cleaner::require_keys(&records, &name, data.index)?;
                }
                let appended = broker
                    .topics
                    .append_checked(partition, &records, min_isr, txn)?;
                if !appended.duplicate {
                    broker
                        .metrics
                        .bytes_in
                        .get_or_create(&TopicLabel {
                            topic: name.clone(),
                        })
                        .inc_by(records.len() as u64);
                }
                Ok((partition.clone(), appended, min_isr))
            })();
            partitions.push(match result {
                Ok((partition, appended, min_isr)) => {
                    if let Some(min_isr) = min_isr {
                        waits.push((
                            responses.len(),
                            partitions.len(),
                            partition,
                            appended.end_offset,
                            min_isr,
                        ));
                    }
                    let entry = PartitionProduceResponse::default()
                        .with_index(data.index)
                        .with_base_offset(appended.base_offset)
                        .with_log_append_time_ms(-1);
                    if version >= 5 {
                        entry.with_log_start_offset(appended.log_start_offset)
                    } else {
                        entry
                    }
                }
                Err(error) => {
                    debug!(topic = %name, partition = data.index, %error, "produce refused");
                    partition_error(version, data.index, &error)
                }
            });
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_partition_responses(partitions),
        );
    }
    Staged {
        acks,
        version,
        timeout,
        responses,
        waits,
    }
}

/// The second half: waits until the ISR has the acks=all records.
pub(crate) async fn complete(staged: Staged) -> Option<ProduceResponse> {
    let Staged {
        acks,
        version,
        timeout,
        mut responses,
        waits,
    } = staged;
    for (t, p, partition, end, min_isr) in waits {
        let outcome = match wait_for_high_watermark(&partition, end, timeout).await {
            // The ISR may have shrunk while the records were replicated.
            Ok(()) => match partition.with_data(|d| Ok(d.isr.len())) {
                Ok(isr) if isr < min_isr => Err(BrokerError::Kafka(
                    kafka_protocol::ResponseError::NotEnoughReplicasAfterAppend,
                )),
                _ => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(error) = outcome {
            debug!(topic = %partition.topic, partition = partition.index, %error, "acks=all write not acknowledged");
            responses[t].partition_responses[p] = partition_error(version, partition.index, &error);
        }
    }
    if acks == 0 {
        return None;
    }
    Some(ProduceResponse::default().with_responses(responses))
}

async fn wait_for_high_watermark(
    partition: &Partition,
    end: i64,
    timeout: Duration,
) -> Result<(), BrokerError> {
    crate::topics::TopicTable::wait_for_high_watermark(partition, end, timeout).await
}

/// A check for an append, or the Kafka error and message it is refused with.
type Check = Result<TxnCheck, (ResponseError, String)>;

/// What each partition's transactional batches must pass (KIP-890), found
/// before anything is appended.
struct Verified {
    /// The check for partitions not listed.
    default: Check,
    /// Partitions whose verification ran.
    partitions: HashMap<(String, i32), Check>,
}

impl Verified {
    /// The check for a partition's append, or why it is refused.
    fn check(&mut self, topic: &str, index: i32) -> Result<TxnCheck, BrokerError> {
        let listed = if self.partitions.is_empty() {
            None
        } else {
            self.partitions.remove(&(topic.to_string(), index))
        };
        listed
            .unwrap_or_else(|| self.default.clone())
            .map_err(|(code, message)| BrokerError::Refused { code, message })
    }
}

/// KIP-890 (part 1): a transactional batch opens its producer's
/// transaction on a partition only once the coordinator confirms the
/// partition is in it. Partitions where the transaction is open already
/// need no question; the others get a guard and one question to the
/// coordinator for all of them. As in Kafka, transactional batches without
/// a transactional id are refused (TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
/// and so are batches of two producers in one request.
async fn verify_transactional(
    broker: &Arc<Broker>,
    version: i16,
    request: &ProduceRequest,
) -> Verified {
    let mut producers = BTreeSet::new();
    let mut transactional = Vec::new();
    for topic_data in &request.topic_data {
        for data in &topic_data.partition_data {
            let header = data
                .records
                .as_deref()
                .and_then(|r| BatchHeader::parse(r).ok())
                .filter(|h| h.is_transactional() && h.producer_id >= 0);
            if let Some(h) = header {
                producers.insert((h.producer_id, h.producer_epoch));
                transactional.push((topic_data.name.0.to_string(), data.index));
            }
        }
    }
    let enabled = || broker.txns.verification_enabled();
    let transactional_id = request.transactional_id.as_ref().map(|t| t.to_string());
    let refuse = |code: ResponseError, message: &str| Verified {
        default: Err((code, message.to_string())),
        partitions: HashMap::new(),
    };
    let Some(&(producer_id, producer_epoch)) = producers.iter().next() else {
        // Nothing transactional up front; a transactional batch further
        // in must find its transaction open.
        let default = if enabled() {
            TxnCheck::Verified(None)
        } else {
            TxnCheck::Unchecked
        };
        return Verified {
            default: Ok(default),
            partitions: HashMap::new(),
        };
    };
    let Some(transactional_id) = transactional_id else {
        return refuse(
            ResponseError::TransactionalIdAuthorizationFailed,
            "transactional records need the request's transactional id",
        );
    };
    if producers.len() > 1 {
        return refuse(
            ResponseError::InvalidProducerIdMapping,
            "Transactional records contained more than one producer ID",
        );
    }
    if !enabled() {
        return Verified {
            default: Ok(TxnCheck::Unchecked),
            partitions: HashMap::new(),
        };
    }
    let mut partitions = HashMap::new();
    let mut asking = Vec::new();
    for (topic, index) in transactional {
        let started = broker
            .topics
            .partition(&topic, index)
            .and_then(|p| p.start_verification(producer_id));
        match started {
            Ok(None) => {
                partitions.insert((topic, index), Ok(TxnCheck::Verified(None)));
            }
            Ok(Some(guard)) => asking.push(((topic, index), guard)),
            // Left to the append, which refuses it the same way.
            Err(_) => {}
        }
    }
    if !asking.is_empty() {
        let tps: Vec<(String, i32)> = asking.iter().map(|(tp, _)| tp.clone()).collect();
        let answers = verify(broker, &transactional_id, producer_id, producer_epoch, &tps).await;
        for (i, (tp, guard)) in asking.into_iter().enumerate() {
            let outcome = match &answers {
                // An answer short of a partition leaves it unverified.
                Ok(errors) => errors
                    .get(i)
                    .copied()
                    .unwrap_or(Some(ResponseError::InvalidTxnState)),
                Err(error) => Some(*error),
            };
            let result = match outcome {
                None => Ok(TxnCheck::Verified(Some(guard))),
                Some(error) => Err(verification_error(error, version)),
            };
            partitions.insert(tp, result);
        }
    }
    Verified {
        default: Ok(TxnCheck::Verified(None)),
        partitions,
    }
}

/// A failed verification as the producer is told it (see
/// [`produce_error`]), with Kafka's message.
fn verification_error(error: ResponseError, version: i16) -> (ResponseError, String) {
    let code = produce_error(error, version);
    let message = if error == ResponseError::InvalidTxnState {
        "Partition was not added to the transaction".to_string()
    } else {
        format!(
            "Unable to verify the partition has been added to the transaction. Underlying error: {error:?}"
        )
    };
    (code, message)
}
