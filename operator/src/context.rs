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
    /// Cluster's credentials Secret, and with `spec.tls` it connects over
    /// TLS trusting the `ca.crt` of the certificate Secret; when either
    /// cannot be read, every call fails saying why (Topics and
    /// ConsumerGroups show it in their status).
    pub async fn admin(&self, namespace: &str, name: &str) -> Admin {
        let addrs = self
            .overrides
            .get(&format!("{namespace}/{name}"))
            .cloned()
            .unwrap_or_else(|| vec![format!("{name}-bootstrap.{namespace}.svc:{KAFKA_PORT}")]);
        let admin = Admin::new(addrs, self.intervals.admin_timeout);
        let clusters: Api<Cluster> = Api::namespaced(self.client.clone(), namespace);
        let cluster = match clusters.get_opt(name).await {
            Ok(cluster) => cluster,
            Err(e) => {
                warn!(%namespace, cluster = %name, error = %e, "Cluster not readable");
                return admin.without_credentials(format!("Cluster {name}: {e}"));
            }
        };
        let Some(cluster) = cluster else {
            return admin;
        };
        let admin = match &cluster.spec.tls {
            None => admin,
            Some(tls) => match self.tls_material(namespace, &tls.certificate_secret).await {
                Ok((ca, identity)) => match admin.clone().with_tls(&ca, identity) {
                    Ok(admin) => admin,
                    Err(why) => admin.without_tls(format!(
                        "ca.crt of Secret {}: {why}",
                        tls.certificate_secret
                    )),
                },
                Err(why) => {
                    warn!(%namespace, cluster = %name, %why, "no CA to trust for the brokers");
                    return admin.without_tls(why);
                }
            },
        };
        match self.credentials(namespace, &cluster).await {
            Ok(Some(credentials)) => admin.with_credentials(credentials),
            Ok(None) => admin,
            Err(why) => {
                warn!(%namespace, cluster = %name, %why, "no SASL credentials for the brokers");
                admin.without_credentials(why)
            }
        }
    }

    /// From Secret `secret`: its `ca.crt` (the CA the brokers'
    /// certificates chain to), and its `tls.crt` and `tls.key` when both are
    /// there (what the operator presents to brokers that ask clients for a
    /// certificate, `ssl.client.auth`).
    async fn tls_material(
        &self,
        namespace: &str,
        secret: &str,
    ) -> Result<(Vec<u8>, Option<(Vec<u8>, Vec<u8>)>), String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let found = secrets
            .get(secret)
            .await
            .map_err(|e| format!("Secret {secret}: {e}"))?;
        let mut data = found.data.unwrap_or_default();
        let mut take = |key: &str| data.remove(key).map(|v| v.0).filter(|v| !v.is_empty());
        let ca = take("ca.crt").ok_or_else(|| format!("Secret {secret} has no key ca.crt"))?;
        let identity = take("tls.crt").zip(take("tls.key"));
        Ok((ca, identity))
    }

    /// The operator's SCRAM credentials for `cluster`, if it asks for
    /// authentication.
    pub(crate) async fn credentials(
        &self,
        namespace: &str,
        cluster: &Cluster,
    ) -> Result<Option<Credentials>, String> {
        let Some(auth) = &cluster.spec.authentication else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = secrets
            .get(&auth.credentials_secret)
            .await
            .map_err(|e| format!("Secret {}: {e}", auth.credentials_secret))?;
        let key = |key: &str| {
            secret_text(&secret, key)
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

/// A Secret's version, `uid/resourceVersion`: it changes with every write,
/// and a Secret made again under the same name gets a new one.
pub(crate) fn secret_version(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.metadata.uid.as_deref().unwrap_or_default(),
        secret
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    )
}

/// The text under `key` of a Secret: `None` when missing, empty or not UTF-8.
pub(crate) fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| !v.is_empty())
}
