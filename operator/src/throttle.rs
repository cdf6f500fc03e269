//! Replication throttles (KIP-73) for the moves the operator starts, from a
//! Cluster's `spec.replicationThrottle`, as Kafka's reassignment tool sets
//! them: the brokers' default leader and follower rates, and per topic the
//! replicas each applies to (the current replicas of a moving partition as
//! leaders, the ones it gains as followers). They are added before a move
//! starts and removed by the Cluster's reconcile once nothing moves; the
//! default rates being the Cluster's throttle is what marks them as the
//! operator's to remove.

use std::collections::{BTreeMap, BTreeSet};

use tracing::info;

use crate::admin::{Admin, AdminError, ConfigOp, BROKER_RESOURCE, TOPIC_RESOURCE};

/// The brokers' leader-side rate.
pub const LEADER_RATE: &str = "leader.replication.throttled.rate";
/// The brokers' follower-side rate.
pub const FOLLOWER_RATE: &str = "follower.replication.throttled.rate";
/// The topic config naming the replicas the leader-side rate applies to.
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config naming the replicas the follower-side rate applies to.
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Per topic, the `partition:broker` items of its leader and follower
/// throttled replicas for `moves` (topic, partition, target replicas),
/// given each partition's replicas now.
pub fn throttled_replicas(
    moves: &[(String, i32, Vec<i32>)],
    current: impl Fn(&str, i32) -> Vec<i32>,
) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for (topic, partition, target) in moves {
        let now = current(topic, *partition);
        let (leaders, followers) = out.entry(topic.clone()).or_default();
        leaders.extend(now.iter().map(|b| format!("{partition}:{b}")));
        followers.extend(
            target
                .iter()
                .filter(|b| !now.contains(b))
                .map(|b| format!("{partition}:{b}")),
        );
    }
    out
}

/// Throttles `moves` at `rate` before they start: the default rates, then
/// each topic's throttled replicas (appended to what is there).
pub async fn before_moves(
    admin: &Admin,
    rate: i64,
    moves: &[(String, i32, Vec<i32>)],
    current: impl Fn(&str, i32) -> Vec<i32>,
) -> Result<(), AdminError> {
    set_rates(admin, rate).await?;
    for (topic, (leaders, followers)) in throttled_replicas(moves, current) {
        let mut ops = vec![ConfigOp::Append(LEADER_REPLICAS.into(), leaders.join(","))];
        if !followers.is_empty() {
            ops.push(ConfigOp::Append(
                FOLLOWER_REPLICAS.into(),
                followers.join(","),
            ));
        }
        admin.alter_configs(TOPIC_RESOURCE, &topic, &ops).await?;
    }
    Ok(())
}

async fn set_rates(admin: &Admin, rate: i64) -> Result<(), AdminError> {
    let ops = [LEADER_RATE, FOLLOWER_RATE].map(|k| ConfigOp::Set(k.into(), rate.to_string()));
    admin.alter_configs(BROKER_RESOURCE, "", &ops).await
}

/// What `settle` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// Nothing to do.
    Nothing,
    /// Moves run: the default rates were (re)set to the throttle.
    RatesSet,
    /// Nothing moves any more: the throttles were removed, from these topics.
    Removed(Vec<String>),
}

/// Keeps the operator's throttle in step with the moves: while any runs
/// the default rates are `rate`; once none does and the default rates are
/// still `rate` (the operator's), every topic's throttled replicas and then
/// the rates are removed.
pub async fn settle(
    admin: &Admin,
    rate: i64,
    moving: bool,
    topics: &[String],
) -> Result<Settled, AdminError> {
    let defaults = admin
        .dynamic_configs(BROKER_RESOURCE, &[String::new()])
        .await?
        .remove("")
        .unwrap_or_default();
    let ours = [LEADER_RATE, FOLLOWER_RATE]
        .iter()
        .all(|k| defaults.get(*k) == Some(&rate.to_string()));
    if moving {
        if ours {
            return Ok(Settled::Nothing);
        }
        set_rates(admin, rate).await?;
        return Ok(Settled::RatesSet);
    }
    if !ours {
        return Ok(Settled::Nothing);
    }
    let mut cleared = Vec::new();
    if !topics.is_empty() {
        let configs = admin.dynamic_configs(TOPIC_RESOURCE, topics).await?;
        for (topic, set) in configs {
            let keys: BTreeSet<&str> = [LEADER_REPLICAS, FOLLOWER_REPLICAS]
                .into_iter()
                .filter(|k| set.contains_key(*k))
                .collect();
            if keys.is_empty() {
                continue;
            }
            let ops: Vec<ConfigOp> = keys.iter().map(|k| ConfigOp::Delete((*k).into())).collect();
            admin.alter_configs(TOPIC_RESOURCE, &topic, &ops).await?;
            cleared.push(topic);
        }
    }
    let ops = [LEADER_RATE, FOLLOWER_RATE].map(|k| ConfigOp::Delete(k.into()));
    admin.alter_configs(BROKER_RESOURCE, "", &ops).await?;
    info!(topics = ?cleared, "replica moves done; replication throttles removed");
    Ok(Settled::Removed(cleared))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_replicas_lead_and_gained_ones_follow() {
        let moves = vec![
            ("a".to_owned(), 0, vec![1, 2, 4]),
            ("a".to_owned(), 1, vec![2, 3]),
            ("b".to_owned(), 0, vec![5]),
        ];
        let current = |topic: &str, p: i32| match (topic, p) {
            ("a", 0) => vec![1, 2, 3],
            ("a", 1) => vec![2, 3, 1],
            _ => vec![1],
        };
        let got = throttled_replicas(&moves, current);
        assert_eq!(
            got["a"],
            (
                vec!["0:1", "0:2", "0:3", "1:2", "1:3", "1:1"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                vec!["0:4".to_owned()]
            )
        );
        assert_eq!(got["b"], (vec!["0:1".to_owned()], vec!["0:5".to_owned()]));
    }
}
