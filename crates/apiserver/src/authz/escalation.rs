//! Escalation prevention, as upstream's RBAC storage enforces it: a user may write a Role or
//! ClusterRole only with rules it already holds (or with `escalate` on it), and a binding only
//! to a role whose rules it holds (or with `bind` on that role). Creating an aggregated
//! ClusterRole needs everything, since its rules are whatever it selects.

use super::attributes::Attributes;
use super::rbac::{Rule, go_quoted, uncovered};
use super::{Authorizer, forbidden_status};
use crate::authn::{REQUEST_USER, UserInfo};
use crate::error::{ApiError, ApiResult};
use everynode_api::registry::{Kind, Resource};
use serde_json::Value;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Checks a Role, ClusterRole, RoleBinding or ClusterRoleBinding about to be written on behalf
/// of the current request's user. Writes outside a request (the server's own) pass.
pub fn check(authorizer: &Authorizer, res: &Resource, obj: &Value) -> ApiResult<()> {
    if !matches!(
        res.id,
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding
    ) {
        return Ok(());
    }
    let Ok(user) = REQUEST_USER.try_with(Clone::clone) else {
        return Ok(());
    };
    let namespace = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let may = |verb: &str, plural: &str, ns: &str, target: &str| {
        authorizer
            .authorize(
                &user,
                &Attributes::resource(verb, GROUP, plural, "", ns, target),
            )
            .allowed()
    };
    let requested = match res.id {
        Kind::Role | Kind::ClusterRole => {
            if may("escalate", res.plural, namespace, name) {
                return Ok(());
            }
            if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                Rule::full_authority()
            } else {
                Rule::all_of(obj)
            }
        }
        _ => {
            let role_kind = obj["roleRef"]["kind"].as_str().unwrap_or("");
            let role_name = obj["roleRef"]["name"].as_str().unwrap_or("");
            let (plural, role_ns) = if role_kind == "Role" {
                ("roles", namespace)
            } else {
                ("clusterroles", "")
            };
            if may("bind", plural, namespace, role_name) {
                return Ok(());
            }
            match role_rules(authorizer, role_kind, role_ns, role_name) {
                Some(rules) => rules,
                None => {
                    return Err(forbidden_status(
                        GROUP,
                        res.plural,
                        name,
                        &format!("{plural}.{GROUP} {role_name:?} not found"),
                    ));
                }
            }
        }
    };
    let missing = uncovered(&authorizer.rules_for(&user, namespace), &requested);
    if missing.is_empty() {
        return Ok(());
    }
    Err(not_held(res, name, &user, &missing))
}

fn role_rules(authorizer: &Authorizer, kind: &str, ns: &str, name: &str) -> Option<Vec<Rule>> {
    authorizer.policy.refresh(true);
    authorizer.policy.read(|p| p.role_rules(kind, ns, name))
}

/// Upstream's "attempting to grant RBAC permissions not currently held" refusal.
fn not_held(res: &Resource, name: &str, user: &UserInfo, missing: &[Rule]) -> ApiError {
    let rules: Vec<String> = missing.iter().map(Rule::compact_string).collect();
    forbidden_status(
        GROUP,
        res.plural,
        name,
        &format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            go_quoted(&user.groups),
            rules.join("\n")
        ),
    )
}
