//! Continuous acks=all traffic from a real client while an e2e scenario
//! changes the cluster underneath it: `e2e/tools/traffic.py` (an idempotent
//! confluent-kafka producer, then a full read checked for loss, duplicates
//! and order) in the clients venv that `make deps` installs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

/// What the producer saw and what the checker found.
#[derive(Debug, Deserialize)]
pub struct TrafficReport {
    pub sent: u64,
    pub acked: u64,
    /// Messages the client gave up on after its retries.
    pub failed: u64,
    pub failures: Vec<String>,
    pub unreported: u64,
    /// Lost, duplicate, reordered, ... messages (the checker's rules).
    pub violations: Vec<String>,
    pub errors: Vec<String>,
    /// Longest time between two acknowledgements of one partition.
    pub max_gap_s: f64,
    pub ok: bool,
}

impl TrafficReport {
    /// `sent=… acked=… failed=… unreported=… violations=… max_gap_s=…`.
    pub fn figures(&self) -> String {
        format!(
            "sent={} acked={} failed={} unreported={} violations={} max_gap_s={}",
            self.sent,
            self.acked,
            self.failed,
            self.unreported,
            self.violations.len(),
            self.max_gap_s,
        )
    }

    /// Asserts that no send failed after the client's retries, the checker
    /// found nothing (loss, duplicates, order) and the generator reported ok.
    pub fn assert_no_loss(&self) {
        assert_eq!(self.failed, 0, "{self:?}");
        assert!(self.violations.is_empty(), "{self:?}");
        assert!(self.ok, "{self:?}");
    }
}

/// A running traffic generator; `finish` stops it and returns its report.
pub struct Traffic {
    child: tokio::process::Child,
    stop_file: PathBuf,
    log: PathBuf,
}

/// The venv python with confluent-kafka (`broker/tests/clients/install.sh`).
fn clients_python() -> PathBuf {
    let python = skiff_e2e::controlplane::binaries::cache_dir().join("clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run broker/tests/clients/install.sh (make deps does)",
        python.display()
    );
    python
}

impl Traffic {
    /// Starts producing `rate` msgs/s round-robin over `partitions` of
    /// `topic` and returns once the first message is acknowledged. Files
    /// (stop marker, client log) go to `dir`.
    pub async fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        rate: u32,
        dir: &Path,
    ) -> Self {
        let script = skiff_e2e::broker_image::workspace_root().join("e2e/tools/traffic.py");
        let stop_file = dir.join(format!("traffic-{topic}.stop"));
        let started = dir.join(format!("traffic-{topic}.started"));
        let log = dir.join(format!("traffic-{topic}.log"));
        let child = tokio::process::Command::new(clients_python())
            .arg(script)
            .args(["--bootstrap", bootstrap, "--topic", topic])
            .args(["--partitions", &partitions.to_string()])
            .args(["--rate", &rate.to_string()])
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--started-file")
            .arg(&started)
            .arg("--log")
            .arg(&log)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the traffic generator starts");
        let mut traffic = Self {
            child,
            stop_file,
            log,
        };
        for _ in 0..1200 {
            if started.exists() {
                return traffic;
            }
            if let Ok(Some(status)) = traffic.child.try_wait() {
                let stderr = traffic.stderr().await;
                panic!("the traffic generator exited ({status}) before its first ack: {stderr}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no message of {topic} was acknowledged within 120 s (client log {})",
            traffic.log.display()
        );
    }

    async fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text).await;
        }
        text
    }

    /// Stops producing, waits for the flush and the checked full read, and
    /// returns the report (panics if the generator itself failed).
    pub async fn finish(mut self) -> TrafficReport {
        std::fs::write(&self.stop_file, b"").expect("the stop file");
        let mut stdout = self.child.stdout.take().expect("a piped stdout");
        let mut out = String::new();
        let status = tokio::time::timeout(Duration::from_secs(360), async {
            stdout.read_to_string(&mut out).await.expect("its stdout");
            self.child.wait().await.expect("its status")
        })
        .await
        .unwrap_or_else(|_| panic!("the traffic generator did not finish within 360 s"));
        if !status.success() {
            let stderr = self.stderr().await;
            panic!("the traffic generator failed ({status}): {stderr}");
        }
        let line = out.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "the traffic report {line:?} does not parse: {e} (client log {})",
                self.log.display()
            )
        })
    }
}
