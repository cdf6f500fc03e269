//! openraft's RPCs to the other voters, over the `Raft` gRPC service. The
//! messages are openraft's own types in JSON; a reply is the JSON of the
//! remote `Result`, so a remote Raft error comes back as itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::TypeConfig;
use crate::proto::controller::raft_client::RaftClient;
use crate::proto::controller::{RaftMessage, SnapshotChunk};

/// How long connecting to a voter may take before it counts as unreachable:
/// well under an election timeout, so callers move on to another voter.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// HTTP/2 pings on idle connections, so a peer that vanished (a cut network
/// rather than a closed socket) is noticed within a few seconds.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long an HTTP/2 ping may go unanswered.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest gRPC message between controllers: images and snapshot chunks
/// of large clusters run to megabytes.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

/// A lazily connecting channel to a voter's gRPC listener at `address`
/// (`HOST:PORT`).
/// Over TLS when the process has inter-broker TLS.
pub(crate) fn channel(address: &str) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(match crate::tls::inter_broker() {
        Some(tls) => endpoint.connect_with_connector_lazy(crate::tls::rpc_connector(tls)),
        None => endpoint.connect_lazy(),
    })
}

/// Makes a [`Peer`] per voter. Addresses come from the configured voters
/// first (so a changed address in `--controller-voters` wins over the one in
/// the log's membership), else from the membership.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    me: u64,
    addresses: Arc<BTreeMap<u64, String>>,
}

impl Network {
    pub(crate) fn new(me: u64, addresses: BTreeMap<u64, String>) -> Self {
        Network {
            me,
            addresses: Arc::new(addresses),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        let address = self
            .addresses
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        let client = channel(&address).map(|c| {
            RaftClient::new(c)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE)
        });
        Peer {
            me: self.me,
            target,
            address,
            client: client.map_err(|e| e.to_string()),
        }
    }
}

/// openraft's connection to one voter.
#[derive(Debug)]
pub(crate) struct Peer {
    me: u64,
    target: u64,
    address: String,
    /// The client, or why the address is unusable.
    client: Result<RaftClient<Channel>, String>,
}

/// An error without a source, for openraft's error wrappers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl Peer {
    /// Sends one RPC and decodes the remote result.
    async fn call<Resp, E>(
        &mut self,
        action: RPCTypes,
        option: &RPCOption,
        send: impl AsyncFnOnce(
            RaftClient<Channel>,
        ) -> Result<tonic::Response<RaftMessage>, tonic::Status>,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::new(&Message(format!(
                    "voter {} at {:?}: {reason}",
                    self.target, self.address
                )))))
            }
        };
        let timeout = option.hard_ttl();
        let reply = match tokio::time::timeout(timeout, send(client)).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.me,
                    target: self.target,
                    timeout,
                }))
            }
            Ok(Err(status)) => {
                let error = Message(format!(
                    "voter {} at {}: {}: {}",
                    self.target,
                    self.address,
                    status.code(),
                    status.message()
                ));
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::FailedPrecondition => {
                        RPCError::Unreachable(Unreachable::new(&error))
                    }
                    _ => RPCError::Network(NetworkError::new(&error)),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<u64, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Message> {
    serde_json::to_vec(value).map_err(|e| Message(format!("encode: {e}")))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let json = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let timeout = option.hard_ttl();
        self.call(RPCTypes::AppendEntries, &option, async move |mut client| {
            let mut request = tonic::Request::new(RaftMessage { json });
            request.set_timeout(timeout);
            client.append_entries(request).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let vote = encode(&rpc.vote).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let meta = encode(&rpc.meta).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let chunk = SnapshotChunk {
            vote,
            meta,
            offset: rpc.offset,
            data: rpc.data,
            done: rpc.done,
        };
        let timeout = option.hard_ttl();
        self.call(
            RPCTypes::InstallSnapshot,
            &option,
            async move |mut client| {
                let mut request = tonic::Request::new(chunk);
                request.set_timeout(timeout);
                client.install_snapshot(request).await
            },
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        let json = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let timeout = option.hard_ttl();
        self.call(RPCTypes::Vote, &option, async move |mut client| {
            let mut request = tonic::Request::new(RaftMessage { json });
            request.set_timeout(timeout);
            client.vote(request).await
        })
        .await
    }
}
