//! Pure planners: observed state in, actions out, each with the reason that
//! becomes its Event and condition message. No I/O, no clocks (time, when a
//! rule needs it, is an input).

pub mod cluster;
pub mod dynamic_config;
pub mod rebalance;
pub mod recovery;
pub mod roll;
pub mod scale_down;
pub mod topic;

/// An action and why it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned<A> {
    /// What to do.
    pub action: A,
    /// Why, in words for an Event or a condition message.
    pub reason: String,
}

impl<A> Planned<A> {
    /// `action` because of `reason`.
    pub fn new(action: A, reason: impl Into<String>) -> Self {
        Self {
            action,
            reason: reason.into(),
        }
    }
}
