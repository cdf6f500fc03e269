//! The Cluster controller: applies the ConfigMap, the Services, one
//! StatefulSet per zone and the PodDisruptionBudget, all owned by the
//! Cluster and written by server-side apply, then reports how many brokers
//! are ready.
//!
//! ```text
//! Cluster ──▶ config_map::config_map ─┐
//!         ──▶ service::{headless,bootstrap}_service
//!         ──▶ statefulset::statefulset (per zone)  ──▶ server-side apply
//!         ──▶ pdb::pdb ───────────────────┘
//!         ◀── status::cluster_status ◀── ready replicas, or Metadata's
//!                                         brokers under --broker-override
//! ```

pub mod config_map;
pub mod names;
pub mod pdb;
pub mod roll;
pub mod scale;
pub mod service;
pub mod statefulset;
pub mod status;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use runnel_operator_api::condition::{self, reason, Condition, ROLLING_RESTART, SCALE_DOWN};
use runnel_operator_api::Cluster;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, instrument, warn};

use crate::admin::ClusterMetadata;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::{now, FIELD_MANAGER};
use status::{cluster_status, BrokerCount};

/// How soon a Cluster whose brokers are not all ready is looked at again.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(10);

/// How soon a Cluster in a rolling restart is looked at again.
const ROLLING_REQUEUE: Duration = Duration::from_secs(3);

/// Applies `obj` with server-side apply, taking ownership of its fields.
pub(crate) async fn apply<K>(ctx: &Context, namespace: &str, obj: &K) -> Result<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await?)
}

/// Writes `status` on the resource with server-side apply.
pub(crate) async fn apply_status<K, S>(ctx: &Context, obj: &K, status: &S) -> Result<()>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
    S: Serialize,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))?;
    let namespace = obj
        .meta()
        .namespace
        .clone()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[instrument(skip_all, fields(namespace = %cluster.namespace().unwrap_or_default(), cluster = %cluster.name_any()))]
async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&cluster, &ctx).await;
    ctx.metrics.reconciled("cluster", started.elapsed());
    result
}

/// The version (`uid/resourceVersion`) of the operator's credentials
/// Secret, empty without `spec.authentication` or the Secret: the brokers
/// make the operator's user from it when they start, so a new version rolls
/// them (the Secret's contents stay out of the pod template).
async fn credentials_version(ctx: &Context, ns: &str, cluster: &Cluster) -> Result<String> {
    let Some(auth) = &cluster.spec.authentication else {
        return Ok(String::new());
    };
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(ctx.client.clone(), ns);
    Ok(secrets
        .get_opt(&auth.credentials_secret)
        .await?
        .map(|secret| crate::context::secret_version(&secret))
        .unwrap_or_default())
}

async fn reconcile_inner(cluster: &Cluster, ctx: &Context) -> Result<Action> {
    let ns = cluster
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = cluster.name_any();
    let first_time = cluster.status.is_none();

    // The voters are fixed once the ConfigMap names them.
    let voters = existing_voters(ctx, &ns, cluster)
        .await?
        .unwrap_or_else(|| names::controller_voters(cluster));
    let config = config_map::config_map(cluster, &voters);
    apply(ctx, &ns, &config).await?;
    apply(ctx, &ns, &service::headless_service(cluster)).await?;
    apply(ctx, &ns, &service::bootstrap_service(cluster)).await?;
    // A scale-down waits while the brokers it removes hold replicas.
    let current = statefulset_sizes(ctx, &ns, cluster).await?;
    let removed = scale::removed_brokers(cluster, &current);
    let held = if removed.is_empty() {
        None
    } else if let Some(why) = scale::removes_voters(&removed, &voters) {
        Some((reason::VOTERS_WOULD_LEAVE, why))
    } else if scale::check_skipped(cluster) {
        None
    } else {
        drain(ctx, cluster, &ns, &name, &removed).await
    };
    let credentials = credentials_version(ctx, &ns, cluster).await?;
    let mut ready_pods = 0;
    let mut revisions = Vec::with_capacity(current.len());
    for (index, &size) in current.iter().enumerate() {
        let mut wanted = statefulset::statefulset(cluster, index);
        if held.is_some() {
            if let Some(spec) = wanted.spec.as_mut() {
                spec.replicas = Some(spec.replicas.unwrap_or(0).max(size));
            }
        }
        roll::stamp(&mut wanted, &config, &credentials);
        let sts = apply(ctx, &ns, &wanted).await?;
        revisions.push((
            names::statefulset_name(cluster, index),
            sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            roll::template_revision(&sts).unwrap_or_default().to_owned(),
        ));
        ready_pods += sts.status.and_then(|s| s.ready_replicas).unwrap_or(0);
    }
    apply(ctx, &ns, &pdb::pdb(cluster)).await?;
    let rolling = rolling_restart(ctx, cluster, &ns, &name, &revisions).await?;

    // From outside the Kubernetes network the brokers' own metadata says
    // who is up; inside, the pods' readiness does.
    let brokers = if ctx.is_overridden(&ns, &name) {
        match ctx.admin(&ns, &name).await.metadata().await {
            Ok(meta) => BrokerCount::Ready(i32::try_from(meta.brokers.len()).unwrap_or(i32::MAX)),
            Err(e) => BrokerCount::Unreachable(e.to_string()),
        }
    } else {
        BrokerCount::Ready(ready_pods)
    };
    let mut status = cluster_status(cluster, brokers, now());
    let was_held = status.conditions.iter().any(|c| c.type_ == SCALE_DOWN);
    match &held {
        Some((why, message)) => {
            let c = Condition::new(
                SCALE_DOWN,
                false,
                why,
                message.clone(),
                cluster.metadata.generation,
            );
            condition::set(&mut status.conditions, c, now());
            if !was_held {
                ctx.event(cluster, true, why, message.clone()).await;
            }
        }
        None => status.conditions.retain(|c| c.type_ != SCALE_DOWN),
    }
    match &rolling {
        Some((why, message)) => {
            let c = Condition::new(
                ROLLING_RESTART,
                true,
                why,
                message.clone(),
                cluster.metadata.generation,
            );
            condition::set(&mut status.conditions, c, now());
        }
        None => status.conditions.retain(|c| c.type_ != ROLLING_RESTART),
    }
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.is_true());
    if cluster.status.as_ref() != Some(&status) {
        apply_status(ctx, cluster, &status).await?;
    }
    if first_time {
        ctx.event(
            cluster,
            false,
            "Applied",
            format!(
                "{} StatefulSets, Services, ConfigMap and PodDisruptionBudget applied",
                cluster.spec.zones.len()
            ),
        )
        .await;
    }
    info!(
        ready_brokers = status.ready_brokers,
        ready, "cluster reconciled"
    );
    Ok(Action::requeue(if rolling.is_some() {
        ROLLING_REQUEUE
    } else if ready && held.is_none() {
        ctx.intervals.resync
    } else {
        NOT_READY_REQUEUE
    }))
}

/// Restarts the next stale broker pod when it is safe (see [`roll`]);
/// `None` once every pod runs its StatefulSet's revision, else the
/// condition's reason and message.
async fn rolling_restart(
    ctx: &Context,
    cluster: &Cluster,
    ns: &str,
    name: &str,
    statefulsets: &[(String, i32, String)],
) -> Result<Option<(&'static str, String)>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let selector = names::selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    // Asked only when a restart is otherwise due.
    let meta = match roll::plan(statefulsets, &listed, || Ok(ClusterMetadata::default())) {
        roll::Step::Restart { .. } => match ctx.admin(ns, name).await.metadata().await {
            Ok(meta) => Ok(meta),
            // A new password in the credentials Secret: the brokers have the
            // old one until one restarts and makes the operator's user from
            // the Secret (the metadata then carries it to all). Nothing can
            // be asked until then, so the first stale broker restarts
            // without the ISR check, once every pod is Ready; the others
            // wait for it as usual.
            Err(e) if e.is_refused() => {
                info!(error = %e, "the brokers refuse the operator's credentials; restarting a stale broker to give them the Secret's");
                Ok(ClusterMetadata::default())
            }
            Err(e) => Err(e.to_string()),
        },
        _ => Ok(ClusterMetadata::default()),
    };
    Ok(match roll::plan(statefulsets, &listed, || meta) {
        roll::Step::UpToDate => None,
        roll::Step::Wait { stale, why } => Some((
            reason::WAITING_TO_RESTART,
            format!("{stale} broker pods run an old revision; waiting: {why}"),
        )),
        roll::Step::Restart { pod, stale } => {
            pods.delete(&pod, &DeleteParams::default()).await?;
            let message = format!(
                "restarting pod {pod} for its new revision ({} more to go after it)",
                stale - 1
            );
            info!(%pod, left = stale - 1, "rolling restart: deleted a stale broker pod");
            ctx.event(cluster, false, reason::RESTARTING_BROKER, message.clone())
                .await;
            Some((reason::RESTARTING_BROKER, message))
        }
    })
}

/// Moves replicas off the brokers a scale-down `removed`; `None` once they
/// hold none (the scale-down may proceed), else why it waits.
async fn drain(
    ctx: &Context,
    cluster: &Cluster,
    ns: &str,
    name: &str,
    removed: &[i32],
) -> Option<(&'static str, String)> {
    let admin = ctx.admin(ns, name).await;
    let unreachable = |e: crate::admin::AdminError| {
        Some((
            reason::BROKERS_HOLD_REPLICAS,
            format!(
                "brokers {removed:?} are not removed until the brokers answer, to tell whether \
                 they hold replicas: {e}"
            ),
        ))
    };
    let meta = match admin.metadata().await {
        Ok(meta) => meta,
        Err(e) => return unreachable(e),
    };
    let held = scale::partitions_held(&meta, removed);
    if held.is_empty() {
        return None;
    }
    let holding = scale::held_message(removed, &held);
    let in_progress: Vec<(String, i32)> = match admin.reassignments().await {
        Ok(in_progress) => in_progress.into_keys().collect(),
        Err(e) => return unreachable(e),
    };
    let moves = match scale::plan_drain(&meta, removed, &in_progress) {
        Ok(moves) => moves,
        Err(why) => {
            return Some((
                reason::BROKERS_HOLD_REPLICAS,
                format!("{holding}, and they stay: {why}"),
            ))
        }
    };
    if !moves.is_empty() {
        if let Err(e) = admin.reassign(&moves).await {
            return Some((
                reason::BROKERS_HOLD_REPLICAS,
                format!("{holding}; moving them failed: {e}"),
            ));
        }
        let listed: Vec<String> = moves
            .iter()
            .map(|(t, p, r)| format!("{t}/{p} to {r:?}"))
            .collect();
        info!(moves = ?listed, "moving replicas off brokers that leave");
        ctx.event(
            cluster,
            false,
            reason::MOVING_REPLICAS,
            format!("moving {}", listed.join(", ")),
        )
        .await;
    }
    Some((
        reason::MOVING_REPLICAS,
        format!("{holding}: moving them to the remaining brokers before they are removed"),
    ))
}

/// The controller voters the Cluster's ConfigMap names, if it exists.
async fn existing_voters(ctx: &Context, ns: &str, cluster: &Cluster) -> Result<Option<String>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .get_opt(&names::config_map_name(cluster))
        .await?
        .and_then(|c| c.data)
        .and_then(|mut d| d.remove(config_map::VOTERS_KEY))
        .filter(|v| !v.is_empty()))
}

/// Each zone's StatefulSet's `spec.replicas` as it stands (0 where it does
/// not exist yet).
async fn statefulset_sizes(ctx: &Context, ns: &str, cluster: &Cluster) -> Result<Vec<i32>> {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut sizes = Vec::with_capacity(cluster.spec.zones.len());
    for index in 0..cluster.spec.zones.len() {
        let existing = api
            .get_opt(&names::statefulset_name(cluster, index))
            .await?;
        sizes.push(
            existing
                .and_then(|s| s.spec)
                .and_then(|s| s.replicas)
                .unwrap_or(0),
        );
    }
    Ok(sizes)
}

fn error_policy(cluster: Arc<Cluster>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(cluster = %cluster.name_any(), %error, "cluster reconcile failed");
    ctx.metrics.failed("cluster", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// Runs the Cluster controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (clusters, sts, svc, cm, pdbs) = match &namespace {
        Some(ns) => (
            Api::<Cluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=runnel-operator");
    Controller::new(clusters, watcher::Config::default())
        .owns(sts, owned.clone())
        .owns(svc, owned.clone())
        .owns(cm, owned.clone())
        .owns(pdbs, owned)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}

#[cfg(test)]
pub(crate) mod tests {
    use kube::api::ObjectMeta;
    use runnel_operator_api::{ClusterSpec, StorageSpec};

    use super::*;

    /// A Cluster `streams/events` as the API server would hand it over.
    pub(crate) fn cluster(brokers: i32, zones: &[&str]) -> Cluster {
        Cluster {
            metadata: ObjectMeta {
                name: Some("events".into()),
                namespace: Some("streams".into()),
                uid: Some("0000-1111".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: ClusterSpec {
                brokers,
                zones: zones.iter().map(|z| (*z).to_owned()).collect(),
                storage: StorageSpec {
                    size: "10Gi".into(),
                    storage_class_name: Some("fast".into()),
                },
                config: Default::default(),
                image: None,
                resources: None,
                authentication: None,
                tls: None,
                authorization: None,
            },
            status: None,
        }
    }

    #[test]
    fn every_object_is_owned_by_the_cluster() {
        let c = cluster(3, &["a", "b", "c"]);
        let owner =
            |refs: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
                let refs = refs.expect("owner references");
                assert_eq!(refs.len(), 1);
                assert_eq!(refs[0].kind, "Cluster");
                assert_eq!(refs[0].controller, Some(true));
            };
        owner(
            config_map::config_map(&c, &names::controller_voters(&c))
                .metadata
                .owner_references,
        );
        owner(service::headless_service(&c).metadata.owner_references);
        owner(service::bootstrap_service(&c).metadata.owner_references);
        owner(statefulset::statefulset(&c, 0).metadata.owner_references);
        owner(pdb::pdb(&c).metadata.owner_references);
    }

    #[test]
    fn broker_slots_interleave_zones_with_disjoint_ids() {
        let c = cluster(4, &["zone-a", "zone-b", "zone-c"]);
        let slots = names::broker_slots(&c);
        let ids: Vec<i32> = slots.iter().map(|s| s.node_id).collect();
        assert_eq!(ids, vec![1000, 2000, 3000, 1001]);
        assert_eq!(slots[3].pod, "events-zone-a-1");
        assert_eq!(
            slots[0].host(&c),
            "events-zone-a-0.events-brokers.streams.svc"
        );
    }
}
