//! Unchanged Kafka clients against the `skiff-broker` binary: kcat, confluent-kafka,
//! kafka-python and the Apache Kafka Java client run their suites
//! (`broker/tests/clients/run.sh`), then an idempotent acks=all producer survives a
//! kill -9 of the broker (`broker/tests/crash`). Finally SIGTERM must stop the broker
//! cleanly. The clients are installed by `broker/tests/clients/install.sh` (`make test`
//! runs it); without them these tests fail and say so.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn cache_dir() -> PathBuf {
    std::env::var_os("SKIFF_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/skiff"))
}

fn clients_python() -> PathBuf {
    let python = cache_dir().join("clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run broker/tests/clients/install.sh (make test does) to install the real Kafka clients",
        python.display()
    );
    python
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Broker {
    child: Child,
    port: u16,
    admin: u16,
    data: Option<tempfile::TempDir>,
}

impl Broker {
    fn start() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let (port, admin, controller) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(data.path().join("broker.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff-broker"))
            .args(["--data-dir", &data.path().join("data").to_string_lossy()])
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--controller-listen",
                &format!("127.0.0.1:{controller}"),
            ])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff-broker");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "broker did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            admin,
            data: Some(data),
        }
    }

    /// SIGTERM, and the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, self.data.take().expect("data dir"));
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn unchanged_kafka_clients_pass_their_suites_and_sigterm_closes_cleanly() {
    clients_python();
    let broker = Broker::start();
    let status = Command::new(repo_root().join("broker/tests/clients/run.sh"))
        .env("SKIFF_BOOTSTRAP", format!("127.0.0.1:{}", broker.port))
        .stdin(Stdio::null())
        .status()
        .expect("run.sh");
    let log = std::fs::read_to_string(
        broker
            .data
            .as_ref()
            .expect("data dir")
            .path()
            .join("broker.log"),
    )
    .unwrap_or_default();
    assert!(
        status.success(),
        "client suites failed; broker log tail:\n{}",
        tail(&log, 40)
    );
    assert!(
        !log.contains("panicked"),
        "the broker panicked:\n{}",
        tail(&log, 40)
    );

    let (status, data) = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status}");
    // Every partition log was closed cleanly, so the next start skips recovery.
    let partitions: Vec<_> = std::fs::read_dir(data.path().join("data"))
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("partition.metadata").exists())
        .collect();
    assert!(!partitions.is_empty());
    for p in partitions {
        assert!(
            p.join(".clean-shutdown").exists(),
            "{} was not closed cleanly",
            p.display()
        );
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_with_a_real_idempotent_producer() {
    let python = clients_python();
    let status = Command::new(python)
        .args(["-m", "pytest", "-c"])
        .arg(repo_root().join("broker/tests/clients/pytest.ini"))
        .arg("-s")
        .arg(repo_root().join("broker/tests/crash/test_kill_restart.py"))
        .env("SKIFF_BROKER_BIN", env!("CARGO_BIN_EXE_skiff-broker"))
        .stdin(Stdio::null())
        .status()
        .expect("pytest");
    assert!(status.success(), "kill -9 test failed");
}

/// `GET /metrics` on the admin listener.
fn scrape(admin: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("response");
    out
}

/// The value of the series whose line starts with `series` (labels in the
/// order the broker writes them).
fn sample(metrics: &str, series: &str) -> Option<i64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_show_partition_states_high_watermarks_and_committed_offsets() {
    let python = clients_python();
    let broker = Broker::start();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    // 100 messages, of which a group consumes and commits 40: lag 60.
    let script = r#"
import sys, time
from confluent_kafka import Consumer, Producer
p = Producer({"bootstrap.servers": sys.argv[1]})
for i in range(100):
    p.produce("lagging", str(i).encode())
assert p.flush(30) == 0
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "slow", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "max.poll.interval.ms": 60000})
c.subscribe(["lagging"])
n, deadline = 0, time.time() + 30
while n < 40 and time.time() < deadline:
    m = c.poll(0.5)
    if m is not None and m.error() is None:
        n += 1
        c.commit(message=m, asynchronous=False)
c.close()
assert n == 40, n
"#;
    let status = Command::new(python)
        .args(["-c", script, &bootstrap])
        .stdin(Stdio::null())
        .status()
        .expect("python");
    assert!(status.success(), "the client script failed");
    // The broker refreshes these every 5 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = scrape(broker.admin);
        let hw = sample(
            &m,
            "skiff_partition_high_watermark{partition=\"0\",topic=\"lagging\"",
        );
        let committed = sample(
            &m,
            "skiff_consumer_group_committed_offset{group=\"slow\",partition=\"0\",topic=\"lagging\"",
        );
        if (hw, committed) == (Some(100), Some(40)) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "high watermark {hw:?} and committed offset {committed:?} not (100, 40) within 20 s:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for (state, want) in [
        ("offline", 0),
        ("under_min_isr", 0),
        ("under_replicated", 0),
    ] {
        assert_eq!(
            sample(&metrics, &format!("skiff_partitions{{state=\"{state}\"")),
            Some(want),
            "{state}"
        );
    }
    assert!(sample(&metrics, "skiff_partitions{state=\"leader\"").is_some_and(|n| n >= 1));
}

#[test]
fn kafka_python_describe_log_dirs_reports_the_data_dir_and_replica_sizes() {
    let python = clients_python();
    let broker = Broker::start();
    let bootstrap = format!("127.0.0.1:{}", broker.port);
    let data_dir = broker.data.as_ref().expect("data dir").path().join("data");
    // 200 values of 1000 bytes with acks=all, then DescribeLogDirs for every
    // partition and for the one named: the replica holds at least those bytes.
    let script = r#"
import sys
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
bootstrap, data_dir = sys.argv[1], sys.argv[2]
admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
admin.create_topics([NewTopic("sized", 1, 1)])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
value = b"v" * 1000
futures = [producer.send("sized", value, partition=0) for _ in range(200)]
for f in futures:
    f.get(timeout=30)
producer.close()
produced = 200 * len(value)
for asked in (None, {"sized": [0]}):
    answers = admin.describe_log_dirs(asked)
    assert len(answers) == 1, answers
    dirs = answers[0]["log_dirs"]
    assert [d["log_dir"] for d in dirs] == [data_dir], dirs
    assert dirs[0]["error_code"] == 0, dirs
    sizes = {(t["name"], p["partition_index"]): p["partition_size"]
             for t in dirs[0]["topics"] for p in t["partitions"]}
    assert sizes.get(("sized", 0), -1) >= produced, (produced, sizes)
    if asked is not None:
        assert list(sizes) == [("sized", 0)], sizes
    print("describe_log_dirs", asked, "sized-0:", sizes[("sized", 0)], "bytes for", produced, "produced")
admin.close()
"#;
    let status = Command::new(python)
        .args(["-c", script, &bootstrap])
        .arg(&data_dir)
        .stdin(Stdio::null())
        .status()
        .expect("python");
    assert!(status.success(), "the client script failed");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
