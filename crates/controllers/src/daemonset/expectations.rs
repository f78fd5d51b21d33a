//! Upstream's "expectations" (spec §2.8): how many creates and deletes a DaemonSet's passes
//! issued that the watch has not shown yet. While any is outstanding, a pass must not create
//! or delete again (it would double them), only update status. As upstream, they are counts:
//! set before the calls are issued (so a watch event can never arrive before its
//! expectation), lowered for calls that failed, and lowered by each observed pod add and
//! deletion. Keyed by the DaemonSet's uid, so a DaemonSet re-created under the same name starts
//! clean (S-068).

use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;
use std::time::Duration;

/// How long an expectation waits for the watch before it is given up (upstream: 5 minutes).
pub const EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Outstanding {
    adds: i64,
    deletes: i64,
    since: Timestamp,
}

#[derive(Debug, Default)]
pub struct Expectations {
    by_uid: HashMap<String, Outstanding>,
}

fn expired(since: Timestamp, now: Timestamp) -> bool {
    now.duration_since(since).as_secs() >= EXPIRY.as_secs() as i64
}

impl Expectations {
    /// Before a pass issues `adds` creates and `deletes` deletes.
    pub fn expect(&mut self, uid: &str, adds: usize, deletes: usize, now: Timestamp) {
        self.by_uid.retain(|_, o| !expired(o.since, now));
        if adds == 0 && deletes == 0 {
            return;
        }
        let o = self.by_uid.entry(uid.to_owned()).or_insert(Outstanding {
            adds: 0,
            deletes: 0,
            since: now,
        });
        o.adds = o.adds.max(0) + adds as i64;
        o.deletes = o.deletes.max(0) + deletes as i64;
        o.since = now;
    }

    /// Calls that failed or were skipped will never be observed (S-070).
    pub fn lower(&mut self, uid: &str, adds: usize, deletes: usize) {
        if let Some(o) = self.by_uid.get_mut(uid) {
            o.adds -= adds as i64;
            o.deletes -= deletes as i64;
        }
    }

    /// The watch showed a new pod owned by the DaemonSet `uid`.
    pub fn add_observed(&mut self, uid: &str) {
        if let Some(o) = self.by_uid.get_mut(uid) {
            o.adds -= 1;
        }
    }

    /// The watch showed a pod of the DaemonSet `uid` deleted or being deleted (a graceful
    /// deletion is observed twice; a count below zero is satisfied all the same).
    pub fn deletion_observed(&mut self, uid: &str) {
        if let Some(o) = self.by_uid.get_mut(uid) {
            o.deletes -= 1;
        }
    }

    /// Whether nothing is outstanding, or the wait expired. A satisfied entry is forgotten.
    pub fn satisfied(&mut self, uid: &str, now: Timestamp) -> bool {
        let Some(o) = self.by_uid.get(uid) else {
            return true;
        };
        if expired(o.since, now) || (o.adds <= 0 && o.deletes <= 0) {
            self.by_uid.remove(uid);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn s068_expectations_reset_on_recreate() {
        let mut e = Expectations::default();
        e.expect("old-uid", 1, 0, at(0));
        assert!(
            !e.satisfied("old-uid", at(1)),
            "the create is not observed yet"
        );
        // Deleted and re-created under the same name: a new uid, nothing outstanding.
        assert!(e.satisfied("new-uid", at(1)));
    }

    #[test]
    fn s070_expectations_lowered_after_failures() {
        // 100 creations planned, the API took 10: the other 90 are not awaited.
        let mut e = Expectations::default();
        e.expect("uid", 100, 0, at(0));
        e.lower("uid", 90, 0);
        for _ in 0..9 {
            e.add_observed("uid");
        }
        assert!(!e.satisfied("uid", at(1)));
        e.add_observed("uid");
        assert!(
            e.satisfied("uid", at(1)),
            "the next pass may retry the other 90"
        );
    }

    #[test]
    fn a_pod_deleted_soon_after_it_was_seen_still_counts_and_waits_expire() {
        let mut e = Expectations::default();
        e.expect("uid", 1, 2, at(0));
        e.add_observed("uid");
        // Graceful deletion: the deletionTimestamp and the removal both count.
        e.deletion_observed("uid");
        assert!(!e.satisfied("uid", at(1)));
        e.deletion_observed("uid");
        assert!(e.satisfied("uid", at(2)));
        e.expect("uid", 1, 0, at(10));
        assert!(!e.satisfied("uid", at(309)));
        assert!(e.satisfied("uid", at(310)), "given up after five minutes");
    }
}
