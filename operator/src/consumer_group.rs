//! The ConsumerGroup controller: observes a group (state, members, lag per
//! partition) and applies `resetOffsets` requests.
//!
//! ```text
//! ConsumerGroup ──▶ DescribeGroups, OffsetFetch (coordinator)
//!               ──▶ ListOffsets latest (leaders) ──▶ lag::partition_lags
//!               ──▶ lag::reset_decision ── Apply ──▶ ListOffsets ──▶ OffsetCommit
//!               ──▶ status, every --group-refresh
//! ```
//!
//! A reset is a request, not a standing state: it is applied once per
//! generation of the spec (recorded in `status.resetAppliedGeneration`),
//! and only while the group has no members.

pub mod lag;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use runnel_operator_api::condition::{self, reason, Condition, OFFSETS_RESET, READY};
use runnel_operator_api::{Cluster, ConsumerGroup, ConsumerGroupStatus, ResetOffsets, ResetTo};
use tracing::{info, instrument, warn};

use crate::admin::{Admin, AdminError, ClusterMetadata, OffsetSpec, TopicPartition};
use crate::cluster::apply_status;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::ObservedLag;
use crate::now;
use lag::{partition_lags, reset_decision, ResetDecision};

/// A group's lag series are dropped when not refreshed for this many refresh
/// intervals: the resource was deleted or its brokers are out of reach.
const LAG_SERIES_REFRESHES: u32 = 3;

/// Why a reset could not be applied.
#[derive(Debug)]
enum ResetFailure {
    /// The request cannot work as written.
    Invalid(String),
    /// The group has members (it may have gained some since it was described).
    NotEmpty(String),
    /// The brokers failed.
    Admin(AdminError),
}

impl From<AdminError> for ResetFailure {
    fn from(e: AdminError) -> Self {
        use kafka_protocol::ResponseError as E;
        match e.kafka_error() {
            Some(E::UnknownMemberId | E::RebalanceInProgress | E::IllegalGeneration) => {
                ResetFailure::NotEmpty(e.to_string())
            }
            _ => ResetFailure::Admin(e),
        }
    }
}

/// The offsets `reset` asks for, one per partition of its topics.
async fn reset_targets(
    admin: &Admin,
    meta: &ClusterMetadata,
    reset: &ResetOffsets,
) -> Result<BTreeMap<TopicPartition, i64>, ResetFailure> {
    let mut partitions = Vec::new();
    for topic in &reset.topics {
        let Some(ps) = meta.topics.get(topic) else {
            return Err(ResetFailure::Invalid(format!(
                "topic {topic} does not exist"
            )));
        };
        partitions.extend(ps.keys().map(|p| (topic.clone(), *p)));
    }
    let targets = match reset.to {
        ResetTo::Earliest => {
            admin
                .list_offsets(meta, &partitions, OffsetSpec::Earliest)
                .await?
        }
        ResetTo::Latest => {
            admin
                .list_offsets(meta, &partitions, OffsetSpec::Latest)
                .await?
        }
        ResetTo::Datetime => {
            let text = reset.datetime.as_deref().unwrap_or_default();
            let at: k8s_openapi::jiff::Timestamp = text.parse().map_err(|e| {
                ResetFailure::Invalid(format!(
                    "resetOffsets.datetime {text:?} is not an RFC 3339 time: {e}"
                ))
            })?;
            admin
                .list_offsets(
                    meta,
                    &partitions,
                    OffsetSpec::Timestamp(at.as_millisecond()),
                )
                .await?
        }
        ResetTo::Offset => {
            let want = reset.offset.unwrap_or(0);
            let earliest = admin
                .list_offsets(meta, &partitions, OffsetSpec::Earliest)
                .await?;
            let latest = admin
                .list_offsets(meta, &partitions, OffsetSpec::Latest)
                .await?;
            partitions
                .iter()
                .map(|tp| {
                    let lo = earliest.get(tp).copied().unwrap_or(0);
                    let hi = latest.get(tp).copied().unwrap_or(lo).max(lo);
                    (tp.clone(), want.clamp(lo, hi))
                })
                .collect()
        }
    };
    Ok(targets)
}

#[instrument(skip_all, fields(namespace = %group.namespace().unwrap_or_default(), group = %group.name_any()))]
async fn reconcile(group: Arc<ConsumerGroup>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&group, &ctx).await;
    ctx.metrics.reconciled("consumergroup", started.elapsed());
    result
}

async fn reconcile_inner(group: &ConsumerGroup, ctx: &Context) -> Result<Action> {
    let ns = group
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let generation = group.metadata.generation;
    let mut status: ConsumerGroupStatus = group.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.group_id = Some(group.group_id().to_owned());

    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    if clusters.get_opt(&group.spec.cluster).await?.is_none() {
        let message = format!("Cluster {ns}/{} does not exist", group.spec.cluster);
        let c = Condition::new(READY, false, reason::CLUSTER_NOT_FOUND, message, generation);
        condition::set(&mut status.conditions, c, now());
        apply_status(ctx, group, &status).await?;
        return Ok(Action::requeue(ctx.intervals.group_refresh));
    }

    let admin = ctx.admin(&ns, &group.spec.cluster).await;
    match observe_and_reset(group, &admin, &mut status, ctx).await {
        Ok(()) => {
            let lags: Vec<ObservedLag<'_>> = status
                .partitions
                .iter()
                .map(|p| (p.topic.as_str(), p.partition, p.lag))
                .collect();
            ctx.metrics.observe_group(
                &ns,
                &group.name_any(),
                group.group_id(),
                i64::from(status.members),
                &lags,
                ctx.intervals.group_refresh * LAG_SERIES_REFRESHES,
            );
        }
        Err(e) => {
            let reason = if e.is_unreachable() {
                reason::BROKERS_UNREACHABLE
            } else {
                reason::BROKER_ERROR
            };
            let c = Condition::new(READY, false, reason, e.to_string(), generation);
            condition::set(&mut status.conditions, c, now());
            apply_status(ctx, group, &status).await?;
            return Err(e.into());
        }
    }
    // Our own status write wakes this controller again: write only when
    // something besides the refresh time changed, or the last refresh is
    // getting old, so that the status is refreshed once per interval rather
    // than in a loop.
    let previous = group.status.clone().unwrap_or_default();
    let stale = previous
        .last_refreshed
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .is_none_or(|t| {
            let age = now().0.duration_since(t);
            age.unsigned_abs() >= ctx.intervals.group_refresh / 2
        });
    status.last_refreshed = previous.last_refreshed.clone();
    if stale || status != previous {
        status.last_refreshed = Some(now().0.to_string());
        apply_status(ctx, group, &status).await?;
    }
    Ok(Action::requeue(ctx.intervals.group_refresh))
}

async fn observe_and_reset(
    group: &ConsumerGroup,
    admin: &Admin,
    status: &mut ConsumerGroupStatus,
    ctx: &Context,
) -> Result<(), AdminError> {
    let generation = group.metadata.generation;
    let id = group.group_id();
    let description = admin.describe_group(id).await?;
    let meta = admin.metadata().await?;

    match reset_decision(group, description.as_ref()) {
        ResetDecision::NotRequested | ResetDecision::AlreadyApplied => {}
        ResetDecision::WaitForEmpty { members } => {
            let message = format!(
                "the reset of generation {} waits: the group has {members} members; it is applied once the group is empty",
                generation.unwrap_or_default()
            );
            let c = Condition::new(
                OFFSETS_RESET,
                false,
                reason::GROUP_NOT_EMPTY,
                message,
                generation,
            );
            condition::set(&mut status.conditions, c, now());
        }
        ResetDecision::Apply => {
            let reset = group
                .spec
                .reset_offsets
                .as_ref()
                .expect("Apply implies a reset request");
            let outcome = match reset_targets(admin, &meta, reset).await {
                Ok(targets) => admin
                    .commit_offsets(id, &targets)
                    .await
                    .map(|()| targets)
                    .map_err(ResetFailure::from),
                Err(e) => Err(e),
            };
            let c = match outcome {
                Ok(targets) => {
                    info!(group = %id, partitions = targets.len(), "offsets reset");
                    status.reset_applied_generation = generation;
                    ctx.event(
                        group,
                        false,
                        reason::RESET_APPLIED,
                        format!(
                            "offsets of {} partitions reset to {:?}",
                            targets.len(),
                            reset.to
                        ),
                    )
                    .await;
                    Condition::new(
                        OFFSETS_RESET,
                        true,
                        reason::RESET_APPLIED,
                        format!(
                            "{} partitions reset at generation {}",
                            targets.len(),
                            generation.unwrap_or_default()
                        ),
                        generation,
                    )
                }
                Err(ResetFailure::Invalid(message)) => Condition::new(
                    OFFSETS_RESET,
                    false,
                    reason::RESET_INVALID,
                    message,
                    generation,
                ),
                Err(ResetFailure::NotEmpty(message)) => Condition::new(
                    OFFSETS_RESET,
                    false,
                    reason::GROUP_NOT_EMPTY,
                    message,
                    generation,
                ),
                Err(ResetFailure::Admin(e)) => return Err(e),
            };
            condition::set(&mut status.conditions, c, now());
        }
    }
    if group.spec.reset_offsets.is_none() {
        status.conditions.retain(|c| c.type_ != OFFSETS_RESET);
    }

    // Observe after any reset, so the status shows its effect.
    let description = admin.describe_group(id).await?;
    let committed = admin.committed_offsets(id).await?;
    let partitions: Vec<TopicPartition> = committed
        .keys()
        .filter(|(t, p)| meta.topics.get(t).is_some_and(|ps| ps.contains_key(p)))
        .cloned()
        .collect();
    let ends = admin
        .list_offsets(&meta, &partitions, OffsetSpec::Latest)
        .await?;
    let lags = partition_lags(&committed, &ends);
    status.lag = lags.iter().map(|p| p.lag).sum();
    status.partitions = lags;
    let ready = match &description {
        Some(d) => {
            status.state = Some(d.state.clone());
            status.members = i32::try_from(d.members).unwrap_or(i32::MAX);
            Condition::new(
                READY,
                true,
                reason::GROUP_OBSERVED,
                format!("group {id} is {} with {} members", d.state, d.members),
                generation,
            )
        }
        None if !committed.is_empty() => {
            status.state = Some("Empty".to_owned());
            status.members = 0;
            Condition::new(
                READY,
                true,
                reason::GROUP_OBSERVED,
                format!("group {id} has committed offsets and no members"),
                generation,
            )
        }
        None => {
            status.state = None;
            status.members = 0;
            Condition::new(
                READY,
                false,
                reason::GROUP_NOT_FOUND,
                format!("the brokers know no group {id}"),
                generation,
            )
        }
    };
    condition::set(&mut status.conditions, ready, now());
    Ok(())
}

fn error_policy(group: Arc<ConsumerGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(group = %group.name_any(), %error, "consumer group reconcile failed");
    ctx.metrics.failed("consumergroup", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// Runs the ConsumerGroup controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let groups = match &namespace {
        Some(ns) => Api::<ConsumerGroup>::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(groups, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
