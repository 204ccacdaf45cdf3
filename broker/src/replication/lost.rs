//! Leaders this broker's fetchers just lost: the leader's process is gone
//! (its connection was reset, refused or closed), and the controller may not
//! yet have fenced it and moved its leaderships.
//!
//! Between a leader's crash and the controller's fence (some 10-20 ms: the
//! active controller sees the reset at once, but the fence is a Raft commit)
//! the metadata image still names the dead leader. A client asking for
//! metadata in that window (librdkafka asks at once when its connection
//! drops) would be sent back to the dead broker and then wait for its next
//! periodic scan, a second later. A broker that knows the leader is gone
//! holds such an answer briefly until the image names the new leader (see
//! `metadata::api`).
//!
//! A mark is only a hint with a short life: it ends when a fetcher reaches
//! the broker again, or `HINT_LIFETIME` after the loss (by then the
//! controller has decided, and the image is the truth either way).
//!
//! Owns: the marks. Must not: change the image or leadership.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a lost leader is reported at most: longer than the default
/// broker session timeout (1 s), after which the controller has fenced a
/// broker that is really gone.
pub const HINT_LIFETIME: Duration = Duration::from_secs(2);

/// Whether an I/O error on a leader's connection means its process is gone
/// (rather than slow, or our own doing).
pub fn means_gone(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
    )
}

/// The leaders lost, with when each was first lost.
#[derive(Debug, Default)]
pub struct LostLeaders {
    since: Mutex<HashMap<i32, Instant>>,
}

impl LostLeaders {
    /// A fetcher's connection to `leader` failed in a way that means its
    /// process is gone. The first loss starts the hint's life; repeated
    /// failures do not extend it.
    pub fn lost(&self, leader: i32, now: Instant) {
        self.lock().entry(leader).or_insert(now);
    }

    /// A fetcher connected to `leader`: it is there.
    pub fn reached(&self, leader: i32) {
        self.lock().remove(&leader);
    }

    /// Every leader lost less than `HINT_LIFETIME` before `now` and not
    /// reached since (usually none). A leader that stays unreachable is not
    /// reported past the hint's life: if it is alive and only this broker
    /// cannot reach it, clients asking here must not be slowed for long.
    pub fn current(&self, now: Instant) -> Vec<i32> {
        self.lock()
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) < HINT_LIFETIME)
            .map(|(&leader, _)| leader)
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Instant>> {
        self.since.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_lost(marks: &LostLeaders, leader: i32, now: Instant) -> bool {
        marks.current(now).contains(&leader)
    }

    #[test]
    fn a_lost_leader_is_reported_until_reached_or_the_hint_expires() {
        let marks = LostLeaders::default();
        let t0 = Instant::now();
        assert!(!is_lost(&marks, 1, t0));

        marks.lost(1, t0);
        assert!(is_lost(&marks, 1, t0 + Duration::from_millis(500)));
        assert!(!is_lost(&marks, 2, t0), "only the leader lost");
        assert_eq!(marks.current(t0), vec![1]);
        // Failing again, even after the hint expired, does not extend it.
        marks.lost(1, t0 + Duration::from_millis(1500));
        assert!(!is_lost(&marks, 1, t0 + HINT_LIFETIME));
        marks.lost(1, t0 + HINT_LIFETIME);
        assert!(!is_lost(&marks, 1, t0 + HINT_LIFETIME));

        // Reached, then lost again: a new hint.
        marks.reached(1);
        assert!(!is_lost(&marks, 1, t0 + HINT_LIFETIME));
        marks.lost(1, t0 + HINT_LIFETIME * 2);
        assert!(is_lost(&marks, 1, t0 + HINT_LIFETIME * 2));
    }

    #[test]
    fn only_errors_of_a_vanished_peer_count() {
        assert!(means_gone(ErrorKind::ConnectionReset));
        assert!(means_gone(ErrorKind::ConnectionRefused));
        assert!(means_gone(ErrorKind::UnexpectedEof));
        assert!(!means_gone(ErrorKind::TimedOut));
        assert!(!means_gone(ErrorKind::InvalidData));
    }
}
