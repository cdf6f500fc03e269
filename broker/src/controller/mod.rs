//! The controller quorum, like Kafka's KRaft: the cluster metadata
//! ([`ClusterImage`]) is the state machine of a Raft log (openraft) kept by the
//! `--controller-voters`, and every broker, voter or not, reaches it through
//! a [`Controller`].
//!
//! ```text
//!  any broker                           voter (one of --controller-voters)
//! ┌───────────────────────┐  Write     ┌─────────────────────────────────────┐
//! │ Controller            │ Heartbeat  │ service: Controller gRPC ─┐         │
//! │  client: leader hint, │───────────▶│          Raft gRPC ───────┤         │
//! │   redirects, retries  │ Watch-     │ member: openraft::Raft ◀──┘         │
//! │  heartbeat loop       │ Metadata   │   log_store: DATA/__cluster_metadata│
//! │  image watch ◀────────│────────────│   state_machine: ClusterImage ──▶ image watch
//! └───────────────────────┘            │ duties (leader only): cluster id,   │
//!                                      │   fencing, preferred leaders        │
//!                                      └──────────────┬──────────────────────┘
//!                                         network: Raft RPCs to the other voters
//! ```
//!
//! Only the Raft leader answers brokers' calls; another voter names the
//! leader and the caller asks it. A leader that has not heard from a majority
//! within an election timeout stops answering, so a broker cut off with a
//! deposed leader moves on to the new one. Brokers' sessions (last heartbeat
//! times) live in the leader's memory, not in the log: a new leader gives
//! every broker a fresh session.
//!
//! # Layout
//! - `error`: [`ControllerError`].
//! - `log_store`: the durable Raft log, one append-only journal of
//!   length-prefixed, CRC-checked records.
//! - `state_machine`: the [`ClusterImage`] as openraft's state machine; JSON
//!   snapshots.
//! - `network`: openraft's RPCs to other voters over gRPC.
//! - `service`: the gRPC services of `proto/controller.proto`.
//! - `member`: a voter: Raft, and the leader's answers to writes,
//!   heartbeats and watches.
//! - `duties`: what the leader does unasked (cluster id, fencing brokers
//!   whose session ran out, preferred leaders); the decisions are pure.
//! - `client`: the broker side of the calls: leader hints, redirects,
//!   retries, deadlines.
//! - `metrics`: `runnel_controller_*` gauges.

mod client;
mod duties;
mod error;
mod log_store;
mod member;
mod metrics;
pub(crate) mod network;
mod service;
mod state_machine;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::BasicNode;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::cluster::{ClusterImage, CommandResult, MetadataCommand};
use crate::config::Voter;

pub use error::ControllerError;
pub use metrics::ControllerMetrics;

use client::{Answer, Call, QuorumClient};
use duties::Verdict;
use member::Member;

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum: entries carry
    /// [`MetadataCommand`]s and applying one gives a [`CommandResult`].
    pub(crate) TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// How long [`Controller::write`] tries before giving up: long enough to ride
/// out a leader election (two election timeouts at the default 1 s) and a
/// redirect or two.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a non-voter's metadata watch waits on the leader per call.
const WATCH_WAIT: Duration = Duration::from_secs(5);

/// The first pause between registration attempts; doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between registration or watch attempts: short enough
/// that a broker notices a recovered quorum within a heartbeat or two.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// How long a probe of a voter's gRPC address waits for the connection.
const PROBE_WAIT: Duration = Duration::from_millis(500);

/// The pause between probes while a controlled shutdown waits on the quorum.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How many probes in a row must find most voters gone before a controlled
/// shutdown stops waiting for the quorum.
const QUORUM_GONE_PROBES: u32 = 3;

/// How the controller runs. Durations come from the broker settings of the
/// same names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// The quorum: `--controller-voters`. This broker is a voter when its
    /// id is among them.
    pub voters: Vec<Voter>,
    /// The broker's data directory; the metadata log lives in
    /// `data_dir/__cluster_metadata`.
    pub data_dir: PathBuf,
    /// `broker.session.timeout.ms`: a broker not heard from for this long is
    /// fenced.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`: Raft elections time out
    /// between this and twice this; the leader heartbeats every fifth of it.
    pub election_timeout: Duration,
    /// `leader.imbalance.check.interval.seconds` when
    /// `auto.leader.rebalance.enable`, else `None`.
    pub rebalance: Option<Duration>,
}

/// What a broker tells the quorum about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The node id.
    pub id: i32,
    /// Its rack (zone).
    pub rack: Option<String>,
    /// The advertised Kafka host.
    pub host: String,
    /// The advertised Kafka port.
    pub port: i32,
    /// Where its gRPC listener answers, `HOST:PORT`.
    pub rpc_address: String,
}

/// A broker's handle on the controller quorum (and, on a voter, the quorum
/// member itself). Cheap to clone; every clone is the same controller.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: i32,
    heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: the leader fences a broker whose
    /// heartbeats it has not seen for this long.
    session_timeout: Duration,
    /// When the controller last answered a heartbeat (`None` before the first).
    last_answered: Mutex<Option<tokio::time::Instant>>,
    /// The Raft member when this broker is a voter.
    member: Option<Arc<Member>>,
    client: QuorumClient,
    image: watch::Receiver<Arc<ClusterImage>>,
    /// The broker epoch, -1 before the first registration.
    epoch: watch::Sender<i64>,
    /// Identifies this process's registrations.
    incarnation: Uuid,
    registration: Mutex<Option<Registration>>,
    /// Set by `shutdown`: no more re-registrations.
    leaving: AtomicBool,
    /// Stops the heartbeat loop.
    heartbeats: Mutex<Option<CancellationToken>>,
    /// Stops every background task.
    stop: CancellationToken,
    metrics: ControllerMetrics,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.inner.node_id)
            .field("voter", &self.inner.member.is_some())
            .field("broker_epoch", &self.broker_epoch())
            .field("version", &self.inner.image.borrow().version)
            .finish()
    }
}

impl Controller {
    /// Opens the metadata log and starts Raft (voters), or starts following
    /// the leader's metadata (other brokers). Does not serve gRPC itself:
    /// add [`Controller::services`] to the broker's gRPC server.
    ///
    /// A voter whose metadata log is empty initializes the quorum with every
    /// voter of the configuration (each voter may do so; the first log entry
    /// is the same on all of them).
    #[instrument(skip_all, fields(node_id = config.node_id))]
    pub async fn start(config: ControllerConfig) -> Result<Controller, ControllerError> {
        let voters = validate(&config)?;
        let me = u64::try_from(config.node_id).map_err(|_| {
            ControllerError::Config(format!("node id {} is negative", config.node_id))
        })?;
        let stop = CancellationToken::new();
        let metrics = ControllerMetrics::default();
        let (member, image) = if voters.contains_key(&me) {
            let member = Member::start(me, &config, &voters).await?;
            tokio::spawn(duties::run(
                member.clone(),
                duties::DutyConfig {
                    session_timeout: config.session_timeout,
                    rebalance: config.rebalance,
                },
                stop.child_token(),
            ));
            tokio::spawn(metrics::follow_leadership(
                member.raft().metrics(),
                me,
                metrics.clone(),
                stop.child_token(),
            ));
            let image = member.image();
            (Some(member), image)
        } else {
            let (tx, rx) = watch::channel(Arc::new(ClusterImage::default()));
            let client = QuorumClient::new(me, voters.clone(), None);
            tokio::spawn(follow_metadata(client, tx, stop.child_token()));
            (None, rx)
        };
        tokio::spawn(metrics::follow_version(
            image.clone(),
            metrics.clone(),
            stop.child_token(),
        ));
        info!(
            voter = member.is_some(),
            voters = voters.len(),
            "controller started"
        );
        Ok(Controller {
            inner: Arc::new(Inner {
                node_id: config.node_id,
                heartbeat_interval: config.heartbeat_interval,
                session_timeout: config.session_timeout,
                last_answered: Mutex::new(None),
                client: QuorumClient::new(me, voters, member.clone()),
                member,
                image,
                epoch: watch::Sender::new(-1),
                incarnation: Uuid::new_v4(),
                registration: Mutex::new(None),
                leaving: AtomicBool::new(false),
                heartbeats: Mutex::new(None),
                stop,
                metrics,
            }),
        })
    }

    /// The gRPC services to serve on the broker's `--rpc-listen`: `Raft`
    /// (voter to voter) and `Controller` (broker to voter), as a router to
    /// which the broker adds its own services. A broker that is not a voter
    /// serves them too, answering that it is not a voter.
    pub fn services(&self) -> tonic::transport::server::Router {
        let (raft, controller) =
            service::services(self.inner.member.clone(), self.inner.stop.clone());
        tonic::transport::Server::builder()
            .add_service(raft)
            .add_service(controller)
    }

    /// The latest metadata this broker knows: a voter's applied state, or
    /// what the leader last sent a non-voter.
    pub fn image(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.inner.image.clone()
    }

    /// Whether this broker is a voter and currently the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.inner.member.as_ref().is_some_and(|m| m.is_leader())
    }

    /// Proposes a command through the leader, following redirects and
    /// riding out elections for up to [`WRITE_TIMEOUT`]; returns once the
    /// command is committed and applied on the leader, with its log index
    /// (the image version that contains it) and result. A refusal is an
    /// `Ok` [`CommandResult::Error`].
    ///
    /// When a voter took the command but did not answer in time the result
    /// is [`ControllerError::Timeout`] and the command may still be applied;
    /// a voter that stops answering mid-call (`UNAVAILABLE`) is taken as not
    /// having applied it, so in rare cases a retried command is applied twice.
    pub async fn write(
        &self,
        command: MetadataCommand,
    ) -> Result<(u64, CommandResult), ControllerError> {
        if self.inner.stop.is_cancelled() {
            return Err(ControllerError::Stopped);
        }
        match self
            .inner
            .client
            .call(&Call::Write(command), WRITE_TIMEOUT)
            .await?
        {
            Answer::Written(index, result) => Ok((index, result)),
            other => Err(ControllerError::Protocol(format!(
                "a write was answered with {other:?}"
            ))),
        }
    }

    /// Waits up to `timeout` until this broker's image has applied `version`.
    pub async fn wait_for_version(
        &self,
        version: u64,
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        let mut image = self.image();
        let applied = tokio::time::timeout(timeout, image.wait_for(|i| i.version >= version))
            .await
            .map(|r| r.map(|_| ()));
        match applied {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ControllerError::Stopped),
            Err(_) => Err(ControllerError::Timeout {
                what: format!("metadata version {version}"),
                after: timeout,
            }),
        }
    }

    /// Registers this broker, retrying until the quorum answers, then
    /// heartbeats every `heartbeat_interval` in the background. When a
    /// heartbeat finds the broker fenced (it missed its session) or its epoch
    /// unknown, it registers again and [`Controller::broker_epoch`] changes.
    /// Returns the first broker epoch (the log index of the registration:
    /// wait for that version to see yourself in the image).
    #[instrument(skip_all, fields(broker = registration.id))]
    pub async fn register(&self, registration: Registration) -> Result<i64, ControllerError> {
        *lock(&self.inner.registration) = Some(registration);
        let mut pause = FIRST_RETRY_PAUSE;
        let epoch = loop {
            match self.inner.register_once().await {
                Ok(epoch) => break epoch,
                Err(error) if error.is_retriable() => {
                    warn!(%error, "registration not answered; retrying");
                    tokio::select! {
                        _ = self.inner.stop.cancelled() => return Err(ControllerError::Stopped),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
                Err(error) => return Err(error),
            }
        };
        info!(
            broker_epoch = epoch,
            "registered with the controller quorum"
        );
        let token = self.inner.stop.child_token();
        if let Some(old) = lock(&self.inner.heartbeats).replace(token.clone()) {
            old.cancel();
        }
        tokio::spawn(heartbeat_loop(self.inner.clone(), token));
        Ok(epoch)
    }

    /// The current broker epoch (-1 before registration); it changes when
    /// the broker registers again.
    pub fn broker_epoch(&self) -> i64 {
        *self.inner.epoch.borrow()
    }

    /// The broker epoch as it changes.
    pub fn broker_epochs(&self) -> watch::Receiver<i64> {
        self.inner.epoch.subscribe()
    }

    /// Controlled shutdown: proposes `ControlledShutdown` and waits, within
    /// `timeout` in all, until the image shows this broker leading no
    /// partition; then stops heartbeating (so the leader fences the broker
    /// after its session). A voter keeps taking part in Raft until
    /// [`Controller::stop`] or the process ends.
    ///
    /// When most voters refuse connections (or do not accept one within
    /// [`PROBE_WAIT`]) on [`QUORUM_GONE_PROBES`] probes in a row, no leader
    /// can be elected to take the proposal or move the partitions: the
    /// shutdown stops waiting then instead of at `timeout`. That happens to
    /// the last brokers of a cluster whose brokers all stop at once.
    #[instrument(skip_all, fields(broker = self.inner.node_id))]
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.leaving.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        let registered = lock(&self.inner.registration).clone();
        if let Some(registration) = registered {
            let id = registration.id;
            let moved = async {
                let mut image = self.image();
                self.propose_shutdown(id, deadline).await
                    && tokio::time::timeout_at(deadline, image.wait_for(|i| !leads_any(i, id)))
                        .await
                        .is_ok_and(|r| r.is_ok())
            };
            // Without the quorum nothing will move: do not wait for it.
            let moved = tokio::select! {
                moved = moved => moved,
                (up, voters) = self.quorum_gone() => {
                    warn!(up, voters, "the controller quorum is gone (most voters do not accept \
                        connections); not waiting for it");
                    false
                }
            };
            if !moved {
                warn!("partitions still led by this broker at the end of the controlled shutdown");
            }
        }
        if let Some(token) = lock(&self.inner.heartbeats).take() {
            token.cancel();
        }
    }

    /// Proposes `ControlledShutdown` for broker `id` until it is accepted
    /// (true), refused or `deadline` passes (false).
    async fn propose_shutdown(&self, id: i32, deadline: Instant) -> bool {
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let command = MetadataCommand::ControlledShutdown {
                id,
                epoch: self.broker_epoch(),
            };
            match tokio::time::timeout_at(deadline, self.write(command)).await {
                Ok(Ok((_, CommandResult::Error { code, message }))) => {
                    warn!(code, %message, "controlled shutdown refused");
                    return false;
                }
                Ok(Ok(_)) => {
                    info!("controlled shutdown accepted; waiting for leadership to move");
                    return true;
                }
                Ok(Err(error)) if error.is_retriable() => {
                    warn!(%error, "controlled shutdown not answered; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
                Ok(Err(error)) => {
                    warn!(%error, "controlled shutdown failed");
                    return false;
                }
                Err(_) => {
                    warn!("controlled shutdown not accepted in time");
                    return false;
                }
            }
        }
    }

    /// Resolves, with how many voters were up and how many there are, once
    /// most voters have been down on [`QUORUM_GONE_PROBES`] probes in a row.
    async fn quorum_gone(&self) -> (usize, usize) {
        let mut in_a_row = 0;
        loop {
            let (up, voters) = self.inner.client.voters_accepting(PROBE_WAIT).await;
            if up <= voters / 2 {
                in_a_row += 1;
                if in_a_row >= QUORUM_GONE_PROBES {
                    return (up, voters);
                }
            } else {
                in_a_row = 0;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Stops every background task and, on a voter, Raft. Calls afterwards
    /// fail with [`ControllerError::Stopped`]; the gRPC services answer
    /// `UNAVAILABLE`.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        if let Some(member) = &self.inner.member {
            member.stop().await;
        }
    }

    /// Registers the controller's gauges (`controller_is_leader`,
    /// `controller_metadata_version`) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }
}

impl Inner {
    /// One registration attempt (with the write's own retries).
    async fn register_once(&self) -> Result<i64, ControllerError> {
        let Some(registration) = lock(&self.registration).clone() else {
            return Err(ControllerError::Config("register() was not called".into()));
        };
        let command = MetadataCommand::RegisterBroker {
            id: registration.id,
            rack: registration.rack,
            host: registration.host,
            port: registration.port,
            rpc_address: registration.rpc_address,
            incarnation: self.incarnation,
        };
        match self
            .client
            .call(&Call::Write(command), WRITE_TIMEOUT)
            .await?
        {
            Answer::Written(_, CommandResult::BrokerEpoch(epoch)) => {
                self.epoch.send_replace(epoch);
                Ok(epoch)
            }
            Answer::Written(_, CommandResult::Error { code, message }) => {
                Err(ControllerError::Rejected { code, message })
            }
            other => Err(ControllerError::Protocol(format!(
                "a registration was answered with {other:?}"
            ))),
        }
    }
}

impl Controller {
    /// Whether a whole session timeout has passed since the controller last
    /// answered this broker's heartbeat. By then the controller has fenced
    /// this broker and moved its leaderships elsewhere, so what it leads in
    /// its own (stale) image is not to be served: a client sent elsewhere
    /// finds the new leader sooner than one whose writes time out here.
    pub fn session_lapsed(&self) -> bool {
        lock(&self.inner.last_answered).is_some_and(|at| at.elapsed() > self.inner.session_timeout)
    }
}

/// Heartbeats every `heartbeat_interval`; registers again when told to.
async fn heartbeat_loop(inner: Arc<Inner>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(inner.heartbeat_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let id = inner.node_id;
        let epoch = *inner.epoch.borrow();
        // One interval per heartbeat, so a slow quorum never queues them up.
        let result = inner
            .client
            .call(&Call::Heartbeat { id, epoch }, inner.heartbeat_interval)
            .await;
        if matches!(result, Ok(Answer::Heartbeat(_))) {
            *lock(&inner.last_answered) = Some(tokio::time::Instant::now());
        }
        match result {
            Ok(Answer::Heartbeat(Verdict::Alive)) => {
                if failing {
                    info!(broker_epoch = epoch, "heartbeats answered again");
                }
                failing = false;
            }
            Ok(Answer::Heartbeat(Verdict::CatchingUp)) => {
                debug!(
                    broker_epoch = epoch,
                    "the leader has not applied our registration yet"
                );
            }
            Ok(Answer::Heartbeat(Verdict::Reregister)) => {
                if inner.leaving.load(Ordering::SeqCst) {
                    continue;
                }
                warn!(
                    broker_epoch = epoch,
                    "the controller fenced this broker or forgot its epoch; registering again"
                );
                match inner.register_once().await {
                    Ok(epoch) => info!(broker_epoch = epoch, "registered again"),
                    Err(error) => warn!(%error, "registering again failed; will retry"),
                }
            }
            Ok(other) => warn!(answer = ?other, "unexpected heartbeat answer"),
            Err(error) => {
                if !failing {
                    warn!(%error, "heartbeat not answered");
                } else {
                    debug!(%error, "heartbeat not answered");
                }
                failing = true;
            }
        }
    }
}

/// A non-voter's copy of the metadata: long-polls the leader for newer
/// images.
async fn follow_metadata(
    client: QuorumClient,
    images: watch::Sender<Arc<ClusterImage>>,
    stop: CancellationToken,
) {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut failing = false;
    loop {
        let since = images.borrow().version;
        let call = Call::Watch {
            since,
            max_wait: WATCH_WAIT,
        };
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.call(&call, WATCH_WAIT + WRITE_TIMEOUT) => r,
        };
        match result {
            Ok(Answer::Image(Some(image))) => {
                if image.version > since {
                    debug!(version = image.version, "metadata update");
                    images.send_replace(image);
                }
                failing = false;
                pause = FIRST_RETRY_PAUSE;
            }
            Ok(_) => {
                failing = false;
                pause = FIRST_RETRY_PAUSE;
            }
            Err(error) => {
                if !failing {
                    warn!(%error, "metadata watch failed; retrying");
                }
                failing = true;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// Whether `broker` leads any partition of `image`.
fn leads_any(image: &ClusterImage, broker: i32) -> bool {
    image
        .topics
        .values()
        .any(|t| t.partitions.iter().any(|p| p.leader == broker))
}

/// Checks the configuration; returns the voters by Raft node id.
fn validate(config: &ControllerConfig) -> Result<BTreeMap<u64, String>, ControllerError> {
    let bad = |m: String| Err(ControllerError::Config(m));
    if config.voters.is_empty() {
        return bad("no controller voters".into());
    }
    let mut voters = BTreeMap::new();
    for voter in &config.voters {
        let Ok(id) = u64::try_from(voter.id) else {
            return bad(format!("voter id {} is negative", voter.id));
        };
        if voters.insert(id, voter.address.clone()).is_some() {
            return bad(format!("voter id {} is listed twice", voter.id));
        }
    }
    // Raft needs the election timeout to exceed its heartbeat (a fifth of it).
    if config.election_timeout < Duration::from_millis(10) {
        return bad(format!(
            "the election timeout {:?} is below 10 ms",
            config.election_timeout
        ));
    }
    if config.heartbeat_interval.is_zero() || config.session_timeout.is_zero() {
        return bad("the heartbeat interval and session timeout must be positive".into());
    }
    Ok(voters)
}

/// Locks a mutex whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
