//! Committed offsets and their records in `__consumer_offsets`.
//!
//! Records use Kafka's own formats, so Kafka tooling reading the topic sees
//! what it expects: key v1 `(group, topic, partition)`, value v3 `(offset,
//! leader epoch, metadata, commit timestamp)`; a null value deletes.

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The internal topic holding committed offsets.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

const KEY_VERSION_OFFSET_COMMIT: i16 = 1;
const VALUE_VERSION: i16 = 3;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The next offset to consume.
    pub(crate) offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub(crate) leader_epoch: i32,
    /// The client's metadata string.
    pub(crate) metadata: String,
    /// When it was committed (ms).
    pub(crate) commit_timestamp: i64,
}

/// Committed offsets by group, then topic and partition.
#[derive(Debug, Default)]
pub(crate) struct OffsetTable {
    groups: HashMap<String, BTreeMap<(String, i32), Committed>>,
}

impl OffsetTable {
    /// Records a commit.
    pub(crate) fn put(&mut self, group: &str, topic: &str, partition: i32, committed: Committed) {
        self.groups
            .entry(group.to_string())
            .or_default()
            .insert((topic.to_string(), partition), committed);
    }

    /// Forgets a commit.
    pub(crate) fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        if let Some(offsets) = self.groups.get_mut(group) {
            offsets.remove(&(topic.to_string(), partition));
            if offsets.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    /// One commit.
    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.groups.get(group)?.get(&(topic.to_string(), partition))
    }

    /// All commits of a group.
    pub(crate) fn group(&self, group: &str) -> Vec<(String, i32, Committed)> {
        self.groups
            .get(group)
            .map(|o| {
                o.iter()
                    .map(|((t, p), c)| (t.clone(), *p, c.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Groups that have commits.
    pub(crate) fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Applies one record read back from `__consumer_offsets`.
    pub(crate) fn apply_record(&mut self, key: &Bytes, value: Option<&Bytes>) {
        let Some((group, topic, partition)) = decode_key(key) else {
            return; // group metadata and other record types are not offsets
        };
        match value.and_then(decode_value) {
            Some(committed) => self.put(&group, &topic, partition, committed),
            None => self.remove(&group, &topic, partition),
        }
    }
}

/// A Kafka `STRING` (i16 length, bytes), as the internal topics' records use.
pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

/// Reads a Kafka `STRING`; a null (negative length) reads as empty.
pub(crate) fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 {
        return Some(String::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// The record key of an offset commit.
pub(crate) fn encode_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + group.len() + topic.len());
    buf.put_i16(KEY_VERSION_OFFSET_COMMIT);
    put_string(&mut buf, group);
    put_string(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

/// The record value of an offset commit.
pub(crate) fn encode_value(c: &Committed) -> Bytes {
    let mut buf = BytesMut::with_capacity(26 + c.metadata.len());
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(c.offset);
    buf.put_i32(c.leader_epoch);
    put_string(&mut buf, &c.metadata);
    buf.put_i64(c.commit_timestamp);
    buf.freeze()
}

/// An offset commit record: (group, topic, partition, what was committed).
pub(crate) fn decode_commit(
    key: &Bytes,
    value: Option<&Bytes>,
) -> Option<(String, String, i32, Committed)> {
    let (group, topic, partition) = decode_key(key)?;
    let committed = decode_value(value?)?;
    Some((group, topic, partition, committed))
}

fn decode_key(key: &Bytes) -> Option<(String, String, i32)> {
    let mut buf = key.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version != 0 && version != 1 {
        return None;
    }
    let group = get_string(&mut buf)?;
    let topic = get_string(&mut buf)?;
    if buf.remaining() < 4 {
        return None;
    }
    Some((group, topic, buf.get_i32()))
}

fn decode_value(value: &Bytes) -> Option<Committed> {
    let mut buf = value.clone();
    if buf.remaining() < 10 {
        return None;
    }
    let version = buf.get_i16();
    let offset = buf.get_i64();
    let leader_epoch = if version >= 3 && buf.remaining() >= 4 {
        buf.get_i32()
    } else {
        -1
    };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp = if buf.remaining() >= 8 {
        buf.get_i64()
    } else {
        0
    };
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

/// The `__consumer_offsets` partition of a group: Java's `abs(groupId.hashCode()) % count`.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let c = Committed {
            offset: 42,
            leader_epoch: 3,
            metadata: "m".into(),
            commit_timestamp: 1_700_000_000_000,
        };
        let mut table = OffsetTable::default();
        table.apply_record(&encode_key("g", "t", 5), Some(&encode_value(&c)));
        assert_eq!(table.get("g", "t", 5), Some(&c));
        table.apply_record(&encode_key("g", "t", 5), None);
        assert_eq!(table.get("g", "t", 5), None);
        assert!(table.group_ids().is_empty());
    }

    #[test]
    fn group_partition_matches_java_string_hash() {
        // "my-group".hashCode() == -1_906_497_762 in Java; abs % 50 == 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }
}
