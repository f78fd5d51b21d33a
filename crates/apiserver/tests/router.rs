//! The router in-process: each verb's status codes and `Status` bodies, through
//! `tower::ServiceExt::oneshot` on the real router over a memory store, without a process or a
//! socket.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use everynode_apiserver::registry::Options;
use everynode_apiserver::server::{self, CacheSizes};
use everynode_clock::FixedClock;
use everynode_store::MemoryStore;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

const TOKEN: &str = "router-test-token";

async fn router() -> axum::Router {
    let clock = Arc::new(FixedClock(
        "2026-11-29T12:00:00Z".parse().expect("a timestamp"),
    ));
    let (_registry, router) = server::start(
        Arc::new(MemoryStore::new(1000)),
        clock,
        Options::default(),
        CacheSizes::default(),
        server::AuthnConfig::admin(TOKEN),
    )
    .await
    .expect("the API server starts");
    router
}

/// One request: method, path, content type and body; the answer's status and JSON body.
async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    content_type: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, content_type)
        .header(header::USER_AGENT, "router-test/1.0")
        .body(body)
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

const JSON: &str = "application/json";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// Asserts a `Status` failure body with `code` and `reason` whose message contains `text`.
fn assert_status(body: &Value, code: u16, reason: &str, text: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["status"], "Failure", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{message:?} lacks {text:?}");
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn create_get_and_their_errors() {
    let r = router().await;
    let (code, created) = call(&r, Method::POST, PODS, JSON, pod("a")).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["metadata"]["creationTimestamp"],
        "2026-11-29T12:00:00Z"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"], "router-test",
        "the user agent up to its first slash manages the fields"
    );
    let (code, body) = call(&r, Method::POST, PODS, JSON, pod("a")).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "AlreadyExists", "pods \"a\" already exists");
    assert_eq!(body["details"]["name"], "a");

    let (code, got) = call(&r, Method::GET, &format!("{PODS}/a"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(got["metadata"]["uid"], created["metadata"]["uid"]);
    let (code, body) = call(&r, Method::GET, &format!("{PODS}/zz"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound", "pods \"zz\" not found");

    // Invalid: a 422 naming the field.
    let mut bad = pod("b");
    bad["spec"]["containers"][0]["image"] = json!("");
    let (code, body) = call(&r, Method::POST, PODS, JSON, bad).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&body, 422, "Invalid", "spec.containers[0].image");
    // A body that is not JSON: 400.
    let (code, body) = call(&r, Method::POST, PODS, JSON, json!("not an object")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "not an object");
    // A media type no decoder takes: 415.
    let (code, _) = call(&r, Method::POST, PODS, "text/plain", pod("c")).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // dryRun=All creates nothing.
    let (code, _) = call(
        &r,
        Method::POST,
        &format!("{PODS}?dryRun=All"),
        JSON,
        pod("d"),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = call(&r, Method::GET, &format!("{PODS}/d"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "a dry run keeps nothing");
}

#[tokio::test]
async fn list_options_and_their_errors() {
    let r = router().await;
    for name in ["a", "b", "c"] {
        call(&r, Method::POST, PODS, JSON, pod(name)).await;
    }
    let (code, list) = call(
        &r,
        Method::GET,
        &format!("{PODS}?limit=2"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    let token = list["metadata"]["continue"]
        .as_str()
        .expect("a continue token");
    let (_, rest) = call(
        &r,
        Method::GET,
        &format!("{PODS}?limit=2&continue={token}"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(rest["items"][0]["metadata"]["name"], "c");

    for (query, names) in [
        ("limit=x", "\"limit\""),
        ("timeoutSeconds=abc", "\"timeoutSeconds\""),
        ("resourceVersionMatch=Bogus", "\"resourceVersionMatch\""),
        ("labelSelector=a%20in%20b", "unable to parse requirement"),
        (
            "fieldSelector=spec.bogus%3D1",
            "field label not supported: spec.bogus",
        ),
        ("continue=garbage", "continue key is not valid"),
    ] {
        let (code, body) = call(
            &r,
            Method::GET,
            &format!("{PODS}?{query}"),
            JSON,
            Value::Null,
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_status(&body, 400, "BadRequest", names);
    }
    // Unknown parameters are ignored, as upstream does.
    let (code, _) = call(
        &r,
        Method::GET,
        &format!("{PODS}?bogus=1"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn update_patch_apply_and_their_errors() {
    let r = router().await;
    let (_, created) = call(&r, Method::POST, PODS, JSON, pod("a")).await;
    let path = format!("{PODS}/a");
    // A stale resourceVersion: 409 Conflict.
    let mut stale = created.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["metadata"]["labels"] = json!({"x": "y"});
    let (code, body) = call(&r, Method::PUT, &path, JSON, stale).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "Conflict", "the object has been modified");
    // A current one: 200.
    let mut current = created.clone();
    current["metadata"]["labels"] = json!({"x": "y"});
    let (code, updated) = call(&r, Method::PUT, &path, JSON, current).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["x"], "y");

    let merge = "application/merge-patch+json";
    let (code, patched) = call(
        &r,
        Method::PATCH,
        &path,
        merge,
        json!({"metadata": {"labels": {"z": "1"}}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(patched["metadata"]["labels"]["z"], "1");
    let (code, body) = call(&r, Method::PATCH, &path, merge, json!([1])).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(
        &body,
        400,
        "BadRequest",
        "a merge patch must be a JSON object",
    );
    let (code, body) = call(
        &r,
        Method::PATCH,
        &format!("{path}?force=true"),
        merge,
        json!({}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let json_patch = "application/json-patch+json";
    let (code, body) = call(
        &r,
        Method::PATCH,
        &path,
        json_patch,
        json!([{"op": "test", "path": "/metadata/name", "value": "other"}]),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (code, _) = call(&r, Method::PATCH, &path, "application/xml", json!({})).await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Server-side apply needs a field manager; with one it creates, then updates.
    let apply = "application/apply-patch+yaml";
    let (code, body) = call(&r, Method::PATCH, &format!("{PODS}/b"), apply, pod("b")).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(&body, 422, "Invalid", "fieldManager");
    let (code, _) = call(
        &r,
        Method::PATCH,
        &format!("{PODS}/b?fieldManager=me"),
        apply,
        pod("b"),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = call(
        &r,
        Method::PATCH,
        &format!("{PODS}/b?fieldManager=me"),
        apply,
        pod("b"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, body) = call(
        &r,
        Method::PATCH,
        &format!("{PODS}/b?fieldManager=me"),
        apply,
        pod("other"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(
        &body,
        400,
        "BadRequest",
        "does not match the name on the URL",
    );
}

#[tokio::test]
async fn delete_and_delete_collection() {
    let r = router().await;
    for name in ["a", "b"] {
        call(&r, Method::POST, PODS, JSON, pod(name)).await;
    }
    // Not bound to a node: deleted at once, the pod itself answered.
    let (code, gone) = call(&r, Method::DELETE, &format!("{PODS}/a"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(gone["metadata"]["name"], "a");
    let (code, body) = call(&r, Method::DELETE, &format!("{PODS}/a"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_status(&body, 404, "NotFound", "pods \"a\" not found");
    let (code, body) = call(
        &r,
        Method::DELETE,
        &format!("{PODS}/b?orphanDependents=true&propagationPolicy=Background"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "cannot be both set");
    let (code, list) = call(&r, Method::DELETE, PODS, JSON, Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"][0]["metadata"]["name"], "b");
    // A cluster-scoped object: a Status of Success.
    let ns = "/api/v1/namespaces";
    call(
        &r,
        Method::POST,
        ns,
        JSON,
        json!({"metadata": {"name": "gone"}}),
    )
    .await;
    let (code, _) = call(&r, Method::DELETE, &format!("{ns}/gone"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn subresources_and_routes() {
    let r = router().await;
    call(&r, Method::POST, PODS, JSON, pod("a")).await;
    // status: read as the object, written alone.
    let (code, _) = call(
        &r,
        Method::GET,
        &format!("{PODS}/a/status"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, status) = call(
        &r,
        Method::PATCH,
        &format!("{PODS}/a/status"),
        "application/merge-patch+json",
        json!({"status": {"phase": "Running"}, "metadata": {"labels": {"ignored": "yes"}}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(status["status"]["phase"], "Running");
    assert!(status["metadata"]["labels"].get("ignored").is_none());
    // log: a pod with no node has nothing to read.
    let (code, body) = call(&r, Method::GET, &format!("{PODS}/a/log"), JSON, Value::Null).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "does not have a host assigned");
    let (code, body) = call(
        &r,
        Method::GET,
        &format!("{PODS}/a/log?tailLines=-1"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "tailLines");
    // binding: a target is required; then the pod is bound.
    let binding = format!("{PODS}/a/binding");
    let (code, body) = call(&r, Method::POST, &binding, JSON, json!({"target": {}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "binding target name is required");
    let (code, body) = call(
        &r,
        Method::POST,
        &binding,
        JSON,
        json!({"metadata": {"name": "a"}, "target": {"kind": "Node", "name": "n1"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["status"], "Success");
    let (code, body) = call(
        &r,
        Method::POST,
        &binding,
        JSON,
        json!({"metadata": {"name": "a"}, "target": {"kind": "Node", "name": "n2"}}),
    )
    .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_status(&body, 409, "Conflict", "already assigned to node \"n1\"");
    // finalize: a namespace's finalizers.
    let (code, ns) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/finalize",
        JSON,
        json!({"metadata": {"name": "default"}, "spec": {"finalizers": []}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{ns}");
    // Methods a path does not take: 405; paths that name nothing: 404.
    let (code, body) = call(&r, Method::POST, &format!("{PODS}/a"), JSON, pod("a")).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    assert_status(
        &body,
        405,
        "MethodNotAllowed",
        "POST is not supported on /api/v1/namespaces/default/pods/a",
    );
    for path in [
        "/api/v1/namespaces/default/pods/a/bogus",
        "/api/v1/widgets",
        "/apis/apps/v1/namespaces/default/daemonsets/x/binding",
    ] {
        let (code, body) = call(&r, Method::GET, path, JSON, Value::Null).await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{path}");
        assert_status(
            &body,
            404,
            "NotFound",
            "could not find the requested resource",
        );
    }
    // A watch answers at once with its stream's headers.
    let request = Request::builder()
        .uri(format!("{PODS}?watch=1&timeoutSeconds=1"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let response = r.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn authentication_and_bad_query_strings() {
    let r = router().await;
    let request = Request::builder()
        .uri(PODS)
        .header(header::AUTHORIZATION, "Bearer wrong")
        .body(Body::empty())
        .expect("a request");
    let response = r.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (code, body) = call(
        &r,
        Method::POST,
        &format!("{PODS}?dryRun=Some"),
        JSON,
        pod("a"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(
        &body,
        400,
        "BadRequest",
        "unsupported dry run value \"Some\"",
    );
    let (code, body) = call(
        &r,
        Method::POST,
        &format!("{PODS}?fieldValidation=Loose"),
        JSON,
        pod("a"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "\"fieldValidation\"");
}

/// Issue 15's input defects, each a regression test: what used to exhaust memory, panic, or be
/// accepted where upstream refuses.
#[tokio::test]
async fn abusive_and_malformed_input_is_refused_with_a_status() {
    let r = router().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    call(
        &r,
        Method::POST,
        cms,
        JSON,
        json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}),
    )
    .await;
    let path = format!("{cms}/cm");
    let json_patch = "application/json-patch+json";

    // A 2 KB patch whose copies double a value: refused before it grows, with a 413.
    // Each copy puts the whole annotations map into itself: 1 KiB doubles 21 times.
    let mut doubling = vec![json!({"op": "add", "path": "/metadata/annotations",
        "value": {"seed": "y".repeat(1024)}})];
    doubling.extend((0..21).map(|i| {
        json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations/c{i}")})
    }));
    let (code, body) = call(
        &r,
        Method::PATCH,
        &format!("{path}?dryRun=All"),
        json_patch,
        json!(doubling),
    )
    .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_status(
        &body,
        413,
        "RequestEntityTooLarge",
        "would add more than 3145728 bytes",
    );
    // Strategic-merge directives of the wrong shape: upstream's 400s, and nothing wiped.
    let smp = "application/strategic-merge-patch+json";
    for (patch, message) in [
        (
            json!({"data": {"$retainKeys": "k"}}),
            "invalid patch format of retainKeys",
        ),
        (
            json!({"$setElementOrder/data": "k"}),
            "invalid patch format of setElementOrder list",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": {"a": 1}}}),
            "invalid patch format of primitive list",
        ),
    ] {
        let (code, body) = call(&r, Method::PATCH, &path, smp, patch.clone()).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{patch}: {body}");
        assert_status(&body, 400, "BadRequest", message);
    }
    let (_, kept) = call(&r, Method::GET, &path, JSON, Value::Null).await;
    assert_eq!(kept["data"], json!({"k": "v"}), "{kept}");
    // More operations than upstream allows.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/data/k", "value": "v"}))
        .collect();
    let (code, body) = call(&r, Method::PATCH, &path, json_patch, json!(many)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_status(
        &body,
        413,
        "RequestEntityTooLarge",
        "The allowed maximum operations in a JSON patch is 10000, got 10001",
    );

    // Replacing the root with anything but an object, or changing or dropping the name:
    // a 400, where these used to panic or be taken silently.
    for value in [
        json!("text"),
        json!(7),
        json!([1]),
        json!(true),
        Value::Null,
    ] {
        let (code, body) = call(
            &r,
            Method::PATCH,
            &path,
            json_patch,
            json!([{"op": "replace", "path": "", "value": value}]),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{value}: {body}");
        assert_status(&body, 400, "BadRequest", "not a JSON object");
    }
    let (code, body) = call(
        &r,
        Method::PATCH,
        &path,
        json_patch,
        json!([{"op": "replace", "path": "/metadata/name", "value": "other"}]),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(
        &body,
        400,
        "BadRequest",
        "the name of the object (other) does not match the name on the URL (cm)",
    );
    let (code, _) = call(
        &r,
        Method::PATCH,
        &path,
        "application/merge-patch+json",
        json!({"metadata": null}),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::BAD_REQUEST,
        "dropping metadata drops the name"
    );
    let (_, kept) = call(&r, Method::GET, &path, JSON, Value::Null).await;
    assert_eq!(kept["data"]["k"], "v", "nothing was lost");

    // ConfigMap and Secret data: at most 1 MiB, as upstream validates.
    let big = "x".repeat(1024 * 1024 + 1);
    let (code, body) = call(
        &r,
        Method::POST,
        cms,
        JSON,
        json!({"metadata": {"name": "big"}, "data": {"k": big}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(
        &body,
        422,
        "Invalid",
        "[]: Too long: must have at most 1048576 bytes",
    );
    use base64::Engine;
    let secret = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1024 * 1024 + 1]);
    let (code, body) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/secrets",
        JSON,
        json!({"metadata": {"name": "big"}, "data": {"k": secret}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_status(
        &body,
        422,
        "Invalid",
        "data: Too long: must have at most 1048576 bytes",
    );
    let exactly = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 1024 * 1024]);
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/secrets",
        JSON,
        json!({"metadata": {"name": "full"}, "data": {"k": exactly}}),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "1 MiB exactly is allowed");

    // A body over the request limit: a 413 Status, not plain text.
    let (code, body) = call(
        &r,
        Method::POST,
        cms,
        JSON,
        json!({"metadata": {"name": "huge"}, "data": {"k": "x".repeat(3 * 1024 * 1024 + 1)}}),
    )
    .await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
    assert_status(
        &body,
        413,
        "RequestEntityTooLarge",
        "Request entity too large: limit is 3145728",
    );

    // Bodies nested 60,000 deep: refused before the parser (whose cost is quadratic in depth)
    // for YAML, by serde_json's own limit for JSON.
    let deep = format!("{}{}", "[".repeat(60_000), "]".repeat(60_000));
    for (content_type, target, method) in [
        ("application/yaml", cms.to_owned(), Method::POST),
        (
            "application/apply-patch+yaml",
            format!("{path}?fieldManager=m"),
            Method::PATCH,
        ),
        (JSON, cms.to_owned(), Method::POST),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(&target)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(format!("{{\"a\": {deep}}}")))
            .expect("a request");
        let response = r.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{content_type}");
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        let body: Value = serde_json::from_slice(&bytes).expect("a Status");
        let expected = if content_type == JSON {
            "recursion limit exceeded"
        } else {
            "nests 60001 levels deep; at most 128 are allowed"
        };
        assert_status(&body, 400, "BadRequest", expected);
    }

    // An empty set in a selector is refused.
    let (code, body) = call(
        &r,
        Method::GET,
        &format!("{cms}?labelSelector=a%20notin%20()"),
        JSON,
        Value::Null,
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_status(&body, 400, "BadRequest", "values set can't be empty");

    // A huge watch timeout is a long watch, not a panic.
    let request = Request::builder()
        .uri(format!("{cms}?watch=1&timeoutSeconds=9223372036854775807"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let response = r.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);

    // The bearer scheme in any case, as upstream reads it.
    let request = Request::builder()
        .uri(cms)
        .header(header::AUTHORIZATION, format!("bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request");
    let response = r.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
}
