//! Every advertised API at every advertised version: the request is encoded
//! and sent through `dispatch` as a client would, and the response must
//! encode and decode at that version. Guards the rule that what ApiVersions
//! advertises is really served.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::{dispatch, Dispatch, SUPPORTED};
use crate::broker::{Broker, Identity};
use crate::config::BrokerSettings;
use crate::metrics::Metrics;

/// The response a dispatched request's step leads to.
async fn answer(step: Result<super::Step, String>) -> Result<Option<Bytes>, String> {
    let mut step = step?;
    let outgoing = loop {
        match step {
            super::Step::Done(outgoing) => break outgoing,
            super::Step::Later(answer) => break answer.await?,
            super::Step::Held(inner, _) => step = *inner,
        }
    };
    outgoing
        .map(|o| o.to_bytes().map_err(|e| e.to_string()))
        .transpose()
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic_name(text: &str) -> TopicName {
    TopicName(s(text))
}

/// A single-node broker (its own controller quorum) with its gRPC listener
/// on a free port; the background tasks stop when the test's runtime ends.
async fn open_broker(dir: &std::path::Path) -> Arc<Broker> {
    open_broker_with(dir, &[]).await
}

/// A one-broker cluster with `extra` settings (`key=value`).
async fn open_broker_with(dir: &std::path::Path, extra: &[&str]) -> Arc<Broker> {
    use crate::controller::{Controller, ControllerConfig, Registration};
    use std::time::Duration;
    let identity = Identity {
        node_id: 1,
        host: "127.0.0.1".into(),
        port: 9092,
        rack: Some("zone-a".into()),
    };
    let mut pairs = vec!["group.initial.rebalance.delay.ms=0".to_string()];
    pairs.extend(extra.iter().map(|s| s.to_string()));
    let settings = BrokerSettings::from_pairs(&pairs).expect("valid settings");
    let rpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("rpc listener");
    let rpc_address = rpc.local_addr().expect("bound").to_string();
    let controller = Controller::start(ControllerConfig {
        node_id: 1,
        voters: vec![crate::config::Voter {
            id: 1,
            address: rpc_address.clone(),
        }],
        data_dir: dir.to_path_buf(),
        session_timeout: Duration::from_secs(30),
        heartbeat_interval: Duration::from_millis(500),
        election_timeout: Duration::from_millis(500),
        rebalance: None,
    })
    .await
    .expect("controller starts");
    let broker = Arc::new(
        Broker::open(
            identity,
            dir,
            settings,
            Arc::new(Metrics::register()),
            controller,
            1,
        )
        .expect("broker opens"),
    );
    crate::join_cluster(
        &broker,
        rpc,
        Registration {
            id: 1,
            rack: Some("zone-a".into()),
            host: "127.0.0.1".into(),
            port: 9092,
            rpc_address,
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect("joins its own cluster");
    broker
}

fn records(values: &[&str], timestamp: i64) -> Bytes {
    let entries = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                Some(Bytes::from(format!("k{i}"))),
                Some(Bytes::from(v.to_string())),
            )
        })
        .collect();
    crate::records::encode_batch(entries, timestamp, None)
        .expect("records encode")
        .freeze()
}

/// Sends one request through `dispatch` and decodes the response.
async fn call(
    broker: &Arc<Broker>,
    key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Option<ResponseKind> {
    call_as(broker, crate::acl::ANONYMOUS, key, version, request).await
}

/// [`call`] from a client that authenticated as `principal`.
async fn call_as(
    broker: &Arc<Broker>,
    principal: &str,
    key: ApiKey,
    version: i16,
    request: RequestKind,
) -> Option<ResponseKind> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(s("versions-test")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("header encodes");
    request
        .encode(&mut frame, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version} request encodes: {e}"));
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("valid address");
    let session = Arc::new(crate::acl::Session::new(principal.into(), peer));
    let Dispatch::Respond(fut) = dispatch(broker, frame, peer, &session) else {
        panic!("{key:?} v{version} closed the connection");
    };
    let mut bytes = answer(fut.await)
        .await
        .unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"))?;
    let size = bytes.get_i32();
    assert_eq!(size as usize, bytes.len(), "{key:?} v{version} size prefix");
    let header = ResponseHeader::decode(&mut bytes, key.response_header_version(version))
        .expect("response header");
    assert_eq!(header.correlation_id, 7);
    let response = ResponseKind::decode(key, &mut bytes, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version} response decodes: {e}"));
    assert!(
        !bytes.has_remaining(),
        "{key:?} v{version} response has trailing bytes"
    );
    Some(response)
}

use kafka_protocol::protocol::Decodable;

/// Finds the coordinator of `transactional_id` (which creates
/// `__transaction_state`) and initialises a producer for it, retrying as a
/// client would until the coordinator has loaded.
async fn transactional_producer(broker: &Arc<Broker>, transactional_id: &str) -> (i64, i16) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_key(s(transactional_id)),
        );
        let response = call(broker, ApiKey::FindCoordinator, 3, request).await;
        if matches!(&response, Some(r) if first_error(r) == 0) {
            if let Ok(producer) =
                crate::txn::init_producer_id(broker, transactional_id, 60_000, None).await
            {
                return producer;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no transaction coordinator: {response:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A one-broker cluster with a one-partition `topic` and a transactional
/// producer `(id, epoch)` for `transactional_id`.
async fn transactional_broker(
    dir: &std::path::Path,
    topic: &str,
    transactional_id: &str,
) -> (Arc<Broker>, (i64, i16)) {
    let broker = open_broker(dir).await;
    broker
        .create_topic(topic, broker.default_assignment(1), Default::default())
        .await
        .expect("topic created");
    let producer = transactional_producer(&broker, transactional_id).await;
    (broker, producer)
}

/// The transactional id the sample transactional requests use.
const SAMPLE_TXN: &str = "versions-txn";

fn request_for(key: ApiKey, version: i16, topic: &str, id: uuid::Uuid, now: i64) -> RequestKind {
    request_with_producer(key, version, topic, id, now, (-1, -1))
}

/// A sample request; transactional ones come from producer `(id, epoch)`
/// of [`SAMPLE_TXN`].
fn request_with_producer(
    key: ApiKey,
    version: i16,
    topic: &str,
    id: uuid::Uuid,
    now: i64,
    producer: (i64, i16),
) -> RequestKind {
    let txn_id = || TransactionalId(s(SAMPLE_TXN));
    match key {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name(topic))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records(&["a", "b"], now)))])]),
        ),
        ApiKey::Fetch => {
            let wanted = FetchTopic::default().with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]);
            let wanted = if version >= 13 {
                wanted.with_topic_id(id)
            } else {
                wanted.with_topic(topic_name(topic))
            };
            RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_min_bytes(1)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![wanted]),
            )
        }
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-2),
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(now),
            ]),
        ]))
        }
        ApiKey::Metadata => {
            let wanted = MetadataRequestTopic::default().with_name(Some(topic_name(topic)));
            let request = MetadataRequest::default().with_topics(Some(vec![wanted]));
            RequestKind::Metadata(if version >= 4 {
                request.with_allow_auto_topic_creation(true)
            } else {
                request
            })
        }
        ApiKey::ApiVersions => RequestKind::ApiVersions(if version >= 3 {
            ApiVersionsRequest::default()
                .with_client_software_name(s("test"))
                .with_client_software_version(s("1"))
        } else {
            ApiVersionsRequest::default()
        }),
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(&format!("created-v{version}")))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))])]),
        ),
        ApiKey::DeleteTopics => {
            let name = format!("created-v{}", version + 1);
            RequestKind::DeleteTopics(if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(topic_name(&name)))
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            })
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(topic)),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s("1")),
                ]),
        ),
        ApiKey::CreatePartitions => RequestKind::CreatePartitions(
            CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(2 + version as i32)]),
        ),
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(s("60000")))]),
            ]),
        ),
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("60000")))]),
            ]))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(if version >= 1 {
            DescribeClusterRequest::default().with_endpoint_type(1)
        } else {
            DescribeClusterRequest::default()
        }),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        }),
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("join-v{version}"))))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"))]);
            RequestKind::JoinGroup(if version >= 1 {
                request.with_rebalance_timeout_ms(10_000)
            } else {
                request
            })
        }
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m"))
                .with_generation_id(1),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m"))
                .with_generation_id(1),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("m"))
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m"))
        }),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("standalone")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1 + i64::from(version)),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("standalone")))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("standalone")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partition_indexes(vec![0]),
                ]))
        }),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        // KIP-848: each version's request joins a member to one group.
        ApiKey::ConsumerGroupHeartbeat => RequestKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("versions-848")))
                .with_member_id(s(&format!("member-{now}")))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![topic_name(topic)])),
        ),
        ApiKey::ConsumerGroupDescribe => RequestKind::ConsumerGroupDescribe(
            ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(s("versions-848"))]),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("standalone"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(s("standalone")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(topic_name("elsewhere"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        // Groups joined at v4+ hold only a pending member (MEMBER_ID_REQUIRED), so are empty.
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(s(&format!("join-v{}", version + 4)))]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::OffsetForLeaderEpoch => RequestKind::OffsetForLeaderEpoch(
            OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                        ]),
                ]),
        ),
        // Moving the only replica to the broker it is on: a no-op reassignment.
        ApiKey::AlterPartitionReassignments => RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(1)])),
                        ]),
                ]),
        ),
        ApiKey::ListPartitionReassignments => RequestKind::ListPartitionReassignments(
            ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
        ),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(producer.0))
                .with_v3_and_below_producer_epoch(producer.1)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![0]),
                ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_group_id(GroupId(s("versions-group"))),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id())
                .with_group_id(GroupId(s("versions-group")))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_committed(version % 2 == 0),
        ),
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
        ),
        ApiKey::ListTransactions => RequestKind::ListTransactions(
            ListTransactionsRequest::default().with_duration_filter(-1),
        ),
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(topic_name(topic))
                    .with_partition_indexes(vec![0]),
            ]))
        }
        // Offset 0 is the log start: a no-op that still answers the low watermark.
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ]),
            ]))
        }
        // An abort marker for the sample producer, as `kafka-transactions.sh abort` sends.
        ApiKey::WriteTxnMarkers => {
            RequestKind::WriteTxnMarkers(WriteTxnMarkersRequest::default().with_markers(vec![
                write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(producer.0))
                    .with_producer_epoch(producer.1)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(topic_name(topic))
                            .with_partition_indexes(vec![0]),
                    ]),
            ]))
        }
        ApiKey::DescribeClientQuotas => RequestKind::DescribeClientQuotas(
            DescribeClientQuotasRequest::default().with_components(vec![
                describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(s("user"))
                    .with_match_type(2)
                    .with_match(None),
            ]),
        ),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")),
        ),
        ApiKey::SaslAuthenticate => RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=u,r=x")),
        ),
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(None),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(s("versions-user"))
                    .with_mechanism(1)
                    .with_iterations(4096)
                    .with_salt(Bytes::from_static(b"salt"))
                    .with_salted_password(Bytes::from_static(&[7; 32])),
            ]),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(Some(vec![
                describe_log_dirs_request::DescribableLogDirTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![0]),
            ])))
        }
        // Every partition: none needs it here (each is led by its only replica).
        ApiKey::ElectLeaders => RequestKind::ElectLeaders(
            ElectLeadersRequest::default()
                .with_topic_partitions(None)
                .with_timeout_ms(1000),
        ),
        ApiKey::AlterClientQuotas => {
            RequestKind::AlterClientQuotas(AlterClientQuotasRequest::default().with_entries(vec![
                alter_client_quotas_request::EntryData::default()
                    .with_entity(vec![alter_client_quotas_request::EntityData::default()
                        .with_entity_type(s("client-id"))
                        .with_entity_name(Some(s("versions-client")))])
                    .with_ops(vec![alter_client_quotas_request::OpData::default()
                        .with_key(s("producer_byte_rate"))
                        .with_value(1e9)]),
            ]))
        }
        ApiKey::CreateAcls => RequestKind::CreateAcls(CreateAclsRequest::default().with_creations(
            vec![create_acls_request::AclCreation::default()
                .with_resource_type(2)
                .with_resource_name(s(topic))
                .with_resource_pattern_type(3)
                .with_principal(s("User:versions"))
                .with_host(s("*"))
                .with_operation(3)
                .with_permission_type(3)],
        )),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(
            DescribeAclsRequest::default()
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        ),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(
            vec![delete_acls_request::DeleteAclsFilter::default()
                .with_resource_type_filter(2)
                .with_resource_name_filter(Some(s(topic)))
                .with_pattern_type_filter(3)
                .with_principal_filter(Some(s("User:versions")))
                .with_host_filter(None)
                .with_operation(1)
                .with_permission_type(1)],
        )),
        other => panic!("no sample request for {other:?}; add one"),
    }
}

/// The first error code in a response, if any; checks that handlers succeed.
fn first_error(response: &ResponseKind) -> i16 {
    match response {
        ResponseKind::Produce(r) => r.responses[0].partition_responses[0].error_code,
        ResponseKind::Fetch(r) => r.error_code.max(r.responses[0].partitions[0].error_code),
        ResponseKind::ListOffsets(r) => r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .max()
            .unwrap_or(0),
        ResponseKind::Metadata(r) => r.topics[0].error_code,
        ResponseKind::ApiVersions(r) => r.error_code,
        ResponseKind::CreateTopics(r) => r.topics[0].error_code,
        ResponseKind::DeleteTopics(r) => r.responses[0].error_code,
        ResponseKind::DescribeConfigs(r) => {
            r.results.iter().map(|x| x.error_code).max().unwrap_or(0)
        }
        ResponseKind::CreatePartitions(r) => r.results[0].error_code,
        ResponseKind::IncrementalAlterConfigs(r) => r.responses[0].error_code,
        ResponseKind::DescribeCluster(r) => r.error_code,
        ResponseKind::FindCoordinator(r) => r
            .error_code
            .max(r.coordinators.first().map_or(0, |c| c.error_code)),
        ResponseKind::JoinGroup(r) => r.error_code,
        ResponseKind::SyncGroup(r) => r.error_code,
        ResponseKind::Heartbeat(r) => r.error_code,
        ResponseKind::LeaveGroup(r) => r
            .error_code
            .max(r.members.first().map_or(0, |m| m.error_code)),
        ResponseKind::OffsetCommit(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::OffsetFetch(r) => r
            .error_code
            .max(r.groups.first().map_or(0, |g| g.error_code)),
        ResponseKind::ListGroups(r) => r.error_code,
        ResponseKind::ConsumerGroupHeartbeat(r) => r.error_code,
        ResponseKind::ConsumerGroupDescribe(r) => r.groups[0].error_code,
        ResponseKind::DescribeGroups(r) => r.groups[0].error_code,
        ResponseKind::DeleteGroups(r) => r.results[0].error_code,
        ResponseKind::OffsetDelete(r) => r.error_code.max(r.topics[0].partitions[0].error_code),
        ResponseKind::InitProducerId(r) => r.error_code,
        ResponseKind::OffsetForLeaderEpoch(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::AlterPartitionReassignments(r) => {
            r.error_code.max(r.responses[0].partitions[0].error_code)
        }
        ResponseKind::ListPartitionReassignments(r) => r.error_code,
        ResponseKind::AddPartitionsToTxn(r) => {
            r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
        }
        ResponseKind::AddOffsetsToTxn(r) => r.error_code,
        ResponseKind::TxnOffsetCommit(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::EndTxn(r) => r.error_code,
        ResponseKind::DescribeTransactions(r) => r.transaction_states[0].error_code,
        ResponseKind::ListTransactions(r) => r.error_code,
        ResponseKind::DescribeProducers(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::WriteTxnMarkers(r) => r.markers[0].topics[0].partitions[0].error_code,
        ResponseKind::DeleteRecords(r) => r.topics[0].partitions[0].error_code,
        ResponseKind::AlterConfigs(r) => r.responses[0].error_code,
        ResponseKind::SaslHandshake(r) => r.error_code,
        ResponseKind::DescribeClientQuotas(r) => r.error_code,
        ResponseKind::SaslAuthenticate(r) => r.error_code,
        ResponseKind::DescribeUserScramCredentials(r) => r.error_code,
        ResponseKind::AlterUserScramCredentials(r) => r.results[0].error_code,
        ResponseKind::DescribeLogDirs(r) => {
            // The sample topic's partition 0 is here.
            assert_eq!(r.results[0].topics[0].partitions[0].partition_index, 0);
            r.error_code.max(r.results[0].error_code)
        }
        ResponseKind::ElectLeaders(r) => r
            .replica_election_results
            .iter()
            .flat_map(|t| t.partition_result.iter().map(|p| p.error_code))
            .fold(r.error_code, i16::max),
        ResponseKind::CreateAcls(r) => r.results[0].error_code,
        ResponseKind::AlterClientQuotas(r) => r.entries[0].error_code,
        ResponseKind::DescribeAcls(r) => r.error_code,
        ResponseKind::DeleteAcls(r) => r.filter_results[0].error_code,
        _ => -1,
    }
}

#[tokio::test]
async fn every_advertised_version_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    // With ACLs checked, as a super user: every request passes the gate.
    let broker = open_broker_with(
        dir.path(),
        &[
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
        ],
    )
    .await;
    let topic = "versions";
    let created = broker
        .create_topic(topic, broker.default_assignment(1), Default::default())
        .await
        .expect("topic created");
    let now = crate::clock::now_ms();
    // The first FindCoordinator creates __consumer_offsets; wait until this
    // broker coordinates, as a client would by retrying.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let request = request_for(ApiKey::FindCoordinator, 3, topic, created.id, now);
        let response = call(&broker, ApiKey::FindCoordinator, 3, request).await;
        let found = matches!(&response, Some(r) if first_error(r) == 0);
        if found && broker.groups.owns("versions-group").is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no coordinator: {response:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The same for the transaction coordinator, then a transactional producer.
    let producer = transactional_producer(&broker, SAMPLE_TXN).await;
    // Produce first so fetches and lookups have data; a transaction is
    // open before EndTxn.
    let mut order: Vec<_> = SUPPORTED.to_vec();
    order.sort_by_key(|(k, _)| match k {
        ApiKey::Produce => 0,
        ApiKey::CreateTopics => 1,
        ApiKey::DeleteTopics => 2,
        ApiKey::OffsetCommit => 3,
        ApiKey::JoinGroup => 4,
        ApiKey::AddPartitionsToTxn => 5,
        ApiKey::AddOffsetsToTxn => 6,
        ApiKey::TxnOffsetCommit => 7,
        ApiKey::EndTxn => 8,
        ApiKey::DeleteGroups => 10,
        _ => 9,
    });
    for (key, range) in order {
        for version in range.min..=range.max {
            if key == ApiKey::Produce && version < 3 {
                continue; // message format v0/v1: refused at dispatch, tested below
            }
            if key == ApiKey::EndTxn && version > 0 {
                // Open the next transaction once the last one's markers are written.
                let reopen = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
                while crate::txn::add_partitions(
                    &broker,
                    SAMPLE_TXN,
                    producer.0,
                    producer.1,
                    vec![(topic.to_string(), 0)],
                )
                .await
                    == Err(ResponseError::ConcurrentTransactions)
                {
                    assert!(
                        tokio::time::Instant::now() < reopen,
                        "markers never written"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
            let request = request_with_producer(key, version, topic, created.id, now, producer);
            let response = call(&broker, key, version, request)
                .await
                .expect("a response");
            let expected = match key {
                // Requests from a member this broker never saw.
                ApiKey::SyncGroup | ApiKey::Heartbeat | ApiKey::LeaveGroup => {
                    ResponseError::UnknownMemberId.code()
                }
                // KIP-394: the first join of a dynamic member gets its id this way.
                ApiKey::JoinGroup if version >= 4 => ResponseError::MemberIdRequired.code(),
                // A PLAINTEXT listener does not authenticate.
                ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {
                    ResponseError::IllegalSaslState.code()
                }
                _ => 0,
            };
            assert_eq!(
                first_error(&response),
                expected,
                "{key:?} v{version}: {response:?}"
            );
        }
    }
    // Records produced by every Produce version are all there, in order,
    // and each EndTxn's marker after them.
    let log_end = || {
        broker
            .topics
            .partition(topic, 0)
            .expect("partition")
            .with_log(|l| Ok(l.log_end_offset()))
            .expect("log")
    };
    let produce_versions = i64::from(super::produce::VERSIONS.max - 3 + 1);
    // One marker per EndTxn and per WriteTxnMarkers.
    let (end_txn, write) = (
        super::txn::END_TXN_VERSIONS,
        super::txn::WRITE_MARKERS_VERSIONS,
    );
    let markers = end_txn.max - end_txn.min + 1 + write.max - write.min + 1;
    let expected = 2 * produce_versions + i64::from(markers);
    // The last marker is written after its EndTxn answered.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while log_end() < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(log_end(), expected);
}

#[tokio::test]
async fn old_produce_versions_close_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&0i16.to_be_bytes()); // Produce
    frame.extend_from_slice(&2i16.to_be_bytes()); // v2
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff]); // null client id
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("valid address");
    assert!(matches!(
        dispatch(&broker, frame, peer, &anonymous(peer)),
        Dispatch::Close(_)
    ));
}

#[tokio::test]
async fn unknown_api_versions_version_gets_v0_answer_with_ranges() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    frame.extend_from_slice(&99i16.to_be_bytes()); // a version from the future
    frame.extend_from_slice(&5i32.to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("valid address");
    let Dispatch::Respond(fut) = dispatch(&broker, frame, peer, &anonymous(peer)) else {
        panic!("closed")
    };
    let mut bytes = answer(fut.await)
        .await
        .expect("encodes")
        .expect("a response");
    bytes.advance(4);
    let header = ResponseHeader::decode(&mut bytes, 0).expect("v0 header");
    assert_eq!(header.correlation_id, 5);
    let response = ApiVersionsResponse::decode(&mut bytes, 0).expect("v0 body");
    assert_eq!(
        response.error_code,
        ResponseError::UnsupportedVersion.code()
    );
    assert!(response
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
}

#[tokio::test]
async fn unknown_api_key_closes_the_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&9999i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("valid address");
    assert!(matches!(
        dispatch(&broker, frame, peer, &anonymous(peer)),
        Dispatch::Close(_)
    ));
}

/// A reassignment to another number of replicas changes the replication
/// factor (v0, and v1 by default), and a v1 request that forbids it
/// (KIP-860) is refused with INVALID_REPLICATION_FACTOR naming the counts.
#[tokio::test]
async fn a_reassignment_changes_the_replication_factor_unless_told_not_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    broker
        .create_topic("grow", broker.default_assignment(1), Default::default())
        .await
        .expect("topic created");
    let request = |allow: bool| {
        RequestKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(10_000)
                .with_allow_replication_factor_change(allow)
                .with_topics(vec![
                    alter_partition_reassignments_request::ReassignableTopic::default()
                        .with_name(topic_name("grow"))
                        .with_partitions(vec![
                            alter_partition_reassignments_request::ReassignablePartition::default()
                                .with_partition_index(0)
                                .with_replicas(Some(vec![BrokerId(1), BrokerId(2)])),
                        ]),
                ]),
        )
    };
    // Allowed, the change reaches the controller, which refuses broker 2
    // because this one-broker cluster has no such broker.
    for (version, allow, code, words) in [
        (0, true, ResponseError::InvalidReplicaAssignment, "broker 2"),
        (1, true, ResponseError::InvalidReplicaAssignment, "broker 2"),
        (
            1,
            false,
            ResponseError::InvalidReplicationFactor,
            "has 1 replicas; a reassignment to 2 replicas",
        ),
    ] {
        let Some(ResponseKind::AlterPartitionReassignments(r)) = call(
            &broker,
            ApiKey::AlterPartitionReassignments,
            version,
            request(allow),
        )
        .await
        else {
            panic!("no AlterPartitionReassignments response")
        };
        let answer = &r.responses[0].partitions[0];
        assert_eq!(answer.error_code, code.code(), "v{version}: {answer:?}");
        let message = answer.error_message.as_deref().unwrap_or_default();
        assert!(message.contains(words), "v{version}: {message}");
    }
    let image = broker.image();
    let p = image.partition("grow", 0).expect("partition");
    assert_eq!(p.replicas, vec![1]);
}

/// The KIP-73 throttles are dynamic configs, as Kafka's reassignment tool
/// sets them: rates per broker or cluster-wide (checked, shown by
/// DescribeConfigs with their sources), replica lists per topic (checked,
/// with APPEND and SUBTRACT), and removed again by DELETE or by a legacy
/// AlterConfigs that leaves them out.
#[tokio::test]
async fn replication_throttles_are_dynamic_configs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    broker
        .create_topic(
            "throttled",
            broker.default_assignment(1),
            Default::default(),
        )
        .await
        .expect("topic created");
    let alter = |resource_type: i8, name: &str, key: &str, op: i8, value: Option<&str>| {
        RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(s(name))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s(key))
                        .with_config_operation(op)
                        .with_value(value.map(s))]),
            ]),
        )
    };
    let leader_rate = "leader.replication.throttled.rate";
    let follower_rate = "follower.replication.throttled.rate";
    let follower_replicas = "follower.replication.throttled.replicas";
    let cases = [
        (4, "1", leader_rate, 0, Some("1000"), 0),
        (4, "", follower_rate, 0, Some("2000"), 0),
        (4, "1", follower_rate, 0, Some("3000"), 0),
        (4, "1", follower_rate, 1, None, 0),
        (4, "1", leader_rate, 0, Some("fast"), 40),
        (4, "1", leader_rate, 0, Some("-1"), 40),
        (4, "1", leader_rate, 2, Some("1"), 42),
        (4, "1", "num.partitions", 0, Some("3"), 42),
        (4, "1", "no.such.config", 0, Some("3"), 40),
        (4, "77", leader_rate, 0, Some("1000"), 42),
        (
            4,
            "1",
            "replica.alter.log.dirs.io.max.bytes.per.second",
            1,
            None,
            0,
        ),
        (
            4,
            "1",
            "replica.alter.log.dirs.io.max.bytes.per.second",
            0,
            Some("1"),
            40,
        ),
        (2, "throttled", follower_replicas, 0, Some("0:1"), 0),
        (2, "throttled", follower_replicas, 2, Some("1:1,0:1"), 0),
        (2, "throttled", follower_replicas, 3, Some("0:1"), 0),
        (2, "throttled", follower_replicas, 0, Some("0:one"), 40),
        (
            2,
            "throttled",
            "leader.replication.throttled.replicas",
            0,
            Some("*"),
            0,
        ),
        (2, "throttled", "cleanup.policy", 2, Some("compact"), 0),
        (2, "throttled", "retention.ms", 2, Some("1"), 40),
    ];
    for (resource_type, name, key, op, value, expected) in cases {
        let request = alter(resource_type, name, key, op, value);
        let Some(ResponseKind::IncrementalAlterConfigs(r)) =
            call(&broker, ApiKey::IncrementalAlterConfigs, 1, request).await
        else {
            panic!("no IncrementalAlterConfigs response")
        };
        let answer = &r.responses[0];
        assert_eq!(
            answer.error_code, expected,
            "op {op} of {key} on {name:?}: {answer:?}"
        );
        if expected != 0 {
            let message = answer.error_message.as_deref().unwrap_or_default();
            assert!(
                message.contains(key) || message.contains(name),
                "message names the config or resource: {message}"
            );
        }
    }
    let image = broker.image();
    let configs = |resource: &str| {
        image
            .broker_configs
            .get(resource)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        configs("1").get(leader_rate).map(String::as_str),
        Some("1000")
    );
    assert_eq!(configs("1").get(follower_rate), None);
    assert_eq!(
        configs("").get(follower_rate).map(String::as_str),
        Some("2000")
    );
    let topic = broker.topics.get("throttled").expect("topic");
    assert_eq!(
        topic.configs.0.get(follower_replicas).map(String::as_str),
        Some("1:1")
    );
    assert_eq!(
        topic.configs.0.get("cleanup.policy").map(String::as_str),
        Some("delete,compact")
    );

    // DescribeConfigs: the broker's own value, else the cluster default.
    let describe = |name: &str| {
        RequestKind::DescribeConfigs(
            DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s(name))
                    .with_configuration_keys(Some(vec![s(leader_rate), s(follower_rate)]))]),
        )
    };
    for (name, expected) in [
        (
            "1",
            vec![(follower_rate, "2000", 3), (leader_rate, "1000", 2)],
        ),
        ("", vec![(follower_rate, "2000", 3)]),
    ] {
        let Some(ResponseKind::DescribeConfigs(r)) =
            call(&broker, ApiKey::DescribeConfigs, 4, describe(name)).await
        else {
            panic!("no DescribeConfigs response")
        };
        let shown: Vec<(String, String, i8)> = r.results[0]
            .configs
            .iter()
            .map(|c| {
                let value = c.value.as_deref().unwrap_or_default().to_string();
                (c.name.to_string(), value, c.config_source)
            })
            .collect();
        let expected: Vec<(String, String, i8)> = expected
            .into_iter()
            .map(|(k, v, source)| (k.to_string(), v.to_string(), source))
            .collect();
        assert_eq!(shown, expected, "broker {name:?}");
    }

    // A legacy AlterConfigs replaces the broker's dynamic configs.
    let legacy = RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("1"))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(s(follower_rate))
                .with_value(Some(s("500")))]),
    ]));
    let Some(ResponseKind::AlterConfigs(r)) = call(&broker, ApiKey::AlterConfigs, 1, legacy).await
    else {
        panic!("no AlterConfigs response")
    };
    assert_eq!(r.responses[0].error_code, 0, "{r:?}");
    let image = broker.image();
    assert_eq!(
        image.broker_configs.get("1"),
        Some(
            &[(follower_rate.to_string(), "500".to_string())]
                .into_iter()
                .collect()
        )
    );
}

/// The transaction coordinator's answers along a producer's life: epochs
/// bumped by InitProducerId (a lost answer's retry gets the same epoch, an
/// older producer is fenced), an open transaction aborted by a new instance
/// and by its timeout, and the errors for requests out of turn.
#[tokio::test]
async fn the_transaction_coordinator_fences_and_aborts_as_kafka_does() {
    use crate::txn::{self, log::TxnState};
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, tid) = ("txn-states", "life");
    let (broker, (pid, epoch)) = transactional_broker(dir.path(), topic, tid).await;
    let state = || {
        broker
            .txns
            .describe(tid)
            .expect("coordinated here")
            .expect("known")
    };
    let partition = || vec![(topic.to_string(), 0)];
    let settle = |want: TxnState| {
        let broker = broker.clone();
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
            loop {
                let m = broker.txns.describe(tid).expect("ours").expect("known");
                if m.state == want {
                    return m;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "stuck in {:?}",
                    m.state
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };

    assert_eq!(
        txn::init_producer_id(&broker, tid, i32::MAX, None).await,
        Err(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        txn::end_txn(&broker, tid, pid, epoch, true).await,
        Err(ResponseError::InvalidTxnState),
        "nothing to commit"
    );
    assert_eq!(
        txn::add_partitions(&broker, tid, pid + 1, epoch, partition()).await,
        Err(ResponseError::InvalidProducerIdMapping)
    );
    txn::add_partitions(&broker, tid, pid, epoch, partition())
        .await
        .expect("added");
    assert_eq!(state().state, TxnState::Ongoing);
    txn::end_txn(&broker, tid, pid, epoch, true)
        .await
        .expect("committing");
    settle(TxnState::CompleteCommit).await;
    assert_eq!(
        txn::end_txn(&broker, tid, pid, epoch, true).await,
        Ok(()),
        "a retried commit"
    );

    // KIP-360: the producer bumps its own epoch; a retry of that gets the same answer.
    let bumped = txn::init_producer_id(&broker, tid, 60_000, Some((pid, epoch)))
        .await
        .expect("bumped");
    assert_eq!(bumped, (pid, epoch + 1));
    assert_eq!(
        txn::init_producer_id(&broker, tid, 60_000, Some((pid, epoch))).await,
        Ok(bumped)
    );
    assert_eq!(
        txn::add_partitions(&broker, tid, pid, epoch, partition()).await,
        Err(ResponseError::ProducerFenced),
        "the old epoch is fenced"
    );

    // A new instance aborts the open transaction, then gets the next epoch.
    txn::add_partitions(&broker, tid, pid, bumped.1, partition())
        .await
        .expect("added");
    assert_eq!(
        txn::init_producer_id(&broker, tid, 60_000, None).await,
        Err(ResponseError::ConcurrentTransactions)
    );
    let aborted = settle(TxnState::CompleteAbort).await;
    assert_eq!(aborted.producer_epoch, bumped.1 + 1, "fenced by the abort");
    let fresh = txn::init_producer_id(&broker, tid, 100, None)
        .await
        .expect("new instance");
    assert_eq!(fresh, (pid, bumped.1 + 2));

    // Open past its 100 ms timeout: aborted with the epoch bumped.
    txn::add_partitions(&broker, tid, pid, fresh.1, partition())
        .await
        .expect("added");
    let timed_out = settle(TxnState::CompleteAbort).await;
    assert_eq!(timed_out.producer_epoch, fresh.1 + 1);
    assert_eq!(
        txn::end_txn(&broker, tid, pid, fresh.1, true).await,
        Err(ResponseError::ProducerFenced)
    );
    // Every marker is in the log: one commit and two aborts.
    let markers = broker
        .topics
        .partition(topic, 0)
        .expect("partition")
        .with_log(|l| Ok(l.log_end_offset()))
        .expect("log");
    assert_eq!(markers, 3);
}

/// A transactional id idle for `transactional.id.expiration.ms` is
/// forgotten: its next InitProducerId gets a new producer id.
#[tokio::test]
async fn idle_transactional_ids_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker_with(dir.path(), &["transactional.id.expiration.ms=300"]).await;
    let tid = "short-lived";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let (pid, _) = transactional_producer(&broker, tid).await;
    while broker
        .txns
        .describe(tid)
        .expect("coordinated here")
        .is_some()
    {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (again, epoch) = crate::txn::init_producer_id(&broker, tid, 60_000, None)
        .await
        .expect("a new producer");
    assert_ne!(again, pid);
    assert_eq!(epoch, 0);
}

/// KIP-890: a transactional batch for a partition its transaction does not
/// include is refused (INVALID_TXN_STATE, TRANSACTION_ABORTABLE from Produce
/// v11) and nothing is appended; so is one that arrives after its
/// transaction was aborted, which would otherwise open a transaction no
/// coordinator ends. Transactional records need the transactional id.
#[tokio::test]
async fn transactional_batches_need_their_partition_in_the_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, tid) = ("txn-verified", "verified");
    let (broker, (pid, epoch)) = transactional_broker(dir.path(), topic, tid).await;
    let produce = |version: i16, transactional_id: Option<&str>| {
        let broker = broker.clone();
        let batch = crate::records::encode_transactional_batch(
            vec![(Some(Bytes::from("k")), Some(Bytes::from("v")))],
            crate::clock::now_ms(),
            pid,
            epoch,
        )
        .expect("encodes")
        .freeze();
        let request = ProduceRequest::default()
            .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch))])]);
        async move {
            match call(
                &broker,
                ApiKey::Produce,
                version,
                RequestKind::Produce(request),
            )
            .await
            {
                Some(ResponseKind::Produce(r)) => r.responses[0].partition_responses[0].clone(),
                other => panic!("not a produce response: {other:?}"),
            }
        }
    };
    let log_end = || {
        broker
            .topics
            .partition(topic, 0)
            .expect("partition")
            .with_log(|l| Ok(l.log_end_offset()))
            .expect("log")
    };

    let refused = produce(9, Some(tid)).await;
    assert_eq!(refused.error_code, ResponseError::InvalidTxnState.code());
    assert_eq!(
        refused.error_message.as_deref(),
        Some("Partition was not added to the transaction")
    );
    assert_eq!(
        produce(11, Some(tid)).await.error_code,
        ResponseError::TransactionAbortable.code()
    );
    assert_eq!(
        produce(9, None).await.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(log_end(), 0, "nothing appended");

    crate::txn::add_partitions(&broker, tid, pid, epoch, vec![(topic.to_string(), 0)])
        .await
        .expect("added");
    assert_eq!(produce(9, Some(tid)).await.error_code, 0);
    assert_eq!(produce(9, Some(tid)).await.error_code, 0, "open already");
    assert_eq!(log_end(), 2);

    crate::txn::end_txn(&broker, tid, pid, epoch, false)
        .await
        .expect("aborting");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while log_end() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no abort marker");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let late = produce(9, Some(tid)).await;
    assert_eq!(late.error_code, ResponseError::InvalidTxnState.code());
    assert_eq!(log_end(), 3, "the late batch did not open a transaction");
    let stable = broker
        .topics
        .partition(topic, 0)
        .expect("partition")
        .with_data(|d| Ok(d.last_stable_offset()))
        .expect("data");
    assert_eq!(stable, 3, "nothing holds read_committed readers back");
}

/// The session of a client that did not authenticate.
fn anonymous(peer: SocketAddr) -> Arc<crate::acl::Session> {
    Arc::new(crate::acl::Session::new(crate::acl::ANONYMOUS.into(), peer))
}

const STANDARD_AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";

#[tokio::test]
async fn acls_refuse_and_allow_requests_by_principal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker =
        open_broker_with(dir.path(), &[STANDARD_AUTHORIZER, "super.users=User:admin"]).await;
    let topic = "guarded";
    let created = broker
        .create_topic(topic, broker.default_assignment(1), Default::default())
        .await
        .expect("topic created");
    let now = crate::clock::now_ms();
    let produce = || request_for(ApiKey::Produce, 9, topic, created.id, now);
    let code = |r: &Option<ResponseKind>| first_error(r.as_ref().expect("a response"));
    let denied = |resource_type: &str, operation: &str| {
        broker
            .metrics
            .authorization_denied
            .get_or_create(&crate::metrics::DenialLabel {
                resource_type: resource_type.into(),
                operation: operation.into(),
            })
            .get()
    };
    // No ACLs: alice may not write, read, describe or join.
    let refused = call_as(&broker, "User:alice", ApiKey::Produce, 9, produce()).await;
    assert_eq!(
        code(&refused),
        ResponseError::TopicAuthorizationFailed.code()
    );
    let fetch = request_for(ApiKey::Fetch, 12, topic, created.id, now);
    let refused = call_as(&broker, "User:alice", ApiKey::Fetch, 12, fetch.clone()).await;
    assert_eq!(
        code(&refused),
        ResponseError::TopicAuthorizationFailed.code()
    );
    let all_topics = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
    let Some(ResponseKind::Metadata(listed)) = call_as(
        &broker,
        "User:alice",
        ApiKey::Metadata,
        12,
        all_topics.clone(),
    )
    .await
    else {
        panic!("no metadata answer")
    };
    assert!(listed.topics.is_empty(), "{listed:?}");
    // Refusals are counted; what a listing leaves out is not.
    assert_eq!((denied("Topic", "Write"), denied("Topic", "Read")), (1, 1));
    assert_eq!(denied("Topic", "Describe"), 0);
    let join = request_for(ApiKey::JoinGroup, 5, topic, created.id, now);
    let refused = call_as(&broker, "User:alice", ApiKey::JoinGroup, 5, join.clone()).await;
    assert_eq!(
        code(&refused),
        ResponseError::GroupAuthorizationFailed.code()
    );
    // Configs: the topic's needs DescribeConfigs on it, the broker's on the cluster.
    let configs = request_for(ApiKey::DescribeConfigs, 4, topic, created.id, now);
    let Some(ResponseKind::DescribeConfigs(described)) =
        call_as(&broker, "User:alice", ApiKey::DescribeConfigs, 4, configs).await
    else {
        panic!("no DescribeConfigs answer")
    };
    let codes: Vec<(i8, i16)> = described
        .results
        .iter()
        .map(|r| (r.resource_type, r.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            (2, ResponseError::TopicAuthorizationFailed.code()),
            (4, ResponseError::ClusterAuthorizationFailed.code())
        ]
    );
    let acl_request = request_for(ApiKey::CreateAcls, 3, topic, created.id, now);
    let refused = call_as(&broker, "User:alice", ApiKey::CreateAcls, 3, acl_request).await;
    assert_eq!(
        code(&refused),
        ResponseError::ClusterAuthorizationFailed.code()
    );
    // The super user grants alice Write on the topic, and Read on groups.
    let grant = |resource_type: i8, name: &str, operation: i8| {
        create_acls_request::AclCreation::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(operation)
            .with_permission_type(3)
    };
    let grants = RequestKind::CreateAcls(
        CreateAclsRequest::default().with_creations(vec![grant(2, topic, 4), grant(3, "*", 3)]),
    );
    let granted = call_as(&broker, "User:admin", ApiKey::CreateAcls, 3, grants).await;
    assert_eq!(code(&granted), 0);
    let written = call_as(&broker, "User:alice", ApiKey::Produce, 9, produce()).await;
    assert_eq!(code(&written), 0);
    // Write implies Describe: the topic is listed now; reading is still refused.
    let Some(ResponseKind::Metadata(listed)) =
        call_as(&broker, "User:alice", ApiKey::Metadata, 12, all_topics).await
    else {
        panic!("no metadata answer")
    };
    assert_eq!(listed.topics.len(), 1, "{listed:?}");
    let refused = call_as(&broker, "User:alice", ApiKey::Fetch, 12, fetch).await;
    assert_eq!(
        code(&refused),
        ResponseError::TopicAuthorizationFailed.code()
    );
    // Past the gate, the join meets the coordinator (not set up here).
    let joined = call_as(&broker, "User:alice", ApiKey::JoinGroup, 5, join).await;
    assert_ne!(
        code(&joined),
        ResponseError::GroupAuthorizationFailed.code()
    );
    // Bob still may not; DescribeAcls shows alice's two ACLs to the admin.
    let refused = call_as(&broker, "User:bob", ApiKey::Produce, 9, produce()).await;
    assert_eq!(
        code(&refused),
        ResponseError::TopicAuthorizationFailed.code()
    );
    let describe = request_for(ApiKey::DescribeAcls, 3, topic, created.id, now);
    let Some(ResponseKind::DescribeAcls(described)) =
        call_as(&broker, "User:admin", ApiKey::DescribeAcls, 3, describe).await
    else {
        panic!("no DescribeAcls answer")
    };
    let count: usize = described.resources.iter().map(|r| r.acls.len()).sum();
    assert_eq!(count, 2, "{described:?}");
    assert_eq!((denied("Topic", "Write"), denied("Topic", "Read")), (2, 2));
    assert_eq!(denied("Group", "Read"), 1);
    assert_eq!(denied("Cluster", "Alter"), 1, "CreateAcls");
}

#[tokio::test]
async fn acl_apis_without_an_authorizer_say_security_is_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = open_broker(dir.path()).await;
    let request = request_for(ApiKey::DescribeAcls, 3, "t", uuid::Uuid::nil(), 0);
    let answer = call(&broker, ApiKey::DescribeAcls, 3, request).await;
    assert_eq!(
        first_error(answer.as_ref().expect("a response")),
        ResponseError::SecurityDisabled.code()
    );
}
