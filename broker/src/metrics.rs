//! Prometheus metrics and the HTTP endpoint that serves them with `/health`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Labels of per-API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// The Kafka API name.
    pub api: String,
}

/// Labels of per-topic metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// The topic.
    pub topic: String,
}

/// Labels of authorization denials.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabel {
    /// The resource type (`Topic`, `Group`, `Cluster`, `TransactionalId`).
    pub resource_type: String,
    /// The operation denied (`Read`, `Write`, ...).
    pub operation: String,
}

/// Labels of replication-throttle metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SideLabel {
    /// `leader` or `follower`.
    pub side: String,
}

/// The broker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by API.
    pub requests: Family<ApiLabel, Counter>,
    /// Request latency in seconds, by API.
    pub request_latency: Family<ApiLabel, Histogram>,
    /// Record bytes appended by producers, by topic.
    pub bytes_in: Family<TopicLabel, Counter>,
    /// Record bytes served to fetchers, by topic.
    pub bytes_out: Family<TopicLabel, Counter>,
    /// Open client connections.
    pub connections: Gauge,
    /// Frames refused as malformed, oversized or unsupported.
    pub bad_requests: Counter,
    /// Record bytes served to consumers (not to follower replicas).
    pub fetch_consumer_bytes: Counter,
    /// Partitions this broker leads.
    pub partitions_led: Gauge,
    /// Partitions this broker leads whose ISR is smaller than their replica set.
    pub under_replicated_partitions: Gauge,
    /// Partitions (preferred on this broker) with no leader.
    pub offline_partitions: Gauge,
    /// Log cleaner passes that rewrote a partition's log.
    pub cleaner_passes: Counter,
    /// Bytes the log cleaner removed (segment bytes before minus after).
    pub cleaner_bytes_removed: Counter,
    /// Log cleaner passes over a partition that failed.
    pub cleaner_failures: Counter,
    /// SASL authentications that succeeded.
    pub authentications: Counter,
    /// SASL authentications that failed (Kafka's failed-authentication-total).
    pub failed_authentications: Counter,
    /// TLS handshakes that failed (bad client certificate, no common
    /// protocol, a client speaking plaintext, a timeout).
    pub tls_handshake_failures: Counter,
    /// Changed TLS files that did not load (the ones before stay in use).
    pub tls_reload_failures: Counter,
    /// Responses held back by a client quota, by API.
    pub throttled_requests: Family<ApiLabel, Counter>,
    /// Time responses were held back by client quotas, by API.
    pub throttle_seconds: Family<ApiLabel, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Requests, or items of them, refused by the ACLs, by resource type and operation.
    pub authorization_denied: Family<DenialLabel, Counter>,
    /// Replication bytes under a throttle (KIP-73), by side.
    pub throttled_replication_bytes: Family<SideLabel, Counter>,
    /// Replica fetches, or partitions of them, held back by a replication
    /// throttle, by side.
    pub throttled_replication_fetches: Family<SideLabel, Counter>,
    ready: AtomicBool,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s in factors of 2: covers in-memory requests and long polls.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 18,
    ))
}

impl Metrics {
    /// Creates and registers every broker metric.
    pub fn register() -> Self {
        let mut registry = Registry::with_prefix("runnel");
        let requests = Family::<ApiLabel, Counter>::default();
        let request_latency = Family::<ApiLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let bytes_in = Family::<TopicLabel, Counter>::default();
        let bytes_out = Family::<TopicLabel, Counter>::default();
        let connections = Gauge::default();
        let bad_requests = Counter::default();
        registry.register("requests", "Kafka requests handled", requests.clone());
        registry.register(
            "request_latency_seconds",
            "Kafka request latency",
            request_latency.clone(),
        );
        registry.register(
            "bytes_in",
            "Record bytes appended by producers",
            bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Record bytes served to fetchers",
            bytes_out.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "bad_requests",
            "Frames refused as malformed, oversized or unsupported",
            bad_requests.clone(),
        );
        let fetch_consumer_bytes = Counter::default();
        registry.register(
            "fetch_consumer_bytes",
            "Record bytes served to consumers (not to follower replicas)",
            fetch_consumer_bytes.clone(),
        );
        let partitions_led = Gauge::default();
        registry.register(
            "partitions_led",
            "Partitions this broker leads",
            partitions_led.clone(),
        );
        let under_replicated_partitions = Gauge::default();
        registry.register(
            "under_replicated_partitions",
            "Partitions led here whose ISR is smaller than their replica set",
            under_replicated_partitions.clone(),
        );
        let offline_partitions = Gauge::default();
        registry.register(
            "offline_partitions",
            "Partitions whose preferred replica is this broker and that have no leader",
            offline_partitions.clone(),
        );
        let cleaner_passes = Counter::default();
        registry.register(
            "log_cleaner_passes",
            "Log cleaner passes that rewrote a compacted partition's log",
            cleaner_passes.clone(),
        );
        let cleaner_bytes_removed = Counter::default();
        registry.register(
            "log_cleaner_bytes_removed",
            "Bytes of log the cleaner removed from compacted partitions",
            cleaner_bytes_removed.clone(),
        );
        let cleaner_failures = Counter::default();
        registry.register(
            "log_cleaner_failures",
            "Log cleaner passes over a partition that failed (logged with the reason)",
            cleaner_failures.clone(),
        );
        let authentications = Counter::default();
        registry.register(
            "sasl_authentications",
            "SASL authentications that succeeded",
            authentications.clone(),
        );
        let failed_authentications = Counter::default();
        registry.register(
            "sasl_failed_authentications",
            "SASL authentications that failed (wrong credentials, unknown user or mechanism)",
            failed_authentications.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes on the Kafka listener that failed (bad or missing client certificate, no common protocol, plaintext, timeout)",
            tls_handshake_failures.clone(),
        );
        let tls_reload_failures = Counter::default();
        registry.register(
            "tls_reload_failures",
            "Changes to the TLS keystore or truststore files that did not load (the files before stay in use)",
            tls_reload_failures.clone(),
        );
        let throttled_requests = Family::<ApiLabel, Counter>::default();
        registry.register(
            "quota_throttled_requests",
            "Produce and Fetch responses held back because a client quota was exceeded",
            throttled_requests.clone(),
        );
        let throttle_seconds =
            Family::<ApiLabel, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "quota_throttle_seconds",
            "Time Produce and Fetch responses were held back by client quotas",
            throttle_seconds.clone(),
        );
        let authorization_denied = Family::<DenialLabel, Counter>::default();
        registry.register(
            "authorization_denied",
            "Requests, or topics, groups and transactional ids in them, refused by the ACLs",
            authorization_denied.clone(),
        );
        let throttled_replication_bytes = Family::<SideLabel, Counter>::default();
        registry.register(
            "replication_throttled_bytes",
            "Replication bytes counted against a replication throttle (leader.replication.throttled.rate, follower.replication.throttled.rate)",
            throttled_replication_bytes.clone(),
        );
        let throttled_replication_fetches = Family::<SideLabel, Counter>::default();
        registry.register(
            "replication_throttled_partition_fetches",
            "Partitions left out of a replica fetch (follower) or answered without records (leader) because a replication throttle was exceeded",
            throttled_replication_fetches.clone(),
        );
        Metrics {
            throttled_replication_bytes,
            throttled_replication_fetches,
            authorization_denied,
            throttled_requests,
            throttle_seconds,
            authentications,
            failed_authentications,
            tls_handshake_failures,
            tls_reload_failures,
            cleaner_passes,
            cleaner_bytes_removed,
            cleaner_failures,
            fetch_consumer_bytes,
            partitions_led,
            under_replicated_partitions,
            offline_partitions,
            registry,
            requests,
            request_latency,
            bytes_in,
            bytes_out,
            connections,
            bad_requests,
            ready: AtomicBool::new(false),
        }
    }

    /// The registry, to add other subsystems' metrics (before it is shared).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Updates the replica gauges from the topic table, and starts the
    /// per-topic byte counters of topics led (bytes in) or hosted (bytes out)
    /// here at 0, so that Prometheus's `rate()` counts a topic's first bytes
    /// too (a counter first seen at its value has no increase to show).
    pub fn observe_replicas(&self, topics: &crate::topics::TopicTable) {
        let (led, under, offline) = topics.replica_counts();
        self.partitions_led.set(led);
        self.under_replicated_partitions.set(under);
        self.offline_partitions.set(offline);
        let (led_topics, hosted_topics) = topics.local_topics();
        for topic in led_topics {
            drop(self.bytes_in.get_or_create(&TopicLabel { topic }));
        }
        for topic in hosted_topics {
            drop(self.bytes_out.get_or_create(&TopicLabel { topic }));
        }
    }

    /// Counts one SASL authentication.
    pub fn authentication(&self, succeeded: bool) {
        if succeeded {
            self.authentications.inc();
        } else {
            self.failed_authentications.inc();
        }
    }

    /// Counts one handled request.
    pub fn observe_request(&self, api: ApiKey, elapsed: Duration) {
        let label = ApiLabel {
            api: format!("{api:?}"),
        };
        self.requests.get_or_create(&label).inc();
        self.request_latency
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a response held back by a quota.
    pub fn throttled(&self, api: ApiKey, delay: Duration) {
        let label = ApiLabel {
            api: format!("{api:?}"),
        };
        self.throttled_requests.get_or_create(&label).inc();
        self.throttle_seconds
            .get_or_create(&label)
            .inc_by(delay.as_secs_f64());
    }

    /// Counts throttled replication bytes and held-back partitions.
    pub fn replication_throttled(&self, side: &str, bytes: usize, held_back: usize) {
        let label = SideLabel {
            side: side.to_string(),
        };
        if bytes > 0 {
            self.throttled_replication_bytes
                .get_or_create(&label)
                .inc_by(bytes as u64);
        }
        if held_back > 0 {
            self.throttled_replication_fetches
                .get_or_create(&label)
                .inc_by(held_back as u64);
        }
    }

    /// Marks the broker ready (`/health` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` and `/health` until `shutdown`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => { debug!(%error, "metrics accept failed"); continue; }
            },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, content_type, body) = match path {
                "/metrics" => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    metrics.render(),
                ),
                "/health" if metrics.ready.load(Ordering::SeqCst) => {
                    ("200 OK", "text/plain", "ok\n".to_string())
                }
                "/health" => (
                    "503 Service Unavailable",
                    "text/plain",
                    "starting\n".to_string(),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
