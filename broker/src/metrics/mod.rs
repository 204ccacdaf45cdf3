//! Prometheus metrics of the broker, served at `/metrics` on the admin listener.
//!
//! Owns: the registry and the metric handles. Must not: compute anything on
//! the request path beyond incrementing counters.

use prometheus::{
    Counter, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The broker's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests handled, by API and outcome.
    pub requests: IntCounterVec,
    /// Request handling time in seconds, by API.
    pub request_seconds: HistogramVec,
    /// Record bytes appended, by topic.
    pub bytes_in: IntCounterVec,
    /// Record bytes returned to consumers and followers, by topic.
    pub bytes_out: IntCounterVec,
    /// Open client connections.
    pub connections: IntGauge,
    /// Partitions hosted, led, under-replicated, under `min.insync.replicas`
    /// (led here) and offline (hosted here, no leader in the metadata).
    pub partitions: IntGaugeVec,
    /// High watermark of each partition led here, by topic and partition.
    pub high_watermark: IntGaugeVec,
    /// Committed offset of each group coordinated here, by group, topic and
    /// partition; consumer lag = `high_watermark` - this.
    pub committed_offset: IntGaugeVec,
    /// Bytes on disk across partition logs.
    pub log_bytes: IntGauge,
    /// Bytes fetched for replicas being moved here, under the replication throttle.
    pub throttled_bytes: IntCounter,
    /// Seconds the replication throttle held moving replicas out of fetches.
    pub throttled_seconds: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new(node_id: i32) -> Self {
        let registry = Registry::new_custom(
            Some("skiff".into()),
            Some(
                [("node_id".to_owned(), node_id.to_string())]
                    .into_iter()
                    .collect(),
            ),
        )
        .unwrap_or_default();
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "Requests handled by API and outcome"),
            &["api", "outcome"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Request handling time by API").buckets(
                vec![
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    5.0,
                ],
            ),
            &["api"],
        )
        .expect("valid metric");
        let bytes_in = IntCounterVec::new(
            Opts::new("bytes_in_total", "Record bytes appended by topic"),
            &["topic"],
        )
        .expect("valid metric");
        let bytes_out = IntCounterVec::new(
            Opts::new("bytes_out_total", "Record bytes served by topic"),
            &["topic"],
        )
        .expect("valid metric");
        let connections =
            IntGauge::new("connections", "Open Kafka connections").expect("valid metric");
        let partitions = IntGaugeVec::new(
            Opts::new(
                "partitions",
                "Partitions by state: hosted, leader, under_replicated (led here, ISR smaller \
                 than the replicas), under_min_isr (led here, ISR smaller than \
                 min.insync.replicas), offline (hosted here, no leader)",
            ),
            &["state"],
        )
        .expect("valid metric");
        let high_watermark = IntGaugeVec::new(
            Opts::new(
                "partition_high_watermark",
                "High watermark of each partition this broker leads",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        let committed_offset = IntGaugeVec::new(
            Opts::new(
                "consumer_group_committed_offset",
                "Committed offset of each consumer group this broker coordinates; \
                 lag = skiff_partition_high_watermark - this",
            ),
            &["group", "topic", "partition"],
        )
        .expect("valid metric");
        let log_bytes = IntGauge::new("log_size_bytes", "Bytes of record batches on disk")
            .expect("valid metric");
        let throttled_bytes = IntCounter::new(
            "replication_throttled_bytes_total",
            "Bytes fetched for replicas a reassignment is adding to this broker, \
             counted by follower.replication.throttled.rate (0 when unthrottled)",
        )
        .expect("valid metric");
        let throttled_seconds = Counter::new(
            "replication_throttled_seconds_total",
            "Time the replication throttle held replicas being added out of fetches",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(connections.clone()),
            Box::new(partitions.clone()),
            Box::new(high_watermark.clone()),
            Box::new(committed_offset.clone()),
            Box::new(log_bytes.clone()),
            Box::new(throttled_bytes.clone()),
            Box::new(throttled_seconds.clone()),
        ] {
            let _ = registry.register(c);
        }
        Self {
            registry,
            requests,
            request_seconds,
            bytes_in,
            bytes_out,
            connections,
            partitions,
            high_watermark,
            committed_offset,
            log_bytes,
            throttled_bytes,
            throttled_seconds,
        }
    }

    /// Brings the throttle counters up to the replica manager's running totals.
    pub fn set_throttled(&self, bytes: u64, seconds: f64) {
        self.throttled_bytes
            .inc_by(bytes.saturating_sub(self.throttled_bytes.get()));
        let more = seconds - self.throttled_seconds.get();
        if more > 0.0 {
            self.throttled_seconds.inc_by(more);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
