//! Produce (key 0): appends record batches to partition logs.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use tracing::debug;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::metrics::TopicLabel;
use crate::topics::Partition;

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
                let appended = broker.topics.append(partition, &records, min_isr)?;
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
