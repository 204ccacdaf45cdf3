//! Running control plane components as supervised child processes.
//!
//! Every component runs in its own process group, so stopping it reaches any
//! process it forked too; stopping is SIGTERM to the group, a bounded wait,
//! then SIGKILL and another bounded wait. Liveness comes from `/proc`, which
//! also works for groups this process did not start (`skiff-e2e down`).
//! Owns processes and their log files; knows nothing about Kubernetes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use super::error::{ControlPlaneError, LogTail, Result};

/// How often liveness is polled while waiting for a process to go away.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait after SIGKILL before reporting a leftover.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A process group started by [`spawn`] and recorded in the state file, so a
/// later `skiff-e2e down` can find it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// Component name, e.g. `kube-apiserver`.
    pub name: String,
    /// Pid of the group leader, which is also the process group id.
    pub pid: i32,
    /// The leader's start time (clock ticks since boot, from /proc), so a
    /// recycled pid is never mistaken for the component.
    pub start_time: u64,
    /// The component's log file.
    pub log: PathBuf,
}

/// A running component: a child process leading its own process group.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    record: GroupRecord,
    /// Set once the group is known to be gone, so Drop does nothing.
    stopped: bool,
    /// Set by [`Supervised::detach`]: leave the process running on drop.
    detached: bool,
}

/// Starts `program` in a new process group with stdout and stderr appended
/// to `log`.
pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Supervised> {
    let mut command = Command::new(program);
    command.args(args);
    spawn_command(name, command, log)
}

/// Starts a prepared command (environment, working directory) the same way
/// as [`spawn`]: own process group, no stdin, output appended to `log`.
pub fn spawn_command(name: &str, mut command: Command, log: &Path) -> Result<Supervised> {
    use std::os::unix::process::CommandExt;
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ControlPlaneError::io("opening log", log, e))?;
    let err = out
        .try_clone()
        .map_err(|e| ControlPlaneError::io("opening log", log, e))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| ControlPlaneError::Spawn {
            component: name.to_owned(),
            program: PathBuf::from(command.get_program()),
            source,
        })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let start_time = proc_stat(pid).map(|s| s.start_time).unwrap_or(0);
    tracing::debug!(component = name, pid, log = %log.display(), "started");
    Ok(Supervised {
        child,
        record: GroupRecord {
            name: name.to_owned(),
            pid,
            start_time,
            log: log.to_owned(),
        },
        stopped: false,
        detached: false,
    })
}

impl Supervised {
    /// Component name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// What the state file records about this process.
    pub fn record(&self) -> &GroupRecord {
        &self.record
    }

    /// The exit status if the leader has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An [`ControlPlaneError::Exited`] if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(ControlPlaneError::Exited {
                component: self.record.name.clone(),
                status: status.to_string(),
                log: LogTail::read(&self.record.log),
            }),
        }
    }

    /// Leaves the process running when this handle is dropped (`up --detach`).
    pub fn detach(mut self) -> GroupRecord {
        self.detached = true;
        self.record.clone()
    }

    /// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL.
    /// Blocks; fails only if something survived SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        let child = &mut self.child;
        let result = terminate_group(&self.record, grace, &mut || {
            let _ = child.try_wait();
        });
        // Reap the leader if it went away only at the very end.
        let _ = self.child.try_wait();
        self.stopped = result.is_ok();
        result
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.detached || self.stopped {
            return;
        }
        if let Err(error) = self.stop(Duration::from_secs(5)) {
            tracing::error!(component = %self.record.name, %error, "could not stop on drop");
        }
    }
}

/// Stops a recorded group that this process may not have started. A group
/// whose leader pid now belongs to a different process is left alone.
pub fn stop_recorded(record: &GroupRecord, grace: Duration) -> Result<()> {
    terminate_group(record, grace, &mut || {})
}

/// Kills a recorded group with SIGKILL at once, as a machine crash would:
/// no SIGTERM, no grace period.
pub fn kill_recorded(record: &GroupRecord) -> Result<()> {
    signal_group(record.pid, Signal::KILL);
    if wait_gone(record, KILL_WAIT, &mut || {}) {
        Ok(())
    } else {
        Err(ControlPlaneError::Leftover(format!(
            "{}: pids {:?}",
            record.name,
            group_members(record)
        )))
    }
}

/// Whether any process of the recorded group is still running.
pub fn recorded_alive(record: &GroupRecord) -> bool {
    !group_members(record).is_empty()
}

fn terminate_group(record: &GroupRecord, grace: Duration, reap: &mut dyn FnMut()) -> Result<()> {
    let name = record.name.as_str();
    if !wait_gone(record, Duration::ZERO, reap) {
        signal_group(record.pid, Signal::TERM);
        if !wait_gone(record, grace, reap) {
            tracing::warn!(
                component = name,
                ?grace,
                "did not stop after SIGTERM; sending SIGKILL"
            );
            signal_group(record.pid, Signal::KILL);
            if !wait_gone(record, KILL_WAIT, reap) {
                let pids = group_members(record);
                return Err(ControlPlaneError::Leftover(format!(
                    "{name}: pids {pids:?}"
                )));
            }
        }
    }
    tracing::debug!(component = name, "stopped");
    Ok(())
}

fn signal_group(pgid: i32, signal: Signal) {
    if let Some(pgid) = Pid::from_raw(pgid) {
        // ESRCH (already gone) is the outcome we want anyway.
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

/// Polls until the group is empty or `timeout` passes; true if it is empty.
fn wait_gone(record: &GroupRecord, timeout: Duration, reap: &mut dyn FnMut()) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        reap();
        if group_members(record).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Live (non-zombie) processes in the recorded process group. Empty if the
/// leader's pid has been recycled by an unrelated process.
fn group_members(record: &GroupRecord) -> Vec<i32> {
    if let Some(leader) = proc_stat(record.pid)
        && record.start_time != 0
        && leader.start_time != record.start_time
    {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            proc_stat(pid).is_some_and(|s| s.pgrp == record.pid && s.state != 'Z' && s.state != 'X')
        })
        .collect()
}

/// The fields of `/proc/<pid>/stat` this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state; `Z` is a zombie.
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

/// Reads `/proc/<pid>/stat`; `None` if the process does not exist.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_proc_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may itself contain ") ".
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); pgrp is field 5 and
    // starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Whether a process with this pid and start time is alive (not a zombie).
pub fn alive(pid: i32, start_time: u64) -> bool {
    proc_stat(pid).is_some_and(|s| {
        s.state != 'Z' && s.state != 'X' && (start_time == 0 || s.start_time == start_time)
    })
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    const MAX_LINES: usize = 40;
    let Ok(mut file) = File::open(path) else {
        return format!("(cannot open {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(MAX_LINES)..];
    if tail.is_empty() {
        "(log is empty)".to_owned()
    } else {
        tail.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_awkward_command_names() {
        let stat = "4242 (kube) (x) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        let parsed = parse_proc_stat(stat).unwrap();
        assert_eq!(
            parsed,
            ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 98765
            }
        );
        assert_eq!(parse_proc_stat("garbage"), None);
    }

    #[test]
    fn stop_ends_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        // The shell ignores SIGTERM and has a child, so this needs both the
        // group signal and the SIGKILL escalation.
        let script = "trap '' TERM; sleep 300 & echo started; wait".to_owned();
        let mut proc = spawn("sh", Path::new("/bin/sh"), &["-c".to_owned(), script], &log).unwrap();
        let record = proc.record().clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while group_members(&record).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        assert_eq!(
            group_members(&record).len(),
            2,
            "shell and sleep are running"
        );
        proc.stop(Duration::from_millis(200)).unwrap();
        assert!(!recorded_alive(&record));
        assert!(proc.exited().is_some());
        assert!(log_tail(&log).contains("started"));
    }

    #[test]
    fn recycled_pid_is_not_the_recorded_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let stat = proc_stat(me).unwrap();
        let record = GroupRecord {
            name: "x".into(),
            pid: me,
            start_time: stat.start_time + 1,
            log: PathBuf::new(),
        };
        assert!(group_members(&record).is_empty());
        assert!(!alive(me, stat.start_time + 1));
        assert!(alive(me, stat.start_time));
    }
}
