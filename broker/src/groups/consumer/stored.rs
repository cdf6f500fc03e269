//! A consumer group (KIP-848) as `__consumer_offsets` stores it, in the
//! records Kafka's coordinator writes: per group its epoch (key 3, with a
//! hash of the subscribed topics) and its target assignment's epoch (key 6);
//! per member its metadata (key 5), its target (key 7) and its current
//! assignment with its epochs (key 8). Keys are `(version, group[, member])`
//! in the classic encoding; values are version 0 of Kafka's flexible
//! encoding (compact strings and arrays, tagged fields). A null value
//! deletes.
//!
//! [`records`] gives what the group is now, [`ConsumerGroup::stored`] holds
//! what was last written, so the coordinator writes only what changed;
//! [`Restorer`] rebuilds groups from the records a new coordinator replays.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use super::{compile, ConsumerGroup, ConsumerGroupConfig, Member, Parts, TopicMeta};
use crate::groups::offsets::{get_string, put_string};
use crate::records::put_unsigned_varint;

const GROUP_METADATA: i16 = 3;
const MEMBER_METADATA: i16 = 5;
const TARGET_METADATA: i16 = 6;
const TARGET_MEMBER: i16 = 7;
const CURRENT_ASSIGNMENT: i16 = 8;

/// The member epoch Kafka stores for a static member that left for now.
const AWAY_EPOCH: i32 = -2;

/// Kafka's `MemberState` values.
const STATE_STABLE: i8 = 1;
const STATE_UNREVOKED: i8 = 2;
const STATE_UNRELEASED: i8 = 3;

/// What was last written of a group: record key to value.
pub(crate) type StoredRecords = BTreeMap<Bytes, Bytes>;

fn key(kind: i16, group: &str, member: Option<&str>) -> Bytes {
    let mut buf = BytesMut::with_capacity(6 + group.len() + member.map_or(0, str::len));
    buf.put_i16(kind);
    put_string(&mut buf, group);
    if let Some(member) = member {
        put_string(&mut buf, member);
    }
    buf.freeze()
}

/// A consumer group record's key: (kind, group, member of the per-member kinds).
pub(crate) fn decode_key(key: &Bytes) -> Option<(i16, String, Option<String>)> {
    let mut buf = key.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let kind = buf.get_i16();
    match kind {
        GROUP_METADATA | TARGET_METADATA => Some((kind, get_string(&mut buf)?, None)),
        MEMBER_METADATA | TARGET_MEMBER | CURRENT_ASSIGNMENT => {
            let group = get_string(&mut buf)?;
            Some((kind, group, Some(get_string(&mut buf)?)))
        }
        _ => None,
    }
}

// ---- Kafka's flexible encoding -------------------------------------------

/// An unsigned varint of a length or count (`n` + 1 for compact ones).
fn put_uvarint(buf: &mut BytesMut, n: usize) {
    put_unsigned_varint(buf, u32::try_from(n).unwrap_or(u32::MAX));
}

fn put_compact_string(buf: &mut BytesMut, s: &str) {
    put_uvarint(buf, s.len() + 1);
    buf.put_slice(s.as_bytes());
}

fn put_compact_nullable(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_compact_string(buf, s),
        None => put_uvarint(buf, 0),
    }
}

fn put_len(buf: &mut BytesMut, n: usize) {
    put_uvarint(buf, n + 1);
}

/// `[]TopicPartitions { TopicId uuid, Partitions []int32 }`, each entry
/// with its (empty) tagged fields.
fn put_parts(buf: &mut BytesMut, parts: &Parts) {
    put_len(buf, parts.len());
    for (topic, ps) in parts {
        buf.put_slice(topic.as_bytes());
        put_len(buf, ps.len());
        for p in ps {
            buf.put_i32(*p);
        }
        put_uvarint(buf, 0);
    }
}

/// No tagged fields.
fn end(buf: &mut BytesMut) {
    put_uvarint(buf, 0);
}

struct Reader(Bytes);

impl Reader {
    fn uvarint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            if !self.0.has_remaining() {
                return None;
            }
            let b = self.0.get_u8();
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn i8(&mut self) -> Option<i8> {
        (self.0.remaining() >= 1).then(|| self.0.get_i8())
    }

    fn i16(&mut self) -> Option<i16> {
        (self.0.remaining() >= 2).then(|| self.0.get_i16())
    }

    fn i32(&mut self) -> Option<i32> {
        (self.0.remaining() >= 4).then(|| self.0.get_i32())
    }

    fn uuid(&mut self) -> Option<Uuid> {
        if self.0.remaining() < 16 {
            return None;
        }
        let mut b = [0u8; 16];
        self.0.copy_to_slice(&mut b);
        Some(Uuid::from_bytes(b))
    }

    /// A compact array's length; `None` for a null one.
    fn len(&mut self) -> Option<Option<usize>> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).ok()?;
        if n > self.0.remaining() + 1 {
            return None;
        }
        Some(n.checked_sub(1))
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        match self.len()? {
            None => Some(None),
            Some(n) if n <= self.0.remaining() => String::from_utf8(self.0.split_to(n).to_vec())
                .ok()
                .map(Some),
            Some(_) => None,
        }
    }

    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }

    /// The tagged fields: `(tag, data)`.
    fn tags(&mut self) -> Option<Vec<(u64, Bytes)>> {
        let n = self.uvarint()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = usize::try_from(self.uvarint()?).ok()?;
            if size > self.0.remaining() {
                return None;
            }
            out.push((tag, self.0.split_to(size)));
        }
        Some(out)
    }

    fn parts(&mut self) -> Option<Parts> {
        let mut parts = Parts::new();
        for _ in 0..self.len()?.unwrap_or(0) {
            let topic = self.uuid()?;
            let mut ps = BTreeSet::new();
            for _ in 0..self.len()?.unwrap_or(0) {
                ps.insert(self.i32()?);
            }
            self.tags()?;
            if !ps.is_empty() {
                parts.insert(topic, ps);
            }
        }
        Some(parts)
    }

    /// A value's version, which must be 0.
    fn version0(value: &Bytes) -> Option<Reader> {
        let mut r = Reader(value.clone());
        (r.i16()? == 0).then_some(r)
    }
}

// ---- the records ------------------------------------------------------------

/// A stable hash (FNV-1a) of the subscribed topics as the target assignment
/// saw them: a new coordinator compares it with the topics of its day to
/// tell whether they changed meanwhile (Kafka's `MetadataHash`, KIP-1101,
/// computed Runnel's way).
pub(crate) fn metadata_hash(metadata: &BTreeMap<String, TopicMeta>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, meta) in metadata {
        eat(&(name.len() as u32).to_be_bytes());
        eat(name.as_bytes());
        eat(meta.id.as_bytes());
        eat(&meta.partitions.to_be_bytes());
    }
    h
}

fn group_value(group: &ConsumerGroup) -> Bytes {
    let mut buf = BytesMut::with_capacity(24);
    buf.put_i16(0);
    buf.put_i32(group.epoch);
    // Tagged field 0: MetadataHash (int64).
    put_uvarint(&mut buf, 1);
    put_uvarint(&mut buf, 0);
    put_uvarint(&mut buf, 8);
    buf.put_u64(metadata_hash(&group.metadata));
    buf.freeze()
}

fn target_metadata_value(group: &ConsumerGroup) -> Bytes {
    let mut buf = BytesMut::with_capacity(8);
    buf.put_i16(0);
    buf.put_i32(group.assignment_epoch);
    end(&mut buf);
    buf.freeze()
}

fn member_value(m: &Member) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(0);
    put_compact_nullable(&mut buf, m.instance_id.as_deref());
    put_compact_nullable(&mut buf, m.rack_id.as_deref());
    put_compact_string(&mut buf, &m.client_id);
    put_compact_string(&mut buf, &m.client_host);
    put_len(&mut buf, m.subscribed.len());
    for name in &m.subscribed {
        put_compact_string(&mut buf, name);
    }
    put_compact_nullable(&mut buf, m.regex.as_deref());
    buf.put_i32(m.rebalance_timeout_ms);
    put_compact_nullable(&mut buf, m.assignor.as_deref());
    end(&mut buf);
    buf.freeze()
}

fn target_value(parts: &Parts) -> Bytes {
    let mut buf = BytesMut::with_capacity(32);
    buf.put_i16(0);
    put_parts(&mut buf, parts);
    end(&mut buf);
    buf.freeze()
}

fn current_value(group: &ConsumerGroup, m: &Member) -> Bytes {
    let state = if !m.revoking.is_empty() {
        STATE_UNREVOKED
    } else if m.epoch == group.assignment_epoch
        && group.target.get(&m.id).is_none_or(|t| *t == m.assigned)
    {
        STATE_STABLE
    } else {
        STATE_UNRELEASED
    };
    let mut buf = BytesMut::with_capacity(48);
    buf.put_i16(0);
    if m.away {
        // As Kafka: a static member away is at epoch -2; its epoch is kept
        // as the previous one, for its return.
        buf.put_i32(AWAY_EPOCH);
        buf.put_i32(m.epoch);
    } else {
        buf.put_i32(m.epoch);
        buf.put_i32(m.previous_epoch);
    }
    buf.put_i8(state);
    put_parts(&mut buf, &m.assigned);
    put_parts(&mut buf, &m.revoking);
    end(&mut buf);
    buf.freeze()
}

/// The group's records now, key to value; only those of `member` (which
/// must be a member) and none of the group's own when `member` is given.
pub(crate) fn records(group: &ConsumerGroup, member: Option<&str>) -> StoredRecords {
    let mut out = StoredRecords::new();
    let id = group.id.as_str();
    let empty = Parts::new();
    let mut add_member = |m: &Member| {
        out.insert(key(MEMBER_METADATA, id, Some(&m.id)), member_value(m));
        let target = group.target.get(&m.id).unwrap_or(&empty);
        out.insert(key(TARGET_MEMBER, id, Some(&m.id)), target_value(target));
        out.insert(
            key(CURRENT_ASSIGNMENT, id, Some(&m.id)),
            current_value(group, m),
        );
    };
    match member {
        Some(member) => {
            if let Some(m) = group.members.get(member) {
                add_member(m);
            }
        }
        None => {
            for m in group.members.values() {
                add_member(m);
            }
            out.insert(key(GROUP_METADATA, id, None), group_value(group));
            out.insert(key(TARGET_METADATA, id, None), target_metadata_value(group));
        }
    }
    out
}

/// What to write to bring what is stored of a group to what it is now.
#[derive(Debug)]
pub(crate) struct Changes {
    /// The records (`None` values are tombstones).
    pub(crate) records: Vec<(Bytes, Option<Bytes>)>,
    /// What is stored once they are written.
    after: After,
}

#[derive(Debug)]
enum After {
    /// Everything, at these epochs and members.
    Full(StoredRecords, (i32, i32), BTreeSet<String>),
    /// One member's records on top of what is stored.
    Member(StoredRecords),
}

/// The records to write to bring what is stored of `group` to what it is
/// now. Only the member heard from (`member`) is encoded unless the group's
/// epochs or members changed since the last write. Nothing changes until
/// [`written`] says the records are in the log, so a failed write is tried
/// again with the next change.
pub(crate) fn changes(group: &ConsumerGroup, member: Option<&str>) -> Changes {
    let epochs = (group.epoch, group.assignment_epoch);
    let same_members = group.stored_members.len() == group.members.len()
        && group
            .members
            .keys()
            .all(|m| group.stored_members.contains(m));
    let full = member.is_none() || group.stored_epochs != Some(epochs) || !same_members;
    let now = records(group, if full { None } else { member });
    let mut out = Vec::new();
    for (k, v) in &now {
        if group.stored.get(k) != Some(v) {
            out.push((k.clone(), Some(v.clone())));
        }
    }
    let after = if full {
        for k in group.stored.keys() {
            if !now.contains_key(k) {
                out.push((k.clone(), None));
            }
        }
        After::Full(now, epochs, group.members.keys().cloned().collect())
    } else {
        After::Member(now)
    };
    Changes {
        records: out,
        after,
    }
}

/// The records of `changes` are in the log: they are what is stored now.
pub(crate) fn written(group: &mut ConsumerGroup, changes: Changes) {
    match changes.after {
        After::Full(records, epochs, members) => {
            group.stored = records;
            group.stored_epochs = Some(epochs);
            group.stored_members = members;
        }
        After::Member(records) => group.stored.extend(records),
    }
}

/// Tombstones for every record stored of `group`.
pub(crate) fn tombstones(group: &ConsumerGroup) -> Vec<(Bytes, Option<Bytes>)> {
    group.stored.keys().map(|k| (k.clone(), None)).collect()
}

/// Rebuilds consumer groups from replayed records.
#[derive(Default)]
pub(crate) struct Restorer {
    /// By group: record key to the latest value (`None`: deleted).
    groups: HashMap<String, BTreeMap<Bytes, Option<Bytes>>>,
}

impl Restorer {
    /// Takes one replayed record; false if it is not a consumer group's.
    pub(crate) fn offer(&mut self, key: &Bytes, value: Option<&Bytes>) -> bool {
        let Some((_, group, _)) = decode_key(key) else {
            return false;
        };
        self.groups
            .entry(group)
            .or_default()
            .insert(key.clone(), value.cloned());
        true
    }

    /// The groups with members or an epoch, as a new coordinator has them
    /// at `now_ms`; with the groups whose records did not decode, and the
    /// keys of those records.
    pub(crate) fn finish(
        self,
        config: &ConsumerGroupConfig,
        now_ms: i64,
    ) -> (Vec<ConsumerGroup>, Vec<(String, Vec<Bytes>)>) {
        let mut groups = Vec::new();
        let mut bad = Vec::new();
        for (id, records) in self.groups {
            let live: StoredRecords = records
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            if live.is_empty() {
                continue;
            }
            let keys: Vec<Bytes> = live.keys().cloned().collect();
            match restore(&id, config, live, now_ms) {
                Some(group) => groups.push(group),
                None => bad.push((id, keys)),
            }
        }
        (groups, bad)
    }
}

fn restore(
    id: &str,
    config: &ConsumerGroupConfig,
    records: StoredRecords,
    now_ms: i64,
) -> Option<ConsumerGroup> {
    let mut group = ConsumerGroup::new(id.to_string(), config.clone());
    // Member id to (epoch, previous epoch, assigned, revoking).
    let mut currents: BTreeMap<String, (i32, i32, Parts, Parts)> = BTreeMap::new();
    for (k, v) in &records {
        let (kind, _, member) = decode_key(k)?;
        let mut r = Reader::version0(v)?;
        match (kind, member) {
            (GROUP_METADATA, None) => {
                group.epoch = r.i32()?;
                for (tag, data) in r.tags()? {
                    if tag == 0 && data.len() == 8 {
                        group.restored_hash = Some(u64::from_be_bytes(data[..].try_into().ok()?));
                    }
                }
            }
            (TARGET_METADATA, None) => {
                group.assignment_epoch = r.i32()?;
                r.tags()?;
            }
            (MEMBER_METADATA, Some(member)) => {
                let instance_id = r.nullable_string()?;
                let rack_id = r.nullable_string()?;
                let client_id = r.string()?;
                let client_host = r.string()?;
                let mut subscribed = BTreeSet::new();
                for _ in 0..r.len()?.unwrap_or(0) {
                    subscribed.insert(r.string()?);
                }
                let regex = r.nullable_string()?;
                let rebalance_timeout_ms = r.i32()?;
                let assignor = r.nullable_string()?;
                r.tags()?;
                let pattern = regex.as_deref().and_then(|re| compile(re).ok());
                group.members.insert(
                    member.clone(),
                    Member {
                        id: member,
                        instance_id,
                        rack_id,
                        client_id,
                        client_host,
                        epoch: 0,
                        previous_epoch: 0,
                        subscribed,
                        regex,
                        pattern,
                        assignor,
                        rebalance_timeout_ms,
                        assigned: Parts::new(),
                        revoking: Parts::new(),
                        session_deadline_ms: now_ms + config.session_timeout_ms,
                        revocation_deadline_ms: None,
                        sent: None,
                        away: false,
                    },
                );
            }
            (TARGET_MEMBER, Some(member)) => {
                let parts = r.parts()?;
                r.tags()?;
                group.target.insert(member, parts);
            }
            (CURRENT_ASSIGNMENT, Some(member)) => {
                let epoch = r.i32()?;
                let previous = r.i32()?;
                let _state = r.i8()?;
                let assigned = r.parts()?;
                let revoking = r.parts()?;
                r.tags()?;
                currents.insert(member, (epoch, previous, assigned, revoking));
            }
            _ => return None,
        }
    }
    for (member_id, (epoch, previous, assigned, revoking)) in currents {
        let Some(m) = group.members.get_mut(&member_id) else {
            continue; // its metadata was deleted: it is gone
        };
        if epoch == AWAY_EPOCH {
            m.away = true;
            m.epoch = previous;
            m.previous_epoch = previous;
        } else {
            m.epoch = epoch;
            m.previous_epoch = previous;
        }
        if !revoking.is_empty() {
            m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms.max(1)));
        }
        m.assigned = assigned;
        m.revoking = revoking;
    }
    // Targets of members that are gone do not count.
    let members = &group.members;
    group.target.retain(|m, _| members.contains_key(m));
    group.stored_epochs = Some((group.epoch, group.assignment_epoch));
    group.stored_members = group.members.keys().cloned().collect();
    group.stored = records;
    Some(group)
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::super::{Catalog, Heartbeat};
    use super::*;

    fn catalog(partitions: i32) -> Catalog {
        [(
            "a".to_string(),
            TopicMeta {
                id: Uuid::from_u128(7),
                partitions,
            },
        )]
        .into_iter()
        .collect()
    }

    fn beat(id: &str, epoch: i32, owned: Option<Parts>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: epoch,
            owned,
            ..Heartbeat::default()
        }
    }

    fn join(id: &str, instance: Option<&str>) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            instance_id: instance.map(str::to_string),
            rack_id: Some("zone-a".into()),
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["a".into()]),
            server_assignor: Some("uniform".into()),
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
            ..Heartbeat::default()
        }
    }

    /// The records to write, taken as written.
    fn store(g: &mut ConsumerGroup, member: Option<&str>) -> Vec<(Bytes, Option<Bytes>)> {
        let c = changes(g, member);
        let records = c.records.clone();
        written(g, c);
        records
    }

    /// Replays `writes` (in order) into a new coordinator's groups.
    fn replay(writes: &[(Bytes, Option<Bytes>)], now_ms: i64) -> Vec<ConsumerGroup> {
        let mut r = Restorer::default();
        for (k, v) in writes {
            assert!(r.offer(k, v.as_ref()), "a consumer group record");
        }
        let (groups, bad) = r.finish(&config(), now_ms);
        assert!(bad.is_empty(), "{bad:?}");
        groups
    }

    #[test]
    fn a_group_is_restored_with_its_members_epochs_and_assignments() {
        let cat = catalog(4);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        let a1 = g.heartbeat(join("m1", None), &cat, 0);
        log.extend(store(&mut g, Some("m1")));
        let m1_owned = a1.assignment.expect("m1's assignment");
        let a2 = g.heartbeat(join("m2", Some("i-2")), &cat, 0);
        log.extend(store(&mut g, Some("m2")));
        // m1 is told to give two partitions up and has not yet.
        let b1 = g.heartbeat(beat("m1", a1.member_epoch, Some(m1_owned.clone())), &cat, 1);
        log.extend(store(&mut g, Some("m1")));
        assert_eq!(
            store(&mut g, Some("m1")),
            Vec::new(),
            "nothing new to write"
        );
        let before = g.clone();

        let restored = replay(&log, 10_000);
        assert_eq!(restored.len(), 1);
        let mut r = restored.into_iter().next().expect("one group");
        assert_eq!(r.id(), "g");
        assert_eq!(
            (r.epoch, r.assignment_epoch),
            (before.epoch, before.assignment_epoch)
        );
        assert_eq!(r.target, before.target);
        assert_eq!(r.state(), before.state());
        for (id, m) in &before.members {
            let got = &r.members[id];
            assert_eq!(
                (got.epoch, got.previous_epoch, &got.assigned, &got.revoking),
                (m.epoch, m.previous_epoch, &m.assigned, &m.revoking),
                "member {id}"
            );
            assert_eq!(
                (
                    &got.instance_id,
                    &got.rack_id,
                    &got.client_id,
                    &got.client_host
                ),
                (&m.instance_id, &m.rack_id, &m.client_id, &m.client_host)
            );
            assert_eq!(
                (&got.subscribed, &got.assignor),
                (&m.subscribed, &m.assignor)
            );
            assert_eq!(got.rebalance_timeout_ms, m.rebalance_timeout_ms);
            assert_eq!(got.session_deadline_ms, 10_000 + 45_000);
        }
        assert!(r.members["m1"].revocation_deadline_ms.is_some());

        // The members carry on: m1 revokes at its epoch, m2 takes the rest;
        // the group epoch does not move (the topics are as they were).
        let kept = b1.assignment.expect("m1 told what to keep");
        let c1 = r.heartbeat(beat("m1", b1.member_epoch, Some(kept)), &cat, 10_001);
        assert_eq!(c1.error, None);
        assert_eq!(c1.member_epoch, before.assignment_epoch);
        let c2 = r.heartbeat(
            beat("m2", a2.member_epoch, Some(Parts::new())),
            &cat,
            10_002,
        );
        assert_eq!(c2.error, None);
        assert_eq!(r.epoch, before.epoch, "no new group epoch");
        assert_eq!(r.state(), "Stable");
        assert_eq!(r.check_member_epoch("m2", c2.member_epoch), Ok(()));
    }

    #[test]
    fn changed_topics_are_noticed_after_a_restore() {
        let mut g = ConsumerGroup::new("g".into(), config());
        let a = g.heartbeat(join("m1", None), &catalog(2), 0);
        let log = store(&mut g, Some("m1"));
        let mut r = replay(&log, 1).pop().expect("restored");
        // Same topics: no new epoch. More partitions: a new one.
        let owned = a.assignment.expect("assigned");
        let same = r.heartbeat(
            beat("m1", a.member_epoch, Some(owned.clone())),
            &catalog(2),
            2,
        );
        assert_eq!(same.member_epoch, a.member_epoch);
        let mut r2 = replay(&log, 1).pop().expect("restored");
        let grown = r2.heartbeat(beat("m1", a.member_epoch, Some(owned)), &catalog(3), 2);
        assert_eq!(grown.member_epoch, a.member_epoch + 1);
        assert_eq!(
            grown
                .assignment
                .map(|p| p.values().map(BTreeSet::len).sum::<usize>()),
            Some(3)
        );
    }

    #[test]
    fn leaving_members_and_deleted_groups_leave_tombstones() {
        let cat = catalog(2);
        let mut g = ConsumerGroup::new("g".into(), config());
        let mut log = Vec::new();
        g.heartbeat(join("m1", None), &cat, 0);
        log.extend(store(&mut g, Some("m1")));
        g.heartbeat(join("m2", None), &cat, 0);
        log.extend(store(&mut g, Some("m2")));
        g.heartbeat(beat("m2", -1, None), &cat, 1);
        let left = store(&mut g, Some("m2"));
        let gone: Vec<_> = left.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(gone.len(), 3, "m2's three records go: {left:?}");
        log.extend(left);
        let r = replay(&log, 2).pop().expect("restored");
        assert_eq!(r.members.keys().collect::<Vec<_>>(), vec!["m1"]);
        assert!(!r.target.contains_key("m2"));
        // A static member away keeps its epoch for its return.
        let mut s = ConsumerGroup::new("s".into(), config());
        let a = s.heartbeat(join("x", Some("i-x")), &cat, 0);
        s.heartbeat(beat("x", -2, None), &cat, 1);
        let slog = store(&mut s, Some("x"));
        let mut rs = replay(&slog, 2).pop().expect("restored");
        assert!(rs.members["x"].away);
        let back = rs.heartbeat(join("y", Some("i-x")), &cat, 3);
        assert_eq!(back.error, None);
        assert_eq!(back.member_epoch, a.member_epoch, "back at its epoch");
        assert_eq!(back.assignment, a.assignment);
        // Its new member id replaces the old one in what is stored; until
        // written, the same records are proposed again.
        let unwritten = changes(&rs, Some("y"));
        assert_eq!(changes(&rs, Some("y")).records, unwritten.records);
        let back_log = store(&mut rs, Some("y"));
        let gone_x = back_log
            .iter()
            .filter(|(k, v)| {
                v.is_none() && decode_key(k).is_some_and(|(_, _, m)| m.as_deref() == Some("x"))
            })
            .count();
        assert_eq!(gone_x, 3, "{back_log:?}");
        let mut both = slog.clone();
        both.extend(back_log);
        let again = replay(&both, 4).pop().expect("restored");
        assert_eq!(again.members.keys().collect::<Vec<_>>(), vec!["y"]);
        assert!(!again.members["y"].away);
        // Deleting writes a tombstone for every record.
        let all = tombstones(&g);
        assert_eq!(all.len(), 5, "two group records and m1's three");
        log.extend(all);
        assert!(replay(&log, 3).is_empty());
    }

    #[test]
    fn values_are_kafkas_flexible_version_0() {
        // ConsumerGroupTargetAssignmentMemberValue v0 with topic 7, partitions [0, 3].
        let parts: Parts = [(Uuid::from_u128(7), BTreeSet::from([0, 3]))].into();
        let mut want = vec![0u8, 0, 2];
        want.extend_from_slice(Uuid::from_u128(7).as_bytes());
        want.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0]);
        assert_eq!(&target_value(&parts)[..], &want[..]);
        // Keys: version, group, member in the classic encoding.
        assert_eq!(
            &key(CURRENT_ASSIGNMENT, "g", Some("m"))[..],
            &[0, 8, 0, 1, b'g', 0, 1, b'm']
        );
        assert_eq!(
            decode_key(&key(GROUP_METADATA, "g", None)),
            Some((GROUP_METADATA, "g".into(), None))
        );
        // Offset and classic group keys are not consumer group keys.
        assert_eq!(
            decode_key(&crate::groups::offsets::encode_key("g", "t", 0)),
            None
        );
        assert_eq!(decode_key(&crate::groups::stored::encode_key("g")), None);
        // A truncated or unknown value does not restore a group.
        let mut g = ConsumerGroup::new("g".into(), config());
        g.heartbeat(join("m1", None), &catalog(1), 0);
        let mut log = store(&mut g, Some("m1"));
        let (k, v) = log.pop().expect("a record");
        let v = v.expect("a value");
        let mut r = Restorer::default();
        r.offer(&k, Some(&v.slice(..v.len() - 1)));
        for (k, v) in &log {
            r.offer(k, v.as_ref());
        }
        let (groups, bad) = r.finish(&config(), 0);
        assert!(groups.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, "g");
        assert_eq!(bad[0].1.len(), 5, "every live record of the group");
    }
}
