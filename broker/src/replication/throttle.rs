//! Replication throttles (KIP-73), as Kafka's reassignment tool and Cruise
//! Control set them while partitions move:
//!
//! - per broker, dynamic configs `leader.replication.throttled.rate` and
//!   `follower.replication.throttled.rate` (bytes/s; a broker's own value,
//!   else the cluster-wide default, else unthrottled);
//! - per topic, `leader.replication.throttled.replicas` and
//!   `follower.replication.throttled.replicas`: `*` or a list of
//!   `partition:broker`, the replicas each rate applies to on that broker.
//!
//! As in Kafka, every throttled replica's bytes count against the rate, but
//! only replicas that are behind are held back, and only while the counted
//! bytes of the last seconds run above the rate: a leader answers the fetch
//! of a replica out of the ISR with no records, a follower leaves a
//! partition it has not caught up on (its last answer's high watermark is
//! past its log end) out of its fetch.

use std::sync::Mutex;
use std::time::Instant;

use crate::broker::Broker;
use crate::cluster::ClusterImage;
use crate::quotas::{Sensor, SAMPLE_WINDOW};

/// The leader-side rate (bytes/s).
pub(crate) const LEADER_RATE: &str = "leader.replication.throttled.rate";
/// The follower-side rate (bytes/s).
pub(crate) const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// The topic config naming the replicas the leader-side rate applies to.
pub(crate) const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config naming the replicas the follower-side rate applies to.
pub(crate) const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Which end of replication a throttle applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The leader, serving followers' fetches.
    Leader,
    /// The follower, fetching from leaders.
    Follower,
}

impl Side {
    fn rate_key(self) -> &'static str {
        match self {
            Side::Leader => LEADER_RATE,
            Side::Follower => FOLLOWER_RATE,
        }
    }

    fn replicas_key(self) -> &'static str {
        match self {
            Side::Leader => LEADER_REPLICAS,
            Side::Follower => FOLLOWER_REPLICAS,
        }
    }

    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::Leader => "leader",
            Side::Follower => "follower",
        }
    }
}

/// Checks a throttled-replicas value as Kafka's `ThrottledReplicaListValidator`:
/// the list's items (split at commas, trimmed) are each empty or
/// `partition:broker` in digits, or together `*`.
pub(crate) fn validate_replicas(value: &str) -> Result<(), String> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.concat() == "*" {
        return Ok(());
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let item_ok = |item: &str| {
        item.is_empty()
            || item
                .split_once(':')
                .is_some_and(|(p, b)| digits(p) && digits(b))
    };
    match items.into_iter().find(|item| !item_ok(item)) {
        None => Ok(()),
        Some(bad) => Err(format!(
            "{bad:?} is not a replica: the value must be '*' or a list of partitionId:brokerId, such as 0:101,0:102,1:101"
        )),
    }
}

/// Whether a throttled-replicas value names `partition`'s replica on `broker`.
pub(crate) fn names_replica(value: &str, partition: i32, broker: i32) -> bool {
    let value = value.trim();
    value == "*"
        || value.split(',').any(|entry| {
            entry.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            })
        })
}

/// The rate in force on `broker` for `side`: its own dynamic config, else
/// the cluster-wide default, else none (unthrottled).
pub(crate) fn rate(image: &ClusterImage, broker: i32, side: Side) -> Option<u64> {
    let key = side.rate_key();
    [broker.to_string(), String::new()]
        .iter()
        .find_map(|resource| image.broker_configs.get(resource)?.get(key))
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// The broker's two replication quotas: the throttled bytes it recently
/// sent as a leader and fetched as a follower.
#[derive(Debug, Default)]
pub(crate) struct ReplicationQuotas {
    leader: Mutex<Sensor>,
    follower: Mutex<Sensor>,
}

impl ReplicationQuotas {
    fn sensor(&self, side: Side) -> std::sync::MutexGuard<'_, Sensor> {
        let sensor = match side {
            Side::Leader => &self.leader,
            Side::Follower => &self.follower,
        };
        sensor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the throttled bytes of the last seconds run above `rate`.
    pub(crate) fn exceeded(&self, side: Side, rate: u64, now: Instant) -> bool {
        let (measured, _) = self.sensor(side).rate_over(now, SAMPLE_WINDOW);
        measured > rate as f64
    }

    /// Counts throttled bytes.
    pub(crate) fn record(&self, side: Side, bytes: usize, now: Instant) {
        if bytes > 0 {
            self.sensor(side).record(now, bytes as f64);
        }
    }
}

/// Whether this broker's replica of `topic`/`partition` is one of its
/// topic's throttled replicas for `side`. Callers look up the rate first
/// (once per fetch) and ask only while one is set.
pub(crate) fn throttled_here(broker: &Broker, side: Side, topic: &str, partition: i32) -> bool {
    broker.topics.get(topic).is_some_and(|topic| {
        topic
            .configs
            .0
            .get(side.replicas_key())
            .is_some_and(|replicas| names_replica(replicas, partition, broker.identity.node_id))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn replica_lists_are_checked_as_kafka_does() {
        for good in [
            "",
            "*",
            " * ",
            "*,",
            "0:1",
            "0:1,1:2",
            " 0:1 , 12:345 ",
            "0:1,,1:2,",
        ] {
            assert!(validate_replicas(good).is_ok(), "{good:?}");
        }
        for bad in ["0", "0:", ":1", "a:1", "0 : 1", "*,0:1", "-1:2", "0:1:2"] {
            let err = validate_replicas(bad).expect_err(bad);
            assert!(err.contains("partitionId:brokerId"), "{err}");
        }
    }

    #[test]
    fn a_replica_list_names_partitions_on_brokers() {
        assert!(names_replica("*", 3, 7));
        assert!(names_replica("0:1, 3:7", 3, 7));
        assert!(!names_replica("0:1,3:7", 3, 1));
        assert!(!names_replica("0:1,3:7", 0, 7));
        assert!(!names_replica("", 0, 1));
    }

    #[test]
    fn a_brokers_own_rate_wins_over_the_cluster_default() {
        let mut image = ClusterImage::default();
        assert_eq!(rate(&image, 1, Side::Leader), None);
        image
            .broker_configs
            .entry(String::new())
            .or_default()
            .insert(LEADER_RATE.into(), "500".into());
        assert_eq!(rate(&image, 1, Side::Leader), Some(500));
        assert_eq!(rate(&image, 1, Side::Follower), None);
        image
            .broker_configs
            .entry("1".into())
            .or_default()
            .insert(LEADER_RATE.into(), "100".into());
        assert_eq!(rate(&image, 1, Side::Leader), Some(100));
        assert_eq!(rate(&image, 2, Side::Leader), Some(500));
    }

    #[test]
    fn a_quota_is_exceeded_until_its_bytes_age_out() {
        let quotas = ReplicationQuotas::default();
        let start = Instant::now();
        assert!(!quotas.exceeded(Side::Follower, 1000, start));
        // 5 kB at once: 5 kB/s over the one-window minimum.
        quotas.record(Side::Follower, 5000, start);
        assert!(quotas.exceeded(Side::Follower, 1000, start));
        assert!(!quotas.exceeded(Side::Leader, 1000, start));
        assert!(!quotas.exceeded(Side::Follower, 10_000, start));
        // 5 kB over 6 s is still above 800 B/s, under 1 kB/s.
        assert!(quotas.exceeded(Side::Follower, 800, start + Duration::from_secs(6)));
        assert!(!quotas.exceeded(Side::Follower, 1000, start + Duration::from_secs(6)));
        // Past the 11 windows nothing is left.
        assert!(!quotas.exceeded(Side::Follower, 0, start + Duration::from_secs(12)));
    }
}
