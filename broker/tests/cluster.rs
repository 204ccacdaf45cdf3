//! Fault scenarios against a cluster of `skiff-broker` processes on loopback, with real
//! clients (`broker/tests/cluster`, pytest): kill -9 of a leader, SIGSTOP pauses and a
//! stale leader, a rolling restart, reassignment RF 1 -> 3 -> 2 with Apache Kafka's tool,
//! and five brokers with learners. After each, a checker proves that no acknowledged
//! write was lost, moved or duplicated.
//!
//! Two tests, run one after the other:
//! - `cluster_harness_works_against_one_broker`: the harness itself (checker on fake data,
//!   every fault helper against one broker started without the cluster flags);
//! - `cluster_keeps_every_acknowledged_write_under_faults`: the scenarios. They need the
//!   replicated cluster (`--controller-listen`, `--voters`, `/v1/status`, ...); a broker
//!   that lacks a flag or API fails them with a message saying what is missing.
//!   `SKIFF_CLUSTER_MARKERS` narrows them to a pytest marker expression, e.g.
//!   `SKIFF_CLUSTER_MARKERS='cluster and not reassignment'`.
//!
//! The clients come from `broker/tests/clients/install.sh` (`make test` runs it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The two pytest runs share two small CPUs: never at the same time.
static SERIAL: Mutex<()> = Mutex::new(());

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn clients_python() -> PathBuf {
    let cache = std::env::var_os("SKIFF_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/skiff")
        });
    let python = cache.join("clients-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run broker/tests/clients/install.sh (make test does) to install \
         confluent-kafka, kafka-python and pytest",
        python.display()
    );
    python
}

/// Runs pytest on `broker/tests/cluster` with `args`, streaming its output, killing its
/// whole process group (brokers included) after `limit`. Returns (success, summary).
fn pytest(args: &[&str], limit: Duration) -> (bool, String) {
    let dir = repo_root().join("broker/tests/cluster");
    let mut child = Command::new(clients_python())
        .args(["-m", "pytest", "-c"])
        .arg(dir.join("pytest.ini"))
        .args(["--rootdir"])
        .arg(&dir)
        .args(["-s", "-vv", "--tb=short"])
        .args(args)
        .current_dir(&dir)
        .env("SKIFF_BROKER_BIN", env!("CARGO_BIN_EXE_skiff-broker"))
        .env("SKIFF_CLUSTER_TARGET", "skiff")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .env("COLUMNS", "160")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .expect("start pytest");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Straight to the terminal (not the test harness's capture): a run is long.
            let _ = writeln!(std::io::stdout().lock(), "{line}");
            lines.push(line);
        }
        lines
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let pgid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines = reader.join().expect("output reader");
    let mut summary = summary_of(&lines);
    match status {
        Some(s) => (s.success(), summary),
        None => {
            summary.push_str(&format!(
                "\npytest ran over {} s and was killed",
                limit.as_secs()
            ));
            (false, summary)
        }
    }
}

/// The measurements, the outcome lines of the short test summary (a -vv failure
/// message goes on with log tails: its first line is enough here) and the final line.
fn summary_of(lines: &[String]) -> String {
    #[derive(PartialEq)]
    enum Section {
        Other,
        Measurements,
        ShortSummary,
    }
    let mut out = Vec::new();
    let mut section = Section::Other;
    for line in lines {
        if line.starts_with("====") {
            section = if line.contains("skiff cluster measurements") {
                Section::Measurements
            } else if line.contains("short test summary info") {
                Section::ShortSummary
            } else {
                Section::Other
            };
            if line.contains(" passed") || line.contains(" failed") || line.contains(" error") {
                out.push(line.trim_matches(|c| c == '=' || c == ' ').to_owned());
            }
            continue;
        }
        let outcome = ["FAILED ", "ERROR ", "SKIPPED ", "XFAIL ", "XPASS "]
            .iter()
            .any(|p| line.starts_with(p));
        if (section == Section::Measurements && !line.trim().is_empty())
            || (section == Section::ShortSummary && outcome)
        {
            out.push(line.clone());
        }
    }
    out.join("\n")
}

#[test]
fn cluster_harness_works_against_one_broker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (ok, summary) = pytest(&["-m", "harness"], Duration::from_secs(180));
    if ok {
        let _ = writeln!(
            std::io::stdout().lock(),
            "\n=== cluster harness summary\n{summary}"
        );
    }
    assert!(ok, "cluster harness self-test failed:\n{summary}");
}

#[test]
fn cluster_keeps_every_acknowledged_write_under_faults() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let markers = std::env::var("SKIFF_CLUSTER_MARKERS").unwrap_or_else(|_| "not harness".into());
    let (ok, summary) = pytest(&["-m", &markers], Duration::from_secs(900));
    if ok {
        let _ = writeln!(
            std::io::stdout().lock(),
            "\n=== cluster fault scenarios summary\n{summary}"
        );
    }
    assert!(ok, "cluster fault scenarios failed:\n{summary}");
}
