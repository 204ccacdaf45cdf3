//! The replication throttle for replicas being moved (the follower side of
//! Kafka's replication quotas, `follower.replication.throttled.rate`).
//!
//! A reassignment that adds this broker to a partition copies the whole log
//! over the network and onto disk; unthrottled, a large move competes with
//! the producers' traffic. The throttle is one token bucket per broker over
//! the bytes fetched for partitions this broker is being added to and is not
//! yet in sync for. While the bucket is empty those partitions are left out of
//! the fetch; every other partition keeps fetching at full speed, so acks=all
//! writes never wait on a move. A move only finishes if the rate is above the
//! partition's write rate (as in Kafka).
//!
//! Owns: which partitions the throttle applies to, and the bucket. Pure: no
//! I/O and no clock of its own; every call is given `now`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::metadata::PartitionImage;

/// `follower.replication.throttled.rate` meaning "no throttle" (Kafka's default).
pub const UNLIMITED: i64 = i64::MAX;
/// How much the bucket holds when full: a quarter second at the rate. Small,
/// so a move starts near the rate instead of with a long burst.
const BURST: Duration = Duration::from_millis(250);
/// Fewest bytes asked for a throttled partition in one fetch, so that a very
/// low rate still fetches whole batches rather than slivers.
const MIN_FETCH_BYTES: i32 = 64 << 10;

/// Whether the throttle applies to `node`'s replica of `p`: a reassignment is
/// adding it and it is not in sync yet. Once in the ISR (and for replicas that
/// are not being moved) replication is never throttled.
pub fn is_throttled(p: &PartitionImage, node: i32) -> bool {
    p.adding.contains(&node) && !p.isr.contains(&node)
}

/// A token bucket of bytes. Tokens refill at `rate` per second up to the
/// capacity; a fetch may take more than there are (its size is known only
/// when the answer arrives), leaving a debt that must be refilled before the
/// next one, so over time no more than `rate` bytes per second pass.
///
/// Exact integer arithmetic: tokens are counted in billionths of a byte, so
/// a nanosecond at `rate` bytes per second refills exactly `rate` of them.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Bytes per second (≥ 1).
    rate: i128,
    /// Billionths of a byte.
    capacity: i128,
    /// Billionths of a byte; negative: a debt.
    tokens: i128,
    last: Instant,
    /// Total time the bucket spent empty (or in debt).
    empty: Duration,
}

const NANOS: i128 = 1_000_000_000;

fn nanos(d: Duration) -> i128 {
    d.as_nanos() as i128
}

fn duration(nanos: i128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

impl TokenBucket {
    /// A full bucket refilling at `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = i128::from(rate.max(1));
        let capacity = rate * nanos(BURST);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
            empty: Duration::ZERO,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that steps back (it should not) refills nothing.
        let elapsed = nanos(now.saturating_duration_since(self.last));
        self.last = self.last.max(now);
        if self.tokens <= 0 {
            let until_refilled = -self.tokens / self.rate;
            self.empty += duration(elapsed.min(until_refilled));
        }
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
    }

    /// `None` if there are tokens to fetch now; otherwise how long until there are.
    pub fn hold(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        if self.tokens > 0 {
            return None;
        }
        // Never zero: a caller that waits this long is admitted (no busy loop).
        Some(duration(-self.tokens / self.rate + 1))
    }

    /// Takes `bytes` fetched at `now`, into debt if need be.
    pub fn charge(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens -= i128::from(bytes) * NANOS;
    }

    /// The most to ask for one throttled partition in one fetch, given the
    /// usual limit `max`: about what the bucket holds, so one answer cannot
    /// run the bucket far into debt.
    pub fn fetch_bytes(&self, max: i32) -> i32 {
        let capacity = i32::try_from(self.capacity / NANOS).unwrap_or(i32::MAX);
        capacity.max(MIN_FETCH_BYTES).min(max.max(1))
    }

    /// Total time the bucket has been empty up to `now`: how long throttled
    /// partitions were held back.
    pub fn empty_time(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.empty
    }
}

/// The broker's one throttle, shared by its fetchers. The rate may change
/// while the broker runs (a dynamic broker setting); unlimited, it holds
/// nothing back.
#[derive(Debug, Default)]
pub struct ReplicationThrottle {
    state: Mutex<ThrottleState>,
    bytes: AtomicU64,
}

#[derive(Debug, Default)]
struct ThrottleState {
    /// Bytes per second, or `None`: unlimited.
    rate: Option<u64>,
    bucket: Option<TokenBucket>,
    /// Time spent empty by buckets of earlier rates.
    empty_before: Duration,
}

impl ReplicationThrottle {
    /// A throttle at `rate` (`follower.replication.throttled.rate`).
    pub fn new(rate: i64, now: Instant) -> Arc<Self> {
        let throttle = Arc::new(Self::default());
        throttle.set_rate(rate, now);
        throttle
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ThrottleState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a new rate (`UNLIMITED` or less than 1: no throttle); a new
    /// rate starts from a full bucket. Returns whether the rate changed.
    pub fn set_rate(&self, rate: i64, now: Instant) -> bool {
        let rate = (rate != UNLIMITED && rate > 0).then_some(rate as u64);
        let mut state = self.state();
        if state.rate == rate {
            return false;
        }
        if let Some(mut old) = state.bucket.take() {
            state.empty_before += old.empty_time(now);
        }
        state.rate = rate;
        state.bucket = rate.map(|r| TokenBucket::new(r, now));
        true
    }

    /// Whether a rate is set at all.
    pub fn is_limited(&self) -> bool {
        self.state().rate.is_some()
    }

    /// See [`TokenBucket::hold`]; `None` when unlimited.
    pub fn hold(&self, now: Instant) -> Option<Duration> {
        self.state().bucket.as_mut()?.hold(now)
    }

    /// Counts `bytes` fetched for throttled partitions.
    pub fn charge(&self, bytes: u64, now: Instant) {
        if bytes == 0 {
            return;
        }
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(b) = self.state().bucket.as_mut() {
            b.charge(bytes, now);
        }
    }

    /// See [`TokenBucket::fetch_bytes`]; `max` when unlimited.
    pub fn fetch_bytes(&self, max: i32) -> i32 {
        self.state()
            .bucket
            .as_ref()
            .map_or(max, |b| b.fetch_bytes(max))
    }

    /// Bytes fetched for throttled partitions, and how long they were held back, so far.
    pub fn totals(&self, now: Instant) -> (u64, Duration) {
        let mut state = self.state();
        let current = state
            .bucket
            .as_mut()
            .map_or(Duration::ZERO, |b| b.empty_time(now));
        (
            self.bytes.load(Ordering::Relaxed),
            state.empty_before + current,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A hold of `n` ms: the time to refill the debt, and a nanosecond.
    fn hold_ms(n: u64) -> Option<Duration> {
        Some(ms(n) + Duration::from_nanos(1))
    }

    fn partition(isr: &[i32], adding: &[i32]) -> PartitionImage {
        PartitionImage {
            replicas: vec![0, 1, 2, 3],
            leader: 0,
            isr: isr.to_vec(),
            leader_epoch: 1,
            partition_epoch: 1,
            adding: adding.to_vec(),
            removing: vec![2],
        }
    }

    #[test]
    fn only_a_replica_being_added_and_not_yet_in_sync_is_throttled() {
        // (isr, adding, node, throttled)
        let cases: &[(&[i32], &[i32], i32, bool)] = &[
            (&[0, 1, 2], &[3], 3, true),
            // in sync: the move is done as far as this replica goes
            (&[0, 1, 2, 3], &[3], 3, false),
            // a replica not being moved, in sync or not
            (&[0, 1, 2], &[3], 1, false),
            (&[0, 2], &[3], 1, false),
            // a replica being removed
            (&[0, 1, 2], &[3], 2, false),
            // no reassignment at all (e.g. a broker that lost its disk catching up)
            (&[0, 1], &[], 2, false),
        ];
        for &(isr, adding, node, throttled) in cases {
            assert_eq!(
                is_throttled(&partition(isr, adding), node),
                throttled,
                "isr {isr:?}, adding {adding:?}, node {node}"
            );
        }
    }

    #[test]
    fn a_full_bucket_admits_and_a_fetch_beyond_it_leaves_a_debt() {
        let t0 = Instant::now();
        // 1000 B/s: holds 250 bytes.
        let mut b = TokenBucket::new(1000, t0);
        assert_eq!(b.hold(t0), None);
        b.charge(750, t0);
        // 500 bytes of debt: 0.5 s to refill before the next fetch.
        assert_eq!(b.hold(t0), hold_ms(500));
        assert_eq!(b.hold(t0 + ms(250)), hold_ms(250));
        assert_eq!(b.hold(t0 + ms(500)), hold_ms(0));
        assert_eq!(b.hold(t0 + ms(500) + Duration::from_nanos(1)), None);
    }

    #[test]
    fn refill_stops_at_the_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        // An hour idle still holds only a quarter second's worth.
        let later = t0 + Duration::from_secs(3600);
        b.charge(250, later);
        assert_eq!(b.hold(later), hold_ms(0));
    }

    #[test]
    fn over_time_no_more_than_the_rate_passes() {
        // A fetcher that takes 300 bytes whenever the bucket lets it, polling
        // every millisecond for 10 s at 1000 B/s.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        let mut fetched = 0u64;
        for i in 0..10_000 {
            let now = t0 + ms(i);
            if b.hold(now).is_none() {
                b.charge(300, now);
                fetched += 300;
            }
        }
        // At most the burst, the rate over 10 s, and one fetch's overshoot.
        assert!(fetched <= 250 + 10_000 + 300, "{fetched}");
        assert!(fetched >= 10_000 - 300, "{fetched}");
    }

    #[test]
    fn time_in_debt_is_counted_once_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        b.charge(1250, t0); // 1000 bytes of debt: empty for 1 s
        assert_eq!(b.empty_time(t0 + ms(400)), ms(400));
        assert_eq!(b.empty_time(t0 + ms(3000)), ms(1000));
        // Full again: idle time is not throttled time.
        assert_eq!(b.empty_time(t0 + ms(9000)), ms(1000));
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(1000, t0);
        b.charge(500, t0);
        assert_eq!(b.hold(t0 - Duration::from_secs(5)), hold_ms(250));
    }

    #[test]
    fn fetch_size_follows_the_bucket_within_bounds() {
        let now = Instant::now();
        // 2 MB/s holds 500 kB.
        assert_eq!(
            TokenBucket::new(2_000_000, now).fetch_bytes(1 << 20),
            500_000
        );
        // Tiny rates still ask for whole batches; huge ones keep the usual limit.
        assert_eq!(
            TokenBucket::new(10, now).fetch_bytes(1 << 20),
            MIN_FETCH_BYTES
        );
        assert_eq!(TokenBucket::new(1 << 40, now).fetch_bytes(1 << 20), 1 << 20);
    }

    #[test]
    fn unlimited_means_no_throttle() {
        let now = Instant::now();
        let free = ReplicationThrottle::new(UNLIMITED, now);
        assert!(!free.is_limited());
        free.charge(1 << 30, now);
        assert_eq!(free.hold(now), None);
        assert_eq!(free.fetch_bytes(1 << 20), 1 << 20);
        let t = ReplicationThrottle::new(1000, now);
        t.charge(1250, now);
        t.charge(0, now);
        assert_eq!(t.hold(now), hold_ms(1000));
        assert_eq!(t.totals(now + ms(500)), (1250, ms(500)));
    }

    #[test]
    fn the_rate_changes_while_running_and_the_totals_carry_over() {
        let t0 = Instant::now();
        let t = ReplicationThrottle::new(UNLIMITED, t0);
        // Set: a full bucket at the new rate.
        assert!(t.set_rate(1000, t0));
        assert!(!t.set_rate(1000, t0), "the same rate is no change");
        t.charge(750, t0);
        assert_eq!(t.hold(t0), hold_ms(500));
        // Raised before the debt is paid: a fresh bucket at the new rate.
        assert!(t.set_rate(1_000_000, t0 + ms(100)));
        assert_eq!(t.hold(t0 + ms(100)), None);
        // The 100 ms spent in debt at the old rate still count.
        assert_eq!(t.totals(t0 + ms(100)), (750, ms(100)));
        // Removed (back to unlimited): nothing is held back any more.
        assert!(t.set_rate(UNLIMITED, t0 + ms(200)));
        assert!(!t.is_limited());
        assert_eq!(t.hold(t0 + ms(200)), None);
        assert_eq!(t.totals(t0 + ms(300)).0, 750);
    }
}
