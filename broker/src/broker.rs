//! [`Broker`]: the state every request handler reads, and the cluster-wide
//! operations (topic creation, deletion, ...) that go through the controller.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tracing::info;
use uuid::Uuid;

use crate::acl::Authorizer;
use crate::cluster::{Assignment, ClusterImage, CommandResult, MetadataCommand};
use crate::config::{BrokerSettings, TopicConfigs};
use crate::controller::Controller;
use crate::error::{BrokerError, ConfigError};
use crate::groups::GroupCoordinator;
use crate::metrics::Metrics;
use crate::principal::MappingRules;
use crate::producers::ProducerIdManager;
use crate::quotas::QuotaManager;
use crate::topics::{Topic, TopicTable};
use crate::txn::TransactionCoordinator;

/// How long an admin request waits for this broker to see its own change.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// How this broker is reached and named.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node id.
    pub node_id: i32,
    /// The advertised host.
    pub host: String,
    /// The advertised port.
    pub port: i32,
    /// The rack (zone), if any.
    pub rack: Option<String>,
}

/// The broker's shared state.
#[derive(Debug)]
pub struct Broker {
    /// Who this broker is.
    pub identity: Identity,
    /// Broker settings from `--set`.
    pub settings: Arc<BrokerSettings>,
    /// The topics and this broker's replicas.
    pub topics: TopicTable,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The controller quorum client (and, on voters, the quorum member).
    pub controller: Controller,
    /// The number of controller voters: the cluster size internal topics wait for.
    pub voters: usize,
    /// Consumer groups and committed offsets.
    pub(crate) groups: GroupCoordinator,
    /// Producer ids for idempotent producers.
    pub(crate) producer_ids: ProducerIdManager,
    /// Transactional ids and their transactions.
    pub(crate) txns: TransactionCoordinator,
    /// Who may do what (ACLs), when `authorizer.class.name` is set.
    pub(crate) authorizer: Arc<Authorizer>,
    /// How a TLS client's certificate subject becomes its principal.
    pub(crate) principal_rules: MappingRules,
    /// Client quota sensors.
    pub(crate) quotas: QuotaManager,
    /// Replication throttle sensors (KIP-73).
    pub(crate) replication_quotas: crate::replication::throttle::ReplicationQuotas,
}

/// `meta.properties` in the data dir, as Kafka keeps it.
const META_FILE: &str = "meta.properties";

impl Broker {
    /// Builds the broker around an open data directory and a started controller.
    pub fn open(
        identity: Identity,
        data_dir: &Path,
        settings: BrokerSettings,
        metrics: Arc<Metrics>,
        controller: Controller,
        voters: usize,
    ) -> Result<Self, BrokerError> {
        let settings = Arc::new(settings);
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BrokerError::MetadataIo(format!("create {}: {e}", data_dir.display())))?;
        check_node_id(data_dir, identity.node_id)?;
        let authorizer = Arc::new(Authorizer::from_settings(&settings)?);
        let principal_rules = MappingRules::parse(settings.get("ssl.principal.mapping.rules"))
            .map_err(|why| ConfigError::InvalidValue {
                name: "ssl.principal.mapping.rules".into(),
                value: settings.get("ssl.principal.mapping.rules").into(),
                why,
            })?;
        let topics = TopicTable::open(data_dir, settings.clone(), identity.node_id)?;
        let groups = GroupCoordinator::new(&settings);
        let txns = TransactionCoordinator::new(&settings);
        info!(node_id = identity.node_id, data_dir = %data_dir.display(), "broker opened");
        Ok(Broker {
            identity,
            settings,
            topics,
            metrics,
            controller,
            voters,
            groups,
            producer_ids: ProducerIdManager::default(),
            txns,
            authorizer,
            principal_rules,
            quotas: QuotaManager::default(),
            replication_quotas: Default::default(),
        })
    }

    /// The cluster id agreed by the controller quorum.
    pub fn cluster_id(&self) -> String {
        self.topics.image().cluster_id.clone().unwrap_or_default()
    }

    /// The image as this broker last applied it.
    pub fn image(&self) -> Arc<ClusterImage> {
        self.topics.image()
    }

    /// Writes a command through the controller and waits until this broker
    /// has applied it; a refusal becomes its Kafka error.
    pub async fn write(&self, command: MetadataCommand) -> Result<CommandResult, BrokerError> {
        let (version, result) = self
            .controller
            .write(command)
            .await
            .map_err(|e| BrokerError::Controller(e.to_string()))?;
        if tokio::time::timeout(SYNC_TIMEOUT, self.topics.wait_synced(version))
            .await
            .is_err()
        {
            return Err(BrokerError::Controller(format!(
                "metadata version {version} was not applied locally within {SYNC_TIMEOUT:?}"
            )));
        }
        match result {
            CommandResult::Error { code, message } => Err(BrokerError::Refused {
                code: ResponseError::try_from_code(code)
                    .unwrap_or(ResponseError::UnknownServerError),
                message,
            }),
            other => Ok(other),
        }
    }

    /// Creates a topic through the controller (configs already validated).
    pub async fn create_topic(
        &self,
        name: &str,
        assignment: Assignment,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, BrokerError> {
        crate::topics::validate_topic_name(name)?;
        self.write(MetadataCommand::CreateTopic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            configs,
            assignment,
        })
        .await?;
        info!(topic = %name, "topic created");
        self.topics
            .get(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)
    }

    /// The replication factor for new topics: `default.replication.factor`.
    pub fn default_assignment(&self, partitions: i32) -> Assignment {
        Assignment::Auto {
            partitions,
            replication_factor: self.settings.get_i64("default.replication.factor") as i16,
        }
    }

    /// Returns the topic, creating it with the defaults if allowed.
    pub async fn get_or_auto_create(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(t) = self.topics.get(name) {
            return Ok(t);
        }
        if !self.topics.auto_create_enabled() {
            return Err(BrokerError::UnknownTopicOrPartition);
        }
        crate::topics::validate_topic_name(name)?;
        let partitions = self.settings.get_i64("num.partitions") as i32;
        match self
            .create_topic(name, self.default_assignment(partitions), BTreeMap::new())
            .await
        {
            Ok(t) => Ok(t),
            Err(BrokerError::Refused {
                code: ResponseError::TopicAlreadyExists,
                ..
            }) => self
                .topics
                .get(name)
                .ok_or(BrokerError::UnknownTopicOrPartition),
            Err(e) => Err(e),
        }
    }

    /// Deletes a topic through the controller.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.write(MetadataCommand::DeleteTopic {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    /// Raises a topic's partition count.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<(), BrokerError> {
        self.write(MetadataCommand::CreatePartitions {
            name: name.to_string(),
            count,
            assignment,
        })
        .await
        .map(|_| ())
    }

    /// Replaces a topic's config overrides (already validated).
    pub async fn set_configs(&self, name: &str, configs: TopicConfigs) -> Result<(), BrokerError> {
        self.write(MetadataCommand::AlterConfigs {
            name: name.to_string(),
            configs: configs.0,
        })
        .await
        .map(|_| ())
    }
}

/// Refuses a data directory that belongs to another node id.
fn check_node_id(data_dir: &Path, node_id: i32) -> Result<(), BrokerError> {
    load_or_create_cluster_id(data_dir, node_id).map(|_| ())
}

fn load_or_create_cluster_id(data_dir: &Path, node_id: i32) -> Result<String, BrokerError> {
    let path = data_dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut cluster_id = None;
            for line in text.lines() {
                if let Some(("cluster.id", v)) = line.split_once('=') {
                    cluster_id = Some(v.trim().to_string());
                }
                if let Some(("node.id", v)) = line.split_once('=') {
                    if v.trim() != node_id.to_string() {
                        return Err(BrokerError::MetadataIo(format!(
                            "{} belongs to node.id {}, but this broker is --node-id {node_id}",
                            path.display(),
                            v.trim()
                        )));
                    }
                }
            }
            cluster_id.ok_or_else(|| {
                BrokerError::MetadataIo(format!("{} has no cluster.id", path.display()))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = kafka_style_id(uuid::Uuid::new_v4());
            let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
            crate::clock::write_atomically(&path, text.as_bytes())
                .map_err(|e| BrokerError::MetadataIo(format!("write {}: {e}", path.display())))?;
            Ok(cluster_id)
        }
        Err(e) => Err(BrokerError::MetadataIo(format!(
            "read {}: {e}",
            path.display()
        ))),
    }
}

/// A UUID as Kafka prints cluster ids: URL-safe base64 without padding (22 characters).
pub fn kafka_style_id(id: uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = kafka_style_id(uuid::Uuid::from_bytes([0xff; 16]));
        assert_eq!(id.len(), 22);
        assert_eq!(id, "_____________________w");
    }
}
