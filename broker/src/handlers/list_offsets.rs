//! ListOffsets (key 2): earliest, latest, max-timestamp and by-timestamp offsets.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::records::RecordBatchDecoder;

use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topics::Partition;

/// v1 is the first without the old offsets array; v7 adds MAX_TIMESTAMP,
/// v8 EARLIEST_LOCAL (tiered storage, equal to earliest here).
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 8 };

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// The offset and timestamp for one query.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    current_leader_epoch: i32,
    read_committed: bool,
) -> Result<(i64, i64, i32), BrokerError> {
    partition.with_data(|d| {
        if !d.is_leader() {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        d.check_epoch(current_leader_epoch)?;
        // read_committed consumers see up to the last stable offset.
        let visible = if read_committed {
            d.last_stable_offset()
        } else {
            d.high_watermark()
        };
        lookup_in(&d.log, timestamp, visible).map(|(o, t)| (o, t, d.leader_epoch))
    })
}

fn lookup_in(
    log: &runnel_storage::PartitionLog,
    timestamp: i64,
    high_watermark: i64,
) -> Result<(i64, i64), BrokerError> {
    match timestamp {
        // Consumers see up to the high watermark (read_uncommitted) or
        // the last stable offset (read_committed).
        LATEST => Ok((high_watermark, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => Ok(log
            .max_timestamp()
            .map_or((-1, -1), |(ts, offset)| (offset, ts))),
        t if t < 0 => Err(BrokerError::InvalidRequest(format!(
            "unknown special timestamp {t}"
        ))),
        target => {
            let Some(found) = log.find_by_timestamp(target)? else {
                return Ok((-1, -1));
            };
            // The batch's max timestamp reaches the target; find the first record that does.
            let mut batch = found.batch.clone();
            let decoded = RecordBatchDecoder::decode(&mut batch).map_err(|e| {
                BrokerError::InvalidRequest(format!("stored batch does not decode: {e}"))
            })?;
            Ok(decoded
                .records
                .iter()
                .find(|r| r.timestamp >= target)
                .map_or(
                    (found.header.last_offset(), found.header.max_timestamp),
                    |r| (r.offset, r.timestamp),
                ))
        }
    }
}

/// Answers ListOffsets.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = version >= 2 && request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let name = wanted.name.0.to_string();
            let partitions = wanted
                .partitions
                .iter()
                .map(|p| {
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let result =
                        broker
                            .topics
                            .partition(&name, p.partition_index)
                            .and_then(|part| {
                                if p.timestamp == MAX_TIMESTAMP && version < 7 {
                                    return Err(BrokerError::InvalidRequest(
                                        "MAX_TIMESTAMP needs ListOffsets v7".into(),
                                    ));
                                }
                                let epoch = if version >= 4 {
                                    p.current_leader_epoch
                                } else {
                                    -1
                                };
                                lookup(&part, p.timestamp, epoch, read_committed)
                            });
                    match result {
                        Ok((offset, timestamp, epoch)) => {
                            let base = base.with_offset(offset).with_timestamp(timestamp);
                            if version >= 4 && offset >= 0 {
                                base.with_leader_epoch(epoch)
                            } else {
                                base
                            }
                        }
                        Err(e) => base
                            .with_error_code(e.code())
                            .with_offset(-1)
                            .with_timestamp(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}
