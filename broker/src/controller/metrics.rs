//! The controller's gauges: `runnel_controller_is_leader` (1 on the Raft
//! leader) and `runnel_controller_metadata_version` (the image version this
//! broker has applied), with the broker's `runnel` registry prefix.

use std::sync::Arc;

use openraft::{BasicNode, RaftMetrics, ServerState};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterImage;

/// The controller's gauges. Clones share the values.
#[derive(Debug, Clone, Default)]
pub struct ControllerMetrics {
    /// 1 while this broker is the controller quorum's leader.
    pub is_leader: Gauge,
    /// The metadata version (log index) this broker has applied.
    pub metadata_version: Gauge,
}

impl ControllerMetrics {
    /// Registers the gauges in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "controller_is_leader",
            "1 on the controller quorum's leader, 0 elsewhere",
            self.is_leader.clone(),
        );
        registry.register(
            "controller_metadata_version",
            "The cluster metadata version this broker has applied",
            self.metadata_version.clone(),
        );
    }
}

/// Keeps `is_leader` up to date until `stop`.
pub(crate) async fn follow_leadership(
    mut raft: watch::Receiver<RaftMetrics<u64, BasicNode>>,
    me: u64,
    metrics: ControllerMetrics,
    stop: CancellationToken,
) {
    loop {
        {
            let m = raft.borrow_and_update();
            let leader = m.state == ServerState::Leader && m.current_leader == Some(me);
            metrics.is_leader.set(i64::from(leader));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = raft.changed() => if changed.is_err() { break },
        }
    }
    metrics.is_leader.set(0);
}

/// Keeps `metadata_version` up to date until `stop`.
pub(crate) async fn follow_version(
    mut image: watch::Receiver<Arc<ClusterImage>>,
    metrics: ControllerMetrics,
    stop: CancellationToken,
) {
    loop {
        let version = image.borrow_and_update().version;
        metrics
            .metadata_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = image.changed() => if changed.is_err() { return },
        }
    }
}
