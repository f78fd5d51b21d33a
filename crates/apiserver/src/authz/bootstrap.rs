//! The default policy (`bootstrap.yaml`) reconciled at start, and the ClusterRole aggregation
//! controller, which fills the rules of every ClusterRole with an `aggregationRule` from the
//! ClusterRoles its selectors match (how `admin`, `edit` and `view` get theirs).

use super::policy::PolicyCache;
use super::rbac::{Rule, uncovered};
use crate::error::ApiResult;
use crate::registry::{Registry, Write};
use everynode_api::registry::{self, Kind};
use everynode_api::selector::from_label_selector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const POLICY: &str = include_str!("bootstrap.yaml");
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The objects of the default policy.
pub fn objects() -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(POLICY)
        .filter_map(|doc| Value::deserialize(doc).ok())
        .filter(Value::is_object)
        .collect()
}

fn kind_of(obj: &Value) -> Option<Kind> {
    match obj["kind"].as_str()? {
        "ClusterRole" => Some(Kind::ClusterRole),
        "ClusterRoleBinding" => Some(Kind::ClusterRoleBinding),
        "Role" => Some(Kind::Role),
        "RoleBinding" => Some(Kind::RoleBinding),
        _ => None,
    }
}

/// Creates what is missing; puts back rules an auto-updated ClusterRole lacks.
pub async fn reconcile(api: &Registry) -> ApiResult<()> {
    for obj in objects() {
        let Some(kind) = kind_of(&obj) else {
            continue;
        };
        let res = registry::by_kind(kind);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let ns = namespace.as_deref();
        match api.get(res, ns, &name, false).await {
            Err(e) if e.code == axum::http::StatusCode::NOT_FOUND => {
                match api.create(res, ns, obj.clone(), false, None).await {
                    Ok(_) => {}
                    Err(e) if e.code == axum::http::StatusCode::CONFLICT => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(current) => {
                let auto = current["metadata"]["annotations"][AUTOUPDATE] != "false";
                let lacking = kind == Kind::ClusterRole
                    && !uncovered(&Rule::all_of(&current), &Rule::all_of(&obj)).is_empty();
                if auto && lacking && obj.get("aggregationRule").is_none() {
                    api.update_with(&Write::system(res, None, &name), &|current| {
                        let mut new = current.clone();
                        let mut rules = current["rules"].as_array().cloned().unwrap_or_default();
                        for rule in obj["rules"].as_array().into_iter().flatten() {
                            if !rules.contains(rule) {
                                rules.push(rule.clone());
                            }
                        }
                        new["rules"] = json!(rules);
                        Ok(new)
                    })
                    .await?;
                }
            }
        }
    }
    Ok(())
}

fn labels(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules each aggregated ClusterRole should have, for those whose rules differ: the union,
/// in order and without repeats, of the rules of every other ClusterRole a selector matches.
pub fn aggregated(roles: &BTreeMap<String, Value>) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for (name, role) in roles {
        let Some(selectors) = role["aggregationRule"]["clusterRoleSelectors"].as_array() else {
            continue;
        };
        let selectors: Vec<_> = selectors
            .iter()
            .filter_map(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
            .filter_map(|s| from_label_selector(Some(&s)).ok())
            // An empty selector would aggregate every role; upstream skips it too.
            .filter(|s| !s.is_everything())
            .collect();
        let mut rules: Vec<Value> = Vec::new();
        for (other_name, other) in roles {
            if other_name == name || !selectors.iter().any(|s| s.matches(&labels(other))) {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
        let current = role["rules"].as_array().cloned().unwrap_or_default();
        if current != rules {
            out.push((name.clone(), rules));
        }
    }
    out
}

/// The aggregation controller: whenever a ClusterRole changes, writes the aggregated rules.
pub async fn run_aggregation(api: Arc<Registry>, policy: Arc<PolicyCache>) {
    let res = registry::by_kind(Kind::ClusterRole);
    loop {
        policy.refresh(true);
        let roles = policy.read(|p| p.cluster_role_objects.clone());
        for (name, rules) in aggregated(&roles) {
            let rules = json!(rules);
            let result = api
                .update_with(&Write::system(res, None, &name), &|current| {
                    let mut new = current.clone();
                    new["rules"] = rules.clone();
                    Ok(new)
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(role = %name, error = %e.message, "could not aggregate");
            }
        }
        tokio::select! {
            () = policy.cluster_roles_changed.notified() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_parses_and_validates() {
        let objs = objects();
        assert_eq!(objs.len(), 45);
        for obj in &objs {
            let kind = kind_of(obj).expect("an RBAC kind");
            let res = registry::by_kind(kind);
            let errs = everynode_api::validation::validate_create(res, obj);
            assert!(errs.is_empty(), "{}: {errs:?}", obj["metadata"]["name"]);
        }
    }

    #[test]
    fn admin_edit_and_view_aggregate_transitively() {
        let mut roles: BTreeMap<String, Value> = objects()
            .into_iter()
            .filter(|o| o["kind"] == "ClusterRole")
            .map(|o| (o["metadata"]["name"].as_str().unwrap_or("").to_owned(), o))
            .collect();
        // Run as the controller does, until nothing changes.
        for _ in 0..5 {
            for (name, rules) in aggregated(&roles) {
                if let Some(role) = roles.get_mut(&name) {
                    role["rules"] = json!(rules);
                }
            }
        }
        assert!(aggregated(&roles).is_empty());
        let rules = |n: &str| Rule::all_of(&roles[n]);
        assert!(uncovered(&rules("edit"), &rules("view")).is_empty());
        assert!(uncovered(&rules("admin"), &rules("edit")).is_empty());
        assert!(!uncovered(&rules("view"), &rules("edit")).is_empty());
        let view_secrets =
            super::super::attributes::Attributes::resource("get", "", "secrets", "", "a", "s");
        assert!(
            !rules("view")
                .iter()
                .any(|r| super::super::rbac::rule_allows(r, &view_secrets))
        );
        assert!(
            rules("edit")
                .iter()
                .any(|r| super::super::rbac::rule_allows(r, &view_secrets))
        );
    }
}
