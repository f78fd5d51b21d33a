//! Leader election on a coordination.k8s.io Lease, as client-go's leaderelection: whoever holds
//! `kube-system/everynode-controllers` runs the controllers; the others wait. The holder renews
//! every retry period; a lease not renewed for its duration (as observed on this process's clock,
//! so clock skew between hosts does not matter) may be taken over. A holder that cannot renew
//! within the renew deadline stops its controllers before anyone else may start theirs
//! (renew deadline < lease duration). Every write carries the resourceVersion it read, so two
//! candidates never both win.

use crate::last_change::LastChange;
use everynode_clock::{Clock, SharedClock};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "everynode-controllers";

#[derive(Clone, Debug)]
pub struct Settings {
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Settings {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(identity: String) -> Settings {
        Settings {
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate decides from the lease it read (pure).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease: create it.
    Create,
    /// Ours: renew it.
    Renew,
    /// Someone else's and expired: take it over.
    TakeOver,
    /// Someone else's and live: wait.
    Wait,
}

/// Decides what to do with `lease`, given when this candidate last saw its record change.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_some() {
            Decision::TakeOver
        } else {
            Decision::Create
        };
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) if unchanged_for > duration => Decision::TakeOver,
        Some(_) => Decision::Wait,
    }
}

/// The part of the lease whose change shows its holder is alive.
type Record = Option<(Option<String>, Option<String>)>;

fn record(lease: Option<&Lease>) -> Record {
    lease.and_then(|l| l.spec.as_ref()).map(|s| {
        (
            s.holder_identity.clone(),
            s.renew_time.as_ref().map(|t| t.0.to_string()),
        )
    })
}

/// One attempt to acquire or renew; `true` when this candidate holds the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    s: &Settings,
    observer: &mut LastChange<Record>,
    clock: &dyn Clock,
) -> bool {
    let current = match api.get_opt(LEASE_NAME).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(error = %e, "reading the leader lease failed");
            return false;
        }
    };
    let unchanged = observer.observe(record(current.as_ref()), Instant::now());
    let now = MicroTime(clock.now());
    let spec = |acquire: Option<MicroTime>, transitions: i32| LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(s.lease_duration.as_secs() as i32),
        acquire_time: acquire,
        renew_time: Some(now.clone()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let old = current
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let result = match decide(current.as_ref(), &s.identity, unchanged, s.lease_duration) {
        Decision::Wait => return false,
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.into()),
                    namespace: Some(NAMESPACE.into()),
                    ..Default::default()
                },
                spec: Some(spec(Some(now.clone()), 0)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Decision::Renew => {
            let mut lease = current.clone().unwrap_or_default();
            lease.spec = Some(spec(
                old.acquire_time.clone(),
                old.lease_transitions.unwrap_or(0),
            ));
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        }
        Decision::TakeOver => {
            let mut lease = current.clone().unwrap_or_default();
            lease.spec = Some(spec(
                Some(now.clone()),
                old.lease_transitions.unwrap_or(0) + 1,
            ));
            api.replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
        }
    };
    match result {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "leader lease write lost a race or failed");
            false
        }
    }
}

/// Runs `start`'s controllers whenever this process leads; stops them when it loses the lease.
/// Runs until the process ends.
pub async fn run_elected(
    client: Client,
    s: Settings,
    clock: SharedClock,
    start: impl Fn() -> Vec<JoinHandle<()>>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut observer = LastChange::new(None, Instant::now());
    loop {
        while !try_acquire_or_renew(&api, &s, &mut observer, clock.as_ref()).await {
            tokio::time::sleep(s.retry_period).await;
        }
        tracing::info!(identity = %s.identity, "became the leader; starting controllers");
        let running = start();
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(s.retry_period).await;
            if try_acquire_or_renew(&api, &s, &mut observer, clock.as_ref()).await {
                renewed = Instant::now();
            } else if renewed.elapsed() > s.renew_deadline {
                break;
            }
        }
        tracing::warn!(identity = %s.identity, "lost the leader lease; stopping controllers");
        for task in running {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(holder: &str) -> Lease {
        serde_json::from_value(json!({"metadata": {"name": LEASE_NAME},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": "2026-11-25T10:00:00.000000Z"}}))
        .expect("lease")
    }

    #[test]
    fn candidates_create_renew_wait_and_take_over() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", Duration::ZERO, d), Decision::Create);
        assert_eq!(
            decide(Some(&lease("a")), "a", Duration::from_secs(60), d),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease("b")), "a", Duration::from_secs(14), d),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&lease("b")), "a", Duration::from_secs(16), d),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("")), "a", Duration::ZERO, d),
            Decision::TakeOver
        );
    }

    #[test]
    fn a_renewal_is_a_change_of_the_record() {
        let l = lease("b");
        let mut renewed = l.clone();
        if let Some(spec) = renewed.spec.as_mut() {
            spec.renew_time = Some(MicroTime("2026-11-25T10:00:02Z".parse().expect("time")));
        }
        assert_ne!(record(Some(&l)), record(Some(&renewed)));
        assert_eq!(record(Some(&l)), record(Some(&lease("b"))));
        assert_eq!(record(None), None);
    }
}
