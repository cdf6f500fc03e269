//! [`Broker`]: the state every request handler reads.

use std::path::Path;
use std::sync::Arc;

use tracing::info;

use crate::config::BrokerSettings;
use crate::error::BrokerError;
use crate::groups::GroupCoordinator;
use crate::metrics::Metrics;
use crate::producers::ProducerIdManager;
use crate::topics::TopicTable;

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
    /// The cluster id, fixed when the data directory is first used.
    pub cluster_id: String,
    /// Broker settings from `--set`.
    pub settings: Arc<BrokerSettings>,
    /// The topics and their logs.
    pub topics: TopicTable,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Consumer groups and committed offsets.
    pub(crate) groups: GroupCoordinator,
    /// Producer ids for idempotent producers.
    pub(crate) producer_ids: ProducerIdManager,
}

/// `meta.properties` in the data dir, as Kafka keeps it.
const META_FILE: &str = "meta.properties";

impl Broker {
    /// Opens the data directory (recovering logs) and builds the broker.
    pub fn open(
        identity: Identity,
        data_dir: &Path,
        settings: BrokerSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let settings = Arc::new(settings);
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BrokerError::MetadataIo(format!("create {}: {e}", data_dir.display())))?;
        let cluster_id = load_or_create_cluster_id(data_dir, identity.node_id)?;
        let topics = TopicTable::open(data_dir, settings.clone())?;
        let groups = GroupCoordinator::new(&settings);
        groups.load(&topics)?;
        let producer_ids = ProducerIdManager::open(data_dir)?;
        info!(node_id = identity.node_id, %cluster_id, data_dir = %data_dir.display(), "broker opened");
        Ok(Broker {
            identity,
            cluster_id,
            settings,
            topics,
            metrics,
            groups,
            producer_ids,
        })
    }
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
