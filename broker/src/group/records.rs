//! The binary layout of the coordinator's records in `__consumer_offsets`: keys and
//! values of committed offsets and of group metadata, and tombstones (a key with no
//! value) that delete them.
//!
//! Owns: encoding and decoding, with a version on every key and value so the layout
//! can evolve. Must not: decide what is written or when (that is `state`), or do I/O.
//! Decoding never panics and never allocates from an untrusted length: garbage is a
//! `DecodeError`.
//!
//! Layout (big-endian):
//! - key: `u16 key type` (1 offset commit, 2 group metadata), then
//!   - offset commit: `string group, string topic, i32 partition`
//!   - group metadata: `string group`
//! - offset commit value v1: `u16 version, i64 offset, i32 leader epoch (-1 none),
//!   string metadata, i64 commit timestamp, i64 expire timestamp (-1 none)`
//! - group metadata value v1: `u16 version, nstring protocol type, i32 generation,
//!   nstring protocol, nstring leader, i64 state timestamp (-1 none), u32 member count,
//!   members: string member id, nstring instance id, string client id, string client
//!   host, i32 rebalance timeout, i32 session timeout, bytes subscription, bytes
//!   assignment`
//!
//! `string`/`bytes` are a `u32` length and the bytes; `nstring` is an `i32` length
//! where -1 means null. Trailing bytes are an error.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Key type of an offset commit record.
const KEY_OFFSET_COMMIT: u16 = 1;
/// Key type of a group metadata record.
const KEY_GROUP_METADATA: u16 = 2;
/// Current version of the offset commit value.
const OFFSET_VALUE_VERSION: u16 = 1;
/// Current version of the group metadata value.
const GROUP_VALUE_VERSION: u16 = 1;

/// A partition of a topic, as committed offsets are keyed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// The key of a record in `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    /// The committed offset of one partition for one group.
    OffsetCommit {
        /// Group id.
        group: String,
        /// Topic and partition.
        tp: TopicPartition,
    },
    /// The membership and assignment of one group.
    GroupMetadata {
        /// Group id.
        group: String,
    },
}

/// A committed offset, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the record before `offset`, if the client knew it.
    pub leader_epoch: Option<i32>,
    /// Free-form metadata from the client.
    pub metadata: String,
    /// When the coordinator accepted the commit (ms since the epoch).
    pub commit_timestamp_ms: i64,
    /// Explicit expiry asked for by OffsetCommit v2–v4 `retention_time_ms`.
    pub expire_timestamp_ms: Option<i64>,
}

/// A group's generation, as stored after every rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadataValue {
    /// Protocol type of the members (e.g. `consumer`), none for standalone committers.
    pub protocol_type: Option<String>,
    /// Generation id.
    pub generation: i32,
    /// Selected protocol (e.g. `range`), none when the group has no members.
    pub protocol: Option<String>,
    /// Member id of the leader.
    pub leader: Option<String>,
    /// When the group entered its current state (ms since the epoch); offsets of an
    /// empty group expire counting from here.
    pub state_timestamp_ms: Option<i64>,
    /// Members of the generation.
    pub members: Vec<MemberMetadata>,
}

/// One member of a stored generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberMetadata {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id of the member's connection.
    pub client_id: String,
    /// Address of the member's connection.
    pub client_host: String,
    /// Rebalance timeout the member asked for.
    pub rebalance_timeout_ms: i32,
    /// Session timeout the member asked for.
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    /// The assignment the leader gave this member.
    pub assignment: Bytes,
}

/// A decoded record: a value, or a tombstone (`None`) deleting the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A committed offset or its deletion.
    OffsetCommit {
        /// Group id.
        group: String,
        /// Topic and partition.
        tp: TopicPartition,
        /// The offset; `None` deletes it.
        value: Option<OffsetValue>,
    },
    /// Group metadata or its deletion.
    GroupMetadata {
        /// Group id.
        group: String,
        /// The metadata; `None` deletes the group.
        value: Option<GroupMetadataValue>,
    },
}

/// A record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The key names a record type this version does not know (written by a newer
    /// version); loading skips such records.
    #[error("unknown record key type {key_type}")]
    UnknownKeyType {
        /// The key type found.
        key_type: u16,
    },
    /// The value has a version this code cannot read.
    #[error("{what}: unknown value version {version}")]
    UnknownVersion {
        /// Which value.
        what: &'static str,
        /// The version found.
        version: u16,
    },
    /// The bytes end before the field does.
    #[error("{what}: truncated reading {field} at byte {at}")]
    Truncated {
        /// Which key or value.
        what: &'static str,
        /// Which field.
        field: &'static str,
        /// Byte position of the field.
        at: usize,
    },
    /// A string is not UTF-8.
    #[error("{what}: {field} at byte {at} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which key or value.
        what: &'static str,
        /// Which field.
        field: &'static str,
        /// Byte position of the field.
        at: usize,
    },
    /// A length field is negative (other than -1 for null) where it must not be.
    #[error("{what}: invalid length {len} of {field} at byte {at}")]
    InvalidLength {
        /// Which key or value.
        what: &'static str,
        /// Which field.
        field: &'static str,
        /// The length found.
        len: i64,
        /// Byte position of the field.
        at: usize,
    },
    /// Bytes are left after the last field.
    #[error("{what}: {count} unexpected bytes after the last field")]
    TrailingBytes {
        /// Which key or value.
        what: &'static str,
        /// How many bytes are left.
        count: usize,
    },
}

impl RecordKey {
    /// Encodes the key.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::OffsetCommit { group, tp } => {
                buf.put_u16(KEY_OFFSET_COMMIT);
                put_str(&mut buf, group);
                put_str(&mut buf, &tp.topic);
                buf.put_i32(tp.partition);
            }
            RecordKey::GroupMetadata { group } => {
                buf.put_u16(KEY_GROUP_METADATA);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "record key");
        let key_type = r.u16("key type")?;
        let key = match key_type {
            KEY_OFFSET_COMMIT => {
                r.what = "offset commit key";
                let group = r.string("group")?;
                let topic = r.string("topic")?;
                let partition = r.i32("partition")?;
                RecordKey::OffsetCommit {
                    group,
                    tp: TopicPartition { topic, partition },
                }
            }
            KEY_GROUP_METADATA => {
                r.what = "group metadata key";
                RecordKey::GroupMetadata {
                    group: r.string("group")?,
                }
            }
            key_type => return Err(DecodeError::UnknownKeyType { key_type }),
        };
        r.finish()?;
        Ok(key)
    }
}

impl OffsetValue {
    /// Encodes the value in the current version.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(34 + self.metadata.len());
        buf.put_u16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch.unwrap_or(-1));
        put_str(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp_ms);
        buf.put_i64(self.expire_timestamp_ms.unwrap_or(-1));
        buf.freeze()
    }

    /// Decodes a value of any known version.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "offset commit value");
        let version = r.u16("version")?;
        if version != OFFSET_VALUE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: r.what,
                version,
            });
        }
        let offset = r.i64("offset")?;
        let leader_epoch = r.i32("leader epoch")?;
        let metadata = r.string("metadata")?;
        let commit_timestamp_ms = r.i64("commit timestamp")?;
        let expire_timestamp_ms = r.i64("expire timestamp")?;
        r.finish()?;
        Ok(Self {
            offset,
            leader_epoch: (leader_epoch >= 0).then_some(leader_epoch),
            metadata,
            commit_timestamp_ms,
            expire_timestamp_ms: (expire_timestamp_ms >= 0).then_some(expire_timestamp_ms),
        })
    }
}

impl GroupMetadataValue {
    /// Encodes the value in the current version.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_u16(GROUP_VALUE_VERSION);
        put_nstr(&mut buf, self.protocol_type.as_deref());
        buf.put_i32(self.generation);
        put_nstr(&mut buf, self.protocol.as_deref());
        put_nstr(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp_ms.unwrap_or(-1));
        buf.put_u32(len_u32(self.members.len()));
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_nstr(&mut buf, m.instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Decodes a value of any known version.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "group metadata value");
        let version = r.u16("version")?;
        if version != GROUP_VALUE_VERSION {
            return Err(DecodeError::UnknownVersion {
                what: r.what,
                version,
            });
        }
        let protocol_type = r.nstring("protocol type")?;
        let generation = r.i32("generation")?;
        let protocol = r.nstring("protocol")?;
        let leader = r.nstring("leader")?;
        let state_timestamp_ms = r.i64("state timestamp")?;
        let count = r.u32("member count")?;
        // No preallocation from the untrusted count: every member consumes bytes, so a
        // bogus count ends in `Truncated` after at most `len` iterations.
        let mut members = Vec::new();
        for _ in 0..count {
            members.push(MemberMetadata {
                member_id: r.string("member id")?,
                instance_id: r.nstring("instance id")?,
                client_id: r.string("client id")?,
                client_host: r.string("client host")?,
                rebalance_timeout_ms: r.i32("rebalance timeout")?,
                session_timeout_ms: r.i32("session timeout")?,
                subscription: r.bytes("subscription")?,
                assignment: r.bytes("assignment")?,
            });
        }
        r.finish()?;
        Ok(Self {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp_ms: (state_timestamp_ms >= 0).then_some(state_timestamp_ms),
            members,
        })
    }
}

/// The record (key, value) storing `value` as the committed offset of `tp`, or its
/// tombstone when `value` is `None`.
pub fn offset_record(
    group: &str,
    tp: &TopicPartition,
    value: Option<&OffsetValue>,
) -> (Bytes, Option<Bytes>) {
    let key = RecordKey::OffsetCommit {
        group: group.to_owned(),
        tp: tp.clone(),
    };
    (key.encode(), value.map(OffsetValue::encode))
}

/// The record (key, value) storing a group's metadata, or its tombstone when `value`
/// is `None`.
pub fn group_record(group: &str, value: Option<&GroupMetadataValue>) -> (Bytes, Option<Bytes>) {
    let key = RecordKey::GroupMetadata {
        group: group.to_owned(),
    };
    (key.encode(), value.map(GroupMetadataValue::encode))
}

/// Decodes a stored record.
pub fn decode_record(key: &Bytes, value: Option<&Bytes>) -> Result<Record, DecodeError> {
    Ok(match RecordKey::decode(key)? {
        RecordKey::OffsetCommit { group, tp } => Record::OffsetCommit {
            group,
            tp,
            value: value.map(OffsetValue::decode).transpose()?,
        },
        RecordKey::GroupMetadata { group } => Record::GroupMetadata {
            group,
            value: value.map(GroupMetadataValue::decode).transpose()?,
        },
    })
}

fn len_u32(len: usize) -> u32 {
    // Keys and values are far below 4 GiB (requests are bounded by the frame size);
    // saturating keeps encoding total, and decoding such a value fails cleanly.
    u32::try_from(len).unwrap_or(u32::MAX)
}

fn put_str(buf: &mut BytesMut, s: &str) {
    put_bytes(buf, s.as_bytes());
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(len_u32(b.len()));
    buf.put_slice(b);
}

fn put_nstr(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        None => buf.put_i32(-1),
        Some(s) => {
            buf.put_i32(i32::try_from(s.len()).unwrap_or(i32::MAX));
            buf.put_slice(s.as_bytes());
        }
    }
}

/// A bounds-checked cursor over one encoded key or value.
struct Reader<'a> {
    bytes: &'a Bytes,
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a Bytes, what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let bytes: &'a [u8] = self.bytes;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= bytes.len())
            .ok_or(DecodeError::Truncated {
                what: self.what,
                field,
                at: self.pos,
            })?;
        let slice = &bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u32(field)? as usize;
        let start = self.pos;
        self.take(len, field)?;
        Ok(self.bytes.slice(start..self.pos))
    }

    fn utf8(&self, raw: &[u8], field: &'static str, at: usize) -> Result<String, DecodeError> {
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 {
                what: self.what,
                field,
                at,
            })
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let at = self.pos;
        let len = self.u32(field)? as usize;
        let raw = self.take(len, field)?;
        self.utf8(raw, field, at)
    }

    fn nstring(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        let at = self.pos;
        let len = self.i32(field)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| DecodeError::InvalidLength {
            what: self.what,
            field,
            len: i64::from(len),
            at,
        })?;
        let raw = self.take(len, field)?;
        self.utf8(raw, field, at).map(Some)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.pos {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                what: self.what,
                count,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-zA-Z0-9._\\-]{1,24}", ".{0,12}"]
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    fn arb_tp() -> impl Strategy<Value = TopicPartition> {
        (arb_string(), any::<i32>())
            .prop_map(|(topic, partition)| TopicPartition { topic, partition })
    }

    fn arb_offset_value() -> impl Strategy<Value = OffsetValue> {
        (
            any::<i64>(),
            proptest::option::of(0..i32::MAX),
            arb_string(),
            any::<i64>(),
            proptest::option::of(0..i64::MAX),
        )
            .prop_map(
                |(offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms)| {
                    OffsetValue {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_timestamp_ms,
                        expire_timestamp_ms,
                    }
                },
            )
    }

    fn arb_member() -> impl Strategy<Value = MemberMetadata> {
        (
            arb_string(),
            proptest::option::of(arb_string()),
            arb_string(),
            arb_string(),
            any::<i32>(),
            any::<i32>(),
            arb_bytes(),
            arb_bytes(),
        )
            .prop_map(
                |(member_id, instance_id, client_id, client_host, rebalance, session, sub, asg)| {
                    MemberMetadata {
                        member_id,
                        instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: rebalance,
                        session_timeout_ms: session,
                        subscription: sub,
                        assignment: asg,
                    }
                },
            )
    }

    fn arb_group_value() -> impl Strategy<Value = GroupMetadataValue> {
        (
            proptest::option::of(arb_string()),
            any::<i32>(),
            proptest::option::of(arb_string()),
            proptest::option::of(arb_string()),
            proptest::option::of(0..i64::MAX),
            proptest::collection::vec(arb_member(), 0..5),
        )
            .prop_map(
                |(protocol_type, generation, protocol, leader, state_timestamp_ms, members)| {
                    GroupMetadataValue {
                        protocol_type,
                        generation,
                        protocol,
                        leader,
                        state_timestamp_ms,
                        members,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn offset_record_round_trips(group in arb_string(), tp in arb_tp(), value in arb_offset_value()) {
            let (key, val) = offset_record(&group, &tp, Some(&value));
            let decoded = decode_record(&key, val.as_ref()).expect("decodes");
            prop_assert_eq!(decoded, Record::OffsetCommit { group: group.clone(), tp: tp.clone(), value: Some(value) });
            let (key, val) = offset_record(&group, &tp, None);
            prop_assert_eq!(val, None);
            prop_assert_eq!(decode_record(&key, None).expect("decodes"), Record::OffsetCommit { group, tp, value: None });
        }

        #[test]
        fn group_record_round_trips(group in arb_string(), value in arb_group_value()) {
            let (key, val) = group_record(&group, Some(&value));
            let decoded = decode_record(&key, val.as_ref()).expect("decodes");
            prop_assert_eq!(decoded, Record::GroupMetadata { group: group.clone(), value: Some(value) });
            let (key, val) = group_record(&group, None);
            prop_assert_eq!(val, None);
            prop_assert_eq!(decode_record(&key, None).expect("decodes"), Record::GroupMetadata { group, value: None });
        }

        #[test]
        fn garbage_never_panics(key in proptest::collection::vec(any::<u8>(), 0..80),
                                value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200))) {
            let key = Bytes::from(key);
            let value = value.map(Bytes::from);
            let _ = decode_record(&key, value.as_ref());
            let _ = OffsetValue::decode(&key);
            let _ = GroupMetadataValue::decode(&key);
            if let Some(v) = &value {
                let _ = OffsetValue::decode(v);
                let _ = GroupMetadataValue::decode(v);
            }
        }

        #[test]
        fn every_truncation_and_extension_is_an_error(group in arb_string(), value in arb_group_value(),
                                                      offset in arb_offset_value(), tp in arb_tp()) {
            let (gkey, gval) = group_record(&group, Some(&value));
            let (okey, oval) = offset_record(&group, &tp, Some(&offset));
            type DecodesOk = fn(&Bytes) -> bool;
            let decodes: [(Bytes, DecodesOk); 4] = [
                (gkey, |b| RecordKey::decode(b).is_ok()),
                (gval.expect("a value"), |b| GroupMetadataValue::decode(b).is_ok()),
                (okey, |b| RecordKey::decode(b).is_ok()),
                (oval.expect("a value"), |b| OffsetValue::decode(b).is_ok()),
            ];
            for (whole, decodes_ok) in decodes {
                prop_assert!(decodes_ok(&whole));
                for cut in 0..whole.len() {
                    prop_assert!(!decodes_ok(&whole.slice(..cut)), "prefix of {} bytes decoded", cut);
                }
                let mut longer = BytesMut::from(&whole[..]);
                longer.put_u8(0);
                prop_assert!(!decodes_ok(&longer.freeze()));
            }
        }
    }

    #[test]
    fn truncated_value_names_the_field() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: Some(3),
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: None,
        }
        .encode();
        let err = OffsetValue::decode(&value.slice(..value.len() - 1)).expect_err("must fail");
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "offset commit value",
                field: "expire timestamp",
                at: value.len() - 8,
            }
        );
    }

    #[test]
    fn unknown_key_type_and_version_are_distinct_errors() {
        let key = Bytes::from_static(&[0, 9, 1, 2]);
        assert_eq!(
            RecordKey::decode(&key).expect_err("must fail"),
            DecodeError::UnknownKeyType { key_type: 9 }
        );
        let value = Bytes::from_static(&[0, 7]);
        assert_eq!(
            GroupMetadataValue::decode(&value).expect_err("must fail"),
            DecodeError::UnknownVersion {
                what: "group metadata value",
                version: 7
            }
        );
    }

    #[test]
    fn huge_member_count_fails_without_allocating() {
        let mut buf = BytesMut::new();
        buf.put_u16(GROUP_VALUE_VERSION);
        buf.put_i32(-1);
        buf.put_i32(5);
        buf.put_i32(-1);
        buf.put_i32(-1);
        buf.put_i64(-1);
        buf.put_u32(u32::MAX);
        let err = GroupMetadataValue::decode(&buf.freeze()).expect_err("must fail");
        assert!(
            matches!(
                err,
                DecodeError::Truncated {
                    field: "member id",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_and_negative_length_are_rejected() {
        let mut buf = BytesMut::new();
        buf.put_u16(KEY_GROUP_METADATA);
        buf.put_u32(2);
        buf.put_slice(&[0xff, 0xfe]);
        assert!(matches!(
            RecordKey::decode(&buf.freeze()),
            Err(DecodeError::InvalidUtf8 { field: "group", .. })
        ));
        let mut buf = BytesMut::new();
        buf.put_u16(GROUP_VALUE_VERSION);
        buf.put_i32(-2);
        assert!(matches!(
            GroupMetadataValue::decode(&buf.freeze()),
            Err(DecodeError::InvalidLength { len: -2, .. })
        ));
    }
}
