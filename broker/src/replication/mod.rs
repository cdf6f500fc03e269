//! Partition replication between brokers: followers pull from leaders over
//! gRPC (`proto/replication.proto`).
//!
//! ```text
//!   follower: fetcher task per leader ──Fetch(offset, last epoch)──▶ leader: service
//!      ▲   append_replicated, HW = min(leader HW, own end)              │
//!      └──────────── records | diverging epoch (truncate) ◀────────────┤
//!                                                                       ├─ LeaderState: progress,
//!                                                                       │  high watermark, ISR proposals
//!                                                                       └─▶ controller: AlterPartition
//! ```
//!
//! The decisions (high watermark, who is in sync) are `runnel-replication`'s
//! pure state machine; this module does the I/O around it.

mod fetcher;
mod service;
pub(crate) mod throttle;

pub use fetcher::run_fetchers;
pub use service::ReplicaService;

use std::sync::Arc;

use tracing::{info, warn};

use crate::broker::Broker;
use crate::cluster::{CommandResult, MetadataCommand};
use crate::topics::{Partition, Role};

/// An ISR change a leader wants the controller to commit.
#[derive(Debug)]
pub(crate) struct IsrProposal {
    pub(crate) partition: Arc<Partition>,
    pub(crate) leader_epoch: i32,
    pub(crate) partition_epoch: i32,
    pub(crate) isr: Vec<i32>,
}

/// Sends an ISR proposal to the controller in the background; on refusal the
/// leader may propose again.
pub(crate) fn propose(broker: &Arc<Broker>, proposal: IsrProposal) {
    let broker = broker.clone();
    tokio::spawn(async move {
        let IsrProposal {
            partition,
            leader_epoch,
            partition_epoch,
            isr,
        } = proposal;
        let command = MetadataCommand::AlterPartition {
            topic: partition.topic.clone(),
            partition: partition.index,
            leader: broker.identity.node_id,
            leader_epoch,
            partition_epoch,
            isr: isr.clone(),
        };
        let ok = match broker.controller.write(command).await {
            Ok((version, CommandResult::Partition(_))) => {
                info!(topic = %partition.topic, partition = partition.index, ?isr, "ISR changed");
                broker.topics.wait_synced(version).await;
                true
            }
            Ok((_, other)) => {
                info!(topic = %partition.topic, partition = partition.index, ?isr, result = ?other, "ISR change refused");
                false
            }
            Err(error) => {
                warn!(topic = %partition.topic, partition = partition.index, %error, "ISR change not sent");
                false
            }
        };
        if !ok {
            let _ = partition.with_data(|d| {
                if let Role::Leader(state) = &mut d.role {
                    state.proposal_failed();
                }
                Ok(())
            });
        }
    });
}

/// Leaders drop followers that have not caught up within `replica.lag.time.max.ms`.
pub(crate) fn shrink_lagging(broker: &Arc<Broker>, now_ms: i64) {
    let max_lag = broker.settings.get_i64("replica.lag.time.max.ms");
    for topic in broker.topics.all() {
        for partition in &topic.partitions {
            let proposal = partition.with_data(|d| {
                let (leader_epoch, partition_epoch) = (d.leader_epoch, d.partition_epoch);
                Ok(match &mut d.role {
                    Role::Leader(state) => state
                        .shrink(now_ms, max_lag)
                        .map(|isr| (isr, leader_epoch, partition_epoch)),
                    _ => None,
                })
            });
            if let Ok(Some((isr, leader_epoch, partition_epoch))) = proposal {
                info!(topic = %topic.name, partition = partition.index, ?isr, "followers fell behind; shrinking the ISR");
                propose(
                    broker,
                    IsrProposal {
                        partition: partition.clone(),
                        leader_epoch,
                        partition_epoch,
                        isr,
                    },
                );
            }
        }
    }
}
