//! What every reconcile shares: the Kubernetes client, where each Cluster's
//! brokers answer, metrics, the event recorder and the intervals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::admin::Admin;
use crate::cluster::names::KAFKA_PORT;
use crate::metrics::Metrics;

/// How often things are looked at again without a change to trigger it.
#[derive(Clone, Copy, Debug)]
pub struct Intervals {
    /// Topics and Clusters: catches changes made behind the operator's back.
    pub resync: Duration,
    /// ConsumerGroups: how fresh the lag in their status is.
    pub group_refresh: Duration,
    /// Each broker connection and call.
    pub admin_timeout: Duration,
}

/// The shared state of the controllers.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// `NAMESPACE/CLUSTER` to bootstrap addresses, for brokers reached from
    /// outside the Kubernetes network.
    pub overrides: BTreeMap<String, Vec<String>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Kubernetes events.
    pub recorder: Recorder,
    /// Intervals.
    pub intervals: Intervals,
}

impl Context {
    /// Where the brokers of Cluster `namespace/name` answer: the override if
    /// one was given, else the cluster's bootstrap Service.
    pub fn admin(&self, namespace: &str, name: &str) -> Admin {
        let addrs = self
            .overrides
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_else(|| vec![format!("{name}-bootstrap.{namespace}.svc:{KAFKA_PORT}")]);
        Admin::new(addrs, self.intervals.admin_timeout)
    }

    /// Whether Cluster `namespace/name` is reached through an override.
    pub fn is_overridden(&self, namespace: &str, name: &str) -> bool {
        self.overrides.contains_key(&format!("{namespace}/{name}"))
    }

    /// Publishes an event about `obj`; a failure is logged, not returned.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            warn!(object = %obj.name_any(), error = %e, "event not published");
        }
    }
}
