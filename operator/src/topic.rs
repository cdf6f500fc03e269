//! The Topic controller: makes the topic in the brokers match the spec.
//!
//! ```text
//! Topic ──▶ managed? ── no ──▶ drop the finalizer, Ready=False Unmanaged
//!        ──▶ finalizer ── deleting ──▶ DeleteTopics (if this resource owns it)
//!        ──▶ Cluster exists? ── no ──▶ Ready=False ClusterNotFound
//!        ──▶ oldest resource naming this topic? ── no ──▶ Ready=False Conflict
//!        ──▶ Metadata + DescribeConfigs ──▶ plan::plan_topic ──▶ CreateTopics /
//!            CreatePartitions / IncrementalAlterConfigs ──▶ status
//! ```
//!
//! Topics in the brokers that no resource names are never touched.

pub mod assign;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use runnel_operator_api::condition::{self, reason, Condition, READY};
use runnel_operator_api::{is_managed, Cluster, Topic, TopicStatus};
use tracing::{info, instrument, warn};

use crate::admin::{Admin, AdminError, Reassigning};
use crate::cluster::apply_status;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::now;
use assign::Placement;
use plan::{plan_topic, Action as TopicAction, DesiredTopic, Moving, ObservedTopic};

/// The finalizer that deletes the topic from the brokers.
pub const FINALIZER: &str = "runnel.dev/topic";

/// How soon a Topic that waits on something outside it is looked at again.
const WAIT_REQUEUE: Duration = Duration::from_secs(10);

/// What a reconcile found, for the status.
struct Outcome {
    ready: Condition,
    partitions: Option<i32>,
    replicas: Option<i32>,
}

impl Outcome {
    fn not_ready(topic: &Topic, reason: &str, message: String) -> Self {
        Outcome {
            ready: Condition::new(READY, false, reason, message, topic.metadata.generation),
            partitions: None,
            replicas: None,
        }
    }
}

async fn write_status(ctx: &Context, topic: &Topic, outcome: Outcome) -> Result<()> {
    let mut status: TopicStatus = topic.status.clone().unwrap_or_default();
    status.observed_generation = topic.metadata.generation;
    status.topic_name = Some(topic.topic_name().to_owned());
    if outcome.partitions.is_some() {
        status.partitions = outcome.partitions;
        status.replicas = outcome.replicas;
    }
    let changed_reason = condition::find(&status.conditions, READY)
        .is_none_or(|c| c.reason != outcome.ready.reason || c.status != outcome.ready.status);
    if changed_reason {
        ctx.event(
            topic,
            !outcome.ready.is_true(),
            &outcome.ready.reason,
            outcome.ready.message.clone(),
        )
        .await;
    }
    condition::set(&mut status.conditions, outcome.ready, now());
    if topic.status.as_ref() != Some(&status) {
        apply_status(ctx, topic, &status).await?;
    }
    Ok(())
}

/// Whether `t`'s status says it manages its topic: it has reconciled it
/// (any Ready reason but those that mean it stood back).
fn has_claimed(t: &Topic) -> bool {
    let Some(status) = &t.status else {
        return false;
    };
    status.topic_name.as_deref() == Some(t.topic_name())
        && condition::find(&status.conditions, READY).is_some_and(|c| {
            ![
                reason::CONFLICT,
                reason::UNMANAGED,
                reason::CLUSTER_NOT_FOUND,
            ]
            .contains(&c.reason.as_str())
        })
}

/// The resource that manages `topic`'s topic, among the managed, not
/// deleting Topics in its namespace naming the same cluster and topic: the
/// one that already manages it, else the oldest (creation time, whose
/// granularity is a second, then uid).
async fn owner_of(ctx: &Context, topic: &Topic) -> Result<Option<Topic>> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    let all = api.list(&ListParams::default()).await?;
    Ok(all
        .items
        .into_iter()
        .filter(|t| {
            t.spec.cluster == topic.spec.cluster
                && t.topic_name() == topic.topic_name()
                && is_managed(t.metadata.annotations.as_ref())
                && t.metadata.deletion_timestamp.is_none()
        })
        .min_by_key(|t| {
            (
                !has_claimed(t),
                t.metadata.creation_timestamp.as_ref().map(|c| c.0),
                t.metadata.uid.clone(),
            )
        }))
}

fn same(a: &Topic, b: &Topic) -> bool {
    a.metadata.uid.is_some() && a.metadata.uid == b.metadata.uid
}

#[instrument(skip_all, fields(namespace = %topic.namespace().unwrap_or_default(), topic = %topic.name_any()))]
async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(topic, &ctx).await;
    ctx.metrics.reconciled("topic", started.elapsed());
    result
}

async fn reconcile_inner(topic: Arc<Topic>, ctx: &Arc<Context>) -> Result<Action> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    if !is_managed(topic.metadata.annotations.as_ref()) {
        return unmanage(&api, &topic, ctx).await;
    }
    finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Event::Apply(topic) => apply_topic(&topic, ctx).await,
            Event::Cleanup(topic) => cleanup_topic(&topic, ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// `runnel.dev/managed: "false"`: forget the topic without deleting it.
async fn unmanage(api: &Api<Topic>, topic: &Topic, ctx: &Context) -> Result<Action> {
    let finalizers = topic.finalizers();
    if finalizers.iter().any(|f| f == FINALIZER) {
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
        let patch = serde_json::json!({
            "metadata": { "finalizers": kept, "resourceVersion": topic.resource_version() }
        });
        api.patch(
            &topic.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        info!("management stopped; the topic is left in the brokers");
    }
    if topic.metadata.deletion_timestamp.is_none() {
        write_status(
            ctx,
            topic,
            Outcome::not_ready(
                topic,
                reason::UNMANAGED,
                "runnel.dev/managed is \"false\": the operator leaves this topic alone".into(),
            ),
        )
        .await?;
    }
    Ok(Action::await_change())
}

async fn cluster_of(ctx: &Context, topic: &Topic) -> Result<Option<Cluster>> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(clusters.get_opt(&topic.spec.cluster).await?)
}

async fn apply_topic(topic: &Topic, ctx: &Context) -> Result<Action> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = topic.topic_name().to_owned();
    if cluster_of(ctx, topic).await?.is_none() {
        let message = format!("Cluster {ns}/{} does not exist", topic.spec.cluster);
        write_status(
            ctx,
            topic,
            Outcome::not_ready(topic, reason::CLUSTER_NOT_FOUND, message),
        )
        .await?;
        return Ok(Action::requeue(WAIT_REQUEUE));
    }
    if let Some(owner) = owner_of(ctx, topic).await? {
        if !same(&owner, topic) {
            let message = format!(
                "topic {name} in cluster {} is managed by the older Topic {ns}/{}",
                topic.spec.cluster,
                owner.name_any()
            );
            write_status(
                ctx,
                topic,
                Outcome::not_ready(topic, reason::CONFLICT, message),
            )
            .await?;
            return Ok(Action::requeue(ctx.intervals.resync));
        }
    }
    let admin = ctx.admin(&ns, &topic.spec.cluster).await;
    let outcome = match sync_topic(topic, &name, &admin).await {
        Ok(outcome) => outcome,
        Err(e) => {
            let reason = if e.is_unreachable() {
                reason::BROKERS_UNREACHABLE
            } else {
                reason::BROKER_ERROR
            };
            write_status(ctx, topic, Outcome::not_ready(topic, reason, e.to_string())).await?;
            return Err(e.into());
        }
    };
    let ready = outcome.ready.is_true();
    write_status(ctx, topic, outcome).await?;
    Ok(Action::requeue(if ready {
        ctx.intervals.resync
    } else {
        WAIT_REQUEUE.max(ctx.intervals.resync.min(Duration::from_secs(30)))
    }))
}

/// Reads the topic from the brokers, plans and applies the changes.
async fn sync_topic(topic: &Topic, name: &str, admin: &Admin) -> Result<Outcome, AdminError> {
    let generation = topic.metadata.generation;
    // The controller's moves first, then Metadata: a move the controller
    // has finished is not taken for one in flight, and the replicas of a
    // partition in flight are the controller's.
    let mut reassigning: BTreeMap<i32, Reassigning> = admin
        .reassignments()
        .await?
        .into_iter()
        .filter(|((topic, _), _)| topic == name)
        .map(|((_, partition), r)| (partition, r))
        .collect();
    let meta = admin.metadata().await?;
    let brokers: Vec<Placement> = meta
        .brokers
        .iter()
        .map(|b| Placement {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect();
    let observed = match meta.topics.get(name) {
        Some(partitions) => {
            let replicas = partitions
                .iter()
                .map(|(i, p)| match reassigning.get_mut(i) {
                    Some(r) => std::mem::take(&mut r.replicas),
                    None => p.replicas.clone(),
                })
                .collect();
            Some(ObservedTopic {
                partitions: replicas,
                config: admin.describe_topic_config(name).await?,
                moving: reassigning
                    .into_iter()
                    .map(|(p, r)| {
                        let moving = Moving {
                            adding: r.adding,
                            removing: r.removing,
                        };
                        (p, moving)
                    })
                    .collect(),
            })
        }
        None => None,
    };
    let desired = DesiredTopic {
        partitions: topic.spec.partitions,
        replicas: topic.spec.replicas,
        config: topic.spec.config.clone(),
    };
    let plan = plan_topic(&desired, observed.as_ref(), &brokers);
    let mut partitions = observed.as_ref().map(|o| o.partitions.len() as i32);
    let mut replicas = observed
        .as_ref()
        .and_then(ObservedTopic::replication_factor);
    let mut created = false;
    for action in &plan.actions {
        match action {
            TopicAction::Create { assignment, config } => {
                admin.create_topic(name, assignment, config).await?;
                info!(topic = %name, partitions = assignment.len(), "topic created");
                partitions = Some(assignment.len() as i32);
                replicas = assignment.first().map(|r| r.len() as i32);
                created = true;
            }
            TopicAction::AddPartitions { total, assignment } => {
                admin.create_partitions(name, *total, assignment).await?;
                info!(topic = %name, total, "partitions added");
                partitions = Some(*total);
            }
            TopicAction::ChangeReplicas { moves } => {
                let moves: Vec<(String, i32, Vec<i32>)> = moves
                    .iter()
                    .map(|(p, list)| (name.to_owned(), *p, list.clone()))
                    .collect();
                admin.reassign(&moves).await?;
                info!(topic = %name, partitions = moves.len(), replicas = topic.spec.replicas, "replica count change started");
            }
            TopicAction::AlterConfig { set, delete } => {
                admin.alter_topic_config(name, set, delete).await?;
                info!(topic = %name, set = ?set, delete = ?delete, "topic config applied");
            }
        }
    }
    let ready = match &plan.blocked {
        Some(blocked) => Condition::new(
            READY,
            false,
            blocked.reason(),
            blocked.to_string(),
            generation,
        ),
        None if created => Condition::new(
            READY,
            true,
            reason::TOPIC_CREATED,
            format!("topic {name} created"),
            generation,
        ),
        None => Condition::new(
            READY,
            true,
            reason::TOPIC_READY,
            format!("topic {name} matches the spec"),
            generation,
        ),
    };
    Ok(Outcome {
        ready,
        partitions,
        replicas,
    })
}

/// The resource is being deleted: delete the topic if this resource is the
/// one managing it and its cluster still exists.
async fn cleanup_topic(topic: &Topic, ctx: &Context) -> Result<Action> {
    let ns = topic
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let name = topic.topic_name();
    if cluster_of(ctx, topic).await?.is_none() {
        info!(topic = %name, "cluster gone; nothing to delete");
        return Ok(Action::await_change());
    }
    // Another, older resource manages this topic: leave it.
    if let Some(owner) = owner_of(ctx, topic).await? {
        if !same(&owner, topic) {
            info!(topic = %name, owner = %owner.name_any(), "topic managed by another resource; not deleted");
            return Ok(Action::await_change());
        }
    }
    ctx.admin(&ns, &topic.spec.cluster)
        .await
        .delete_topic(name)
        .await?;
    info!(topic = %name, "topic deleted");
    ctx.event(
        topic,
        false,
        "TopicDeleted",
        format!("topic {name} deleted"),
    )
    .await;
    Ok(Action::await_change())
}

fn error_policy(topic: Arc<Topic>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(topic = %topic.name_any(), %error, "topic reconcile failed");
    ctx.metrics.failed("topic", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// Runs the Topic controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let topics = match &namespace {
        Some(ns) => Api::<Topic>::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(topics, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
