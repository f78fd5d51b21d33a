//! Authorization: whether a user may do what a request asks. Upstream's chain, in order:
//! members of `system:masters` may do anything; the node authorizer (agents, by
//! `system:node:<name>`) comes with node identities; then RBAC over the objects of
//! `rbac.authorization.k8s.io/v1`. A refusal is upstream's 403 `Status`, word for word.

pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod reviews;

use crate::authn::{SYSTEM_MASTERS, UserInfo};
use crate::error::ApiError;
use attributes::Attributes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use policy::PolicyCache;
use rbac::{Rule, keys_of, rule_allows};
use serde_json::json;
use std::sync::Arc;

/// What authorization decided, with upstream's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// The authorizers, over the policy kept in memory.
pub struct Authorizer {
    pub policy: Arc<PolicyCache>,
    cache: Arc<crate::cache::WatchCache>,
}

impl Authorizer {
    pub fn new(cache: Arc<crate::cache::WatchCache>) -> Self {
        Authorizer {
            policy: Arc::new(PolicyCache::new(Arc::clone(&cache))),
            cache,
        }
    }

    /// Decides a request.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            return Decision::Allow(String::new());
        }
        let mut node_reason = String::new();
        if let Some(node) = node::node_of(user) {
            match node::authorize(&self.cache, node, a) {
                Some(Decision::Allow(r)) => return Decision::Allow(r),
                Some(Decision::Deny(r)) => node_reason = r,
                None => {}
            }
        }
        self.policy.refresh(false);
        if let Some(reason) = self.rbac(user, a) {
            return Decision::Allow(reason);
        }
        // Queued RBAC events may not be applied yet (another request was applying them): wait
        // for them before refusing, so a binding the caller just made counts.
        self.policy.refresh(true);
        match self.rbac(user, a) {
            Some(reason) => Decision::Allow(reason),
            None => Decision::Deny(node_reason),
        }
    }

    fn rbac(&self, user: &UserInfo, a: &Attributes) -> Option<String> {
        let keys = keys_of(user);
        let mut reason = None;
        self.policy.read(|p| {
            p.visit(&keys, &a.namespace, &mut |binding, rules| {
                if !rules.iter().any(|r| rule_allows(r, a)) {
                    return false;
                }
                let subject = binding
                    .subjects
                    .iter()
                    .find(|s| s.applies_to(user))
                    .map(rbac::Subject::describe)
                    .unwrap_or_default();
                reason = Some(format!(
                    "RBAC: allowed by {} to {subject}",
                    binding.describe()
                ));
                true
            })
        });
        reason
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide ones included): what
    /// escalation checks and `SelfSubjectRulesReview` compare against.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> Vec<Rule> {
        if user.groups.iter().any(|g| g == SYSTEM_MASTERS) {
            return Rule::full_authority();
        }
        self.policy.refresh(true);
        let keys = keys_of(user);
        let mut rules = Vec::new();
        self.policy.read(|p| {
            p.visit(&keys, namespace, &mut |_, found| {
                for r in found {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
                false
            })
        });
        rules
    }
}

/// Upstream's `forbiddenMessage`.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if !a.resource_request {
        return format!("User {:?} cannot {} path {:?}", user.name, a.verb, a.path);
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if a.namespace.is_empty() {
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            user.name, a.verb, a.api_group
        )
    } else {
        format!(
            "User {:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            user.name, a.verb, a.api_group, a.namespace
        )
    }
}

/// The 403 `Status` for a refused request, as upstream's `NewForbidden` words it.
pub fn forbidden(user: &UserInfo, a: &Attributes, reason: &str) -> ApiError {
    let mut why = forbidden_message(user, a);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    forbidden_status(&a.api_group, &a.resource, &a.name, &why)
}

/// `NewForbidden(groupResource, name, err)`.
pub fn forbidden_status(group: &str, resource: &str, name: &str, why: &str) -> ApiError {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {why}"),
        (false, true) => format!("{qualified} is forbidden: {why}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {why}"),
    };
    let mut err = ApiError::forbidden_message(message);
    let mut details = json!({"group": group, "kind": resource});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !qualified.is_empty() {
        err = err.with_details(details);
    }
    err
}

/// Middleware: refuses what the caller may not do.
pub async fn authorize(
    State(authorizer): State<Arc<Authorizer>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(user) = req.extensions().get::<UserInfo>().cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let a = attributes::of_request(req.method().as_str(), req.uri().path(), req.uri().query());
    match authorizer.authorize(&user, &a) {
        Decision::Allow(_) => next.run(req).await,
        Decision::Deny(reason) => {
            tracing::debug!(user = %user.name, verb = %a.verb, resource = %a.resource, path = %a.path, "forbidden");
            forbidden(&user, &a, &reason).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn forbidden_in_upstreams_words() {
        let alice = UserInfo::new("alice", "", &[]);
        let create = Attributes::resource("create", "apps", "daemonsets", "", "default", "");
        let e = forbidden(&alice, &create, "");
        assert_eq!(e.code, StatusCode::FORBIDDEN);
        assert_eq!(
            e.message,
            "daemonsets.apps is forbidden: User \"alice\" cannot create resource \"daemonsets\" in API group \"apps\" in the namespace \"default\""
        );
        let logs = Attributes::resource("get", "", "pods", "log", "b", "p1");
        assert_eq!(
            forbidden(&alice, &logs, "").message,
            "pods \"p1\" is forbidden: User \"alice\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"b\""
        );
        let nodes = Attributes::resource("list", "", "nodes", "", "", "");
        assert_eq!(
            forbidden(&alice, &nodes, "").message,
            "nodes is forbidden: User \"alice\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        );
        let metrics = Attributes::non_resource("get", "/metrics");
        assert_eq!(
            forbidden(&alice, &metrics, "").message,
            "forbidden: User \"alice\" cannot get path \"/metrics\""
        );
    }
}
