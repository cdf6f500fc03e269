//! The User controller: keeps a SCRAM credential in a Cluster's brokers for
//! each `User`, from a password in a Secret.
//!
//! ```text
//! User ──▶ finalizer ── deleting ──▶ AlterUserScramCredentials (deletion)
//!       ──▶ Cluster exists, with spec.authentication? ── no ──▶ Ready=False
//!       ──▶ the password: spec.passwordSecret, or a Secret <name> the
//!           operator makes once (username, password, sasl.jaas.config)
//!       ──▶ credential missing, or spec / Secret changed since applied?
//!           ──▶ AlterUserScramCredentials (upsertion, salted here) ──▶ status
//! ```
//! The password never goes to the brokers: the operator salts it (PBKDF2,
//! 4096 iterations) and sends the salted form, as `kafka-configs.sh` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use runnel_operator_api::condition::{self, reason, Condition, READY};
use runnel_operator_api::{
    AclOperation, AclPatternType, AclResourceType, AclRuleType, Cluster, User, UserAuthorization,
    UserQuotas, UserStatus,
};
use tracing::{info, instrument, warn};

use crate::admin::{generate_password, AclEntry};
use crate::cluster::apply_status;
use crate::context::{secret_text, secret_version, Context};
use crate::error::{Error, Result};
use crate::now;

/// The finalizer that deletes the credential from the brokers.
pub const FINALIZER: &str = "runnel.dev/user";

/// How soon a User that waits on something outside it is looked at again.
const WAIT_REQUEUE: Duration = Duration::from_secs(10);

/// The password, and the version of the Secret it came from.
struct Password {
    secret: String,
    version: String,
    value: String,
}

/// The Secret the operator makes for a User without `passwordSecret`.
fn generated_secret(user: &User, password: &str) -> Secret {
    let name = user.user_name();
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{name}\" password=\"{password}\";"
    );
    Secret {
        metadata: ObjectMeta {
            name: user.metadata.name.clone(),
            namespace: user.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_owned(),
                    "runnel-operator".to_owned(),
                ),
                ("runnel.dev/cluster".to_owned(), user.spec.cluster.clone()),
            ])),
            owner_references: user.controller_owner_ref(&()).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            ("username".to_owned(), ByteString(name.as_bytes().to_vec())),
            (
                "password".to_owned(),
                ByteString(password.as_bytes().to_vec()),
            ),
            ("sasl.jaas.config".to_owned(), ByteString(jaas.into_bytes())),
        ])),
        ..Secret::default()
    }
}

/// The User's password: from `spec.passwordSecret`, or from the Secret the
/// operator made (made now if there is none). `Err` says why not, for the
/// status.
async fn password(ctx: &Context, user: &User, ns: &str) -> Result<Result<Password, String>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    if let Some(reference) = &user.spec.password_secret {
        let Some(secret) = secrets.get_opt(&reference.name).await? else {
            return Ok(Err(format!("Secret {} does not exist", reference.name)));
        };
        return Ok(match secret_text(&secret, &reference.key) {
            Some(value) => Ok(Password {
                secret: reference.name.clone(),
                version: format!("{}/{}", secret_version(&secret), reference.key),
                value,
            }),
            None => Err(format!(
                "Secret {} has no key {} (or it is empty or not UTF-8)",
                reference.name, reference.key
            )),
        });
    }
    let name = user.name_any();
    let owned_by_user = |secret: &Secret| {
        secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == user.metadata.uid.as_ref())
    };
    let secret = match secrets.get_opt(&name).await? {
        Some(secret) if owned_by_user(&secret) => {
            let says = secret
                .data
                .as_ref()
                .and_then(|d| d.get("username"))
                .map(|v| v.0.as_slice());
            match secret_text(&secret, "password") {
                // The user name changed: the Secret follows (same password).
                Some(password) if says != Some(user.user_name().as_bytes()) => {
                    let data = generated_secret(user, &password).data;
                    let patch = serde_json::json!({ "data": data });
                    secrets
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?
                }
                _ => secret,
            }
        }
        Some(_) => {
            return Ok(Err(format!(
                "Secret {name} exists and is not this User's: the operator will not write its password there (set spec.passwordSecret to use it)"
            )))
        }
        None => {
            let value = match generate_password() {
                Ok(value) => value,
                Err(why) => return Ok(Err(why)),
            };
            let made = secrets
                .create(&PostParams::default(), &generated_secret(user, &value))
                .await?;
            info!(secret = %name, "password Secret made");
            made
        }
    };
    Ok(match secret_text(&secret, "password") {
        Some(value) => Ok(Password {
            secret: name,
            version: secret_version(&secret),
            value,
        }),
        None => Err(format!("Secret {name} has no password")),
    })
}

async fn write_status(
    ctx: &Context,
    user: &User,
    status: UserStatus,
    ready: Condition,
) -> Result<()> {
    let mut status = status;
    status.observed_generation = user.metadata.generation;
    let changed = condition::find(&status.conditions, READY)
        .is_none_or(|c| c.reason != ready.reason || c.status != ready.status);
    if changed {
        ctx.event(user, !ready.is_true(), &ready.reason, ready.message.clone())
            .await;
    }
    condition::set(&mut status.conditions, ready, now());
    if user.status.as_ref() != Some(&status) {
        apply_status(ctx, user, &status).await?;
    }
    Ok(())
}

#[instrument(skip_all, fields(namespace = %user.namespace().unwrap_or_default(), user = %user.name_any()))]
async fn reconcile(user: Arc<User>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let ns = user
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let api: Api<User> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, user, |event| async {
        match event {
            Event::Apply(user) => apply_user(&user, &ctx, &ns).await,
            Event::Cleanup(user) => cleanup_user(&user, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled("user", started.elapsed());
    result
}

async fn apply_user(user: &User, ctx: &Context, ns: &str) -> Result<Action> {
    let generation = user.metadata.generation;
    let mut status = user.status.clone().unwrap_or_default();
    let not_ready =
        |reason: &str, message: String| Condition::new(READY, false, reason, message, generation);
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cluster) = clusters.get_opt(&user.spec.cluster).await? else {
        let message = format!("Cluster {ns}/{} does not exist", user.spec.cluster);
        write_status(
            ctx,
            user,
            status,
            not_ready(reason::CLUSTER_NOT_FOUND, message),
        )
        .await?;
        return Ok(Action::requeue(WAIT_REQUEUE));
    };
    if cluster.spec.authentication.is_none() {
        let message = format!(
            "Cluster {} has no spec.authentication: its brokers do not ask clients to authenticate",
            user.spec.cluster
        );
        write_status(
            ctx,
            user,
            status,
            not_ready(reason::AUTHENTICATION_DISABLED, message),
        )
        .await?;
        return Ok(Action::requeue(ctx.intervals.resync));
    }
    if user.spec.authorization.is_some() && cluster.spec.authorization.is_none() {
        let message = format!(
            "Cluster {} has no spec.authorization: its brokers do not check ACLs, so spec.authorization here would mean nothing",
            user.spec.cluster
        );
        write_status(
            ctx,
            user,
            status,
            not_ready(reason::AUTHORIZATION_DISABLED, message),
        )
        .await?;
        return Ok(Action::requeue(ctx.intervals.resync));
    }
    if let Some(why) = conflict(ctx, user, &cluster, ns).await? {
        write_status(ctx, user, status, not_ready(reason::USER_CONFLICT, why)).await?;
        return Ok(Action::requeue(ctx.intervals.resync));
    }
    let password = match password(ctx, user, ns).await? {
        Ok(password) => password,
        Err(why) => {
            write_status(
                ctx,
                user,
                status,
                not_ready(reason::PASSWORD_UNAVAILABLE, why),
            )
            .await?;
            return Ok(Action::requeue(WAIT_REQUEUE));
        }
    };
    let name = user.user_name().to_owned();
    let mechanism = user.spec.authentication.kind.sasl_name();
    let admin = ctx.admin(ns, &user.spec.cluster).await;
    // A former user name: what this User made for it goes, unless another
    // User manages that name now.
    let former = match status.user_name.as_ref().filter(|old| **old != name) {
        Some(old) => match owner_of(ctx, user, ns, old).await? {
            Some(owner) if owner.metadata.uid != user.metadata.uid => None,
            _ => Some(old.clone()),
        },
        None => None,
    };
    let outcome = async {
        // The spec named another user or mechanism before: that credential goes.
        if let (Some(old_name), Some(old_mechanism)) = (&status.user_name, &status.mechanism) {
            let renamed = *old_name != name;
            if (renamed && former.is_some()) || (!renamed && old_mechanism != mechanism) {
                admin.delete_scram(old_name, old_mechanism).await?;
                info!(user = %old_name, mechanism = %old_mechanism, "former credential deleted");
            }
        }
        if let Some(old_name) = &former {
            if status.quotas.is_some() {
                sync_quotas(&admin, old_name, &UserQuotas::default()).await?;
            }
        }
        let present = admin
            .scram_mechanisms(&name)
            .await?
            .iter()
            .any(|m| m == mechanism);
        let applied = status.applied_secret_version.as_deref() == Some(password.version.as_str())
            && status.user_name.as_deref() == Some(name.as_str())
            && status.mechanism.as_deref() == Some(mechanism);
        if !(present && applied) {
            admin
                .upsert_scram(&name, mechanism, &password.value)
                .await?;
            info!(user = %name, mechanism, "credential applied");
        }
        // Quotas: exactly the spec's, or none once the operator let go.
        let quotas = match &user.spec.quotas {
            Some(quotas) => {
                sync_quotas(&admin, &name, quotas).await?;
                Some(quotas.clone())
            }
            None if status.quotas.is_some() => {
                sync_quotas(&admin, &name, &UserQuotas::default()).await?;
                None
            }
            None => None,
        };
        if cluster.spec.authorization.is_none() {
            // The brokers do not check ACLs now; what was made stays on
            // record, to be kept or removed once they do again.
            return Ok((status.acls.and_then(|n| usize::try_from(n).ok()), quotas));
        }
        // A renamed user's ACLs, if the operator made them, go with the old name.
        if let Some(old_name) = &former {
            if status.acls.is_some() {
                let old = format!("User:{old_name}");
                admin.delete_acls(&old, &admin.acls_of(&old).await?).await?;
            }
        }
        match &user.spec.authorization {
            Some(authorization) => {
                let desired = desired_acls(&name, authorization);
                sync_acls(&admin, &name, &desired).await?;
                Ok((Some(desired.len()), quotas))
            }
            // No longer managed: what the operator made goes.
            None if status.acls.is_some() => {
                sync_acls(&admin, &name, &BTreeSet::new()).await?;
                Ok((None, quotas))
            }
            None => Ok::<_, crate::admin::AdminError>((None, quotas)),
        }
    }
    .await;
    let (acls, quotas) = match outcome {
        Ok(applied) => applied,
        Err(e) => {
            let reason = if e.is_unreachable() {
                reason::BROKERS_UNREACHABLE
            } else {
                reason::BROKER_ERROR
            };
            write_status(ctx, user, status, not_ready(reason, e.to_string())).await?;
            return Err(e.into());
        }
    };
    status.acls = acls.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
    status.quotas = quotas;
    status.user_name = Some(name.clone());
    status.mechanism = Some(mechanism.to_owned());
    status.secret = Some(password.secret);
    status.applied_secret_version = Some(password.version);
    let ready = Condition::new(
        READY,
        true,
        reason::USER_READY,
        match acls {
            Some(n) => format!("user {name} can authenticate with {mechanism} and has {n} ACLs"),
            None => format!("user {name} can authenticate with {mechanism}"),
        },
        generation,
    );
    write_status(ctx, user, status, ready).await?;
    Ok(Action::requeue(ctx.intervals.resync))
}

/// The resource is being deleted: the credential goes from the brokers
/// (if its Cluster is still there). A generated Secret goes with the User
/// (it is owned by it).
async fn cleanup_user(user: &User, ctx: &Context, ns: &str) -> Result<Action> {
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cluster) = clusters.get_opt(&user.spec.cluster).await? else {
        info!("cluster gone; no credential to delete");
        return Ok(Action::await_change());
    };
    // Only what this User made, and only while no older User has the
    // name (then the credential is that one's).
    let status = user.status.clone().unwrap_or_default();
    let (Some(name), Some(mechanism)) = (status.user_name.clone(), status.mechanism.clone()) else {
        info!("no credential was made for this User; nothing to delete");
        return Ok(Action::await_change());
    };
    if let Some(owner) = owner_of(ctx, user, ns, &name).await? {
        if owner.metadata.uid != user.metadata.uid {
            info!(user = %name, owner = %owner.name_any(), "the credential is another User's; not deleted");
            return Ok(Action::await_change());
        }
    }
    let admin = ctx.admin(ns, &user.spec.cluster).await;
    // Without spec.authorization the brokers answer SECURITY_DISABLED.
    if status.acls.is_some() && cluster.spec.authorization.is_some() {
        let principal = format!("User:{name}");
        admin
            .delete_acls(&principal, &admin.acls_of(&principal).await?)
            .await?;
        info!(user = %name, "ACLs deleted");
    }
    if status.quotas.is_some() {
        sync_quotas(&admin, &name, &UserQuotas::default()).await?;
        info!(user = %name, "quotas removed");
    }
    admin.delete_scram(&name, &mechanism).await?;
    info!(user = %name, %mechanism, "credential deleted");
    ctx.event(user, false, "UserDeleted", format!("user {name} deleted"))
        .await;
    Ok(Action::await_change())
}

/// The ACLs `authorization` gives user `name`, with Kafka's codes.
fn desired_acls(name: &str, authorization: &UserAuthorization) -> BTreeSet<AclEntry> {
    let mut acls = BTreeSet::new();
    for rule in &authorization.acls {
        let (resource_type, resource_name) = match rule.resource.kind {
            AclResourceType::Topic => (2, rule.resource.name.clone()),
            AclResourceType::Group => (3, rule.resource.name.clone()),
            AclResourceType::Cluster => (4, Some("kafka-cluster".to_owned())),
            AclResourceType::TransactionalId => (5, rule.resource.name.clone()),
        };
        let pattern_type = match rule.resource.pattern_type {
            AclPatternType::Literal => 3,
            AclPatternType::Prefix => 4,
        };
        let permission = match rule.kind {
            AclRuleType::Deny => 2,
            AclRuleType::Allow => 3,
        };
        for operation in &rule.operations {
            acls.insert(AclEntry {
                resource_type,
                name: resource_name.clone().unwrap_or_else(|| "*".to_owned()),
                pattern_type,
                principal: format!("User:{name}"),
                host: rule.host.clone(),
                operation: operation_code(*operation),
                permission,
            });
        }
    }
    acls
}

fn operation_code(operation: AclOperation) -> i8 {
    match operation {
        AclOperation::All => 2,
        AclOperation::Read => 3,
        AclOperation::Write => 4,
        AclOperation::Create => 5,
        AclOperation::Delete => 6,
        AclOperation::Alter => 7,
        AclOperation::Describe => 8,
        AclOperation::ClusterAction => 9,
        AclOperation::DescribeConfigs => 10,
        AclOperation::AlterConfigs => 11,
        AclOperation::IdempotentWrite => 12,
    }
}

/// Makes user `name`'s ACLs in the brokers exactly `desired`.
async fn sync_acls(
    admin: &crate::admin::Admin,
    name: &str,
    desired: &BTreeSet<AclEntry>,
) -> std::result::Result<(), crate::admin::AdminError> {
    let principal = format!("User:{name}");
    let current: BTreeSet<AclEntry> = admin.acls_of(&principal).await?.into_iter().collect();
    let missing: Vec<AclEntry> = desired.difference(&current).cloned().collect();
    let extra: Vec<AclEntry> = current.difference(desired).cloned().collect();
    admin.create_acls(&principal, &missing).await?;
    admin.delete_acls(&principal, &extra).await?;
    if !missing.is_empty() || !extra.is_empty() {
        info!(user = %name, added = missing.len(), removed = extra.len(), "ACLs applied");
    }
    Ok(())
}

/// Makes user `name`'s quotas in the brokers exactly `quotas`.
async fn sync_quotas(
    admin: &crate::admin::Admin,
    name: &str,
    quotas: &UserQuotas,
) -> std::result::Result<(), crate::admin::AdminError> {
    let current = admin.user_quotas(name).await?;
    let desired = [
        (
            "producer_byte_rate",
            quotas.producer_byte_rate.map(|v| v as f64),
        ),
        (
            "consumer_byte_rate",
            quotas.consumer_byte_rate.map(|v| v as f64),
        ),
        ("controller_mutation_rate", quotas.controller_mutation_rate),
    ];
    let changes: Vec<(String, Option<f64>)> = desired
        .iter()
        .filter(|(key, want)| current.get(*key).copied() != *want)
        .map(|(key, want)| (key.to_string(), *want))
        .collect();
    if !changes.is_empty() {
        admin.alter_user_quotas(name, &changes).await?;
        info!(user = %name, ?changes, "quotas applied");
    }
    Ok(())
}

/// The User that manages user `name` of `user`'s Cluster: the oldest
/// (creation time, then uid) not being deleted.
async fn owner_of(ctx: &Context, user: &User, ns: &str, name: &str) -> Result<Option<User>> {
    let api: Api<User> = Api::namespaced(ctx.client.clone(), ns);
    let all = api.list(&ListParams::default()).await?;
    Ok(all
        .items
        .into_iter()
        .filter(|u| {
            u.spec.cluster == user.spec.cluster
                && u.user_name() == name
                && (u.metadata.deletion_timestamp.is_none() || u.metadata.uid == user.metadata.uid)
        })
        .min_by_key(|u| {
            (
                u.metadata.creation_timestamp.as_ref().map(|c| c.0),
                u.metadata.uid.clone(),
            )
        }))
}

/// Why `user` may not manage its user name: it is the operator's own user,
/// or an older User has it.
async fn conflict(
    ctx: &Context,
    user: &User,
    cluster: &Cluster,
    ns: &str,
) -> Result<Option<String>> {
    let name = user.user_name();
    if let Ok(Some(own)) = ctx.credentials(ns, cluster).await {
        if own.username == name {
            return Ok(Some(format!(
                "user {name} is the operator's own (Secret {}): a User may not change it",
                cluster
                    .spec
                    .authentication
                    .as_ref()
                    .map(|a| a.credentials_secret.as_str())
                    .unwrap_or_default()
            )));
        }
    }
    if let Some(owner) = owner_of(ctx, user, ns, name).await? {
        if owner.metadata.uid != user.metadata.uid {
            return Ok(Some(format!(
                "user {name} in cluster {} is managed by the older User {ns}/{}",
                user.spec.cluster,
                owner.name_any()
            )));
        }
    }
    Ok(None)
}

fn error_policy(user: Arc<User>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(user = %user.name_any(), %error, "user reconcile failed");
    ctx.metrics.failed("user", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// Runs the User controller until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let users = match &namespace {
        Some(ns) => Api::<User>::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(users, watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
}
