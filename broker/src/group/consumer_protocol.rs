//! What the coordinator reads out of the consumer protocol's opaque member metadata:
//! the subscribed topics, which decide whether offsets may be deleted or expire.
//!
//! Pure. Parses only the version-0 prefix (`i16 version, [string topics]`) that every
//! version of `ConsumerProtocolSubscription` starts with, like Kafka, with bounds
//! checks instead of trusting client-supplied counts.

use std::collections::BTreeSet;

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics of a consumer subscription, or `None` if the bytes are not one.
pub fn subscribed_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let mut rest = metadata;
    let version = take_i16(&mut rest)?;
    if version < 0 {
        return None;
    }
    let count = take_i32(&mut rest)?;
    // Each topic takes at least its two length bytes: a larger count is garbage.
    let count = usize::try_from(count).ok()?;
    if count > rest.len() / 2 {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        let len = usize::try_from(take_i16(&mut rest)?).ok()?;
        if rest.len() < len {
            return None;
        }
        let (name, tail) = rest.split_at(len);
        topics.insert(std::str::from_utf8(name).ok()?.to_owned());
        rest = tail;
    }
    Some(topics)
}

fn take_i16(rest: &mut &[u8]) -> Option<i16> {
    let (head, tail) = rest.split_first_chunk::<2>()?;
    *rest = tail;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(rest: &mut &[u8]) -> Option<i32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(i32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16, topics: &[&'static str]) -> Vec<u8> {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_static_str(t))
                    .collect(),
            )
            .with_user_data(Some(bytes::Bytes::from_static(b"ud")));
        let mut buf = BytesMut::new();
        buf.put_i16(version);
        sub.encode(&mut buf, version).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn reads_topics_of_every_subscription_version() {
        for version in 0..=3 {
            let topics = subscribed_topics(&encoded(version, &["b", "a", "orders"]))
                .expect("a subscription");
            assert_eq!(
                topics.into_iter().collect::<Vec<_>>(),
                vec!["a", "b", "orders"],
                "version {version}"
            );
        }
    }

    #[test]
    fn garbage_is_not_a_subscription() {
        let cases: &[&[u8]] = &[
            b"",
            &[0],
            &[0, 0, 0, 0, 0],
            &[0xff, 0xff, 0, 0, 0, 0],
            &[0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'],
            &[0, 0, 0, 0, 0, 1, 0, 5, b'a'],
            &[0, 0, 0, 0, 0, 1, 0xff, 0xff],
            &[0, 0, 0, 0, 0, 1, 0, 2, 0xff, 0xfe],
        ];
        for case in cases {
            assert_eq!(subscribed_topics(case), None, "{case:?}");
        }
        assert_eq!(
            subscribed_topics(&[0, 0, 0, 0, 0, 0]),
            Some(BTreeSet::new())
        );
    }
}
