//! Status conditions, as Kubernetes' own `metav1.Condition`: one entry per
//! `type`, each with the generation it describes.
//!
//! Every Runnel resource has a `Ready` condition; its `reason` says why in
//! one CamelCase word (the constants in [`reason`]), its `message` in a
//! sentence.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The condition every resource carries.
pub const READY: &str = "Ready";

/// For a ConsumerGroup: whether its `resetOffsets` request is done.
pub const OFFSETS_RESET: &str = "OffsetsReset";

/// For a Cluster whose `spec.brokers` went down: False while the brokers to
/// remove still hold partition replicas (they keep running while the
/// operator moves the replicas); absent otherwise.
pub const SCALE_DOWN: &str = "ScaleDown";

/// For a Cluster: True while broker pods are restarted one at a time to
/// run a new revision (a changed `spec.config`, image or pod template);
/// absent otherwise.
pub const ROLLING_RESTART: &str = "RollingRestart";

/// The `reason`s the operator writes.
pub mod reason {
    /// A User's credential is in the brokers.
    pub const USER_READY: &str = "UserReady";
    /// Another User, older, has the same user name in the Cluster, or the
    /// name is the operator's own.
    pub const USER_CONFLICT: &str = "UserConflict";
    /// A User's Cluster does not ask clients to authenticate.
    pub const AUTHENTICATION_DISABLED: &str = "AuthenticationDisabled";
    /// A User has ACLs, but its Cluster does not check them (no
    /// `spec.authorization`).
    pub const AUTHORIZATION_DISABLED: &str = "AuthorizationDisabled";
    /// A User's password cannot be read (or its Secret is not the operator's to write).
    pub const PASSWORD_UNAVAILABLE: &str = "PasswordUnavailable";
    /// Cluster: a stale broker pod was deleted to restart on the new revision.
    pub const RESTARTING_BROKER: &str = "RestartingBroker";
    /// Cluster: stale broker pods wait until restarting one is safe.
    pub const WAITING_TO_RESTART: &str = "WaitingToRestart";
    /// Cluster: every object is applied and every broker answers.
    pub const BROKERS_READY: &str = "BrokersReady";
    /// Cluster: objects applied; not every broker is ready yet.
    pub const BROKERS_STARTING: &str = "BrokersStarting";
    /// Cluster: a scale-down waits: the brokers to remove hold replicas that
    /// cannot be moved (or the brokers cannot be asked).
    pub const BROKERS_HOLD_REPLICAS: &str = "BrokersHoldReplicas";
    /// Cluster: a scale-down waits while the operator moves replicas off the
    /// brokers it removes.
    pub const MOVING_REPLICAS: &str = "MovingReplicas";
    /// Cluster: a scale-down is refused: it would remove controller voters.
    pub const VOTERS_WOULD_LEAVE: &str = "VotersWouldLeave";
    /// Topic: the topic exists in the brokers as the spec says.
    pub const TOPIC_READY: &str = "TopicReady";
    /// Topic: the topic was created by this reconcile.
    pub const TOPIC_CREATED: &str = "TopicCreated";
    /// Topic: `spec.partitions` is below the topic's partition count.
    pub const PARTITION_DECREASE_NOT_ALLOWED: &str = "PartitionDecreaseNotAllowed";
    /// Topic: `spec.replicas` is above the number of brokers.
    pub const NOT_ENOUGH_BROKERS: &str = "NotEnoughBrokers";
    /// Topic: partitions are being reassigned to `spec.replicas` replicas.
    pub const REPLICAS_CHANGING: &str = "ReplicasChanging";
    /// Topic: an older resource manages the same topic.
    pub const CONFLICT: &str = "Conflict";
    /// Topic: `runnel.dev/managed: "false"`.
    pub const UNMANAGED: &str = "Unmanaged";
    /// The brokers refused a request; the message has their error.
    pub const BROKER_ERROR: &str = "BrokerError";
    /// Topic, ConsumerGroup: `spec.cluster` names no Cluster.
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    /// No broker of the cluster answered.
    pub const BROKERS_UNREACHABLE: &str = "BrokersUnreachable";
    /// ConsumerGroup: the status describes the group as last read.
    pub const GROUP_OBSERVED: &str = "GroupObserved";
    /// ConsumerGroup: the brokers know no such group.
    pub const GROUP_NOT_FOUND: &str = "GroupNotFound";
    /// ConsumerGroup: a reset waits for the group to be empty.
    pub const GROUP_NOT_EMPTY: &str = "GroupNotEmpty";
    /// ConsumerGroup: a reset is requested and not yet applied.
    pub const RESET_PENDING: &str = "ResetPending";
    /// ConsumerGroup: the reset was applied.
    pub const RESET_APPLIED: &str = "ResetApplied";
    /// ConsumerGroup: the reset cannot be applied as written (e.g. an
    /// unknown topic).
    pub const RESET_INVALID: &str = "ResetInvalid";
}

/// One condition of a resource's status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Why, in one CamelCase word.
    pub reason: String,
    /// Why, in a sentence.
    #[serde(default)]
    pub message: String,
    /// The `metadata.generation` this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl Condition {
    /// A condition with `status` `True` or `False`, no time yet (see [`set`]).
    pub fn new(
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: Option<i64>,
    ) -> Self {
        Condition {
            type_: type_.to_owned(),
            status: if ok { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: None,
        }
    }

    /// Whether `status` is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Puts `new` into `conditions`, replacing the one of the same type. The
/// transition time is kept when the status did not change (as
/// `meta.SetStatusCondition` does), and is `now` otherwise.
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition, now: Time) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone().or(Some(now))
            } else {
                Some(now)
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(now);
            conditions.push(new);
        }
    }
}

/// The condition of type `type_`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("a valid timestamp"))
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            Condition::new(READY, false, "A", "a", Some(1)),
            at(10),
        );
        set(
            &mut conds,
            Condition::new(READY, false, "B", "b", Some(2)),
            at(20),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].reason, "B");
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds[0].last_transition_time, Some(at(10)));
        set(
            &mut conds,
            Condition::new(READY, true, "C", "c", Some(2)),
            at(30),
        );
        assert_eq!(conds[0].last_transition_time, Some(at(30)));
        assert!(find(&conds, READY).is_some_and(Condition::is_true));
    }
}
