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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
