//! The gRPC services of `proto/controller.proto`: `Raft` hands openraft's
//! RPCs to the local Raft node; `Controller` answers brokers as the leader.
//! On a broker that is not a voter both answer `FAILED_PRECONDITION`; once
//! the controller is stopped, `UNAVAILABLE`.

use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::duties::Verdict;
use super::member::{Member, Outcome};
use super::network::MAX_MESSAGE;
use super::TypeConfig;
use crate::cluster::MetadataCommand;
use crate::proto::controller::controller_server::{Controller, ControllerServer};
use crate::proto::controller::raft_server::{Raft, RaftServer};
use crate::proto::controller::{
    watch_reply, write_reply, HeartbeatReply, HeartbeatRequest, HeartbeatStatus, Image, NotLeader,
    RaftMessage, SnapshotChunk, WatchReply, WatchRequest, WriteReply, WriteRequest, Written,
};

/// Both services, sized for large metadata messages.
pub(crate) fn services(
    member: Option<Arc<Member>>,
    stop: CancellationToken,
) -> (RaftServer<RaftService>, ControllerServer<ControllerService>) {
    let target = Target { member, stop };
    (
        RaftServer::new(RaftService {
            target: target.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE),
        ControllerServer::new(ControllerService { target })
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}

/// The voter the services answer for.
#[derive(Clone)]
struct Target {
    member: Option<Arc<Member>>,
    stop: CancellationToken,
}

impl Target {
    fn member(&self) -> Result<&Arc<Member>, Status> {
        if self.stop.is_cancelled() {
            return Err(Status::unavailable("the controller is stopped"));
        }
        self.member
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this broker is not a controller voter"))
    }
}

/// The `Raft` service.
#[derive(Clone)]
pub(crate) struct RaftService {
    target: Target,
}

fn decode<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(json).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

fn reply<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    serde_json::to_vec(result)
        .map(|json| Response::new(RaftMessage { json }))
        .map_err(|e| Status::internal(format!("encode a raft reply: {e}")))
}

#[tonic::async_trait]
impl Raft for RaftService {
    #[instrument(level = "trace", skip_all)]
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let member = self.target.member()?;
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&request.get_ref().json, "append entries")?;
        reply(&member.raft().append_entries(rpc).await)
    }

    #[instrument(level = "debug", skip_all)]
    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let member = self.target.member()?;
        let rpc: VoteRequest<u64> = decode(&request.get_ref().json, "vote")?;
        reply(&member.raft().vote(rpc).await)
    }

    #[instrument(level = "debug", skip_all, fields(offset = request.get_ref().offset))]
    async fn install_snapshot(
        &self,
        request: Request<SnapshotChunk>,
    ) -> Result<Response<RaftMessage>, Status> {
        let member = self.target.member()?;
        let chunk = request.into_inner();
        let rpc = InstallSnapshotRequest::<TypeConfig> {
            vote: decode(&chunk.vote, "snapshot vote")?,
            meta: decode(&chunk.meta, "snapshot meta")?,
            offset: chunk.offset,
            data: chunk.data,
            done: chunk.done,
        };
        reply(&member.raft().install_snapshot(rpc).await)
    }
}

/// The `Controller` service.
#[derive(Clone)]
pub(crate) struct ControllerService {
    target: Target,
}

fn not_leader(leader: Option<u64>) -> NotLeader {
    NotLeader {
        leader_id: leader.and_then(|l| i32::try_from(l).ok()),
        leader_address: String::new(),
    }
}

impl ControllerService {
    /// Fills in the leader's address from the membership.
    fn not_leader(&self, member: &Member, leader: Option<u64>) -> NotLeader {
        let mut answer = not_leader(leader);
        if let Some(id) = leader {
            let metrics = member.raft().metrics();
            let membership = metrics.borrow().membership_config.clone();
            if let Some(node) = membership.membership().get_node(&id) {
                answer.leader_address = node.addr.clone();
            }
        }
        answer
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    #[instrument(skip_all)]
    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        let member = self.target.member()?;
        let command: MetadataCommand = decode(&request.get_ref().command, "metadata command")?;
        let outcome = match member.write(command).await {
            Ok(Outcome::Done((index, result))) => {
                let result = serde_json::to_vec(&result)
                    .map_err(|e| Status::internal(format!("encode a command result: {e}")))?;
                write_reply::Outcome::Written(Written { index, result })
            }
            Ok(Outcome::NotLeader(leader)) => {
                write_reply::Outcome::NotLeader(self.not_leader(member, leader))
            }
            Err(super::ControllerError::Stopped) => {
                return Err(Status::unavailable("the controller is stopped"))
            }
            Err(error @ super::ControllerError::Timeout { .. }) => {
                return Err(Status::deadline_exceeded(error.to_string()))
            }
            Err(error) => return Err(Status::internal(error.to_string())),
        };
        Ok(Response::new(WriteReply {
            outcome: Some(outcome),
        }))
    }

    #[instrument(skip_all, fields(broker = request.get_ref().broker_id, epoch = request.get_ref().broker_epoch))]
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let member = self.target.member()?;
        let request = request.into_inner();
        let reply = match member.heartbeat(request.broker_id, request.broker_epoch) {
            Outcome::Done(verdict) => HeartbeatReply {
                status: match verdict {
                    Verdict::Alive => HeartbeatStatus::Alive,
                    Verdict::Reregister => HeartbeatStatus::Reregister,
                    Verdict::CatchingUp => HeartbeatStatus::CatchingUp,
                } as i32,
                not_leader: None,
            },
            Outcome::NotLeader(leader) => HeartbeatReply {
                status: HeartbeatStatus::NotLeader as i32,
                not_leader: Some(self.not_leader(member, leader)),
            },
        };
        Ok(Response::new(reply))
    }

    #[instrument(skip_all, fields(since = request.get_ref().since_version))]
    async fn watch_metadata(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<WatchReply>, Status> {
        let member = self.target.member()?;
        let request = request.into_inner();
        let max_wait = Duration::from_millis(u64::from(request.max_wait_ms));
        let outcome = match member.watch(request.since_version, max_wait).await {
            Outcome::Done((version, image)) => {
                let json = match image {
                    Some(image) => serde_json::to_vec(image.as_ref())
                        .map_err(|e| Status::internal(format!("encode the image: {e}")))?,
                    None => Vec::new(),
                };
                watch_reply::Outcome::Image(Image { version, json })
            }
            Outcome::NotLeader(leader) => {
                watch_reply::Outcome::NotLeader(self.not_leader(member, leader))
            }
        };
        Ok(Response::new(WatchReply {
            outcome: Some(outcome),
        }))
    }
}
