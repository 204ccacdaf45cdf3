//! `request`: one request frame through `dispatch` of an in-process broker.
//!
//! The broker is started once per process (multi-thread runtime, data in a
//! temp dir) and shared by every input, so state built by one input (topics,
//! groups, producer ids, offsets) is there for the next, as on a real broker.
//!
//! Oracles: no panic anywhere (the libFuzzer panic hook aborts, in this thread
//! or a runtime worker), no hang (libFuzzer `-timeout`), and every response
//! decodes as the API's response at the request's version with its correlation id.

use std::cell::Cell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, DeleteTopicsRequest, RequestHeader, RequestKind, ResponseHeader,
    ResponseKind, TopicName, create_topics_request, delete_topics_request,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use skiff_broker::broker::{self, Broker, BrokerOptions, OFFSETS_TOPIC, RunningBroker};
use skiff_broker::config::BrokerConfig;
use skiff_broker::protocol::dispatch::{Dispatched, dispatch};
use skiff_broker::protocol::versions;
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::shape;

/// How long a deferred response (long-poll fetch, JoinGroup, acks=all) may take
/// before the input is done with; the future is then dropped, as when a client
/// disconnects. Short, because parked requests otherwise dominate the run time;
/// `SKIFF_FUZZ_RESPONSE_WAIT_MS` overrides it.
const RESPONSE_WAIT_MS: u64 = 20;
/// Partitions one request may create. Larger counts are a known, reported
/// resource-exhaustion issue (no upper bound on partition counts); inputs asking
/// for more are skipped so the fuzzer keeps exploring, unless `SKIFF_FUZZ_UNGUARDED=1`.
const MAX_NEW_PARTITIONS: i64 = 64;
/// Topics kept before the harness deletes them all (they live in a temp dir).
const MAX_TOPICS: usize = 32;
/// The topic the seed corpus talks to; recreated after every cleanup.
const SEED_TOPIC: &str = "fuzz";

thread_local! {
    /// Set while the input is one whose decoding is known (from the harness's
    /// own decode) to panic inside `kafka-protocol`; `dispatch` catches that
    /// panic, so the hook must not abort.
    static DECODER_PANIC_EXPECTED: Cell<bool> = const { Cell::new(false) };
}

#[derive(Debug, Default)]
struct Stats {
    inputs: AtomicU64,
    skipped: AtomicU64,
    decoder_panics: AtomicU64,
    closed: AtomicU64,
    answered: AtomicU64,
    deferred_dropped: AtomicU64,
    no_response: AtomicU64,
    cleanups: AtomicU64,
}

struct Harness {
    rt: Runtime,
    broker: Arc<Broker>,
    data_dir: tempfile::TempDir,
    _running: RunningBroker,
    stats: Stats,
    strict: bool,
    unguarded: bool,
    response_wait: Duration,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DECODER_PANIC_EXPECTED.with(Cell::get) {
                return;
            }
            previous(info);
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let data_dir = tempfile::Builder::new()
            .prefix("skiff-fuzz-broker-")
            .tempdir()
            .expect("temp data dir");
        let config = BrokerConfig::from_pairs([
            ("group.initial.rebalance.delay.ms", "0"),
            // The data dir is usually on tmpfs: keep files small.
            ("log.preallocate", "false"),
            ("log.segment.bytes", "1048576"),
            ("offsets.topic.num.partitions", "4"),
        ])
        .expect("broker config");
        let running = rt
            .block_on(broker::start(BrokerOptions {
                node_id: 0,
                data_dir: data_dir.path().to_owned(),
                listen: "127.0.0.1:0".into(),
                advertise: None,
                admin_listen: "127.0.0.1:0".into(),
                controller_listen: "127.0.0.1:0".into(),
                voters: Default::default(),
                cluster_id: None,
                config,
            }))
            .expect("broker starts");
        let h = Harness {
            broker: running.broker.clone(),
            rt,
            data_dir,
            _running: running,
            stats: Stats::default(),
            strict: env_flag("SKIFF_FUZZ_STRICT"),
            unguarded: env_flag("SKIFF_FUZZ_UNGUARDED"),
            response_wait: Duration::from_millis(
                std::env::var("SKIFF_FUZZ_RESPONSE_WAIT_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(RESPONSE_WAIT_MS),
            ),
        };
        h.create_seed_topic();
        eprintln!(
            "skiff-fuzz: broker up, data in {} (strict: {}, guard: {}, response wait: {:?})",
            h.data_dir.path().display(),
            h.strict,
            !h.unguarded,
            h.response_wait
        );
        h
    })
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

/// What the harness's own decode of the frame found.
enum Decoded {
    Request(RequestHeader, Box<RequestKind>),
    Malformed,
    Panicked,
    /// Unknown API or version: `dispatch` decides without decoding.
    Skipped,
}

fn decode(frame: &shape::Frame) -> Decoded {
    let Some(api) = frame.api else {
        return Decoded::Skipped;
    };
    if versions::range(api).is_none_or(|(min, max)| !(min..=max).contains(&frame.version)) {
        return Decoded::Skipped;
    }
    let mut buf = Bytes::copy_from_slice(&frame.bytes);
    let header_version = api.request_header_version(frame.version);
    DECODER_PANIC_EXPECTED.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut buf, header_version).ok()?;
        let body = RequestKind::decode(api, &mut buf, frame.version).ok()?;
        Some((header, body))
    }));
    DECODER_PANIC_EXPECTED.with(|c| c.set(false));
    match result {
        Ok(Some((h, b))) => Decoded::Request(h, Box::new(b)),
        Ok(None) => Decoded::Malformed,
        Err(_) => Decoded::Panicked,
    }
}

/// Why the harness refuses to run a request: it would fill the temp dir or
/// memory for a reason already reported.
fn too_costly(request: &RequestKind) -> Option<&'static str> {
    let preallocates = |name: &StrBytes, value: Option<&StrBytes>| {
        name.as_str() == "preallocate"
            && !value.is_some_and(|v| v.as_str().trim().eq_ignore_ascii_case("false"))
    };
    match request {
        RequestKind::CreateTopics(r) => {
            let partitions: i64 = r
                .topics
                .iter()
                .map(|t| {
                    (t.num_partitions as i64)
                        .max(t.assignments.len() as i64)
                        .max(1)
                })
                .sum();
            if partitions > MAX_NEW_PARTITIONS {
                return Some("partition count");
            }
            let pre = r.topics.iter().flat_map(|t| &t.configs);
            pre.into_iter()
                .any(|c| preallocates(&c.name, c.value.as_ref()))
                .then_some("preallocate")
        }
        RequestKind::CreatePartitions(r) => r
            .topics
            .iter()
            .any(|t| t.count as i64 > MAX_NEW_PARTITIONS)
            .then_some("partition count"),
        RequestKind::AlterConfigs(r) => r
            .resources
            .iter()
            .flat_map(|res| &res.configs)
            .any(|c| preallocates(&c.name, c.value.as_ref()))
            .then_some("preallocate"),
        RequestKind::IncrementalAlterConfigs(r) => r
            .resources
            .iter()
            .flat_map(|res| &res.configs)
            .any(|c| preallocates(&c.name, c.value.as_ref()))
            .then_some("preallocate"),
        _ => None,
    }
}

/// Stands for the seed topic's id in requests that name topics by id (its real
/// id is random, so no seed could carry it).
pub const SEED_TOPIC_ID_PLACEHOLDER: Uuid = Uuid::from_bytes([0xf0; 16]);

/// Applies the input's shaping to a decoded request and re-encodes the frame if
/// anything changed: produced batches get valid CRCs (`FIX_CRC`), and the
/// placeholder topic id becomes the seed topic's id.
fn reshape(
    header: &RequestHeader,
    mut request: RequestKind,
    frame: &mut shape::Frame,
    seed_id: Uuid,
) {
    let Some(api) = frame.api else {
        return;
    };
    let mut changed = false;
    let mut swap = |id: &mut Uuid| {
        if *id == SEED_TOPIC_ID_PLACEHOLDER {
            *id = seed_id;
            changed = true;
        }
    };
    match &mut request {
        RequestKind::Fetch(r) => {
            r.topics.iter_mut().for_each(|t| swap(&mut t.topic_id));
            r.forgotten_topics_data
                .iter_mut()
                .for_each(|t| swap(&mut t.topic_id));
        }
        RequestKind::Metadata(r) => {
            r.topics
                .iter_mut()
                .flatten()
                .for_each(|t| swap(&mut t.topic_id));
        }
        RequestKind::DeleteTopics(r) => r.topics.iter_mut().for_each(|t| swap(&mut t.topic_id)),
        _ => {}
    }
    match &mut request {
        RequestKind::Produce(p) if frame.fix_crc => {
            for part in p.topic_data.iter_mut().flat_map(|t| &mut t.partition_data) {
                if let Some(records) = &part.records {
                    let mut fixed = records.to_vec();
                    shape::fix_batches(&mut fixed, false, true);
                    part.records = Some(Bytes::from(fixed));
                    changed = true;
                }
            }
        }
        _ => {}
    }
    if !changed {
        return;
    }
    let mut buf = BytesMut::new();
    let encoded = header
        .encode(&mut buf, api.request_header_version(frame.version))
        .and_then(|()| request.encode(&mut buf, frame.version));
    if encoded.is_ok() {
        frame.bytes = buf.to_vec();
    }
}

/// One fuzz input.
pub fn run(data: &[u8]) {
    let h = harness();
    let n = h.stats.inputs.fetch_add(1, Relaxed) + 1;
    if let Some(mut frame) = shape::frame(data) {
        h.one(&mut frame);
    }
    h.housekeeping(n);
}

impl Harness {
    fn one(&self, frame: &mut shape::Frame) {
        let decoded = decode(frame);
        match decoded {
            Decoded::Request(header, request) => {
                if !self.unguarded && too_costly(&request).is_some() {
                    self.stats.skipped.fetch_add(1, Relaxed);
                    return;
                }
                let seed_id = self
                    .broker
                    .image()
                    .topics
                    .get(SEED_TOPIC)
                    .map_or(Uuid::nil(), |t| t.id);
                reshape(&header, *request, frame, seed_id);
            }
            Decoded::Panicked => {
                self.stats.decoder_panics.fetch_add(1, Relaxed);
                if self.strict {
                    panic!("kafka-protocol panicked decoding this frame (SKIFF_FUZZ_STRICT=1)");
                }
                // `dispatch` decodes the same bytes the same way: the panic is expected there.
                DECODER_PANIC_EXPECTED.with(|c| c.set(true));
            }
            Decoded::Malformed | Decoded::Skipped => {}
        }
        let check = frame
            .api
            .filter(|&api| {
                versions::range(api).is_some_and(|(min, max)| (min..=max).contains(&frame.version))
            })
            .map(|api| (api, frame.version));
        let correlation_id = frame
            .bytes
            .get(4..8)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let bytes = Bytes::from(std::mem::take(&mut frame.bytes));
        let broker = self.broker.clone();
        let wait = self.response_wait;
        let response = self.rt.block_on(async move {
            let dispatched = dispatch(&broker, bytes, peer()).await;
            DECODER_PANIC_EXPECTED.with(|c| c.set(false));
            match dispatched {
                Dispatched::Respond(fut) => Some(tokio::time::timeout(wait, fut).await),
                Dispatched::Nothing | Dispatched::Close(_) => None,
            }
        });
        match response {
            None => {
                self.stats.closed.fetch_add(1, Relaxed);
            }
            Some(Err(_elapsed)) => {
                self.stats.deferred_dropped.fetch_add(1, Relaxed);
            }
            Some(Ok(None)) => {
                self.stats.no_response.fetch_add(1, Relaxed);
            }
            Some(Ok(Some(outgoing))) => {
                self.stats.answered.fetch_add(1, Relaxed);
                // Record batches sent from segment files are read in here.
                let body = outgoing.into_bytes().expect("response's file ranges read");
                if let (Some((api, version)), Some(cid)) = (check, correlation_id) {
                    check_response(api, version, cid, body);
                }
            }
        }
    }

    fn housekeeping(&self, n: u64) {
        if n.is_multiple_of(1 << 16) {
            let s = &self.stats;
            eprintln!(
                "skiff-fuzz: {n} inputs: {} answered, {} closed/no reply, {} deferred dropped, \
                 {} without a response (encode failure), {} skipped by guard, {} kafka-protocol decoder panics (caught by dispatch), \
                 {} cleanups, data dir {} KiB",
                s.answered.load(Relaxed),
                s.closed.load(Relaxed),
                s.deferred_dropped.load(Relaxed),
                s.no_response.load(Relaxed),
                s.skipped.load(Relaxed),
                s.decoder_panics.load(Relaxed),
                s.cleanups.load(Relaxed),
                dir_size(self.data_dir.path()) / 1024,
            );
        }
        let topics = self.broker.image().topics.len();
        let big = n.is_multiple_of(4096) && dir_size(self.data_dir.path()) > 512 << 20;
        if topics > MAX_TOPICS || big {
            self.cleanup();
        }
    }

    /// Deletes every topic but the offsets topic, then recreates the seed topic.
    fn cleanup(&self) {
        self.stats.cleanups.fetch_add(1, Relaxed);
        let names: Vec<String> = self
            .broker
            .image()
            .topics
            .keys()
            .filter(|n| n.as_str() != OFFSETS_TOPIC)
            .cloned()
            .collect();
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(
                names
                    .into_iter()
                    .map(|n| {
                        delete_topics_request::DeleteTopicState::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                    })
                    .collect(),
            );
        self.internal(ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(request));
        self.create_seed_topic();
    }

    fn create_seed_topic(&self) {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(SEED_TOPIC)))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ]);
        self.internal(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request));
    }

    /// Sends a request of the harness's own through `dispatch`.
    fn internal(&self, api: ApiKey, version: i16, request: RequestKind) {
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(-1)
            .with_client_id(Some(StrBytes::from_static_str("fuzz-harness")))
            .encode(&mut buf, api.request_header_version(version))
            .expect("encode header");
        request.encode(&mut buf, version).expect("encode request");
        let broker = self.broker.clone();
        let frame = buf.freeze();
        self.rt.block_on(async move {
            if let Dispatched::Respond(fut) = dispatch(&broker, frame, peer()).await {
                let _ = tokio::time::timeout(Duration::from_secs(10), fut).await;
            }
        });
    }
}

/// Every response must decode as the response of its API and version.
fn check_response(api: ApiKey, version: i16, correlation_id: i32, mut body: Bytes) {
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: response header does not decode: {e}"));
    assert_eq!(
        header.correlation_id, correlation_id,
        "{api:?} v{version}: correlation id"
    );
    if let Err(e) = ResponseKind::decode(api, &mut body, version) {
        panic!("{api:?} v{version}: response body does not decode: {e}");
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
