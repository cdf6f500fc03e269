//! The controller quorum, like Kafka's KRaft: the cluster metadata
//! ([`ClusterImage`](crate::cluster::ClusterImage)) is the state machine of a
//! Raft log (openraft) kept by the `--controller-voters`.
//!
//! # Layout
//! - `error`: [`ControllerError`].
//! - `log_store`: the durable Raft log, one append-only journal of
//!   length-prefixed, CRC-checked records.
//! - `state_machine`: the `ClusterImage` as openraft's state machine; JSON
//!   snapshots.

mod error;
mod log_store;
mod state_machine;

use std::sync::Mutex;

use openraft::BasicNode;

use crate::cluster::{CommandResult, MetadataCommand};

pub use error::ControllerError;

openraft::declare_raft_types!(
    /// openraft's types for the metadata quorum: entries carry
    /// [`MetadataCommand`]s and applying one gives a [`CommandResult`].
    pub(crate) TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Locks a mutex whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
