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

/// How long this process may still act as the leader: until the renew deadline after its last
/// renewal. The controllers' clients check it before every write (`fenced`), so a process that
/// was stopped (SIGSTOP, a long pause) longer than the lease writes nothing on waking, even in
/// the moment before its election loop notices the lease is gone.
#[derive(Clone, Default)]
pub struct Fence {
    until: std::sync::Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Fence {
    pub fn valid(&self) -> bool {
        self.until
            .lock()
            .map(|u| u.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    fn extend_to(&self, until: Instant) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some(until);
        }
    }

    fn revoke(&self) {
        if let Ok(mut u) = self.until.lock() {
            *u = None;
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `client`, refusing writes (anything but GET and HEAD) while `fence` is not valid.
pub fn fenced(client: Client, fence: Fence) -> Client {
    let namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (client, fence) = (client.clone(), fence.clone());
        async move {
            let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
            if !read && !fence.valid() {
                return Err::<http::Response<kube::client::Body>, BoxError>(
                    "this process does not hold the leader lease (or may have lost it): write refused"
                        .into(),
                );
            }
            client.send(request).await.map_err(BoxError::from)
        }
    });
    Client::new(service, namespace)
}

/// Runs `start`'s controllers whenever this process leads; stops them when it loses the lease.
/// Runs until the process ends. `fence` is kept valid while the lease is held.
pub async fn run_elected(
    client: Client,
    s: Settings,
    clock: SharedClock,
    fence: Fence,
    start: impl Fn() -> Vec<JoinHandle<()>>,
) {
    let api: Api<Lease> = Api::namespaced(client, NAMESPACE);
    let mut observer = LastChange::new(None, Instant::now());
    loop {
        while !try_acquire_or_renew(&api, &s, &mut observer, clock.as_ref()).await {
            tokio::time::sleep(s.retry_period).await;
        }
        let mut renewed = Instant::now();
        fence.extend_to(renewed + s.renew_deadline);
        tracing::info!(identity = %s.identity, "became the leader; starting controllers");
        let running = start();
        loop {
            tokio::time::sleep(s.retry_period).await;
            // The time is taken before the write: the lease runs from when it was asked for.
            let asked = Instant::now();
            if try_acquire_or_renew(&api, &s, &mut observer, clock.as_ref()).await {
                renewed = asked;
                fence.extend_to(renewed + s.renew_deadline);
            } else if renewed.elapsed() > s.renew_deadline {
                break;
            }
        }
        fence.revoke();
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

    #[tokio::test(start_paused = true)]
    async fn writes_are_refused_once_the_lease_may_be_lost() {
        let fence = Fence::default();
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = fenced(Client::try_from(config).expect("client"), fence.clone());
        let post = || {
            http::Request::post("/api/v1/namespaces/default/configmaps")
                .body(Vec::new())
                .expect("request")
        };
        let refused = |e: kube::Error| e.to_string().contains("leader lease");
        assert!(refused(
            client.request_text(post()).await.expect_err("never led")
        ));
        fence.extend_to(Instant::now() + Duration::from_secs(10));
        let sent = client
            .request_text(post())
            .await
            .expect_err("nothing listens");
        assert!(!refused(sent), "a leader's write goes out");
        let get = http::Request::get("/api/v1/namespaces")
            .body(Vec::new())
            .expect("request");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(refused(
            client.request_text(post()).await.expect_err("lapsed")
        ));
        let read = client.request_text(get).await.expect_err("nothing listens");
        assert!(!refused(read), "reads are never fenced");
        fence.extend_to(Instant::now() + Duration::from_secs(10));
        fence.revoke();
        assert!(refused(
            client.request_text(post()).await.expect_err("revoked")
        ));
    }

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
