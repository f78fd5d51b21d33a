//! The one clock of everynode.
//!
//! Every decision that depends on time takes `now` as an argument (the DaemonSet pass, node
//! eligibility, back-off), and the code around it reads `now` from a [`Clock`] handed to it, so
//! a test can decide what time it is. Two kinds of time are read:
//!
//! - **Wall time** ([`Clock::now`]): what is written into objects (`creationTimestamp`,
//!   `lastTransitionTime`, lease `renewTime`) and compared with what other processes wrote.
//! - **Monotonic time** (`tokio::time::Instant`): timers, deadlines and intervals inside one
//!   process. tokio's `Instant` obeys paused time (`#[tokio::test(start_paused = true)]`,
//!   `tokio::time::advance`), so it is the monotonic clock everywhere; `std::time::Instant` is
//!   banned by `clippy.toml`, as are the wall-clock reads of `jiff` and `std`, outside this crate.
//!
//! [`PausedClock`] joins the two for tests: its wall time moves exactly as tokio's clock does, so
//! a test that advances paused time sees timestamps, lease expiry and back-off move together.

use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;

/// A source of wall time. Shared as [`SharedClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current wall time.
    fn now(&self) -> Timestamp;
}

/// A clock shared by the tasks of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock: what production runs on.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place that reads the system's wall clock.
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// Wall time that follows tokio's clock from a fixed start: under paused tokio time it moves
/// only when the test advances time (or the runtime auto-advances to the next timer).
#[derive(Clone, Copy, Debug)]
pub struct PausedClock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
}

impl PausedClock {
    /// A clock reading `start_wall` now, and as much later as tokio's clock moves.
    pub fn starting_at(start_wall: Timestamp) -> Self {
        PausedClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }

    /// [`PausedClock::starting_at`], shared.
    pub fn shared(start_wall: Timestamp) -> SharedClock {
        Arc::new(Self::starting_at(start_wall))
    }
}

impl Clock for PausedClock {
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.start.elapsed()).unwrap_or(SignedDuration::MAX);
        self.start_wall
            .checked_add(elapsed)
            .unwrap_or(Timestamp::MAX)
    }
}

/// A clock that always reads the same time, for pure tests of code that takes a clock.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// RFC 3339 with whole seconds, as Kubernetes writes `metav1.Time`.
pub fn format_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn paused_clock_moves_only_with_tokio_time() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("timestamp");
        let clock = PausedClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(40)).await;
        assert_eq!(clock.now(), start + SignedDuration::from_secs(40));
        // A sleep under paused time auto-advances the clock by exactly its length.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), start + SignedDuration::from_millis(41_500));
    }

    #[test]
    fn metav1_time_has_whole_seconds() {
        let t: Timestamp = "2026-03-04T05:06:07.891Z".parse().expect("timestamp");
        assert_eq!(format_time(t), "2026-03-04T05:06:07Z");
    }
}
