//! The broker side of calls to the quorum: which voter to ask, redirects,
//! retries and deadlines.
//!
//! A call goes to the leader last heard of, else to the voters in turn. A
//! voter that is not the leader names the leader it knows of, and the call
//! goes there at once; a voter that names none, or cannot be reached, sends
//! the call to the next voter after a short pause (doubling up to
//! [`MAX_PAUSE`]). A call to this broker's own voter skips gRPC.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use super::duties::Verdict;
use super::error::ControllerError;
use super::member::{Member, Outcome};
use super::network::{channel, MAX_MESSAGE};
use crate::cluster::{ClusterImage, CommandResult, MetadataCommand};
use crate::proto::controller::controller_client::ControllerClient;
use crate::proto::controller::{
    watch_reply, write_reply, HeartbeatRequest, HeartbeatStatus, NotLeader, WatchRequest,
    WriteRequest,
};

/// The first pause after a voter that could not help.
const FIRST_PAUSE: Duration = Duration::from_millis(20);

/// The longest pause between attempts: under a heartbeat interval, so an
/// elected leader is found quickly.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// A call to the quorum.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    /// Propose a command.
    Write(MetadataCommand),
    /// A broker's heartbeat.
    Heartbeat {
        /// The broker.
        id: i32,
        /// Its epoch.
        epoch: i64,
    },
    /// Wait for an image newer than `since`.
    Watch {
        /// The version the caller has.
        since: u64,
        /// How long the leader may wait.
        max_wait: Duration,
    },
}

/// The leader's answer.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A write's log index and result.
    Written(u64, CommandResult),
    /// A heartbeat's verdict.
    Heartbeat(Verdict),
    /// The leader's image if newer than asked.
    Image(Option<Arc<ClusterImage>>),
}

/// How one attempt went.
#[derive(Debug)]
enum Attempt {
    Answered(Answer),
    /// Not the leader; the leader it named, if any.
    NotLeader(Option<u64>),
    /// Could not be reached (or is not a voter).
    Unreachable(String),
    /// A definite failure, not worth another voter.
    Failed(ControllerError),
}

/// Calls to the quorum. Cheap to clone; clones share the leader hint and
/// connections.
#[derive(Clone)]
pub(crate) struct QuorumClient {
    shared: Arc<Shared>,
}

struct Shared {
    me: u64,
    voters: BTreeMap<u64, String>,
    ids: Vec<u64>,
    local: Option<Arc<Member>>,
    leader: Mutex<Option<u64>>,
    next: AtomicUsize,
    clients: Mutex<BTreeMap<u64, ControllerClient<Channel>>>,
}

impl QuorumClient {
    /// A client of `voters` for broker `me`; `local` is this broker's own
    /// voter, if it is one.
    pub(crate) fn new(me: u64, voters: BTreeMap<u64, String>, local: Option<Arc<Member>>) -> Self {
        let ids = voters.keys().copied().collect();
        QuorumClient {
            shared: Arc::new(Shared {
                me,
                voters,
                ids,
                local,
                leader: Mutex::new(None),
                next: AtomicUsize::new(0),
                clients: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Makes `call`, following redirects and retrying for up to `timeout`.
    pub(crate) async fn call(
        &self,
        call: &Call,
        timeout: Duration,
    ) -> Result<Answer, ControllerError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut pause = FIRST_PAUSE;
        let mut last_leader: Option<u64> = None;
        let mut last_error: Option<String> = None;
        let mut answered = false;
        loop {
            let target = self.pick();
            let attempt = match tokio::time::timeout_at(deadline, self.attempt(target, call)).await
            {
                Ok(attempt) => attempt,
                Err(_) => {
                    return Err(ControllerError::Timeout {
                        what: format!("{} sent to voter {target}", call.name()),
                        after: timeout,
                    })
                }
            };
            let wait = match attempt {
                Attempt::Answered(answer) => {
                    self.set_leader(Some(target));
                    return Ok(answer);
                }
                Attempt::Failed(error) => return Err(error),
                Attempt::NotLeader(Some(leader)) if leader != target => {
                    // Straight to the leader named.
                    answered = true;
                    self.set_leader(Some(leader));
                    last_leader = Some(leader);
                    false
                }
                Attempt::NotLeader(_) => {
                    answered = true;
                    self.forget_leader(target);
                    true
                }
                Attempt::Unreachable(error) => {
                    self.forget_leader(target);
                    last_error = Some(format!("voter {target}: {error}"));
                    true
                }
            };
            // Give up rather than start an attempt with no time left.
            let now = Instant::now();
            let resume = if wait { now + pause } else { now };
            if resume >= deadline {
                let after = now - started;
                return Err(if answered {
                    ControllerError::NotController {
                        after,
                        leader: last_leader.map(|l| self.describe(l)),
                    }
                } else {
                    ControllerError::Unavailable {
                        after,
                        last_error: last_error.unwrap_or_default(),
                    }
                });
            }
            if wait {
                tokio::time::sleep_until(resume).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }

    /// How many voters accept a TCP connection on their gRPC address within
    /// `wait` (this broker's own voter, when it is one, counts as up), and
    /// how many voters there are.
    pub(crate) async fn voters_accepting(&self, wait: Duration) -> (usize, usize) {
        let mut up = 0;
        for (id, address) in &self.shared.voters {
            let accepts = if *id == self.shared.me && self.shared.local.is_some() {
                true
            } else {
                let connect = tokio::net::TcpStream::connect(address.as_str());
                matches!(tokio::time::timeout(wait, connect).await, Ok(Ok(_)))
            };
            up += usize::from(accepts);
        }
        (up, self.shared.voters.len())
    }

    /// The voter to ask: the leader last heard of, else the next in turn.
    fn pick(&self) -> u64 {
        if let Some(leader) = *super::lock(&self.shared.leader) {
            return leader;
        }
        let ids = &self.shared.ids;
        let turn = self.shared.next.load(Ordering::Relaxed);
        ids[turn % ids.len()]
    }

    fn set_leader(&self, leader: Option<u64>) {
        let leader = leader.filter(|l| self.shared.voters.contains_key(l));
        *super::lock(&self.shared.leader) = leader;
    }

    /// `target` did not help: forget it as leader and move on to the next voter.
    fn forget_leader(&self, target: u64) {
        let mut leader = super::lock(&self.shared.leader);
        if *leader == Some(target) || leader.is_none() {
            *leader = None;
            let position = self
                .shared
                .ids
                .iter()
                .position(|id| *id == target)
                .unwrap_or(0);
            self.shared.next.store(position + 1, Ordering::Relaxed);
        }
    }

    fn describe(&self, id: u64) -> String {
        match self.shared.voters.get(&id) {
            Some(address) => format!("{id}@{address}"),
            None => id.to_string(),
        }
    }

    fn client(&self, target: u64) -> Result<ControllerClient<Channel>, String> {
        let mut clients = super::lock(&self.shared.clients);
        if let Some(client) = clients.get(&target) {
            return Ok(client.clone());
        }
        let address = self
            .shared
            .voters
            .get(&target)
            .ok_or_else(|| format!("{target} is not a voter"))?;
        let client =
            ControllerClient::new(channel(address).map_err(|e| format!("{address}: {e}"))?)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
        clients.insert(target, client.clone());
        Ok(client)
    }

    async fn attempt(&self, target: u64, call: &Call) -> Attempt {
        if target == self.shared.me {
            if let Some(member) = &self.shared.local {
                return local(member, call).await;
            }
        }
        let mut client = match self.client(target) {
            Ok(client) => client,
            Err(error) => return Attempt::Unreachable(error),
        };
        match call {
            Call::Write(command) => {
                let command = match serde_json::to_vec(command) {
                    Ok(json) => json,
                    Err(e) => return Attempt::Failed(ControllerError::Protocol(e.to_string())),
                };
                let reply = match client.write(WriteRequest { command }).await {
                    Ok(reply) => reply.into_inner(),
                    Err(status) => return unreachable(status),
                };
                match reply.outcome {
                    Some(write_reply::Outcome::Written(written)) => {
                        match serde_json::from_slice(&written.result) {
                            Ok(result) => Attempt::Answered(Answer::Written(written.index, result)),
                            Err(e) => Attempt::Failed(ControllerError::Protocol(format!(
                                "write result: {e}"
                            ))),
                        }
                    }
                    Some(write_reply::Outcome::NotLeader(not_leader)) => {
                        not_leader_hint(&not_leader)
                    }
                    None => Attempt::Failed(ControllerError::Protocol("empty write reply".into())),
                }
            }
            Call::Heartbeat { id, epoch } => {
                let request = HeartbeatRequest {
                    broker_id: *id,
                    broker_epoch: *epoch,
                };
                let reply = match client.heartbeat(request).await {
                    Ok(reply) => reply.into_inner(),
                    Err(status) => return unreachable(status),
                };
                let verdict = match reply.status() {
                    HeartbeatStatus::Alive => Verdict::Alive,
                    HeartbeatStatus::Reregister => Verdict::Reregister,
                    HeartbeatStatus::CatchingUp => Verdict::CatchingUp,
                    HeartbeatStatus::NotLeader => {
                        return match &reply.not_leader {
                            Some(not_leader) => not_leader_hint(not_leader),
                            None => Attempt::NotLeader(None),
                        }
                    }
                    HeartbeatStatus::Unspecified => {
                        return Attempt::Failed(ControllerError::Protocol(
                            "heartbeat reply without a status".into(),
                        ))
                    }
                };
                Attempt::Answered(Answer::Heartbeat(verdict))
            }
            Call::Watch { since, max_wait } => {
                let request = WatchRequest {
                    since_version: *since,
                    max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
                };
                let reply = match client.watch_metadata(request).await {
                    Ok(reply) => reply.into_inner(),
                    Err(status) => return unreachable(status),
                };
                match reply.outcome {
                    Some(watch_reply::Outcome::Image(image)) if image.json.is_empty() => {
                        Attempt::Answered(Answer::Image(None))
                    }
                    Some(watch_reply::Outcome::Image(image)) => {
                        match serde_json::from_slice::<ClusterImage>(&image.json) {
                            Ok(decoded) => {
                                Attempt::Answered(Answer::Image(Some(Arc::new(decoded))))
                            }
                            Err(e) => Attempt::Failed(ControllerError::Protocol(format!(
                                "metadata image: {e}"
                            ))),
                        }
                    }
                    Some(watch_reply::Outcome::NotLeader(not_leader)) => {
                        not_leader_hint(&not_leader)
                    }
                    None => Attempt::Failed(ControllerError::Protocol("empty watch reply".into())),
                }
            }
        }
    }
}

impl Call {
    fn name(&self) -> &'static str {
        match self {
            Call::Write(_) => "metadata write",
            Call::Heartbeat { .. } => "heartbeat",
            Call::Watch { .. } => "metadata watch",
        }
    }
}

/// A call to this broker's own voter.
async fn local(member: &Member, call: &Call) -> Attempt {
    let outcome = match call {
        Call::Write(command) => match member.write(command.clone()).await {
            Ok(outcome) => outcome_map(outcome, |(index, result)| Answer::Written(index, result)),
            Err(ControllerError::Stopped) => {
                return Attempt::Unreachable("this voter is stopped".into())
            }
            Err(error) => return Attempt::Failed(error),
        },
        Call::Heartbeat { id, epoch } => {
            outcome_map(member.heartbeat(*id, *epoch), Answer::Heartbeat)
        }
        Call::Watch { since, max_wait } => {
            outcome_map(member.watch(*since, *max_wait).await, |(_, image)| {
                Answer::Image(image)
            })
        }
    };
    match outcome {
        Outcome::Done(answer) => Attempt::Answered(answer),
        Outcome::NotLeader(leader) => Attempt::NotLeader(leader),
    }
}

fn outcome_map<T>(outcome: Outcome<T>, f: impl FnOnce(T) -> Answer) -> Outcome<Answer> {
    match outcome {
        Outcome::Done(value) => Outcome::Done(f(value)),
        Outcome::NotLeader(leader) => Outcome::NotLeader(leader),
    }
}

fn not_leader_hint(not_leader: &NotLeader) -> Attempt {
    Attempt::NotLeader(not_leader.leader_id.and_then(|id| u64::try_from(id).ok()))
}

/// A gRPC error. `DEADLINE_EXCEEDED` is a leader that took the call but
/// could not finish it in time: not worth sending elsewhere (a write may
/// still be applied). Otherwise the voter is unreachable, stopped, not a
/// voter, or failed, and another voter may help.
fn unreachable(status: tonic::Status) -> Attempt {
    if status.code() == tonic::Code::DeadlineExceeded {
        return Attempt::Failed(ControllerError::Timeout {
            what: status.message().to_string(),
            after: super::WRITE_TIMEOUT,
        });
    }
    Attempt::Unreachable(format!("{}: {}", status.code(), status.message()))
}
