//! The HTTP surface: discovery, health, OpenAPI, and every resource path through the typed
//! request extractor to its handler (`handlers`). Authentication wraps all of it.

use crate::authn::{Authenticator, REQUEST_USER, UserInfo, authenticate};
use crate::authz::{Authorizer, authorize, reviews};
use crate::discovery;
use crate::error::ApiError;
use crate::handlers;
use crate::health;
use crate::registry::Registry;
use crate::request::ResourceRequest;
use crate::response::ok;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// Upstream's request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

/// The whole router, authentication included.
pub fn router(
    api: Arc<Registry>,
    authenticator: Arc<Authenticator>,
    authorizer: Arc<Authorizer>,
    audit: Option<crate::audit::AuditLog>,
) -> Router {
    let limits = crate::inflight::InflightLimits::new(
        api.options.max_requests_inflight,
        api.options.max_mutating_requests_inflight,
    );
    let version = get(|| async { ok(&discovery::version()) });
    let core_versions = get(|| async { ok(&discovery::core_versions()) });
    let core_resources = get(|| async {
        discovery::resources("", "v1")
            .map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
    });
    let groups = get(|| async { ok(&discovery::groups()) });
    let group = get(|Path(group): Path<String>| async move {
        discovery::group(&group).map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
    });
    let group_resources = get(
        |Path((group, version)): Path<(String, String)>| async move {
            discovery::resources(&group, &version)
                .map_or_else(|| ApiError::no_route().into_response(), |d| ok(&d))
        },
    );
    // Discovery answers with and without a trailing slash, as upstream (kr8s asks `/version/`).
    Router::new()
        .route("/version", version.clone())
        .route("/version/", version)
        .merge(health::routes(health::Endpoint::Healthz))
        .merge(health::routes(health::Endpoint::Livez))
        .merge(health::routes(health::Endpoint::Readyz))
        .route("/api", core_versions.clone())
        .route("/api/", core_versions)
        .route("/api/v1", core_resources.clone())
        .route("/api/v1/", core_resources)
        .route("/apis", groups.clone())
        .route("/apis/", groups)
        .route("/apis/{group}", group.clone())
        .route("/apis/{group}/", group)
        .route("/apis/{group}/{version}", group_resources.clone())
        .route("/apis/{group}/{version}/", group_resources)
        .route("/metrics", get(crate::metrics::serve))
        .route("/everynode/snapshot", get(crate::snapshot::serve))
        .route("/openapi/v2", get(crate::openapi::v2))
        .route("/openapi/v3", get(crate::openapi::index))
        .route("/openapi/v3/{*path}", get(crate::openapi::document))
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(reviews::self_subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            post(reviews::subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/namespaces/{namespace}/localsubjectaccessreviews",
            post(reviews::local_subject_access),
        )
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            post(reviews::self_subject_rules),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(reviews::self_subject),
        )
        .route(
            "/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            post(crate::service_accounts::token_request),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            get(handlers::exec::exec).post(handlers::exec::exec),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/attach",
            get(handlers::exec::attach).post(handlers::exec::attach),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            get(handlers::port_forward::port_forward).post(handlers::port_forward::port_forward),
        )
        .merge(crate::resource_metrics::routes())
        .fallback(resource_request)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        // Upstream's order: authentication, then the in-flight limit (which counts only
        // authenticated requests), then authorization.
        .layer(axum::middleware::from_fn_with_state(authorizer, authorize))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            crate::inflight::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            authenticate,
        ))
        // Outermost, so 401s, 403s and 429s are recorded too; authentication hands it the
        // user on the response.
        .layer(axum::middleware::from_fn_with_state(
            audit,
            crate::audit::record,
        ))
        // Outside everything, so every answer is counted with its code.
        .layer(axum::middleware::from_fn(crate::metrics::requests::record))
        .with_state(api)
}

/// How much of an over-limit body is read and thrown away before the 413 is sent, so that the
/// client, still sending, sees a finished request and reads the `Status`. Over HTTP/2 an answer
/// to a body still arriving was a stream reset, which curl reports as an error instead of the 413.
/// Past this, the stream is reset after all.
const DRAIN_LIMIT: usize = 32 * 1024 * 1024;

/// Reads a request body of at most `MAX_BODY` bytes. Over the limit: 413 (as upstream words
/// it); unreadable: 400; each as a `Status` like every other error.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        seen += chunk.len();
        if seen <= MAX_BODY {
            kept.extend_from_slice(&chunk);
        } else if seen > MAX_BODY + DRAIN_LIMIT {
            break;
        }
    }
    if seen > MAX_BODY {
        return Err(ApiError::too_large(format!(
            "Request entity too large: limit is {MAX_BODY}"
        )));
    }
    Ok(Bytes::from(kept))
}

/// Every resource path: the typed request, then the endpoint's handler. Failures are logged at
/// debug level and answered with their `Status`.
async fn resource_request(
    State(registry): State<Arc<Registry>>,
    user: Option<axum::Extension<UserInfo>>,
    method: Method,
    request: Result<ResourceRequest, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match (request, read_body(body).await) {
        (Ok(request), Ok(body)) => {
            let serve = handlers::serve(&registry, &method, &request, &headers, body);
            match user {
                Some(axum::Extension(user)) => REQUEST_USER.scope(user, serve).await,
                None => serve.await,
            }
        }
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    result.unwrap_or_else(|e| {
        tracing::debug!(%method, code = e.code.as_u16(), message = %e.message, "request failed");
        e.into_response()
    })
}
