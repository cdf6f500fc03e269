//! The one registry of Kafka APIs this broker serves.
//!
//! Each API lives in `handlers/<api>.rs` and declares the versions it serves
//! there; [`SUPPORTED`] lists them, ApiVersions is computed from it, and
//! [`dispatch`] routes by it, so the versions advertised are the versions
//! served.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, VersionRange};
use kafka_protocol::ResponseError;
use tracing::{debug, warn, Instrument};

use crate::acl::{Operation, ResourceType, Session};
use crate::broker::Broker;
use crate::outgoing::Outgoing;
use crate::quotas;

mod acls;
mod api_versions;
mod authorize;
mod client_quotas;
mod configs;
mod consumer_group;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_groups;
mod describe_log_dirs;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod reassignments;
mod scram_credentials;
mod sync_group;
mod txn;

#[cfg(test)]
mod tests;

/// SaslHandshake v0 (the tokens follow without Kafka framing) and v1
/// (SaslAuthenticate carries them). Only a SASL_PLAINTEXT connection before
/// it authenticated uses it (`crate::sasl`); elsewhere it is
/// ILLEGAL_SASL_STATE, as in Kafka.
const SASL_HANDSHAKE_VERSIONS: VersionRange = VersionRange { min: 0, max: 1 };
/// v1 adds the session lifetime; v2 is flexible.
const SASL_AUTHENTICATE_VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Every API served, with the versions served.
pub(crate) const SUPPORTED: &[(ApiKey, VersionRange)] = &[
    (ApiKey::Produce, produce::VERSIONS),
    (ApiKey::Fetch, fetch::VERSIONS),
    (ApiKey::ListOffsets, list_offsets::VERSIONS),
    (ApiKey::Metadata, metadata::VERSIONS),
    (ApiKey::ApiVersions, api_versions::VERSIONS),
    (ApiKey::CreateTopics, create_topics::VERSIONS),
    (ApiKey::DeleteTopics, delete_topics::VERSIONS),
    (ApiKey::DescribeConfigs, configs::DESCRIBE_VERSIONS),
    (ApiKey::CreatePartitions, create_partitions::VERSIONS),
    (ApiKey::IncrementalAlterConfigs, configs::ALTER_VERSIONS),
    (ApiKey::AlterConfigs, configs::LEGACY_ALTER_VERSIONS),
    (ApiKey::DescribeCluster, describe_cluster::VERSIONS),
    (ApiKey::ElectLeaders, elect_leaders::VERSIONS),
    (ApiKey::DescribeLogDirs, describe_log_dirs::VERSIONS),
    (ApiKey::DescribeClientQuotas, client_quotas::VERSIONS),
    (ApiKey::AlterClientQuotas, client_quotas::VERSIONS),
    (ApiKey::SaslHandshake, SASL_HANDSHAKE_VERSIONS),
    (ApiKey::SaslAuthenticate, SASL_AUTHENTICATE_VERSIONS),
    (
        ApiKey::DescribeUserScramCredentials,
        scram_credentials::VERSIONS,
    ),
    (
        ApiKey::AlterUserScramCredentials,
        scram_credentials::VERSIONS,
    ),
    (ApiKey::FindCoordinator, find_coordinator::VERSIONS),
    (ApiKey::JoinGroup, join_group::VERSIONS),
    (ApiKey::SyncGroup, sync_group::VERSIONS),
    (ApiKey::Heartbeat, heartbeat::VERSIONS),
    (ApiKey::LeaveGroup, leave_group::VERSIONS),
    (ApiKey::OffsetCommit, offset_commit::VERSIONS),
    (ApiKey::OffsetFetch, offset_fetch::VERSIONS),
    (ApiKey::ListGroups, list_groups::VERSIONS),
    (
        ApiKey::ConsumerGroupHeartbeat,
        consumer_group::HEARTBEAT_VERSIONS,
    ),
    (
        ApiKey::ConsumerGroupDescribe,
        consumer_group::DESCRIBE_VERSIONS,
    ),
    (ApiKey::DescribeGroups, describe_groups::VERSIONS),
    (ApiKey::DeleteGroups, delete_groups::VERSIONS),
    (ApiKey::OffsetDelete, offset_delete::VERSIONS),
    (ApiKey::DeleteRecords, delete_records::VERSIONS),
    (ApiKey::InitProducerId, init_producer_id::VERSIONS),
    (ApiKey::AddPartitionsToTxn, txn::ADD_PARTITIONS_VERSIONS),
    (ApiKey::AddOffsetsToTxn, txn::ADD_OFFSETS_VERSIONS),
    (ApiKey::EndTxn, txn::END_TXN_VERSIONS),
    (ApiKey::TxnOffsetCommit, txn::TXN_OFFSET_COMMIT_VERSIONS),
    (ApiKey::DescribeTransactions, txn::DESCRIBE_VERSIONS),
    (ApiKey::ListTransactions, txn::LIST_VERSIONS),
    (ApiKey::DescribeProducers, txn::DESCRIBE_PRODUCERS_VERSIONS),
    (ApiKey::WriteTxnMarkers, txn::WRITE_MARKERS_VERSIONS),
    (ApiKey::DescribeAcls, acls::VERSIONS),
    (ApiKey::CreateAcls, acls::VERSIONS),
    (ApiKey::DeleteAcls, acls::VERSIONS),
    (
        ApiKey::OffsetForLeaderEpoch,
        offset_for_leader_epoch::VERSIONS,
    ),
    (
        ApiKey::AlterPartitionReassignments,
        reassignments::ALTER_VERSIONS,
    ),
    (
        ApiKey::ListPartitionReassignments,
        reassignments::LIST_VERSIONS,
    ),
];

/// What a handler may need to know about the request beyond its body.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The request's API.
    pub(crate) api: ApiKey,
    /// The request's API version.
    pub(crate) version: i16,
    /// The client's id from the request header.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Who the client authenticated as, for ACLs.
    pub(crate) session: Arc<Session>,
}

impl RequestContext {
    /// Whether the client may do `operation` to the named resource.
    pub(crate) fn allowed(
        &self,
        broker: &Broker,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        let allowed =
            broker
                .authorizer
                .allows(&broker.image(), &self.session, operation, resource, name);
        if !allowed {
            authorize::denied(
                &broker.metrics,
                &self.session,
                self.api,
                operation,
                resource,
                name,
            );
        }
        allowed
    }
}

fn served_versions(key: ApiKey) -> Option<VersionRange> {
    SUPPORTED.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// An encoded response still to come: `Ok(None)` means no response (acks=0),
/// `Err` closes the connection.
pub(crate) type Answer = Pin<Box<dyn Future<Output = Result<Option<Outgoing>, String>> + Send>>;

/// What running a request's handler gave.
pub(crate) enum Step {
    /// The response (or none).
    Done(Option<Outgoing>),
    /// The request is applied (a produce's batches are appended) and the
    /// connection may run its next request; the response comes from this
    /// future (a produce waiting for its in-sync replicas).
    Later(Answer),
    /// This step, after which the connection runs nothing for the given
    /// time: a client over its quota (KIP-219's muted channel).
    Held(Box<Step>, Duration),
}

/// What to do with one frame.
pub(crate) enum Dispatch {
    /// Run this, in request order; `Err` closes the connection.
    Respond(Pin<Box<dyn Future<Output = Result<Step, String>> + Send>>),
    /// Close the connection, for this reason.
    Close(String),
}

/// Routes one request frame.
pub(crate) fn dispatch(
    broker: &Arc<Broker>,
    frame: BytesMut,
    peer: SocketAddr,
    session: &Arc<Session>,
) -> Dispatch {
    if frame.len() < 8 {
        return Dispatch::Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let Ok(key) = ApiKey::try_from(raw_key) else {
        return Dispatch::Close(format!("unknown api key {raw_key}"));
    };
    let Some(served) = served_versions(key) else {
        return Dispatch::Close(format!("api {key:?} is not supported"));
    };
    if version < served.min || version > served.max {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer in the v0 format with the ranges, so the client can pick.
            let response = api_versions::unsupported_version();
            return Dispatch::Respond(Box::pin(async move {
                encode_response(key, 0, correlation_id, ResponseKind::ApiVersions(response))
                    .map(|b| Step::Done(Some(b.into())))
            }));
        }
        return Dispatch::Close(format!(
            "api {key:?} version {version} is outside the served range {}..={}",
            served.min, served.max
        ));
    }
    if version < key.valid_versions().min {
        return Dispatch::Close(format!(
            "api {key:?} version {version} predates record batch v2 (message format v0/v1), which is not supported"
        ));
    }
    let header_version = key.request_header_version(version);
    // Decoded in place: record batches in the request stay slices of the frame.
    let mut body = frame.freeze();
    let header = match RequestHeader::decode(&mut body, header_version) {
        Ok(h) => h,
        Err(e) => {
            return Dispatch::Close(format!("malformed {key:?} v{version} request header: {e}"))
        }
    };
    let request = match RequestKind::decode(key, &mut body, version) {
        Ok(r) => r,
        Err(e) => return Dispatch::Close(format!("malformed {key:?} v{version} request: {e}")),
    };
    if body.has_remaining() {
        debug!(api = ?key, version, extra = body.remaining(), "request has trailing bytes");
    }
    let broker = broker.clone();
    let client_id = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    let span =
        tracing::debug_span!("request", api = ?key, version, correlation_id, %client_id, %peer);
    let gate = authorize::Gate::new(&broker, session, key);
    if let RequestKind::Produce(mut request) = request {
        // The whole request counts against a quota, refused topics too.
        let bytes: usize = request
            .topic_data
            .iter()
            .flat_map(|t| t.partition_data.iter())
            .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
            .sum();
        let refused = gate.as_ref().and_then(|gate| {
            authorize::produce(gate, broker.topics.auto_create_enabled(), &mut request)
        });
        let session = session.clone();
        // Appended now, in order; acknowledged when the ISR has the records.
        return Dispatch::Respond(Box::pin(
            async move {
                let started = Instant::now();
                let staged = produce::stage(&broker, version, request).await;
                let (throttle, _) = broker.quotas.record(
                    &broker.image(),
                    quotas::Kind::Produce,
                    quota_user(&session),
                    &client_id,
                    bytes,
                );
                let holder = broker.clone();
                let answer: Answer = Box::pin(async move {
                    let response = produce::complete(staged).await;
                    broker.metrics.observe_request(key, started.elapsed());
                    match response {
                        Some(mut r) => {
                            if let Some(refused) = refused {
                                refused(&mut r);
                            }
                            r.throttle_time_ms = throttle_ms(throttle);
                            encode_response(key, version, correlation_id, ResponseKind::Produce(r))
                                .map(|b| Some(b.into()))
                        }
                        None => Ok(None),
                    }
                });
                Ok(held(&holder, key, Step::Later(answer), throttle))
            }
            .instrument(span),
        ));
    }
    if let RequestKind::Fetch(mut request) = request {
        let refused = gate
            .as_ref()
            .and_then(|gate| authorize::fetch(gate, version, &mut request));
        let session = session.clone();
        // Records go from the segment files to the socket (sendfile).
        return Dispatch::Respond(Box::pin(
            async move {
                let started = Instant::now();
                let image = broker.image();
                let user = quota_user(&session);
                // Under a consumer quota a fetch returns at most what the
                // quota allows over its window, as in Kafka.
                if let Some(cap) = broker.quotas.fetch_cap(&image, user, &client_id) {
                    request.max_bytes = if request.max_bytes > 0 {
                        request.max_bytes.min(cap)
                    } else {
                        cap
                    };
                }
                let mut answer = fetch::handle(&broker, version, request).await;
                if let Some(refused) = refused {
                    refused(&mut answer.response);
                }
                broker.metrics.observe_request(key, started.elapsed());
                let bytes: u64 = answer
                    .records
                    .iter()
                    .flatten()
                    .flatten()
                    .map(|s| s.len)
                    .sum();
                let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
                let (throttle, tags) =
                    broker
                        .quotas
                        .record(&image, quotas::Kind::Fetch, user, &client_id, bytes);
                if !throttle.is_zero() {
                    // Over the quota: no records this time (they are read
                    // again after the back-off), and they do not count.
                    broker.quotas.unrecord(quotas::Kind::Fetch, &tags, bytes);
                    answer.records.clear();
                }
                answer.response.throttle_time_ms = throttle_ms(throttle);
                fetch::encode(version, correlation_id, answer)
                    .map(|o| held(&broker, key, Step::Done(Some(o)), throttle))
            }
            .instrument(span),
        ));
    }
    let gated = match &gate {
        None => authorize::Gated::Pass(request, None),
        Some(gate) => authorize::request(&broker, gate, version, request),
    };
    let (request, patch) = match gated {
        authorize::Gated::Pass(request, patch) => (request, patch),
        authorize::Gated::Refuse(response) => {
            return Dispatch::Respond(Box::pin(async move {
                encode_response(key, version, correlation_id, response)
                    .map(|b| Step::Done(Some(b.into())))
            }));
        }
        authorize::Gated::Close(why) => return Dispatch::Close(why),
    };
    let session = session.clone();
    Dispatch::Respond(Box::pin(
        async move {
            let started = Instant::now();
            let ctx = RequestContext {
                api: key,
                version,
                client_id,
                peer,
                session,
            };
            let mut response = handle(&broker, &ctx, request).await;
            if let (Some(response), Some(patch)) = (response.as_mut(), patch) {
                patch(response);
            }
            broker.metrics.observe_request(key, started.elapsed());
            match response {
                Some(response) => {
                    let throttle = admin_throttle(&response);
                    encode_response(key, version, correlation_id, response)
                        .map(|b| held(&broker, key, Step::Done(Some(b.into())), throttle))
                }
                None => Ok(Step::Done(None)),
            }
        }
        .instrument(span),
    ))
}

async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: RequestKind,
) -> Option<ResponseKind> {
    let v = ctx.version;
    Some(match request {
        RequestKind::ApiVersions(r) => {
            ResponseKind::ApiVersions(api_versions::handle(r, broker.image().version))
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, v, r).await),
        RequestKind::Produce(r) => ResponseKind::Produce(produce::handle(broker, v, r).await?),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, v, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, ctx, r).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, ctx, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(broker, v, r))
        }
        RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(broker, r).await),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, v, r))
        }
        RequestKind::SaslHandshake(_) => ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default().with_error_code(ResponseError::IllegalSaslState.code()),
        ),
        RequestKind::SaslAuthenticate(_) => ResponseKind::SaslAuthenticate(
            SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "this connection is not authenticating (authenticated already, or a PLAINTEXT listener)",
                ))),
        ),
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(client_quotas::describe(broker, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(client_quotas::alter(broker, r).await)
        }
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            scram_credentials::alter(broker, r).await,
        ),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(broker, r))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, v, r).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, v, r).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(join_group::handle(broker, ctx, r).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(sync_group::handle(broker, v, r).await)
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(leave_group::handle(broker, v, r)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, v, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, v, r))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(broker, v, r)),
        RequestKind::ConsumerGroupHeartbeat(r) => ResponseKind::ConsumerGroupHeartbeat(
            consumer_group::handle_heartbeat(broker, ctx, r).await,
        ),
        RequestKind::ConsumerGroupDescribe(r) => ResponseKind::ConsumerGroupDescribe(
            consumer_group::handle_describe(broker, v, r),
        ),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, v, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, r))
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, r))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(offset_for_leader_epoch::handle(broker, r))
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(broker, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(broker, r))
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, v, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(broker, v, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(broker, v, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(broker, v, r).await),
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(broker, v, r).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe(broker, r))
        }
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list(broker, v, r)),
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(txn::describe_producers(broker, r))
        }
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(broker, ctx, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(broker, ctx, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(broker, ctx, r).await),
        RequestKind::WriteTxnMarkers(r) => {
            ResponseKind::WriteTxnMarkers(txn::write_txn_markers(broker, r).await)
        }
        other => {
            // dispatch() only lets through the APIs in SUPPORTED, all matched above.
            warn!(request = ?std::mem::discriminant(&other), "request routed without a handler");
            return None;
        }
    })
}

/// Whose traffic a session's is, for client quotas: its principal's name.
fn quota_user(session: &Session) -> &str {
    session
        .principal
        .split_once(':')
        .map_or(session.principal.as_str(), |(_, name)| name)
}

/// KIP-599: takes `mutations` partition creations or deletions from the
/// client's controller mutation quota; refused (`strict`, new clients only)
/// while the quota is in debt.
pub(crate) fn take_mutations(
    broker: &Broker,
    ctx: &RequestContext,
    mutations: usize,
    strict: bool,
) -> Result<(), crate::error::BrokerError> {
    broker
        .quotas
        .take_mutations(
            &broker.image(),
            quota_user(&ctx.session),
            &ctx.client_id,
            mutations,
            strict,
        )
        .map_err(|wait| {
            crate::error::BrokerError::ThrottlingQuotaExceeded(format!(
                "the controller mutation quota (controller_mutation_rate) is used up; it allows more in {} ms",
                wait.as_millis()
            ))
        })
}

/// The `throttle_time_ms` of an admin response for the client's controller
/// mutations.
pub(crate) fn mutation_throttle_ms(broker: &Broker, ctx: &RequestContext) -> i32 {
    throttle_ms(broker.quotas.mutation_throttle(
        &broker.image(),
        quota_user(&ctx.session),
        &ctx.client_id,
    ))
}

/// How long a response holds its connection back for a quota, from its
/// `throttle_time_ms` (the controller mutation quota's admin requests).
fn admin_throttle(response: &ResponseKind) -> Duration {
    let ms = match response {
        ResponseKind::CreateTopics(r) => r.throttle_time_ms,
        ResponseKind::CreatePartitions(r) => r.throttle_time_ms,
        ResponseKind::DeleteTopics(r) => r.throttle_time_ms,
        _ => 0,
    };
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A throttle time as a response's `throttle_time_ms`.
fn throttle_ms(throttle: Duration) -> i32 {
    i32::try_from(throttle.as_millis()).unwrap_or(i32::MAX)
}

/// `step`, holding the connection for a quota's throttle time afterwards.
fn held(broker: &Broker, key: ApiKey, step: Step, throttle: Duration) -> Step {
    if throttle.is_zero() {
        return step;
    }
    broker.metrics.throttled(key, throttle);
    Step::Held(Box::new(step), throttle)
}

pub(crate) fn encode_response(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseKind,
) -> Result<Bytes, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&[0; 4]);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, key.response_header_version(version))
        .and_then(|()| response.encode(&mut buf, version));
    if let Err(error) = encoded {
        return Err(format!(
            "encoding {key:?} v{version} response failed: {error}"
        ));
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}
