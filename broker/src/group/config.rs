//! Settings of the group coordinator, named after Kafka's broker configs.

/// Group coordinator settings. Field docs give the Kafka config name and its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms` (3000): how long the first rebalance of an
    /// empty group waits for more members, extended by this much (up to the rebalance
    /// timeout) each time another member joins.
    pub initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms` (6000): smallest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000): largest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.max.size` (unbounded): most members one group may have.
    pub max_size: usize,
    /// `offsets.topic.num.partitions` (50): partitions of `__consumer_offsets`; a group
    /// lives in partition `abs(hashCode(group id)) % offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes` (10080, i.e. 7 days), in milliseconds here: how long
    /// the offsets of a group without members (or of a standalone committer) are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms` (600000): how often expired offsets are removed.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes` (4096): longest metadata string of a committed offset.
    pub offset_metadata_max_bytes: usize,
    /// Kafka's `group.classic.new.member.join.timeout.ms` (300000): how long a newly
    /// added member may wait in a rebalance before it is dropped (its client may have
    /// disconnected while the JoinGroup was parked).
    pub new_member_join_timeout_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: usize::MAX,
            offsets_topic_num_partitions: 50,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            new_member_join_timeout_ms: 300_000,
        }
    }
}

impl GroupConfig {
    /// The settings from the broker's configuration; keys it does not define keep
    /// their defaults.
    pub fn from_broker(broker: &crate::config::BrokerConfig) -> Self {
        let d = Self::default();
        let int = |key: &str, default: i64| {
            broker
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(default)
        };
        let i32_of = |key: &str, default: i32| {
            i32::try_from(int(key, i64::from(default))).unwrap_or(default)
        };
        let usize_of = |key: &str, default: usize| {
            broker
                .get(key)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(default)
        };
        Self {
            initial_rebalance_delay_ms: i32_of(
                "group.initial.rebalance.delay.ms",
                d.initial_rebalance_delay_ms,
            ),
            min_session_timeout_ms: i32_of(
                "group.min.session.timeout.ms",
                d.min_session_timeout_ms,
            ),
            max_session_timeout_ms: i32_of(
                "group.max.session.timeout.ms",
                d.max_session_timeout_ms,
            ),
            max_size: usize_of("group.max.size", d.max_size),
            offsets_topic_num_partitions: i32_of(
                "offsets.topic.num.partitions",
                d.offsets_topic_num_partitions,
            )
            .max(1),
            offsets_retention_ms: int("offsets.retention.minutes", d.offsets_retention_ms / 60_000)
                .saturating_mul(60_000),
            offsets_retention_check_interval_ms: int(
                "offsets.retention.check.interval.ms",
                d.offsets_retention_check_interval_ms,
            ),
            offset_metadata_max_bytes: usize_of(
                "offset.metadata.max.bytes",
                d.offset_metadata_max_bytes,
            ),
            new_member_join_timeout_ms: i32_of(
                "group.classic.new.member.join.timeout.ms",
                d.new_member_join_timeout_ms,
            ),
        }
    }

    /// The `__consumer_offsets` partition that holds `group_id`, as Kafka computes it
    /// (`Utils.abs(groupId.hashCode) % partitions`), so clients' and tools' expectations
    /// of where a group lives carry over.
    pub fn partition_for(&self, group_id: &str) -> i32 {
        let partitions = self.offsets_topic_num_partitions.max(1);
        // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
        let hash = java_string_hash(group_id);
        let abs = if hash == i32::MIN { 0 } else { hash.abs() };
        abs % partitions
    }
}

/// Java's `String.hashCode`: `s[0]*31^(n-1) + … + s[n-1]` over UTF-16 code units,
/// with wrapping 32-bit arithmetic.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values computed with Java's "...".hashCode().
        let cases: &[(&str, i32)] = &[
            ("", 0),
            ("a", 97),
            ("abc", 96354),
            ("hello", 99_162_322),
            // Overflowing, negative hash.
            ("my-group", -1_906_497_762),
            ("console-consumer-12345", 158_455_506),
            // A character outside the BMP is two UTF-16 units.
            ("g\u{1F600}", 1_871_882),
            ("polygenelubricants", i32::MIN),
        ];
        for (s, want) in cases {
            assert_eq!(java_string_hash(s), *want, "hash of {s:?}");
        }
    }

    #[test]
    fn partition_is_abs_hash_mod_partitions() {
        let cfg = GroupConfig::default();
        // Expected partitions computed with Java: Utils.abs(id.hashCode()) % 50.
        assert_eq!(cfg.partition_for("abc"), 4);
        assert_eq!(cfg.partition_for("my-group"), 12);
        assert_eq!(cfg.partition_for("g\u{1F600}"), 32);
        // hashCode == Integer.MIN_VALUE: Kafka's Utils.abs gives 0, not an overflow.
        assert_eq!(cfg.partition_for("polygenelubricants"), 0);
        let one = GroupConfig {
            offsets_topic_num_partitions: 1,
            ..GroupConfig::default()
        };
        assert_eq!(one.partition_for("anything"), 0);
    }

    #[test]
    fn reads_kafka_names_from_broker_config() {
        let broker = crate::config::BrokerConfig::from_pairs([
            ("group.initial.rebalance.delay.ms", "0"),
            ("group.min.session.timeout.ms", "100"),
            ("offsets.topic.num.partitions", "3"),
            ("offsets.retention.minutes", "2"),
        ])
        .expect("valid broker config");
        let cfg = GroupConfig::from_broker(&broker);
        assert_eq!(cfg.initial_rebalance_delay_ms, 0);
        assert_eq!(cfg.min_session_timeout_ms, 100);
        assert_eq!(cfg.max_session_timeout_ms, 1_800_000);
        assert_eq!(cfg.offsets_topic_num_partitions, 3);
        assert_eq!(cfg.offsets_retention_ms, 120_000);
        assert_eq!(cfg.max_size, usize::MAX);
        assert_eq!(
            GroupConfig::from_broker(&crate::config::BrokerConfig::default()),
            GroupConfig::default()
        );
    }
}
