//! The cluster metadata image: what the controller quorum agrees on.
//!
//! Every broker holds a copy (`ClusterImage`), replaced as the quorum's log is
//! applied. Handlers read it for Metadata answers and leadership checks; the
//! replica manager turns it into local partition roles.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::AclBinding;

/// A broker as it registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// The node id.
    pub id: i32,
    /// Its rack (zone), if any.
    pub rack: Option<String>,
    /// The advertised Kafka host.
    pub host: String,
    /// The advertised Kafka port.
    pub port: i32,
    /// Where its gRPC listener answers (`HOST:PORT`).
    pub rpc_address: String,
    /// The broker epoch: the metadata version of its latest registration.
    /// A restarted broker registers again and gets a new one.
    pub epoch: i64,
    /// A fenced broker missed its session (or has not caught up yet): it
    /// leads nothing and is not in any ISR.
    pub fenced: bool,
    /// Set by a controlled shutdown: leadership has moved off the broker.
    pub shutting_down: bool,
}

/// One partition's replicas, leader and ISR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// The assigned replicas; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// The leader, or -1 when no in-sync replica is alive.
    pub leader: i32,
    /// Bumped on every leader change.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition (ISR, replicas, leader).
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment.
    #[serde(default)]
    pub adding: Vec<i32>,
    /// Replicas being removed by a reassignment.
    #[serde(default)]
    pub removing: Vec<i32>,
}

impl PartitionImage {
    /// The replicas a reassignment in flight leaves it with (all of them
    /// when none is): the target.
    pub fn target(&self) -> impl Iterator<Item = i32> + '_ {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
    }

    /// A new partition led by its first replica, every replica in sync.
    pub fn new(replicas: Vec<i32>) -> Self {
        PartitionImage {
            leader: replicas.first().copied().unwrap_or(-1),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }
}

/// A topic: id, config overrides and partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// The topic id (KIP-516).
    pub id: Uuid,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Partitions by index.
    pub partitions: Vec<PartitionImage>,
}

/// The whole cluster's metadata at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterImage {
    /// The index of the last applied metadata log entry (0 before any).
    pub version: u64,
    /// The cluster id, set once by the first controller leader.
    pub cluster_id: Option<String>,
    /// Brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// The next producer id not yet handed out.
    pub next_producer_id: i64,
    /// SASL/SCRAM credentials: user → mechanism name → credential.
    #[serde(default)]
    pub scram: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// The ACLs (CreateAcls, DeleteAcls), checked when an authorizer is set.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Client quotas (AlterClientQuotas): entity → key → value.
    #[serde(default, with = "crate::quotas::as_pairs")]
    pub quotas: crate::quotas::Quotas,
    /// Dynamic broker configs (IncrementalAlterConfigs): broker id, or
    /// empty for the cluster-wide default, → key → value.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// A user's SCRAM credential for one mechanism, as Kafka keeps it (the
/// password itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The salt.
    pub salt: Vec<u8>,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
}

#[cfg(test)]
impl ClusterImage {
    /// An image (at version 1) with broker 1 registered on localhost:9092:
    /// where single-broker unit tests start.
    pub(crate) fn with_broker_1() -> ClusterImage {
        let mut image = ClusterImage::default();
        image.apply(
            1,
            &super::MetadataCommand::RegisterBroker {
                id: 1,
                rack: None,
                host: "localhost".into(),
                port: 9092,
                rpc_address: "localhost:9093".into(),
                incarnation: uuid::Uuid::new_v4(),
            },
        );
        image
    }
}

impl ClusterImage {
    /// A partition by topic and index.
    pub fn partition(&self, topic: &str, index: i32) -> Option<&PartitionImage> {
        self.topics.get(topic).and_then(|t| {
            usize::try_from(index)
                .ok()
                .and_then(|i| t.partitions.get(i))
        })
    }

    /// A topic's name by id.
    pub fn topic_name(&self, id: Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(name, _)| name.as_str())
    }

    /// Whether a broker is registered and not fenced.
    pub fn is_live(&self, broker: i32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    /// The live brokers.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}
