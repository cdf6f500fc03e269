//! A classic group's membership as `__consumer_offsets` stores it: Kafka's
//! group metadata record, key v2 `(group)` and value v3 `(protocol type,
//! generation, protocol, leader, state timestamp, members)`, each member
//! with its ids, client, timeouts, subscription and assignment. A null value
//! deletes the group. Kafka tooling reading the topic decodes these records,
//! and a new coordinator rebuilds the group from the latest one, so its
//! members carry on without a rebalance.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::offsets::{get_string, put_string};

/// The key version of a group metadata record (offset commits are 0 and 1).
const KEY_VERSION_GROUP: i16 = 2;
/// The value version written: v3 has static members' instance ids (v4, the
/// first flexible one, adds nothing a classic group needs).
const VALUE_VERSION: i16 = 3;

/// A classic group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredGroup {
    /// The protocol type (`consumer` for consumers); empty if none.
    pub(crate) protocol_type: String,
    /// The generation.
    pub(crate) generation_id: i32,
    /// The generation's protocol; `None` for an empty group.
    pub(crate) protocol_name: Option<String>,
    /// The leader's member id; `None` for an empty group.
    pub(crate) leader: Option<String>,
    /// When the group entered its state (ms).
    pub(crate) state_timestamp_ms: i64,
    /// The members, in join order.
    pub(crate) members: Vec<StoredMember>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMember {
    /// The member id.
    pub(crate) member_id: String,
    /// Its `group.instance.id`, if static.
    pub(crate) group_instance_id: Option<String>,
    /// The client id it joined with.
    pub(crate) client_id: String,
    /// The address it joined from.
    pub(crate) client_host: String,
    /// Its rebalance timeout.
    pub(crate) rebalance_timeout_ms: i32,
    /// Its session timeout.
    pub(crate) session_timeout_ms: i32,
    /// Its metadata for the generation's protocol.
    pub(crate) subscription: Bytes,
    /// Its assignment.
    pub(crate) assignment: Bytes,
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// Reads a nullable `STRING`.
fn get_nullable_string(buf: &mut Bytes) -> Option<Option<String>> {
    if buf.remaining() < 2 {
        return None;
    }
    if i16::from_be_bytes([buf[0], buf[1]]) < 0 {
        buf.advance(2);
        return Some(None);
    }
    get_string(buf).map(Some)
}

/// Reads `BYTES` (a null reads as empty).
fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 4 {
        return None;
    }
    let len = buf.get_i32();
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

fn get_i32(buf: &mut Bytes) -> Option<i32> {
    (buf.remaining() >= 4).then(|| buf.get_i32())
}

/// The record key of a group's metadata.
pub(crate) fn encode_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(KEY_VERSION_GROUP);
    put_string(&mut buf, group);
    buf.freeze()
}

/// The group id of a group metadata key; `None` for other keys.
pub(crate) fn decode_key(key: &Bytes) -> Option<String> {
    let mut buf = key.clone();
    if buf.remaining() < 2 || buf.get_i16() != KEY_VERSION_GROUP {
        return None;
    }
    get_string(&mut buf)
}

/// The record value of a group's metadata.
pub(crate) fn encode_value(g: &StoredGroup) -> Bytes {
    let mut buf = BytesMut::with_capacity(64 + g.members.len() * 128);
    buf.put_i16(VALUE_VERSION);
    put_string(&mut buf, &g.protocol_type);
    buf.put_i32(g.generation_id);
    put_nullable_string(&mut buf, g.protocol_name.as_deref());
    put_nullable_string(&mut buf, g.leader.as_deref());
    buf.put_i64(g.state_timestamp_ms);
    buf.put_i32(g.members.len() as i32);
    for m in &g.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.group_instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Decodes a group metadata value of versions 0-3; `None` if it does not
/// parse (or is of a flexible version, which Runnel never writes).
pub(crate) fn decode_value(value: &Bytes) -> Option<StoredGroup> {
    let mut buf = value.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if !(0..=VALUE_VERSION).contains(&version) {
        return None;
    }
    let protocol_type = get_string(&mut buf)?;
    let generation_id = get_i32(&mut buf)?;
    let protocol_name = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let state_timestamp_ms = if version >= 2 {
        (buf.remaining() >= 8).then(|| buf.get_i64())?
    } else {
        -1
    };
    let count = get_i32(&mut buf)?.max(0) as usize;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let member_id = get_string(&mut buf)?;
        let group_instance_id = if version >= 3 {
            get_nullable_string(&mut buf)?
        } else {
            None
        };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut buf)? } else { -1 };
        let session_timeout_ms = get_i32(&mut buf)?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Some(StoredGroup {
        protocol_type,
        generation_id,
        protocol_name,
        leader,
        state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> StoredGroup {
        StoredGroup {
            protocol_type: "consumer".into(),
            generation_id: 7,
            protocol_name: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 1_700_000_000_000,
            members: vec![
                StoredMember {
                    member_id: "m-1".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"\x00\x01sub"),
                    assignment: Bytes::from_static(b"\x00\x01asg"),
                },
                StoredMember {
                    member_id: "m-2".into(),
                    group_instance_id: Some("i-2".into()),
                    client_id: "c2".into(),
                    client_host: "/10.0.0.2".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::new(),
                },
            ],
        }
    }

    #[test]
    fn group_records_round_trip() {
        let g = group();
        assert_eq!(decode_value(&encode_value(&g)), Some(g));
        let empty = StoredGroup {
            protocol_type: "consumer".into(),
            generation_id: 8,
            protocol_name: None,
            leader: None,
            state_timestamp_ms: 5,
            members: Vec::new(),
        };
        assert_eq!(decode_value(&encode_value(&empty)), Some(empty));
        assert_eq!(decode_key(&encode_key("my-group")), Some("my-group".into()));
    }

    #[test]
    fn group_keys_are_told_apart_from_offset_keys() {
        let offset_key = super::super::offsets::encode_key("g", "t", 0);
        assert_eq!(decode_key(&offset_key), None);
        // An offset commit key is not a group key, and vice versa.
        let mut table = super::super::offsets::OffsetTable::default();
        table.apply_record(&encode_key("g"), Some(&encode_value(&group())));
        assert!(table.group_ids().is_empty());
    }

    #[test]
    fn the_layout_is_kafkas_v3() {
        // Kafka's GroupMetadataValue v3, field by field, for a one-member group.
        let mut want = BytesMut::new();
        want.put_i16(3);
        want.put_i16(8);
        want.put_slice(b"consumer");
        want.put_i32(2);
        want.put_i16(5);
        want.put_slice(b"range");
        want.put_i16(1);
        want.put_slice(b"m");
        want.put_i64(9);
        want.put_i32(1);
        want.put_i16(1);
        want.put_slice(b"m");
        want.put_i16(-1); // no group.instance.id
        want.put_i16(1);
        want.put_slice(b"c");
        want.put_i16(2);
        want.put_slice(b"/h");
        want.put_i32(100);
        want.put_i32(50);
        want.put_i32(1);
        want.put_slice(b"s");
        want.put_i32(1);
        want.put_slice(b"a");
        let g = StoredGroup {
            protocol_type: "consumer".into(),
            generation_id: 2,
            protocol_name: Some("range".into()),
            leader: Some("m".into()),
            state_timestamp_ms: 9,
            members: vec![StoredMember {
                member_id: "m".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 100,
                session_timeout_ms: 50,
                subscription: Bytes::from_static(b"s"),
                assignment: Bytes::from_static(b"a"),
            }],
        };
        assert_eq!(encode_value(&g), want.freeze());
        let mut key = BytesMut::new();
        key.put_i16(2);
        key.put_i16(1);
        key.put_slice(b"g");
        assert_eq!(encode_key("g"), key.freeze());
    }

    #[test]
    fn older_versions_and_garbage_decode_or_are_refused() {
        // v0: no rebalance timeout (it is the session timeout), no timestamp.
        let mut v0 = BytesMut::new();
        v0.put_i16(0);
        v0.put_i16(8);
        v0.put_slice(b"consumer");
        v0.put_i32(1);
        v0.put_i16(-1);
        v0.put_i16(-1);
        v0.put_i32(1);
        v0.put_i16(1);
        v0.put_slice(b"m");
        v0.put_i16(1);
        v0.put_slice(b"c");
        v0.put_i16(1);
        v0.put_slice(b"h");
        v0.put_i32(30);
        v0.put_i32(0);
        v0.put_i32(0);
        let got = decode_value(&v0.freeze()).expect("v0 decodes");
        assert_eq!(got.state_timestamp_ms, -1);
        assert_eq!(got.members[0].rebalance_timeout_ms, 30);
        assert_eq!(got.protocol_name, None);
        let full = encode_value(&group());
        for cut in [0, 1, 5, full.len() / 2, full.len() - 1] {
            assert_eq!(decode_value(&full.slice(..cut)), None, "cut at {cut}");
        }
        let mut v4 = BytesMut::from(&full[..]);
        v4[1] = 4;
        assert_eq!(decode_value(&v4.freeze()), None);
    }
}
