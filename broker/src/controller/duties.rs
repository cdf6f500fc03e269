//! What the controller leader does unasked, while it is the Raft leader:
//!
//! - on winning an election, once its image holds every entry committed
//!   before (`ensure_linearizable`): give every registered broker a fresh
//!   session (it cannot know their last heartbeats) and set the cluster id if
//!   there is none;
//! - every [`TICK`]: fence each unfenced broker whose session ran out
//!   (`broker.session.timeout.ms` without a heartbeat of its current epoch);
//! - every `leader.imbalance.check.interval.seconds` when
//!   `auto.leader.rebalance.enable`: move leadership back to each preferred
//!   replica that is live and in sync.
//!
//! The decisions ([`Sessions`], [`heartbeat_verdict`],
//! [`preferred_leader_elections`]) are pure; [`run`] does the I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::member::{Member, Outcome};
use crate::cluster::{ClusterImage, CommandResult, MetadataCommand};

/// How often the leader looks for expired sessions: a tenth of a second
/// adds little to a session timeout of seconds and costs nothing.
const TICK: Duration = Duration::from_millis(100);

/// How long a new leader waits for its image to catch up before checking
/// its leadership again.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a heartbeat tells the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The session is extended.
    Alive,
    /// The broker is fenced, or registered again since, or unknown: it must
    /// register (again).
    Reregister,
    /// The epoch is newer than the leader's image: try again shortly.
    CatchingUp,
}

/// The verdict on a heartbeat of `broker` at `epoch` against `image`.
pub(crate) fn heartbeat_verdict(image: &ClusterImage, broker: i32, epoch: i64) -> Verdict {
    match image.brokers.get(&broker) {
        Some(b) if b.epoch == epoch && !b.fenced => Verdict::Alive,
        _ if u64::try_from(epoch).is_ok_and(|e| e > image.version) => Verdict::CatchingUp,
        _ => Verdict::Reregister,
    }
}

/// Brokers' sessions as the leader sees them: when each registered broker
/// last heartbeated with its current epoch.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    last: BTreeMap<i32, (i64, Instant)>,
}

impl Sessions {
    /// Every unfenced broker of `image` starts a fresh session at `now`.
    pub(crate) fn reset(&mut self, image: &ClusterImage, now: Instant) {
        self.last = image
            .live_brokers()
            .map(|b| (b.id, (b.epoch, now)))
            .collect();
    }

    /// A heartbeat of `broker` at `epoch`.
    pub(crate) fn record(&mut self, broker: i32, epoch: i64, now: Instant) {
        self.last.insert(broker, (epoch, now));
    }

    /// The unfenced brokers of `image` (id and epoch) not heard from for
    /// longer than `timeout`. A broker seen for the first time (or with a new
    /// epoch) starts its session at `now`; fenced and unknown brokers are
    /// forgotten.
    pub(crate) fn expired(
        &mut self,
        image: &ClusterImage,
        now: Instant,
        timeout: Duration,
    ) -> Vec<(i32, i64)> {
        self.last
            .retain(|id, _| image.brokers.get(id).is_some_and(|b| !b.fenced));
        let mut expired = Vec::new();
        for broker in image.live_brokers() {
            match self.last.get(&broker.id) {
                Some((epoch, at)) if *epoch == broker.epoch => {
                    if now.saturating_duration_since(*at) > timeout {
                        expired.push((broker.id, broker.epoch));
                    }
                }
                _ => {
                    self.last.insert(broker.id, (broker.epoch, now));
                }
            }
        }
        expired
    }
}

/// Partitions whose preferred (first) replica is live, in the ISR and not
/// the leader: leadership should move back to it.
pub(crate) fn preferred_leader_elections(image: &ClusterImage) -> Vec<(String, i32)> {
    let electable = |id: i32| {
        image
            .brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.shutting_down)
    };
    let mut moves = Vec::new();
    for (name, topic) in &image.topics {
        for (index, p) in topic.partitions.iter().enumerate() {
            if let Some(&preferred) = p.replicas.first() {
                if p.leader != preferred && p.isr.contains(&preferred) && electable(preferred) {
                    moves.push((name.clone(), index as i32));
                }
            }
        }
    }
    moves
}

/// Timings of the leader's duties.
#[derive(Debug, Clone)]
pub(crate) struct DutyConfig {
    /// `broker.session.timeout.ms`.
    pub(crate) session_timeout: Duration,
    /// The preferred-leader check interval, if enabled.
    pub(crate) rebalance: Option<Duration>,
}

/// Runs the leader's duties whenever this voter leads, until `stop`.
pub(crate) async fn run(member: Arc<Member>, config: DutyConfig, stop: CancellationToken) {
    let mut metrics = member.raft().metrics();
    loop {
        let term = tokio::select! {
            _ = stop.cancelled() => return,
            term = next_term(&mut metrics, member.id()) => term,
        };
        let Some(term) = term else { return };
        tokio::select! {
            _ = stop.cancelled() => return,
            () = lead(&member, &config, term) => {}
        }
    }
}

/// Waits until this voter leads; returns the term, or `None` once Raft stopped.
async fn next_term(
    metrics: &mut tokio::sync::watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    me: u64,
) -> Option<u64> {
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.state == ServerState::Leader && m.current_leader == Some(me) {
                return Some(m.current_term);
            }
        }
        metrics.changed().await.ok()?;
    }
}

/// Whether this voter still leads in `term`.
fn leads(member: &Member, term: u64) -> bool {
    let metrics = member.raft().metrics();
    let m = metrics.borrow();
    m.state == ServerState::Leader
        && m.current_leader == Some(member.id())
        && m.current_term == term
}

/// The duties of one term; returns when leadership is lost.
async fn lead(member: &Member, config: &DutyConfig, term: u64) {
    info!(term, "leading the controller quorum");
    // Decide nothing before the image holds what earlier leaders committed.
    loop {
        if !leads(member, term) {
            return;
        }
        match tokio::time::timeout(CATCH_UP_TIMEOUT, member.raft().ensure_linearizable()).await {
            Ok(Ok(_)) => break,
            Ok(Err(error)) => debug!(%error, "not caught up yet"),
            Err(_) => debug!("catching up is slow"),
        }
        tokio::time::sleep(TICK).await;
    }
    let started = Instant::now();
    super::lock(&member.sessions).reset(&member.current_image(), started);
    let mut next_rebalance = config.rebalance.map(|every| started + every);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if !leads(member, term) {
            info!(term, "no longer leading the controller quorum");
            return;
        }
        let image = member.current_image();
        if image.cluster_id.is_none() {
            let cluster_id = crate::broker::kafka_style_id(Uuid::new_v4());
            info!(%cluster_id, "setting the cluster id");
            propose(member, MetadataCommand::InitCluster { cluster_id }).await;
        }
        let expired =
            super::lock(&member.sessions).expired(&image, Instant::now(), config.session_timeout);
        for (id, epoch) in expired {
            info!(
                broker = id,
                broker_epoch = epoch,
                "broker session expired; fencing it"
            );
            propose(member, MetadataCommand::FenceBroker { id, epoch }).await;
        }
        if let (Some(at), Some(every)) = (next_rebalance, config.rebalance) {
            if Instant::now() >= at {
                for (topic, partition) in preferred_leader_elections(&image) {
                    info!(%topic, partition, "moving leadership back to the preferred replica");
                    propose(
                        member,
                        MetadataCommand::ElectPreferredLeader { topic, partition },
                    )
                    .await;
                }
                next_rebalance = Some(Instant::now() + every);
            }
        }
    }
}

/// Proposes a command of the leader's own; failures are logged (the next
/// tick decides again from the image).
async fn propose(member: &Member, command: MetadataCommand) {
    let what = format!("{command:?}");
    match member.write(command).await {
        Ok(Outcome::Done((_, CommandResult::Error { code, message }))) => {
            debug!(command = %what, code, %message, "refused");
        }
        Ok(Outcome::Done(_)) => {}
        Ok(Outcome::NotLeader(_)) => debug!(command = %what, "not leading any more"),
        Err(error) => warn!(command = %what, %error, "leader's proposal failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Assignment, BrokerRegistration};

    fn register(image: &mut ClusterImage, index: u64, id: i32) {
        image.apply(
            index,
            &MetadataCommand::RegisterBroker {
                id,
                rack: None,
                host: "localhost".into(),
                port: 9092,
                rpc_address: format!("localhost:{}", 9000 + id),
                incarnation: Uuid::new_v4(),
            },
        );
    }

    fn cluster() -> ClusterImage {
        let mut image = ClusterImage::default();
        register(&mut image, 1, 1);
        register(&mut image, 2, 2);
        register(&mut image, 3, 3);
        image.apply(
            4,
            &MetadataCommand::CreateTopic {
                name: "t".into(),
                id: Uuid::new_v4(),
                configs: Default::default(),
                assignment: Assignment::Auto {
                    partitions: 3,
                    replication_factor: 3,
                },
            },
        );
        image
    }

    fn broker(image: &ClusterImage, id: i32) -> &BrokerRegistration {
        image.brokers.get(&id).expect("registered")
    }

    #[test]
    fn heartbeat_verdicts() {
        let mut image = cluster();
        assert_eq!(heartbeat_verdict(&image, 1, 1), Verdict::Alive);
        // An epoch the image has not reached yet.
        assert_eq!(heartbeat_verdict(&image, 4, 9), Verdict::CatchingUp);
        // Unknown broker, old epoch.
        assert_eq!(heartbeat_verdict(&image, 4, 2), Verdict::Reregister);
        register(&mut image, 5, 1);
        assert_eq!(heartbeat_verdict(&image, 1, 1), Verdict::Reregister);
        assert_eq!(heartbeat_verdict(&image, 1, 5), Verdict::Alive);
        image.apply(6, &MetadataCommand::FenceBroker { id: 1, epoch: 5 });
        assert_eq!(heartbeat_verdict(&image, 1, 5), Verdict::Reregister);
    }

    #[test]
    fn sessions_expire_without_heartbeats() {
        let image = cluster();
        let timeout = Duration::from_secs(9);
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        // First sight starts the sessions.
        assert!(sessions.expired(&image, t0, timeout).is_empty());
        sessions.record(1, 1, t0 + Duration::from_secs(5));
        sessions.record(2, 2, t0 + Duration::from_secs(8));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(sessions.expired(&image, later, timeout), vec![(3, 3)]);
        let much_later = t0 + Duration::from_secs(15);
        assert_eq!(
            sessions.expired(&image, much_later, timeout),
            vec![(1, 1), (3, 3)]
        );
        // A new leader gives everyone a fresh session.
        sessions.reset(&image, much_later);
        assert!(sessions.expired(&image, much_later, timeout).is_empty());
    }

    #[test]
    fn sessions_follow_epochs_and_fencing() {
        let mut image = cluster();
        let timeout = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut sessions = Sessions::default();
        sessions.reset(&image, t0);
        // A heartbeat of an old epoch does not keep the new one alive: the
        // new registration starts its own session when first seen.
        register(&mut image, 5, 2);
        let t1 = t0 + Duration::from_secs(2);
        let expired = sessions.expired(&image, t1, timeout);
        assert_eq!(expired, vec![(1, 1), (3, 3)]);
        assert!(!sessions
            .expired(&image, t1 + Duration::from_millis(500), timeout)
            .iter()
            .any(|(id, _)| *id == 2));
        // Fenced brokers are not reported again.
        image.apply(6, &MetadataCommand::FenceBroker { id: 1, epoch: 1 });
        assert!(broker(&image, 1).fenced);
        let expired = sessions.expired(&image, t1 + Duration::from_secs(5), timeout);
        assert_eq!(expired, vec![(2, 5), (3, 3)]);
    }

    #[test]
    fn preferred_leaders_return_when_live_and_in_sync() {
        let mut image = cluster();
        assert!(preferred_leader_elections(&image).is_empty());
        let led_by_1: Vec<i32> = image.topics["t"]
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| p.replicas[0] == 1)
            .map(|(i, _)| i as i32)
            .collect();
        assert!(!led_by_1.is_empty());
        // Broker 1 leaves: its partitions move and it drops out of the ISR.
        image.apply(5, &MetadataCommand::FenceBroker { id: 1, epoch: 1 });
        assert!(preferred_leader_elections(&image).is_empty());
        // Back, but not in sync yet: still nothing.
        register(&mut image, 6, 1);
        assert!(preferred_leader_elections(&image).is_empty());
        // In sync again: leadership should move back.
        for &index in &led_by_1 {
            let p = image.partition("t", index).expect("exists").clone();
            let mut isr = p.isr.clone();
            isr.push(1);
            let result = image.apply(
                7,
                &MetadataCommand::AlterPartition {
                    topic: "t".into(),
                    partition: index,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                    isr,
                },
            );
            assert!(matches!(result, CommandResult::Partition(_)), "{result:?}");
        }
        let moves = preferred_leader_elections(&image);
        let expected: Vec<(String, i32)> = led_by_1.iter().map(|i| ("t".to_string(), *i)).collect();
        assert_eq!(moves, expected);
    }
}
