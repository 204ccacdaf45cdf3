//! The leader's channel to the active controller for ISR changes (Kafka's
//! AlterPartition). The replica runtime sends what `LeaderState` proposes;
//! the metadata side implements the channel over the quorum.
//!
//! Owns: the request/answer shapes. Must not: decide anything; the controller
//! validates epochs, the leader's state machine reacts to the answer.

use std::fmt;

use futures::FutureExt;
use futures::future::BoxFuture;
use uuid::Uuid;

/// A leader's request to set a partition's ISR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterIsr {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The proposing leader; the controller refuses it unless it still leads.
    pub leader: i32,
    /// The leader epoch the leader serves; must be the current one.
    pub leader_epoch: i32,
    /// The partition epoch the proposal is based on; must be the current one.
    pub partition_epoch: i32,
    /// The new ISR, ascending, including the leader.
    pub isr: Vec<i32>,
}

/// Why an ISR change was not committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterIsrError {
    /// Stale leader or partition epoch: wait for new metadata.
    Fenced,
    /// Try again later (no controller, timeout, quorum not reachable).
    Retriable(String),
    /// The controller refused the ISR itself (e.g. a replica that is fenced or
    /// not assigned); proposing it again will not help until metadata changes.
    Invalid(String),
}

impl fmt::Display for AlterIsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fenced => f.write_str("fenced: stale leader or partition epoch"),
            Self::Retriable(why) => write!(f, "retriable: {why}"),
            Self::Invalid(why) => write!(f, "invalid: {why}"),
        }
    }
}

/// Sends ISR changes to the active controller.
pub trait IsrChannel: Send + Sync + fmt::Debug + 'static {
    /// Asks the active controller to set the ISR; `Ok(new partition epoch)` when committed.
    fn alter_isr(&self, req: AlterIsr) -> BoxFuture<'static, Result<i32, AlterIsrError>>;
}

/// The channel of a broker with no controller to talk to (a single node whose
/// partitions have one replica, so no ISR ever changes): every proposal fails
/// as retriable, so nothing is committed that no controller approved.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoController;

impl IsrChannel for NoController {
    fn alter_isr(&self, req: AlterIsr) -> BoxFuture<'static, Result<i32, AlterIsrError>> {
        futures::future::ready(Err(AlterIsrError::Retriable(format!(
            "no controller to change the ISR of partition {} of topic {}",
            req.partition, req.topic_id
        ))))
        .boxed()
    }
}
