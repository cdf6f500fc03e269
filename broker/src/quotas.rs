//! Client quotas (KIP-13, KIP-55, KIP-546): byte-rate limits on produce and
//! fetch per user and client id, kept in the cluster metadata
//! (AlterClientQuotas) and enforced by each broker on its own traffic, as
//! Kafka does; and the controller mutation rate of KIP-599 (partitions
//! created or deleted per second), a token bucket per user and client id.
//!
//! ```text
//!  request of (user U, client C) ─▶ the quota: the first of
//!     users/U/clients/C, users/U/clients/<default>, users/U,
//!     users/<default>/clients/C, users/<default>/clients/<default>,
//!     users/<default>, clients/C, clients/<default>
//!  that sets the key ─▶ its sensor (bytes in 11 one-second windows)
//!  ─▶ rate over quota? throttle = (rate - quota) / quota × window, at most the window
//!  ─▶ the response says throttle_time_ms, and the connection waits that long
//! ```
//! A quota set for a user (or the default user) is shared by all of that
//! user's clients; one set per client id, by that client id's connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterImage;

/// The produce byte-rate key.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
/// The fetch byte-rate key.
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
/// The partition mutations per second key (KIP-599).
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
/// Kafka's keys Runnel does not enforce (refused with a message saying so).
pub const UNSUPPORTED_KEYS: &[&str] = &["request_percentage", "connection_creation_rate"];

/// The two entity types Runnel keeps quotas for.
pub const USER: &str = "user";
/// See [`USER`].
pub const CLIENT_ID: &str = "client-id";

/// Kafka's default quota sample count and window (`quota.window.num`,
/// `quota.window.size.seconds`).
const SAMPLES: usize = 11;
pub(crate) const SAMPLE_WINDOW: Duration = Duration::from_secs(1);

/// Who a quota is for: a user and/or a client id, each a name or the
/// default (`None`). Absent means "not part of the entity".
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    /// `Some(Some(name))`, `Some(None)` for the default user, or `None`.
    pub user: Option<Option<String>>,
    /// The same for the client id.
    pub client_id: Option<Option<String>>,
}

/// A quota's value (bytes per second). Compared bit for bit, so the image
/// can keep `Eq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Rate(pub f64);

impl PartialEq for Rate {
    fn eq(&self, other: &Rate) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Rate {}

/// The image's quotas, by entity.
pub type Quotas = BTreeMap<QuotaEntity, BTreeMap<String, Rate>>;

/// Serde for [`Quotas`] as a list of pairs (JSON keys must be strings).
pub mod as_pairs {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{QuotaEntity, Quotas, Rate};

    /// Writes the map as `[[entity, values], ...]`.
    pub fn serialize<S: Serializer>(quotas: &Quotas, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(quotas.iter())
    }

    /// Reads what [`serialize`] wrote.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Quotas, D::Error> {
        type Pair = (QuotaEntity, std::collections::BTreeMap<String, Rate>);
        Ok(Vec::<Pair>::deserialize(d)?.into_iter().collect())
    }
}

/// Checks a quota change as Kafka's controller does; the message says why not.
pub fn validate(key: &str, value: Option<f64>) -> Result<(), String> {
    if UNSUPPORTED_KEYS.contains(&key) {
        return Err(format!(
            "{key} is a Kafka quota Runnel does not enforce; {PRODUCER_BYTE_RATE}, {CONSUMER_BYTE_RATE} and {CONTROLLER_MUTATION_RATE} are"
        ));
    }
    if key == CONTROLLER_MUTATION_RATE {
        // A Double in Kafka: fractions allowed.
        return match value {
            Some(v) if !v.is_finite() || v <= 0.0 => Err(format!(
                "{key} must be a positive number of partition mutations per second, not {v}"
            )),
            _ => Ok(()),
        };
    }
    if key != PRODUCER_BYTE_RATE && key != CONSUMER_BYTE_RATE {
        return Err(format!("unknown quota key {key:?}"));
    }
    match value {
        None => Ok(()),
        Some(v) if !v.is_finite() || v <= 0.0 => Err(format!(
            "{key} must be a positive number of bytes per second, not {v}"
        )),
        Some(v) if v.fract() != 0.0 || v > i64::MAX as f64 => {
            Err(format!("{key} must be a whole number (a Long), not {v}"))
        }
        Some(_) => Ok(()),
    }
}

/// What a request is throttled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Produce request bytes.
    Produce,
    /// Fetch response bytes.
    Fetch,
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Produce => PRODUCER_BYTE_RATE,
            Kind::Fetch => CONSUMER_BYTE_RATE,
        }
    }
}

/// The quota that applies to (user, client id), and the (user, client id)
/// its sensor is shared by: Kafka's precedence and metric tags.
pub fn resolve(
    quotas: &Quotas,
    key: &str,
    user: &str,
    client_id: &str,
) -> Option<(f64, (String, String))> {
    let named = |s: &str| Some(Some(s.to_string()));
    let default = Some(None);
    let both = (user.to_string(), client_id.to_string());
    let user_only = (user.to_string(), String::new());
    let client_only = (String::new(), client_id.to_string());
    let order = [
        (named(user), named(client_id), both.clone()),
        (named(user), default.clone(), both.clone()),
        (named(user), None, user_only.clone()),
        (default.clone(), named(client_id), both.clone()),
        (default.clone(), default.clone(), both),
        (default.clone(), None, user_only),
        (None, named(client_id), client_only.clone()),
        (None, default, client_only),
    ];
    order.into_iter().find_map(|(user, client_id, tags)| {
        quotas
            .get(&QuotaEntity { user, client_id })
            .and_then(|values| values.get(key))
            .map(|rate| (rate.0, tags))
    })
}

/// Bytes in the last [`SAMPLES`] windows of one (user, client id), or of
/// the broker's throttled replication traffic.
#[derive(Debug)]
pub(crate) struct Sensor {
    /// (window start, bytes), oldest first.
    windows: Vec<(Instant, f64)>,
}

impl Default for Sensor {
    fn default() -> Sensor {
        Sensor::new()
    }
}

impl Sensor {
    pub(crate) fn new() -> Sensor {
        Sensor {
            windows: Vec::with_capacity(SAMPLES),
        }
    }

    pub(crate) fn record(&mut self, now: Instant, bytes: f64) {
        let expired = SAMPLE_WINDOW * SAMPLES as u32;
        self.windows
            .retain(|(start, _)| now.duration_since(*start) < expired);
        match self.windows.last_mut() {
            Some((start, total)) if now.duration_since(*start) < SAMPLE_WINDOW => *total += bytes,
            _ => self.windows.push((now, bytes)),
        }
    }

    /// The rate over the kept windows, with at least `SAMPLES - 1` windows'
    /// time, as Kafka's `Rate` measures it (a first burst is not a rate).
    fn rate(&self, now: Instant) -> (f64, Duration) {
        self.rate_over(now, SAMPLE_WINDOW * (SAMPLES as u32 - 1))
    }

    /// The rate over the kept windows, with at least `min_elapsed` of time
    /// (replication quotas use one window, as Kafka's `SimpleRate`).
    pub(crate) fn rate_over(&self, now: Instant, min_elapsed: Duration) -> (f64, Duration) {
        let expired = SAMPLE_WINDOW * SAMPLES as u32;
        let kept = self
            .windows
            .iter()
            .filter(|(start, _)| now.duration_since(*start) < expired);
        let total: f64 = kept.clone().map(|(_, b)| b).sum();
        let elapsed = kept
            .map(|(start, _)| now.duration_since(*start))
            .max()
            .unwrap_or(Duration::ZERO)
            .max(min_elapsed);
        (total / elapsed.as_secs_f64(), elapsed)
    }
}

/// How many sensors may accumulate before idle ones are swept (a
/// default quota makes one per client id, which clients choose).
const SWEEP_ABOVE: usize = 1024;

/// The broker's quota sensors.
#[derive(Debug, Default)]
pub struct QuotaManager {
    sensors: Mutex<Sensors>,
}

#[derive(Debug, Default)]
struct Sensors {
    by_key: HashMap<(Kind, String, String), Sensor>,
    /// Controller mutation token buckets, by (user, client id) tags.
    buckets: HashMap<(String, String), Bucket>,
    last_sweep: Option<Instant>,
}

/// Kafka's token bucket for controller mutations (KIP-599): it holds up to
/// quota x the whole quota window of mutations and refills at the quota;
/// a request is admitted while the bucket is not in debt, and takes all its
/// mutations even if that puts the bucket in debt.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn burst(quota: f64) -> f64 {
        quota * (SAMPLE_WINDOW * SAMPLES as u32).as_secs_f64()
    }

    /// Refills for the time since the last look.
    fn refill(&mut self, quota: f64, now: Instant) {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + quota * elapsed).min(Self::burst(quota));
        self.at = now;
    }

    /// How long until the bucket is out of debt.
    fn throttle(&self, quota: f64) -> Duration {
        if self.tokens >= 0.0 || quota <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / quota)
        }
    }
}

impl Sensors {
    /// Drops sensors with nothing in their windows, at most once a window
    /// and only once there are many.
    fn sweep(&mut self, now: Instant) {
        if self.by_key.len() <= SWEEP_ABOVE
            || self
                .last_sweep
                .is_some_and(|last| now.duration_since(last) < SAMPLE_WINDOW)
        {
            return;
        }
        self.last_sweep = Some(now);
        let expired = SAMPLE_WINDOW * SAMPLES as u32;
        self.by_key.retain(|_, sensor| {
            sensor
                .windows
                .last()
                .is_some_and(|(start, _)| now.duration_since(*start) < expired)
        });
        // A bucket idle for a whole window is full again: the same as none.
        self.buckets
            .retain(|_, bucket| now.duration_since(bucket.at) < expired);
    }
}

impl QuotaManager {
    fn sensors(&self) -> std::sync::MutexGuard<'_, Sensors> {
        self.sensors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The quota of `key` for (user, client id), and whose it is; `None`
    /// without one (and at once when the image has no quotas at all).
    fn quota(
        image: &ClusterImage,
        key: &str,
        user: &str,
        client_id: &str,
    ) -> Option<(f64, (String, String))> {
        if image.quotas.is_empty() {
            return None;
        }
        resolve(&image.quotas, key, user, client_id)
    }

    /// The most a Fetch of (user, client id) may return when a consumer
    /// quota applies: what the quota allows over the measuring window, as
    /// Kafka caps a throttled consumer's fetch size.
    pub fn fetch_cap(&self, image: &ClusterImage, user: &str, client_id: &str) -> Option<i32> {
        let (quota, _) = Self::quota(image, CONSUMER_BYTE_RATE, user, client_id)?;
        let window = (SAMPLE_WINDOW * (SAMPLES as u32 - 1)).as_secs_f64();
        Some((quota * window).min(f64::from(i32::MAX)) as i32)
    }

    /// Takes back bytes recorded for a response that was not sent (a
    /// throttled Fetch answers with no records).
    pub fn unrecord(&self, kind: Kind, tags: &(String, String), bytes: usize) {
        let mut sensors = self.sensors();
        if let Some(sensor) = sensors
            .by_key
            .get_mut(&(kind, tags.0.clone(), tags.1.clone()))
        {
            if let Some((_, total)) = sensor.windows.last_mut() {
                *total = (*total - bytes as f64).max(0.0);
            }
        }
    }

    /// Records `bytes` of `kind` for (user, client id) and returns how long
    /// its responses are to be held back; zero when no quota applies or the
    /// rate is within it.
    /// Also returns whose sensor it was (for [`QuotaManager::unrecord`]).
    pub fn record(
        &self,
        image: &ClusterImage,
        kind: Kind,
        user: &str,
        client_id: &str,
        bytes: usize,
    ) -> (Duration, (String, String)) {
        let none = (Duration::ZERO, (String::new(), String::new()));
        let Some((quota, tags)) = Self::quota(image, kind.key(), user, client_id) else {
            return none;
        };
        let now = Instant::now();
        let mut sensors = self.sensors();
        sensors.sweep(now);
        let sensor = sensors
            .by_key
            .entry((kind, tags.0.clone(), tags.1.clone()))
            .or_default();
        sensor.record(now, bytes as f64);
        let (rate, window) = sensor.rate(now);
        (throttle(rate, quota, window), tags)
    }

    /// KIP-599: takes `mutations` partition mutations of (user, client id)
    /// from its controller mutation quota. `Ok` when admitted (no quota, or
    /// the bucket not in debt, which it may then go into); `Err` with the
    /// time until it is out of debt when refused. A `strict` request
    /// (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) is refused
    /// while in debt; an older one is admitted and only throttled.
    pub fn take_mutations(
        &self,
        image: &ClusterImage,
        user: &str,
        client_id: &str,
        mutations: usize,
        strict: bool,
    ) -> Result<(), Duration> {
        if mutations == 0 {
            return Ok(());
        }
        let Some((quota, tags)) = Self::quota(image, CONTROLLER_MUTATION_RATE, user, client_id)
        else {
            return Ok(());
        };
        let now = Instant::now();
        let mut sensors = self.sensors();
        sensors.sweep(now);
        let bucket = sensors.buckets.entry(tags).or_insert_with(|| Bucket {
            tokens: Bucket::burst(quota),
            at: now,
        });
        bucket.refill(quota, now);
        if strict && bucket.tokens < 0.0 {
            return Err(bucket.throttle(quota));
        }
        bucket.tokens -= mutations as f64;
        Ok(())
    }

    /// How long (user, client id)'s admin requests are to be held back for
    /// its controller mutations; zero without a quota or debt.
    pub fn mutation_throttle(&self, image: &ClusterImage, user: &str, client_id: &str) -> Duration {
        let Some((quota, tags)) = Self::quota(image, CONTROLLER_MUTATION_RATE, user, client_id)
        else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let mut sensors = self.sensors();
        match sensors.buckets.get_mut(&tags) {
            Some(bucket) => {
                bucket.refill(quota, now);
                bucket.throttle(quota)
            }
            None => Duration::ZERO,
        }
    }
}

/// Kafka's throttle time: how long until the rate over `window` falls to
/// `quota`; at most the whole quota window.
fn throttle(rate: f64, quota: f64, window: Duration) -> Duration {
    if rate <= quota || quota <= 0.0 {
        return Duration::ZERO;
    }
    let seconds = (rate - quota) / quota * window.as_secs_f64();
    Duration::from_secs_f64(seconds.min((SAMPLE_WINDOW * SAMPLES as u32).as_secs_f64()))
}

#[cfg(test)]
mod tests;
