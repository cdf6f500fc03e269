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

pub mod acl;
pub mod broker;
mod cleaner;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod error;
mod groups;
mod handlers;
pub mod metrics;
mod outgoing;
mod principal;
mod producers;
pub mod quotas;
mod records;
pub mod replication;
mod sasl;
pub mod server;
pub mod tls;
pub mod topics;
mod txn;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::broker::{Broker, Identity};
use crate::config::{Args, BrokerSettings};
use crate::controller::{Controller, ControllerConfig, Registration};
use crate::metrics::Metrics;

/// How often group timers, segment rolls and time-based flushes are checked;
/// session timeouts, `segment.ms` and `flush.ms` are honoured to within this.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// How long a controlled shutdown waits for leadership to move before the
/// broker stops anyway (what remains is then moved by session expiry).
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a background task gets to finish at shutdown before it is aborted.
const TASK_STOP_GRACE: Duration = Duration::from_secs(2);

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
            add_scram,
        } = self;
        let settings = BrokerSettings::from_pairs(&set).context("invalid --set")?;
        let tls = tls::ServerTls::from_settings(&settings)
            .map_err(anyhow::Error::msg)
            .context("invalid TLS settings")?
            .map(Arc::new);
        if let Some(inter_broker) = tls::InterBrokerTls::from_settings(&settings)
            .map_err(anyhow::Error::msg)
            .context("invalid inter-broker TLS settings")?
        {
            inter_broker.install().map_err(anyhow::Error::msg)?;
        }
        let scram_users = add_scram
            .iter()
            .map(|entry| sasl::scram::parse_add_scram(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let mut voters = controller_voters
            .iter()
            .map(|v| config::parse_voter(v))
            .collect::<Result<Vec<_>, _>>()
            .context("invalid --controller-voters")?;

        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("bind kafka listener {listen}"))?;
        let bound = listener.local_addr()?;
        let advertised = advertise.unwrap_or_else(|| bound.to_string());
        let (host, port) = config::split_host_port(&advertised).context("invalid --advertise")?;
        let rpc_listener = TcpListener::bind(rpc_listen)
            .await
            .with_context(|| format!("bind rpc listener {rpc_listen}"))?;
        let rpc_bound = rpc_listener.local_addr()?;
        // Other brokers reach the gRPC listener by the advertised host when
        // it listens on every interface.
        let rpc_address = if rpc_bound.ip().is_unspecified() {
            format!("{host}:{}", rpc_bound.port())
        } else {
            rpc_bound.to_string()
        };
        tls::add_peer_hosts(voters.iter().map(|v| v.address.as_str()));
        tls::add_peer_hosts([rpc_address.as_str()]);
        if voters.is_empty() {
            // A single broker is its own controller quorum.
            voters.push(config::Voter {
                id: node_id,
                address: rpc_address.clone(),
            });
        }
        let metrics_listener = TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("bind metrics listener {metrics_listen}"))?;
        let mut metrics = Metrics::register();
        let identity = Identity {
            node_id,
            host: host.clone(),
            port,
            rack: rack.clone(),
        };
        let ms = |key: &str| Duration::from_millis(settings.get_i64(key).max(1) as u64);
        let voter_count = voters.len();
        let controller = Controller::start(ControllerConfig {
            node_id,
            voters,
            data_dir: data_dir.clone(),
            session_timeout: ms("broker.session.timeout.ms"),
            heartbeat_interval: ms("broker.heartbeat.interval.ms"),
            election_timeout: ms("controller.quorum.election.timeout.ms"),
            rebalance: settings.get_bool("auto.leader.rebalance.enable").then(|| {
                Duration::from_secs(
                    settings
                        .get_i64("leader.imbalance.check.interval.seconds")
                        .max(1) as u64,
                )
            }),
        })
        .await
        .context("start the controller")?;
        controller.register_metrics(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let controlled_shutdown = settings.get_bool("controlled.shutdown.enable");
        let broker = tokio::task::spawn_blocking(move || {
            Broker::open(
                identity,
                &data_dir,
                settings,
                metrics,
                controller,
                voter_count,
            )
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
        info!(%rpc_address, "registering with the controller quorum");
        let (tasks, epoch) = join_cluster(
            &broker,
            rpc_listener,
            Registration {
                id: node_id,
                rack,
                host,
                port,
                rpc_address,
            },
            shutdown.clone(),
        )
        .await?;
        sasl::add_credentials(&broker, scram_users)
            .await
            .context("--add-scram")?;
        server::announce(bound);
        broker.metrics.set_ready(true);
        info!(%advertised, metrics = %metrics_listen, broker_epoch = epoch, "broker ready");

        let server_shutdown = CancellationToken::new();
        let server = tokio::spawn(server::run(
            listener,
            broker.clone(),
            tls,
            server_shutdown.clone(),
        ));
        wait_for_signal().await;
        info!("shutting down");
        broker.metrics.set_ready(false);
        if controlled_shutdown {
            // Leadership moves off this broker while it still serves, so
            // clients and followers find the new leaders without losing writes.
            broker
                .controller
                .shutdown(CONTROLLED_SHUTDOWN_TIMEOUT)
                .await;
            info!("controlled shutdown done");
        }
        server_shutdown.cancel();
        if tokio::time::timeout(TASK_STOP_GRACE, server).await.is_err() {
            warn!("client connections did not close in time");
        }
        // The quorum member stops while its gRPC listener still answers, so
        // the other voters see it leave rather than time out on it.
        if tokio::time::timeout(TASK_STOP_GRACE, broker.controller.stop())
            .await
            .is_err()
        {
            warn!("the controller did not stop in time");
        }
        shutdown.cancel();
        // Peers keep gRPC connections open, so a graceful stop of the gRPC
        // server would wait for them forever: give every task a moment, then
        // abort it.
        for mut task in tasks {
            if tokio::time::timeout(TASK_STOP_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let _ = metrics_task.await;
        let closing = broker.clone();
        tokio::task::spawn_blocking(move || closing.topics.close()).await?;
        info!("shutdown complete");
        Ok(())
    }
}

/// Starts a broker's cluster membership: serves gRPC on `rpc_listener`,
/// follows the cluster image, registers with the controller quorum, then
/// runs the replica fetchers and housekeeping. Returns the background tasks
/// (they end when `shutdown` is cancelled) and the broker epoch.
pub async fn join_cluster(
    broker: &Arc<Broker>,
    rpc_listener: TcpListener,
    registration: Registration,
    shutdown: CancellationToken,
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<()>>, i64)> {
    let mut tasks = vec![
        tokio::spawn(serve_rpc(rpc_listener, broker.clone(), shutdown.clone())),
        tokio::spawn(follow_image(broker.clone(), shutdown.clone())),
    ];
    let epoch = broker
        .controller
        .register(registration)
        .await
        .context("register with the controller quorum")?;
    broker
        .controller
        .wait_for_version(epoch as u64, Duration::from_secs(60))
        .await
        .context("apply the cluster metadata")?;
    broker.topics.wait_synced(epoch as u64).await;
    tasks.push(tokio::spawn(replication::run_fetchers(
        broker.clone(),
        shutdown.clone(),
    )));
    tasks.push(tokio::spawn(housekeeping(broker.clone(), shutdown.clone())));
    if broker.settings.get_bool("log.cleaner.enable") {
        tasks.push(tokio::spawn(log_cleaner(broker.clone(), shutdown.clone())));
    }
    Ok((tasks, epoch))
}

/// Serves the broker's gRPC services (replication and the controller quorum).
async fn serve_rpc(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let incoming = tls::rpc_incoming(listener, broker.metrics.clone(), shutdown.clone());
    let replica = proto::replication::replica_server::ReplicaServer::new(
        replication::ReplicaService::new(broker.clone()),
    )
    .max_decoding_message_size(256 << 20)
    .max_encoding_message_size(256 << 20);
    let result = broker
        .controller
        .services()
        .add_service(replica)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(error) = result {
        warn!(%error, "gRPC server failed");
    }
}

/// Applies every new cluster image to the topic table, and moves group
/// coordination with the leadership of `__consumer_offsets` partitions.
async fn follow_image(broker: Arc<Broker>, shutdown: CancellationToken) {
    let mut images = broker.controller.image();
    loop {
        let image = images.borrow_and_update().clone();
        tls::add_peer_hosts(image.brokers.values().map(|b| b.rpc_address.as_str()));
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || {
            let changes = b.topics.sync(&image);
            b.groups.on_role_changes(&b.topics, &changes);
            let resume = b.txns.on_role_changes(&b.topics, &changes);
            b.topics.mark_synced(image.version);
            b.metrics.observe_replicas(&b.topics);
            resume
        })
        .await
        {
            Ok(resume) => txn::resume(&broker, resume),
            Err(error) => warn!(%error, "applying cluster metadata failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = images.changed() => if changed.is_err() { return },
        }
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
    let checkpoint_every = Duration::from_millis(
        broker
            .settings
            .get_i64("replica.high.watermark.checkpoint.interval.ms")
            .max(1) as u64,
    );
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut last_checkpoint = tokio::time::Instant::now();
    let mut last_retention = tokio::time::Instant::now();
    let mut last_offsets_expiry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        broker.groups.tick(&broker.topics, clock::now_ms());
        txn::housekeeping(&broker, clock::now_ms());
        replication::shrink_lagging(&broker, clock::now_ms());
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
        let checkpoint = last_checkpoint.elapsed() >= checkpoint_every;
        if checkpoint {
            last_checkpoint = tokio::time::Instant::now();
        }
        let b = broker.clone();
        if let Err(error) =
            tokio::task::spawn_blocking(move || b.topics.housekeeping(retention, checkpoint)).await
        {
            warn!(%error, "housekeeping task failed");
        }
    }
}

/// Compacts the logs of `cleanup.policy=compact` topics every
/// `log.cleaner.backoff.ms`, on a blocking thread of its own so that a long
/// pass never holds up housekeeping.
async fn log_cleaner(broker: Arc<Broker>, shutdown: CancellationToken) {
    let every =
        Duration::from_millis(broker.settings.get_i64("log.cleaner.backoff.ms").max(1) as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let b = broker.clone();
        match tokio::task::spawn_blocking(move || cleaner::clean_all(&b.topics, clock::now_ms()))
            .await
        {
            Ok(stats) => {
                broker.metrics.cleaner_passes.inc_by(stats.passes);
                broker
                    .metrics
                    .cleaner_bytes_removed
                    .inc_by(stats.bytes_removed);
                broker.metrics.cleaner_failures.inc_by(stats.failures);
            }
            Err(error) => warn!(%error, "log cleaner task failed"),
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
