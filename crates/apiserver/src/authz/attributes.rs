//! What a request asks to do, as upstream's `RequestInfoFactory` reads it from the method, the
//! path and the query: a resource request (verb, API group, resource, subresource, namespace,
//! name) or a non-resource one (verb and path). Pure, so that authorization is a function of
//! these attributes and the policy.

use crate::request::Query;
use crate::request::options::ListOptions;
use everynode_api::selector::parse_field_selector;

/// The attributes authorization decides on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The request path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    pub fn resource(
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Attributes {
            verb: verb.to_owned(),
            resource_request: true,
            namespace: namespace.to_owned(),
            api_group: api_group.to_owned(),
            api_version: String::new(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name: name.to_owned(),
            path: String::new(),
        }
    }

    pub fn non_resource(verb: &str, path: &str) -> Self {
        Attributes {
            verb: verb.to_owned(),
            path: path.to_owned(),
            ..Attributes::default()
        }
    }
}

/// A collection GET's `ListOptions`, read with the same decoder the list and watch handlers use,
/// so authorization and the handler agree on whether it is a watch and what it selects (as
/// upstream's RequestInfoFactory decodes them too). An undecodable query is a plain list here;
/// the handler answers it with a 400.
fn list_options(query: Option<&str>) -> ListOptions {
    Query::parse(query)
        .and_then(|q| q.decode::<ListOptions>())
        .unwrap_or_default()
}

/// Reads the attributes of a request (upstream's `NewRequestInfo`).
pub fn of_request(method: &str, path: &str, query: Option<&str>) -> Attributes {
    let non_resource = || {
        let verb = match method {
            "POST" => "post",
            "PUT" => "put",
            "PATCH" => "patch",
            "DELETE" => "delete",
            "HEAD" => "head",
            _ => "get",
        };
        Attributes::non_resource(verb, path)
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (mut api_group, api_version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return non_resource(),
    };
    let mut rest: &[&str] = rest;
    let mut verb = match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
    .to_owned();
    // The legacy `/watch/` prefix.
    if rest.first() == Some(&"watch") {
        verb = "watch".into();
        rest = &rest[1..];
    }
    let mut namespace = String::new();
    if rest.first() == Some(&"namespaces")
        && let Some(ns) = rest.get(1)
    {
        namespace = (*ns).to_owned();
        // `namespaces/{name}/status|finalize` are subresources of the namespace itself.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest = &rest[2..];
        }
    }
    let mut resource = rest.first().copied().unwrap_or("").to_owned();
    let mut name = rest.get(1).copied().unwrap_or("").to_owned();
    let subresource = match rest.get(2) {
        // everynode's read-only views of a DaemonSet are authorized as reading the DaemonSet
        // itself (beyond.md §7.1), so `view` grants them with nothing added.
        Some(&"placement") if api_group == "apps" && resource == "daemonsets" => String::new(),
        // A DaemonSet's merged log is its pods' logs: `get` on `pods/log` in the namespace.
        Some(&"log") if api_group == "apps" && resource == "daemonsets" => {
            api_group = "";
            resource = "pods".into();
            name.clear();
            "log".to_owned()
        }
        // A preview is authorized as the update it previews.
        Some(&"preview") if api_group == "apps" && resource == "daemonsets" => {
            verb = "update".into();
            String::new()
        }
        // Opening a stream into a pod is a `create` whichever method carries it, as upstream
        // authorizes the WebSocket `GET` (AuthorizePodWebsocketUpgradeCreatePermission).
        Some(sub @ (&"exec" | &"attach" | &"portforward"))
            if api_group.is_empty() && resource == "pods" =>
        {
            verb = "create".into();
            (*sub).to_owned()
        }
        Some(sub) => (*sub).to_owned(),
        None => String::new(),
    };
    let collection_get = name.is_empty() && verb == "get";
    let options = if collection_get || (name.is_empty() && verb == "watch") {
        list_options(query)
    } else {
        ListOptions::default()
    };
    if collection_get {
        verb = if options.watch { "watch" } else { "list" }.into();
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection".into();
    }
    // A list or watch selecting one name by field is for that name, as upstream reads it (the
    // node authorizer allows an agent to watch its own Node this way).
    if name.is_empty()
        && matches!(verb.as_str(), "list" | "watch")
        && let Some(fields) = options.field_selector.as_deref()
        && let Ok(selector) = parse_field_selector(fields)
        && let Some(one) = selector.equality_value("metadata.name")
    {
        name = one.to_owned();
    }
    Attributes {
        verb,
        resource_request: true,
        namespace,
        api_group: api_group.to_owned(),
        api_version: api_version.to_owned(),
        resource,
        subresource,
        name,
        path: path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(a: &Attributes) -> (String, String, String, String, String, String) {
        (
            a.verb.clone(),
            a.api_group.clone(),
            a.resource.clone(),
            a.subresource.clone(),
            a.namespace.clone(),
            a.name.clone(),
        )
    }

    fn t(
        v: &str,
        g: &str,
        r: &str,
        s: &str,
        ns: &str,
        n: &str,
    ) -> (String, String, String, String, String, String) {
        (v.into(), g.into(), r.into(), s.into(), ns.into(), n.into())
    }

    #[test]
    fn resource_requests_as_upstream_reads_them() {
        let cases = [
            (
                "GET",
                "/api/v1/pods",
                None,
                t("list", "", "pods", "", "", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods",
                Some("watch=1"),
                t("watch", "", "pods", "", "a", ""),
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods/p/log",
                None,
                t("get", "", "pods", "log", "a", "p"),
            ),
            (
                "POST",
                "/apis/apps/v1/namespaces/a/daemonsets",
                None,
                t("create", "apps", "daemonsets", "", "a", ""),
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/a/daemonsets",
                None,
                t("deletecollection", "apps", "daemonsets", "", "a", ""),
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/a/daemonsets/d/status",
                None,
                t("patch", "apps", "daemonsets", "status", "a", "d"),
            ),
            (
                "GET",
                "/api/v1/namespaces/a",
                None,
                t("get", "", "namespaces", "", "a", "a"),
            ),
            (
                "PUT",
                "/api/v1/namespaces/a/finalize",
                None,
                t("update", "", "namespaces", "finalize", "a", "a"),
            ),
            (
                "GET",
                "/api/v1/namespaces",
                None,
                t("list", "", "namespaces", "", "", ""),
            ),
            (
                "GET",
                "/api/v1/nodes",
                Some("fieldSelector=metadata.name%3Dn1&watch=true"),
                t("watch", "", "nodes", "", "", "n1"),
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/a/pods",
                None,
                t("watch", "", "pods", "", "a", ""),
            ),
            // Read as the watch handler reads it: anything but 0 or false makes a watch.
            (
                "GET",
                "/api/v1/pods",
                Some("watch=yes"),
                t("watch", "", "pods", "", "", ""),
            ),
            (
                "GET",
                "/api/v1/pods",
                Some("watch=FALSE"),
                t("list", "", "pods", "", "", ""),
            ),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                short(&of_request(method, path, query)),
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn discovery_and_health_are_non_resource() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
            "/healthz",
        ] {
            let a = of_request("GET", path, None);
            assert!(!a.resource_request, "{path}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", path));
        }
        assert_eq!(of_request("POST", "/metrics", None).verb, "post");
    }
}
