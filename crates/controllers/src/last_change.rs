//! How long a watched value has stayed the same, on this process's clock. Node health and
//! leader election both judge silence this way, as upstream does: comparing the values they see
//! change, never another host's timestamps, so clock skew between hosts does not matter.

use std::time::Duration;
use tokio::time::Instant;

pub struct LastChange<V> {
    value: V,
    since: Instant,
}

impl<V: PartialEq> LastChange<V> {
    pub fn new(value: V, now: Instant) -> Self {
        LastChange { value, since: now }
    }

    /// Records `value` as seen at `now`; returns how long it has been unchanged.
    pub fn observe(&mut self, value: V, now: Instant) -> Duration {
        if value != self.value {
            self.value = value;
            self.since = now;
        }
        now.saturating_duration_since(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_time_restarts_when_the_value_changes() {
        let t0 = Instant::now();
        let mut seen = LastChange::new("a", t0);
        assert_eq!(
            seen.observe("a", t0 + Duration::from_secs(5)),
            Duration::from_secs(5)
        );
        assert_eq!(
            seen.observe("b", t0 + Duration::from_secs(6)),
            Duration::ZERO
        );
        assert_eq!(
            seen.observe("b", t0 + Duration::from_secs(9)),
            Duration::from_secs(3)
        );
    }
}
