//! The operator's Prometheus metrics and the HTTP endpoint that serves them
//! (`/metrics`) with `/health`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// Labels of a per-controller series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `cluster`, `topic` or `consumergroup`.
    pub controller: &'static str,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `cluster`, `topic` or `consumergroup`.
    pub controller: &'static str,
    /// [`crate::error::Error::metric_label`].
    pub error: &'static str,
}

/// Labels of a consumer group's series: the resource and the group it observes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// The ConsumerGroup resource's namespace.
    pub namespace: String,
    /// The ConsumerGroup resource's name.
    pub consumergroup: String,
    /// The Kafka group id.
    pub group: String,
}

/// Labels of one partition's consumer lag.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LagLabels {
    /// The ConsumerGroup resource's namespace.
    pub namespace: String,
    /// The ConsumerGroup resource's name.
    pub consumergroup: String,
    /// The Kafka group id.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: String,
}

/// What was last observed of one ConsumerGroup resource, so that its
/// series can be replaced or dropped.
struct Observed {
    group: GroupLabels,
    partitions: Vec<LagLabels>,
    /// After this the observation is stale and its series are dropped.
    expires: Instant,
}

/// One partition as observed: topic, partition, lag.
pub type ObservedLag<'a> = (&'a str, i32, i64);

/// Reconcile durations, in seconds: from a fast no-op to a slow broker call.
const DURATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    leader: Gauge,
    lag: Family<LagLabels, Gauge>,
    members: Family<GroupLabels, Gauge>,
    /// By (namespace, name) of the ConsumerGroup resource.
    observed: Mutex<HashMap<(String, String), Observed>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn register() -> Self {
        let mut registry = Registry::with_prefix("runnel_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let failures = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            failures.clone(),
        );
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(DURATION_BUCKETS)
        });
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take",
            duration.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica holds the leader Lease (1) or waits for it (0)",
            leader.clone(),
        );
        let lag = Family::<LagLabels, Gauge>::default();
        registry.register(
            "consumer_group_lag",
            "Records between a group's committed offset and the partition's end, as last observed \
             for a ConsumerGroup resource",
            lag.clone(),
        );
        let members = Family::<GroupLabels, Gauge>::default();
        registry.register(
            "consumer_group_members",
            "Members of a group, as last observed for a ConsumerGroup resource",
            members.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            leader,
            lag,
            members,
            observed: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a reconcile and its duration.
    pub fn reconciled(&self, controller: &'static str, took: Duration) {
        let labels = ControllerLabels { controller };
        self.reconciles.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &'static str, error: &'static str) {
        self.failures
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records what a ConsumerGroup resource observed: its group's members
    /// and each committed partition's lag. The series replace the
    /// resource's earlier ones, and are dropped if not observed again
    /// within `ttl` (a deleted resource, or brokers out of reach).
    pub fn observe_group(
        &self,
        namespace: &str,
        name: &str,
        group: &str,
        members: i64,
        lags: &[ObservedLag<'_>],
        ttl: Duration,
    ) {
        let group = GroupLabels {
            namespace: namespace.to_owned(),
            consumergroup: name.to_owned(),
            group: group.to_owned(),
        };
        let partitions: Vec<LagLabels> = lags
            .iter()
            .map(|(topic, partition, _)| LagLabels {
                namespace: group.namespace.clone(),
                consumergroup: group.consumergroup.clone(),
                group: group.group.clone(),
                topic: (*topic).to_owned(),
                partition: partition.to_string(),
            })
            .collect();
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (group.namespace.clone(), group.consumergroup.clone());
        if let Some(previous) = observed.remove(&key) {
            if previous.group != group {
                self.members.remove(&previous.group);
            }
            for labels in previous
                .partitions
                .iter()
                .filter(|l| !partitions.contains(l))
            {
                self.lag.remove(labels);
            }
        }
        for (labels, (_, _, lag)) in partitions.iter().zip(lags) {
            self.lag.get_or_create(labels).set(*lag);
        }
        self.members.get_or_create(&group).set(members);
        observed.insert(
            key,
            Observed {
                group,
                partitions,
                expires: Instant::now() + ttl,
            },
        );
    }

    /// Drops the series of observations past their expiry.
    fn drop_stale(&self) {
        let now = Instant::now();
        let mut observed = self.observed.lock().unwrap_or_else(PoisonError::into_inner);
        observed.retain(|_, o| {
            if o.expires > now {
                return true;
            }
            self.members.remove(&o.group);
            for labels in &o.partitions {
                self.lag.remove(labels);
            }
            false
        });
    }

    fn encode(&self) -> String {
        self.drop_stale();
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            warn!(error = %e, "metrics encoding failed");
        }
        out
    }
}

/// The longest request head read: enough for any GET line and headers a
/// scraper sends.
const MAX_REQUEST_BYTES: usize = 8192;

/// Serves `/metrics` and `/health` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; MAX_REQUEST_BYTES];
            let mut len = 0;
            while len < buf.len() {
                match stream.read(&mut buf[len..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = match path {
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.encode(),
                ),
                "/health" => ("200 OK", "text/plain", "ok\n".to_owned()),
                _ => ("404 Not Found", "text/plain", "not found\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(%peer, error = %e, "metrics response not sent");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn lag_line(partition: i32, lag: i64) -> String {
        format!(
            "runnel_operator_consumer_group_lag{{namespace=\"apps\",consumergroup=\"readers\",\
             group=\"g1\",topic=\"t\",partition=\"{partition}\"}} {lag}\n"
        )
    }

    #[test]
    fn a_groups_series_are_replaced_by_its_next_observation_and_expire() {
        let metrics = Metrics::register();
        metrics.observe_group(
            "apps",
            "readers",
            "g1",
            2,
            &[("t", 0, 5), ("t", 1, 7)],
            MINUTE,
        );
        let text = metrics.encode();
        assert!(text.contains(&lag_line(0, 5)), "{text}");
        assert!(text.contains(&lag_line(1, 7)), "{text}");
        let members = "runnel_operator_consumer_group_members{namespace=\"apps\",\
                       consumergroup=\"readers\",group=\"g1\"} 2\n";
        assert!(text.contains(members), "{text}");

        // Partition 1 is no longer committed: its series goes.
        metrics.observe_group("apps", "readers", "g1", 0, &[("t", 0, 3)], MINUTE);
        let text = metrics.encode();
        assert!(text.contains(&lag_line(0, 3)), "{text}");
        assert!(!text.contains("partition=\"1\""), "{text}");

        // Not observed again within its time to live: every series goes.
        metrics.observe_group("apps", "readers", "g1", 0, &[("t", 0, 3)], Duration::ZERO);
        let text = metrics.encode();
        assert!(!text.contains("consumer_group_lag{"), "{text}");
        assert!(!text.contains("consumer_group_members{"), "{text}");
    }
}
