//! Leader election through a `coordination.k8s.io/v1` Lease, so that two
//! or more replicas of the operator can run and only one reconciles.
//!
//! The holder renews the Lease every [`RENEW_EVERY`]; a candidate takes it
//! over when its `renewTime` is older than `leaseDurationSeconds`. Every
//! write carries the `resourceVersion` it read, so two candidates cannot
//! both win. A holder that fails to renew for the lease duration stops
//! (the process exits and restarts as a candidate), so two leaders overlap
//! for at most about one lease duration even under partitions — the
//! reconciles are idempotent, which makes a short overlap harmless.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{debug, info, warn};

/// How long a Lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews; a third of the duration leaves two retries.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a candidate tries to acquire.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// One candidate for a Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// The outcome of one attempt.
enum Attempt {
    Leading,
    Following(Option<String>),
}

impl LeaderElector {
    /// A candidate named `identity` for Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(None)),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder.as_deref() == Some(self.identity.as_str()) {
            self.spec(now, spec.acquire_time.clone(), transitions)
        } else {
            let duration = SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds
                    .unwrap_or(LEASE_DURATION.as_secs() as i32),
            ));
            let expired = match (&holder, &spec.renew_time) {
                (None, _) | (_, None) => true,
                (Some(_), Some(renewed)) => renewed.0 + duration < now,
            };
            if !expired {
                return Ok(Attempt::Following(holder));
            }
            self.spec(now, None, transitions + 1)
        };
        lease.spec = Some(new_spec);
        // The resourceVersion read is sent back: a concurrent writer makes
        // this a 409 Conflict instead of a second leader.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let mut logged_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    info!(lease = %self.name, identity = %self.identity, "leader lease acquired");
                    return;
                }
                Ok(Attempt::Following(holder)) => {
                    if holder != logged_holder {
                        info!(lease = %self.name, holder = ?holder, "another replica leads; waiting");
                        logged_holder = holder;
                    }
                }
                Err(e) => warn!(lease = %self.name, error = %e, "leader lease not acquired"),
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Renews the Lease until it is lost; returns when it is.
    pub async fn hold(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    debug!(lease = %self.name, "leader lease renewed");
                    last_renewed = tokio::time::Instant::now();
                }
                Ok(Attempt::Following(holder)) => {
                    warn!(lease = %self.name, holder = ?holder, "leader lease lost");
                    return;
                }
                Err(e) => {
                    warn!(lease = %self.name, error = %e, "leader lease not renewed");
                    if last_renewed.elapsed() >= LEASE_DURATION {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up, so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.name, "leader lease released"),
            Err(e) => warn!(lease = %self.name, error = %e, "leader lease not released"),
        }
    }
}
