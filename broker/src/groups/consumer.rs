//! Consumer groups of the new consumer rebalance protocol (KIP-848): the
//! coordinator assigns partitions itself and each member reconciles toward
//! its share through ConsumerGroupHeartbeat, without a group-wide barrier.
//!
//! ```text
//!  heartbeat ─▶ member joins, leaves, changes its subscription ─▶ group epoch + 1
//!            ─▶ subscribed topics' partitions changed ───────────▶ group epoch + 1
//!            ─▶ group epoch > assignment epoch: a new target assignment (uniform or range)
//!            ─▶ reconcile the member toward its target:
//!                 owns partitions no longer its own → keep the rest, revoke those (epoch unchanged)
//!                 revoked (its owned list says so)  → member epoch = assignment epoch,
//!                                                     takes the target partitions no one else owns yet
//! ```
//! A partition is owned by the member it was last given to until that member
//! reports (in a heartbeat's owned partitions) that it let it go, so no
//! partition is ever held by two members. A member that misses its session
//! timeout, or does not revoke within its rebalance timeout, is removed and
//! its partitions freed. The coordinator stores the group in
//! `__consumer_offsets` as Kafka does ([`stored`]), so a new coordinator
//! carries on with the same members, epochs and assignments.

pub(crate) mod stored;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Partitions by topic id.
pub(crate) type Parts = BTreeMap<Uuid, BTreeSet<i32>>;

/// The server-side assignors a member may ask for (`group.remote.assignor`).
pub(crate) const ASSIGNORS: &[&str] = &["uniform", "range"];

/// What the coordinator knows of a topic: its id and partition count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicMeta {
    /// The topic id.
    pub(crate) id: Uuid,
    /// Its number of partitions.
    pub(crate) partitions: i32,
}

/// The topics of the cluster, by name (internal ones left out).
pub(crate) type Catalog = BTreeMap<String, TopicMeta>;

/// The settings of consumer groups.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`.
    pub(crate) session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub(crate) heartbeat_interval_ms: i32,
    /// `group.consumer.max.size`.
    pub(crate) max_size: usize,
}

/// A ConsumerGroupHeartbeat request, decoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Heartbeat {
    /// The member id (empty when a v0 member joins: the coordinator makes one).
    pub(crate) member_id: String,
    /// 0 to join, -1 to leave, -2 for a static member leaving for now,
    /// otherwise the member's current epoch.
    pub(crate) member_epoch: i32,
    /// `group.instance.id`, for static membership.
    pub(crate) instance_id: Option<String>,
    /// `client.rack`.
    pub(crate) rack_id: Option<String>,
    /// `max.poll.interval.ms`: how long the member may take to revoke.
    pub(crate) rebalance_timeout_ms: i32,
    /// The topic names subscribed to; `None` when unchanged.
    pub(crate) subscribed_topic_names: Option<Vec<String>>,
    /// A regular expression of topic names; `None` when unchanged, empty to
    /// drop it.
    pub(crate) subscribed_topic_regex: Option<String>,
    /// The assignor asked for; `None` when unchanged.
    pub(crate) server_assignor: Option<String>,
    /// The partitions the member owns; `None` when unchanged.
    pub(crate) owned: Option<Parts>,
    /// The client id, from the request header.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
}

/// What a heartbeat answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeartbeatAnswer {
    /// The error, with a message, or `None`.
    pub(crate) error: Option<(ResponseError, String)>,
    /// The member id (made by the coordinator for a v0 join).
    pub(crate) member_id: String,
    /// The member's epoch after this heartbeat.
    pub(crate) member_epoch: i32,
    /// How often the member should heartbeat.
    pub(crate) heartbeat_interval_ms: i32,
    /// The member's assignment, when it changed (always on joining).
    pub(crate) assignment: Option<Parts>,
}

/// A member of a consumer group.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) rack_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) epoch: i32,
    previous_epoch: i32,
    pub(crate) subscribed: BTreeSet<String>,
    pub(crate) regex: Option<String>,
    /// `regex`, compiled once when it is set.
    pattern: Option<regex::Regex>,
    assignor: Option<String>,
    rebalance_timeout_ms: i32,
    /// What the member was told it owns.
    pub(crate) assigned: Parts,
    /// What it was told to give up and has not yet said it did: still its
    /// own until then.
    revoking: Parts,
    session_deadline_ms: i64,
    revocation_deadline_ms: Option<i64>,
    /// The assignment last sent to it.
    sent: Option<Parts>,
    /// A static member that left for now (epoch -2): its partitions wait
    /// for its return (with the same `group.instance.id`) until its
    /// session times out.
    away: bool,
}

/// A consumer group of the KIP-848 protocol.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroup {
    id: String,
    /// Bumped on every change of membership, subscriptions or the
    /// subscribed topics' partitions.
    pub(crate) epoch: i32,
    /// The group epoch the target assignment was computed at.
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, Member>,
    /// Each member's target partitions.
    pub(crate) target: BTreeMap<String, Parts>,
    /// The subscribed topics as the target assignment saw them.
    metadata: BTreeMap<String, TopicMeta>,
    config: ConsumerGroupConfig,
    /// What was last written of the group to `__consumer_offsets`.
    stored: stored::StoredRecords,
    /// The group and assignment epochs `stored` was written at.
    stored_epochs: Option<(i32, i32)>,
    /// The members `stored` has.
    stored_members: BTreeSet<String>,
    /// Restored by a new coordinator: the hash of `metadata` as stored,
    /// until the first heartbeat compares it with the topics of the day.
    restored_hash: Option<u64>,
}

fn error(
    error: ResponseError,
    message: impl Into<String>,
    member_id: &str,
    epoch: i32,
) -> HeartbeatAnswer {
    HeartbeatAnswer {
        error: Some((error, message.into())),
        member_id: member_id.to_string(),
        member_epoch: epoch,
        heartbeat_interval_ms: 0,
        assignment: None,
    }
}

/// The longest regular expression a member may subscribe with.
const MAX_REGEX_LEN: usize = 1024;

/// The full-match regular expression of a subscription, bounded in size
/// (a heartbeat matches it against every topic).
fn compile(regex: &str) -> Result<regex::Regex, String> {
    if regex.len() > MAX_REGEX_LEN {
        return Err(format!("longer than {MAX_REGEX_LEN} characters"));
    }
    regex::RegexBuilder::new(&format!("^(?:{regex})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

fn contains(parts: &Parts, topic: &Uuid, partition: i32) -> bool {
    parts.get(topic).is_some_and(|ps| ps.contains(&partition))
}

fn minus(a: &Parts, b: &Parts) -> Parts {
    let mut out = Parts::new();
    for (topic, ps) in a {
        let rest: BTreeSet<i32> = ps
            .iter()
            .copied()
            .filter(|p| !contains(b, topic, *p))
            .collect();
        if !rest.is_empty() {
            out.insert(*topic, rest);
        }
    }
    out
}

fn intersect(a: &Parts, b: &Parts) -> Parts {
    let mut out = Parts::new();
    for (topic, ps) in a {
        let both: BTreeSet<i32> = ps
            .iter()
            .copied()
            .filter(|p| contains(b, topic, *p))
            .collect();
        if !both.is_empty() {
            out.insert(*topic, both);
        }
    }
    out
}

impl ConsumerGroup {
    /// An empty group.
    pub(crate) fn new(id: String, config: ConsumerGroupConfig) -> Self {
        ConsumerGroup {
            id,
            epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
            config,
            stored: stored::StoredRecords::new(),
            stored_epochs: None,
            stored_members: BTreeSet::new(),
            restored_hash: None,
        }
    }

    /// The group's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// A restored group's subscribed topics are taken as they are now if
    /// their hash is the stored one; otherwise they changed meanwhile, and
    /// the next heartbeat computes a new assignment.
    fn adopt_restored_metadata(&mut self, catalog: &Catalog) {
        if let Some(hash) = self.restored_hash.take() {
            let now = self.subscribed_metadata(catalog);
            if stored::metadata_hash(&now) == hash {
                self.metadata = now;
            }
        }
    }

    /// Whether the group has no members.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The group's state, by Kafka's name.
    pub(crate) fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.epoch != self.assignment_epoch
                || !m.revoking.is_empty()
                || self.target.get(&m.id).is_some_and(|t| *t != m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// The assignor the group uses: the one most members ask for, `uniform`
    /// when none asks.
    pub(crate) fn assignor(&self) -> &'static str {
        let range = self
            .members
            .values()
            .filter(|m| m.assignor.as_deref() == Some("range"))
            .count();
        let uniform = self
            .members
            .values()
            .filter(|m| m.assignor.as_deref() == Some("uniform"))
            .count();
        if range > uniform {
            "range"
        } else {
            "uniform"
        }
    }

    /// Whether a member subscribes to `topic` (by name or pattern).
    pub(crate) fn subscribes_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| {
            m.subscribed.contains(topic) || m.pattern.as_ref().is_some_and(|r| r.is_match(topic))
        })
    }

    /// One heartbeat of a member. `catalog` is the cluster's topics.
    pub(crate) fn heartbeat(
        &mut self,
        request: Heartbeat,
        catalog: &Catalog,
        now_ms: i64,
    ) -> HeartbeatAnswer {
        let epoch = request.member_epoch;
        if let Some(assignor) = &request.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return error(
                    ResponseError::UnsupportedAssignor,
                    format!("assignor {assignor} is not one of {}", ASSIGNORS.join(", ")),
                    &request.member_id,
                    epoch,
                );
            }
        }
        if let Some(regex) = request.subscribed_topic_regex.as_deref() {
            if let Err(why) =
                compile(regex).map(|_| ()).or_else(
                    |why| {
                        if regex.is_empty() {
                            Ok(())
                        } else {
                            Err(why)
                        }
                    },
                )
            {
                return error(
                    ResponseError::InvalidRegularExpression,
                    format!("SubscribedTopicRegex {regex:?}: {why}"),
                    &request.member_id,
                    epoch,
                );
            }
        }
        match epoch {
            -1 | -2 => return self.leave(&request.member_id, epoch, now_ms),
            0 => {
                if request.subscribed_topic_names.is_none()
                    && request.subscribed_topic_regex.is_none()
                {
                    return error(
                        ResponseError::InvalidRequest,
                        "SubscribedTopicNames or SubscribedTopicRegex must be set when joining",
                        &request.member_id,
                        epoch,
                    );
                }
                if request.rebalance_timeout_ms <= 0 {
                    return error(
                        ResponseError::InvalidRequest,
                        "RebalanceTimeoutMs must be positive when joining",
                        &request.member_id,
                        epoch,
                    );
                }
            }
            e if e < 0 => {
                return error(
                    ResponseError::InvalidRequest,
                    format!("MemberEpoch {e} is not 0, -1, -2 or a member's epoch"),
                    &request.member_id,
                    epoch,
                )
            }
            _ => {}
        }
        self.adopt_restored_metadata(catalog);
        let mut joined = false;
        let member_id = if epoch == 0 {
            let id = if request.member_id.is_empty() {
                Uuid::new_v4().simple().to_string()
            } else {
                request.member_id.clone()
            };
            match self.join(&id, &request, now_ms) {
                Ok(changed) => joined = changed,
                Err(answer) => return answer,
            }
            id
        } else {
            let Some(member) = self.members.get(&request.member_id) else {
                return error(
                    ResponseError::UnknownMemberId,
                    format!("member {} is not in group {}", request.member_id, self.id),
                    &request.member_id,
                    epoch,
                );
            };
            if epoch != member.epoch {
                let owned_ok = request.owned.as_ref().is_some_and(|owned| {
                    owned.iter().all(|(t, ps)| {
                        ps.iter().all(|p| {
                            contains(&member.assigned, t, *p) || contains(&member.revoking, t, *p)
                        })
                    })
                });
                // A member whose last answer was lost may repeat its
                // previous epoch, if it owns nothing it should not.
                if !(epoch == member.previous_epoch && owned_ok) {
                    return error(
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "member {} has epoch {}, not {epoch}",
                            member.id, member.epoch
                        ),
                        &request.member_id,
                        epoch,
                    );
                }
            }
            request.member_id.clone()
        };
        let changed = self.update_member(&member_id, &request, now_ms);
        // One new group epoch for whatever changed: a member, its
        // subscription, or the subscribed topics.
        if joined || changed || self.metadata_changed(catalog) {
            self.epoch += 1;
        }
        if self.epoch > self.assignment_epoch {
            self.assign(catalog);
        }
        // A full request (what clients send after a failed heartbeat) gets
        // the assignment whatever was sent before, as in Kafka; so does one
        // whose owned partitions are not what it was last told.
        let full = epoch == 0
            || (request.rebalance_timeout_ms > 0
                && request.subscribed_topic_names.is_some()
                && request.owned.is_some());
        let owned = if epoch == 0 { None } else { request.owned };
        self.reconcile(&member_id, owned.as_ref(), now_ms);
        let interval = self.config.heartbeat_interval_ms;
        let Some(member) = self.members.get_mut(&member_id) else {
            return error(
                ResponseError::UnknownMemberId,
                "member vanished",
                &member_id,
                epoch,
            );
        };
        // The assignment goes out when it changed, whenever the member is
        // not at the epoch it sent (it joined, or lost an answer), and on a
        // full request or one owning other partitions than it was told.
        let out_of_step = owned
            .as_ref()
            .is_some_and(|o| *o != member.assigned && member.revoking.is_empty());
        let assignment = if full
            || out_of_step
            || epoch != member.epoch
            || member.sent.as_ref() != Some(&member.assigned)
        {
            member.sent = Some(member.assigned.clone());
            Some(member.assigned.clone())
        } else {
            None
        };
        HeartbeatAnswer {
            error: None,
            member_id,
            member_epoch: member.epoch,
            heartbeat_interval_ms: interval,
            assignment,
        }
    }

    /// A member joins (or joins again with epoch 0): whether that changes
    /// the group (a static member returning does not), or the answer when
    /// it may not join.
    fn join(
        &mut self,
        id: &str,
        request: &Heartbeat,
        now_ms: i64,
    ) -> Result<bool, HeartbeatAnswer> {
        if let Some(instance) = &request.instance_id {
            let earlier = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance) && m.id != id)
                .map(|m| (m.id.clone(), m.away));
            match earlier {
                Some((old, true)) => {
                    // A static member back from a restart takes its place:
                    // its partitions and epoch, with no rebalance.
                    let Some(mut member) = self.members.remove(&old) else {
                        return Ok(true);
                    };
                    member.id = id.to_string();
                    member.away = false;
                    member.sent = None;
                    member.session_deadline_ms = now_ms + self.config.session_timeout_ms;
                    if let Some(target) = self.target.remove(&old) {
                        self.target.insert(id.to_string(), target);
                    }
                    self.members.insert(id.to_string(), member);
                    return Ok(false);
                }
                Some((old, false)) => {
                    let message = format!(
                        "group.instance.id {instance} is used by member {old}, which has not left"
                    );
                    return Err(error(ResponseError::UnreleasedInstanceId, message, id, 0));
                }
                None => {}
            }
        }
        if !self.members.contains_key(id) && self.members.len() >= self.config.max_size {
            return Err(error(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "group {} has {} members, group.consumer.max.size",
                    self.id,
                    self.members.len()
                ),
                id,
                0,
            ));
        }
        if self.members.contains_key(id) {
            // Joining again: what it had goes back to the group.
            self.remove(id);
        }
        self.members.insert(
            id.to_string(),
            Member {
                id: id.to_string(),
                instance_id: request.instance_id.clone(),
                rack_id: None,
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                epoch: 0,
                previous_epoch: 0,
                subscribed: BTreeSet::new(),
                regex: None,
                pattern: None,
                assignor: None,
                rebalance_timeout_ms: request.rebalance_timeout_ms,
                assigned: Parts::new(),
                revoking: Parts::new(),
                session_deadline_ms: now_ms + self.config.session_timeout_ms,
                revocation_deadline_ms: None,
                sent: None,
                away: false,
            },
        );
        Ok(true)
    }

    fn leave(&mut self, member_id: &str, epoch: i32, _now_ms: i64) -> HeartbeatAnswer {
        let Some(member) = self.members.get_mut(member_id) else {
            return error(
                ResponseError::UnknownMemberId,
                format!("member {member_id} is not in group {}", self.id),
                member_id,
                epoch,
            );
        };
        if epoch == -2 && member.instance_id.is_some() {
            // A static member leaving for now keeps its partitions.
            member.away = true;
        } else {
            self.remove(member_id);
        }
        HeartbeatAnswer {
            error: None,
            member_id: member_id.to_string(),
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    /// Removes a member: its partitions are free, the group epoch moves.
    fn remove(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.epoch += 1;
        }
    }

    /// Takes what the heartbeat changed; whether the assignment is
    /// affected (subscription or assignor).
    fn update_member(&mut self, member_id: &str, request: &Heartbeat, now_ms: i64) -> bool {
        let session = self.config.session_timeout_ms;
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let mut changed = false;
        if let Some(names) = &request.subscribed_topic_names {
            let names: BTreeSet<String> = names.iter().cloned().collect();
            if names != member.subscribed {
                member.subscribed = names;
                changed = true;
            }
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.regex {
                member.pattern = regex.as_deref().and_then(|r| compile(r).ok());
                member.regex = regex;
                changed = true;
            }
        }
        if let Some(assignor) = &request.server_assignor {
            if member.assignor.as_ref() != Some(assignor) {
                member.assignor = Some(assignor.clone());
                changed = true;
            }
        }
        if request.rack_id.is_some() && request.rack_id != member.rack_id {
            member.rack_id = request.rack_id.clone();
        }
        if request.rebalance_timeout_ms > 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_deadline_ms = now_ms + session;
        member.away = false;
        changed
    }

    /// The topics members subscribe to, as the catalog has them now.
    fn subscribed_metadata(&self, catalog: &Catalog) -> BTreeMap<String, TopicMeta> {
        let mut out = BTreeMap::new();
        // Each distinct pattern once.
        let mut seen = BTreeSet::new();
        let patterns: Vec<&regex::Regex> = self
            .members
            .values()
            .filter_map(|m| m.pattern.as_ref())
            .filter(|p| seen.insert(p.as_str()))
            .collect();
        for member in self.members.values() {
            for name in &member.subscribed {
                if let Some(meta) = catalog.get(name) {
                    out.insert(name.clone(), *meta);
                }
            }
        }
        if !patterns.is_empty() {
            for (name, meta) in catalog {
                if patterns.iter().any(|p| p.is_match(name)) {
                    out.insert(name.clone(), *meta);
                }
            }
        }
        out
    }

    /// Whether a subscribed topic appeared, went or changed its
    /// partitions since the target assignment was computed.
    fn metadata_changed(&self, catalog: &Catalog) -> bool {
        self.subscribed_metadata(catalog) != self.metadata
    }

    /// The topic ids each member subscribes to.
    fn member_topics(&self) -> BTreeMap<String, BTreeSet<Uuid>> {
        self.members
            .values()
            .map(|m| {
                let pattern = m.pattern.as_ref();
                let topics = self
                    .metadata
                    .iter()
                    .filter(|(name, _)| {
                        m.subscribed.contains(*name) || pattern.is_some_and(|p| p.is_match(name))
                    })
                    .map(|(_, meta)| meta.id)
                    .collect();
                (m.id.clone(), topics)
            })
            .collect()
    }

    /// Computes the target assignment for the current group epoch.
    fn assign(&mut self, catalog: &Catalog) {
        self.metadata = self.subscribed_metadata(catalog);
        let member_topics = self.member_topics();
        self.target = if self.assignor() == "range" {
            range_assignment(&self.metadata, &member_topics)
        } else {
            uniform_assignment(&self.metadata, &member_topics, &self.target)
        };
        self.assignment_epoch = self.epoch;
    }

    /// Partitions owned by members other than `except`.
    fn owned_by_others(&self, except: &str) -> Parts {
        let mut out = Parts::new();
        for member in self.members.values().filter(|m| m.id != except) {
            for parts in [&member.assigned, &member.revoking] {
                for (topic, ps) in parts {
                    out.entry(*topic).or_default().extend(ps.iter().copied());
                }
            }
        }
        out
    }

    /// Moves a member toward its target: revoke first, then take what is
    /// free of its target at the target's epoch.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Parts>, now_ms: i64) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let others = self.owned_by_others(member_id);
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if !member.revoking.is_empty() {
            let released = owned.is_some_and(|owned| intersect(owned, &member.revoking).is_empty());
            if !released {
                return;
            }
            member.revoking.clear();
            member.revocation_deadline_ms = None;
        }
        if member.epoch == assignment_epoch && member.assigned == target {
            return;
        }
        let revoke = minus(&member.assigned, &target);
        if !revoke.is_empty() {
            member.assigned = intersect(&member.assigned, &target);
            member.revoking = revoke;
            member.revocation_deadline_ms =
                Some(now_ms + i64::from(member.rebalance_timeout_ms.max(1)));
            return;
        }
        if member.epoch != assignment_epoch {
            member.previous_epoch = member.epoch;
            member.epoch = assignment_epoch;
        }
        member.assigned = minus(&target, &others);
    }

    /// Removes members whose session expired or who did not revoke in
    /// time; their names, for the log.
    pub(crate) fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline_ms < now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d < now_ms)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone
    }

    /// Checks an offset commit (or fetch) of `member_id` at `epoch`: an
    /// admin's (empty member, negative epoch) only while the group is empty.
    pub(crate) fn check_member_epoch(
        &self,
        member_id: &str,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        if epoch > member.epoch {
            Err(ResponseError::FencedMemberEpoch)
        } else if epoch < member.epoch {
            Err(ResponseError::StaleMemberEpoch)
        } else {
            Ok(())
        }
    }

    /// The name of the topic with id `id`, as the group last saw it.
    pub(crate) fn topic_name(&self, id: &Uuid) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(_, m)| m.id == *id)
            .map(|(n, _)| n.as_str())
    }
}

/// Every (topic id, partition) of `metadata`, with the members subscribed.
fn partitions_of(
    metadata: &BTreeMap<String, TopicMeta>,
    member_topics: &BTreeMap<String, BTreeSet<Uuid>>,
) -> Vec<((Uuid, i32), Vec<String>)> {
    let mut out = Vec::new();
    for meta in metadata.values() {
        let eligible: Vec<String> = member_topics
            .iter()
            .filter(|(_, topics)| topics.contains(&meta.id))
            .map(|(m, _)| m.clone())
            .collect();
        if eligible.is_empty() {
            continue;
        }
        for p in 0..meta.partitions {
            out.push(((meta.id, p), eligible.clone()));
        }
    }
    out
}

/// The uniform assignor: partitions spread evenly over the members
/// subscribed to them, each staying with its previous owner where balance
/// allows (sticky), so that a rebalance moves as few as it can.
fn uniform_assignment(
    metadata: &BTreeMap<String, TopicMeta>,
    member_topics: &BTreeMap<String, BTreeSet<Uuid>>,
    previous: &BTreeMap<String, Parts>,
) -> BTreeMap<String, Parts> {
    let partitions = partitions_of(metadata, member_topics);
    let mut owner: BTreeMap<(Uuid, i32), String> = BTreeMap::new();
    let mut load: BTreeMap<String, usize> = member_topics.keys().map(|m| (m.clone(), 0)).collect();
    let mut unassigned = Vec::new();
    for ((topic, p), eligible) in &partitions {
        let before = previous
            .iter()
            .find(|(_, parts)| contains(parts, topic, *p))
            .map(|(m, _)| m.clone());
        match before {
            Some(m) if eligible.contains(&m) => {
                *load.entry(m.clone()).or_default() += 1;
                owner.insert((*topic, *p), m);
            }
            _ => unassigned.push(((*topic, *p), eligible)),
        }
    }
    let least = |load: &BTreeMap<String, usize>, eligible: &[String]| -> Option<String> {
        eligible
            .iter()
            .min_by_key(|m| (load.get(*m).copied().unwrap_or(0), (*m).clone()))
            .cloned()
    };
    for (tp, eligible) in unassigned {
        if let Some(m) = least(&load, eligible) {
            *load.entry(m.clone()).or_default() += 1;
            owner.insert(tp, m);
        }
    }
    // Even out: take a partition from the most loaded member that has one
    // an eligible member holding at least two fewer can take, until none
    // can move. Taking from the most loaded only keeps the others' as they
    // were; each move lowers the sum of squared loads, so this ends.
    let eligible_of: BTreeMap<(Uuid, i32), &Vec<String>> =
        partitions.iter().map(|(tp, e)| (*tp, e)).collect();
    loop {
        let mut by_load: Vec<(usize, String)> = load.iter().map(|(m, l)| (*l, m.clone())).collect();
        by_load.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut chosen = None;
        'members: for (most, member) in &by_load {
            for (tp, _) in owner.iter().filter(|(_, m)| *m == member) {
                let Some(candidate) = eligible_of.get(tp).and_then(|e| least(&load, e)) else {
                    continue;
                };
                if load[&candidate] + 1 < *most {
                    chosen = Some((*tp, member.clone(), candidate));
                    break 'members;
                }
            }
        }
        let Some((tp, from, to)) = chosen else {
            break;
        };
        *load.entry(from).or_default() -= 1;
        *load.entry(to.clone()).or_default() += 1;
        owner.insert(tp, to);
    }
    collect(owner, member_topics)
}

/// The range assignor: for each topic, its partitions in contiguous ranges
/// over the members subscribed to it, in member id order.
fn range_assignment(
    metadata: &BTreeMap<String, TopicMeta>,
    member_topics: &BTreeMap<String, BTreeSet<Uuid>>,
) -> BTreeMap<String, Parts> {
    let mut owner = BTreeMap::new();
    for meta in metadata.values() {
        let members: Vec<&String> = member_topics
            .iter()
            .filter(|(_, t)| t.contains(&meta.id))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let n = members.len() as i32;
        let (base, extra) = (meta.partitions / n, meta.partitions % n);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let size = base + i32::from((i as i32) < extra);
            for p in next..next + size {
                owner.insert((meta.id, p), (*m).clone());
            }
            next += size;
        }
    }
    collect(owner, member_topics)
}

fn collect(
    owner: BTreeMap<(Uuid, i32), String>,
    member_topics: &BTreeMap<String, BTreeSet<Uuid>>,
) -> BTreeMap<String, Parts> {
    let mut out: BTreeMap<String, Parts> = member_topics
        .keys()
        .map(|m| (m.clone(), Parts::new()))
        .collect();
    for ((topic, p), m) in owner {
        out.entry(m)
            .or_default()
            .entry(topic)
            .or_default()
            .insert(p);
    }
    out
}

/// The number of partitions in `parts`.
#[cfg(test)]
fn size(parts: &Parts) -> usize {
    parts.values().map(BTreeSet::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings the tests run groups with (also `stored`'s tests).
    pub(super) fn config() -> ConsumerGroupConfig {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: 10,
        }
    }

    fn catalog(topics: &[(&str, u128, i32)]) -> Catalog {
        topics
            .iter()
            .map(|(n, id, p)| {
                (
                    (*n).to_string(),
                    TopicMeta {
                        id: Uuid::from_u128(*id),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(topics.iter().map(|t| (*t).to_string()).collect()),
            ..Heartbeat::default()
        }
    }

    fn beat(id: &str, epoch: i32, owned: Option<&Parts>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            owned: owned.cloned(),
            ..Heartbeat::default()
        }
    }

    /// Heartbeats `id` like a client: reports what it owns (its last
    /// assignment) and takes the answer's assignment.
    struct Client {
        id: String,
        epoch: i32,
        owned: Parts,
    }

    impl Client {
        fn join(g: &mut ConsumerGroup, id: &str, topics: &[&str], cat: &Catalog) -> Client {
            let a = g.heartbeat(join(id, topics), cat, 0);
            assert_eq!(a.error, None);
            Client {
                id: id.into(),
                epoch: a.member_epoch,
                owned: a.assignment.unwrap_or_default(),
            }
        }

        fn beat(&mut self, g: &mut ConsumerGroup, cat: &Catalog) -> HeartbeatAnswer {
            let a = g.heartbeat(beat(&self.id, self.epoch, Some(&self.owned)), cat, 0);
            assert_eq!(a.error, None, "{}", self.id);
            self.epoch = a.member_epoch;
            if let Some(assignment) = &a.assignment {
                self.owned = assignment.clone();
            }
            a
        }
    }

    fn no_overlap(clients: &[&Client]) {
        let mut seen = BTreeSet::new();
        for c in clients {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} owned twice");
                }
            }
        }
    }

    #[test]
    fn a_lone_member_gets_every_partition() {
        let cat = catalog(&[("a", 1, 3)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let c = Client::join(&mut g, "m1", &["a"], &cat);
        assert_eq!(c.epoch, 1);
        assert_eq!(size(&c.owned), 3);
        assert_eq!(g.state(), "Stable");
    }

    #[test]
    fn a_second_member_gets_half_only_after_the_first_revokes() {
        let cat = catalog(&[("a", 1, 4)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let mut c2 = Client::join(&mut g, "m2", &["a"], &cat);
        // m2 is at the new epoch but gets nothing m1 still owns.
        assert_eq!(c2.epoch, 2);
        assert_eq!(size(&c2.owned), 0);
        no_overlap(&[&c1, &c2]);
        assert_eq!(g.state(), "Reconciling");
        // m1 is told to keep two; its epoch stays until it has let go.
        let a = c1.beat(&mut g, &cat);
        assert_eq!(a.member_epoch, 1);
        assert_eq!(size(&c1.owned), 2);
        no_overlap(&[&c1, &c2]);
        // It reports the smaller set: now at epoch 2.
        c1.beat(&mut g, &cat);
        assert_eq!(c1.epoch, 2);
        c2.beat(&mut g, &cat);
        assert_eq!(size(&c2.owned), 2);
        no_overlap(&[&c1, &c2]);
        assert_eq!(g.state(), "Stable");
    }

    #[test]
    fn a_leaving_member_frees_its_partitions() {
        let cat = catalog(&[("a", 1, 4)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let mut c2 = Client::join(&mut g, "m2", &["a"], &cat);
        for _ in 0..3 {
            c1.beat(&mut g, &cat);
            c2.beat(&mut g, &cat);
        }
        assert_eq!((size(&c1.owned), size(&c2.owned)), (2, 2));
        let a = g.heartbeat(beat("m2", c2.epoch, None).with_epoch(-1), &cat, 0);
        assert_eq!((a.error, a.member_epoch), (None, -1));
        c1.beat(&mut g, &cat);
        assert_eq!(size(&c1.owned), 4);
    }

    impl Heartbeat {
        fn with_epoch(mut self, epoch: i32) -> Self {
            self.member_epoch = epoch;
            self
        }
    }

    #[test]
    fn an_expired_session_frees_its_partitions() {
        let cat = catalog(&[("a", 1, 2)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let _c2 = Client::join(&mut g, "m2", &["a"], &cat);
        assert_eq!(g.tick(10_000), Vec::<String>::new());
        let gone = g.tick(50_000);
        assert_eq!(gone.len(), 2);
        assert!(g.is_empty());
        let a = g.heartbeat(beat("m1", c1.epoch, Some(&c1.owned)), &cat, 50_000);
        assert_eq!(a.error.map(|e| e.0), Some(ResponseError::UnknownMemberId));
        c1 = Client::join(&mut g, "m1", &["a"], &cat);
        assert_eq!(size(&c1.owned), 2);
    }

    #[test]
    fn stale_and_fenced_epochs() {
        let cat = catalog(&[("a", 1, 2)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let a = g.heartbeat(beat("m1", c1.epoch + 5, None), &cat, 0);
        assert_eq!(a.error.map(|e| e.0), Some(ResponseError::FencedMemberEpoch));
        assert_eq!(g.check_member_epoch("m1", c1.epoch), Ok(()));
        assert_eq!(
            g.check_member_epoch("m1", c1.epoch - 1),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(
            g.check_member_epoch("m1", c1.epoch + 1),
            Err(ResponseError::FencedMemberEpoch)
        );
        assert_eq!(
            g.check_member_epoch("", -1),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn new_partitions_and_regex_subscriptions_are_assigned() {
        let mut cat = catalog(&[("orders-1", 1, 1), ("other", 2, 1)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut h = join("m1", &[]);
        h.subscribed_topic_names = None;
        h.subscribed_topic_regex = Some("orders-.*".into());
        let a = g.heartbeat(h, &cat, 0);
        assert_eq!(a.error, None);
        let mut c = Client {
            id: "m1".into(),
            epoch: a.member_epoch,
            owned: a.assignment.unwrap_or_default(),
        };
        assert_eq!(size(&c.owned), 1);
        cat.insert(
            "orders-2".into(),
            TopicMeta {
                id: Uuid::from_u128(3),
                partitions: 2,
            },
        );
        c.beat(&mut g, &cat);
        assert_eq!(size(&c.owned), 3);
        assert!(!c.owned.contains_key(&Uuid::from_u128(2)));
        let mut bad = join("m2", &[]);
        bad.subscribed_topic_regex = Some("(".into());
        let a = g.heartbeat(bad, &cat, 0);
        assert_eq!(
            a.error.map(|e| e.0),
            Some(ResponseError::InvalidRegularExpression)
        );
    }

    #[test]
    fn uniform_is_balanced_and_sticky() {
        let cat = catalog(&[("a", 1, 7), ("b", 2, 5)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut clients: Vec<Client> = ["m1", "m2", "m3"]
            .iter()
            .map(|m| Client::join(&mut g, m, &["a", "b"], &cat))
            .collect();
        for _ in 0..4 {
            for c in &mut clients {
                c.beat(&mut g, &cat);
            }
            no_overlap(&clients.iter().collect::<Vec<_>>());
        }
        let sizes: Vec<usize> = clients.iter().map(|c| size(&c.owned)).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 12);
        assert!(sizes.iter().all(|s| *s == 4), "{sizes:?}");
        // A fourth member takes some; the others keep the rest of theirs.
        let before: Vec<Parts> = clients.iter().map(|c| c.owned.clone()).collect();
        clients.push(Client::join(&mut g, "m4", &["a", "b"], &cat));
        for _ in 0..4 {
            for c in &mut clients {
                c.beat(&mut g, &cat);
            }
            no_overlap(&clients.iter().collect::<Vec<_>>());
        }
        for (c, old) in clients.iter().zip(&before) {
            assert!(
                minus(&c.owned, old).is_empty(),
                "{} gained others' partitions: {:?} before {:?}",
                c.id,
                c.owned,
                old
            );
        }
        let sizes: Vec<usize> = clients.iter().map(|c| size(&c.owned)).collect();
        assert_eq!(sizes, vec![3, 3, 3, 3]);
    }

    #[test]
    fn a_lost_answer_is_sent_again() {
        let cat = catalog(&[("a", 1, 2)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let _c2 = Client::join(&mut g, "m2", &["a"], &cat);
        // m1 is told to revoke one partition, and lets it go...
        c1.beat(&mut g, &cat);
        assert_eq!(size(&c1.owned), 1);
        let moved_on = g.heartbeat(beat("m1", c1.epoch, Some(&c1.owned)), &cat, 0);
        assert_eq!(moved_on.member_epoch, 2);
        // ...but that answer is lost: it asks again at its previous epoch
        // and gets its epoch and assignment again.
        let again = g.heartbeat(beat("m1", c1.epoch, Some(&c1.owned)), &cat, 0);
        assert_eq!(again.error, None);
        assert_eq!(again.member_epoch, 2);
        assert_eq!(again.assignment.as_ref().map(size), Some(1));
    }

    #[test]
    fn a_static_member_returns_to_its_partitions_without_a_rebalance() {
        let cat = catalog(&[("a", 1, 4)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let static_join = |id: &str| {
            let mut h = join(id, &["a"]);
            h.instance_id = Some("pod-0".into());
            h
        };
        let a = g.heartbeat(static_join("m1"), &cat, 0);
        let mut c1 = Client {
            id: "m1".into(),
            epoch: a.member_epoch,
            owned: a.assignment.unwrap_or_default(),
        };
        let mut c2 = Client::join(&mut g, "m2", &["a"], &cat);
        for _ in 0..3 {
            c1.beat(&mut g, &cat);
            c2.beat(&mut g, &cat);
        }
        let (mine, group_epoch) = (c1.owned.clone(), g.epoch);
        assert_eq!(size(&mine), 2);
        // Another process with the same instance id is refused while m1 is there.
        let a = g.heartbeat(static_join("m3"), &cat, 0);
        assert_eq!(
            a.error.map(|e| e.0),
            Some(ResponseError::UnreleasedInstanceId)
        );
        // m1 leaves for a restart (-2): nothing moves.
        let a = g.heartbeat(beat("m1", c1.epoch, None).with_epoch(-2), &cat, 0);
        assert_eq!((a.error, a.member_epoch), (None, -2));
        c2.beat(&mut g, &cat);
        assert_eq!(size(&c2.owned), 2);
        // It comes back under a new member id: same partitions, same epoch.
        let a = g.heartbeat(static_join("m1-again"), &cat, 1_000);
        assert_eq!(a.error, None);
        assert_eq!(a.assignment, Some(mine));
        assert_eq!(g.epoch, group_epoch);
        // Had it not come back, its session would have ended it.
        let a = g.heartbeat(
            beat("m1-again", a.member_epoch, None).with_epoch(-2),
            &cat,
            0,
        );
        assert_eq!(a.error, None);
        assert_eq!(g.tick(60_000).len(), 2);
    }

    #[test]
    fn an_answer_lost_at_the_same_epoch_is_sent_again() {
        let cat = catalog(&[("a", 1, 2)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut c1 = Client::join(&mut g, "m1", &["a"], &cat);
        let mut c2 = Client::join(&mut g, "m2", &["a"], &cat);
        // m2 waits for the partition m1 still holds...
        c1.beat(&mut g, &cat);
        c1.beat(&mut g, &cat);
        assert_eq!((size(&c1.owned), size(&c2.owned)), (1, 0));
        // ...m1 let it go: m2's next answer would carry it, but is lost.
        let lost = g.heartbeat(beat("m2", c2.epoch, Some(&c2.owned)), &cat, 0);
        assert_eq!(lost.assignment.as_ref().map(size), Some(1));
        // m2 asks again at the same epoch, owning nothing: it is told again.
        let again = g.heartbeat(beat("m2", c2.epoch, Some(&c2.owned)), &cat, 0);
        assert_eq!(again.assignment.as_ref().map(size), Some(1));
        // A full request (after a failed heartbeat) gets it too.
        let mut full = join("m2", &["a"]);
        full.member_epoch = again.member_epoch;
        full.owned = again.assignment.clone();
        let answer = g.heartbeat(full, &cat, 0);
        assert_eq!(answer.assignment.as_ref().map(size), Some(1));
        c2.owned = answer.assignment.unwrap_or_default();
        // In step, with a partial request: nothing to send.
        let quiet = g.heartbeat(beat("m2", c2.epoch, None), &cat, 0);
        assert_eq!(quiet.assignment, None);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let meta = catalog(&[("a", 1, 5)]);
        let topics: BTreeMap<String, BTreeSet<Uuid>> = ["m1", "m2"]
            .iter()
            .map(|m| ((*m).to_string(), BTreeSet::from([Uuid::from_u128(1)])))
            .collect();
        let t = range_assignment(&meta, &topics);
        assert_eq!(t["m1"][&Uuid::from_u128(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(t["m2"][&Uuid::from_u128(1)], BTreeSet::from([3, 4]));
    }

    #[test]
    fn bad_requests_are_refused() {
        let cat = catalog(&[("a", 1, 1)]);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut h = join("m1", &["a"]);
        h.server_assignor = Some("sticky".into());
        assert_eq!(
            g.heartbeat(h, &cat, 0).error.map(|e| e.0),
            Some(ResponseError::UnsupportedAssignor)
        );
        let mut h = join("m1", &["a"]);
        h.subscribed_topic_names = None;
        assert_eq!(
            g.heartbeat(h, &cat, 0).error.map(|e| e.0),
            Some(ResponseError::InvalidRequest)
        );
        assert_eq!(
            g.heartbeat(beat("nobody", 3, None), &cat, 0)
                .error
                .map(|e| e.0),
            Some(ResponseError::UnknownMemberId)
        );
    }
}
