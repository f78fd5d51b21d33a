//! Upstream's request metrics: `apiserver_request_total`, `apiserver_request_duration_seconds`
//! and `apiserver_current_inflight_requests`, recorded by a middleware outside authentication,
//! so 401s, 403s and 429s are counted as upstream counts them.
//!
//! Labels come from the request's attributes (the same reading authorization uses). A resource
//! or subresource the server does not serve is recorded as `""`, so no client can grow the
//! number of series by inventing paths.

use crate::authz::attributes::{Attributes, of_request};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use everynode_metrics::{register, request_histogram};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::LazyLock;

/// What upstream labels a request with, `code` aside.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub dry_run: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    request_kind: &'static str,
}

#[derive(Clone)]
struct RequestBuckets;

impl MetricConstructor<Histogram> for RequestBuckets {
    fn new_metric(&self) -> Histogram {
        request_histogram()
    }
}

struct RequestMetrics {
    total: Family<CodeLabels, Counter>,
    duration: Family<RequestLabels, Histogram, RequestBuckets>,
    inflight: Family<KindLabels, Gauge>,
}

static METRICS: LazyLock<RequestMetrics> = LazyLock::new(|| RequestMetrics {
    total: register(
        "apiserver_request",
        "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        Family::default(),
    ),
    duration: register(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component. Long-running requests (watches, followed logs) are not observed.",
        Family::new_with_constructor(RequestBuckets),
    ),
    inflight: register(
        "apiserver_current_inflight_requests",
        "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
        Family::default(),
    ),
});

/// Registers the families, so a scrape shows them before the first request.
pub fn init() {
    for kind in ["readOnly", "mutating"] {
        let _ = METRICS
            .inflight
            .get_or_create(&KindLabels { request_kind: kind });
    }
}

/// Upstream's verb label: the method, with LIST, WATCH, APPLY and CONNECT told apart.
fn verb_label(method: &Method, attributes: &Attributes, apply: bool) -> String {
    match attributes.verb.as_str() {
        "list" => "LIST".into(),
        "watch" => "WATCH".into(),
        "patch" if apply => "APPLY".into(),
        _ if matches!(
            attributes.subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        ) =>
        {
            "CONNECT".into()
        }
        _ => method.as_str().to_owned(),
    }
}

/// The labels of a request, from its method, path, query and content type.
pub fn labels_of(method: &Method, path: &str, query: Option<&str>, apply: bool) -> RequestLabels {
    let attributes = of_request(method.as_str(), path, query);
    let verb = verb_label(method, &attributes, apply);
    let dry_run = if query.is_some_and(|q| q.split('&').any(|p| p.starts_with("dryRun="))) {
        "All".to_owned()
    } else {
        String::new()
    };
    if !attributes.resource_request {
        return RequestLabels {
            verb,
            dry_run,
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: String::new(),
            scope: String::new(),
            component: "apiserver",
        };
    }
    let served = everynode_api::registry::find(
        &attributes.api_group,
        &attributes.api_version,
        &attributes.resource,
    );
    let scope = if !attributes.name.is_empty() && attributes.verb != "list" {
        "resource"
    } else if !attributes.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    let known = |s: &str| served.map(|_| s.to_owned()).unwrap_or_default();
    RequestLabels {
        verb,
        dry_run,
        group: known(&attributes.api_group),
        version: known(&attributes.api_version),
        resource: known(&attributes.resource),
        subresource: served
            .filter(|r| {
                r.subresources.contains(&attributes.subresource.as_str())
                    || (r.group.is_empty()
                        && r.plural == "pods"
                        && crate::handlers::exec::SUBRESOURCES
                            .iter()
                            .any(|(s, _)| *s == attributes.subresource))
            })
            .map(|_| attributes.subresource.clone())
            .unwrap_or_default(),
        scope: scope.to_owned(),
        component: "apiserver",
    }
}

/// Whether upstream counts the request as long-running (and keeps it out of the in-flight
/// count and the latency histogram).
fn long_running(labels: &RequestLabels, query: Option<&str>, path: &str) -> bool {
    labels.verb == "WATCH"
        || labels.verb == "CONNECT"
        || (path.ends_with("/log") && query.is_some_and(|q| q.contains("follow=true")))
}

/// Decrements a gauge when dropped, so a request that is cancelled still leaves the count.
struct InflightGuard(Gauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware.
pub async fn record(request: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let apply = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/apply-patch"));
    let query = request.uri().query().map(str::to_owned);
    let path = request.uri().path().to_owned();
    let labels = labels_of(request.method(), &path, query.as_deref(), apply);
    let long = long_running(&labels, query.as_deref(), &path);
    let guard = (!long).then(|| {
        let kind = if matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        ) {
            "readOnly"
        } else {
            "mutating"
        };
        let gauge = METRICS
            .inflight
            .get_or_create(&KindLabels { request_kind: kind })
            .clone();
        gauge.inc();
        InflightGuard(gauge)
    });
    let response = next.run(request).await;
    drop(guard);
    if !long {
        METRICS
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
    METRICS
        .total
        .get_or_create(&CodeLabels {
            request: labels,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: Method, path: &str, query: Option<&str>) -> RequestLabels {
        labels_of(&method, path, query, false)
    }

    #[test]
    fn verbs_and_scopes_as_upstream_labels_them() {
        let l = labels(Method::GET, "/apis/apps/v1/namespaces/a/daemonsets", None);
        assert_eq!(
            (l.verb.as_str(), l.resource.as_str(), l.scope.as_str()),
            ("LIST", "daemonsets", "namespace")
        );
        let l = labels(Method::GET, "/api/v1/pods", Some("watch=true"));
        assert_eq!((l.verb.as_str(), l.scope.as_str()), ("WATCH", "cluster"));
        let l = labels(Method::PUT, "/api/v1/namespaces/a/pods/p/status", None);
        assert_eq!(
            (l.verb.as_str(), l.subresource.as_str(), l.scope.as_str()),
            ("PUT", "status", "resource")
        );
        let l = labels_of(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/a/daemonsets/d",
            Some("dryRun=All&fieldManager=x"),
            true,
        );
        assert_eq!((l.verb.as_str(), l.dry_run.as_str()), ("APPLY", "All"));
        let l = labels(
            Method::POST,
            "/api/v1/namespaces/a/pods/p/exec",
            Some("command=ls"),
        );
        assert_eq!(
            (l.verb.as_str(), l.subresource.as_str()),
            ("CONNECT", "exec")
        );
        let l = labels(Method::GET, "/metrics", None);
        assert_eq!((l.verb.as_str(), l.resource.as_str()), ("GET", ""));
    }

    #[test]
    fn invented_resources_and_subresources_add_no_series() {
        let l = labels(Method::GET, "/apis/made.up/v1/things", None);
        assert_eq!((l.group.as_str(), l.resource.as_str()), ("", ""));
        let l = labels(
            Method::GET,
            "/api/v1/namespaces/a/pods/p/anything-at-all",
            None,
        );
        assert_eq!((l.resource.as_str(), l.subresource.as_str()), ("pods", ""));
    }
}
