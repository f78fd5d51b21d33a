//! Upstream's in-flight request limits (`--max-requests-inflight`, 400, and
//! `--max-mutating-requests-inflight`, 200): a request over its limit is answered at once with
//! 429 and `Retry-After: 1`, so a burst from one client sheds load instead of queueing behind
//! everyone else's requests. Long-running requests (watches, followed logs) hold no slot, as
//! upstream exempts them.
//!
//! Three of upstream's API Priority and Fairness levels are kept, because without them a burst
//! of ordinary writes starves the requests that keep the cluster alive (seen at 10,000 nodes:
//! the controllers lost their leader lease to 429s, and nodes whose Lease renewals were refused
//! went Unknown):
//! - `exempt`: members of `system:masters` are never refused, as upstream's legacy filter and
//!   its APF both have it;
//! - `leader-election`: the control plane's leader locks (upstream's `system-leader-election`
//!   and `workload-leader-election` flow schemas);
//! - `node-high`: nodes' own Node objects and Leases (upstream's `system-node-high`).
//!
//! The last two have seats of their own, in upstream's proportions (10 and 40 of 245 shares of
//! all the server's seats), and do not take from the shared limits.

use crate::authn::{SYSTEM_MASTERS, UserInfo};
use crate::authz::node::NODES_GROUP;
use crate::error::ApiError;
use crate::request::{ResourcePath, Subresource, parse_path};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use everynode_api::registry::Kind;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Upstream's defaults.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 400;
pub const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT: usize = 200;
/// Watches one user may hold open at once (members of `system:masters` excepted): enough for
/// a fleet of agents or a console, not for one client to hold every watch the server can serve.
pub const DEFAULT_MAX_WATCHES_PER_USER: usize = 1000;

/// Upstream's suggested priority levels' shares of the server's seats: `leader-election` 10,
/// `node-high` 40, of 245 in all.
const LEADER_ELECTION_SHARES: usize = 10;
const NODE_HIGH_SHARES: usize = 40;
const ALL_SHARES: usize = 245;

/// The slots for reads and for writes, and for the two levels kept apart.
#[derive(Debug)]
pub struct InflightLimits {
    reads: Semaphore,
    writes: Semaphore,
    leader_election: Semaphore,
    node_high: Semaphore,
}

impl InflightLimits {
    /// Limits of `max_reads` and `max_writes` requests; 0 means no limit, as upstream. The
    /// kept-apart levels get their upstream share of both together.
    pub fn new(max_reads: usize, max_writes: usize) -> Arc<Self> {
        let slots = |max: usize| {
            Semaphore::new(if max == 0 {
                Semaphore::MAX_PERMITS
            } else {
                max.min(Semaphore::MAX_PERMITS)
            })
        };
        let unlimited = max_reads == 0 || max_writes == 0;
        let share = |shares: usize| {
            if unlimited {
                0
            } else {
                ((max_reads + max_writes) * shares).div_ceil(ALL_SHARES)
            }
        };
        Arc::new(InflightLimits {
            reads: slots(max_reads),
            writes: slots(max_writes),
            leader_election: slots(share(LEADER_ELECTION_SHARES)),
            node_high: slots(share(NODE_HIGH_SHARES)),
        })
    }
}

/// Which seats a request takes: upstream's flow schemas, reduced to the levels kept here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Exempt,
    LeaderElection,
    NodeHigh,
    Shared { mutating: bool },
}

/// The user names upstream's `system-leader-election` flow schema names.
const LEADER_ELECTION_USERS: [&str; 2] =
    ["system:kube-controller-manager", "system:kube-scheduler"];
const KUBE_SYSTEM_SERVICE_ACCOUNTS: &str = "system:serviceaccount:kube-system:";

/// The level of a request from `user` (`None`: not authenticated) of `method` on `path`.
pub fn classify(user: Option<&UserInfo>, method: &Method, path: &str) -> Level {
    let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let shared = Level::Shared { mutating };
    let Some(user) = user else {
        return shared;
    };
    if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
        return Level::Exempt;
    }
    let Some(target) = parse_path(path) else {
        return shared;
    };
    // Upstream's verbs get, create and update: a named GET, a POST, a PUT.
    let get_create_update = (*method == Method::GET && target.name.is_some())
        || *method == Method::POST
        || *method == Method::PUT;
    if get_create_update && leader_election(user, &target) {
        return Level::LeaderElection;
    }
    if user.groups.iter().any(|g| g == NODES_GROUP) && node_high(&target) {
        return Level::NodeHigh;
    }
    shared
}

/// The Endpoints controller's identity: upstream's `endpoint-controller` flow schema sends its
/// Endpoints writes outside kube-system to the shared level, not to leader election.
const ENDPOINT_CONTROLLER: &str = "system:serviceaccount:kube-system:endpoint-controller";

/// Upstream's `system-leader-election` (the controller manager, the scheduler and kube-system's
/// service accounts, on Leases anywhere and on Endpoints and ConfigMaps in kube-system) and
/// `workload-leader-election` (kube-system's service accounts, on those in any namespace, but
/// for the Endpoints controller's own Endpoints).
fn leader_election(user: &UserInfo, target: &ResourcePath) -> bool {
    let kube_system_account = user.name.starts_with(KUBE_SYSTEM_SERVICE_ACCOUNTS);
    if !kube_system_account && !LEADER_ELECTION_USERS.contains(&user.name.as_str()) {
        return false;
    }
    let endpoints_controller_writing_endpoints =
        user.name == ENDPOINT_CONTROLLER && target.res.id == Kind::Endpoints;
    match target.res.id {
        Kind::Lease => target.subresource.is_none(),
        Kind::Endpoints | Kind::ConfigMap => {
            target.subresource.is_none()
                && (target.namespace() == Some("kube-system")
                    || (kube_system_account && !endpoints_controller_writing_endpoints))
        }
        _ => false,
    }
}

/// Upstream's `system-node-high`: nodes (and their status) and Leases, for the nodes group.
fn node_high(target: &ResourcePath) -> bool {
    match target.res.id {
        Kind::Node => matches!(target.subresource, None | Some(Subresource::Status)),
        Kind::Lease => target.subresource.is_none(),
        _ => false,
    }
}

/// Whether a request runs for as long as the client wants (a watch, a followed log): upstream
/// does not count those against the limits.
fn long_running(request: &Request) -> bool {
    let query = request.uri().query().unwrap_or("");
    let set = |name: &str| {
        query.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == name && v != "0" && !v.eq_ignore_ascii_case("false")
        })
    };
    set("watch") || (request.uri().path().ends_with("/log") && set("follow"))
}

/// 429 with upstream's Status and `Retry-After`.
fn too_many() -> Response {
    too_many_saying("Too many requests, please try again later.")
}

/// 429 with `message` and `Retry-After: 1`.
pub fn too_many_saying(message: &str) -> Response {
    let mut error = ApiError::too_many_requests(message);
    error.details = Some(json!({"retryAfterSeconds": 1}));
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The middleware: takes a slot for the request's kind, or answers 429.
pub async fn limit(
    State(limits): State<Arc<InflightLimits>>,
    request: Request,
    next: Next,
) -> Response {
    if long_running(&request) {
        return next.run(request).await;
    }
    let level = classify(
        request.extensions().get::<UserInfo>(),
        request.method(),
        request.uri().path(),
    );
    let slots = match level {
        Level::Exempt => return next.run(request).await,
        Level::LeaderElection => &limits.leader_election,
        Level::NodeHigh => &limits.node_high,
        Level::Shared { mutating: true } => &limits.writes,
        Level::Shared { mutating: false } => &limits.reads,
    };
    match slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => too_many(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tokio::sync::Notify;
    use tower::ServiceExt;

    /// A router behind limits of one read and one write: `POST /w` answers at once, every
    /// other request waits on `release`.
    fn app(release: Arc<Notify>) -> Router {
        let wait = move || {
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                "done"
            }
        };
        Router::new()
            .route("/w", post(|| async { "written" }))
            .fallback(wait)
            .layer(axum::middleware::from_fn_with_state(
                InflightLimits::new(1, 1),
                limit,
            ))
    }

    fn request(method: Method, uri: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .expect("a request")
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, "", groups)
    }

    #[test]
    fn requests_take_the_seats_of_upstreams_flow_schemas() {
        let admin = user("admin", &[SYSTEM_MASTERS]);
        let kcm = user("system:kube-controller-manager", &[]);
        let kube_system_sa = user(
            "system:serviceaccount:kube-system:daemon-set-controller",
            &[],
        );
        let other_sa = user("system:serviceaccount:default:app", &[]);
        let endpoint_controller = user(ENDPOINT_CONTROLLER, &[]);
        let node = user("system:node:n1", &[NODES_GROUP]);
        let lock =
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/everynode-controllers";
        let cases = [
            // system:masters is never refused, whatever it asks.
            (
                Some(&admin),
                Method::POST,
                "/api/v1/namespaces/default/pods",
                Level::Exempt,
            ),
            (Some(&admin), Method::GET, "/api/v1/pods", Level::Exempt),
            // Leader locks: get, create, update of Leases, and of Endpoints and ConfigMaps in
            // kube-system; not lists, not patches.
            (Some(&kcm), Method::PUT, lock, Level::LeaderElection),
            (Some(&kcm), Method::GET, lock, Level::LeaderElection),
            (
                Some(&kcm),
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
                Level::LeaderElection,
            ),
            (
                Some(&kcm),
                Method::GET,
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
                Level::Shared { mutating: false },
            ),
            (
                Some(&kcm),
                Method::PATCH,
                lock,
                Level::Shared { mutating: true },
            ),
            (
                Some(&kcm),
                Method::PUT,
                "/api/v1/namespaces/kube-system/configmaps/lock",
                Level::LeaderElection,
            ),
            (
                Some(&kcm),
                Method::PUT,
                "/api/v1/namespaces/default/configmaps/lock",
                Level::Shared { mutating: true },
            ),
            // kube-system's service accounts: in any namespace (workload-leader-election).
            (
                Some(&kube_system_sa),
                Method::PUT,
                "/api/v1/namespaces/default/endpoints/lock",
                Level::LeaderElection,
            ),
            (
                Some(&kube_system_sa),
                Method::POST,
                "/api/v1/namespaces/default/pods",
                Level::Shared { mutating: true },
            ),
            // ... but for the Endpoints controller's own Endpoints (upstream's
            // `endpoint-controller` flow schema comes first).
            (
                Some(&endpoint_controller),
                Method::PUT,
                "/api/v1/namespaces/default/endpoints/web",
                Level::Shared { mutating: true },
            ),
            (
                Some(&endpoint_controller),
                Method::PUT,
                "/api/v1/namespaces/kube-system/endpoints/lock",
                Level::LeaderElection,
            ),
            (
                Some(&other_sa),
                Method::PUT,
                lock,
                Level::Shared { mutating: true },
            ),
            // Nodes' own Node, its status, and Leases; their other requests share.
            (
                Some(&node),
                Method::PATCH,
                "/api/v1/nodes/n1/status",
                Level::NodeHigh,
            ),
            (
                Some(&node),
                Method::PATCH,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                Level::NodeHigh,
            ),
            (
                Some(&node),
                Method::PATCH,
                "/api/v1/namespaces/default/pods/p/status",
                Level::Shared { mutating: true },
            ),
            (
                None,
                Method::PATCH,
                "/api/v1/nodes/n1/status",
                Level::Shared { mutating: true },
            ),
        ];
        for (who, method, path, want) in cases {
            let name = who.map(|u| u.name.as_str());
            assert_eq!(
                classify(who, &method, path),
                want,
                "{name:?} {method} {path}"
            );
        }
    }

    /// `app`, authenticating as the `x-user` and `x-group` headers say.
    fn app_with_users(release: Arc<Notify>) -> Router {
        app(release).layer(axum::middleware::from_fn(
            |mut request: Request, next: Next| async move {
                let header = |request: &Request, name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let user = (header(&request, "x-user"), header(&request, "x-group"));
                if let (Some(name), Some(group)) = user {
                    request
                        .extensions_mut()
                        .insert(UserInfo::new(&name, "", &[group.as_str()]));
                }
                next.run(request).await
            },
        ))
    }

    fn as_user(method: Method, uri: &str, name: &str, group: &str) -> Request {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("x-user", name)
            .header("x-group", group)
            .body(Body::empty())
            .expect("a request")
    }

    // Paused time, as below: a refusal is immediate.
    #[tokio::test(start_paused = true)]
    async fn full_shared_seats_refuse_others_but_not_masters_nor_node_heartbeats() {
        let release = Arc::new(Notify::new());
        let router = app_with_users(Arc::clone(&release));
        let pods = "/api/v1/namespaces/default/pods";
        // One user's write holds the only shared write seat.
        let held = tokio::spawn(
            router
                .clone()
                .oneshot(as_user(Method::POST, pods, "u", "g")),
        );
        tokio::task::yield_now().await;
        let refused = router
            .clone()
            .oneshot(as_user(Method::POST, pods, "v", "g"))
            .await
            .expect("infallible");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        // The administrator and a node renewing its Lease still get through.
        let admin = tokio::spawn(router.clone().oneshot(as_user(
            Method::POST,
            pods,
            "admin",
            SYSTEM_MASTERS,
        )));
        let lease = tokio::spawn(router.clone().oneshot(as_user(
            Method::PATCH,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            "system:node:n1",
            NODES_GROUP,
        )));
        tokio::task::yield_now().await;
        release.notify_waiters();
        for answer in [held, admin, lease] {
            let answer = answer.await.expect("joined").expect("infallible");
            assert_eq!(answer.status(), StatusCode::OK);
        }
    }

    // Paused time: a request that waited for a slot instead of being refused would trip the
    // timeout at once, where real time would hang.
    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_limit_is_refused_at_once_and_watches_are_exempt() {
        let release = Arc::new(Notify::new());
        let router = app(Arc::clone(&release));
        // One read holds the only read slot.
        let held = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r")));
        tokio::task::yield_now().await;
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            router.clone().oneshot(request(Method::GET, "/r")),
        )
        .await
        .expect("answered at once, not queued behind the held slot")
        .expect("infallible");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // Writes have slots of their own.
        let write = router
            .clone()
            .oneshot(request(Method::POST, "/w"))
            .await
            .expect("infallible");
        assert_eq!(write.status(), StatusCode::OK);
        // A watch holds no slot, so it is not refused.
        let watching = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r?watch=1")));
        tokio::task::yield_now().await;
        release.notify_waiters();
        let held = held.await.expect("joined").expect("infallible");
        assert_eq!(held.status(), StatusCode::OK);
        release.notify_waiters();
        let watching = watching.await.expect("joined").expect("infallible");
        assert_eq!(watching.status(), StatusCode::OK);
        // The slot is free again.
        let again = tokio::spawn(router.clone().oneshot(request(Method::GET, "/r")));
        tokio::task::yield_now().await;
        release.notify_waiters();
        assert_eq!(
            again.await.expect("joined").expect("infallible").status(),
            StatusCode::OK
        );
    }
}
