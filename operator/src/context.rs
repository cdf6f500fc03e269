//! What every reconcile shares: the Kubernetes client, where each Cluster's
//! brokers answer, metrics, the event recorder and the intervals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use runnel_operator_api::Cluster;
use tracing::warn;

use crate::admin::{Admin, Credentials};
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
    /// With `spec.authentication` it authenticates as the user in the
    /// Cluster's credentials Secret; when that cannot be read, every call
    /// fails saying why (Topics and ConsumerGroups show it in their status).
    pub async fn admin(&self, namespace: &str, name: &str) -> Admin {
        let addrs = self
            .overrides
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_else(|| vec![format!("{name}-bootstrap.{namespace}.svc:{KAFKA_PORT}")]);
        let admin = Admin::new(addrs, self.intervals.admin_timeout);
        match self.credentials(namespace, name).await {
            Ok(Some(credentials)) => admin.with_credentials(credentials),
            Ok(None) => admin,
            Err(why) => {
                warn!(%namespace, cluster = %name, %why, "no SASL credentials for the brokers");
                admin.without_credentials(why)
            }
        }
    }

    /// The operator's SCRAM credentials for Cluster `namespace/name`, if it
    /// asks for authentication.
    async fn credentials(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Credentials>, String> {
        let clusters: Api<Cluster> = Api::namespaced(self.client.clone(), namespace);
        let cluster = clusters.get_opt(name).await.map_err(|e| e.to_string())?;
        let Some(auth) = cluster.and_then(|c| c.spec.authentication) else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets
            .get(&auth.credentials_secret)
            .await
            .map_err(|e| format!("Secret {}: {e}", auth.credentials_secret))?;
        let key = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .and_then(|v| String::from_utf8(v.0.clone()).ok())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("Secret {} has no key {key}", auth.credentials_secret))
        };
        let credentials = Credentials {
            username: key("username")?,
            password: key("password")?,
        };
        // The brokers read them in `--add-scram`'s syntax.
        if [&credentials.username, &credentials.password]
            .iter()
            .any(|v| v.contains([',', ';', '"', ']']))
        {
            return Err(format!(
                "the username or password in Secret {} contains one of , ; \" ] which the brokers' --add-scram cannot carry",
                auth.credentials_secret
            ));
        }
        Ok(Some(credentials))
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
