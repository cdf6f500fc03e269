//! The classic consumer-group membership state machine: JoinGroup, SyncGroup,
//! Heartbeat and LeaveGroup for one group, as Apache Kafka's classic
//! `GroupCoordinator` / `GroupMetadata` decide them.
//!
//! ```text
//!   Empty ──first join──▶ PreparingRebalance ──all rejoined, or deadline──▶ CompletingRebalance
//!    │  ▲                    ▲        │                                          │       │
//!    │  └──── nobody left ───┼────────┘                                          │       │ leader's
//!    │     (generation + 1)  │                                                   │       ▼ SyncGroup
//!    │                       └────────── join, leave, expiry ◀───────────────────┴──── Stable
//!    └── mark_dead (DeleteGroups) ──▶ Dead
//! ```
//!
//! The machine is pure: no sockets, no clock, no runtime. Time comes in as
//! `now_ms`, and the caller runs [`Group::tick`] at [`Group::next_deadline`]
//! (or on a steady timer) so that session expiry, the rebalance deadline, the
//! initial rebalance delay and the pending-sync deadline take effect. Every
//! call that takes `now_ms` first acts on whatever fell due by then, as
//! Kafka's timers would have. Replies that must wait for other members
//! (JoinGroup during a rebalance, SyncGroup before the leader's assignment)
//! come back as [`Reply::Later`], a `tokio::sync::oneshot` receiver that the
//! machine completes when the group moves on; every held reply is completed
//! exactly once, with a result or an error, so a receiver never sees its
//! sender dropped while the [`Group`] lives.
//!
//! Kafka stores a group's metadata (a `__consumer_offsets` group record)
//! when a generation's assignment is in, when a generation forms empty, and
//! when a static member is replaced without a rebalance. The machine marks
//! those moments; the coordinator takes them with [`Group::take_store`],
//! writes the record, and rebuilds a group from it with [`Group::restore`].

use std::collections::{HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::stored::{StoredGroup, StoredMember};

/// How long a new member may wait in a JoinGroup before it is dropped, as
/// Kafka's `NewMemberJoinTimeoutMs`: a new member has no member id to
/// heartbeat with, and a client that disconnected mid-rebalance would
/// otherwise leave a defunct member behind for the whole rebalance.
const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// The longest client or instance id a new member id starts with.
const MAX_MEMBER_ID_PREFIX: usize = 1024;

/// The group settings the coordinator passes in; Kafka's broker configs of
/// the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupConfig {
    /// `group.min.session.timeout.ms`: the shortest session a member may ask for.
    pub(crate) min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: the longest session a member may ask for.
    pub(crate) max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// empty group waits for more members, extended by as much again each
    /// time one arrives, up to the rebalance timeout.
    pub(crate) initial_rebalance_delay_ms: i64,
    /// `group.max.size`: the most members the group admits.
    pub(crate) max_size: usize,
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// Where a group is in its membership protocol; Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for the members to (re)join before a new generation.
    PreparingRebalance,
    /// The generation is formed; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Deleted; the group object is about to go away.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A JoinGroup request for this group, as the handler decoded it.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    /// The member id; empty for a member joining for the first time.
    pub(crate) member_id: String,
    /// `group.instance.id` of a static member (JoinGroup v5+).
    pub(crate) group_instance_id: Option<String>,
    /// The client id from the request header.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
    /// How long the member may go without a heartbeat.
    pub(crate) session_timeout_ms: i32,
    /// How long a rebalance waits for the member to rejoin; v0 clients send
    /// -1, which means the session timeout.
    pub(crate) rebalance_timeout_ms: i32,
    /// The protocol type, `consumer` for consumers.
    pub(crate) protocol_type: String,
    /// The protocols the member supports, most preferred first, with its
    /// metadata for each.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member must first fetch a member id
    /// (MEMBER_ID_REQUIRED) and join again with it.
    pub(crate) require_known_member_id: bool,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    /// The member id.
    pub(crate) member_id: String,
    /// Its `group.instance.id`, if static.
    pub(crate) group_instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub(crate) metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinResult {
    /// The error, if the join failed; `None` on success.
    pub(crate) error: Option<ResponseError>,
    /// The generation joined; -1 on error.
    pub(crate) generation_id: i32,
    /// The group's protocol type; `None` on error.
    pub(crate) protocol_type: Option<String>,
    /// The protocol chosen for the generation; `None` on error.
    pub(crate) protocol_name: Option<String>,
    /// The leader's member id; empty on error.
    pub(crate) leader: String,
    /// The member id of the member answered (new, for a new member).
    pub(crate) member_id: String,
    /// Every member with its metadata, for the leader only; empty otherwise.
    pub(crate) members: Vec<JoinedMember>,
}

impl JoinResult {
    /// A failed join.
    pub(crate) fn failed(member_id: impl Into<String>, error: ResponseError) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyncResult {
    /// The error, if the sync failed; `None` on success.
    pub(crate) error: Option<ResponseError>,
    /// The group's protocol type; `None` on error.
    pub(crate) protocol_type: Option<String>,
    /// The generation's protocol; `None` on error.
    pub(crate) protocol_name: Option<String>,
    /// The member's assignment; empty on error.
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    /// A failed sync.
    fn failed(error: ResponseError) -> Self {
        Self {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A reply that is either ready or will be once other members act.
///
/// A `Later` receiver is always completed while the [`Group`] lives; if the
/// group itself is dropped first, the receiver reports its sender gone, which
/// the coordinator should answer as COORDINATOR_NOT_AVAILABLE.
#[derive(Debug)]
#[must_use = "a held reply must be awaited and sent to the client"]
pub(crate) enum Reply<T> {
    /// The answer, now.
    Now(T),
    /// The answer will arrive on this channel.
    Later(oneshot::Receiver<T>),
}

/// Turns a receiver whose answer is already there into `Reply::Now`.
fn settle<T>(mut receiver: oneshot::Receiver<T>) -> Reply<T> {
    match receiver.try_recv() {
        Ok(value) => Reply::Now(value),
        Err(_) => Reply::Later(receiver),
    }
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberDescription {
    /// The member id.
    pub(crate) member_id: String,
    /// Its `group.instance.id`, if static.
    pub(crate) group_instance_id: Option<String>,
    /// The client id it joined with.
    pub(crate) client_id: String,
    /// The address it joined from.
    pub(crate) client_host: String,
    /// Its metadata for the chosen protocol; empty unless the group is Stable
    /// (as Kafka).
    pub(crate) metadata: Bytes,
    /// Its assignment; empty unless the group is Stable (as Kafka).
    pub(crate) assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupDescription {
    /// The state.
    pub(crate) state: GroupState,
    /// The protocol type; empty if none yet.
    pub(crate) protocol_type: String,
    /// The generation's protocol; empty unless the group is Stable (as Kafka).
    pub(crate) protocol: String,
    /// The members, in join order.
    pub(crate) members: Vec<MemberDescription>,
    /// The current generation.
    pub(crate) generation_id: i32,
}

/// One member of the group.
#[derive(Debug)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// The held JoinGroup reply, while the member waits for the rebalance.
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    /// The held SyncGroup reply, while the member waits for the leader.
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    /// Joined but not yet through a rebalance: expires at its join timeout
    /// even while waiting in JoinGroup.
    is_new: bool,
    /// When the member is dropped unless it shows signs of life.
    expires_at_ms: i64,
}

impl Member {
    /// The member was heard from: its session starts again.
    fn refresh(&mut self, now_ms: i64) {
        self.expires_at_ms = now_ms.saturating_add(i64::from(self.session_timeout_ms));
    }

    /// Whether its session can expire now: members waiting in a JoinGroup or
    /// SyncGroup cannot (the rebalance deadlines deal with them), except new
    /// members, which have their join timeout.
    fn can_expire(&self) -> bool {
        self.is_new || (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// Whether `protocols` are exactly what it joined with (names, order and
    /// metadata).
    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    /// Completes any held replies with `error`.
    fn fail_held_replies(&mut self, join_member_id: &str, error: ResponseError) {
        if let Some(reply) = self.awaiting_join.take() {
            let _ = reply.send(JoinResult::failed(join_member_id, error));
        }
        if let Some(reply) = self.awaiting_sync.take() {
            let _ = reply.send(SyncResult::failed(error));
        }
    }
}

/// When PreparingRebalance ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinTimer {
    /// The first rebalance of an empty group (Kafka's `InitialDelayedJoin`):
    /// completes only when it fires, then waits `min(delay, remaining)` more
    /// if a member arrived meanwhile and time remains.
    Initial {
        fires_at_ms: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    /// Completes as soon as every member has rejoined, or at the deadline
    /// without those that did not (Kafka's `DelayedJoin`).
    Deadline { at_ms: i64 },
}

/// One classic consumer group's membership and rebalance state.
#[derive(Debug)]
pub(crate) struct Group {
    group_id: String,
    config: GroupConfig,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    /// In join order; the leader's member list and the fallback leader follow it.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they lapse.
    pending_members: HashMap<String, i64>,
    /// Members of the generation that have not sent SyncGroup yet.
    pending_sync: HashSet<String>,
    /// When members still in `pending_sync` are removed.
    sync_deadline_ms: Option<i64>,
    join_timer: Option<JoinTimer>,
    /// A member was added while the initial delay ran.
    new_member_added: bool,
    /// The group as it was when it last changed in a way Kafka stores (see
    /// the module docs), until the coordinator takes it.
    pending_store: Option<StoredGroup>,
}

impl Group {
    /// A new, empty group.
    pub(crate) fn new(group_id: String, config: GroupConfig) -> Self {
        Self {
            group_id,
            config,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline_ms: None,
            join_timer: None,
            new_member_added: false,
            pending_store: None,
        }
    }

    /// A group rebuilt from its stored record by a new coordinator: Stable
    /// with its members, or Empty, at the stored generation. Each member's
    /// session starts now, so members that are gone expire as usual.
    pub(crate) fn restore(
        group_id: String,
        config: GroupConfig,
        stored: StoredGroup,
        now_ms: i64,
    ) -> Self {
        let mut group = Self::new(group_id, config);
        group.generation_id = stored.generation_id;
        group.protocol_type = Some(stored.protocol_type).filter(|t| !t.is_empty());
        let Some(protocol) = stored.protocol_name.filter(|_| !stored.members.is_empty()) else {
            return group;
        };
        group.members = stored
            .members
            .into_iter()
            .map(|m| {
                let mut member = Member {
                    member_id: m.member_id,
                    group_instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol.clone(), m.subscription)],
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                    expires_at_ms: 0,
                };
                member.refresh(now_ms);
                member
            })
            .collect();
        group.leader = stored
            .leader
            .filter(|l| group.index_of(l).is_some())
            .or_else(|| group.members.first().map(|m| m.member_id.clone()));
        group.protocol_name = Some(protocol);
        group.state = GroupState::Stable;
        group
    }

    /// What to store of the group, once after each change Kafka stores
    /// (`None` if nothing changed since the last call): the group as it was
    /// at that change, even if it has moved on since.
    pub(crate) fn take_store(&mut self) -> Option<StoredGroup> {
        self.pending_store.take()
    }

    /// Writing what [`Group::take_store`] gave failed: it is given again,
    /// unless a newer change is waiting.
    pub(crate) fn store_failed(&mut self, stored: StoredGroup) {
        if self.pending_store.is_none() {
            self.pending_store = Some(stored);
        }
    }

    /// Notes the group as it is now for the coordinator to store.
    fn mark_store(&mut self, now_ms: i64) {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.pending_store = Some(StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().filter(|_| !self.members.is_empty()),
            state_timestamp_ms: now_ms,
            members: self
                .members
                .iter()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        });
    }

    /// The current state.
    pub(crate) fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation; 0 before the first rebalance.
    #[allow(
        dead_code,
        reason = "coordinator API; the coordinator reads describe() for now"
    )]
    pub(crate) fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The protocol type, once a member has joined.
    pub(crate) fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// Whether the group has no members (ids handed out with
    /// MEMBER_ID_REQUIRED do not count).
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Handles a JoinGroup.
    pub(crate) fn join(&mut self, mut request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        self.tick(now_ms);
        if request.rebalance_timeout_ms < 0 {
            request.rebalance_timeout_ms = request.session_timeout_ms;
        }
        let reply = self.join_inner(request, now_ms);
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now_ms);
        }
        // A zero initial delay or rebalance timeout is due at once.
        self.tick(now_ms);
        match reply {
            Reply::Later(receiver) => settle(receiver),
            now => now,
        }
    }

    fn join_inner(&mut self, request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        let session = request.session_timeout_ms;
        if session < self.config.min_session_timeout_ms
            || session > self.config.max_session_timeout_ms
        {
            return Reply::Now(JoinResult::failed(
                request.member_id,
                ResponseError::InvalidSessionTimeout,
            ));
        }
        if self.state == GroupState::Dead {
            return Reply::Now(JoinResult::failed(
                request.member_id,
                ResponseError::CoordinatorNotAvailable,
            ));
        }
        if !self.accept_joining_member(&request) {
            self.reject_for_size(&request.member_id);
            return Reply::Now(JoinResult::failed(
                String::new(),
                ResponseError::GroupMaxSizeReached,
            ));
        }
        if request.member_id.is_empty() {
            self.join_new_member(request, now_ms)
        } else {
            self.join_known_member(request, now_ms)
        }
    }

    /// Kafka's `acceptJoiningMember`: existing members are always let back
    /// in; new ones only while the group is below `group.max.size` (counting,
    /// during a rebalance, the members that have rejoined).
    fn accept_joining_member(&self, request: &JoinRequest) -> bool {
        // A static member rejoining under a new member id replaces itself, so
        // it counts as existing (Kafka counts it as new, and can refuse a full
        // group's own static member).
        let existing = if request.member_id.is_empty() {
            request
                .group_instance_id
                .as_deref()
                .and_then(|instance| self.static_index(instance))
        } else {
            self.index_of(&request.member_id)
        };
        let max = self.config.max_size;
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                existing.is_some_and(|i| self.members[i].awaiting_join.is_some())
                    || self.num_awaiting_join() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                existing.is_some() || self.members.len() < max
            }
        }
    }

    /// A member refused for size is forgotten, as in Kafka.
    fn reject_for_size(&mut self, member_id: &str) {
        if member_id.is_empty() {
            return;
        }
        self.pending_members.remove(member_id);
        if let Some(i) = self.index_of(member_id) {
            self.detach(i, ResponseError::GroupMaxSizeReached);
            info!(group = %self.group_id, member = member_id, "member removed: group is full");
        }
    }

    fn join_new_member(&mut self, request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        let existing_static = request
            .group_instance_id
            .as_deref()
            .and_then(|instance| self.static_index(instance));
        if !self.supports_protocols(&request.protocol_type, &request.protocols, existing_static) {
            return Reply::Now(JoinResult::failed(
                String::new(),
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let prefix = request
            .group_instance_id
            .as_deref()
            .unwrap_or(&request.client_id);
        // Kafka's strings are at most 32767 bytes: a member id made from a
        // longer id would not fit the stored group record.
        let mut cut = prefix.len().min(MAX_MEMBER_ID_PREFIX);
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        let new_id = format!("{}-{}", &prefix[..cut], Uuid::new_v4());
        match (existing_static, request.group_instance_id.is_some()) {
            (Some(i), _) => self.replace_static_member(i, new_id, request, now_ms),
            (None, true) => Reply::Later(self.add_member_and_rebalance(new_id, request, now_ms)),
            (None, false) if request.require_known_member_id => {
                let lapses_at = now_ms.saturating_add(i64::from(request.session_timeout_ms));
                debug!(group = %self.group_id, member = %new_id, "member id required");
                self.pending_members.insert(new_id.clone(), lapses_at);
                Reply::Now(JoinResult::failed(new_id, ResponseError::MemberIdRequired))
            }
            (None, false) => Reply::Later(self.add_member_and_rebalance(new_id, request, now_ms)),
        }
    }

    fn join_known_member(&mut self, request: JoinRequest, now_ms: i64) -> Reply<JoinResult> {
        if request.group_instance_id.is_none()
            && self.pending_members.contains_key(&request.member_id)
        {
            if !self.supports_protocols(&request.protocol_type, &request.protocols, None) {
                return Reply::Now(JoinResult::failed(
                    request.member_id,
                    ResponseError::InconsistentGroupProtocol,
                ));
            }
            let member_id = request.member_id.clone();
            return Reply::Later(self.add_member_and_rebalance(member_id, request, now_ms));
        }
        let i = match self
            .validate_current_member(&request.member_id, request.group_instance_id.as_deref())
        {
            Ok(i) => i,
            Err(error) => return Reply::Now(JoinResult::failed(request.member_id, error)),
        };
        if !self.supports_protocols(&request.protocol_type, &request.protocols, Some(i)) {
            return Reply::Now(JoinResult::failed(
                request.member_id,
                ResponseError::InconsistentGroupProtocol,
            ));
        }
        let unchanged = self.members[i].matches(&request.protocols);
        let is_leader = self.is_leader(&request.member_id);
        match self.state {
            GroupState::CompletingRebalance if unchanged => {
                // The member probably missed its JoinGroup response: send it again.
                self.members[i].refresh(now_ms);
                Reply::Now(self.current_join_result(i, is_leader))
            }
            GroupState::Stable if unchanged && !is_leader => {
                // A follower with nothing new: its generation stands.
                self.members[i].refresh(now_ms);
                Reply::Now(self.current_join_result(i, false))
            }
            // PreparingRebalance: wait for the others. CompletingRebalance or
            // Stable with new metadata, or the leader in Stable (it may have
            // seen metadata change): rebalance. Empty cannot have members;
            // rebalancing restores order.
            _ => Reply::Later(self.update_member_and_rebalance(i, request, now_ms)),
        }
    }

    /// The join response of the current generation for member `i`.
    fn current_join_result(&self, i: usize, with_members: bool) -> JoinResult {
        JoinResult {
            error: None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: self.members[i].member_id.clone(),
            members: if with_members {
                self.joined_members()
            } else {
                Vec::new()
            },
        }
    }

    /// Every member with its metadata for the generation's protocol.
    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let (reply, receiver) = oneshot::channel();
        if matches!(self.join_timer, Some(JoinTimer::Initial { .. })) {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.pending_members.remove(&member_id);
        info!(
            group = %self.group_id,
            member = %member_id,
            instance = request.group_instance_id.as_deref().unwrap_or(""),
            state = self.state.name(),
            "member joining"
        );
        self.members.push(Member {
            member_id,
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            is_new: true,
            expires_at_ms: now_ms.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS),
        });
        self.maybe_prepare_rebalance(now_ms, "new member joined");
        receiver
    }

    /// Takes the member's new protocols and timeouts, holds its reply, and
    /// starts a rebalance if none is under way.
    fn update_member_and_rebalance(
        &mut self,
        i: usize,
        request: JoinRequest,
        now_ms: i64,
    ) -> oneshot::Receiver<JoinResult> {
        let (reply, receiver) = oneshot::channel();
        let member = &mut self.members[i];
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        if let Some(superseded) = member.awaiting_join.replace(reply) {
            // Kafka drops the older request unanswered; answer it so the
            // connection that sent it is not left waiting.
            let _ = superseded.send(JoinResult::failed(
                member.member_id.clone(),
                ResponseError::RebalanceInProgress,
            ));
        }
        self.maybe_prepare_rebalance(now_ms, "member rejoined");
        receiver
    }

    /// A known static member joined with an empty member id (it restarted):
    /// it gets a new member id and the old one is fenced (KIP-345).
    fn replace_static_member(
        &mut self,
        i: usize,
        new_id: String,
        request: JoinRequest,
        now_ms: i64,
    ) -> Reply<JoinResult> {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let member = &mut self.members[i];
        let old_id = std::mem::replace(&mut member.member_id, new_id.clone());
        member.fail_held_replies(&old_id, ResponseError::FencedInstanceId);
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.refresh(now_ms);
        let (reply, receiver) = oneshot::channel();
        member.awaiting_join = Some(reply);
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        info!(
            group = %self.group_id,
            instance = request.group_instance_id.as_deref().unwrap_or(""),
            old_member = %old_id,
            member = %new_id,
            state = self.state.name(),
            "static member replaced"
        );
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    // Nothing the assignment depends on changed: no rebalance.
                    // The leader id is the one before the replacement so that
                    // a returning leader does not run an assignment that a
                    // Stable group would ignore (Kafka before JoinGroup v9).
                    let result = JoinResult {
                        error: None,
                        generation_id: self.generation_id,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        leader: previous_leader,
                        member_id: new_id,
                        members: Vec::new(),
                    };
                    if let Some(reply) = self.members[i].awaiting_join.take() {
                        let _ = reply.send(result);
                    }
                    self.mark_store(now_ms);
                } else {
                    self.maybe_prepare_rebalance(now_ms, "static member changed protocols");
                }
            }
            // The leader may already have assigned to the old member id.
            GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, "static member replaced during sync");
            }
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                self.maybe_prepare_rebalance(now_ms, "static member replaced");
            }
        }
        Reply::Later(receiver)
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty
    /// protocol type and list; otherwise the type must match and one of the
    /// protocols must be supported by every member. A rejoining member's own
    /// previous protocols (`except`) do not count, so a member may switch to
    /// any protocol the others support (Kafka counts them, which refuses a
    /// lone member changing its assignor).
    fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
        except: Option<usize>,
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.state == GroupState::Empty {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .iter()
                .enumerate()
                .filter(|(j, _)| Some(*j) != except)
                .all(|(_, m)| m.supports(name))
        })
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports,
    /// each member votes for the first it lists; most votes wins, ties going
    /// to the protocol voted for first in member order.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: Vec<(&str, usize)> = Vec::new();
        for member in &self.members {
            let Some(choice) = member
                .protocols
                .iter()
                .map(|(name, _)| name.as_str())
                .find(|name| candidates.contains(name))
            else {
                continue;
            };
            match votes.iter_mut().find(|(name, _)| *name == choice) {
                Some((_, count)) => *count += 1,
                None => votes.push((choice, 1)),
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// Kafka's `maybePrepareRebalance`: starts a rebalance unless one is
    /// under way.
    fn maybe_prepare_rebalance(&mut self, now_ms: i64, reason: &str) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now_ms, reason);
        }
    }

    /// Kafka's `prepareRebalance`.
    fn prepare_rebalance(&mut self, now_ms: i64, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress, now_ms);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let rebalance_timeout = self.rebalance_timeout_ms();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay = self.config.initial_rebalance_delay_ms.max(0);
            JoinTimer::Initial {
                fires_at_ms: now_ms.saturating_add(delay),
                delay_ms: delay,
                remaining_ms: (rebalance_timeout - delay).max(0),
            }
        } else {
            JoinTimer::Deadline {
                at_ms: now_ms.saturating_add(rebalance_timeout),
            }
        });
        self.new_member_added = false;
        let previous = self.state;
        self.state = GroupState::PreparingRebalance;
        info!(
            group = %self.group_id,
            from = previous.name(),
            generation = self.generation_id,
            members = self.members.len(),
            reason,
            "preparing to rebalance"
        );
        self.maybe_complete_join(now_ms);
    }

    /// Clears the assignments and answers the members waiting in SyncGroup
    /// with `error`.
    fn reset_and_propagate_assignment_error(&mut self, error: ResponseError, now_ms: i64) {
        for member in &mut self.members {
            member.assignment = Bytes::new();
            if let Some(reply) = member.awaiting_sync.take() {
                let _ = reply.send(SyncResult::failed(error));
                member.refresh(now_ms);
            }
        }
    }

    /// The longest rebalance timeout among the members.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .iter()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
            .max(0)
    }

    fn num_awaiting_join(&self) -> usize {
        self.members
            .iter()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    /// Completes the join phase once every member has rejoined and no
    /// handed-out member id is outstanding (not during the initial delay).
    fn maybe_complete_join(&mut self, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && matches!(self.join_timer, Some(JoinTimer::Deadline { .. }))
            && self.pending_members.is_empty()
            && self.members.iter().all(|m| m.awaiting_join.is_some())
        {
            self.complete_join(now_ms);
        }
    }

    /// Kafka's `onCompleteJoin`: forms the next generation from the members
    /// that rejoined.
    fn complete_join(&mut self, now_ms: i64) {
        // Dynamic members that did not rejoin are gone; static ones stay
        // until their session expires (KIP-345).
        let mut i = 0;
        while i < self.members.len() {
            let member = &self.members[i];
            if member.awaiting_join.is_none() && member.group_instance_id.is_none() {
                let gone = self.detach(i, ResponseError::UnknownMemberId);
                info!(group = %self.group_id, member = %gone.member_id, "member removed: did not rejoin in time");
            } else {
                i += 1;
            }
        }
        if self.state == GroupState::Dead {
            return;
        }
        if !self.members.is_empty() {
            let leader_rejoined = self
                .leader
                .as_deref()
                .and_then(|leader| self.index_of(leader))
                .is_some_and(|i| self.members[i].awaiting_join.is_some());
            if !leader_rejoined {
                match self.members.iter().find(|m| m.awaiting_join.is_some()) {
                    Some(member) => self.leader = Some(member.member_id.clone()),
                    None => {
                        // Only static members that did not rejoin remain: wait
                        // for them to rejoin or for their sessions to expire.
                        // (At least a minimum session, so that a zero
                        // rebalance timeout does not spin the timer.)
                        let wait = self
                            .rebalance_timeout_ms()
                            .max(i64::from(self.config.min_session_timeout_ms));
                        warn!(group = %self.group_id, members = self.members.len(), "rebalance cannot complete: no member rejoined");
                        self.join_timer = Some(JoinTimer::Deadline {
                            at_ms: now_ms.saturating_add(wait),
                        });
                        return;
                    }
                }
            }
        }

        self.generation_id = self.generation_id.wrapping_add(1);
        self.join_timer = None;
        self.new_member_added = false;
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
            self.mark_store(now_ms);
            info!(group = %self.group_id, generation = self.generation_id, "group is empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let mut leader_members = Some(self.joined_members());
        for member in &mut self.members {
            let is_leader = self.leader.as_deref() == Some(member.member_id.as_str());
            let result = JoinResult {
                error: None,
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader: self.leader.clone().unwrap_or_default(),
                member_id: member.member_id.clone(),
                members: if is_leader {
                    leader_members.take().unwrap_or_default()
                } else {
                    Vec::new()
                },
            };
            if let Some(reply) = member.awaiting_join.take() {
                let _ = reply.send(result);
            }
            member.is_new = false;
            member.refresh(now_ms);
            self.pending_sync.insert(member.member_id.clone());
        }
        self.sync_deadline_ms = Some(now_ms.saturating_add(self.rebalance_timeout_ms()));
        info!(
            group = %self.group_id,
            generation = self.generation_id,
            protocol = self.protocol_name.as_deref().unwrap_or(""),
            leader = self.leader.as_deref().unwrap_or(""),
            members = self.members.len(),
            "generation formed; awaiting the leader's assignment"
        );
    }

    /// Handles a SyncGroup.
    #[allow(clippy::too_many_arguments)] // the API's fields, one each
    pub(crate) fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Reply<SyncResult> {
        self.tick(now_ms);
        if self.state == GroupState::Dead {
            return Reply::Now(SyncResult::failed(ResponseError::CoordinatorNotAvailable));
        }
        let i = match self.validate_current_member(member_id, group_instance_id) {
            Ok(i) => i,
            Err(error) => return Reply::Now(SyncResult::failed(error)),
        };
        if generation_id != self.generation_id {
            return Reply::Now(SyncResult::failed(ResponseError::IllegalGeneration));
        }
        if protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t))
            || protocol_name.is_some_and(|n| self.protocol_name.as_deref() != Some(n))
        {
            return Reply::Now(SyncResult::failed(ResponseError::InconsistentGroupProtocol));
        }
        match self.state {
            GroupState::Empty => Reply::Now(SyncResult::failed(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResult::failed(ResponseError::RebalanceInProgress))
            }
            GroupState::CompletingRebalance => {
                let (reply, receiver) = oneshot::channel();
                let member = &mut self.members[i];
                member.refresh(now_ms);
                if let Some(superseded) = member.awaiting_sync.replace(reply) {
                    let _ = superseded.send(SyncResult::failed(ResponseError::RebalanceInProgress));
                }
                self.synced(member_id);
                if self.is_leader(member_id) {
                    self.apply_assignment(assignments, now_ms);
                }
                settle(receiver)
            }
            GroupState::Stable => {
                self.synced(member_id);
                let member = &mut self.members[i];
                member.refresh(now_ms);
                Reply::Now(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                })
            }
            GroupState::Dead => {
                Reply::Now(SyncResult::failed(ResponseError::CoordinatorNotAvailable))
            }
        }
    }

    /// The member sent its SyncGroup for this generation.
    fn synced(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    /// Stores the leader's assignment, moves to Stable and answers every
    /// member waiting in SyncGroup. Members the leader left out get an empty
    /// assignment; entries for non-members are ignored.
    fn apply_assignment(&mut self, assignments: Vec<(String, Bytes)>, now_ms: i64) {
        let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
        let mut missing = 0usize;
        for member in &mut self.members {
            member.assignment = match by_member.remove(&member.member_id) {
                Some(assignment) => assignment,
                None => {
                    missing += 1;
                    Bytes::new()
                }
            };
        }
        if missing > 0 {
            warn!(group = %self.group_id, generation = self.generation_id, missing, "leader's assignment leaves members out; they get an empty assignment");
        }
        self.state = GroupState::Stable;
        self.mark_store(now_ms);
        for member in &mut self.members {
            if let Some(reply) = member.awaiting_sync.take() {
                let _ = reply.send(SyncResult {
                    error: None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: member.assignment.clone(),
                });
                member.refresh(now_ms);
            }
        }
        info!(
            group = %self.group_id,
            generation = self.generation_id,
            members = self.members.len(),
            "group stable"
        );
    }

    /// Handles a Heartbeat; `None` means no error.
    pub(crate) fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Option<ResponseError> {
        self.tick(now_ms);
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let i = match self.validate_current_member(member_id, group_instance_id) {
            Ok(i) => i,
            Err(error) => return Some(error),
        };
        if generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members[i].refresh(now_ms);
                None
            }
            GroupState::PreparingRebalance => {
                self.members[i].refresh(now_ms);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::Dead => Some(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Handles a LeaveGroup: each entry is a member id, or an empty member id
    /// with a `group.instance.id` (v3+, also how admins remove static
    /// members). One result per entry, `None` for success.
    pub(crate) fn leave(
        &mut self,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Vec<Option<ResponseError>> {
        self.tick(now_ms);
        if self.state == GroupState::Dead {
            return vec![Some(ResponseError::CoordinatorNotAvailable); members.len()];
        }
        members
            .iter()
            .map(|(member_id, instance)| self.leave_one(member_id, instance.as_deref(), now_ms))
            .collect()
    }

    fn leave_one(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if member_id.is_empty() {
            let Some(i) = group_instance_id.and_then(|instance| self.static_index(instance)) else {
                return Some(ResponseError::UnknownMemberId);
            };
            self.remove_member_and_update_group(i, now_ms, "left the group");
            return None;
        }
        if self.pending_members.remove(member_id).is_some() {
            debug!(group = %self.group_id, member = member_id, "pending member left");
            self.maybe_complete_join(now_ms);
            return None;
        }
        match self.validate_current_member(member_id, group_instance_id) {
            Ok(i) => {
                self.remove_member_and_update_group(i, now_ms, "left the group");
                None
            }
            Err(error) => Some(error),
        }
    }

    /// Kafka's `removeMemberAndUpdateGroup`: a held JoinGroup is answered
    /// UNKNOWN_MEMBER_ID, then the group rebalances (or, mid-rebalance,
    /// checks whether the join phase can complete without the member).
    fn remove_member_and_update_group(&mut self, i: usize, now_ms: i64, reason: &str) {
        let gone = self.detach(i, ResponseError::UnknownMemberId);
        info!(group = %self.group_id, member = %gone.member_id, reason, "member removed");
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now_ms, reason);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Takes member `i` out of the group, answering its held replies with
    /// `error`, and picks another leader if it led.
    fn detach(&mut self, i: usize, error: ResponseError) -> Member {
        let mut member = self.members.remove(i);
        member.fail_held_replies("", error);
        self.pending_sync.remove(&member.member_id);
        if self.leader.as_deref() == Some(member.member_id.as_str()) {
            self.leader = self.members.first().map(|m| m.member_id.clone());
        }
        member
    }

    /// Acts on everything due by `now_ms`: lapsed member ids handed out with
    /// MEMBER_ID_REQUIRED, expired sessions, the end of the initial delay or
    /// of the rebalance timeout, and members that did not send SyncGroup in
    /// time. Held replies are completed as the group moves on.
    pub(crate) fn tick(&mut self, now_ms: i64) {
        if self.state == GroupState::Dead {
            return;
        }

        let lapsed: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, &lapses_at)| now_ms >= lapses_at)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lapsed {
            self.pending_members.remove(id);
            debug!(group = %self.group_id, member = %id, "pending member id lapsed");
        }
        if !lapsed.is_empty() {
            self.maybe_complete_join(now_ms);
        }

        while let Some(i) = self
            .members
            .iter()
            .position(|m| m.can_expire() && now_ms >= m.expires_at_ms)
        {
            self.remove_member_and_update_group(i, now_ms, "session expired");
        }

        match self.join_timer {
            Some(JoinTimer::Initial {
                fires_at_ms,
                delay_ms,
                remaining_ms,
            }) if now_ms >= fires_at_ms => {
                if self.new_member_added && remaining_ms != 0 {
                    self.new_member_added = false;
                    let delay = self.config.initial_rebalance_delay_ms.min(remaining_ms);
                    self.join_timer = Some(JoinTimer::Initial {
                        fires_at_ms: now_ms.saturating_add(delay),
                        delay_ms: delay,
                        remaining_ms: (remaining_ms - delay_ms).max(0),
                    });
                    debug!(group = %self.group_id, delay, "initial rebalance delay extended");
                } else {
                    self.complete_join(now_ms);
                }
            }
            Some(JoinTimer::Deadline { at_ms }) if now_ms >= at_ms => self.complete_join(now_ms),
            _ => {}
        }

        if let Some(at_ms) = self.sync_deadline_ms {
            if now_ms >= at_ms {
                self.sync_deadline_ms = None;
                if matches!(
                    self.state,
                    GroupState::CompletingRebalance | GroupState::Stable
                ) && !self.pending_sync.is_empty()
                {
                    let late: Vec<String> = self.pending_sync.drain().collect();
                    for id in &late {
                        if let Some(i) = self.index_of(id) {
                            self.detach(i, ResponseError::UnknownMemberId);
                        }
                    }
                    info!(group = %self.group_id, members = late.len(), "members removed: no SyncGroup in time");
                    self.prepare_rebalance(now_ms, "members did not sync in time");
                }
            }
        }
    }

    /// The earliest time at which [`Group::tick`] has something to do, if
    /// anything is scheduled.
    #[allow(
        dead_code,
        reason = "coordinator API; the coordinator ticks on a steady timer for now"
    )]
    pub(crate) fn next_deadline(&self) -> Option<i64> {
        if self.state == GroupState::Dead {
            return None;
        }
        let pending = self.pending_members.values().copied();
        let sessions = self
            .members
            .iter()
            .filter(|m| m.can_expire())
            .map(|m| m.expires_at_ms);
        let join = self.join_timer.map(|timer| match timer {
            JoinTimer::Initial { fires_at_ms, .. } => fires_at_ms,
            JoinTimer::Deadline { at_ms } => at_ms,
        });
        pending
            .chain(sessions)
            .chain(join)
            .chain(self.sync_deadline_ms)
            .min()
    }

    /// Kafka's `validateOffsetCommit` with `doCommitOffsets`' state check:
    /// whether an OffsetCommit may be stored (the tests' view of
    /// [`Group::accept_offset_commit`], without its side effect).
    #[cfg(test)]
    pub(crate) fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        self.check_offset_commit(member_id, group_instance_id, generation_id)
            .map(|_| ())
    }

    /// [`Group::validate_offset_commit`], and on success counts the commit
    /// as a sign of life from the member, as Kafka does.
    pub(crate) fn accept_offset_commit(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        self.tick(now_ms);
        let member = self.check_offset_commit(member_id, group_instance_id, generation_id)?;
        if let Some(i) = member {
            self.members[i].refresh(now_ms);
        }
        Ok(())
    }

    /// The commit check; on success, the committing member if it is one.
    fn check_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<Option<usize>, ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            // The admin client, or a consumer without group management.
            return Ok(None);
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            let i = self.validate_current_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ResponseError::IllegalGeneration);
            }
            return match self.state {
                // Commits from the previous generation are still welcome
                // while members rejoin; the heartbeat tells them to rejoin.
                GroupState::Stable | GroupState::PreparingRebalance | GroupState::Empty => {
                    Ok(Some(i))
                }
                // The member has its new generation but not its assignment.
                GroupState::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
                GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            };
        }
        // Only members may commit to a group that has them.
        Err(ResponseError::UnknownMemberId)
    }

    /// The group as DescribeGroups shows it: protocol, metadata and
    /// assignments only when Stable, as Kafka.
    pub(crate) fn describe(&self) -> GroupDescription {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = self
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable {
                    m.metadata_for(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupDescription {
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol,
            members,
            generation_id: self.generation_id,
        }
    }

    /// Marks the group deleted (DeleteGroups). The caller allows this only
    /// when the group is empty; should members remain, their held replies
    /// are answered COORDINATOR_NOT_AVAILABLE so that none is left hanging.
    pub(crate) fn mark_dead(&mut self) {
        if !self.members.is_empty() {
            warn!(group = %self.group_id, members = self.members.len(), "group marked dead with members");
        }
        for member in &mut self.members {
            let id = member.member_id.clone();
            member.fail_held_replies(&id, ResponseError::CoordinatorNotAvailable);
        }
        self.pending_members.clear();
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        self.join_timer = None;
        self.state = GroupState::Dead;
        info!(group = %self.group_id, "group marked dead");
    }

    fn index_of(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.member_id == member_id)
    }

    fn static_index(&self, group_instance_id: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.group_instance_id.as_deref() == Some(group_instance_id))
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Kafka's `validateCurrentMember`: a given instance id must be known and
    /// mapped to this member id (else FENCED_INSTANCE_ID), and the member id
    /// must be a member.
    fn validate_current_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<usize, ResponseError> {
        if let Some(instance) = group_instance_id {
            return match self.static_index(instance) {
                Some(i) if self.members[i].member_id != member_id => {
                    debug!(group = %self.group_id, member = member_id, instance, "fenced static member");
                    Err(ResponseError::FencedInstanceId)
                }
                Some(i) => Ok(i),
                None => Err(ResponseError::UnknownMemberId),
            };
        }
        self.index_of(member_id)
            .ok_or(ResponseError::UnknownMemberId)
    }
}

#[cfg(test)]
mod tests;
