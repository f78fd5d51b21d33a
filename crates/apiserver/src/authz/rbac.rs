//! RBAC evaluation, written by hand after upstream's `plugin/pkg/auth/authorizer/rbac` (no crate
//! evaluates Kubernetes RBAC): which rules allow which attributes, which subjects a binding
//! applies to, and whether one set of rules covers another (escalation prevention).

use super::attributes::Attributes;
use crate::authn::UserInfo;
use serde::Serialize;
use serde_json::Value;

/// A `PolicyRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn all_of(role: &Value) -> Vec<Rule> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|rules| rules.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    /// Everything: what `system:masters` holds, and what creating an aggregated ClusterRole
    /// (whose rules are whatever it will select) requires.
    pub fn full_authority() -> Vec<Rule> {
        let all = || vec!["*".to_owned()];
        vec![
            Rule {
                verbs: all(),
                api_groups: all(),
                resources: all(),
                ..Rule::default()
            },
            Rule {
                verbs: all(),
                non_resource_urls: all(),
                ..Rule::default()
            },
        ]
    }

    /// Upstream's `CompactString`: `{APIGroups:["apps"], Resources:["daemonsets"], Verbs:["get"]}`.
    pub fn compact_string(&self) -> String {
        let q = |list: &[String]| go_quoted(list);
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", q(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

/// A list of strings as Go's `%q` prints it: `["a" "b"]`.
pub fn go_quoted(list: &[String]) -> String {
    let quoted: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == item)
}

fn verb_matches(rule: &Rule, verb: &str) -> bool {
    has(&rule.verbs, "*") || has(&rule.verbs, verb)
}

fn api_group_matches(rule: &Rule, group: &str) -> bool {
    has(&rule.api_groups, "*") || has(&rule.api_groups, group)
}

/// `*`, the resource (`pods`, `pods/log`), or `*/subresource`.
fn resource_matches(rule: &Rule, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}/{subresource}")
    };
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn resource_name_matches(rule: &Rule, name: &str) -> bool {
    rule.resource_names.is_empty() || has(&rule.resource_names, name)
}

/// `*`, the path, or a prefix ending in `*`.
fn url_matches(pattern: &str, path: &str) -> bool {
    pattern == "*"
        || pattern == path
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Whether `rule` allows the request.
pub fn rule_allows(rule: &Rule, a: &Attributes) -> bool {
    if a.resource_request {
        verb_matches(rule, &a.verb)
            && api_group_matches(rule, &a.api_group)
            && resource_matches(rule, &a.resource, &a.subresource)
            && resource_name_matches(rule, &a.name)
    } else {
        verb_matches(rule, &a.verb)
            && rule
                .non_resource_urls
                .iter()
                .any(|u| url_matches(u, &a.path))
    }
}

/// A binding's subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl Subject {
    /// The subjects of a binding; a ServiceAccount without a namespace is in the binding's.
    pub fn all_of(binding: &Value) -> Vec<Subject> {
        let binding_ns = binding["metadata"]["namespace"].as_str().unwrap_or("");
        binding
            .get("subjects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = s.get("name")?.as_str()?.to_owned();
                Some(match s.get("kind")?.as_str()? {
                    "User" => Subject::User(name),
                    "Group" => Subject::Group(name),
                    "ServiceAccount" => Subject::ServiceAccount {
                        namespace: s
                            .get("namespace")
                            .and_then(Value::as_str)
                            .filter(|n| !n.is_empty())
                            .unwrap_or(binding_ns)
                            .to_owned(),
                        name,
                    },
                    _ => return None,
                })
            })
            .collect()
    }

    /// The key this subject is indexed by: the user name it stands for, or the group.
    pub fn key(&self) -> SubjectKey {
        match self {
            Subject::User(n) => SubjectKey::User(n.clone()),
            Subject::Group(g) => SubjectKey::Group(g.clone()),
            Subject::ServiceAccount { namespace, name } => {
                SubjectKey::User(service_account_user(namespace, name))
            }
        }
    }

    pub fn applies_to(&self, user: &UserInfo) -> bool {
        match self.key() {
            SubjectKey::User(n) => n == user.name,
            SubjectKey::Group(g) => user.groups.contains(&g),
        }
    }

    /// How upstream names a subject in an allow reason (`User "alice"`).
    pub fn describe(&self) -> String {
        match self {
            Subject::User(n) => format!("User {n:?}"),
            Subject::Group(g) => format!("Group {g:?}"),
            Subject::ServiceAccount { namespace, name } => {
                format!("ServiceAccount {name:?}")
                    + &if namespace.is_empty() {
                        String::new()
                    } else {
                        format!(" in namespace {namespace:?}")
                    }
            }
        }
    }
}

/// `system:serviceaccount:<namespace>:<name>`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKey {
    User(String),
    Group(String),
}

/// The keys a user is found under: its name and each group.
pub fn keys_of(user: &UserInfo) -> Vec<SubjectKey> {
    std::iter::once(SubjectKey::User(user.name.clone()))
        .chain(user.groups.iter().cloned().map(SubjectKey::Group))
        .collect()
}

/// The atoms of a rule: one verb, group, resource and name (or URL) each, as upstream's
/// `BreakdownRule`.
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(Rule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..Rule::default()
                    });
                }
                for name in &rule.resource_names {
                    out.push(Rule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        ..Rule::default()
                    });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(Rule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..Rule::default()
            });
        }
    }
    out
}

fn has_all(owner: &[String], requested: &[String]) -> bool {
    requested.iter().all(|r| has(owner, r))
}

/// Upstream's `ruleCovers`.
fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &sub.api_groups);
    let resources = sub.resources.iter().all(|r| {
        has(&owner.resources, "*")
            || has(&owner.resources, r)
            || r.split_once('/')
                .is_some_and(|(_, sub)| has(&owner.resources, &format!("*/{sub}")))
    });
    let urls = sub.non_resource_urls.iter().all(|u| {
        owner
            .non_resource_urls
            .iter()
            .any(|o| url_matches(o, u) && (o.ends_with('*') || o == u))
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// The atoms of `requested` that no rule of `owner` covers, compacted (atoms differing only in
/// their verb merged), in upstream's order; empty when `owner` covers all of `requested`.
pub fn uncovered(owner: &[Rule], requested: &[Rule]) -> Vec<Rule> {
    let mut missing: Vec<Rule> = Vec::new();
    for atom in requested.iter().flat_map(breakdown) {
        if owner.iter().any(|o| rule_covers(o, &atom)) {
            continue;
        }
        let same_but_verb = missing.iter_mut().find(|m| {
            m.api_groups == atom.api_groups
                && m.resources == atom.resources
                && m.resource_names == atom.resource_names
                && m.non_resource_urls == atom.non_resource_urls
        });
        match same_but_verb {
            Some(m) => {
                if !m.verbs.contains(&atom.verbs[0]) {
                    m.verbs.push(atom.verbs[0].clone());
                }
            }
            None => missing.push(atom),
        }
    }
    missing.sort_by_key(Rule::compact_string);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> Rule {
        Rule::from_json(&v)
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_names_and_urls() {
        let r = rule(
            json!({"apiGroups": ["apps"], "resources": ["daemonsets", "*/status"], "verbs": ["get", "list"]}),
        );
        let get = |res: &str, sub: &str, name: &str| {
            Attributes::resource("get", "apps", res, sub, "a", name)
        };
        assert!(rule_allows(&r, &get("daemonsets", "", "x")));
        assert!(rule_allows(&r, &get("daemonsets", "status", "x")));
        assert!(!rule_allows(&r, &get("daemonsets", "scale", "x")));
        assert!(!rule_allows(
            &r,
            &Attributes::resource("get", "", "daemonsets", "", "a", "x")
        ));
        assert!(!rule_allows(
            &r,
            &Attributes::resource("delete", "apps", "daemonsets", "", "a", "x")
        ));
        let named = rule(
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["c1"], "verbs": ["*"]}),
        );
        assert!(rule_allows(
            &named,
            &Attributes::resource("update", "", "configmaps", "", "a", "c1")
        ));
        assert!(!rule_allows(
            &named,
            &Attributes::resource("list", "", "configmaps", "", "a", "")
        ));
        let logs = rule(json!({"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}));
        assert!(rule_allows(
            &logs,
            &Attributes::resource("get", "", "pods", "log", "a", "p")
        ));
        assert!(!rule_allows(
            &logs,
            &Attributes::resource("get", "", "pods", "", "a", "p")
        ));
        let urls = rule(json!({"nonResourceURLs": ["/apis/*", "/version"], "verbs": ["get"]}));
        assert!(rule_allows(
            &urls,
            &Attributes::non_resource("get", "/apis/apps/v1")
        ));
        assert!(rule_allows(
            &urls,
            &Attributes::non_resource("get", "/version")
        ));
        assert!(!rule_allows(
            &urls,
            &Attributes::non_resource("get", "/version/")
        ));
        assert!(!rule_allows(
            &urls,
            &Attributes::resource("get", "", "pods", "", "", "")
        ));
    }

    #[test]
    fn subjects_and_service_accounts_in_the_bindings_namespace() {
        let binding = json!({"metadata": {"namespace": "a"}, "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "Group", "name": "ops"},
            {"kind": "ServiceAccount", "name": "robot"}]});
        let subjects = Subject::all_of(&binding);
        let robot = UserInfo::new("system:serviceaccount:a:robot", "", &[]);
        assert!(subjects[2].applies_to(&robot));
        assert!(subjects[1].applies_to(&UserInfo::new("bob", "", &["ops"])));
        assert!(!subjects[0].applies_to(&UserInfo::new("bob", "", &["ops"])));
    }

    #[test]
    fn covers_as_upstream_with_the_missing_atoms_compacted() {
        let owner = vec![
            rule(
                json!({"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "list"]}),
            ),
            rule(
                json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["c1"], "verbs": ["get"]}),
            ),
        ];
        let fine = vec![rule(
            json!({"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get"]}),
        )];
        assert!(uncovered(&owner, &fine).is_empty());
        let more = vec![
            rule(
                json!({"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "create", "delete"]}),
            ),
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]})),
        ];
        let missing: Vec<String> = uncovered(&owner, &more)
            .iter()
            .map(Rule::compact_string)
            .collect();
        assert_eq!(
            missing,
            [
                "{APIGroups:[\"\"], Resources:[\"configmaps\"], Verbs:[\"get\"]}",
                "{APIGroups:[\"apps\"], Resources:[\"daemonsets\"], Verbs:[\"create\" \"delete\"]}",
            ]
        );
        let star = vec![rule(
            json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
        )];
        assert!(uncovered(&star, &more).is_empty());
        // A wildcard requested is covered only by a wildcard held.
        let wild = vec![rule(
            json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]}),
        )];
        assert!(!uncovered(&owner, &wild).is_empty());
    }
}
