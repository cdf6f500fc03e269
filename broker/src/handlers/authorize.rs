//! Each request checked against the ACLs (see [`crate::acl`]) before its
//! handler runs, with the rules Kafka's `KafkaApis` applies:
//!
//! | API | needs |
//! |---|---|
//! | Produce | Write on each topic; Write on the transactional id |
//! | Fetch, DescribeProducers | Read on each topic |
//! | Metadata, ListOffsets, OffsetForLeaderEpoch | Describe on each topic (Create too, to auto-create) |
//! | CreateTopics | Create on the cluster or the topic |
//! | DeleteTopics, DeleteRecords | Delete on the topic |
//! | CreatePartitions | Alter on the topic |
//! | DescribeConfigs, AlterConfigs | DescribeConfigs, AlterConfigs on the topic or the cluster |
//! | Join/Sync/Heartbeat/LeaveGroup, ConsumerGroupHeartbeat | Read on the group |
//! | OffsetCommit, TxnOffsetCommit | Read on the group and each topic |
//! | OffsetFetch | Describe on the group and each topic |
//! | DescribeGroups, ConsumerGroupDescribe, FindCoordinator | Describe on the group (or transactional id) |
//! | ListGroups, ListTransactions | Describe on the cluster, else only the groups (ids) described |
//! | DeleteGroups, OffsetDelete | Delete on the group (and Read on the topics) |
//! | InitProducerId | Write on the transactional id; else IdempotentWrite on the cluster or Write on a topic (KIP-679) |
//! | AddPartitionsToTxn, AddOffsetsToTxn, EndTxn | Write on the transactional id (and the topics; Read on the group) |
//! | DescribeTransactions | Describe on the transactional id |
//! | WriteTxnMarkers | ClusterAction on the cluster |
//! | cluster admin (DescribeLogDirs, reassignments, elections, SCRAM) | Describe or Alter on the cluster |
//! | DescribeClientQuotas, AlterClientQuotas | DescribeConfigs, AlterConfigs on the cluster |
//! | DescribeCluster | nothing (its operations only with Describe on the cluster) |
//! | CreateAcls, DescribeAcls, DeleteAcls | checked in `acls` |
//!
//! A request is either refused whole (its error response is built here) or
//! passed on without the items the principal may not touch, and a patch puts
//! those back into the response with their authorization errors. Without an
//! authorizer nothing is looked at.

use std::sync::Arc;

use kafka_protocol::messages::{
    add_partitions_to_txn_response as add_partitions,
    consumer_group_describe_response as cg_describe,
    create_partitions_response as create_partitions, create_topics_response as create_topics,
    delete_groups_response as delete_groups, delete_records_response as delete_records,
    delete_topics_response as delete_topics, describe_configs_response as describe_configs,
    describe_groups_response as describe_groups, describe_producers_response as describe_producers,
    describe_transactions_response as describe_txns, elect_leaders_response as elect_leaders,
    fetch_response, find_coordinator_response as find_coordinator,
    incremental_alter_configs_response as incremental_alter, list_offsets_response as list_offsets,
    metadata_response, offset_commit_response as offset_commit,
    offset_delete_response as offset_delete, offset_for_leader_epoch_response as epochs,
    produce_response, txn_offset_commit_response as txn_offset_commit,
    write_txn_markers_response as markers, AddOffsetsToTxnResponse, AddPartitionsToTxnResponse,
    AlterPartitionReassignmentsResponse, AlterUserScramCredentialsResponse,
    ConsumerGroupHeartbeatResponse, DescribeClientQuotasResponse, DescribeLogDirsResponse,
    DescribeUserScramCredentialsResponse, ElectLeadersResponse, EndTxnResponse, FetchRequest,
    FetchResponse, FindCoordinatorResponse, HeartbeatResponse, InitProducerIdResponse,
    JoinGroupResponse, LeaveGroupResponse, ListPartitionReassignmentsResponse,
    OffsetCommitResponse, OffsetDeleteResponse, ProduceRequest, ProduceResponse, RequestKind,
    ResponseKind, SyncGroupResponse, TxnOffsetCommitResponse, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use kafka_protocol::messages::ApiKey;

use crate::acl::{Authorizer, Operation, ResourceType, Session, CLUSTER_NAME};
use crate::broker::Broker;
use crate::cluster::ClusterImage;

const TOPIC: ResponseError = ResponseError::TopicAuthorizationFailed;
const GROUP: ResponseError = ResponseError::GroupAuthorizationFailed;
const CLUSTER: ResponseError = ResponseError::ClusterAuthorizationFailed;
const TXN: ResponseError = ResponseError::TransactionalIdAuthorizationFailed;

/// DescribeConfigs and AlterConfigs resource types.
const CONFIG_TOPIC: i8 = 2;
const CONFIG_BROKER: i8 = 4;
const CONFIG_BROKER_LOGGER: i8 = 8;

/// One request's view of the ACLs: who asks, and the metadata image the
/// whole request is decided against. Cheap to clone into a patch.
#[derive(Clone)]
pub(crate) struct Gate {
    authorizer: Arc<Authorizer>,
    session: Arc<Session>,
    image: Arc<ClusterImage>,
    /// The API asked for, for the denial log.
    api: ApiKey,
    /// Where denials are counted; `None` for a gate that only filters what
    /// a response shows (no denial log either, as Kafka's `logIfDenied`).
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Gate {
    /// The gate for a request; `None` when there is no authorizer.
    pub(crate) fn new(broker: &Broker, session: &Arc<Session>, api: ApiKey) -> Option<Gate> {
        broker.authorizer.enabled().then(|| Gate {
            authorizer: broker.authorizer.clone(),
            session: session.clone(),
            image: broker.image(),
            api,
            metrics: Some(broker.metrics.clone()),
        })
    }

    /// The same gate for filtering what a response lists: what it hides is
    /// neither logged nor counted.
    fn quiet(&self) -> Gate {
        Gate {
            metrics: None,
            ..self.clone()
        }
    }

    fn allows(&self, operation: Operation, resource: ResourceType, name: &str) -> bool {
        let allowed = self
            .authorizer
            .allows(&self.image, &self.session, operation, resource, name);
        if !allowed {
            if let Some(metrics) = &self.metrics {
                denied(metrics, &self.session, self.api, operation, resource, name);
            }
        }
        allowed
    }

    fn topic(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Topic, name)
    }

    fn group(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::Group, name)
    }

    fn txn(&self, operation: Operation, name: &str) -> bool {
        self.allows(operation, ResourceType::TransactionalId, name)
    }

    fn cluster(&self, operation: Operation) -> bool {
        self.allows(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    fn operations(&self, resource: ResourceType, name: &str) -> i32 {
        self.authorizer
            .authorized_operations(&self.image, &self.session, resource, name)
    }

    /// KIP-679: an idempotent producer needs IdempotentWrite on the
    /// cluster, or Write on some topic.
    fn may_write_idempotently(&self) -> bool {
        let quiet = self.quiet();
        let may = quiet.cluster(Operation::IdempotentWrite)
            || quiet
                .image
                .topics
                .keys()
                .any(|t| quiet.topic(Operation::Write, t))
            || quiet.image.acls.iter().any(|acl| {
                acl.resource_type == ResourceType::Topic
                    && acl.permission == crate::acl::Permission::Allow
                    && quiet.topic(Operation::Write, &acl.resource_name)
            });
        // A refusal is logged and counted as the cluster IdempotentWrite it is.
        may || self.cluster(Operation::IdempotentWrite)
    }

    /// A topic's name from its id, in this request's image.
    fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        self.image.topic_name(id).map(str::to_string)
    }
}

/// Counts a refusal by the ACLs and logs it as Kafka's authorizer does
/// (`Principal = ... is Denied operation = ...`), under the target
/// `runnel::authorizer`.
pub(crate) fn denied(
    metrics: &crate::metrics::Metrics,
    session: &Session,
    api: ApiKey,
    operation: Operation,
    resource: ResourceType,
    name: &str,
) {
    metrics
        .authorization_denied
        .get_or_create(&crate::metrics::DenialLabel {
            resource_type: format!("{resource:?}"),
            operation: format!("{operation:?}"),
        })
        .inc();
    info!(
        target: "runnel::authorizer",
        "Principal = {} is Denied operation = {operation:?} from host = {} on resource = {resource:?}:LITERAL:{name} for request = {api:?}",
        session.principal,
        session.host,
    );
}

/// Puts what was held back into the response.
pub(crate) type Patch = Box<dyn FnOnce(&mut ResponseKind) + Send>;
/// [`Patch`] for a Produce response.
pub(crate) type ProducePatch = Box<dyn FnOnce(&mut ProduceResponse) + Send>;
/// [`Patch`] for a Fetch response.
pub(crate) type FetchPatch = Box<dyn FnOnce(&mut FetchResponse) + Send>;

/// What the gate decided about a request.
pub(crate) enum Gated {
    /// Run this (possibly with items taken out), then apply the patch.
    Pass(RequestKind, Option<Patch>),
    /// Answer this, without running the handler.
    Refuse(ResponseKind),
    /// Close the connection: an API with no authorization rule.
    Close(String),
}

fn message(error: ResponseError, what: &str, session: &Session) -> Option<StrBytes> {
    Some(StrBytes::from_string(format!(
        "{} may not use {what} ({error:?})",
        session.principal
    )))
}

/// Splits `items` into the allowed and the refused.
fn split<T>(items: Vec<T>, allowed: impl Fn(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|item| allowed(item))
}

/// Splits `items` into the allowed and the refused, each refused one with
/// the error `refusal` gave it.
fn split_refused<T>(
    items: Vec<T>,
    refusal: impl Fn(&T) -> Option<ResponseError>,
) -> (Vec<T>, Vec<(T, ResponseError)>) {
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for item in items {
        match refusal(&item) {
            None => kept.push(item),
            Some(code) => refused.push((item, code)),
        }
    }
    (kept, refused)
}

fn patch<F>(f: F) -> Option<Patch>
where
    F: FnOnce(&mut ResponseKind) + Send + 'static,
{
    Some(Box::new(f))
}

/// Checks a Produce: the topics the principal may not write (or, missing,
/// may not create when `auto_create`) are taken out, and `patch` answers them. With a transactional id it may not write,
/// every partition is refused.
pub(crate) fn produce(
    gate: &Gate,
    auto_create: bool,
    request: &mut ProduceRequest,
) -> Option<ProducePatch> {
    let txn_refused = request
        .transactional_id
        .as_ref()
        .is_some_and(|id| !gate.txn(Operation::Write, id.0.as_str()));
    let topics = std::mem::take(&mut request.topic_data);
    // Producing to a missing topic creates it here, which needs Create too.
    let creatable = |name: &str| {
        !auto_create
            || gate.image.topics.contains_key(name)
            || gate.quiet().cluster(Operation::Create)
            || gate.topic(Operation::Create, name)
    };
    let (kept, refused) = split(topics, |t| {
        let name = t.name.0.as_str();
        !txn_refused && gate.topic(Operation::Write, name) && creatable(name)
    });
    request.topic_data = kept;
    if refused.is_empty() {
        return None;
    }
    let code = if txn_refused { TXN } else { TOPIC };
    let answers: Vec<produce_response::TopicProduceResponse> = refused
        .into_iter()
        .map(|t| {
            produce_response::TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            produce_response::PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(code.code())
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(Box::new(move |response: &mut ProduceResponse| {
        response.responses.extend(answers)
    }))
}

/// Checks a Fetch: the topics the principal may not read are taken out,
/// and `patch` answers them.
pub(crate) fn fetch(gate: &Gate, version: i16, request: &mut FetchRequest) -> Option<FetchPatch> {
    let topics = std::mem::take(&mut request.topics);
    let (kept, refused) = split(topics, |t| {
        let name = if version >= 13 {
            match gate.topic_name(t.topic_id) {
                Some(name) => name,
                // Unknown to this request's image: answered below.
                None => return false,
            }
        } else {
            t.topic.0.to_string()
        };
        gate.topic(Operation::Read, &name)
    });
    request.topics = kept;
    if refused.is_empty() {
        return None;
    }
    let code = |t: &kafka_protocol::messages::fetch_request::FetchTopic| {
        if version >= 13 && gate.topic_name(t.topic_id).is_none() {
            ResponseError::UnknownTopicId
        } else {
            TOPIC
        }
    };
    let answers: Vec<fetch_response::FetchableTopicResponse> = refused
        .into_iter()
        .map(|t| {
            let code = code(&t);
            fetch_response::FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            fetch_response::PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(code.code())
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(Box::new(move |response: &mut FetchResponse| {
        response.responses.extend(answers)
    }))
}

/// Checks any other request.
pub(crate) fn request(broker: &Broker, gate: &Gate, version: i16, request: RequestKind) -> Gated {
    use Operation::*;
    let session: &Session = &gate.session;
    match request {
        RequestKind::Metadata(mut r) => {
            let all = r.topics.is_none()
                || (version == 0 && r.topics.as_ref().is_some_and(Vec::is_empty));
            let auto_create = (version < 4 || r.allow_auto_topic_creation)
                && broker.settings.get_bool("auto.create.topics.enable");
            let mut refused = Vec::new();
            if !all {
                let topics = r.topics.take().unwrap_or_default();
                let names: Vec<Option<String>> = topics
                    .iter()
                    .map(|t| match &t.name {
                        Some(name) => Some(name.0.to_string()),
                        None => gate.topic_name(t.topic_id),
                    })
                    .collect();
                let mut kept = Vec::new();
                for (topic, name) in topics.into_iter().zip(names) {
                    let Some(name) = name else {
                        // An id this request's image does not know.
                        refused.push(
                            metadata_response::MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code())
                                .with_topic_id(topic.topic_id)
                                .with_topic_authorized_operations(i32::MIN),
                        );
                        continue;
                    };
                    let describable = gate.topic(Describe, &name);
                    let creatable = !auto_create
                        || gate.image.topics.contains_key(&name)
                        || gate.quiet().cluster(Create)
                        || gate.topic(Create, &name);
                    if describable && creatable {
                        kept.push(topic);
                    } else {
                        refused.push(
                            metadata_response::MetadataResponseTopic::default()
                                .with_error_code(TOPIC.code())
                                .with_name(topic.name)
                                .with_topic_id(topic.topic_id)
                                .with_topic_authorized_operations(i32::MIN),
                        );
                    }
                }
                r.topics = Some(kept);
            }
            let want_topic_ops = r.include_topic_authorized_operations;
            let quiet = gate.quiet();
            let cluster_ops = r
                .include_cluster_authorized_operations
                .then(|| cluster_operations(gate));
            let gate = gate.clone();
            Gated::Pass(
                RequestKind::Metadata(r),
                patch(move |response| {
                    if let ResponseKind::Metadata(m) = response {
                        // Only the topics in the answer are looked at.
                        let name_of = |t: &metadata_response::MetadataResponseTopic| {
                            t.name.as_ref().map(|n| n.0.to_string())
                        };
                        if all {
                            m.topics.retain(|t| {
                                name_of(t).is_some_and(|name| quiet.topic(Describe, &name))
                            });
                        }
                        if want_topic_ops {
                            for topic in &mut m.topics {
                                if let Some(name) = name_of(topic) {
                                    topic.topic_authorized_operations =
                                        gate.operations(ResourceType::Topic, &name);
                                }
                            }
                        }
                        m.topics.extend(refused);
                        if let Some(ops) = cluster_ops {
                            m.cluster_authorized_operations = ops;
                        }
                    }
                }),
            )
        }
        RequestKind::ListOffsets(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Describe, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<list_offsets::ListOffsetsTopicResponse> = refused
                .into_iter()
                .map(|t| {
                    list_offsets::ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    list_offsets::ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC.code())
                                        .with_timestamp(-1)
                                        .with_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Pass(
                RequestKind::ListOffsets(r),
                patch(move |response| {
                    if let ResponseKind::ListOffsets(l) = response {
                        l.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Describe, t.topic.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<epochs::OffsetForLeaderTopicResult> = refused
                .into_iter()
                .map(|t| {
                    epochs::OffsetForLeaderTopicResult::default()
                        .with_topic(t.topic)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    epochs::EpochEndOffset::default()
                                        .with_partition(p.partition)
                                        .with_error_code(TOPIC.code())
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Pass(
                RequestKind::OffsetForLeaderEpoch(r),
                patch(move |response| {
                    if let ResponseKind::OffsetForLeaderEpoch(e) = response {
                        e.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DescribeProducers(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Read, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<describe_producers::TopicResponse> = refused
                .into_iter()
                .map(|t| {
                    describe_producers::TopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    describe_producers::PartitionResponse::default()
                                        .with_partition_index(*p)
                                        .with_error_code(TOPIC.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Pass(
                RequestKind::DescribeProducers(r),
                patch(move |response| {
                    if let ResponseKind::DescribeProducers(d) = response {
                        d.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DeleteRecords(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Delete, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<delete_records::DeleteRecordsTopicResult> = refused
                .into_iter()
                .map(|t| {
                    delete_records::DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    delete_records::DeleteRecordsPartitionResult::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC.code())
                                        .with_low_watermark(-1)
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Pass(
                RequestKind::DeleteRecords(r),
                patch(move |response| {
                    if let ResponseKind::DeleteRecords(d) = response {
                        d.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::CreateTopics(mut r) => {
            let cluster = gate.quiet().cluster(Create);
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                cluster || gate.topic(Create, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<create_topics::CreatableTopicResult> = refused
                .into_iter()
                .map(|t| {
                    create_topics::CreatableTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC.code())
                        .with_error_message(message(TOPIC, "Create on this topic", session))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                })
                .collect();
            Gated::Pass(
                RequestKind::CreateTopics(r),
                patch(move |response| {
                    if let ResponseKind::CreateTopics(c) = response {
                        c.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DeleteTopics(mut r) => {
            let (kept_names, refused_names) = split(std::mem::take(&mut r.topic_names), |t| {
                gate.topic(Delete, t.0.as_str())
            });
            r.topic_names = kept_names;
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                let name = match &t.name {
                    Some(name) => Some(name.0.to_string()),
                    None => gate.topic_name(t.topic_id),
                };
                // An id unknown to this request's image is answered below.
                name.is_some_and(|name| gate.topic(Delete, &name))
            });
            r.topics = kept;
            let mut answers: Vec<delete_topics::DeletableTopicResult> = refused_names
                .into_iter()
                .map(|name| delete_topics::DeletableTopicResult::default().with_name(Some(name)))
                .collect();
            for answer in &mut answers {
                answer.error_code = TOPIC.code();
                answer.error_message = message(TOPIC, "Delete on this topic", session);
            }
            answers.extend(refused.into_iter().map(|t| {
                let unknown = t.name.is_none() && gate.topic_name(t.topic_id).is_none();
                let (code, what) = if unknown {
                    (ResponseError::UnknownTopicId, "an unknown topic id")
                } else {
                    (TOPIC, "Delete on this topic")
                };
                delete_topics::DeletableTopicResult::default()
                    .with_name(t.name)
                    .with_topic_id(t.topic_id)
                    .with_error_code(code.code())
                    .with_error_message(message(code, what, session))
            }));
            Gated::Pass(
                RequestKind::DeleteTopics(r),
                patch(move |response| {
                    if let ResponseKind::DeleteTopics(d) = response {
                        d.responses.extend(answers);
                    }
                }),
            )
        }
        RequestKind::CreatePartitions(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Alter, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<create_partitions::CreatePartitionsTopicResult> = refused
                .into_iter()
                .map(|t| {
                    create_partitions::CreatePartitionsTopicResult::default()
                        .with_name(t.name)
                        .with_error_code(TOPIC.code())
                        .with_error_message(message(TOPIC, "Alter on this topic", session))
                })
                .collect();
            Gated::Pass(
                RequestKind::CreatePartitions(r),
                patch(move |response| {
                    if let ResponseKind::CreatePartitions(c) = response {
                        c.results.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DescribeConfigs(mut r) => {
            let (kept, refused) = split_refused(std::mem::take(&mut r.resources), |res| {
                config_refusal(
                    gate,
                    DescribeConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = kept;
            let answers: Vec<describe_configs::DescribeConfigsResult> = refused
                .into_iter()
                .map(|(res, code)| {
                    describe_configs::DescribeConfigsResult::default()
                        .with_error_code(code.code())
                        .with_error_message(message(code, "DescribeConfigs here", session))
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name)
                })
                .collect();
            Gated::Pass(
                RequestKind::DescribeConfigs(r),
                patch(move |response| {
                    if let ResponseKind::DescribeConfigs(d) = response {
                        d.results.extend(answers);
                    }
                }),
            )
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let (kept, refused) = split_refused(std::mem::take(&mut r.resources), |res| {
                config_refusal(
                    gate,
                    AlterConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = kept;
            let answers: Vec<incremental_alter::AlterConfigsResourceResponse> = refused
                .into_iter()
                .map(|(res, code)| {
                    incremental_alter::AlterConfigsResourceResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(message(code, "AlterConfigs here", session))
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name)
                })
                .collect();
            Gated::Pass(
                RequestKind::IncrementalAlterConfigs(r),
                patch(move |response| {
                    if let ResponseKind::IncrementalAlterConfigs(a) = response {
                        a.responses.extend(answers);
                    }
                }),
            )
        }
        RequestKind::AlterConfigs(mut r) => {
            use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
            let (kept, refused) = split_refused(std::mem::take(&mut r.resources), |res| {
                config_refusal(
                    gate,
                    AlterConfigs,
                    res.resource_type,
                    res.resource_name.as_str(),
                )
            });
            r.resources = kept;
            let answers: Vec<AlterConfigsResourceResponse> = refused
                .into_iter()
                .map(|(res, code)| {
                    AlterConfigsResourceResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(message(code, "AlterConfigs here", session))
                        .with_resource_type(res.resource_type)
                        .with_resource_name(res.resource_name)
                })
                .collect();
            Gated::Pass(
                RequestKind::AlterConfigs(r),
                patch(move |response| {
                    if let ResponseKind::AlterConfigs(a) = response {
                        a.responses.extend(answers);
                    }
                }),
            )
        }
        // Served to everyone, as in Kafka; the operations only with Describe.
        RequestKind::DescribeCluster(r) => {
            let ops = r
                .include_cluster_authorized_operations
                .then(|| cluster_operations(gate));
            Gated::Pass(
                RequestKind::DescribeCluster(r),
                patch(move |response| {
                    if let (ResponseKind::DescribeCluster(d), Some(ops)) = (response, ops) {
                        d.cluster_authorized_operations = ops;
                    }
                }),
            )
        }
        RequestKind::DescribeLogDirs(r) => pass_if(
            gate.cluster(Describe),
            RequestKind::DescribeLogDirs(r),
            || {
                ResponseKind::DescribeLogDirs(
                    DescribeLogDirsResponse::default().with_error_code(CLUSTER.code()),
                )
            },
        ),
        RequestKind::ListPartitionReassignments(r) => pass_if(
            gate.cluster(Describe),
            RequestKind::ListPartitionReassignments(r),
            || {
                ResponseKind::ListPartitionReassignments(
                    ListPartitionReassignmentsResponse::default()
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(CLUSTER, "Describe on the cluster", session)),
                )
            },
        ),
        RequestKind::AlterPartitionReassignments(r) => pass_if(
            gate.cluster(Alter),
            RequestKind::AlterPartitionReassignments(r),
            || {
                ResponseKind::AlterPartitionReassignments(
                    AlterPartitionReassignmentsResponse::default()
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(CLUSTER, "Alter on the cluster", session)),
                )
            },
        ),
        RequestKind::ElectLeaders(r) => {
            if gate.cluster(Alter) {
                return Gated::Pass(RequestKind::ElectLeaders(r), None);
            }
            let results = r
                .topic_partitions
                .unwrap_or_default()
                .into_iter()
                .map(|t| {
                    elect_leaders::ReplicaElectionResult::default()
                        .with_topic(t.topic)
                        .with_partition_result(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    elect_leaders::PartitionResult::default()
                                        .with_partition_id(*p)
                                        .with_error_code(CLUSTER.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Refuse(ResponseKind::ElectLeaders(
                ElectLeadersResponse::default()
                    .with_error_code(CLUSTER.code())
                    .with_replica_election_results(results),
            ))
        }
        RequestKind::DescribeClientQuotas(r) => pass_if(
            gate.cluster(DescribeConfigs),
            RequestKind::DescribeClientQuotas(r),
            || {
                ResponseKind::DescribeClientQuotas(
                    DescribeClientQuotasResponse::default()
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(
                            CLUSTER,
                            "DescribeConfigs on the cluster",
                            session,
                        )),
                )
            },
        ),
        RequestKind::AlterClientQuotas(r) => {
            if gate.cluster(AlterConfigs) {
                return Gated::Pass(RequestKind::AlterClientQuotas(r), None);
            }
            let entries = r
                .entries
                .iter()
                .map(|e| {
                    kafka_protocol::messages::alter_client_quotas_response::EntryData::default()
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(CLUSTER, "AlterConfigs on the cluster", session))
                        .with_entity(
                            e.entity
                                .iter()
                                .map(|p| {
                                    kafka_protocol::messages::alter_client_quotas_response::EntityData::default()
                                        .with_entity_type(p.entity_type.clone())
                                        .with_entity_name(p.entity_name.clone())
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Refuse(ResponseKind::AlterClientQuotas(
                kafka_protocol::messages::AlterClientQuotasResponse::default()
                    .with_entries(entries),
            ))
        }
        RequestKind::DescribeUserScramCredentials(r) => pass_if(
            gate.cluster(Describe),
            RequestKind::DescribeUserScramCredentials(r),
            || {
                ResponseKind::DescribeUserScramCredentials(
                    DescribeUserScramCredentialsResponse::default()
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(CLUSTER, "Describe on the cluster", session)),
                )
            },
        ),
        RequestKind::AlterUserScramCredentials(r) => {
            if gate.cluster(Alter) {
                return Gated::Pass(RequestKind::AlterUserScramCredentials(r), None);
            }
            let mut users: Vec<StrBytes> = Vec::new();
            for name in r
                .deletions
                .iter()
                .map(|d| &d.name)
                .chain(r.upsertions.iter().map(|u| &u.name))
            {
                if !users.contains(name) {
                    users.push(name.clone());
                }
            }
            let results = users
                .into_iter()
                .map(|user| {
                    kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                        .with_user(user)
                        .with_error_code(CLUSTER.code())
                        .with_error_message(message(CLUSTER, "Alter on the cluster", session))
                })
                .collect();
            Gated::Refuse(ResponseKind::AlterUserScramCredentials(
                AlterUserScramCredentialsResponse::default().with_results(results),
            ))
        }
        RequestKind::WriteTxnMarkers(r) => {
            if gate.cluster(ClusterAction) {
                return Gated::Pass(RequestKind::WriteTxnMarkers(r), None);
            }
            let results = r
                .markers
                .iter()
                .map(|m| {
                    markers::WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(
                            m.topics
                                .iter()
                                .map(|t| {
                                    markers::WritableTxnMarkerTopicResult::default()
                                        .with_name(t.name.clone())
                                        .with_partitions(
                                            t.partition_indexes
                                                .iter()
                                                .map(|p| {
                                                    markers::WritableTxnMarkerPartitionResult::default()
                                                        .with_partition_index(*p)
                                                        .with_error_code(CLUSTER.code())
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Refuse(ResponseKind::WriteTxnMarkers(
                WriteTxnMarkersResponse::default().with_markers(results),
            ))
        }
        RequestKind::FindCoordinator(mut r) => {
            let (resource, code) = match r.key_type {
                1 => (ResourceType::TransactionalId, TXN),
                _ => (ResourceType::Group, GROUP),
            };
            let operation_allowed = |key: &str| gate.allows(Describe, resource, key);
            if version < 4 {
                if operation_allowed(r.key.as_str()) {
                    return Gated::Pass(RequestKind::FindCoordinator(r), None);
                }
                return Gated::Refuse(ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(message(code, "Describe on this key", session))
                        .with_node_id((-1).into())
                        .with_port(-1),
                ));
            }
            let (kept, refused) = split(std::mem::take(&mut r.coordinator_keys), |key| {
                operation_allowed(key.as_str())
            });
            r.coordinator_keys = kept;
            let answers: Vec<find_coordinator::Coordinator> = refused
                .into_iter()
                .map(|key| {
                    find_coordinator::Coordinator::default()
                        .with_key(key)
                        .with_node_id((-1).into())
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(message(code, "Describe on this key", session))
                })
                .collect();
            if r.coordinator_keys.is_empty() {
                return Gated::Refuse(ResponseKind::FindCoordinator(
                    FindCoordinatorResponse::default().with_coordinators(answers),
                ));
            }
            Gated::Pass(
                RequestKind::FindCoordinator(r),
                patch(move |response| {
                    if let ResponseKind::FindCoordinator(f) = response {
                        f.coordinators.extend(answers);
                    }
                }),
            )
        }
        RequestKind::JoinGroup(r) => {
            if gate.group(Read, r.group_id.0.as_str()) {
                return Gated::Pass(RequestKind::JoinGroup(r), None);
            }
            Gated::Refuse(ResponseKind::JoinGroup(
                JoinGroupResponse::default()
                    .with_error_code(GROUP.code())
                    .with_generation_id(-1)
                    .with_member_id(r.member_id),
            ))
        }
        RequestKind::SyncGroup(r) => pass_if(
            gate.group(Read, r.group_id.0.as_str()),
            RequestKind::SyncGroup(r),
            || ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(GROUP.code())),
        ),
        RequestKind::Heartbeat(r) => pass_if(
            gate.group(Read, r.group_id.0.as_str()),
            RequestKind::Heartbeat(r),
            || ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(GROUP.code())),
        ),
        RequestKind::LeaveGroup(r) => pass_if(
            gate.group(Read, r.group_id.0.as_str()),
            RequestKind::LeaveGroup(r),
            || {
                ResponseKind::LeaveGroup(
                    LeaveGroupResponse::default().with_error_code(GROUP.code()),
                )
            },
        ),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let refusal = if !gate.group(Read, r.group_id.0.as_str()) {
                Some((GROUP, "Read on the group".to_string()))
            } else {
                r.subscribed_topic_names
                    .iter()
                    .flatten()
                    .find(|t| !gate.topic(Describe, t.0.as_str()))
                    .map(|t| {
                        (
                            TOPIC,
                            format!("Describe on the subscribed topic {}", t.0.as_str()),
                        )
                    })
            };
            match refusal {
                None => Gated::Pass(RequestKind::ConsumerGroupHeartbeat(r), None),
                Some((code, what)) => Gated::Refuse(ResponseKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(message(code, &what, session)),
                )),
            }
        }
        RequestKind::OffsetCommit(mut r) => {
            let group_allowed = gate.group(Read, r.group_id.0.as_str());
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                group_allowed && gate.topic(Read, t.name.0.as_str())
            });
            r.topics = kept;
            let code = if group_allowed { TOPIC } else { GROUP };
            let answers: Vec<offset_commit::OffsetCommitResponseTopic> = refused
                .into_iter()
                .map(|t| {
                    offset_commit::OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_topic_id(t.topic_id)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_commit::OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            if !group_allowed {
                return Gated::Refuse(ResponseKind::OffsetCommit(
                    OffsetCommitResponse::default().with_topics(answers),
                ));
            }
            Gated::Pass(
                RequestKind::OffsetCommit(r),
                patch(move |response| {
                    if let ResponseKind::OffsetCommit(o) = response {
                        o.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::OffsetFetch(r) => offset_fetch(gate, version, r),
        RequestKind::ListGroups(r) => {
            if gate.quiet().cluster(Describe) {
                return Gated::Pass(RequestKind::ListGroups(r), None);
            }
            let quiet = gate.quiet();
            Gated::Pass(
                RequestKind::ListGroups(r),
                patch(move |response| {
                    if let ResponseKind::ListGroups(l) = response {
                        l.groups
                            .retain(|g| quiet.group(Describe, g.group_id.0.as_str()));
                    }
                }),
            )
        }
        RequestKind::DescribeGroups(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.groups), |g| {
                gate.group(Describe, g.0.as_str())
            });
            r.groups = kept;
            let ops: Option<Vec<(String, i32)>> = r.include_authorized_operations.then(|| {
                r.groups
                    .iter()
                    .map(|g| {
                        (
                            g.0.to_string(),
                            gate.operations(ResourceType::Group, g.0.as_str()),
                        )
                    })
                    .collect()
            });
            let answers: Vec<describe_groups::DescribedGroup> = refused
                .into_iter()
                .map(|g| {
                    describe_groups::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP.code())
                        .with_error_message(message(GROUP, "Describe on this group", session))
                        .with_authorized_operations(i32::MIN)
                })
                .collect();
            Gated::Pass(
                RequestKind::DescribeGroups(r),
                patch(move |response| {
                    if let ResponseKind::DescribeGroups(d) = response {
                        for group in &mut d.groups {
                            if let Some((_, o)) = ops
                                .iter()
                                .flatten()
                                .find(|(name, _)| name == group.group_id.0.as_str())
                            {
                                group.authorized_operations = *o;
                            }
                        }
                        d.groups.extend(answers);
                    }
                }),
            )
        }
        RequestKind::ConsumerGroupDescribe(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.group_ids), |g| {
                gate.group(Describe, g.0.as_str())
            });
            r.group_ids = kept;
            let answers: Vec<cg_describe::DescribedGroup> = refused
                .into_iter()
                .map(|g| {
                    cg_describe::DescribedGroup::default()
                        .with_group_id(g)
                        .with_error_code(GROUP.code())
                        .with_error_message(message(GROUP, "Describe on this group", session))
                        .with_authorized_operations(i32::MIN)
                })
                .collect();
            let gate = gate.clone();
            Gated::Pass(
                RequestKind::ConsumerGroupDescribe(r),
                patch(move |response| {
                    if let ResponseKind::ConsumerGroupDescribe(d) = response {
                        // A group using topics the caller may not describe
                        // (a regex subscription matches them all) is not
                        // shown, as Kafka 4 answers it (KAFKA-18813).
                        for group in &mut d.groups {
                            let hidden = group.members.iter().any(|m| {
                                m.subscribed_topic_names
                                    .iter()
                                    .chain(
                                        m.assignment.topic_partitions.iter().map(|t| &t.topic_name),
                                    )
                                    .chain(
                                        m.target_assignment
                                            .topic_partitions
                                            .iter()
                                            .map(|t| &t.topic_name),
                                    )
                                    .any(|t| !gate.topic(Describe, t.0.as_str()))
                            });
                            if hidden {
                                *group = cg_describe::DescribedGroup::default()
                                    .with_group_id(group.group_id.clone())
                                    .with_error_code(TOPIC.code())
                                    .with_error_message(Some(StrBytes::from_static_str(
                                        "the group uses topics the client may not describe",
                                    )))
                                    .with_authorized_operations(i32::MIN);
                            }
                        }
                        d.groups.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DeleteGroups(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.groups_names), |g| {
                gate.group(Delete, g.0.as_str())
            });
            r.groups_names = kept;
            let answers: Vec<delete_groups::DeletableGroupResult> = refused
                .into_iter()
                .map(|g| {
                    delete_groups::DeletableGroupResult::default()
                        .with_group_id(g)
                        .with_error_code(GROUP.code())
                })
                .collect();
            Gated::Pass(
                RequestKind::DeleteGroups(r),
                patch(move |response| {
                    if let ResponseKind::DeleteGroups(d) = response {
                        d.results.extend(answers);
                    }
                }),
            )
        }
        RequestKind::OffsetDelete(mut r) => {
            if !gate.group(Delete, r.group_id.0.as_str()) {
                return Gated::Refuse(ResponseKind::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(GROUP.code()),
                ));
            }
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                gate.topic(Read, t.name.0.as_str())
            });
            r.topics = kept;
            let answers: Vec<offset_delete::OffsetDeleteResponseTopic> = refused
                .into_iter()
                .map(|t| {
                    offset_delete::OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    offset_delete::OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            Gated::Pass(
                RequestKind::OffsetDelete(r),
                patch(move |response| {
                    if let ResponseKind::OffsetDelete(o) = response {
                        o.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::InitProducerId(r) => {
            let refusal = match &r.transactional_id {
                Some(id) if !gate.txn(Write, id.0.as_str()) => Some(TXN),
                Some(_) => None,
                None if !gate.may_write_idempotently() => Some(CLUSTER),
                None => None,
            };
            match refusal {
                None => Gated::Pass(RequestKind::InitProducerId(r), None),
                Some(code) => Gated::Refuse(ResponseKind::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(code.code())
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1),
                )),
            }
        }
        RequestKind::AddPartitionsToTxn(r) => add_partitions_to_txn(gate, r),
        RequestKind::AddOffsetsToTxn(r) => {
            let code = if !gate.txn(Write, r.transactional_id.0.as_str()) {
                Some(TXN)
            } else if !gate.group(Read, r.group_id.0.as_str()) {
                Some(GROUP)
            } else {
                None
            };
            match code {
                None => Gated::Pass(RequestKind::AddOffsetsToTxn(r), None),
                Some(code) => Gated::Refuse(ResponseKind::AddOffsetsToTxn(
                    AddOffsetsToTxnResponse::default().with_error_code(code.code()),
                )),
            }
        }
        RequestKind::EndTxn(r) => {
            if gate.txn(Write, r.transactional_id.0.as_str()) {
                return Gated::Pass(RequestKind::EndTxn(r), None);
            }
            Gated::Refuse(ResponseKind::EndTxn(
                EndTxnResponse::default().with_error_code(TXN.code()),
            ))
        }
        RequestKind::TxnOffsetCommit(mut r) => {
            let whole = if !gate.txn(Write, r.transactional_id.0.as_str()) {
                Some(TXN)
            } else if !gate.group(Read, r.group_id.0.as_str()) {
                Some(GROUP)
            } else {
                None
            };
            let (kept, refused) = split(std::mem::take(&mut r.topics), |t| {
                whole.is_none() && gate.topic(Read, t.name.0.as_str())
            });
            r.topics = kept;
            let code = whole.unwrap_or(TOPIC);
            let answers: Vec<txn_offset_commit::TxnOffsetCommitResponseTopic> = refused
                .into_iter()
                .map(|t| {
                    txn_offset_commit::TxnOffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    txn_offset_commit::TxnOffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                })
                .collect();
            if whole.is_some() {
                return Gated::Refuse(ResponseKind::TxnOffsetCommit(
                    TxnOffsetCommitResponse::default().with_topics(answers),
                ));
            }
            Gated::Pass(
                RequestKind::TxnOffsetCommit(r),
                patch(move |response| {
                    if let ResponseKind::TxnOffsetCommit(t) = response {
                        t.topics.extend(answers);
                    }
                }),
            )
        }
        RequestKind::DescribeTransactions(mut r) => {
            let (kept, refused) = split(std::mem::take(&mut r.transactional_ids), |id| {
                gate.txn(Describe, id.0.as_str())
            });
            r.transactional_ids = kept;
            let answers: Vec<describe_txns::TransactionState> = refused
                .into_iter()
                .map(|id| {
                    describe_txns::TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(TXN.code())
                        .with_producer_id((-1).into())
                        .with_producer_epoch(-1)
                })
                .collect();
            let quiet = gate.quiet();
            Gated::Pass(
                RequestKind::DescribeTransactions(r),
                patch(move |response| {
                    if let ResponseKind::DescribeTransactions(d) = response {
                        // Only the topics the caller may describe, as Kafka.
                        for state in &mut d.transaction_states {
                            state
                                .topics
                                .retain(|t| quiet.topic(Describe, t.topic.0.as_str()));
                        }
                        d.transaction_states.extend(answers);
                    }
                }),
            )
        }
        RequestKind::ListTransactions(r) => {
            let quiet = gate.quiet();
            Gated::Pass(
                RequestKind::ListTransactions(r),
                patch(move |response| {
                    if let ResponseKind::ListTransactions(l) = response {
                        l.transaction_states
                            .retain(|t| quiet.txn(Describe, t.transactional_id.0.as_str()));
                    }
                }),
            )
        }
        // Checked in their handlers (they answer SECURITY_DISABLED without
        // an authorizer), or open to all (version and SASL negotiation).
        other @ (RequestKind::CreateAcls(_)
        | RequestKind::DescribeAcls(_)
        | RequestKind::DeleteAcls(_)
        | RequestKind::ApiVersions(_)
        | RequestKind::SaslHandshake(_)
        | RequestKind::SaslAuthenticate(_)) => Gated::Pass(other, None),
        // Produce and Fetch go through `produce` and `fetch`; any other API
        // has a rule above. One without would be refused, not let through.
        other => Gated::Close(format!(
            "no authorization rule for {:?}",
            std::mem::discriminant(&other)
        )),
    }
}

/// KIP-430's cluster operations, as Kafka reports them: 0 without Describe.
fn cluster_operations(gate: &Gate) -> i32 {
    if gate.quiet().cluster(Operation::Describe) {
        gate.operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}

/// The error a DescribeConfigs or AlterConfigs resource gets, if refused.
fn config_refusal(
    gate: &Gate,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Option<ResponseError> {
    match resource_type {
        CONFIG_TOPIC => (!gate.topic(operation, name)).then_some(TOPIC),
        CONFIG_BROKER | CONFIG_BROKER_LOGGER => (!gate.cluster(operation)).then_some(CLUSTER),
        _ => None,
    }
}

/// Passes the request when allowed, else answers with `refused`.
fn pass_if(allowed: bool, request: RequestKind, refused: impl FnOnce() -> ResponseKind) -> Gated {
    if allowed {
        Gated::Pass(request, None)
    } else {
        Gated::Refuse(refused())
    }
}

/// OffsetFetch: Describe on the group, and the topics filtered by Describe.
fn offset_fetch(
    gate: &Gate,
    version: i16,
    mut r: kafka_protocol::messages::OffsetFetchRequest,
) -> Gated {
    use kafka_protocol::messages::offset_fetch_response::*;
    let owned = gate.clone();
    let topic_allowed = move |name: &str| owned.topic(Operation::Describe, name);
    let quiet = gate.quiet();
    let topic_shown = move |name: &str| quiet.topic(Operation::Describe, name);
    if version < 8 {
        if !gate.group(Operation::Describe, r.group_id.0.as_str()) {
            let mut response = OffsetFetchResponse::default().with_error_code(GROUP.code());
            if version < 2 {
                response.topics = r
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(-1)
                                            .with_error_code(GROUP.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
            }
            return Gated::Refuse(ResponseKind::OffsetFetch(response));
        }
        let mut answers = Vec::new();
        if let Some(topics) = r.topics.take() {
            let (kept, refused) = split(topics, |t| topic_allowed(t.name.0.as_str()));
            r.topics = Some(kept);
            answers = refused
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partition_indexes
                                .iter()
                                .map(|p| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(*p)
                                        .with_committed_offset(-1)
                                        .with_error_code(TOPIC.code())
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        return Gated::Pass(
            RequestKind::OffsetFetch(r),
            patch(move |response| {
                if let ResponseKind::OffsetFetch(o) = response {
                    o.topics.retain(|t| topic_shown(t.name.0.as_str()));
                    o.topics.extend(answers);
                }
            }),
        );
    }
    let (kept, refused) = split(std::mem::take(&mut r.groups), |g| {
        gate.group(Operation::Describe, g.group_id.0.as_str())
    });
    let mut refused_topics: Vec<(String, Vec<OffsetFetchResponseTopics>)> = Vec::new();
    let mut groups = Vec::with_capacity(kept.len());
    for mut group in kept {
        if let Some(topics) = group.topics.take() {
            let (allowed, denied) = split(topics, |t| topic_allowed(t.name.0.as_str()));
            group.topics = Some(allowed);
            refused_topics.push((
                group.group_id.0.to_string(),
                denied
                    .into_iter()
                    .map(|t| {
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_committed_offset(-1)
                                            .with_error_code(TOPIC.code())
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ));
        }
        groups.push(group);
    }
    r.groups = groups;
    let refused_groups: Vec<OffsetFetchResponseGroup> = refused
        .into_iter()
        .map(|g| {
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_error_code(GROUP.code())
        })
        .collect();
    if r.groups.is_empty() {
        return Gated::Refuse(ResponseKind::OffsetFetch(
            OffsetFetchResponse::default().with_groups(refused_groups),
        ));
    }
    Gated::Pass(
        RequestKind::OffsetFetch(r),
        patch(move |response| {
            if let ResponseKind::OffsetFetch(o) = response {
                for group in &mut o.groups {
                    group.topics.retain(|t| topic_shown(t.name.0.as_str()));
                    if let Some((_, denied)) = refused_topics
                        .iter_mut()
                        .find(|(id, _)| id == group.group_id.0.as_str())
                    {
                        group.topics.append(denied);
                    }
                }
                o.groups.extend(refused_groups);
            }
        }),
    )
}

/// AddPartitionsToTxn (v0-3, one transaction): Write on the transactional
/// id and every topic; as in Kafka, one refused topic fails the whole
/// request (the others get OPERATION_NOT_ATTEMPTED).
fn add_partitions_to_txn(
    gate: &Gate,
    r: kafka_protocol::messages::AddPartitionsToTxnRequest,
) -> Gated {
    let txn_allowed = gate.txn(Operation::Write, r.v3_and_below_transactional_id.0.as_str());
    let refused_topic = |name: &str| !gate.topic(Operation::Write, name);
    if txn_allowed
        && !r
            .v3_and_below_topics
            .iter()
            .any(|t| refused_topic(t.name.0.as_str()))
    {
        return Gated::Pass(RequestKind::AddPartitionsToTxn(r), None);
    }
    let results = r
        .v3_and_below_topics
        .iter()
        .map(|t| {
            let code = if !txn_allowed {
                TXN
            } else if refused_topic(t.name.0.as_str()) {
                TOPIC
            } else {
                ResponseError::OperationNotAttempted
            };
            add_partitions::AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            add_partitions::AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code.code())
                        })
                        .collect(),
                )
        })
        .collect();
    Gated::Refuse(ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    ))
}
