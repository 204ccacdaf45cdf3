//! Group commit: one task per log turns many "make offset N durable" waits into
//! few fsyncs. Every waiter that arrives while an fsync runs is covered by the
//! next one, so acks=all can mean "fsynced" without one fsync per request.
//!
//! Owns: when to fsync (on demand, `flush.ms`) and publishing the durable
//! offset. Must not: touch files itself; a [`FlushTarget`] prepares and records
//! the work, and the fsync runs on a blocking thread with no lock held.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{Notify, watch};
use tracing::error;

use super::{FlushTicket, Log};

/// Something whose writes a [`GroupCommit`] makes durable (a log, or a
/// partition holding one).
pub trait FlushTarget: Send + Sync + 'static {
    /// Takes the work of one fsync.
    fn prepare(&self) -> Prepared;
    /// Records the outcome of syncing `ticket`.
    fn complete(&self, ticket: &FlushTicket, result: io::Result<()>) -> Result<(), String>;
}

/// What a [`FlushTarget`] has to flush.
#[derive(Debug)]
pub enum Prepared {
    /// One fsync's work.
    Ticket(FlushTicket),
    /// Nothing: every offset below this is durable.
    Clean(i64),
    /// The log is offline and will never be durable again.
    Offline(String),
}

impl Prepared {
    /// What a log has to flush.
    pub fn of(log: &mut Log) -> Self {
        if let Some(reason) = log.offline_reason() {
            return Self::Offline(reason.to_owned());
        }
        match log.prepare_flush() {
            Some(ticket) => Self::Ticket(ticket),
            None => Self::Clean(log.durable_offset()),
        }
    }
}

impl FlushTarget for Mutex<Log> {
    fn prepare(&self) -> Prepared {
        Prepared::of(&mut self.lock().unwrap_or_else(PoisonError::into_inner))
    }
    fn complete(&self, ticket: &FlushTicket, result: io::Result<()>) -> Result<(), String> {
        self.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .complete_flush(ticket, result)
            .map_err(|e| e.to_string())
    }
}

/// Durability could not be reached: the log failed and is offline.
#[derive(Debug, Clone, Error)]
#[error("flush failed, log offline: {0}")]
pub struct FlushFailed(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Durable {
    UpTo(i64),
    Failed(String),
}

/// Handle of a log's group-commit task.
#[derive(Debug)]
pub struct GroupCommit {
    requested: AtomicI64,
    wake: Notify,
    stopped: AtomicBool,
    durable: watch::Sender<Durable>,
}

impl GroupCommit {
    /// Starts the task. `durable` is what is already on disk; `interval` is
    /// `flush.ms` (an fsync at least that often while data is unflushed).
    pub fn spawn(
        target: Arc<dyn FlushTarget>,
        durable: i64,
        interval: Option<Duration>,
    ) -> Arc<Self> {
        let (tx, _) = watch::channel(Durable::UpTo(durable));
        let gc = Arc::new(Self {
            requested: AtomicI64::new(durable),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            durable: tx,
        });
        tokio::spawn(run(gc.clone(), target, interval));
        gc
    }

    /// Asks for every offset below `offset` to be made durable, without waiting.
    pub fn request(&self, offset: i64) {
        if self.requested.fetch_max(offset, Ordering::AcqRel) < offset {
            self.wake.notify_one();
        }
    }

    /// Waits until every offset below `offset` is durable.
    pub async fn wait_durable(&self, offset: i64) -> Result<(), FlushFailed> {
        let mut rx = self.durable.subscribe();
        self.request(offset);
        loop {
            match &*rx.borrow_and_update() {
                Durable::UpTo(d) if *d >= offset => return Ok(()),
                Durable::Failed(why) => return Err(FlushFailed(why.clone())),
                Durable::UpTo(_) => {}
            }
            if rx.changed().await.is_err() {
                return Err(FlushFailed("group commit stopped".into()));
            }
        }
    }

    /// The offset below which everything is durable.
    pub fn durable_offset(&self) -> Option<i64> {
        match &*self.durable.borrow() {
            Durable::UpTo(d) => Some(*d),
            Durable::Failed(_) => None,
        }
    }

    /// Lowers the durable offset after the log was truncated below it.
    pub fn truncated(&self, log_end_offset: i64) {
        self.durable.send_if_modified(|d| match d {
            Durable::UpTo(x) if *x > log_end_offset => {
                *x = log_end_offset;
                true
            }
            _ => false,
        });
        self.requested.fetch_min(log_end_offset, Ordering::AcqRel);
    }

    /// Stops the task after its current fsync.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

async fn run(gc: Arc<GroupCommit>, target: Arc<dyn FlushTarget>, interval: Option<Duration>) {
    loop {
        if gc.stopped.load(Ordering::Acquire) {
            return;
        }
        let durable = gc.durable_offset().unwrap_or(i64::MAX);
        if gc.requested.load(Ordering::Acquire) <= durable {
            match interval {
                Some(every) => {
                    tokio::select! {
                        () = gc.wake.notified() => continue,
                        () = tokio::time::sleep(every) => {}
                    }
                }
                None => {
                    gc.wake.notified().await;
                    continue;
                }
            }
        }
        let ticket = match target.prepare() {
            Prepared::Ticket(ticket) => ticket,
            Prepared::Clean(durable) => {
                // Another path flushed, or the request was beyond the log end:
                // publish what is durable and stop asking for more than that.
                gc.requested.fetch_min(durable, Ordering::AcqRel);
                publish(&gc, durable);
                continue;
            }
            Prepared::Offline(why) => {
                error!(%why, "group commit: log offline");
                gc.durable.send_replace(Durable::Failed(why));
                return;
            }
        };
        let ticket = Arc::new(ticket);
        let syncing = ticket.clone();
        let result = match tokio::task::spawn_blocking(move || syncing.sync()).await {
            Ok(r) => r,
            Err(join) => Err(io::Error::other(format!("fsync task failed: {join}"))),
        };
        match target.complete(&ticket, result) {
            Ok(()) => publish(&gc, ticket.upto),
            Err(why) => {
                error!(%why, "group commit: log failed");
                gc.durable.send_replace(Durable::Failed(why));
                return;
            }
        }
    }
}

fn publish(gc: &GroupCommit, upto: i64) {
    gc.durable.send_if_modified(|d| match d {
        Durable::UpTo(x) if *x < upto => {
            *x = upto;
            true
        }
        _ => false,
    });
}
