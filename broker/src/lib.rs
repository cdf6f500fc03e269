//! Runnel's broker: a Kafka-compatible commit log server.
//!
//! # Layout
//! - `config`: the command line and Kafka-named broker and topic settings.
//! - `server`: the Kafka listener: framing, per-connection pipelining.
//! - `handlers`: the registry of Kafka APIs; one file per API in `handlers/`.
//! - `topics`: the topic table: topics, partitions and their logs.
//! - `broker`: the shared state handlers read.
//! - `metrics`: Prometheus metrics and the `/metrics` + `/health` endpoint.
//! - `error`: broker errors and their Kafka error codes.
//!
//! Storage (segments, indexes, recovery, retention) is the `runnel-storage` crate.

pub mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
mod groups;
mod handlers;
pub mod metrics;
mod producers;
mod records;
pub mod server;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{Broker, Identity};
use crate::config::{Args, BrokerSettings};
use crate::metrics::Metrics;

/// How often group timers, segment rolls and time-based flushes are checked;
/// session timeouts, `segment.ms` and `flush.ms` are honoured to within this.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

impl Args {
    /// Runs the broker until SIGTERM or SIGINT.
    pub async fn run(self) -> anyhow::Result<()> {
        let Args {
            node_id,
            data_dir,
            listen,
            advertise,
            rpc_listen,
            metrics_listen,
            rack,
            controller_voters,
            set,
        } = self;
        let settings = BrokerSettings::from_pairs(&set).context("invalid --set")?;
        let voters = controller_voters
            .iter()
            .map(|v| config::parse_voter(v))
            .collect::<Result<Vec<_>, _>>()
            .context("invalid --controller-voters")?;
        if voters.len() > 1 {
            warn!(
                voters = voters.len(),
                "a multi-node controller quorum is not implemented yet; running standalone"
            );
        }
        let _ = rpc_listen; // the gRPC listener arrives with replication

        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind kafka listener {listen}"))?;
        let bound = listener.local_addr()?;
        let advertised = advertise.unwrap_or_else(|| bound.to_string());
        let (host, port) = config::split_host_port(&advertised).context("invalid --advertise")?;
        let metrics_listener = TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("bind metrics listener {metrics_listen}"))?;
        let metrics = Arc::new(Metrics::register());
        let identity = Identity {
            node_id,
            host,
            port,
            rack,
        };
        let broker = tokio::task::spawn_blocking(move || {
            Broker::open(identity, &data_dir, settings, metrics)
        })
        .await?
        .context("open data directory")?;
        let broker = Arc::new(broker);
        let shutdown = CancellationToken::new();

        let metrics_task = tokio::spawn(metrics::serve(
            metrics_listener,
            broker.metrics.clone(),
            shutdown.clone(),
        ));
        let housekeeping = tokio::spawn(housekeeping(broker.clone(), shutdown.clone()));
        server::announce(bound);
        broker.metrics.set_ready(true);
        info!(%advertised, metrics = %metrics_listen, "broker ready");

        let server = tokio::spawn(server::run(listener, broker.clone(), shutdown.clone()));
        wait_for_signal().await;
        info!("shutting down");
        broker.metrics.set_ready(false);
        shutdown.cancel();
        let _ = server.await;
        let _ = housekeeping.await;
        let _ = metrics_task.await;
        let closing = broker.clone();
        tokio::task::spawn_blocking(move || closing.topics.close()).await?;
        info!("shutdown complete");
        Ok(())
    }
}

async fn housekeeping(broker: Arc<Broker>, shutdown: CancellationToken) {
    let retention_every = Duration::from_millis(
        broker
            .settings
            .get_i64("log.retention.check.interval.ms")
            .max(1) as u64,
    );
    let offsets_every = Duration::from_millis(
        broker
            .settings
            .get_i64("offsets.retention.check.interval.ms")
            .max(1) as u64,
    );
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut last_retention = tokio::time::Instant::now();
    let mut last_offsets_expiry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        broker.groups.tick(clock::now_ms());
        if last_offsets_expiry.elapsed() >= offsets_every {
            last_offsets_expiry = tokio::time::Instant::now();
            let b = broker.clone();
            let expiry = tokio::task::spawn_blocking(move || {
                b.groups.expire_offsets(&b.topics, clock::now_ms())
            });
            if let Err(error) = expiry.await {
                warn!(%error, "offset expiry task failed");
            }
        }
        let retention = last_retention.elapsed() >= retention_every;
        if retention {
            last_retention = tokio::time::Instant::now();
        }
        let b = broker.clone();
        if let Err(error) =
            tokio::task::spawn_blocking(move || b.topics.housekeeping(retention)).await
        {
            warn!(%error, "housekeeping task failed");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Generated gRPC code for `proto/`.
pub mod proto {
    /// Partition replication (`proto/replication.proto`).
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod replication {
        tonic::include_proto!("runnel.replication");
    }
    /// The controller quorum (`proto/controller.proto`).
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod controller {
        tonic::include_proto!("runnel.controller");
    }
}
