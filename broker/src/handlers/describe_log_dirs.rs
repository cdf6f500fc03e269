//! DescribeLogDirs (key 35): this broker's data directory and, for each
//! replica in it, the size of its log and how far its log end is below the
//! high watermark. `kafka-log-dirs.sh --describe` and the admin clients'
//! describeLogDirs ask it (UIs show topic sizes from it).

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use kafka_protocol::protocol::{StrBytes, VersionRange};

use crate::broker::Broker;

/// v0 was removed from Kafka (KIP-896); v3 adds the top-level error, v4
/// the directory's total and usable bytes.
pub(crate) const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

/// Answers DescribeLogDirs: every replica here when `topics` is null, else
/// those asked for that are here.
pub(crate) fn handle(
    broker: &Arc<Broker>,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<HashMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    let mut all = broker.topics.all();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    for topic in all {
        let asked = match &wanted {
            Some(wanted) => match wanted.get(&topic.name) {
                Some(partitions) => Some(partitions),
                None => continue,
            },
            None => None,
        };
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            if asked.is_some_and(|asked| !asked.contains(&partition.index)) {
                continue;
            }
            // Not a replica here, or closing: nothing to report.
            let Ok((size, lag)) = partition.with_data(|d| {
                let end = d.log.log_end_offset();
                Ok((d.log.size_bytes(), (d.high_watermark() - end).max(0)))
            }) else {
                continue;
            };
            partitions.push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(partition.index)
                    .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                    .with_offset_lag(lag)
                    .with_is_future_key(false),
            );
        }
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(StrBytes::from_string(topic.name.clone()).into())
                    .with_partitions(partitions),
            );
        }
    }
    let dir = broker.topics.data_dir();
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (total, usable) = match nix::sys::statvfs::statvfs(&dir) {
        Ok(s) => {
            let block = s.fragment_size() as i64;
            (
                (s.blocks() as i64).saturating_mul(block),
                (s.blocks_available() as i64).saturating_mul(block),
            )
        }
        Err(_) => (-1, -1),
    };
    DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable)])
}
