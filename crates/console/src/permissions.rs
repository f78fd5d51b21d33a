//! What the signed-in user may do, asked of the API server as the user
//! (`SelfSubjectRulesReview` per namespace), so pages offer only the actions that would
//! succeed. The server still decides every request; this only hides buttons.

use crate::client::ApiClient;
use axum::http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The resource rules that apply to the user in one namespace.
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    rules: Vec<Value>,
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|a| a.iter().any(|v| v == item || v == "*"))
}

impl Permissions {
    /// The user's rules in `namespace`; none when the review fails.
    pub async fn load(client: &ApiClient, namespace: &str) -> Self {
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        });
        let answer = client
            .write(
                Method::POST,
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                "application/json",
                &review,
            )
            .await;
        let rules = answer
            .ok()
            .and_then(|a| a["status"]["resourceRules"].as_array().cloned())
            .unwrap_or_default();
        Permissions { rules }
    }

    /// Whether a rule grants `verb` on every object of `group`/`resource` (rules limited to
    /// some names do not count).
    pub fn can(&self, verb: &str, group: &str, resource: &str) -> bool {
        self.rules.iter().any(|r| {
            has(&r["verbs"], verb)
                && has(&r["apiGroups"], group)
                && has(&r["resources"], resource)
                && r["resourceNames"].as_array().is_none_or(Vec::is_empty)
        })
    }

    /// What the DaemonSet pages offer.
    pub fn daemonsets(&self) -> DaemonSetActions {
        let can = |verb| self.can(verb, "apps", "daemonsets");
        DaemonSetActions {
            create: can("create"),
            edit: can("update") && can("patch"),
            delete: can("delete"),
        }
    }
}

/// The write actions on DaemonSets a user has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DaemonSetActions {
    pub create: bool,
    /// Edit, edit YAML, redeploy and roll back (each an update or patch).
    pub edit: bool,
    pub delete: bool,
}

/// Permissions for several namespaces, each asked once.
#[derive(Default)]
pub struct ByNamespace(BTreeMap<String, DaemonSetActions>);

impl ByNamespace {
    pub async fn get(&mut self, client: &ApiClient, namespace: &str) -> DaemonSetActions {
        if let Some(actions) = self.0.get(namespace) {
            return *actions;
        }
        let actions = Permissions::load(client, namespace).await.daemonsets();
        self.0.insert(namespace.to_owned(), actions);
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_grant_by_verb_group_and_resource_not_by_name() {
        let p = Permissions {
            rules: vec![
                json!({"verbs": ["get", "list", "watch"], "apiGroups": ["apps"], "resources": ["daemonsets"]}),
                json!({"verbs": ["delete"], "apiGroups": ["apps"], "resources": ["daemonsets"], "resourceNames": ["one"]}),
            ],
        };
        assert!(p.can("list", "apps", "daemonsets"));
        assert_eq!(p.daemonsets(), DaemonSetActions::default());
        let admin = Permissions {
            rules: vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
        };
        assert_eq!(
            admin.daemonsets(),
            DaemonSetActions {
                create: true,
                edit: true,
                delete: true
            }
        );
    }
}
