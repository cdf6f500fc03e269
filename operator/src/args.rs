//! The command line: `runnel-operator` runs the operator, `runnel-operator
//! crds` prints the CRDs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use tracing::{info, warn};

use crate::context::{Context, Intervals};
use crate::leader::LeaderElector;
use crate::metrics::{self, Metrics};
use crate::telemetry::{self, LogFormat};
use crate::{cluster, consumer_group, crdgen, topic, user};

/// Runnel's Kubernetes operator. Uses the cluster in KUBECONFIG, or the
/// in-cluster configuration.
#[derive(Debug, clap::Parser)]
#[command(name = "runnel-operator", version)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (or write one file per
    /// CRD into --out-dir).
    Crds {
        /// Write `<crd name>.yaml` files here instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// The flags of the operator itself.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Where a Cluster's brokers answer when the operator runs outside the
    /// Kubernetes network: NAMESPACE/CLUSTER=HOST:PORT[,HOST:PORT...].
    /// Repeatable; in the environment, separate entries with `;`.
    #[arg(
        long = "broker-override",
        env = "RUNNEL_BROKER_OVERRIDE",
        value_delimiter = ';'
    )]
    broker_overrides: Vec<String>,
    /// Prometheus metrics and /health.
    #[arg(long, env = "RUNNEL_METRICS_LISTEN", default_value = "127.0.0.1:9645")]
    metrics_listen: SocketAddr,
    /// Watch only this namespace (all namespaces when not set).
    #[arg(long, env = "RUNNEL_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Elect a leader through a Lease, so several replicas can run.
    #[arg(long, env = "RUNNEL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// The Lease's name.
    #[arg(long, env = "RUNNEL_LEASE_NAME", default_value = "runnel-operator")]
    lease_name: String,
    /// The Lease's namespace (default: the pod's namespace, or `default`).
    #[arg(long, env = "RUNNEL_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's identity in the Lease (default: the host name and pid).
    #[arg(long, env = "RUNNEL_IDENTITY")]
    identity: Option<String>,
    /// Log lines as text or JSON.
    #[arg(long, env = "RUNNEL_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Seconds between looks at Topics and Clusters with no change to
    /// trigger one (catches changes made behind the operator's back).
    #[arg(long, env = "RUNNEL_RESYNC_SECONDS", default_value_t = 30)]
    resync_seconds: u64,
    /// Seconds between refreshes of ConsumerGroup status.
    #[arg(long, env = "RUNNEL_GROUP_REFRESH_SECONDS", default_value_t = 10)]
    group_refresh_seconds: u64,
    /// Seconds each broker connection and admin call may take.
    #[arg(long, env = "RUNNEL_ADMIN_TIMEOUT_SECONDS", default_value_t = 10)]
    admin_timeout_seconds: u64,
}

/// The validated configuration.
#[derive(Debug)]
struct Config {
    overrides: BTreeMap<String, Vec<String>>,
    intervals: Intervals,
}

impl Config {
    fn validate(
        overrides: &[String],
        resync: u64,
        group_refresh: u64,
        admin_timeout: u64,
    ) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        for entry in overrides.iter().filter(|e| !e.trim().is_empty()) {
            let Some((key, addrs)) = entry.split_once('=') else {
                bail!("--broker-override {entry:?}: expected NAMESPACE/CLUSTER=HOST:PORT[,HOST:PORT...]");
            };
            let Some((ns, name)) = key.split_once('/') else {
                bail!("--broker-override {entry:?}: {key:?} is not NAMESPACE/CLUSTER");
            };
            if ns.is_empty() || name.is_empty() {
                bail!("--broker-override {entry:?}: empty namespace or cluster name");
            }
            let addrs: Vec<String> = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect();
            if addrs.is_empty() || addrs.iter().any(|a| !a.contains(':')) {
                bail!("--broker-override {entry:?}: every address must be HOST:PORT");
            }
            map.insert(key.to_owned(), addrs);
        }
        for (flag, value) in [
            ("--resync-seconds", resync),
            ("--group-refresh-seconds", group_refresh),
            ("--admin-timeout-seconds", admin_timeout),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        Ok(Config {
            overrides: map,
            intervals: Intervals {
                resync: Duration::from_secs(resync),
                group_refresh: Duration::from_secs(group_refresh),
                admin_timeout: Duration::from_secs(admin_timeout),
            },
        })
    }
}

/// The namespace this pod runs in, when in a cluster.
fn pod_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Args {
    /// Runs the subcommand, or the operator.
    pub async fn run(self) -> anyhow::Result<()> {
        let Args { command, run } = self;
        match command {
            Some(Command::Crds { out_dir: None }) => {
                print!("{}", crdgen::all_yaml());
                Ok(())
            }
            Some(Command::Crds { out_dir: Some(dir) }) => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (file, yaml) in crdgen::crd_files() {
                    let path = dir.join(file);
                    std::fs::write(&path, yaml)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(())
            }
            None => run.run().await,
        }
    }
}

impl RunArgs {
    async fn run(self) -> anyhow::Result<()> {
        let RunArgs {
            broker_overrides,
            metrics_listen,
            namespace,
            leader_election,
            lease_name,
            lease_namespace,
            identity,
            log_format,
            resync_seconds,
            group_refresh_seconds,
            admin_timeout_seconds,
        } = self;
        telemetry::init(log_format);
        let config = Config::validate(
            &broker_overrides,
            resync_seconds,
            group_refresh_seconds,
            admin_timeout_seconds,
        )?;
        let client = Client::try_default()
            .await
            .context("no Kubernetes configuration (KUBECONFIG or in-cluster)")?;

        let metrics = Arc::new(Metrics::register());
        let listener = tokio::net::TcpListener::bind(metrics_listen)
            .await
            .with_context(|| format!("binding --metrics-listen {metrics_listen}"))?;
        info!(addr = %listener.local_addr()?, "metrics listening");
        tokio::spawn(metrics::serve(listener, metrics.clone()));

        let identity = identity.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "runnel-operator".into());
            format!("{host}-{}", std::process::id())
        });
        let elector = leader_election.then(|| {
            let ns = lease_namespace
                .or_else(pod_namespace)
                .unwrap_or_else(|| "default".to_owned());
            LeaderElector::new(client.clone(), &ns, &lease_name, &identity)
        });
        if let Some(elector) = &elector {
            elector.acquire().await;
        }
        metrics.set_leader(true);

        let reporter = Reporter {
            controller: "runnel-operator".into(),
            instance: Some(identity.clone()),
        };
        let ctx = Arc::new(Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            overrides: config.overrides,
            metrics: metrics.clone(),
            intervals: config.intervals,
        });
        info!(namespace = ?namespace, overrides = ?ctx.overrides.keys().collect::<Vec<_>>(), "controllers starting");
        let controllers = async {
            tokio::join!(
                cluster::run(ctx.clone(), namespace.clone()),
                topic::run(ctx.clone(), namespace.clone()),
                consumer_group::run(ctx.clone(), namespace.clone()),
                user::run(ctx.clone(), namespace.clone()),
            )
        };
        match &elector {
            Some(elector) => {
                tokio::select! {
                    _ = controllers => {
                        info!("controllers stopped");
                        elector.release().await;
                    }
                    _ = elector.hold() => {
                        metrics.set_leader(false);
                        bail!("leader lease lost; exiting so a fresh start can campaign again");
                    }
                }
            }
            None => {
                controllers.await;
                info!("controllers stopped");
            }
        }
        if elector.is_none() {
            warn!("ran without leader election: do not run two replicas like this");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_bad_ones_are_refused() {
        let ok = Config::validate(&["ns/events=127.0.0.1:1,127.0.0.1:2".into()], 30, 10, 10)
            .expect("valid");
        assert_eq!(
            ok.overrides["ns/events"],
            vec!["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()]
        );
        for bad in [
            "events=127.0.0.1:1",
            "ns/events",
            "ns/events=host",
            "/x=a:1",
        ] {
            assert!(
                Config::validate(&[bad.into()], 30, 10, 10).is_err(),
                "{bad}"
            );
        }
        assert!(Config::validate(&[], 0, 10, 10).is_err());
    }
}
