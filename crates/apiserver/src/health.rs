//! `/healthz`, `/livez` and `/readyz` as upstream serves them: named checks, `?verbose` for the
//! list, `?exclude=<check>` (repeatable) to skip some, `/<endpoint>/<check>` for one; a failure
//! is a 500 listing each check with the reason withheld.

use crate::registry::Registry;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

/// Which of the three endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Healthz,
    Livez,
    Readyz,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Healthz => "healthz",
            Endpoint::Livez => "livez",
            Endpoint::Readyz => "readyz",
        }
    }

    /// The checks, in upstream's order: `ping` and `log` always pass while the process
    /// serves; `etcd` reads the store (the embedded one or etcd); `informer-sync` is the watch
    /// cache having caught up, which only readiness waits for.
    fn checks(self) -> &'static [&'static str] {
        match self {
            Endpoint::Healthz | Endpoint::Livez => &["ping", "log", "etcd"],
            Endpoint::Readyz => &["ping", "log", "etcd", "informer-sync", "shutdown"],
        }
    }
}

async fn run_check(registry: &Registry, name: &str) -> bool {
    match name {
        "etcd" => tokio::time::timeout(
            Duration::from_secs(2),
            registry.store.get("/registry/health"),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        "informer-sync" => registry
            .cache
            .wait_for(0, Duration::from_millis(1))
            .await
            .is_ok(),
        _ => true,
    }
}

/// The query's `verbose` flag and `exclude` names.
fn parse_query(query: Option<&str>) -> (bool, Vec<String>) {
    let mut verbose = false;
    let mut exclude = Vec::new();
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
    for (key, value) in pairs {
        match key.as_str() {
            "verbose" => verbose = true,
            "exclude" => exclude.push(value),
            _ => {}
        }
    }
    (verbose, exclude)
}

/// The text and status for one endpoint given each check's result (pure, for tests).
pub fn render(
    endpoint: Endpoint,
    results: &[(&str, Option<bool>)],
    verbose: bool,
    unknown_excludes: &[String],
) -> (StatusCode, String) {
    let failed = results.iter().any(|(_, r)| *r == Some(false));
    let name = endpoint.name();
    if !failed && !verbose {
        return (StatusCode::OK, "ok".to_owned());
    }
    let mut text = String::new();
    for (check, result) in results {
        match result {
            None => text.push_str(&format!("[+]{check} excluded: ok\n")),
            Some(true) => text.push_str(&format!("[+]{check} ok\n")),
            Some(false) => text.push_str(&format!("[-]{check} failed: reason withheld\n")),
        }
    }
    if !unknown_excludes.is_empty() {
        let quoted: Vec<String> = unknown_excludes.iter().map(|e| format!("{e:?}")).collect();
        text.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    if failed {
        text.push_str(&format!("{name} check failed\n"));
        (StatusCode::INTERNAL_SERVER_ERROR, text)
    } else {
        text.push_str(&format!("{name} check passed\n"));
        (StatusCode::OK, text)
    }
}

async fn serve(registry: &Registry, endpoint: Endpoint, query: Option<&str>) -> Response {
    let (verbose, exclude) = parse_query(query);
    let mut results = Vec::new();
    for check in endpoint.checks() {
        let result = if exclude.iter().any(|e| e == check) {
            None
        } else {
            Some(run_check(registry, check).await)
        };
        results.push((*check, result));
    }
    let unknown: Vec<String> = exclude
        .into_iter()
        .filter(|e| !endpoint.checks().contains(&e.as_str()))
        .collect();
    render(endpoint, &results, verbose, &unknown).into_response()
}

/// `/<endpoint>/<check>`: `ok`, or a 500 naming the failed check; 404 for an unknown check.
pub async fn one(registry: &Registry, endpoint: Endpoint, check: &str) -> Response {
    if !endpoint.checks().contains(&check) {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    if run_check(registry, check).await {
        (StatusCode::OK, "ok").into_response()
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error: {check} check failed\n"),
        )
            .into_response()
    }
}

/// The routes of one endpoint: itself, with a trailing slash, and each check.
pub fn routes(endpoint: Endpoint) -> axum::Router<Arc<Registry>> {
    use axum::routing::get;
    let base = format!("/{}", endpoint.name());
    let all = move |State(r): State<Arc<Registry>>, RawQuery(q): RawQuery| async move {
        serve(&r, endpoint, q.as_deref()).await
    };
    let single = move |State(r): State<Arc<Registry>>, Path(check): Path<String>| async move {
        one(&r, endpoint, &check).await
    };
    axum::Router::new()
        .route(&base, get(all))
        .route(&format!("{base}/"), get(all))
        .route(&format!("{base}/{{check}}"), get(single))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_is_ok_unless_verbose() {
        let results = [("ping", Some(true)), ("etcd", Some(true))];
        assert_eq!(
            render(Endpoint::Readyz, &results, false, &[]),
            (StatusCode::OK, "ok".to_owned())
        );
        assert_eq!(
            render(Endpoint::Readyz, &results, true, &[]).1,
            "[+]ping ok\n[+]etcd ok\nreadyz check passed\n"
        );
    }

    #[test]
    fn a_failed_check_is_a_500_with_the_reason_withheld() {
        let results = [("ping", Some(true)), ("etcd", Some(false))];
        let (code, text) = render(Endpoint::Livez, &results, false, &[]);
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            text,
            "[+]ping ok\n[-]etcd failed: reason withheld\nlivez check failed\n"
        );
    }

    #[test]
    fn excluded_checks_pass_and_unknown_ones_are_named() {
        let results = [("ping", Some(true)), ("etcd", None)];
        let (code, text) = render(Endpoint::Healthz, &results, true, &["nope".to_owned()]);
        assert_eq!(code, StatusCode::OK);
        assert_eq!(
            text,
            "[+]ping ok\n[+]etcd excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nhealthz check passed\n"
        );
    }

    #[test]
    fn the_query_names_verbose_and_exclusions() {
        assert_eq!(
            parse_query(Some("verbose&exclude=etcd&exclude=log")),
            (true, vec!["etcd".to_owned(), "log".to_owned()])
        );
        assert_eq!(parse_query(None), (false, vec![]));
    }
}
