//! The [`ClusterImage`] as openraft's state machine.
//!
//! Applying an entry calls [`ClusterImage::apply`] with the entry's log
//! index; blank and membership entries only move the image's version, so
//! `image.version` is always the last applied index. Every applied batch is
//! published on a watch channel.
//!
//! The image itself is not written on apply: a snapshot,
//! `DATA/__cluster_metadata/snapshot.json` (`{meta, image}`: the last applied
//! log id and membership, and the image), is written atomically whenever
//! openraft builds or installs one, and at start-up openraft re-applies the
//! committed entries after it. The same JSON is what a leader sends a
//! follower that lags behind its purged log.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use super::error::ControllerError;
use super::TypeConfig;
use crate::cluster::{ClusterImage, CommandResult};

/// The snapshot's file name in the metadata directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.json";

/// The snapshot file and the snapshot data sent between voters.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    image: ClusterImage,
}

/// The latest snapshot, as openraft serves it.
#[derive(Debug, Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta<u64, BasicNode>,
    bytes: Arc<Vec<u8>>,
}

/// The state machine.
#[derive(Debug)]
pub(crate) struct StateMachine {
    dir: PathBuf,
    image: Arc<ClusterImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// Shared with snapshot builders, which replace it. Held while a
    /// snapshot file is written, so an older snapshot never overwrites a
    /// newer one.
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    published: watch::Sender<Arc<ClusterImage>>,
}

impl StateMachine {
    /// Opens the state machine in `dir` from its snapshot, if any; returns it
    /// with the receiver of every image it applies.
    pub(crate) fn open(
        dir: &Path,
    ) -> Result<(StateMachine, watch::Receiver<Arc<ClusterImage>>), ControllerError> {
        let path = dir.join(SNAPSHOT_FILE);
        let (image, last_applied, membership, snapshot) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(|e| ControllerError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                let stored = StoredSnapshot {
                    meta: file.meta.clone(),
                    bytes: Arc::new(bytes),
                };
                (
                    file.image,
                    file.meta.last_log_id,
                    file.meta.last_membership,
                    Some(stored),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                ClusterImage::default(),
                None,
                StoredMembership::default(),
                None,
            ),
            Err(source) => return Err(ControllerError::Storage { path, source }),
        };
        let image = Arc::new(image);
        let (published, receiver) = watch::channel(image.clone());
        Ok((
            StateMachine {
                dir: dir.to_path_buf(),
                image,
                last_applied,
                membership,
                snapshot: Arc::new(Mutex::new(snapshot)),
                published,
            },
            receiver,
        ))
    }
}

/// Writes a snapshot file atomically on a blocking thread.
async fn persist(path: PathBuf, bytes: Arc<Vec<u8>>) -> Result<(), std::io::Error> {
    tokio::task::spawn_blocking(move || crate::clock::write_atomically(&path, &bytes))
        .await
        .unwrap_or_else(|join| Err(std::io::Error::other(join)))
}

fn snapshot_error(meta: &SnapshotMeta<u64, BasicNode>, error: std::io::Error) -> StorageError<u64> {
    StorageError::from_io_error(
        ErrorSubject::Snapshot(Some(meta.signature())),
        ErrorVerb::Write,
        error,
    )
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let image = Arc::make_mut(&mut self.image);
        let mut results = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Normal(command) => image.apply(index, &command),
                EntryPayload::Blank => CommandResult::Ok,
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    CommandResult::Ok
                }
            };
            image.version = image.version.max(index);
            results.push(result);
        }
        self.published.send_replace(self.image.clone());
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let received: SnapshotFile = serde_json::from_slice(snapshot.get_ref()).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        // Store it under the meta openraft passes, which is authoritative.
        let file = SnapshotFile {
            meta: meta.clone(),
            image: received.image,
        };
        let bytes = Arc::new(
            serde_json::to_vec(&file)
                .map_err(|e| snapshot_error(meta, std::io::Error::other(e)))?,
        );
        let mut current = self.snapshot.lock().await;
        persist(self.dir.join(SNAPSHOT_FILE), bytes.clone())
            .await
            .map_err(|e| snapshot_error(meta, e))?;
        *current = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes,
        });
        drop(current);
        self.image = Arc::new(file.image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.published.send_replace(self.image.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.snapshot.lock().await.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.bytes.as_ref().clone())),
        }))
    }
}

/// Builds a snapshot of the state at the time openraft asked for the builder.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    image: Arc<ClusterImage>,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, uuid::Uuid::new_v4()),
            None => format!("empty-{}", uuid::Uuid::new_v4()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let file = SnapshotFile {
            meta: meta.clone(),
            image: self.image.as_ref().clone(),
        };
        let bytes = Arc::new(
            serde_json::to_vec(&file)
                .map_err(|e| snapshot_error(&meta, std::io::Error::other(e)))?,
        );
        let mut current = self.snapshot.lock().await;
        if let Some(newer) = current
            .as_ref()
            .filter(|c| c.meta.last_log_id > meta.last_log_id)
        {
            // A snapshot installed from the leader meanwhile is newer.
            return Ok(Snapshot {
                meta: newer.meta.clone(),
                snapshot: Box::new(Cursor::new(newer.bytes.as_ref().clone())),
            });
        }
        persist(self.dir.join(SNAPSHOT_FILE), bytes.clone())
            .await
            .map_err(|e| snapshot_error(&meta, e))?;
        tracing::debug!(last_log_id = ?meta.last_log_id, bytes = bytes.len(), "metadata snapshot written");
        *current = Some(StoredSnapshot {
            meta: meta.clone(),
            bytes: bytes.clone(),
        });
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes.as_ref().clone())),
        })
    }
}
