//! The transactional APIs: AddPartitionsToTxn (24), AddOffsetsToTxn (25),
//! EndTxn (26), TxnOffsetCommit (28), DescribeTransactions (65) and
//! ListTransactions (66). The coordinator itself is `crate::txn`.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState as DescribedProducer, TopicResponse as DescribedTopic,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::offset_commit::{by_topic, commit_entry, settle};
use crate::broker::Broker;
use crate::groups::offsets::OFFSETS_TOPIC;
use crate::groups::CommitEntry;
use crate::producers::{Marker, TxnCheck};
use crate::txn::log::TxnState;

/// v4+ is the broker-to-broker batch form (KIP-890), not served.
pub(crate) const ADD_PARTITIONS_VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };
/// v4 adds TRANSACTION_ABORTABLE (KIP-890), not served.
pub(crate) const ADD_OFFSETS_VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };
/// v4 adds TRANSACTION_ABORTABLE, v5 the epoch bump of KIP-890; not served.
pub(crate) const END_TXN_VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };
/// v3 carries the group member (KIP-447); v4+ belongs to KIP-890.
pub(crate) const TXN_OFFSET_COMMIT_VERSIONS: VersionRange = VersionRange { min: 0, max: 3 };
pub(crate) const DESCRIBE_VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };
/// v1 adds the duration filter; v2 (the id pattern) is not served.
pub(crate) const LIST_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };
pub(crate) const DESCRIBE_PRODUCERS_VERSIONS: VersionRange = VersionRange { min: 0, max: 0 };
/// v0 was removed from Kafka (KIP-896); v1 is flexible.
pub(crate) const WRITE_MARKERS_VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

/// PRODUCER_FENCED is new in the given version of an API; older versions
/// are told INVALID_PRODUCER_EPOCH, as Kafka does.
fn for_version(error: ResponseError, version: i16, fenced_since: i16) -> ResponseError {
    if error == ResponseError::ProducerFenced && version < fenced_since {
        ResponseError::InvalidProducerEpoch
    } else {
        error
    }
}

/// Answers AddPartitionsToTxn (v0-3: one transaction per request).
pub(crate) async fn add_partitions(
    broker: &Arc<Broker>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let transactional_id = request.v3_and_below_transactional_id.0.to_string();
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let results = match crate::txn::add_partitions(
        broker,
        &transactional_id,
        request.v3_and_below_producer_id.0,
        request.v3_and_below_producer_epoch,
        wanted.clone(),
    )
    .await
    {
        Ok(results) => results,
        Err(error) => {
            let error = for_version(error, version, 2);
            wanted.into_iter().map(|tp| (tp, Some(error))).collect()
        }
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error) in results {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(error.map_or(0, |e| e.code()));
        match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
            Some(t) => t.results_by_partition.push(result),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

/// Answers AddOffsetsToTxn: the group's `__consumer_offsets` partition
/// joins the transaction.
pub(crate) async fn add_offsets(
    broker: &Arc<Broker>,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let result = async {
        if request.group_id.0.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        super::find_coordinator::ensure_offsets_topic(broker).await?;
        let partition = broker.groups.partition_of(request.group_id.0.as_str());
        let results = crate::txn::add_partitions(
            broker,
            request.transactional_id.0.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            vec![(OFFSETS_TOPIC.to_string(), partition)],
        )
        .await?;
        match results.into_iter().find_map(|(_, e)| e) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
    .await;
    AddOffsetsToTxnResponse::default().with_error_code(
        result
            .err()
            .map_or(0, |e| for_version(e, version, 2).code()),
    )
}

/// Answers EndTxn.
pub(crate) async fn end_txn(
    broker: &Arc<Broker>,
    version: i16,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let result = crate::txn::end_txn(
        broker,
        request.transactional_id.0.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    )
    .await;
    EndTxnResponse::default().with_error_code(
        result
            .err()
            .map_or(0, |e| for_version(e, version, 2).code()),
    )
}

/// Answers TxnOffsetCommit: offsets that count when the transaction commits.
pub(crate) async fn txn_offset_commit(
    broker: &Arc<Broker>,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let now = crate::clock::now_ms();
    let group_id = request.group_id.0.to_string();
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let epoch = if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                };
                let metadata = p.committed_metadata.as_ref();
                commit_entry(
                    &t.name.0,
                    p.partition_index,
                    p.committed_offset,
                    epoch,
                    metadata,
                    now,
                )
            })
        })
        .collect();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let member = (version >= 3).then(|| {
        (
            request.member_id.as_str(),
            instance_id.as_deref(),
            request.generation_id,
        )
    });
    let verified = if group_id.is_empty() {
        Ok(TxnCheck::Unchecked)
    } else {
        verify_offsets_partition(broker, &request, &group_id).await
    };
    let results = settle(broker, &group_id, entries, |entries| {
        broker.groups.txn_commit(
            &broker.topics,
            &group_id,
            request.producer_id.0,
            request.producer_epoch,
            member,
            entries,
            verified?,
        )
    })
    .await;
    // PRODUCER_FENCED is new in v3.
    let results = results
        .into_iter()
        .map(|(entry, error)| (entry, error.map(|e| for_version(e, version, 3))))
        .collect();
    let topics = by_topic(results, |index, code| {
        TxnOffsetCommitResponsePartition::default()
            .with_partition_index(index)
            .with_error_code(code)
    })
    .into_iter()
    .map(|(name, partitions)| {
        TxnOffsetCommitResponseTopic::default()
            .with_name(TopicName(StrBytes::from_string(name)))
            .with_partitions(partitions)
    })
    .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// KIP-890 for TxnOffsetCommit: the offsets open the transaction on the
/// group's `__consumer_offsets` partition only once the transaction
/// coordinator confirms AddOffsetsToTxn put that partition in it
/// (INVALID_TXN_STATE otherwise). A coordinator that cannot answer yet is
/// COORDINATOR_LOAD_IN_PROGRESS, which clients retry.
async fn verify_offsets_partition(
    broker: &Arc<Broker>,
    request: &TxnOffsetCommitRequest,
    group_id: &str,
) -> Result<TxnCheck, ResponseError> {
    if !broker.txns.verification_enabled() {
        return Ok(TxnCheck::Unchecked);
    }
    let index = broker.groups.partition_of(group_id);
    // Not led here: the commit answers NOT_COORDINATOR.
    let Ok(partition) = broker.topics.partition(OFFSETS_TOPIC, index) else {
        return Ok(TxnCheck::Unchecked);
    };
    let producer_id = request.producer_id.0;
    let guard = match partition.start_verification(producer_id) {
        Ok(Some(guard)) => guard,
        Ok(None) => return Ok(TxnCheck::Verified(None)),
        Err(_) => return Ok(TxnCheck::Unchecked),
    };
    let answer = crate::txn::verify::verify(
        broker,
        &request.transactional_id.0,
        producer_id,
        request.producer_epoch,
        &[(OFFSETS_TOPIC.to_string(), index)],
    )
    .await
    .and_then(|errors| {
        match errors
            .first()
            .copied()
            .unwrap_or(Some(ResponseError::InvalidTxnState))
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    });
    match answer {
        Ok(()) => Ok(TxnCheck::Verified(Some(guard))),
        Err(
            ResponseError::ConcurrentTransactions
            | ResponseError::NetworkException
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator,
        ) => Err(ResponseError::CoordinatorLoadInProgress),
        Err(error) => Err(error),
    }
}

/// Answers DescribeTransactions for the ids this broker coordinates.
pub(crate) fn describe(
    broker: &Arc<Broker>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let entry = DescribedTxn::default().with_transactional_id(id.clone());
            match broker.txns.describe(id.0.as_str()) {
                Err(error) => entry.with_error_code(error.code()),
                Ok(None) => entry.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Ok(Some(m)) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, p) in &m.partitions {
                        match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                            Some(t) => t.partitions.push(*p),
                            None => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    entry
                        .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.producer_epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// Answers ListTransactions: the transactions this broker coordinates.
pub(crate) fn list(
    broker: &Arc<Broker>,
    version: i16,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    const STATES: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];
    let unknown: Vec<StrBytes> = request
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let now = crate::clock::now_ms();
    let states = broker
        .txns
        .list()
        .into_iter()
        .filter(|t| {
            request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == t.metadata.state.name())
        })
        .filter(|t| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(t.metadata.producer_id))
        })
        .filter(|t| {
            // v1: only transactions running longer than the filter.
            version < 1
                || request.duration_filter < 0
                || (t.metadata.state == TxnState::Ongoing
                    && now - t.metadata.start_ms > request.duration_filter)
        })
        .map(|t| {
            ListedTxn::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_string(t.transactional_id),
                ))
                .with_producer_id(ProducerId(t.metadata.producer_id))
                .with_transaction_state(StrBytes::from_static_str(t.metadata.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

/// Answers DescribeProducers: the producers of each partition this broker
/// leads, with their open transaction's first offset (what
/// `kafka-transactions.sh describe-producers` and `find-hanging` read).
pub(crate) fn describe_producers(
    broker: &Arc<Broker>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let entry = PartitionResponse::default().with_partition_index(index);
                    let found = broker.topics.partition(&t.name.0, index).and_then(|p| {
                        p.with_data(|d| {
                            if !d.is_leader() {
                                return Err(crate::error::BrokerError::NotLeaderOrFollower);
                            }
                            Ok(d.producers.describe())
                        })
                    });
                    match found {
                        Err(error) => entry
                            .with_error_code(error.code())
                            .with_error_message(Some(StrBytes::from_string(error.to_string()))),
                        Ok(producers) => entry.with_active_producers(
                            producers
                                .into_iter()
                                .map(|v| {
                                    DescribedProducer::default()
                                        .with_producer_id(ProducerId(v.producer_id))
                                        .with_producer_epoch(i32::from(v.epoch))
                                        .with_last_sequence(v.last_sequence)
                                        .with_last_timestamp(v.last_timestamp)
                                        .with_coordinator_epoch(v.coordinator_epoch)
                                        .with_current_txn_start_offset(v.txn_start_offset)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            DescribedTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// Answers WriteTxnMarkers: a commit or abort marker for each producer on
/// each partition this broker leads. Transaction coordinators send it to
/// partition leaders; `kafka-transactions.sh abort` sends it to end a
/// hanging transaction by hand.
pub(crate) async fn write_txn_markers(
    broker: &Arc<Broker>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut markers = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let marker = if m.transaction_result {
            Marker::Commit
        } else {
            Marker::Abort
        };
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|p| (t.name.0.to_string(), *p))
            })
            .collect();
        let results = crate::txn::write_markers_locally(
            broker,
            m.producer_id.0,
            m.producer_epoch,
            marker,
            m.coordinator_epoch,
            partitions,
        )
        .await;
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for ((topic, index), code) in results {
            let result = WritableTxnMarkerPartitionResult::default()
                .with_partition_index(index)
                .with_error_code(code);
            match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                Some(t) => t.partitions.push(result),
                None => topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(TopicName(StrBytes::from_string(topic)))
                        .with_partitions(vec![result]),
                ),
            }
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}
