//! A small Kafka admin client: the calls the operator makes to a cluster's
//! brokers, over the Kafka wire protocol (messages from `kafka-protocol`,
//! one tokio TCP connection per call).
//!
//! ```text
//!   Admin::metadata ──▶ any bootstrap broker
//!   Admin::create_topic, create_partitions, alter_topic_config, delete_topic
//!                   ──▶ the controller Metadata names, then every other
//!                       broker on NOT_CONTROLLER or a connection error
//!   Admin::describe_group, committed_offsets, commit_offsets
//!                   ──▶ the group's coordinator (FindCoordinator)
//!   Admin::list_offsets ──▶ each partition's leader
//! ```
//!
//! Each API is sent at one fixed version that Runnel and Apache Kafka 2.8+
//! both serve; there is no version negotiation.

mod acls;
mod connection;
mod error;
mod scram;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    alter_user_scram_credentials_request, describe_user_scram_credentials_request,
    AlterPartitionReassignmentsRequest, AlterUserScramCredentialsRequest, BrokerId,
    ConsumerGroupDescribeRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    DescribeUserScramCredentialsRequest, FindCoordinatorRequest, GroupId,
    IncrementalAlterConfigsRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use tracing::debug;

pub use self::acls::AclEntry;
use self::connection::{CallError, Connection};
use self::error::is_redirect;
pub use self::error::AdminError;
pub use self::scram::{generate_password, Credentials};

/// API versions sent (see the module docs).
mod version {
    pub(super) const METADATA: i16 = 9;
    pub(super) const CREATE_TOPICS: i16 = 5;
    pub(super) const CREATE_PARTITIONS: i16 = 2;
    pub(super) const DESCRIBE_CONFIGS: i16 = 4;
    pub(super) const INCREMENTAL_ALTER_CONFIGS: i16 = 1;
    pub(super) const DELETE_TOPICS: i16 = 4;
    pub(super) const FIND_COORDINATOR: i16 = 3;
    pub(super) const DESCRIBE_GROUPS: i16 = 5;
    pub(super) const CONSUMER_GROUP_DESCRIBE: i16 = 0;
    pub(super) const DESCRIBE_USER_SCRAM_CREDENTIALS: i16 = 0;
    pub(super) const ALTER_USER_SCRAM_CREDENTIALS: i16 = 0;
    pub(super) const OFFSET_FETCH: i16 = 7;
    pub(super) const OFFSET_COMMIT: i16 = 8;
    pub(super) const LIST_OFFSETS: i16 = 6;
    pub(super) const ALTER_PARTITION_REASSIGNMENTS: i16 = 0;
    pub(super) const LIST_PARTITION_REASSIGNMENTS: i16 = 0;
}

/// How long the brokers get for a topic operation before answering
/// REQUEST_TIMED_OUT (the topic may then still be created).
const BROKER_TIMEOUT_MS: i32 = 15_000;

/// DescribeConfigs/IncrementalAlterConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;

/// DescribeConfigs `config_source` of a value set on the topic itself.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

/// A broker as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerInfo {
    /// Its node id.
    pub id: i32,
    /// Where it answers, `host:port`.
    pub addr: String,
    /// Its rack, if it has one.
    pub rack: Option<String>,
}

/// A partition as Metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// The leader's node id (-1 when there is none).
    pub leader: i32,
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
}

/// A partition being reassigned, as ListPartitionReassignments reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reassigning {
    /// Its replicas: the target's, then those leaving.
    pub replicas: Vec<i32>,
    /// Replicas joining.
    pub adding: Vec<i32>,
    /// Replicas leaving once the target is in sync.
    pub removing: Vec<i32>,
}

/// What Metadata says about the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetadata {
    /// Every live broker.
    pub brokers: Vec<BrokerInfo>,
    /// The controller's node id (-1 when unknown).
    pub controller_id: i32,
    /// Each topic's partitions, by partition index.
    pub topics: BTreeMap<String, BTreeMap<i32, PartitionInfo>>,
}

impl ClusterMetadata {
    fn addr_of(&self, id: i32) -> Option<&str> {
        self.brokers
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.addr.as_str())
    }
}

/// A topic config value as the brokers report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigValue {
    /// The value (None for sensitive values).
    pub value: Option<String>,
    /// Whether it was set on the topic (rather than inherited).
    pub set_on_topic: bool,
}

/// A consumer group as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    /// Empty, Stable, PreparingRebalance, CompletingRebalance or Dead.
    pub state: String,
    /// How many members it has.
    pub members: usize,
}

/// Which offset ListOffsets asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The end offset (high watermark).
    Latest,
    /// The first offset with a timestamp at or after this many ms since the epoch.
    Timestamp(i64),
}

/// A (topic, partition) pair.
pub type TopicPartition = (String, i32);

/// An admin client for one cluster, reached through its bootstrap addresses.
#[derive(Clone, Debug)]
pub struct Admin {
    bootstrap: Vec<String>,
    timeout: Duration,
    /// SCRAM-SHA-512 credentials when the brokers' listener asks for SASL.
    credentials: Option<Credentials>,
    /// The TLS client configuration when the brokers' listener has TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Why what the Cluster asks for (credentials, the CA to trust) could
    /// not be read: every call fails with it rather than reach brokers that
    /// would refuse it.
    unusable: Option<String>,
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// NOT_CONTROLLER among a response's error codes: the call goes to the
/// next address.
fn not_controller(codes: impl Iterator<Item = i16>) -> Option<ResponseError> {
    codes
        .filter_map(ResponseError::try_from_code)
        .find(|e| *e == ResponseError::NotController)
}

fn kafka_error(
    api: &'static str,
    subject: &str,
    code: i16,
    message: Option<&StrBytes>,
) -> Result<(), AdminError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(AdminError::Kafka {
            api,
            subject: subject.to_owned(),
            error,
            message: message.map(|m| m.to_string()),
        }),
    }
}

impl Admin {
    /// A client for the brokers at `bootstrap` (`host:port` each); every
    /// connection and call gets `timeout`.
    pub fn new(bootstrap: Vec<String>, timeout: Duration) -> Self {
        Admin {
            bootstrap,
            timeout,
            credentials: None,
            tls: None,
            unusable: None,
        }
    }

    /// The same client, failing every call: the Cluster asks for
    /// authentication and its credentials cannot be read (`why`).
    pub fn without_credentials(self, why: String) -> Self {
        Admin {
            unusable: Some(format!("no SASL credentials: {why}")),
            ..self
        }
    }

    /// The same client, failing every call: the Cluster's listener has TLS
    /// and the CA to trust cannot be read (`why`).
    pub fn without_tls(self, why: String) -> Self {
        Admin {
            unusable: Some(format!("no CA to trust for the brokers' TLS: {why}")),
            ..self
        }
    }

    /// The same client over TLS, trusting the CA certificates in `ca_pem`,
    /// presenting `identity` (certificate chain and key, PEM) to brokers
    /// that ask for a client certificate.
    pub fn with_tls(
        self,
        ca_pem: &[u8],
        identity: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Self, String> {
        Ok(Admin {
            tls: Some(connection::tls_trusting(ca_pem, identity)?),
            ..self
        })
    }

    /// The same client, authenticating each connection with `credentials`.
    pub fn with_credentials(self, credentials: Credentials) -> Self {
        Admin {
            credentials: Some(credentials),
            ..self
        }
    }

    /// The bootstrap addresses.
    pub fn bootstrap(&self) -> &[String] {
        &self.bootstrap
    }

    /// Sends `request` to each of `addrs` in turn until one answers with a
    /// response `redirect` does not reject (a connection error or a redirect
    /// moves on to the next address).
    async fn call_any<R: Request>(
        &self,
        api: &'static str,
        addrs: &[String],
        request: &R,
        version: i16,
        redirect: impl Fn(&R::Response) -> Option<ResponseError>,
    ) -> Result<R::Response, AdminError> {
        if let Some(why) = &self.unusable {
            return Err(AdminError::Unreachable {
                api,
                tried: addrs.join(", "),
                last: why.clone(),
            });
        }
        let mut last = String::from("no addresses");
        let mut tried = Vec::new();
        let mut refused = false;
        for addr in addrs {
            if tried.contains(addr) {
                continue;
            }
            tried.push(addr.clone());
            let result = async {
                let mut conn = Connection::connect(addr, self.timeout, self.tls.as_ref()).await?;
                if let Some(credentials) = &self.credentials {
                    conn.authenticate(credentials).await?;
                }
                conn.call(request, version).await
            }
            .await;
            match result {
                Ok(response) => match redirect(&response) {
                    Some(error) => {
                        debug!(api, %addr, %error, "broker redirects; trying the next");
                        last = format!("{addr}: {error}");
                    }
                    None => return Ok(response),
                },
                Err(CallError::Io(e)) => {
                    debug!(api, %addr, error = %e, "broker unreachable; trying the next");
                    last = e;
                }
                Err(CallError::Refused(e)) => {
                    debug!(api, %addr, error = %e, "credentials refused; trying the next");
                    refused = true;
                    last = e;
                }
                Err(CallError::Protocol(message)) => {
                    return Err(AdminError::Protocol {
                        api,
                        addr: addr.clone(),
                        message,
                    })
                }
            }
        }
        if refused {
            return Err(AdminError::Refused {
                api,
                tried: tried.join(","),
                last,
            });
        }
        Err(AdminError::Unreachable {
            api,
            tried: tried.join(","),
            last,
        })
    }

    /// Metadata of every topic (or of `topics`) and of the brokers.
    pub async fn metadata(&self) -> Result<ClusterMetadata, AdminError> {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response = self
            .call_any(
                "Metadata",
                &self.bootstrap,
                &request,
                version::METADATA,
                |_| None,
            )
            .await?;
        let brokers = response
            .brokers
            .iter()
            .map(|b| BrokerInfo {
                id: b.node_id.0,
                addr: format!("{}:{}", b.host, b.port),
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        let mut topics = BTreeMap::new();
        for t in &response.topics {
            let Some(name) = &t.name else { continue };
            if ResponseError::try_from_code(t.error_code).is_some() {
                continue;
            }
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.partition_index,
                        PartitionInfo {
                            leader: p.leader_id.0,
                            replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                            isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                        },
                    )
                })
                .collect();
            topics.insert(name.0.to_string(), partitions);
        }
        Ok(ClusterMetadata {
            brokers,
            controller_id: response.controller_id.0,
            topics,
        })
    }

    /// Where to send requests only the controller may serve: the controller
    /// first, then every broker, then the bootstrap addresses.
    async fn controller_first(&self) -> Result<Vec<String>, AdminError> {
        let meta = self.metadata().await?;
        let mut addrs: Vec<String> = meta
            .addr_of(meta.controller_id)
            .map(str::to_owned)
            .into_iter()
            .collect();
        addrs.extend(meta.brokers.iter().map(|b| b.addr.clone()));
        addrs.extend(self.bootstrap.iter().cloned());
        Ok(addrs)
    }

    /// Creates `topic` with one replica list per partition (the first
    /// replica being the preferred leader) and `config`.
    pub async fn create_topic(
        &self,
        topic: &str,
        assignment: &[Vec<i32>],
        config: &BTreeMap<String, String>,
    ) -> Result<(), AdminError> {
        let mut creatable = CreatableTopic::default();
        creatable.name = TopicName(s(topic));
        creatable.num_partitions = -1;
        creatable.replication_factor = -1;
        creatable.assignments = assignment
            .iter()
            .zip(0..)
            .map(|(replicas, index)| {
                let mut a = CreatableReplicaAssignment::default();
                a.partition_index = index;
                a.broker_ids = replicas.iter().copied().map(BrokerId).collect();
                a
            })
            .collect();
        creatable.configs = config
            .iter()
            .map(|(k, v)| {
                let mut c = CreatableTopicConfig::default();
                c.name = s(k);
                c.value = Some(s(v));
                c
            })
            .collect();
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable])
            .with_timeout_ms(BROKER_TIMEOUT_MS);
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(
                "CreateTopics",
                &addrs,
                &request,
                version::CREATE_TOPICS,
                |r| not_controller(r.topics.iter().map(|t| t.error_code)),
            )
            .await?;
        for t in &response.topics {
            kafka_error(
                "CreateTopics",
                topic,
                t.error_code,
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Grows `topic` to `total` partitions, the new ones with `new_replicas`.
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: i32,
        new_replicas: &[Vec<i32>],
    ) -> Result<(), AdminError> {
        let mut t = CreatePartitionsTopic::default();
        t.name = TopicName(s(topic));
        t.count = total;
        t.assignments = Some(
            new_replicas
                .iter()
                .map(|r| {
                    let mut a = CreatePartitionsAssignment::default();
                    a.broker_ids = r.iter().copied().map(BrokerId).collect();
                    a
                })
                .collect(),
        );
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(BROKER_TIMEOUT_MS);
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(
                "CreatePartitions",
                &addrs,
                &request,
                version::CREATE_PARTITIONS,
                |r| not_controller(r.results.iter().map(|t| t.error_code)),
            )
            .await?;
        for t in &response.results {
            kafka_error(
                "CreatePartitions",
                topic,
                t.error_code,
                t.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Sends `request` to the controller (following NotController answers)
    /// and turns the response's top-level error, as `top_level` reads it,
    /// into an error.
    async fn call_controller<R: Request>(
        &self,
        api: &'static str,
        request: &R,
        version: i16,
        top_level: impl Fn(&R::Response) -> (i16, Option<StrBytes>),
    ) -> Result<R::Response, AdminError> {
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(api, &addrs, request, version, |r| {
                ResponseError::try_from_code(top_level(r).0)
                    .filter(|e| *e == ResponseError::NotController)
            })
            .await?;
        let (code, message) = top_level(&response);
        kafka_error(api, "the request", code, message.as_ref())?;
        Ok(response)
    }

    /// Starts moving each partition to its new replica list
    /// (AlterPartitionReassignments): `(topic, partition, replicas)`.
    pub async fn reassign(&self, moves: &[(String, i32, Vec<i32>)]) -> Result<(), AdminError> {
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for (topic, partition, replicas) in moves {
            let mut p = ReassignablePartition::default();
            p.partition_index = *partition;
            p.replicas = Some(replicas.iter().copied().map(BrokerId).collect());
            topics.entry(topic.as_str()).or_default().push(p);
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(BROKER_TIMEOUT_MS)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let mut t = ReassignableTopic::default();
                        t.name = TopicName(s(name));
                        t.partitions = partitions;
                        t
                    })
                    .collect(),
            );
        let response = self
            .call_controller(
                "AlterPartitionReassignments",
                &request,
                version::ALTER_PARTITION_REASSIGNMENTS,
                |r| (r.error_code, r.error_message.clone()),
            )
            .await?;
        for t in &response.responses {
            for p in &t.partitions {
                kafka_error(
                    "AlterPartitionReassignments",
                    &format!("{}-{}", t.name.0, p.partition_index),
                    p.error_code,
                    p.error_message.as_ref(),
                )?;
            }
        }
        Ok(())
    }

    /// The reassignments in flight, from the controller, by `(topic,
    /// partition)`: each partition's replicas, those being added and those
    /// being removed.
    pub async fn reassignments(&self) -> Result<BTreeMap<(String, i32), Reassigning>, AdminError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(BROKER_TIMEOUT_MS)
            .with_topics(None);
        let response = self
            .call_controller(
                "ListPartitionReassignments",
                &request,
                version::LIST_PARTITION_REASSIGNMENTS,
                |r| (r.error_code, r.error_message.clone()),
            )
            .await?;
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        Ok(response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .map(|(t, p)| {
                let moving = Reassigning {
                    replicas: ids(&p.replicas),
                    adding: ids(&p.adding_replicas),
                    removing: ids(&p.removing_replicas),
                };
                ((t.name.0.to_string(), p.partition_index), moving)
            })
            .collect())
    }

    /// The topic's configs, by name.
    pub async fn describe_topic_config(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, ConfigValue>, AdminError> {
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = TOPIC_RESOURCE;
        resource.resource_name = s(topic);
        resource.configuration_keys = None;
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = self
            .call_any(
                "DescribeConfigs",
                &self.bootstrap,
                &request,
                version::DESCRIBE_CONFIGS,
                |_| None,
            )
            .await?;
        let mut out = BTreeMap::new();
        for result in &response.results {
            kafka_error(
                "DescribeConfigs",
                topic,
                result.error_code,
                result.error_message.as_ref(),
            )?;
            for c in &result.configs {
                out.insert(
                    c.name.to_string(),
                    ConfigValue {
                        value: c.value.as_ref().map(|v| v.to_string()),
                        set_on_topic: c.config_source == DYNAMIC_TOPIC_CONFIG,
                    },
                );
            }
        }
        Ok(out)
    }

    /// Sets `set` and removes `delete` (back to the broker default) on the topic.
    pub async fn alter_topic_config(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        const SET: i8 = 0;
        const DELETE: i8 = 1;
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                let mut c = AlterableConfig::default();
                c.name = s(k);
                c.config_operation = SET;
                c.value = Some(s(v));
                c
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            let mut c = AlterableConfig::default();
            c.name = s(k);
            c.config_operation = DELETE;
            c.value = None;
            c
        }));
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = TOPIC_RESOURCE;
        resource.resource_name = s(topic);
        resource.configs = configs;
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![resource]);
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(
                "IncrementalAlterConfigs",
                &addrs,
                &request,
                version::INCREMENTAL_ALTER_CONFIGS,
                |r| not_controller(r.responses.iter().map(|t| t.error_code)),
            )
            .await?;
        for r in &response.responses {
            kafka_error(
                "IncrementalAlterConfigs",
                topic,
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes `topic`; a topic that does not exist is not an error.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), AdminError> {
        let request = DeleteTopicsRequest::default()
            .with_topic_names(vec![TopicName(s(topic))])
            .with_timeout_ms(BROKER_TIMEOUT_MS);
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(
                "DeleteTopics",
                &addrs,
                &request,
                version::DELETE_TOPICS,
                |r| not_controller(r.responses.iter().map(|t| t.error_code)),
            )
            .await?;
        for r in &response.responses {
            if ResponseError::try_from_code(r.error_code)
                == Some(ResponseError::UnknownTopicOrPartition)
            {
                continue;
            }
            kafka_error(
                "DeleteTopics",
                topic,
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// The SCRAM mechanisms (`SCRAM-SHA-256`, `SCRAM-SHA-512`) `user` has a
    /// credential for.
    pub async fn scram_mechanisms(&self, user: &str) -> Result<Vec<String>, AdminError> {
        let request = DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            describe_user_scram_credentials_request::UserName::default().with_name(s(user)),
        ]));
        let response = self
            .call_any(
                "DescribeUserScramCredentials",
                &self.bootstrap,
                &request,
                version::DESCRIBE_USER_SCRAM_CREDENTIALS,
                |_| None,
            )
            .await?;
        let mut mechanisms = Vec::new();
        for result in &response.results {
            if ResponseError::try_from_code(result.error_code)
                == Some(ResponseError::ResourceNotFound)
            {
                continue;
            }
            kafka_error(
                "DescribeUserScramCredentials",
                user,
                result.error_code,
                result.error_message.as_ref(),
            )?;
            for info in &result.credential_infos {
                mechanisms.push(scram::mechanism_name(info.mechanism).to_owned());
            }
        }
        Ok(mechanisms)
    }

    /// Makes (or replaces) `user`'s credential for `mechanism` from
    /// `password`: salted here, as Kafka's tools do, so the password never
    /// leaves the operator.
    pub async fn upsert_scram(
        &self,
        user: &str,
        mechanism: &str,
        password: &str,
    ) -> Result<(), AdminError> {
        let (code, salt, iterations, salted) =
            scram::salt_password(mechanism, password).map_err(|message| AdminError::Protocol {
                api: "AlterUserScramCredentials",
                addr: String::new(),
                message,
            })?;
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                .with_name(s(user))
                .with_mechanism(code)
                .with_iterations(iterations)
                .with_salt(salt.into())
                .with_salted_password(salted.into()),
        ]);
        self.alter_scram(user, request).await
    }

    /// Deletes `user`'s credential for `mechanism`; none is not an error.
    pub async fn delete_scram(&self, user: &str, mechanism: &str) -> Result<(), AdminError> {
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![
            alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                .with_name(s(user))
                .with_mechanism(scram::mechanism_code(mechanism)),
        ]);
        match self.alter_scram(user, request).await {
            Err(AdminError::Kafka {
                error: ResponseError::ResourceNotFound,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    async fn alter_scram(
        &self,
        user: &str,
        request: AlterUserScramCredentialsRequest,
    ) -> Result<(), AdminError> {
        let addrs = self.controller_first().await?;
        let response = self
            .call_any(
                "AlterUserScramCredentials",
                &addrs,
                &request,
                version::ALTER_USER_SCRAM_CREDENTIALS,
                |r| not_controller(r.results.iter().map(|t| t.error_code)),
            )
            .await?;
        for r in &response.results {
            kafka_error(
                "AlterUserScramCredentials",
                user,
                r.error_code,
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// The group's coordinator, then the bootstrap brokers.
    async fn coordinator_first(&self, group: &str) -> Result<Vec<String>, AdminError> {
        let request = FindCoordinatorRequest::default()
            .with_key(s(group))
            .with_key_type(0);
        let response = self
            .call_any(
                "FindCoordinator",
                &self.bootstrap,
                &request,
                version::FIND_COORDINATOR,
                |r| ResponseError::try_from_code(r.error_code).filter(|e| is_redirect(*e)),
            )
            .await?;
        kafka_error(
            "FindCoordinator",
            group,
            response.error_code,
            response.error_message.as_ref(),
        )?;
        let mut addrs = vec![format!("{}:{}", response.host, response.port)];
        addrs.extend(self.bootstrap.iter().cloned());
        Ok(addrs)
    }

    /// The group's state and member count; `None` when the coordinator
    /// knows no such group.
    pub async fn describe_group(
        &self,
        group: &str,
    ) -> Result<Option<GroupDescription>, AdminError> {
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let addrs = self.coordinator_first(group).await?;
        let response = self
            .call_any(
                "DescribeGroups",
                &addrs,
                &request,
                version::DESCRIBE_GROUPS,
                |r| {
                    r.groups
                        .iter()
                        .filter_map(|g| ResponseError::try_from_code(g.error_code))
                        .find(|e| is_redirect(*e))
                },
            )
            .await?;
        let Some(g) = response.groups.first() else {
            return Ok(None);
        };
        if ResponseError::try_from_code(g.error_code) == Some(ResponseError::GroupIdNotFound) {
            // Not a classic group: maybe one of the consumer protocol (KIP-848).
            return Ok(self.describe_consumer_group(group, &addrs).await);
        }
        kafka_error(
            "DescribeGroups",
            group,
            g.error_code,
            g.error_message.as_ref(),
        )?;
        if g.group_state.as_str() == "Dead" && g.members.is_empty() {
            return Ok(None);
        }
        Ok(Some(GroupDescription {
            state: g.group_state.to_string(),
            members: g.members.len(),
        }))
    }

    /// A consumer-protocol group's state and member count (ConsumerGroupDescribe);
    /// `None` when there is no such group, or the brokers do not serve the
    /// API (they answered DescribeGroups a moment ago, so a failure here is
    /// taken for that).
    async fn describe_consumer_group(
        &self,
        group: &str,
        addrs: &[String],
    ) -> Option<GroupDescription> {
        let request =
            ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
        let response = self
            .call_any(
                "ConsumerGroupDescribe",
                addrs,
                &request,
                version::CONSUMER_GROUP_DESCRIBE,
                |r| {
                    r.groups
                        .iter()
                        .filter_map(|g| ResponseError::try_from_code(g.error_code))
                        .find(|e| is_redirect(*e))
                },
            )
            .await
            .map_err(|e| debug!(group, error = %e, "ConsumerGroupDescribe failed"))
            .ok()?;
        let g = response.groups.first()?;
        if g.error_code != 0 || g.group_state.as_str() == "Dead" {
            return None;
        }
        Some(GroupDescription {
            state: g.group_state.to_string(),
            members: g.members.len(),
        })
    }

    /// Every committed offset of the group.
    pub async fn committed_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, AdminError> {
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None);
        let addrs = self.coordinator_first(group).await?;
        let response = self
            .call_any(
                "OffsetFetch",
                &addrs,
                &request,
                version::OFFSET_FETCH,
                |r| ResponseError::try_from_code(r.error_code).filter(|e| is_redirect(*e)),
            )
            .await?;
        kafka_error("OffsetFetch", group, response.error_code, None)?;
        let mut out = BTreeMap::new();
        for t in &response.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 && p.error_code == 0 {
                    out.insert(
                        (t.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Commits `offsets` for the group as an administrator does: generation
    /// -1 and no member id, which the coordinator accepts only while the
    /// group is empty.
    pub async fn commit_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), AdminError> {
        let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((topic, partition), offset) in offsets {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = -1;
            p.committed_metadata = Some(s(""));
            by_topic.entry(topic).or_default().push(p);
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = TopicName(s(name));
                t.partitions = partitions;
                t
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(topics);
        let addrs = self.coordinator_first(group).await?;
        let response = self
            .call_any(
                "OffsetCommit",
                &addrs,
                &request,
                version::OFFSET_COMMIT,
                |r| {
                    r.topics
                        .iter()
                        .flat_map(|t| &t.partitions)
                        .filter_map(|p| ResponseError::try_from_code(p.error_code))
                        .find(|e| is_redirect(*e))
                },
            )
            .await?;
        for t in &response.topics {
            for p in &t.partitions {
                kafka_error(
                    "OffsetCommit",
                    &format!("{group} {}-{}", t.name.0, p.partition_index),
                    p.error_code,
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// The offset `spec` names on each partition, asked of each partition's
    /// leader. A timestamp later than every record gives the end offset.
    pub async fn list_offsets(
        &self,
        meta: &ClusterMetadata,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, i64>, AdminError> {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        };
        // Group by leader; a partition without a known leader goes to the
        // bootstrap brokers.
        let mut by_leader: BTreeMap<Option<String>, BTreeMap<&str, Vec<i32>>> = BTreeMap::new();
        for (topic, partition) in partitions {
            let leader = meta
                .topics
                .get(topic)
                .and_then(|ps| ps.get(partition))
                .and_then(|p| meta.addr_of(p.leader))
                .map(str::to_owned);
            by_leader
                .entry(leader)
                .or_default()
                .entry(topic)
                .or_default()
                .push(*partition);
        }
        let mut out = BTreeMap::new();
        for (leader, topics) in by_leader {
            let request_topics = topics
                .iter()
                .map(|(topic, ps)| {
                    let mut t = ListOffsetsTopic::default();
                    t.name = TopicName(s(topic));
                    t.partitions = ps
                        .iter()
                        .map(|p| {
                            let mut lp = ListOffsetsPartition::default();
                            lp.partition_index = *p;
                            lp.current_leader_epoch = -1;
                            lp.timestamp = timestamp;
                            lp
                        })
                        .collect();
                    t
                })
                .collect();
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_isolation_level(0)
                .with_topics(request_topics);
            let mut addrs: Vec<String> = leader.into_iter().collect();
            addrs.extend(self.bootstrap.iter().cloned());
            let response = self
                .call_any(
                    "ListOffsets",
                    &addrs,
                    &request,
                    version::LIST_OFFSETS,
                    |r| {
                        r.topics
                            .iter()
                            .flat_map(|t| &t.partitions)
                            .filter_map(|p| ResponseError::try_from_code(p.error_code))
                            .find(|e| is_redirect(*e))
                    },
                )
                .await?;
            for t in &response.topics {
                for p in &t.partitions {
                    let subject = format!("{}-{}", t.name.0, p.partition_index);
                    kafka_error("ListOffsets", &subject, p.error_code, None)?;
                    out.insert((t.name.0.to_string(), p.partition_index), p.offset);
                }
            }
        }
        if matches!(spec, OffsetSpec::Timestamp(_)) && out.values().any(|o| *o < 0) {
            let past_end: Vec<TopicPartition> = out
                .iter()
                .filter(|(_, o)| **o < 0)
                .map(|(tp, _)| tp.clone())
                .collect();
            let ends = Box::pin(self.list_offsets(meta, &past_end, OffsetSpec::Latest)).await?;
            out.extend(ends);
        }
        Ok(out)
    }
}
