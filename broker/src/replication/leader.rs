//! The partition leader's replication state: follower progress, the ISR, the
//! high watermark and the acks=all watermark.
//!
//! Pure: events in (appends, follower fetches, fsyncs, ticks, controller
//! answers), new state and commands out. No sockets, files or clocks: time
//! arrives as `now_ms`. The runtime executes the commands.
//!
//! Semantics (Kafka's, plus Skiff's durability):
//! - high watermark = min log end offset over the ISR, never backwards, and it
//!   does not advance while |ISR| < `min.insync.replicas`;
//! - a follower is caught up when it fetched at or past the leader's log end as
//!   it stood at the follower's previous fetch; one not caught up for
//!   `replica.lag.time.max.ms` is proposed out of the ISR;
//! - a follower whose log end reaches the high watermark (and the start of the
//!   current leader epoch) is proposed back in;
//! - one ISR change is in flight at a time; the controller validates it against
//!   the leader and partition epochs (Kafka's AlterPartition). After a refusal
//!   for stale epochs no new change is proposed until new metadata arrives
//!   (`update_assignment`); after a transient failure, not before a backoff;
//! - acks=all is satisfied up to the *ack watermark*: with `fsync` durability,
//!   the least durable offset over the ISR (followers report theirs in their
//!   fetches), capped by the high watermark; with `memory`, the high watermark.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::AckDurability;

/// How long after a failed (transient) ISR change the leader waits before proposing again.
pub const ISR_RETRY_BACKOFF_MS: i64 = 500;

/// Settings the state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// `skiff.ack.durability`.
    pub durability: AckDurability,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset (its last fetch offset).
    pub log_end_offset: i64,
    /// Offsets below this are fsynced on the follower (Skiff's fetch extension).
    pub durable_offset: i64,
    /// When the follower was last caught up.
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the follower last fetched.
    leader_end_at_last_fetch: i64,
}

/// An event the leader's state machine reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The leader appended; its log end is now `log_end_offset`.
    Appended { log_end_offset: i64 },
    /// The leader's own log is durable below `durable_offset`.
    Flushed { durable_offset: i64 },
    /// A follower fetched from `fetch_offset` (its log end) and reports its
    /// durable offset.
    FollowerFetched {
        replica: i32,
        fetch_offset: i64,
        durable_offset: i64,
        now_ms: i64,
    },
    /// Time passed; laggards may leave the ISR.
    Tick { now_ms: i64 },
    /// The controller accepted the proposed ISR at this partition epoch.
    IsrCommitted { partition_epoch: i32 },
    /// The controller refused the proposal (stale epochs): nothing is
    /// proposed again until new metadata arrives (`update_assignment`).
    IsrRejected,
    /// The proposal failed transiently (controller unreachable): proposals
    /// resume [`ISR_RETRY_BACKOFF_MS`] after `now_ms`.
    IsrFailed { now_ms: i64 },
}

/// What the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Ask the controller to set the ISR (AlterPartition), with the epochs it must match.
    ProposeIsr {
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    /// The high watermark moved: consumers may read below it.
    HighWatermark(i64),
    /// acks=all requests for offsets below this may be answered.
    AckWatermark(i64),
}

/// The leader's replication state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    pub node_id: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// First offset written in this leader epoch: a follower below it is not yet
    /// on this leader's history and cannot join the ISR.
    pub epoch_start_offset: i64,
    pub replicas: Vec<i32>,
    pub isr: BTreeSet<i32>,
    pub followers: BTreeMap<i32, FollowerProgress>,
    pub log_end_offset: i64,
    pub durable_offset: i64,
    pub high_watermark: i64,
    pub ack_watermark: i64,
    /// An ISR change sent to the controller and not answered yet.
    pub pending_isr: Option<Vec<i32>>,
    /// No ISR change is proposed before this time (`i64::MAX`: until new metadata).
    pub proposals_blocked_until_ms: i64,
    config: LeaderConfig,
}

impl LeaderState {
    /// The state of a replica that just became leader at `leader_epoch`.
    /// `high_watermark` is what it knew as follower (it never goes backwards).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        log_end_offset: i64,
        durable_offset: i64,
        high_watermark: i64,
        now_ms: i64,
        config: LeaderConfig,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|&&r| r != node_id)
            .map(|&r| {
                // Followers start "caught up now": a new leader gives every ISR member a
                // full lag window before judging it, as Kafka does.
                (
                    r,
                    FollowerProgress {
                        log_end_offset: -1,
                        durable_offset: -1,
                        last_caught_up_ms: now_ms,
                        leader_end_at_last_fetch: -1,
                    },
                )
            })
            .collect();
        Self {
            node_id,
            leader_epoch,
            partition_epoch,
            epoch_start_offset: log_end_offset,
            replicas,
            isr: isr.into_iter().collect(),
            followers,
            log_end_offset,
            durable_offset,
            high_watermark,
            ack_watermark: high_watermark.min(durable_offset),
            pending_isr: None,
            proposals_blocked_until_ms: i64::MIN,
            config,
        }
    }

    /// The commands a new leader starts with: alone in the ISR (or with
    /// followers already known), its watermarks may move at once.
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        self.advance(&mut out);
        out
    }

    /// The ISR as last committed by the controller, ascending.
    pub fn isr(&self) -> Vec<i32> {
        self.isr.iter().copied().collect()
    }

    /// The settings in force.
    pub fn config(&self) -> LeaderConfig {
        self.config
    }

    /// Applies new settings (`min.insync.replicas` changed).
    pub fn set_config(&mut self, config: LeaderConfig) -> Vec<Command> {
        self.config = config;
        let mut out = Vec::new();
        self.advance(&mut out);
        out
    }

    /// The durable offset to assume for a follower that did not report one:
    /// its fetch offset under `memory` durability, otherwise what it reported
    /// before (never more than it has).
    pub fn assumed_durable(&self, replica: i32, fetch_offset: i64) -> i64 {
        match self.config.durability {
            AckDurability::Memory => fetch_offset,
            AckDurability::Fsync => self
                .followers
                .get(&replica)
                .map_or(-1, |f| f.durable_offset.min(fetch_offset)),
        }
    }

    /// New metadata for the partition at the same leader epoch (the controller
    /// committed an ISR change, or a reassignment changed the replicas). An
    /// image older than what this leader knows is ignored.
    pub fn update_assignment(
        &mut self,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        partition_epoch: i32,
        now_ms: i64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if partition_epoch <= self.partition_epoch {
            return out;
        }
        self.followers.retain(|r, _| replicas.contains(r));
        for &r in &replicas {
            if r != self.node_id {
                self.followers.entry(r).or_insert(FollowerProgress {
                    log_end_offset: -1,
                    durable_offset: -1,
                    last_caught_up_ms: now_ms,
                    leader_end_at_last_fetch: -1,
                });
            }
        }
        self.replicas = replicas;
        self.isr = isr.into_iter().collect();
        self.partition_epoch = partition_epoch;
        self.pending_isr = None;
        self.proposals_blocked_until_ms = i64::MIN;
        self.advance(&mut out);
        out
    }

    fn may_propose(&self, now_ms: i64) -> bool {
        self.pending_isr.is_none() && now_ms >= self.proposals_blocked_until_ms
    }

    /// Whether acks=all may be attempted: the ISR is large enough.
    pub fn has_min_isr(&self) -> bool {
        self.isr.len() >= self.config.min_insync_replicas
    }

    /// Applies an event, returning the commands it causes.
    pub fn on(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Appended { log_end_offset } => {
                self.log_end_offset = self.log_end_offset.max(log_end_offset)
            }
            Event::Flushed { durable_offset } => {
                self.durable_offset = self.durable_offset.max(durable_offset)
            }
            Event::FollowerFetched {
                replica,
                fetch_offset,
                durable_offset,
                now_ms,
            } => {
                let leader_end = self.log_end_offset;
                let Some(f) = self.followers.get_mut(&replica) else {
                    return out;
                };
                // Caught up if it reached our end now, or our end as of its last fetch.
                if fetch_offset >= leader_end
                    || (f.leader_end_at_last_fetch >= 0
                        && fetch_offset >= f.leader_end_at_last_fetch)
                {
                    f.last_caught_up_ms = now_ms;
                }
                f.leader_end_at_last_fetch = leader_end;
                f.log_end_offset = fetch_offset;
                f.durable_offset = durable_offset.min(fetch_offset);
                let joins = !self.isr.contains(&replica)
                    && fetch_offset >= self.high_watermark
                    && fetch_offset >= self.epoch_start_offset;
                if joins && self.may_propose(now_ms) {
                    let mut isr: Vec<i32> = self.isr.iter().copied().collect();
                    isr.push(replica);
                    isr.sort_unstable();
                    out.push(self.propose(isr));
                }
            }
            Event::Tick { now_ms } => {
                let laggards: Vec<i32> = self
                    .followers
                    .iter()
                    .filter(|(r, f)| {
                        self.isr.contains(r)
                            && now_ms - f.last_caught_up_ms > self.config.replica_lag_time_max_ms
                    })
                    .map(|(r, _)| *r)
                    .collect();
                if !laggards.is_empty() && self.may_propose(now_ms) {
                    let isr: Vec<i32> = self
                        .isr
                        .iter()
                        .copied()
                        .filter(|r| !laggards.contains(r))
                        .collect();
                    out.push(self.propose(isr));
                }
            }
            Event::IsrCommitted { partition_epoch } => {
                if let Some(isr) = self.pending_isr.take() {
                    self.isr = isr.into_iter().collect();
                    self.partition_epoch = partition_epoch;
                }
            }
            Event::IsrRejected => {
                self.pending_isr = None;
                self.proposals_blocked_until_ms = i64::MAX;
            }
            Event::IsrFailed { now_ms } => {
                self.pending_isr = None;
                self.proposals_blocked_until_ms = now_ms.saturating_add(ISR_RETRY_BACKOFF_MS);
            }
        }
        self.advance(&mut out);
        out
    }

    fn propose(&mut self, isr: Vec<i32>) -> Command {
        self.pending_isr = Some(isr.clone());
        Command::ProposeIsr {
            isr,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        }
    }

    /// Moves the high and ack watermarks forward if the ISR allows.
    fn advance(&mut self, out: &mut Vec<Command>) {
        // The committed ISR must be large enough (the counted set below is a
        // superset of it, so it is then too).
        if !self.has_min_isr() {
            return;
        }
        // While an expansion is pending, the new member already counts (Kafka's
        // "maximal ISR"): the watermark must not outrun a replica about to join.
        // No allocation: this runs on every append and follower fetch.
        let pending: &[i32] = self.pending_isr.as_deref().unwrap_or(&[]);
        let (mut min_end, mut min_durable) = (i64::MAX, i64::MAX);
        for r in self.isr.iter().chain(pending) {
            let (end, durable) = if *r == self.node_id {
                (self.log_end_offset, self.durable_offset)
            } else {
                match self.followers.get(r) {
                    Some(f) => (f.log_end_offset, f.durable_offset),
                    // A member that is not a replica: nothing can be decided.
                    None => return,
                }
            };
            min_end = min_end.min(end);
            min_durable = min_durable.min(durable);
        }
        if min_end == i64::MAX {
            return;
        }
        if min_end > self.high_watermark {
            self.high_watermark = min_end;
            out.push(Command::HighWatermark(min_end));
        }
        let ack = match self.config.durability {
            AckDurability::Memory => self.high_watermark,
            AckDurability::Fsync => min_durable.min(self.high_watermark),
        };
        if ack > self.ack_watermark {
            self.ack_watermark = ack;
            out.push(Command::AckWatermark(ack));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 10_000;

    fn leader(min_isr: usize, durability: AckDurability) -> LeaderState {
        let config = LeaderConfig {
            min_insync_replicas: min_isr,
            replica_lag_time_max_ms: LAG,
            durability,
        };
        LeaderState::new(
            1,
            5,
            7,
            vec![1, 2, 3],
            vec![1, 2, 3],
            100,
            100,
            100,
            0,
            config,
        )
    }

    fn fetched(replica: i32, offset: i64, durable: i64, now_ms: i64) -> Event {
        Event::FollowerFetched {
            replica,
            fetch_offset: offset,
            durable_offset: durable,
            now_ms,
        }
    }

    #[test]
    fn high_watermark_is_min_end_over_isr_and_never_moves_back() {
        let mut s = leader(2, AckDurability::Memory);
        assert_eq!(
            s.on(Event::Appended {
                log_end_offset: 150
            }),
            vec![]
        );
        assert_eq!(s.on(fetched(2, 150, 150, 1)), vec![]); // follower 3 still at -1
        assert_eq!(
            s.on(fetched(3, 120, 120, 1)),
            vec![Command::HighWatermark(120), Command::AckWatermark(120)]
        );
        assert_eq!(
            s.on(fetched(3, 150, 150, 2)),
            vec![Command::HighWatermark(150), Command::AckWatermark(150)]
        );
        // A follower that truncated reports a lower offset: the watermark stays.
        assert_eq!(s.on(fetched(2, 130, 130, 3)), vec![]);
        assert_eq!(s.high_watermark, 150);
    }

    #[test]
    fn fsync_durability_acks_only_what_every_isr_member_fsynced() {
        let mut s = leader(2, AckDurability::Fsync);
        s.on(Event::Appended {
            log_end_offset: 200,
        });
        s.on(fetched(2, 200, 150, 1));
        let out = s.on(fetched(3, 200, 180, 1));
        assert_eq!(
            out,
            vec![Command::HighWatermark(200)],
            "leader itself durable only to 100"
        );
        assert_eq!(
            s.on(Event::Flushed {
                durable_offset: 200
            }),
            vec![Command::AckWatermark(150)]
        );
        assert_eq!(
            s.on(fetched(2, 200, 200, 2)),
            vec![Command::AckWatermark(180)]
        );
        assert_eq!(
            s.on(fetched(3, 200, 200, 2)),
            vec![Command::AckWatermark(200)]
        );
    }

    #[test]
    fn laggard_is_proposed_out_after_the_lag_time_and_hw_then_advances() {
        let mut s = leader(2, AckDurability::Memory);
        s.on(Event::Appended {
            log_end_offset: 300,
        });
        s.on(fetched(2, 300, 300, 1_000));
        assert_eq!(
            s.on(Event::Tick { now_ms: LAG }),
            vec![],
            "within the lag window"
        );
        let out = s.on(Event::Tick { now_ms: LAG + 1 });
        assert_eq!(
            out,
            vec![Command::ProposeIsr {
                isr: vec![1, 2],
                leader_epoch: 5,
                partition_epoch: 7
            }]
        );
        // Until the controller commits, follower 3 still holds the watermark back.
        assert_eq!(s.high_watermark, 100);
        assert_eq!(
            s.on(Event::IsrCommitted { partition_epoch: 8 }),
            vec![Command::HighWatermark(300), Command::AckWatermark(300)]
        );
        assert_eq!((s.partition_epoch, s.isr.len()), (8, 2));
    }

    #[test]
    fn no_advance_below_min_isr() {
        let mut s = leader(3, AckDurability::Memory);
        s.isr = [1, 2].into_iter().collect();
        s.on(Event::Appended {
            log_end_offset: 400,
        });
        assert_eq!(s.on(fetched(2, 400, 400, 1)), vec![]);
        assert!(!s.has_min_isr());
        assert_eq!(s.high_watermark, 100);
    }

    #[test]
    fn caught_up_follower_rejoins_and_counts_while_pending() {
        let mut s = leader(1, AckDurability::Memory);
        s.isr = [1, 2].into_iter().collect();
        s.on(Event::Appended {
            log_end_offset: 500,
        });
        s.on(fetched(2, 500, 500, 1));
        // Follower 3 below the high watermark: not yet.
        assert_eq!(s.on(fetched(3, 90, 90, 2)), vec![]);
        let out = s.on(fetched(3, 500, 500, 3));
        assert_eq!(
            out,
            vec![Command::ProposeIsr {
                isr: vec![1, 2, 3],
                leader_epoch: 5,
                partition_epoch: 7
            }]
        );
        assert_eq!(s.on(Event::IsrRejected), vec![]);
        assert!(s.pending_isr.is_none() && !s.isr.contains(&3));
    }

    #[test]
    fn follower_behind_the_epoch_start_cannot_join() {
        let config = LeaderConfig {
            min_insync_replicas: 1,
            replica_lag_time_max_ms: LAG,
            durability: AckDurability::Memory,
        };
        // A new leader with log end 100 that had only seen a high watermark of 50.
        let mut s = LeaderState::new(1, 5, 7, vec![1, 2], vec![1], 100, 100, 50, 0, config);
        // epoch_start_offset is 100 (the log end when it became leader); alone in
        // the ISR, the leader's own end is the high watermark.
        assert_eq!(
            s.on(fetched(2, 80, 80, 1)),
            vec![Command::HighWatermark(100), Command::AckWatermark(100)]
        );
        assert!(matches!(
            s.on(fetched(2, 100, 100, 2)).as_slice(),
            [Command::ProposeIsr { .. }]
        ));
    }

    #[test]
    fn one_isr_change_in_flight_at_a_time() {
        let mut s = leader(1, AckDurability::Memory);
        s.on(Event::Appended {
            log_end_offset: 600,
        });
        let out = s.on(Event::Tick { now_ms: LAG + 1 });
        assert_eq!(
            out,
            vec![Command::ProposeIsr {
                isr: vec![1],
                leader_epoch: 5,
                partition_epoch: 7
            }]
        );
        assert_eq!(s.on(Event::Tick { now_ms: LAG + 2 }), vec![]);
    }

    #[test]
    fn newer_metadata_replaces_the_isr_and_older_is_ignored() {
        let mut s = leader(2, AckDurability::Memory);
        s.on(Event::Appended {
            log_end_offset: 200,
        });
        s.on(fetched(2, 200, 200, 1));
        // An image older than what the leader knows changes nothing.
        assert_eq!(s.update_assignment(vec![1, 2], vec![1, 2], 6, 1), vec![]);
        assert_eq!(s.isr(), vec![1, 2, 3]);
        // A newer one (follower 3 was dropped, replica 4 added) takes effect and
        // the watermark, no longer held back by 3, advances.
        let out = s.update_assignment(vec![1, 2, 4], vec![1, 2], 8, 2);
        assert_eq!(
            out,
            vec![Command::HighWatermark(200), Command::AckWatermark(200)]
        );
        assert_eq!((s.isr(), s.partition_epoch), (vec![1, 2], 8));
        assert!(s.followers.contains_key(&4) && !s.followers.contains_key(&3));
        // The new replica catches up and is proposed into the ISR.
        assert_eq!(
            s.on(fetched(4, 200, 200, 3)),
            vec![Command::ProposeIsr {
                isr: vec![1, 2, 4],
                leader_epoch: 5,
                partition_epoch: 8
            }]
        );
    }

    #[test]
    fn refused_and_failed_proposals_back_off() {
        // (event after the first proposal, time of the next tick, proposes again?)
        let cases = [
            (Event::IsrRejected, LAG + 10, false),
            (Event::IsrRejected, i64::MAX / 2, false),
            (Event::IsrFailed { now_ms: LAG + 1 }, LAG + 2, false),
            (
                Event::IsrFailed { now_ms: LAG + 1 },
                LAG + 1 + ISR_RETRY_BACKOFF_MS,
                true,
            ),
        ];
        for (answer, next_tick, again) in cases {
            let mut s = leader(1, AckDurability::Memory);
            assert_eq!(s.on(Event::Tick { now_ms: LAG + 1 }).len(), 1);
            s.on(answer);
            let out = s.on(Event::Tick { now_ms: next_tick });
            assert_eq!(
                out.iter().any(|c| matches!(c, Command::ProposeIsr { .. })),
                again,
                "{answer:?} then tick at {next_tick}"
            );
        }
        // New metadata lifts the block left by a refusal.
        let mut s = leader(1, AckDurability::Memory);
        s.on(Event::Tick { now_ms: LAG + 1 });
        s.on(Event::IsrRejected);
        s.update_assignment(vec![1, 2, 3], vec![1, 2, 3], 9, LAG + 2);
        assert!(matches!(
            s.on(Event::Tick {
                now_ms: 2 * LAG + 10
            })
            .as_slice(),
            [Command::ProposeIsr { .. }]
        ));
    }

    #[test]
    fn assumed_durable_offset_depends_on_the_durability_mode() {
        for (durability, want_before, want_after) in [
            (AckDurability::Memory, 300, 300),
            (AckDurability::Fsync, -1, 250),
        ] {
            let mut s = leader(1, durability);
            assert_eq!(s.assumed_durable(2, 300), want_before, "{durability:?}");
            s.on(Event::Appended {
                log_end_offset: 400,
            });
            s.on(fetched(2, 260, 250, 1));
            assert_eq!(s.assumed_durable(2, 300), want_after, "{durability:?}");
        }
    }

    /// A leader paused (SIGSTOP) while the controller elected another one
    /// resumes at its stale epoch: the new leader no longer fetches from it, so
    /// its watermarks cannot pass what that replica had, and its attempt to drop
    /// it from the ISR is refused by the controller (stale leader epoch).
    #[test]
    fn stale_epoch_leader_never_acknowledges_acks_all() {
        for durability in [AckDurability::Memory, AckDurability::Fsync] {
            let mut s = leader(2, durability);
            s.on(Event::Flushed {
                durable_offset: 100,
            });
            // Replica 2 became leader elsewhere; 3 still fetches from us.
            s.on(Event::Appended {
                log_end_offset: 150,
            });
            s.on(Event::Flushed {
                durable_offset: 150,
            });
            let mut now = 1;
            for _ in 0..5 {
                s.on(fetched(3, 150, 150, now));
                now += LAG;
                let out = s.on(Event::Tick { now_ms: now });
                for c in &out {
                    match c {
                        Command::ProposeIsr { leader_epoch, .. } => {
                            assert_eq!(*leader_epoch, 5);
                            // The controller knows a newer leader epoch.
                            s.on(Event::IsrRejected);
                        }
                        other => panic!("{durability:?}: unexpected {other:?}"),
                    }
                }
                assert_eq!(
                    (s.high_watermark, s.ack_watermark),
                    (100, 100),
                    "{durability:?}"
                );
            }
        }
    }
}
