//! Container restart backoff, as kubelet: the first restart is immediate, then 10 s doubling
//! to 5 min (`CrashLoopBackOff`), forgotten once a container has run for 10 minutes.

use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without backoff (2 × MAX upstream).
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone)]
pub struct CrashBackoff {
    next: Option<Duration>,
}

impl CrashBackoff {
    /// The wait before restarting a container that exited after running for `ran_for`.
    pub fn on_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= RESET_AFTER {
            self.next = None;
        }
        let delay = self.next.unwrap_or(Duration::ZERO);
        self.next = Some(if delay.is_zero() {
            INITIAL
        } else {
            (delay * 2).min(MAX)
        });
        delay
    }
}

/// Kubelet's text, e.g. `back-off 20s restarting failed container=c pod=p_ns(uid)`.
pub fn message(delay: Duration, container: &str, pod: &str, namespace: &str, uid: &str) -> String {
    let secs = delay.as_secs();
    let text = if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m0s", secs / 60)
    } else if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    };
    format!("back-off {text} restarting failed container={container} pod={pod}_{namespace}({uid})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_ten_seconds_to_five_minutes_and_reset() {
        let mut b = CrashBackoff::default();
        let quick = Duration::from_secs(1);
        let delays: Vec<u64> = (0..9).map(|_| b.on_exit(quick).as_secs()).collect();
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.on_exit(RESET_AFTER), Duration::ZERO);
        assert_eq!(b.on_exit(quick), INITIAL);
    }

    #[test]
    fn message_matches_kubelet() {
        assert_eq!(
            message(Duration::from_secs(20), "c", "p", "ns", "u"),
            "back-off 20s restarting failed container=c pod=p_ns(u)"
        );
        assert_eq!(
            message(Duration::from_secs(300), "c", "p", "ns", "u"),
            "back-off 5m0s restarting failed container=c pod=p_ns(u)"
        );
    }
}
