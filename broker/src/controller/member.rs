//! A voter of the quorum: its Raft node, and the leader's answers to
//! brokers (writes, heartbeats, metadata watches).
//!
//! Only a leader that has heard from a majority within an election timeout
//! answers; any other voter names the leader it knows of. So a deposed
//! leader cut off from the others stops accepting heartbeats (which would
//! keep brokers believing they are alive) and sends callers elsewhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, Raft, ServerState, SnapshotPolicy};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::duties::{heartbeat_verdict, Sessions, Verdict};
use super::error::ControllerError;
use super::log_store::LogStore;
use super::network::Network;
use super::state_machine::StateMachine;
use super::{ControllerConfig, TypeConfig};
use crate::cluster::{ClusterImage, CommandResult, MetadataCommand};

/// The metadata log's directory under the broker's data directory.
pub(crate) const METADATA_DIR: &str = "__cluster_metadata";

/// How long the leader waits for a proposed command to commit and apply.
const COMMIT_TIMEOUT: Duration = super::WRITE_TIMEOUT;

/// Snapshot the image after this many entries, then purge the log before it
/// (keeping openraft's default 1000 for followers slightly behind).
const SNAPSHOT_EVERY: u64 = 5000;

/// Snapshot chunks sent to a lagging follower: well below gRPC limits.
const SNAPSHOT_CHUNK: u64 = 1 << 20;

/// The longest a watch waits for a newer image before answering anyway.
pub(crate) const MAX_WATCH_WAIT: Duration = Duration::from_secs(30);

/// The answer of a voter that may not be the leader.
#[derive(Debug)]
pub(crate) enum Outcome<T> {
    /// The leader answered.
    Done(T),
    /// Not the leader (or not in contact with a majority); the leader it
    /// knows of, if any.
    NotLeader(Option<u64>),
}

/// A running voter.
pub(crate) struct Member {
    id: u64,
    raft: Raft<TypeConfig>,
    image: watch::Receiver<Arc<ClusterImage>>,
    /// Brokers' last heartbeats, meaningful on the leader only.
    pub(crate) sessions: Mutex<Sessions>,
    /// A leader that has not heard from a majority for this long stops
    /// answering brokers.
    lease: Duration,
    /// Whether this is the only voter (then a majority is itself).
    alone: bool,
}

impl Member {
    /// Opens the metadata log under `config.data_dir`, starts Raft, and
    /// initializes the quorum if the log is empty.
    pub(crate) async fn start(
        me: u64,
        config: &ControllerConfig,
        voters: &BTreeMap<u64, String>,
    ) -> Result<Arc<Member>, ControllerError> {
        let dir = config.data_dir.join(METADATA_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| ControllerError::Storage {
            path: dir.clone(),
            source,
        })?;
        let log_store = LogStore::open(&dir)?;
        let (state_machine, image) = StateMachine::open(&dir)?;
        let raft_config = raft_config(config.election_timeout)?;
        let network = Network::new(me, voters.clone());
        let raft = Raft::new(me, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let members: BTreeMap<u64, BasicNode> = voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        if initialized {
            let stored = raft.metrics().borrow().membership_config.clone();
            let stored: Vec<u64> = stored.membership().voter_ids().collect();
            let configured: Vec<u64> = voters.keys().copied().collect();
            if stored != configured {
                warn!(
                    ?stored,
                    ?configured,
                    "the metadata log's voters differ from --controller-voters; \
                     the log's are used (membership changes are not supported)"
                );
            }
        } else {
            match raft.initialize(members).await {
                Ok(()) => info!(voters = voters.len(), "initialized the controller quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                    debug!(%e, "the quorum is already initialized");
                }
                Err(e) => return Err(ControllerError::Raft(e.to_string())),
            }
        }
        Ok(Arc::new(Member {
            id: me,
            raft,
            image,
            sessions: Mutex::new(Sessions::default()),
            lease: config.election_timeout,
            alone: voters.len() == 1,
        }))
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The applied image as it changes.
    pub(crate) fn image(&self) -> watch::Receiver<Arc<ClusterImage>> {
        self.image.clone()
    }

    /// The applied image now.
    pub(crate) fn current_image(&self) -> Arc<ClusterImage> {
        self.image.borrow().clone()
    }

    /// Whether this voter is the Raft leader.
    pub(crate) fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// `None` when this voter is a leader in contact with a majority, else
    /// the leader it knows of.
    pub(crate) fn not_serving(&self) -> Option<Option<u64>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader || m.current_leader != Some(self.id) {
            return Some(m.current_leader.filter(|l| *l != self.id));
        }
        let in_contact = self.alone
            || m.millis_since_quorum_ack
                .is_some_and(|ms| Duration::from_millis(ms) <= self.lease);
        if in_contact {
            None
        } else {
            // A leader that may be deposed: the caller asks another voter.
            Some(None)
        }
    }

    /// Proposes a command as the leader; answers after it is applied here.
    pub(crate) async fn write(
        &self,
        command: MetadataCommand,
    ) -> Result<Outcome<(u64, CommandResult)>, ControllerError> {
        if let Some(leader) = self.not_serving() {
            return Ok(Outcome::NotLeader(leader));
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, self.raft.client_write(command)).await {
            Err(_) => Err(ControllerError::Timeout {
                what: "commit of a metadata command".into(),
                after: COMMIT_TIMEOUT,
            }),
            Ok(Ok(response)) => Ok(Outcome::Done((response.log_id.index, response.data))),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Ok(Outcome::NotLeader(f.leader_id))
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ControllerError::Raft(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(fatal))) => Err(fatal_error(fatal)),
        }
    }

    /// A broker's heartbeat, as the leader.
    pub(crate) fn heartbeat(&self, broker: i32, epoch: i64) -> Outcome<Verdict> {
        if let Some(leader) = self.not_serving() {
            return Outcome::NotLeader(leader);
        }
        let image = self.current_image();
        let verdict = heartbeat_verdict(&image, broker, epoch);
        if verdict == Verdict::Alive {
            super::lock(&self.sessions).record(broker, epoch, Instant::now());
        }
        Outcome::Done(verdict)
    }

    /// Waits up to `max_wait` for an image newer than `since`, as the
    /// leader; answers the version and the image if newer.
    pub(crate) async fn watch(
        &self,
        since: u64,
        max_wait: Duration,
    ) -> Outcome<(u64, Option<Arc<ClusterImage>>)> {
        if let Some(leader) = self.not_serving() {
            return Outcome::NotLeader(leader);
        }
        let mut image = self.image();
        let waited = tokio::time::timeout(
            max_wait.min(MAX_WATCH_WAIT),
            image.wait_for(|i| i.version > since),
        )
        .await
        .map(|r| r.is_ok());
        if waited == Ok(false) {
            // The state machine is gone (Raft stopped): send the caller elsewhere.
            return Outcome::NotLeader(None);
        }
        let image = image.borrow().clone();
        let version = image.version;
        Outcome::Done((version, (version > since).then_some(image)))
    }

    /// Shuts Raft down.
    pub(crate) async fn stop(&self) {
        if let Err(error) = self.raft.shutdown().await {
            warn!(%error, "raft did not shut down cleanly");
        }
    }
}

/// openraft's configuration from the election timeout: elections time out
/// between it and twice it, and the leader heartbeats five times per timeout
/// (Kafka's `controller.quorum.election.timeout.ms` with openraft's ratios).
fn raft_config(election_timeout: Duration) -> Result<Arc<openraft::Config>, ControllerError> {
    let election = u64::try_from(election_timeout.as_millis()).unwrap_or(u64::MAX / 4);
    let config = openraft::Config {
        cluster_name: "runnel-controller".into(),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        heartbeat_interval: (election / 5).max(1),
        install_snapshot_timeout: election.max(1000) * 5,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
        snapshot_max_chunk_size: SNAPSHOT_CHUNK,
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| ControllerError::Config(e.to_string()))
}

fn fatal_error(fatal: Fatal<u64>) -> ControllerError {
    match fatal {
        Fatal::Stopped => ControllerError::Stopped,
        other => ControllerError::Raft(other.to_string()),
    }
}
