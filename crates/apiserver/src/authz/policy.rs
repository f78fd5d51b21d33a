//! The RBAC objects in memory, indexed by subject so that a decision looks up the caller's
//! bindings (by user name and by each group) instead of scanning every binding. Fed from the
//! watch cache: every RBAC event is queued for this index when the cache applies it, so
//! draining the queue before a decision makes the decision as fresh as the cache.

use super::rbac::{Rule, Subject, SubjectKey};
use crate::cache::{EventType, Filter, WatchCache, WatchHandle};
use everynode_api::selector::{FieldSelector, Selector};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

/// Where every RBAC object is stored: `/rbac.authorization.k8s.io/<plural>/...`.
const PREFIX: &str = "/rbac.authorization.k8s.io/";
/// The cache dispatches events by resource, so each is watched on its own.
const PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// A binding, as the index keeps it.
#[derive(Clone, Debug)]
pub struct Binding {
    /// `None` for a ClusterRoleBinding.
    pub namespace: Option<String>,
    pub name: String,
    /// `Role` or `ClusterRole`.
    pub role_kind: String,
    pub role_name: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    /// How upstream names it in an allow reason.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "RoleBinding \"{}/{ns}\" of {} {:?}",
                self.name, self.role_kind, self.role_name
            ),
            None => format!(
                "ClusterRoleBinding {:?} of ClusterRole {:?}",
                self.name, self.role_name
            ),
        }
    }
}

#[derive(Default)]
pub struct Policy {
    /// (namespace, name) → rules.
    roles: HashMap<(String, String), Arc<Vec<Rule>>>,
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    /// ClusterRole objects, for aggregation: name → (labels, aggregation selectors).
    pub cluster_role_objects: BTreeMap<String, Value>,
    /// Storage key → binding.
    bindings: HashMap<String, Arc<Binding>>,
    /// Subject → cluster-wide bindings.
    cluster_index: HashMap<SubjectKey, Vec<Arc<Binding>>>,
    /// (namespace, subject) → bindings in that namespace.
    namespace_index: HashMap<(String, SubjectKey), Vec<Arc<Binding>>>,
}

impl Policy {
    fn apply(&mut self, kind: EventType, key: &str, obj: &Value) -> bool {
        let Some(rest) = key.strip_prefix(PREFIX) else {
            return false;
        };
        let mut parts = rest.splitn(3, '/');
        let plural = parts.next().unwrap_or("");
        let (namespace, name) = match (parts.next(), parts.next()) {
            (Some(ns), Some(name)) => (Some(ns.to_owned()), name.to_owned()),
            (Some(name), None) => (None, name.to_owned()),
            _ => return false,
        };
        let deleted = kind == EventType::Deleted;
        match plural {
            "roles" => {
                let k = (namespace.unwrap_or_default(), name);
                if deleted {
                    self.roles.remove(&k);
                } else {
                    self.roles.insert(k, Arc::new(Rule::all_of(obj)));
                }
                false
            }
            "clusterroles" => {
                if deleted {
                    self.cluster_roles.remove(&name);
                    self.cluster_role_objects.remove(&name);
                } else {
                    self.cluster_roles
                        .insert(name.clone(), Arc::new(Rule::all_of(obj)));
                    self.cluster_role_objects.insert(name, obj.clone());
                }
                true
            }
            "rolebindings" | "clusterrolebindings" => {
                if deleted {
                    self.bindings.remove(key);
                } else {
                    let binding = Binding {
                        namespace,
                        name,
                        role_kind: obj["roleRef"]["kind"].as_str().unwrap_or("").to_owned(),
                        role_name: obj["roleRef"]["name"].as_str().unwrap_or("").to_owned(),
                        subjects: Subject::all_of(obj),
                    };
                    self.bindings.insert(key.to_owned(), Arc::new(binding));
                }
                self.reindex();
                false
            }
            _ => false,
        }
    }

    /// Rebuilds the subject index (bindings change rarely; roles, which change more, are not
    /// in it).
    fn reindex(&mut self) {
        self.cluster_index.clear();
        self.namespace_index.clear();
        for binding in self.bindings.values() {
            for subject in &binding.subjects {
                match &binding.namespace {
                    None => self
                        .cluster_index
                        .entry(subject.key())
                        .or_default()
                        .push(Arc::clone(binding)),
                    Some(ns) => self
                        .namespace_index
                        .entry((ns.clone(), subject.key()))
                        .or_default()
                        .push(Arc::clone(binding)),
                }
            }
        }
    }

    /// The rules a binding grants.
    fn rules_of(&self, binding: &Binding) -> Option<Arc<Vec<Rule>>> {
        match (binding.role_kind.as_str(), &binding.namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&binding.role_name).cloned(),
            ("Role", Some(ns)) => self
                .roles
                .get(&(ns.clone(), binding.role_name.clone()))
                .cloned(),
            _ => None,
        }
    }

    /// The rules of a Role (in `namespace`) or ClusterRole, if it exists.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        match kind {
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), name.to_owned()))
                .map(|r| r.as_ref().clone()),
            _ => self.cluster_roles.get(name).map(|r| r.as_ref().clone()),
        }
    }

    /// Visits every (binding, rules) that applies to a user with these keys, cluster-wide and in
    /// `namespace`; stops when `visit` returns true.
    pub fn visit(
        &self,
        keys: &[SubjectKey],
        namespace: &str,
        visit: &mut dyn FnMut(&Binding, &[Rule]) -> bool,
    ) -> bool {
        for key in keys {
            for binding in self.cluster_index.get(key).into_iter().flatten() {
                if let Some(rules) = self.rules_of(binding)
                    && visit(binding, &rules)
                {
                    return true;
                }
            }
        }
        if namespace.is_empty() {
            return false;
        }
        for key in keys {
            let k = (namespace.to_owned(), key.clone());
            for binding in self.namespace_index.get(&k).into_iter().flatten() {
                if let Some(rules) = self.rules_of(binding)
                    && visit(binding, &rules)
                {
                    return true;
                }
            }
        }
        false
    }
}

/// The policy and the watch that keeps it current.
pub struct PolicyCache {
    policy: RwLock<Policy>,
    watches: Mutex<Option<Vec<WatchHandle>>>,
    cache: Arc<WatchCache>,
    /// Woken when a ClusterRole changes (the aggregation controller waits on it).
    pub cluster_roles_changed: tokio::sync::Notify,
}

impl PolicyCache {
    pub fn new(cache: Arc<WatchCache>) -> Self {
        PolicyCache {
            policy: RwLock::new(Policy::default()),
            watches: Mutex::new(None),
            cache,
            cluster_roles_changed: tokio::sync::Notify::new(),
        }
    }

    fn filter(plural: &str) -> Filter {
        Filter {
            prefix: format!("{PREFIX}{plural}/"),
            labels: Selector::everything(),
            fields: FieldSelector::default(),
        }
    }

    /// Applies every RBAC event the cache has queued for the index. With `wait`, waits for
    /// another caller's refresh instead of skipping it.
    pub fn refresh(&self, wait: bool) {
        let mut guard = match (wait, self.watches.try_lock()) {
            (_, Ok(g)) => g,
            (true, Err(_)) => match self.watches.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            },
            (false, Err(_)) => return,
        };
        if guard.is_none() {
            // First use, or the cache dropped a watch that fell behind: start over from the
            // current state.
            let watches: Result<Vec<_>, _> = PLURALS
                .iter()
                .map(|p| self.cache.watch(Self::filter(p), None))
                .collect();
            match watches {
                Ok(handles) => {
                    *guard = Some(handles);
                    if let Ok(mut p) = self.policy.write() {
                        *p = Policy::default();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch RBAC objects");
                    return;
                }
            }
        }
        let Some(handles) = guard.as_mut() else {
            return;
        };
        let mut events = Vec::new();
        let mut closed = false;
        for handle in handles.iter_mut() {
            loop {
                match handle.try_next_or_closed() {
                    Ok(Some(item)) => events.push(item),
                    Ok(None) => break,
                    Err(crate::cache::WatchClosed) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            *guard = None;
        }
        if events.is_empty() {
            return;
        }
        let mut cluster_roles = false;
        if let Ok(mut policy) = self.policy.write() {
            for (kind, obj) in events {
                let value: Value = serde_json::from_slice(&obj.json).unwrap_or(Value::Null);
                cluster_roles |= policy.apply(kind, &obj.key, &value);
            }
        }
        drop(guard);
        if closed {
            // Rebuild at once rather than deciding on a policy that missed events.
            self.refresh(true);
        }
        if cluster_roles {
            self.cluster_roles_changed.notify_one();
        }
    }

    /// Reads the policy.
    pub fn read<T>(&self, f: impl FnOnce(&Policy) -> T) -> T {
        match self.policy.read() {
            Ok(p) => f(&p),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}
