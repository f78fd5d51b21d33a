//! OpenAPI v3 documents for the served group-versions, generated from the k8s-openapi types:
//! component schemas under upstream's names (`io.k8s.api.apps.v1.DaemonSet`) with
//! `x-kubernetes-group-version-kind`, and a path per verb whose operations declare the
//! `fieldValidation` parameter, which is how kubectl decides to validate on the server.

use everynode_api::registry::{RESOURCES, Resource};
use serde_json::{Map, Value, json};

fn gvk(res: &Resource) -> Value {
    json!({"group": res.group, "version": res.version, "kind": res.kind})
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid value: All.",
        ),
        query(
            "fieldManager",
            "A name associated with the actor or entity that is making these changes.",
        ),
        query(
            "fieldValidation",
            "How the server handles unknown or duplicate fields: Ignore, Warn (default) or Strict.",
        ),
    ]
}

/// The path parameters of a path item, declared on the item as upstream's document does.
fn path_params(res: &Resource, with_name: bool) -> Value {
    let param = |name: &str, description: String| {
        json!({"name": name, "in": "path", "required": true, "description": description,
            "schema": {"type": "string", "uniqueItems": true}})
    };
    let mut params = Vec::new();
    if with_name {
        params.push(param("name", format!("name of the {}", res.kind)));
    }
    if res.namespaced {
        params.push(param(
            "namespace",
            "object name and auth scope, such as for teams and projects".into(),
        ));
    }
    Value::Array(params)
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn operation(
    res: &Resource,
    action: &str,
    params: Vec<Value>,
    body: Option<Vec<&str>>,
    response: Value,
) -> Value {
    let mut op = json!({
        "operationId": format!("{action}{}", res.kind),
        "tags": [if res.group.is_empty() { "core_v1".to_owned() } else { format!("{}_{}", res.group.replace('.', "_"), res.version) }],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(res),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": response}}}, "401": {"description": "Unauthorized"}},
    });
    if let Some(types) = body {
        let content: Map<String, Value> = types
            .into_iter()
            .map(|t| {
                (
                    t.to_owned(),
                    json!({"schema": schema_ref(&schema_name(res))}),
                )
            })
            .collect();
        op["requestBody"] = json!({"required": true, "content": content});
    }
    op
}

fn schema_name(res: &Resource) -> String {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let reference = res.schema(&mut generator);
    reference
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or(res.kind)
        .to_owned()
}

fn paths_for(res: &Resource, paths: &mut Map<String, Value>) {
    let prefix = if res.group.is_empty() {
        format!("/api/{}", res.version)
    } else {
        format!("/apis/{}/{}", res.group, res.version)
    };
    let scope = if res.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", res.plural)
    } else {
        format!("{prefix}/{}", res.plural)
    };
    let name = schema_name(res);
    let object = schema_ref(&name);
    let list = json!({"type": "object", "properties": {"items": {"type": "array", "items": object.clone()}}});
    let mut patch_params = write_params();
    patch_params.push(query(
        "force",
        "Force is going to \"force\" Apply requests.",
    ));
    let patch_types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ];
    paths.insert(
        scope.clone(),
        json!({
            "get": operation(res, "list", vec![query("labelSelector", "Label selector."), query("fieldSelector", "Field selector."), query("watch", "Watch for changes.")], None, list.clone()),
            "post": operation(res, "post", write_params(), Some(vec!["application/json", "application/yaml"]), object.clone()),
            "delete": operation(res, "deletecollection", vec![query("labelSelector", "Label selector.")], None, json!({"type": "object"})),
            "parameters": path_params(res, false),
        }),
    );
    paths.insert(
        format!("{scope}/{{name}}"),
        json!({
            "get": operation(res, "get", vec![], None, object.clone()),
            "put": operation(res, "put", write_params(), Some(vec!["application/json", "application/yaml"]), object.clone()),
            "patch": operation(res, "patch", patch_params.clone(), Some(patch_types.clone()), object.clone()),
            "delete": operation(res, "delete", vec![query("gracePeriodSeconds", "Grace period."), query("propagationPolicy", "Orphan, Background or Foreground.")], None, json!({"type": "object"})),
            "parameters": path_params(res, true),
        }),
    );
    for sub in res.subresources.iter().filter(|s| **s == "status") {
        paths.insert(
            format!("{scope}/{{name}}/{sub}"),
            json!({
                "get": operation(res, "get", vec![], None, object.clone()),
                "put": operation(res, "put", write_params(), Some(vec!["application/json"]), object.clone()),
                "patch": operation(res, "patch", patch_params.clone(), Some(patch_types.clone()), object.clone()),
                "parameters": path_params(res, true),
            }),
        );
    }
    if res.namespaced {
        paths.insert(
            format!("{prefix}/{}", res.plural),
            json!({"get": operation(res, "list", vec![], None, list)}),
        );
    }
}

/// The OpenAPI v3 document of one group-version, or `None` when nothing is served there.
pub fn group_version_document(group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for res in &served {
        let reference = res.schema(&mut generator);
        if let Some(name) = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
        {
            kinds.push((name.to_owned(), gvk(res)));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (name, gvk) in kinds {
        if let Some(schema) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    // Patch strategies, where kubectl looks for them (it builds apply patches from these).
    for (schema_name, property, ext) in crate::strategic_merge::openapi_extensions() {
        if let Some(prop) = schemas
            .get_mut(schema_name)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(property))
            .and_then(Value::as_object_mut)
            && let Some(ext) = ext.as_object()
        {
            prop.extend(ext.clone());
        }
    }
    let mut paths = Map::new();
    for res in &served {
        paths_for(res, &mut paths);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The served group-versions as `/openapi/v3` names them: `api/v1`, `apis/apps/v1`, ...
pub fn group_versions() -> Vec<(String, &'static str, &'static str)> {
    let mut out: Vec<(String, &'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        let path = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if !out.iter().any(|(p, _, _)| *p == path) {
            out.push((path, r.group, r.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_document_declares_daemonsets_for_kubectl() {
        let doc = group_version_document("apps", "v1").expect("served");
        let ds = &doc["components"]["schemas"]["io.k8s.api.apps.v1.DaemonSet"];
        assert_eq!(
            ds["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "DaemonSet"}])
        );
        assert!(
            doc["components"]["schemas"]["io.k8s.api.apps.v1.RollingUpdateDaemonSet"]["properties"]
                ["maxSurge"]
                .is_object()
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "DaemonSet"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .expect("params")
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        // Every templated segment of every path is declared as a required path parameter
        // (issue 15: the document declared none, which OpenAPI tools refuse).
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path" && p["required"] == true)
                .filter_map(|p| p["name"].as_str())
                .collect();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(declared.contains(&name), "{path} does not declare {name}");
            }
        }
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let env =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["env"];
        assert_eq!(env["x-kubernetes-list-map-keys"], json!(["name"]));
        let text = doc.to_string();
        assert!(
            !text.contains("#/$defs/"),
            "every reference points into components/schemas"
        );
        assert!(group_version_document("batch", "v1").is_none());
        assert!(
            group_versions()
                .iter()
                .any(|(p, _, _)| p == "apis/coordination.k8s.io/v1")
        );
    }
}
