//! Temporary stub (not committed).
#![allow(missing_docs, unreachable_pub, dead_code)]
use crate::cluster::{ClusterImage, CommandResult, MetadataCommand};
use std::sync::Arc;
use std::time::Duration;
pub struct ControllerConfig {
    pub node_id: i32,
    pub voters: Vec<crate::config::Voter>,
    pub data_dir: std::path::PathBuf,
    pub session_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub rebalance: Option<Duration>,
}
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("x")]
    X,
}
#[derive(Debug)]
pub struct Controller {
    rx: tokio::sync::watch::Receiver<Arc<ClusterImage>>,
}
pub struct Registration {
    pub id: i32,
    pub rack: Option<String>,
    pub host: String,
    pub port: i32,
    pub rpc_address: String,
}
impl Controller {
    pub async fn start(_c: ControllerConfig) -> Result<Controller, ControllerError> {
        todo!()
    }
    pub fn services(&self) -> tonic::transport::server::Router {
        todo!()
    }
    pub fn image(&self) -> tokio::sync::watch::Receiver<Arc<ClusterImage>> {
        self.rx.clone()
    }
    pub async fn write(
        &self,
        _c: MetadataCommand,
    ) -> Result<(u64, CommandResult), ControllerError> {
        todo!()
    }
    pub async fn wait_for_version(&self, _v: u64, _t: Duration) -> Result<(), ControllerError> {
        todo!()
    }
    pub async fn register(&self, _r: Registration) -> Result<i64, ControllerError> {
        todo!()
    }
    pub fn broker_epoch(&self) -> i64 {
        0
    }
    pub async fn shutdown(&self, _t: Duration) {}
}
