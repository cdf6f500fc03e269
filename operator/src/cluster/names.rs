//! Names, labels and the broker layout shared by every object of a Cluster.

use std::collections::BTreeMap;

use runnel_operator_api::Cluster;

/// Kafka listener port.
pub const KAFKA_PORT: i32 = 9092;
/// Inter-broker gRPC port (replication, controller quorum).
pub const RPC_PORT: i32 = 9093;
/// Metrics and `/health` port.
pub const METRICS_PORT: i32 = 9644;

/// Node ids of the brokers in zone `i` (0-based, in `spec.zones` order)
/// are `NODE_ID_BASE * (i + 1) + ordinal`: zone-a's brokers are 1000, 1001,
/// ..., zone-b's 2000, 2001, ... . Disjoint ranges let each broker compute
/// its id from its own pod name, with no shared counter; the schema caps
/// `spec.brokers` at 1000 so ranges cannot overlap.
pub const NODE_ID_BASE: i32 = 1000;

/// The most controller voters: three tolerate the loss of one, and of one
/// zone when they are in three zones.
pub const MAX_VOTERS: usize = 3;

/// The label on nodes that names their zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The cluster's name.
pub fn cluster_name(cluster: &Cluster) -> &str {
    cluster.metadata.name.as_deref().unwrap_or_default()
}

/// The cluster's namespace.
pub fn namespace(cluster: &Cluster) -> &str {
    cluster.metadata.namespace.as_deref().unwrap_or("default")
}

/// The headless Service that gives each broker a stable DNS name.
pub fn headless_service_name(cluster: &Cluster) -> String {
    format!("{}-brokers", cluster_name(cluster))
}

/// The Service clients bootstrap from.
pub fn bootstrap_service_name(cluster: &Cluster) -> String {
    format!("{}-bootstrap", cluster_name(cluster))
}

/// The ConfigMap of broker settings and controller voters.
pub fn config_map_name(cluster: &Cluster) -> String {
    format!("{}-config", cluster_name(cluster))
}

/// The PodDisruptionBudget.
pub fn pdb_name(cluster: &Cluster) -> String {
    cluster_name(cluster).to_owned()
}

/// A zone name made fit for an object name: lower case, `[a-z0-9-]`.
fn zone_slug(zone: &str) -> String {
    let slug: String = zone
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug.trim_matches('-').to_owned()
}

/// The StatefulSet of the brokers in zone `index`.
pub fn statefulset_name(cluster: &Cluster, index: usize) -> String {
    let zone = cluster
        .spec
        .zones
        .get(index)
        .map(String::as_str)
        .unwrap_or("");
    let slug = zone_slug(zone);
    if slug.is_empty() {
        format!("{}-z{index}", cluster_name(cluster))
    } else {
        format!("{}-{slug}", cluster_name(cluster))
    }
}

/// How many brokers zone `index` runs: `spec.brokers` dealt round-robin
/// over the zones, the first zones getting one more when it does not divide.
pub fn brokers_in_zone(cluster: &Cluster, index: usize) -> i32 {
    let zones = i32::try_from(cluster.spec.zones.len())
        .unwrap_or(i32::MAX)
        .max(1);
    let i = i32::try_from(index).unwrap_or(i32::MAX);
    let brokers = cluster.spec.brokers.max(0);
    brokers / zones + i32::from(i < brokers % zones)
}

/// One broker of the layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerSlot {
    /// Its node id.
    pub node_id: i32,
    /// Its pod's name.
    pub pod: String,
    /// Its zone (rack).
    pub zone: String,
}

impl BrokerSlot {
    /// Its stable DNS name through the headless Service.
    pub fn host(&self, cluster: &Cluster) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod,
            headless_service_name(cluster),
            namespace(cluster)
        )
    }
}

/// Every broker, ordinal by ordinal across zones (`zone-a-0, zone-b-0,
/// zone-c-0, zone-a-1, ...`), so the first few are in distinct zones.
pub fn broker_slots(cluster: &Cluster) -> Vec<BrokerSlot> {
    let zones = &cluster.spec.zones;
    let counts: Vec<i32> = (0..zones.len())
        .map(|i| brokers_in_zone(cluster, i))
        .collect();
    let most = counts.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    for ordinal in 0..most {
        for (i, zone) in zones.iter().enumerate() {
            if ordinal < counts[i] {
                let base = NODE_ID_BASE * (i32::try_from(i).unwrap_or(0) + 1);
                out.push(BrokerSlot {
                    node_id: base + ordinal,
                    pod: format!("{}-{ordinal}", statefulset_name(cluster, i)),
                    zone: zone.clone(),
                });
            }
        }
    }
    out
}

/// `ID@HOST:PORT,...` of the controller voters: the first [`MAX_VOTERS`]
/// brokers of [`broker_slots`].
pub fn controller_voters(cluster: &Cluster) -> String {
    broker_slots(cluster)
        .iter()
        .take(MAX_VOTERS)
        .map(|b| format!("{}@{}:{RPC_PORT}", b.node_id, b.host(cluster)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels on every object of the cluster; the selector labels plus
/// `managed-by`.
pub fn labels(cluster: &Cluster) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        "runnel-operator".to_owned(),
    );
    l
}

/// Labels that select the cluster's broker pods.
pub fn selector_labels(cluster: &Cluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "runnel".to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            cluster_name(cluster).to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            "broker".to_owned(),
        ),
    ])
}
