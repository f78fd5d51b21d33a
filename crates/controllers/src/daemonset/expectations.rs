//! Upstream's "expectations" (spec §2.8): the creates and deletes a DaemonSet's last passes
//! issued that the watch has not shown yet. While any is outstanding, a pass must not create
//! or delete again (it would double them), only update status. Keyed by the DaemonSet's uid,
//! so a DaemonSet re-created under the same name starts clean (S-068).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long an expectation waits for the watch before it is given up (upstream: 5 minutes).
pub const EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Outstanding {
    created: Vec<String>,
    deleted: Vec<String>,
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
    /// Records the pods a pass created and deleted. Only writes the API acknowledged are
    /// recorded: failed and skipped creations are never waited for (S-070). Expired entries,
    /// such as those of DaemonSets deleted since, are dropped.
    pub fn record(
        &mut self,
        uid: &str,
        created: impl IntoIterator<Item = String>,
        deleted: impl IntoIterator<Item = String>,
        now: Timestamp,
    ) {
        self.by_uid.retain(|_, o| !expired(o.since, now));
        let (created, deleted): (Vec<String>, Vec<String>) =
            (created.into_iter().collect(), deleted.into_iter().collect());
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        let entry = self
            .by_uid
            .entry(uid.to_owned())
            .or_insert_with(|| Outstanding {
                created: Vec::new(),
                deleted: Vec::new(),
                since: now,
            });
        entry.created.extend(created);
        entry.deleted.extend(deleted);
        entry.since = now;
    }

    /// Whether every recorded write shows in `pods` (created ones exist, deleted ones are gone
    /// or being deleted), or the wait expired. A satisfied entry is forgotten.
    pub fn satisfied(&mut self, uid: &str, pods: &[Pod], now: Timestamp) -> bool {
        let Some(o) = self.by_uid.get(uid) else {
            return true;
        };
        let present: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        let terminating: HashSet<&str> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        let created_seen = o.created.iter().all(|n| present.contains(n.as_str()));
        let deleted_seen = o
            .deleted
            .iter()
            .all(|n| !present.contains(n.as_str()) || terminating.contains(n.as_str()));
        if expired(o.since, now) || (created_seen && deleted_seen) {
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

    fn pod(name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("pod")
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn s068_expectations_reset_on_recreate() {
        let mut e = Expectations::default();
        e.record("old-uid", ["foo-abcde".to_owned()], [], at(0));
        assert!(
            !e.satisfied("old-uid", &[], at(1)),
            "the create is not observed yet"
        );
        // Deleted and re-created under the same name: a new uid, nothing outstanding.
        assert!(e.satisfied("new-uid", &[], at(1)));
    }

    #[test]
    fn s070_expectations_lowered_after_failures() {
        // 100 creations planned, the API took 10: only those 10 are awaited.
        let mut e = Expectations::default();
        let made: Vec<String> = (0..10).map(|i| format!("foo-{i}")).collect();
        e.record("uid", made.clone(), [], at(0));
        let seen: Vec<Pod> = made.iter().map(|n| pod(n)).collect();
        assert!(
            e.satisfied("uid", &seen, at(1)),
            "the next pass may retry the other 90"
        );
    }

    #[test]
    fn deletions_are_seen_when_gone_or_terminating_and_waits_expire() {
        let mut e = Expectations::default();
        e.record("uid", [], ["a".to_owned(), "b".to_owned()], at(0));
        let mut b = pod("b");
        assert!(!e.satisfied("uid", &[pod("a"), b.clone()], at(1)));
        b.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1)));
        assert!(e.satisfied("uid", &[b], at(2)));
        e.record("uid", ["never".to_owned()], [], at(10));
        assert!(!e.satisfied("uid", &[], at(309)));
        assert!(
            e.satisfied("uid", &[], at(310)),
            "given up after five minutes"
        );
    }
}
