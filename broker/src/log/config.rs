//! Per-partition log settings, named after Kafka's topic configs.

/// Settings of one partition's log. Field docs give the Kafka config name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll a new segment when the active one would exceed this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of log between offset-index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: maximum size of an index file.
    pub segment_index_bytes: usize,
    /// `retention.bytes`: delete old segments while the log is larger (`-1`: no limit).
    pub retention_bytes: i64,
    /// `retention.ms`: delete segments whose newest record is older (`-1`: forever).
    pub retention_ms: i64,
    /// `flush.messages`: fsync after this many records (`i64::MAX`: only on demand).
    pub flush_messages: i64,
    /// `flush.ms`: fsync at least this often while there is unflushed data.
    pub flush_ms: i64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: usize,
    /// `preallocate`: size new segment files to `segment.bytes` up front.
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1024 * 1024 + 12,
            preallocate: true,
        }
    }
}
