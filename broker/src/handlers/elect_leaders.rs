//! ElectLeaders (key 43): moves leadership back to each partition's
//! preferred replica (the first of its replicas), through the controller, as
//! `kafka-leader-election.sh --election-type PREFERRED` asks. The
//! controller does the same by itself every
//! `leader.imbalance.check.interval.seconds`; this is the on-demand form.
//!
//! An UNCLEAN election (a replica outside the ISR takes over a partition
//! with no leader) is refused with ELIGIBLE_LEADERS_NOT_AVAILABLE: Runnel
//! never elects outside the ISR (`unclean.leader.election.enable` is false).

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use crate::broker::Broker;
use crate::cluster::MetadataCommand;

/// v1 adds the election type and a top-level error; v2 is flexible.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// Answers ElectLeaders.
pub(crate) async fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    let election = if version >= 1 {
        request.election_type
    } else {
        PREFERRED
    };
    if election != PREFERRED && election != UNCLEAN {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    // Null: every partition, reporting only those whose leader was not
    // already the one wanted (as Kafka does).
    let (wanted, all) = match request.topic_partitions {
        Some(topics) => (
            topics
                .into_iter()
                .map(|t| (t.topic.0.to_string(), t.partitions))
                .collect::<Vec<_>>(),
            false,
        ),
        None => {
            let image = broker.image();
            let mut topics: Vec<(String, Vec<i32>)> = image
                .topics
                .iter()
                .map(|(name, t)| (name.clone(), (0..t.partitions.len() as i32).collect()))
                .collect();
            topics.sort();
            (topics, true)
        }
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut partition_results = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let outcome = elect(broker, election, &topic, partition).await;
            if all && matches!(&outcome, Err((ResponseError::ElectionNotNeeded, _))) {
                continue;
            }
            let entry = PartitionResult::default().with_partition_id(partition);
            partition_results.push(match outcome {
                Ok(()) => entry,
                Err((code, message)) => entry
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            });
        }
        results.push(
            ReplicaElectionResult::default()
                .with_topic(StrBytes::from_string(topic).into())
                .with_partition_result(partition_results),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// One partition's election.
async fn elect(
    broker: &Arc<Broker>,
    election: i8,
    topic: &str,
    partition: i32,
) -> Result<(), (ResponseError, String)> {
    let image = broker.image();
    let current = image.partition(topic, partition).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        )
    })?;
    if election == UNCLEAN {
        return Err(if current.leader >= 0 {
            (
                ResponseError::ElectionNotNeeded,
                format!("{topic}-{partition} has a leader"),
            )
        } else {
            (
                ResponseError::EligibleLeadersNotAvailable,
                format!("{topic}-{partition} has no leader, and Runnel does not elect a replica outside the ISR"),
            )
        });
    }
    if current.replicas.first() == Some(&current.leader) {
        return Err((
            ResponseError::ElectionNotNeeded,
            format!("{topic}-{partition} is led by its preferred replica"),
        ));
    }
    broker
        .write(MetadataCommand::ElectPreferredLeader {
            topic: topic.to_string(),
            partition,
        })
        .await
        .map(|_| ())
        .map_err(|e| (e.kafka(), e.to_string()))
}
