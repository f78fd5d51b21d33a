//! `rbac.authorization.k8s.io/v1` validation, as upstream's `pkg/apis/rbac/validation`, plus one
//! rule of ours: a verb must be one that something here understands, so that a typo
//! (`verbs: [gets]`) is a 422 naming the field instead of a rule that silently grants nothing.

use crate::field::{BadValue, ErrorList, FieldError, Path};
use crate::names;
use serde_json::Value;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Every verb a request or a policy check here can ask for: the API verbs, and the special
/// ones of RBAC (`bind`, `escalate`), impersonation, CSRs (`approve`, `sign`, `attest`), pod
/// security (`use`) and `nodes/proxy`.
pub const KNOWN_VERBS: &[&str] = &[
    "*",
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "bind",
    "escalate",
    "impersonate",
    "approve",
    "sign",
    "attest",
    "use",
    "proxy",
];

fn strings<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn go_strings(list: &[&str]) -> BadValue {
    let quoted: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    BadValue::Raw(format!("[]string{{{}}}", quoted.join(", ")))
}

/// `ValidatePolicyRule` for each of `rules`, and ClusterRole's `aggregationRule`.
pub fn validate_rules(obj: &Value, namespaced: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let rules = obj.get("rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        errs.extend(validate_rule(
            rule,
            namespaced,
            &Path::root("rules").index(i),
        ));
    }
    if let Some(aggregation) = obj.get("aggregationRule").filter(|v| !v.is_null()) {
        let selectors = aggregation
            .get("clusterRoleSelectors")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if selectors == 0 {
            errs.push(FieldError::required(
                &Path::root("aggregationRule").child("clusterRoleSelectors"),
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
    }
    errs
}

fn validate_rule(rule: &Value, namespaced: bool, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let verbs = strings(rule, "verbs");
    if verbs.is_empty() {
        errs.push(FieldError::required(
            &path.child("verbs"),
            "verbs must contain at least one value",
        ));
    }
    for (i, verb) in verbs.iter().enumerate() {
        if !KNOWN_VERBS.contains(verb) {
            errs.push(FieldError::not_supported(
                &path.child("verbs").index(i),
                *verb,
                KNOWN_VERBS,
            ));
        }
    }
    let urls = strings(rule, "nonResourceURLs");
    let (groups, resources, names) = (
        strings(rule, "apiGroups"),
        strings(rule, "resources"),
        strings(rule, "resourceNames"),
    );
    if !urls.is_empty() {
        if namespaced {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                go_strings(&urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !groups.is_empty() || !resources.is_empty() || !names.is_empty() {
            errs.push(FieldError::invalid(
                &path.child("nonResourceURLs"),
                go_strings(&urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errs;
    }
    if groups.is_empty() {
        errs.push(FieldError::required(
            &path.child("apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if resources.is_empty() {
        errs.push(FieldError::required(
            &path.child("resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errs
}

/// `ValidateRoleBinding` (namespaced) or `ValidateClusterRoleBinding`.
pub fn validate_binding(obj: &Value, namespaced: bool) -> ErrorList {
    let mut errs = ErrorList::new();
    let role_ref = obj.get("roleRef").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let api_group = text(&role_ref, "apiGroup");
    if api_group != GROUP {
        errs.push(FieldError::not_supported(
            &Path::root("roleRef").child("apiGroup"),
            &api_group,
            &[GROUP],
        ));
    }
    let kind = text(&role_ref, "kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind.as_str()) {
        errs.push(FieldError::not_supported(
            &Path::root("roleRef").child("kind"),
            &kind,
            kinds,
        ));
    }
    let name = text(&role_ref, "name");
    if name.is_empty() {
        errs.push(FieldError::required(
            &Path::root("roleRef").child("name"),
            "",
        ));
    } else {
        for m in names::path_segment_name(&name) {
            errs.push(FieldError::invalid(
                &Path::root("roleRef").child("name"),
                &name,
                m,
            ));
        }
    }
    let subjects = obj.get("subjects").and_then(Value::as_array);
    for (i, subject) in subjects.into_iter().flatten().enumerate() {
        errs.extend(validate_subject(
            subject,
            namespaced,
            &Path::root("subjects").index(i),
        ));
    }
    errs
}

fn validate_subject(subject: &Value, namespaced: bool, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let text = |k: &str| {
        subject
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (name, kind, api_group) = (text("name"), text("kind"), text("apiGroup"));
    if name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    match kind.as_str() {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in names::dns1123_subdomain(&name) {
                    errs.push(FieldError::invalid(&path.child("name"), &name, m));
                }
            }
            if !api_group.is_empty() {
                errs.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    &api_group,
                    &[""],
                ));
            }
            if !namespaced && text("namespace").is_empty() {
                errs.push(FieldError::required(&path.child("namespace"), ""));
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                errs.push(FieldError::not_supported(
                    &path.child("apiGroup"),
                    &api_group,
                    &[GROUP],
                ));
            }
        }
        _ => errs.push(FieldError::not_supported(
            &path.child("kind"),
            &kind,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errs
}

/// A binding's `roleRef` as Go's `%#v` prints it, for "cannot change roleRef".
pub fn role_ref_go_value(obj: &Value) -> String {
    let text = |k: &str| {
        obj["roleRef"]
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        text("apiGroup"),
        text("kind"),
        text("name")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules_need_verbs_groups_and_resources_or_urls_alone() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"resources": ["pods"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "verbs": ["gets"]},
            {"nonResourceURLs": ["/healthz"], "resources": ["pods"], "verbs": ["get"]},
        ]});
        assert_eq!(
            messages(&validate_rules(&role, true)),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[2].verbs[0]: Unsupported value: \"gets\": supported values: \"*\", \"get\", \"list\", \"watch\", \"create\", \"update\", \"patch\", \"delete\", \"deletecollection\", \"bind\", \"escalate\", \"impersonate\", \"approve\", \"sign\", \"attest\", \"use\", \"proxy\"",
                "rules[2].resources: Required value: resource rules must supply at least one resource",
                "rules[3].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[3].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let cluster = json!({"rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
                             "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            messages(&validate_rules(&cluster, false)),
            [
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
            ]
        );
    }

    #[test]
    fn bindings_name_a_role_of_the_rbac_group_and_known_subjects() {
        let binding = json!({
        "roleRef": {"apiGroup": "rbac", "kind": "Role", "name": "a/b"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "robot"},
            {"kind": "User", "name": "alice", "apiGroup": ""},
            {"kind": "Robot", "name": "x"},
        ]});
        assert_eq!(
            messages(&validate_binding(&binding, false)),
            [
                "roleRef.apiGroup: Unsupported value: \"rbac\": supported values: \"rbac.authorization.k8s.io\"",
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Invalid value: \"a/b\": may not contain '/'",
                "subjects[0].namespace: Required value",
                "subjects[1].apiGroup: Unsupported value: \"\": supported values: \"rbac.authorization.k8s.io\"",
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
        assert!(
            messages(&validate_binding(&binding, true))
                .iter()
                .all(|m| !m.starts_with("subjects[0].namespace") && !m.starts_with("roleRef.kind"))
        );
    }
}
