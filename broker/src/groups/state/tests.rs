//! Drives the group state machine with explicit times and reads the held
//! replies with `try_recv`.

use super::*;
use tokio::sync::oneshot::error::TryRecvError;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;
const DELAY: i64 = 3_000;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY,
        ..GroupConfig::default()
    }
}

fn protocols(list: &[(&str, &str)]) -> Vec<(String, Bytes)> {
    list.iter()
        .map(|(name, metadata)| (name.to_string(), Bytes::from(metadata.to_string())))
        .collect()
}

fn request(member_id: &str, client_id: &str, list: &[(&str, &str)]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: client_id.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".to_string(),
        protocols: protocols(list),
        require_known_member_id: false,
    }
}

/// A consumer supporting `range` with metadata naming it.
fn consumer(member_id: &str, client_id: &str) -> JoinRequest {
    request(member_id, client_id, &[("range", client_id)])
}

fn static_consumer(member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_string()),
        ..consumer(member_id, instance)
    }
}

fn now<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Later(_) => panic!("expected an answer now, got a held reply"),
    }
}

fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(receiver) => receiver,
        Reply::Now(_) => panic!("expected a held reply, got an answer now"),
    }
}

fn ready<T>(receiver: &mut oneshot::Receiver<T>) -> T {
    receiver
        .try_recv()
        .expect("the held reply should be complete")
}

fn held<T>(receiver: &mut oneshot::Receiver<T>) -> bool {
    matches!(receiver.try_recv(), Err(TryRecvError::Empty))
}

/// Either kind of reply, as a receiver, for helpers that do not care.
fn receiver_of<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(receiver) => receiver,
        Reply::Now(value) => {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(value);
            rx
        }
    }
}

/// Joins all `requests` at `t`, runs the timers until every join is
/// answered, and returns the answers in request order with the time reached.
fn join_all(group: &mut Group, requests: Vec<JoinRequest>, t: i64) -> (Vec<JoinResult>, i64) {
    let mut receivers: Vec<_> = requests
        .into_iter()
        .map(|r| receiver_of(group.join(r, t)))
        .collect();
    let mut results: Vec<Option<JoinResult>> = receivers.iter().map(|_| None).collect();
    let mut at = t;
    for _ in 0..10 {
        for (slot, receiver) in results.iter_mut().zip(receivers.iter_mut()) {
            if slot.is_none() {
                if let Ok(result) = receiver.try_recv() {
                    *slot = Some(result);
                }
            }
        }
        if results.iter().all(Option::is_some) {
            return (results.into_iter().flatten().collect(), at);
        }
        at = group.next_deadline().expect("something is scheduled");
        group.tick(at);
    }
    panic!("joins never completed");
}

/// Syncs every member (leader last, assigning `assign-<client>` by the
/// member's metadata) and returns the assignments by member id.
fn sync_all(group: &mut Group, joined: &[JoinResult], t: i64) -> HashMap<String, Bytes> {
    let leader = joined
        .iter()
        .find(|j| j.member_id == j.leader)
        .expect("a leader");
    let mut receivers = Vec::new();
    for j in joined.iter().filter(|j| j.member_id != j.leader) {
        let reply = group.sync(
            &j.member_id,
            None,
            j.generation_id,
            None,
            None,
            Vec::new(),
            t,
        );
        receivers.push((j.member_id.clone(), later(reply)));
    }
    let assignments = leader
        .members
        .iter()
        .map(|m| {
            let mut a = b"assign-".to_vec();
            a.extend_from_slice(&m.metadata);
            (m.member_id.clone(), Bytes::from(a))
        })
        .collect();
    let own = now(group.sync(
        &leader.member_id,
        None,
        leader.generation_id,
        Some("consumer"),
        leader.protocol_name.as_deref(),
        assignments,
        t,
    ));
    assert_eq!(own.error, None);
    let mut out = HashMap::from([(leader.member_id.clone(), own.assignment)]);
    for (id, mut receiver) in receivers {
        let result = ready(&mut receiver);
        assert_eq!(result.error, None);
        out.insert(id, result.assignment);
    }
    out
}

/// A Stable group of consumers `a`, `b`, `c` formed at time 0; returns the
/// join answers (leader first) and the time reached.
fn stable_abc() -> (Group, Vec<JoinResult>, i64) {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![consumer("", "a"), consumer("", "b"), consumer("", "c")],
        0,
    );
    sync_all(&mut group, &joined, t);
    assert_eq!(group.state(), GroupState::Stable);
    (group, joined, t)
}

#[test]
fn three_members_join_one_generation_and_the_leader_sees_all() {
    let mut group = Group::new("g".to_string(), config());
    let mut a = later(group.join(consumer("", "a"), 0));
    let mut b = later(group.join(consumer("", "b"), 10));
    let mut c = later(group.join(consumer("", "c"), 20));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(group.next_deadline(), Some(DELAY));

    // The initial delay elapses, but members arrived meanwhile: one more delay.
    group.tick(DELAY);
    assert!(held(&mut a) && held(&mut b) && held(&mut c));
    assert_eq!(group.next_deadline(), Some(2 * DELAY));
    group.tick(2 * DELAY);

    let (a, b, c) = (ready(&mut a), ready(&mut b), ready(&mut c));
    for r in [&a, &b, &c] {
        assert_eq!(r.error, None);
        assert_eq!(r.generation_id, 1);
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.leader, a.member_id);
    }
    assert!(a.member_id.starts_with("a-"));
    assert_eq!(
        a.members,
        vec![
            JoinedMember {
                member_id: a.member_id.clone(),
                group_instance_id: None,
                metadata: Bytes::from("a"),
            },
            JoinedMember {
                member_id: b.member_id.clone(),
                group_instance_id: None,
                metadata: Bytes::from("b"),
            },
            JoinedMember {
                member_id: c.member_id.clone(),
                group_instance_id: None,
                metadata: Bytes::from("c"),
            },
        ]
    );
    assert!(b.members.is_empty() && c.members.is_empty());
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(group.generation_id(), 1);
}

#[test]
fn initial_delay_holds_a_lone_first_join_until_it_elapses() {
    let mut group = Group::new("g".to_string(), config());
    let mut a = later(group.join(consumer("", "a"), 1_000));
    group.tick(1_000 + DELAY - 1);
    assert!(held(&mut a));
    group.tick(1_000 + DELAY);
    let a = ready(&mut a);
    assert_eq!((a.error, a.generation_id), (None, 1));
    assert_eq!(a.leader, a.member_id);
    assert_eq!(a.members.len(), 1);
}

#[test]
fn initial_delay_extensions_stop_at_the_rebalance_timeout() {
    let mut group = Group::new("g".to_string(), config());
    let mut first = later(group.join(consumer("", "first"), 0));
    // A new member before every firing keeps extending, but only until the
    // rebalance timeout is used up.
    let mut t = 0;
    let mut others = Vec::new();
    while held(&mut first) {
        assert!(t <= i64::from(REBALANCE) + DELAY, "never completed");
        others.push(later(group.join(consumer("", "late"), t + 1)));
        t = group.next_deadline().expect("scheduled");
        group.tick(t);
    }
    assert!(t >= i64::from(REBALANCE) - DELAY);
    assert!(t <= i64::from(REBALANCE));
}

#[test]
fn zero_initial_delay_answers_a_lone_member_at_once() {
    let mut group = Group::new(
        "g".to_string(),
        GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        },
    );
    let a = now(group.join(consumer("", "a"), 0));
    assert_eq!((a.error, a.generation_id), (None, 1));
    assert_eq!(group.state(), GroupState::CompletingRebalance);
}

#[test]
fn leader_sync_completes_every_held_sync() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![consumer("", "a"), consumer("", "b"), consumer("", "c")],
        0,
    );
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    let mut b_sync = later(group.sync(
        &b.member_id,
        None,
        1,
        Some("consumer"),
        Some("range"),
        Vec::new(),
        t,
    ));
    let mut c_sync = later(group.sync(&c.member_id, None, 1, None, None, Vec::new(), t));
    assert!(held(&mut b_sync) && held(&mut c_sync));

    // The leader leaves c out: it gets an empty assignment.
    let assignments = vec![
        (a.member_id.clone(), Bytes::from("A")),
        (b.member_id.clone(), Bytes::from("B")),
        ("stranger".to_string(), Bytes::from("X")),
    ];
    let own = now(group.sync(&a.member_id, None, 1, None, None, assignments, t + 5));
    assert_eq!(
        own,
        SyncResult {
            error: None,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some("range".to_string()),
            assignment: Bytes::from("A"),
        }
    );
    assert_eq!(ready(&mut b_sync).assignment, Bytes::from("B"));
    let c_result = ready(&mut c_sync);
    assert_eq!((c_result.error, c_result.assignment), (None, Bytes::new()));
    assert_eq!(group.state(), GroupState::Stable);

    // In Stable a sync is answered at once with the stored assignment.
    let again = now(group.sync(&b.member_id, None, 1, None, None, Vec::new(), t + 6));
    assert_eq!(again.assignment, Bytes::from("B"));

    let description = group.describe();
    assert_eq!(description.state, GroupState::Stable);
    assert_eq!(description.protocol, "range");
    assert_eq!(description.generation_id, 1);
    assert_eq!(description.members.len(), 3);
    assert_eq!(description.members[0].assignment, Bytes::from("A"));
    assert_eq!(description.members[1].metadata, Bytes::from("b"));
}

#[test]
fn sync_errors() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    let (a, b) = (&joined[0], &joined[1]);
    let error = |reply: Reply<SyncResult>| now(reply).error;
    assert_eq!(
        error(group.sync("nobody", None, 1, None, None, Vec::new(), t)),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        error(group.sync(&b.member_id, None, 7, None, None, Vec::new(), t)),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        error(group.sync(&b.member_id, None, 1, Some("connect"), None, Vec::new(), t)),
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(
        error(group.sync(
            &b.member_id,
            None,
            1,
            None,
            Some("roundrobin"),
            Vec::new(),
            t
        )),
        Some(ResponseError::InconsistentGroupProtocol)
    );

    // A follower waits in SyncGroup; a new member's join starts a rebalance
    // and the follower is told so.
    let mut b_sync = later(group.sync(&b.member_id, None, 1, None, None, Vec::new(), t));
    let mut d = later(group.join(consumer("", "d"), t + 1));
    assert_eq!(
        ready(&mut b_sync).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        error(group.sync(&a.member_id, None, 1, None, None, Vec::new(), t + 2)),
        Some(ResponseError::RebalanceInProgress)
    );
    assert!(held(&mut d));
}

#[test]
fn heartbeat_answers_by_state() {
    let mut group = Group::new("g".to_string(), config());
    assert_eq!(
        group.heartbeat("nobody", None, 0, 0),
        Some(ResponseError::UnknownMemberId)
    );

    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    let (a, b) = (&joined[0], &joined[1]);
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(group.heartbeat(&b.member_id, None, 1, t), None);
    assert_eq!(
        group.heartbeat(&b.member_id, None, 0, t),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        group.heartbeat("nobody", None, 1, t),
        Some(ResponseError::UnknownMemberId)
    );

    sync_all(&mut group, &joined, t);
    assert_eq!(group.heartbeat(&b.member_id, None, 1, t + 1), None);

    // The leader rejoining in Stable starts a rebalance.
    let mut a_join = later(group.join(consumer(&a.member_id, "a"), t + 2));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    // b's session ran from t + 1; a heartbeat in PreparingRebalance is told
    // to rejoin but still keeps b alive past that.
    assert_eq!(
        group.heartbeat(&b.member_id, None, 1, t + 3),
        Some(ResponseError::RebalanceInProgress)
    );
    let past_first_session = t + 2 + i64::from(SESSION);
    assert_eq!(
        group.heartbeat(&b.member_id, None, 1, past_first_session),
        Some(ResponseError::RebalanceInProgress)
    );
    let b_join = now(group.join(consumer(&b.member_id, "b"), past_first_session + 1));
    assert_eq!(b_join.generation_id, 2);
    assert_eq!(ready(&mut a_join).generation_id, 2);
    let t = past_first_session;

    group.leave(
        &[(a.member_id.clone(), None), (b.member_id.clone(), None)],
        t + 5_001,
    );
    assert_eq!(group.state(), GroupState::Empty);
    group.mark_dead();
    assert_eq!(
        group.heartbeat(&b.member_id, None, 2, t + 5_002),
        Some(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn member_id_required_then_rejoin_with_it() {
    let mut group = Group::new("g".to_string(), config());
    let first = now(group.join(
        JoinRequest {
            require_known_member_id: true,
            ..consumer("", "client-1")
        },
        0,
    ));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(first.member_id.starts_with("client-1-"));
    assert_eq!(first.generation_id, -1);
    assert_eq!(group.state(), GroupState::Empty);
    assert!(group.is_empty());

    let mut second = later(group.join(
        JoinRequest {
            require_known_member_id: true,
            ..consumer(&first.member_id, "client-1")
        },
        100,
    ));
    group.tick(100 + DELAY);
    let second = ready(&mut second);
    assert_eq!(second.error, None);
    assert_eq!(second.member_id, first.member_id);
    assert_eq!(second.leader, first.member_id);
}

#[test]
fn an_unclaimed_member_id_lapses_after_the_session_timeout() {
    let mut group = Group::new("g".to_string(), config());
    let first = now(group.join(
        JoinRequest {
            require_known_member_id: true,
            ..consumer("", "c")
        },
        0,
    ));
    assert_eq!(group.next_deadline(), Some(i64::from(SESSION)));
    group.tick(i64::from(SESSION));
    let late = now(group.join(consumer(&first.member_id, "c"), i64::from(SESSION) + 1));
    assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn an_outstanding_member_id_holds_the_rebalance_until_it_joins() {
    let (mut group, joined, t) = stable_abc();
    let issued = now(group.join(
        JoinRequest {
            require_known_member_id: true,
            ..consumer("", "d")
        },
        t,
    ));
    assert_eq!(issued.error, Some(ResponseError::MemberIdRequired));
    assert_eq!(group.state(), GroupState::Stable);

    let mut rejoins: Vec<_> = joined
        .iter()
        .map(|j| later(group.join(consumer(&j.member_id, &j.member_id), t + 1)))
        .collect();
    // Everyone rejoined but d's id is outstanding.
    assert!(rejoins.iter_mut().all(held));
    let d = now(group.join(consumer(&issued.member_id, "d"), t + 2));
    assert_eq!(d.generation_id, 2);
    for r in &mut rejoins {
        assert_eq!(ready(r).generation_id, 2);
    }
    assert_eq!(group.describe().members.len(), 4);
}

#[test]
fn session_expiry_removes_a_member_and_the_rest_rejoin() {
    let (mut group, joined, t) = stable_abc();
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    // b and c keep heartbeating; a, the leader, goes silent.
    let half = t + i64::from(SESSION) / 2;
    assert_eq!(group.heartbeat(&b.member_id, None, 1, half), None);
    assert_eq!(group.heartbeat(&c.member_id, None, 1, half), None);
    let a_expires = group.next_deadline().expect("sessions are scheduled");
    assert_eq!(a_expires, t + i64::from(SESSION));
    group.tick(a_expires - 1);
    assert_eq!(group.state(), GroupState::Stable);
    group.tick(a_expires);
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&a.member_id, None, 1, a_expires),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        group.heartbeat(&b.member_id, None, 1, a_expires + 1),
        Some(ResponseError::RebalanceInProgress)
    );

    let mut b_join = later(group.join(consumer(&b.member_id, "b"), a_expires + 2));
    let c_join = now(group.join(consumer(&c.member_id, "c"), a_expires + 3));
    let b_join = ready(&mut b_join);
    assert_eq!((b_join.generation_id, c_join.generation_id), (2, 2));
    assert_eq!(b_join.leader, b.member_id);
    assert_eq!(b_join.members.len(), 2);
    assert!(c_join.members.is_empty());
}

#[test]
fn leave_rebalances_the_remaining_members() {
    let (mut group, joined, t) = stable_abc();
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    let results = group.leave(
        &[
            (c.member_id.clone(), None),
            ("nobody".to_string(), None),
            (String::new(), Some("no-such-instance".to_string())),
        ],
        t,
    );
    assert_eq!(
        results,
        vec![
            None,
            Some(ResponseError::UnknownMemberId),
            Some(ResponseError::UnknownMemberId)
        ]
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);

    let (rejoined, t) = join_all(
        &mut group,
        vec![consumer(&a.member_id, "a"), consumer(&b.member_id, "b")],
        t + 10,
    );
    assert_eq!(rejoined[0].generation_id, 2);
    let ids: Vec<_> = rejoined[0]
        .members
        .iter()
        .map(|m| m.member_id.clone())
        .collect();
    assert_eq!(ids, vec![a.member_id.clone(), b.member_id.clone()]);
    sync_all(&mut group, &rejoined, t);

    // The last members leaving take the group through a rebalance to Empty.
    let results = group.leave(
        &[(a.member_id.clone(), None), (b.member_id.clone(), None)],
        t + 1,
    );
    assert_eq!(results, vec![None, None]);
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.generation_id(), 3);
    assert!(group.is_empty());
    assert_eq!(group.protocol_name, None);
    assert_eq!(group.next_deadline(), None);
}

#[test]
fn leaving_while_waiting_in_join_answers_the_held_join() {
    let mut group = Group::new("g".to_string(), config());
    let mut a = later(group.join(consumer("", "a"), 0));
    let mut b = later(group.join(consumer("", "b"), 0));
    group.tick(DELAY);
    group.tick(2 * DELAY);
    let (a, b) = (ready(&mut a), ready(&mut b));
    sync_all(&mut group, &[a.clone(), b.clone()], 2 * DELAY);

    let mut b_join = later(group.join(consumer(&b.member_id, "b2"), 2 * DELAY + 1)); // new metadata
    let results = group.leave(&[(b.member_id.clone(), None)], 2 * DELAY + 2);
    assert_eq!(results, vec![None]);
    let answer = ready(&mut b_join);
    assert_eq!(answer.error, Some(ResponseError::UnknownMemberId));
    // a alone can now finish the rebalance.
    let a_join = now(group.join(consumer(&a.member_id, "a"), 2 * DELAY + 3));
    assert_eq!((a_join.generation_id, a_join.members.len()), (2, 1));
}

#[test]
fn static_member_rejoining_in_stable_keeps_the_generation_and_fences_the_old_id() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![static_consumer("", "i1"), static_consumer("", "i2")],
        0,
    );
    let (s1, s2) = (&joined[0], &joined[1]);
    assert!(s1.member_id.starts_with("i1-"));
    assert_eq!(s1.members[0].group_instance_id.as_deref(), Some("i1"));
    let assignments = sync_all(&mut group, &joined, t);

    // i2 restarts: same instance id, no member id, same protocols.
    let restarted = now(group.join(static_consumer("", "i2"), t + 100));
    assert_eq!(restarted.error, None);
    assert_eq!(restarted.generation_id, 1);
    assert_eq!(restarted.protocol_name.as_deref(), Some("range"));
    assert_eq!(restarted.leader, s1.member_id);
    assert_ne!(restarted.member_id, s2.member_id);
    assert!(restarted.members.is_empty());
    assert_eq!(group.state(), GroupState::Stable);

    assert_eq!(
        group.heartbeat(&s2.member_id, Some("i2"), 1, t + 101),
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        now(group.sync(
            &s2.member_id,
            Some("i2"),
            1,
            None,
            None,
            Vec::new(),
            t + 101
        ))
        .error,
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        group.validate_offset_commit(&s2.member_id, Some("i2"), 1),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        group.heartbeat(&restarted.member_id, Some("i2"), 1, t + 102),
        None
    );
    let sync = now(group.sync(
        &restarted.member_id,
        Some("i2"),
        1,
        None,
        None,
        Vec::new(),
        t + 103,
    ));
    assert_eq!(Some(&sync.assignment), assignments.get(&s2.member_id));
}

#[test]
fn a_returning_static_leader_is_not_told_it_leads() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![static_consumer("", "i1"), static_consumer("", "i2")],
        0,
    );
    sync_all(&mut group, &joined, t);
    let s1 = &joined[0];
    let restarted = now(group.join(static_consumer("", "i1"), t + 1));
    // The answer names the old leader id, so the returning member does not
    // run an assignment the Stable group would ignore.
    assert_eq!(restarted.leader, s1.member_id);
    assert_eq!(group.leader.as_deref(), Some(restarted.member_id.as_str()));
    assert_eq!(group.state(), GroupState::Stable);
}

#[test]
fn static_member_replaced_mid_rebalance_fences_the_held_join() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![static_consumer("", "i1"), static_consumer("", "i2")],
        0,
    );
    sync_all(&mut group, &joined, t);
    let (s1, s2) = (&joined[0], &joined[1]);
    // The leader rejoins (rebalance); i2's old incarnation rejoins too, then
    // its new incarnation arrives with no member id.
    let mut s1_join = later(group.join(static_consumer(&s1.member_id, "i1"), t + 1));
    let s2_old = group.join(static_consumer(&s2.member_id, "i2"), t + 2);
    // Both rejoined, so the generation completed at once.
    let s2_old = now(s2_old);
    assert_eq!(s2_old.generation_id, 2);
    assert_eq!(ready(&mut s1_join).generation_id, 2);

    // Now in CompletingRebalance: a rejoin of i1 with unchanged protocols
    // resends the generation to the leader with the members.
    let resent = now(group.join(static_consumer(&s1.member_id, "i1"), t + 3));
    assert_eq!((resent.generation_id, resent.members.len()), (2, 2));

    // i2 restarts while the generation waits for sync: rebalance, and the
    // old incarnation's waiting sync is fenced.
    let mut old_sync =
        later(group.sync(&s2.member_id, Some("i2"), 2, None, None, Vec::new(), t + 4));
    let mut new_join = later(group.join(static_consumer("", "i2"), t + 5));
    assert_eq!(
        ready(&mut old_sync).error,
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert!(held(&mut new_join));

    // And during PreparingRebalance, another restart fences the held join.
    let newer = group.join(static_consumer("", "i2"), t + 6);
    let fenced = ready(&mut new_join);
    assert_eq!(fenced.error, Some(ResponseError::FencedInstanceId));
    let s1_rejoin = group.join(static_consumer(&s1.member_id, "i1"), t + 7);
    let s1_rejoin = now(s1_rejoin);
    let newer = ready(&mut later(newer));
    assert_eq!((s1_rejoin.generation_id, newer.generation_id), (3, 3));
    assert_eq!(s1_rejoin.members.len(), 2);
}

#[test]
fn protocol_is_the_common_one_with_most_votes() {
    let cases: [(&[&[&str]], &str); 4] = [
        (
            &[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["roundrobin"],
            ],
            "roundrobin",
        ),
        (
            &[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["roundrobin", "range"],
            ],
            "roundrobin",
        ),
        (
            &[
                &["range", "roundrobin"],
                &["roundrobin", "range"],
                &["range"],
            ],
            "range",
        ),
        // A tie goes to the protocol voted for first.
        (
            &[&["range", "roundrobin"], &["roundrobin", "range"]],
            "range",
        ),
    ];
    for (members, expected) in cases {
        let mut group = Group::new("g".to_string(), config());
        let requests = members
            .iter()
            .enumerate()
            .map(|(i, names)| {
                let list: Vec<(&str, &str)> = names.iter().map(|n| (*n, *n)).collect();
                request("", &format!("m{i}"), &list)
            })
            .collect();
        let (joined, _) = join_all(&mut group, requests, 0);
        assert_eq!(
            joined[0].protocol_name.as_deref(),
            Some(expected),
            "{members:?}"
        );
        // The leader gets each member's metadata for the chosen protocol.
        assert!(joined[0]
            .members
            .iter()
            .all(|m| m.metadata == expected.as_bytes()));
    }
}

#[test]
fn inconsistent_protocols_are_refused() {
    let mut group = Group::new("g".to_string(), config());
    let no_type = now(group.join(
        JoinRequest {
            protocol_type: String::new(),
            ..consumer("", "a")
        },
        0,
    ));
    assert_eq!(
        no_type.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let no_protocols = now(group.join(request("", "a", &[]), 0));
    assert_eq!(
        no_protocols.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert!(group.is_empty());

    let (joined, t) = join_all(&mut group, vec![consumer("", "a")], 0);
    let other_type = now(group.join(
        JoinRequest {
            protocol_type: "connect".to_string(),
            ..consumer("", "b")
        },
        t,
    ));
    assert_eq!(
        other_type.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let no_common = now(group.join(request("", "b", &[("sticky", "")]), t));
    assert_eq!(
        no_common.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    assert_eq!(group.describe().members.len(), 1);

    // The lone member may switch assignor: only the others' protocols count.
    let switched = now(group.join(request(&joined[0].member_id, "a", &[("sticky", "")]), t + 1));
    assert_eq!(switched.error, None);
    assert_eq!(switched.protocol_name.as_deref(), Some("sticky"));
}

#[test]
fn rebalance_deadline_drops_members_that_did_not_rejoin() {
    let (mut group, joined, t) = stable_abc();
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    let mut a_join = later(group.join(consumer(&a.member_id, "a"), t));
    let mut b_join = later(group.join(consumer(&b.member_id, "b"), t + 1));
    let deadline = t + i64::from(REBALANCE);
    // c keeps heartbeating but never rejoins.
    let mut at = t;
    while at + 5_000 < deadline {
        at += 5_000;
        assert_eq!(
            group.heartbeat(&c.member_id, None, 1, at),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    group.tick(deadline - 1);
    assert!(held(&mut a_join) && held(&mut b_join));
    group.tick(deadline);
    let (a_join, b_join) = (ready(&mut a_join), ready(&mut b_join));
    assert_eq!((a_join.generation_id, b_join.generation_id), (2, 2));
    assert_eq!(a_join.members.len(), 2);
    assert_eq!(
        group.heartbeat(&c.member_id, None, 1, deadline + 1),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_leader_that_never_syncs_is_removed_at_the_sync_deadline() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    let (a, b) = (&joined[0], &joined[1]);
    let mut b_sync = later(group.sync(&b.member_id, None, 1, None, None, Vec::new(), t));
    // The leader heartbeats (so its session lives) but never syncs.
    let mut at = t;
    for _ in 0..5 {
        at += 5_000;
        assert_eq!(group.heartbeat(&a.member_id, None, 1, at), None);
    }
    let deadline = t + i64::from(REBALANCE);
    group.tick(deadline);
    assert_eq!(
        ready(&mut b_sync).error,
        Some(ResponseError::RebalanceInProgress)
    );
    assert_eq!(
        group.heartbeat(&a.member_id, None, 1, deadline),
        Some(ResponseError::UnknownMemberId)
    );
    let b_join = now(group.join(consumer(&b.member_id, "b"), deadline + 1));
    assert_eq!(
        (b_join.generation_id, b_join.leader.as_str()),
        (2, b.member_id.as_str())
    );
}

#[test]
fn static_members_that_miss_the_deadline_stay_until_their_session_ends() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![static_consumer("", "i1"), static_consumer("", "i2")],
        0,
    );
    sync_all(&mut group, &joined, t);
    let (s1, s2) = (&joined[0], &joined[1]);
    let mut s1_join = later(group.join(static_consumer(&s1.member_id, "i1"), t));
    // s2 heartbeats until just before the deadline, but does not rejoin.
    for at in [t + 9_000, t + 18_000, t + 27_000] {
        assert_eq!(
            group.heartbeat(&s2.member_id, Some("i2"), 1, at),
            Some(ResponseError::RebalanceInProgress)
        );
    }
    group.tick(t + i64::from(REBALANCE));
    let s1_join = ready(&mut s1_join);
    assert_eq!(s1_join.generation_id, 2);
    // The static member is still in the generation the leader assigns.
    assert_eq!(s1_join.members.len(), 2);
}

#[test]
fn join_refusals() {
    let mut group = Group::new(
        "g".to_string(),
        GroupConfig {
            max_size: 2,
            ..config()
        },
    );
    let short = now(group.join(
        JoinRequest {
            session_timeout_ms: 5_999,
            ..consumer("", "a")
        },
        0,
    ));
    assert_eq!(short.error, Some(ResponseError::InvalidSessionTimeout));
    let long = now(group.join(
        JoinRequest {
            session_timeout_ms: 1_800_001,
            ..consumer("", "a")
        },
        0,
    ));
    assert_eq!(long.error, Some(ResponseError::InvalidSessionTimeout));
    let unknown = now(group.join(consumer("made-up", "a"), 0));
    assert_eq!(unknown.error, Some(ResponseError::UnknownMemberId));

    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    let full = now(group.join(consumer("", "c"), t));
    assert_eq!(full.error, Some(ResponseError::GroupMaxSizeReached));
    assert_eq!(full.member_id, "");
    // Existing members are let back in.
    let again = now(group.join(consumer(&joined[1].member_id, "b"), t));
    assert_eq!(again.error, None);

    group.leave(
        &[
            (joined[0].member_id.clone(), None),
            (joined[1].member_id.clone(), None),
        ],
        t + 1,
    );
    group.mark_dead();
    let dead = now(group.join(consumer("", "a"), t + 2));
    assert_eq!(dead.error, Some(ResponseError::CoordinatorNotAvailable));
    assert_eq!(
        group.leave(&[(joined[0].member_id.clone(), None)], t + 2),
        vec![Some(ResponseError::CoordinatorNotAvailable)]
    );
}

#[test]
fn v0_rebalance_timeout_means_the_session_timeout() {
    let mut group = Group::new("g".to_string(), config());
    let v0 = |member_id: &str, client_id: &str| JoinRequest {
        rebalance_timeout_ms: -1,
        ..consumer(member_id, client_id)
    };
    let (joined, t) = join_all(&mut group, vec![v0("", "a"), v0("", "b")], 0);
    sync_all(&mut group, &joined, t);
    let mut a_join = later(group.join(v0(&joined[0].member_id, "a"), t));
    assert_eq!(
        group.heartbeat(&joined[1].member_id, None, 1, t + 5_000),
        Some(ResponseError::RebalanceInProgress)
    );
    // The rebalance deadline is the session timeout.
    assert_eq!(group.next_deadline(), Some(t + i64::from(SESSION)));
    group.tick(t + i64::from(SESSION) - 1);
    assert!(held(&mut a_join));
    group.tick(t + i64::from(SESSION));
    let a_join = ready(&mut a_join);
    assert_eq!((a_join.generation_id, a_join.members.len()), (2, 1));
}

#[test]
fn offset_commit_validation() {
    let mut group = Group::new("g".to_string(), config());
    assert_eq!(group.validate_offset_commit("", None, -1), Ok(()));
    assert_eq!(
        group.validate_offset_commit("", None, 3),
        Err(ResponseError::UnknownMemberId)
    );

    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    let (a, b) = (&joined[0], &joined[1]);
    // The generation is formed but not yet assigned.
    assert_eq!(
        group.validate_offset_commit(&b.member_id, None, 1),
        Err(ResponseError::RebalanceInProgress)
    );
    sync_all(&mut group, &joined, t);
    assert_eq!(group.validate_offset_commit(&b.member_id, None, 1), Ok(()));
    assert_eq!(
        group.validate_offset_commit(&b.member_id, None, 0),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        group.validate_offset_commit("nobody", None, 1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        group.validate_offset_commit("", None, -1),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        group.validate_offset_commit(&b.member_id, Some("i9"), 1),
        Err(ResponseError::UnknownMemberId)
    );

    // While members rejoin, the previous generation may still commit.
    let _a_join = later(group.join(consumer(&a.member_id, "a"), t + 1));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(group.validate_offset_commit(&b.member_id, None, 1), Ok(()));
    // A commit counts as a sign of life.
    let late = t + i64::from(SESSION) - 1;
    assert_eq!(
        group.accept_offset_commit(&b.member_id, None, 1, late),
        Ok(())
    );
    group.tick(t + 1 + i64::from(SESSION));
    assert_eq!(group.describe().members.len(), 2);

    group.mark_dead();
    assert_eq!(
        group.validate_offset_commit("", None, -1),
        Err(ResponseError::CoordinatorNotAvailable)
    );
}

#[test]
fn a_follower_that_resends_its_join_gets_its_generation_again() {
    let (mut group, joined, t) = stable_abc();
    let b = &joined[1];
    let again = now(group.join(consumer(&b.member_id, "b"), t + 1));
    assert_eq!(again.error, None);
    assert_eq!(again.generation_id, 1);
    assert_eq!(again.leader, joined[0].member_id);
    assert!(again.members.is_empty());
    assert_eq!(group.state(), GroupState::Stable);

    // With new metadata it starts a rebalance instead.
    let mut changed = later(group.join(consumer(&b.member_id, "b-new"), t + 2));
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert!(held(&mut changed));
}

#[test]
fn a_new_member_that_waits_too_long_in_join_is_dropped() {
    // Rebalance timeout above the new-member join timeout; only the first
    // member is known and it never rejoins, yet heartbeats.
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(
        &mut group,
        vec![JoinRequest {
            rebalance_timeout_ms: 600_000,
            ..consumer("", "a")
        }],
        0,
    );
    sync_all(&mut group, &joined, t);
    let mut newcomer = later(group.join(consumer("", "n"), t));
    let mut at = t;
    while at < t + NEW_MEMBER_JOIN_TIMEOUT_MS {
        at += 5_000;
        let _ = group.heartbeat(&joined[0].member_id, None, 1, at);
    }
    group.tick(t + NEW_MEMBER_JOIN_TIMEOUT_MS);
    assert_eq!(
        ready(&mut newcomer).error,
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn describe_outside_stable_hides_metadata_and_assignments() {
    let mut group = Group::new("g".to_string(), config());
    let empty = group.describe();
    assert_eq!(empty.state, GroupState::Empty);
    assert_eq!(empty.state.name(), "Empty");
    assert_eq!(empty.protocol_type, "");
    let (_joined, _) = join_all(&mut group, vec![consumer("", "a")], 0);
    let forming = group.describe();
    assert_eq!(forming.state.name(), "CompletingRebalance");
    assert_eq!(forming.protocol_type, "consumer");
    assert_eq!(forming.protocol, "");
    assert_eq!(forming.members[0].metadata, Bytes::new());
    assert_eq!(forming.members[0].client_id, "a");
}

#[test]
fn a_stable_group_is_stored_once_and_restored_stable_without_a_rebalance() {
    let mut group = Group::new("g".to_string(), config());
    assert_eq!(group.take_store(), None, "nothing happened yet");
    let (joined, t) = join_all(&mut group, vec![consumer("", "a"), consumer("", "b")], 0);
    assert_eq!(
        group.take_store(),
        None,
        "not stored while the assignment is awaited"
    );
    let assigned = sync_all(&mut group, &joined, t);
    let stored = group
        .take_store()
        .expect("stored once the assignment is in");
    assert_eq!(group.take_store(), None, "stored once per change");
    assert_eq!(stored.generation_id, 1);
    assert_eq!(stored.protocol_type, "consumer");
    assert_eq!(stored.protocol_name.as_deref(), Some("range"));
    assert_eq!(stored.leader.as_deref(), Some(joined[0].leader.as_str()));
    assert_eq!(stored.members.len(), 2);
    for m in &stored.members {
        assert_eq!(m.assignment, assigned[&m.member_id]);
        assert_eq!(m.session_timeout_ms, SESSION);
        assert_eq!(m.rebalance_timeout_ms, REBALANCE);
    }
    // Heartbeats change nothing stored.
    assert_eq!(group.heartbeat(&joined[1].member_id, None, 1, t + 1), None);
    assert_eq!(group.take_store(), None);

    // A new coordinator rebuilds it: Stable at generation 1, the same
    // members, leader and assignments, heartbeats and commits accepted.
    let later_t = t + 100_000;
    let mut restored = Group::restore("g".to_string(), config(), stored.clone(), later_t);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation_id(), 1);
    let described = restored.describe();
    assert_eq!(described.protocol, "range");
    for m in &described.members {
        assert_eq!(m.assignment, assigned[&m.member_id]);
        assert_eq!(m.client_id.len(), 1);
    }
    for j in &joined {
        assert_eq!(restored.heartbeat(&j.member_id, None, 1, later_t + 1), None);
        assert_eq!(
            restored.accept_offset_commit(&j.member_id, None, 1, later_t + 1),
            Ok(())
        );
    }
    assert_eq!(
        restored.heartbeat(&joined[0].member_id, None, 0, later_t + 1),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(restored.take_store(), None);

    // A member that never comes back expires after its session; the other
    // rejoins and the next generation is stored.
    let mut at = later_t;
    let mut rejoin = None;
    while at < later_t + i64::from(SESSION) * 2 {
        at += 1_000;
        if let Some(e) = restored.heartbeat(&joined[0].member_id, None, 1, at) {
            assert_eq!(e, ResponseError::RebalanceInProgress);
            rejoin = Some(receiver_of(
                restored.join(consumer(&joined[0].member_id, "a"), at),
            ));
            break;
        }
    }
    let mut rejoin = rejoin.expect("the lost member's expiry starts a rebalance");
    let again = loop {
        match rejoin.try_recv() {
            Ok(result) => break result,
            Err(_) => {
                at = restored.next_deadline().expect("a deadline");
                restored.tick(at);
            }
        }
    };
    assert_eq!(again.generation_id, 2);
    assert_eq!(again.members.len(), 1, "the survivor leads a group of one");
    sync_all(&mut restored, &[again], at);
    let second = restored.take_store().expect("generation 2 stored");
    assert_eq!(second.generation_id, 2);
    assert_eq!(second.members.len(), 1);
}

#[test]
fn an_empty_generation_is_stored_and_restored_empty() {
    let (mut group, joined, t) = stable_abc();
    let _ = group.take_store();
    let members: Vec<(String, Option<String>)> =
        joined.iter().map(|j| (j.member_id.clone(), None)).collect();
    assert!(group.leave(&members, t + 1).iter().all(Option::is_none));
    assert_eq!(group.state(), GroupState::Empty);
    let stored = group.take_store().expect("the empty generation is stored");
    assert_eq!(stored.generation_id, 2);
    assert!(stored.members.is_empty());
    assert_eq!(stored.protocol_name, None);
    assert_eq!(stored.leader, None);
    let mut restored = Group::restore("g".to_string(), config(), stored, t + 2);
    assert_eq!(restored.state(), GroupState::Empty);
    assert!(restored.is_empty());
    assert_eq!(restored.protocol_type(), Some("consumer"));
    // The next generation follows the stored one.
    let (rejoined, _) = join_all(&mut restored, vec![consumer("", "a")], t + 3);
    assert_eq!(rejoined[0].generation_id, 3);
}

#[test]
fn a_static_member_replaced_while_stable_is_stored() {
    let mut group = Group::new("g".to_string(), config());
    let (joined, t) = join_all(&mut group, vec![static_consumer("", "i-1")], 0);
    sync_all(&mut group, &joined, t);
    let first = group.take_store().expect("stored");
    assert_eq!(first.members[0].group_instance_id.as_deref(), Some("i-1"));
    let replaced = now(group.join(static_consumer("", "i-1"), t + 10));
    assert_eq!(replaced.error, None);
    assert_ne!(replaced.member_id, joined[0].member_id);
    let second = group.take_store().expect("the replacement is stored");
    assert_eq!(second.generation_id, first.generation_id);
    assert_eq!(second.members[0].member_id, replaced.member_id);
    assert_eq!(second.leader.as_deref(), Some(replaced.member_id.as_str()));
}

#[test]
fn a_store_marked_before_the_group_moves_on_is_kept() {
    let (mut group, _joined, t) = stable_abc();
    let _ = group.take_store();
    // Every member's session has run out when a newcomer joins: the join
    // first empties the group (generation 2), then starts a rebalance.
    let late = t + i64::from(SESSION) + 1;
    let _newcomer = receiver_of(group.join(consumer("", "n"), late));
    assert_ne!(group.state(), GroupState::Empty);
    let stored = group.take_store().expect("the empty generation is stored");
    assert!(stored.members.is_empty());
    assert_eq!(stored.generation_id, 2);
    // A failed write is given again, unless something newer waits.
    group.store_failed(stored.clone());
    assert_eq!(group.take_store(), Some(stored));
}
