//! The registry operations behind every REST verb, on objects as JSON. The HTTP layer and the
//! server's own tasks (bootstrap, namespace finalization) both go through here, so every write
//! is defaulted, validated and stored the same way.

use crate::cache::{Filter, WatchCache};
use crate::error::{ApiError, ApiResult};
use crate::object::{self, finalizers, meta_str, remove_meta, set_finalizers, set_meta};
use everynode_api::registry::{Kind, Resource};
use everynode_api::{defaults, strategy, validation};
use everynode_apimachinery::managed_fields;
use everynode_clock::{Clock, format_time};
use everynode_store::{Error as StoreError, KeyValue, Revision, Store};
use rand::Rng;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The finalizer that makes the garbage collector orphan dependents first.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that makes the garbage collector delete dependents first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// How often a write retries after losing a compare-and-swap race it did not ask to lose.
const MAX_RETRIES: usize = 16;

/// Tunables of the API server.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long a consistent read waits for the watch cache before answering 504.
    pub cache_wait: Duration,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The identity presented to node agents when proxying `pods/log`; without one, logs are
    /// unavailable.
    pub agent_client: Option<crate::agent_client::AgentClient>,
    /// Reads and writes served at once; more are answered 429 (upstream's
    /// `--max-requests-inflight` and `--max-mutating-requests-inflight`).
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
    /// The cluster CA (PEM) published in every namespace as `kube-root-ca.crt`; none, none.
    pub root_ca_pem: Option<String>,
    /// The audit log; none, none.
    pub audit: Option<crate::audit::AuditConfig>,
    /// Watches one user may hold open (0: no limit).
    pub max_watches_per_user: usize,
    /// The PriorityClass a daemon pod without `priorityClassName` gets (beyond.md §4); none
    /// keeps upstream's behaviour (priority 0 or the global default).
    pub daemon_priority_class: Option<String>,
    /// The CA that signs approved client certificate requests, and the longest a certificate
    /// it issues lasts (upstream's `--cluster-signing-duration`); none, no CSR controllers.
    pub csr_signer: Option<(Arc<crate::credentials::CsrSigner>, Duration)>,
    /// How often every agent's `/metrics/resource` is read for `metrics.k8s.io` (metrics-server's
    /// `--metric-resolution`).
    pub metric_resolution: Duration,
    /// Where Services get their cluster IPs and node ports.
    pub service_ranges: crate::service_alloc::ServiceRanges,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_wait: Duration::from_secs(3),
            bookmark_interval: Duration::from_secs(30),
            agent_client: None,
            max_requests_inflight: crate::inflight::DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight: crate::inflight::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            root_ca_pem: None,
            audit: None,
            max_watches_per_user: crate::inflight::DEFAULT_MAX_WATCHES_PER_USER,
            daemon_priority_class: Some(crate::admission::DAEMON_PRIORITY_CLASS.to_owned()),
            csr_signer: None,
            metric_resolution: Duration::from_secs(15),
            service_ranges: Default::default(),
        }
    }
}

/// The generic registry (upstream's `registry/generic/registry.Store`): every REST verb's
/// read-modify-write over storage, with the watch cache and the clock.
pub struct Registry {
    pub store: Arc<dyn Store>,
    pub cache: Arc<WatchCache>,
    pub clock: Arc<dyn Clock>,
    pub options: Options,
    /// The authorizers and the RBAC policy they read.
    pub authz: Arc<crate::authz::Authorizer>,
    /// Signs and checks ServiceAccount tokens.
    pub token_issuer: Arc<crate::service_account_token::TokenIssuer>,
    /// Open watches per user.
    pub watch_counts: Arc<crate::watch::WatchCounts>,
    /// The seats users' heavy reads take turns for.
    pub fair_seats: Arc<crate::fairness::FairSeats>,
    /// CPU and memory gathered from the agents, for `metrics.k8s.io`.
    pub usage: Arc<crate::resource_metrics::usage::UsageStore>,
    /// Nodes and pods decoded once per revision, for placement and preview.
    pub decoded_nodes: crate::decoded::Decoded<k8s_openapi::api::core::v1::Node>,
    pub decoded_pods: crate::decoded::Decoded<k8s_openapi::api::core::v1::Pod>,
}

pub use crate::request::options::DeleteOptions;
pub use crate::write::{UpdateMode, Write};

/// What a delete did.
pub enum Deleted {
    /// The object is gone; this was its last state.
    Now(Value),
    /// Deletion is pending on finalizers or a grace period; this is the object now.
    Pending(Value),
}

const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `generateName` + 5 random characters, the base cut to 58 characters as upstream does.
pub fn generate_name(base: &str) -> String {
    let mut rng = rand::rng();
    let base: String = base.chars().take(58).collect();
    let suffix: String = (0..5)
        .map(|_| NAME_CHARS[rng.random_range(0..NAME_CHARS.len())] as char)
        .collect();
    format!("{base}{suffix}")
}

impl Registry {
    /// Where `res`'s object is stored (for `events.k8s.io` Events, the core Event's key).
    fn key(&self, res: &Resource, namespace: Option<&str>, name: &str) -> String {
        res.storage_key(namespace, name)
    }

    /// The bytes stored for `obj`, in the form its storage holds.
    fn encode(res: &Resource, obj: &Value) -> bytes::Bytes {
        object::to_stored(&res.stored_form(obj))
    }

    /// Decodes a body through the resource's type, as upstream's decoder would.
    pub fn decode(&self, res: &Resource, mut obj: Value) -> ApiResult<Value> {
        let api_version = res.api_version();
        match obj.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => obj["apiVersion"] = json!(api_version),
            Some(v) if v != api_version => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )));
            }
            Some(_) => {}
        }
        match obj.get("kind").and_then(Value::as_str) {
            None | Some("") => obj["kind"] = json!(res.kind),
            Some(k) if k != res.kind => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    res.kind
                )));
            }
            Some(_) => {}
        }
        res.decode(obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {}",
                res.kind, res.version, res.kind, e.message
            ))
        })
    }

    /// Checks the namespace exists and is not terminating (upstream's NamespaceLifecycle).
    async fn check_namespace(&self, res: &Resource, namespace: &str) -> ApiResult<()> {
        let ns_res = everynode_api::registry::by_kind(Kind::Namespace);
        let (_, ns) = self
            .stored(ns_res, &ns_res.key(None, namespace), namespace)
            .await?;
        if meta_str(&ns, "deletionTimestamp").is_some()
            && res.id != Kind::Event
            && res.id != Kind::EventsV1Event
        {
            return Err(ApiError::forbidden_message(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Creates an object. `namespace` comes from the URL (ignored for cluster-scoped resources).
    pub async fn create(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        obj: Value,
        dry_run: bool,
        manager: Option<&str>,
    ) -> ApiResult<Value> {
        let mut obj = self.decode(res, obj)?;
        if let Some(rv) = meta_str(&obj, "resourceVersion")
            && !rv.is_empty()
        {
            // Upstream answers this plain storage error with a 500 and no reason.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if res.namespaced {
            let ns = namespace.ok_or_else(|| {
                ApiError::method_not_allowed(format!(
                    "{} must be created in a namespace",
                    res.group_resource()
                ))
            })?;
            if let Some(body_ns) = meta_str(&obj, "namespace")
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            set_meta(&mut obj, "namespace", json!(ns));
        } else {
            remove_meta(&mut obj, "namespace");
        }
        set_meta(&mut obj, "uid", json!(uuid::Uuid::new_v4().to_string()));
        set_meta(
            &mut obj,
            "creationTimestamp",
            json!(format_time(self.clock.now())),
        );
        for f in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            remove_meta(&mut obj, f);
        }
        defaults::apply(res.id, &mut obj);
        strategy::prepare_for_create(res, &mut obj);
        if res.id == Kind::CertificateSigningRequest {
            crate::csr::record_requestor(&mut obj);
        }
        let generate = meta_str(&obj, "generateName")
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        let has_name = meta_str(&obj, "name").is_some_and(|n| !n.is_empty());
        if !has_name && let Some(base) = &generate {
            set_meta(&mut obj, "name", json!(generate_name(base)));
        }
        if res.namespaced
            && let Some(ns) = namespace
        {
            self.check_namespace(res, ns).await?;
        }
        if res.id == Kind::Pod {
            crate::admission::pod_create(self, res, &mut obj).await?;
            crate::service_accounts::admit_pod(self, res, &mut obj).await?;
        }
        let errors = validation::validate_create(res, &obj);
        let display_name = meta_str(&obj, "name").unwrap_or_default().to_owned();
        if !errors.is_empty() {
            return Err(ApiError::invalid(res, &display_name, &errors));
        }
        crate::authz::escalation::check(&self.authz, res, &obj)?;
        crate::authz::node::admit_current(res, &obj)?;
        if let Some(manager) = manager {
            self.record_update(res, None, &mut obj, manager, UpdateMode::Main);
        }
        // Allocated after field tracking: the server, not the client, sets these.
        let claimed = if res.id == Kind::Service {
            crate::service_alloc::allocate(
                self.store.as_ref(),
                &self.options.service_ranges,
                self.clock.now(),
                None,
                &mut obj,
                dry_run,
            )
            .await?
        } else {
            Default::default()
        };
        if dry_run {
            return Ok(obj);
        }
        let created = self
            .create_stored(res, namespace, &mut obj, has_name, generate)
            .await;
        if created.is_err() {
            crate::service_alloc::give_back(self.store.as_ref(), claimed).await;
        }
        created.map(|()| obj)
    }

    /// Writes a new object, with a fresh name when `generateName` made one that is taken.
    async fn create_stored(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        obj: &mut Value,
        has_name: bool,
        generate: Option<String>,
    ) -> ApiResult<()> {
        let display_name = meta_str(obj, "name").unwrap_or_default().to_owned();
        for _ in 0..MAX_RETRIES {
            let name = meta_str(obj, "name").unwrap_or_default().to_owned();
            let key = self.key(res, namespace, &name);
            match self.store.create(&key, Self::encode(res, obj)).await {
                Ok(kv) => {
                    object::set_rv(obj, kv.mod_revision);
                    return Ok(());
                }
                Err(StoreError::AlreadyExists(_)) if !has_name && generate.is_some() => {
                    let base = generate.clone().unwrap_or_default();
                    set_meta(obj, "name", json!(generate_name(&base)));
                }
                Err(e) => return Err(ApiError::from_store(res, &name, e)),
            }
        }
        Err(ApiError::already_exists(res, &display_name))
    }

    /// Reads one object. `any_version` serves from the cache without waiting (resourceVersion=0).
    pub async fn get(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        any_version: bool,
    ) -> ApiResult<Value> {
        if any_version {
            let cached = self
                .cache
                .get(&res.key(namespace, name))
                .ok_or_else(|| ApiError::not_found(res, name))?;
            return serde_json::from_slice(&cached.json).map_err(ApiError::storage);
        }
        let key = self.key(res, namespace, name);
        self.stored(res, &key, name).await.map(|(_, object)| object)
    }

    /// The stored object at `key` with its store record, or NotFound naming `res` and `name`.
    async fn stored(&self, res: &Resource, key: &str, name: &str) -> ApiResult<(KeyValue, Value)> {
        let kv = self
            .store
            .get(key)
            .await
            .map_err(|e| ApiError::from_store(res, name, e))?
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let object = res.view_of_stored(object::from_stored(&kv));
        Ok((kv, object))
    }

    /// Waits until the cache reflects every write acknowledged so far, by this server or, on a
    /// shared store (etcd), by any other.
    pub async fn fresh_cache(&self) -> ApiResult<Revision> {
        let rev = self
            .store
            .latest_revision()
            .await
            .map_err(ApiError::storage)?;
        self.cache
            .wait_for(rev, self.options.cache_wait)
            .await
            .map_err(|e| ApiError::timeout(e.to_string()))?;
        Ok(rev)
    }

    /// The shared read-modify-write loop: reads the stored object, applies `mutate`, runs the
    /// registry rules for `mode`, and writes with compare-and-swap. A lost race is retried unless
    /// the caller pinned a resourceVersion.
    pub async fn update_with(
        &self,
        write: &Write<'_>,
        mutate: &(dyn Fn(&Value) -> ApiResult<Value> + Send + Sync),
    ) -> ApiResult<Value> {
        let Write {
            res,
            namespace,
            name,
            mode,
            dry_run,
            manager,
        } = *write;
        let key = self.key(res, namespace, name);
        for _ in 0..MAX_RETRIES {
            let (kv, current) = self.stored(res, &key, name).await?;
            let mut new = mutate(&current)?;
            let pinned = meta_str(&new, "resourceVersion")
                .filter(|rv| !rv.is_empty())
                .map(str::to_owned);
            if let Some(rv) = &pinned
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::modified(res, name));
            }
            if let (Some(new_uid), Some(cur_uid)) =
                (meta_str(&new, "uid"), meta_str(&current, "uid"))
                && !new_uid.is_empty()
                && new_uid != cur_uid
            {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {cur_uid}"
                    ),
                ));
            }
            // System fields always come from storage.
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
            ] {
                match current.get("metadata").and_then(|m| m.get(f)) {
                    Some(v) => set_meta(&mut new, f, v.clone()),
                    None => remove_meta(&mut new, f),
                }
            }
            if res.id == Kind::Service && mode == UpdateMode::Main {
                crate::service_alloc::carry_over_allocations(&current, &mut new);
            }
            let errors = match mode {
                UpdateMode::Main => {
                    defaults::apply(res.id, &mut new);
                    strategy::prepare_for_update(res, &mut new, &current);
                    validation::validate_update(res, &new, &current)
                }
                UpdateMode::Status if res.id == Kind::CertificateSigningRequest => {
                    let now = format_time(self.clock.now());
                    everynode_api::csr::prepare_for_status_update(&mut new, &current, &now);
                    validation::validate_status_update(res, &new, &current)
                }
                UpdateMode::Status => {
                    strategy::prepare_for_status_update(&mut new, &current);
                    validation::validate_status_update(res, &new, &current)
                }
                UpdateMode::Approval => {
                    let now = format_time(self.clock.now());
                    everynode_api::csr::prepare_for_approval_update(&mut new, &current, &now);
                    validation::validate_status_update(res, &new, &current)
                }
                UpdateMode::System => Vec::new(),
            };
            if !errors.is_empty() {
                return Err(ApiError::invalid(res, name, &errors));
            }
            // Only a change of what is granted is checked, so metadata edits (labels, the GC's
            // finalizers) stay open to whoever may update the object.
            let grants = ["rules", "aggregationRule", "subjects", "roleRef"];
            if mode == UpdateMode::Main && grants.iter().any(|f| new.get(*f) != current.get(*f)) {
                crate::authz::escalation::check(&self.authz, res, &new)?;
            }
            if let Some(manager) = manager {
                self.record_update(res, Some(&current), &mut new, manager, mode);
            }
            let deleting = meta_str(&current, "deletionTimestamp").is_some();
            let old_finalizers = finalizers(&current);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !old_finalizers.contains(f))
                .collect();
            if deleting && !added.is_empty() && mode == UpdateMode::Main {
                let e = everynode_api::field::FieldError::forbidden(
                    &everynode_api::field::Path::root("metadata").child("finalizers"),
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                );
                return Err(ApiError::invalid(res, name, &[e]));
            }
            if object::without_rv(&new) == object::without_rv(&current) {
                return Ok(current);
            }
            let claimed = if res.id == Kind::Service && mode == UpdateMode::Main {
                crate::service_alloc::allocate(
                    self.store.as_ref(),
                    &self.options.service_ranges,
                    self.clock.now(),
                    Some(&current),
                    &mut new,
                    dry_run,
                )
                .await?
            } else {
                Default::default()
            };
            if dry_run {
                return Ok(new);
            }
            let deleting = self.deletion_complete(res, &new);
            let written = if deleting {
                self.store.delete(&key, Some(kv.mod_revision)).await
            } else {
                self.store
                    .update(&key, Self::encode(res, &new), kv.mod_revision)
                    .await
            };
            match written {
                Ok(stored) => {
                    object::set_rv(&mut new, stored.mod_revision);
                    if res.id == Kind::Service {
                        let kept = (!deleting).then_some(&new);
                        crate::service_alloc::release(self.store.as_ref(), &current, kept).await;
                    }
                    return Ok(new);
                }
                Err(e) => {
                    crate::service_alloc::give_back(self.store.as_ref(), claimed).await;
                    match e {
                        StoreError::Conflict { .. } if pinned.is_none() => continue,
                        e => return Err(ApiError::from_store(res, name, e)),
                    }
                }
            }
        }
        Err(ApiError::modified(res, name))
    }

    /// Gives `manager` the fields this write changes (`metadata.managedFields`). Server-internal
    /// writes are not tracked.
    fn record_update(
        &self,
        res: &Resource,
        old: Option<&Value>,
        new: &mut Value,
        manager: &str,
        mode: UpdateMode,
    ) {
        let Some(part) = self.field_part(res, mode) else {
            return;
        };
        let time = format_time(self.clock.now());
        let api_version = res.api_version();
        let writer = managed_fields::Writer {
            manager,
            api_version: &api_version,
            time: &time,
            part,
        };
        managed_fields::record_update(old, new, res.id, writer);
    }

    /// Which part of the object a write in `mode` owns, for field tracking.
    pub fn field_part(&self, res: &Resource, mode: UpdateMode) -> Option<managed_fields::Part> {
        match mode {
            UpdateMode::Main => Some(managed_fields::Part::Main {
                has_status: res.subresources.contains(&"status"),
            }),
            UpdateMode::Status | UpdateMode::Approval => Some(managed_fields::Part::Status),
            UpdateMode::System => None,
        }
    }

    /// An object marked for deletion goes once no finalizer and no grace period holds it.
    fn deletion_complete(&self, res: &Resource, obj: &Value) -> bool {
        if meta_str(obj, "deletionTimestamp").is_none() || !finalizers(obj).is_empty() {
            return false;
        }
        if res.id == Kind::Namespace
            && obj
                .get("spec")
                .and_then(|s| s.get("finalizers"))
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        {
            return false;
        }
        obj.get("metadata")
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
    }

    /// Replaces an object (PUT). Leases, Events and Endpoints are created when absent, as upstream allows.
    pub async fn replace(&self, write: &Write<'_>, body: Value) -> ApiResult<(Value, bool)> {
        let (res, namespace, name) = (write.res, write.namespace, write.name);
        let mut obj = self.decode(res, body)?;
        match meta_str(&obj, "name") {
            Some(n) if !n.is_empty() && n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => set_meta(&mut obj, "name", json!(name)),
        }
        if res.namespaced
            && let (Some(body_ns), Some(ns)) = (meta_str(&obj, "namespace"), namespace)
            && !body_ns.is_empty()
            && body_ns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let allow_create = matches!(
            res.id,
            Kind::Lease | Kind::Event | Kind::EventsV1Event | Kind::Endpoints
        );
        let result = self.update_with(write, &|_| Ok(obj.clone())).await;
        match result {
            Err(e)
                if e.code == axum::http::StatusCode::NOT_FOUND
                    && allow_create
                    && write.mode == UpdateMode::Main =>
            {
                let mut fresh = obj.clone();
                remove_meta(&mut fresh, "resourceVersion");
                Ok((
                    self.create(res, namespace, fresh, write.dry_run, write.manager)
                        .await?,
                    true,
                ))
            }
            other => other.map(|v| (v, false)),
        }
    }

    /// Deletes an object with upstream's graceful and finalizer semantics.
    pub async fn delete(
        &self,
        res: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deleted> {
        if res.id == Kind::Namespace && matches!(name, "default" | "kube-system" | "kube-public") {
            return Err(ApiError::forbidden(
                res,
                name,
                "this namespace may not be deleted",
            ));
        }
        if let Some(p) = &opts.propagation_policy
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )));
        }
        let key = self.key(res, namespace, name);
        for _ in 0..MAX_RETRIES {
            let (kv, current) = self.stored(res, &key, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                let have = meta_str(&current, "uid").unwrap_or_default();
                if uid != have {
                    return Err(ApiError::conflict(
                        res,
                        name,
                        &format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_rv
                && *rv != kv.mod_revision.to_string()
            {
                return Err(ApiError::conflict(
                    res,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in meta: {}",
                        kv.mod_revision
                    ),
                ));
            }
            let mut new = current.clone();
            let mut list = finalizers(&current);
            match opts.propagation_policy.as_deref() {
                Some("Orphan") => {
                    list.retain(|f| f != FOREGROUND_FINALIZER);
                    if !list.iter().any(|f| f == ORPHAN_FINALIZER) {
                        list.push(ORPHAN_FINALIZER.into());
                    }
                }
                Some("Foreground") => {
                    list.retain(|f| f != ORPHAN_FINALIZER);
                    if !list.iter().any(|f| f == FOREGROUND_FINALIZER) {
                        list.push(FOREGROUND_FINALIZER.into());
                    }
                }
                Some("Background") => {
                    list.retain(|f| f != ORPHAN_FINALIZER && f != FOREGROUND_FINALIZER)
                }
                _ => {}
            }
            set_finalizers(&mut new, &list);
            let grace = self.grace_period(res, &current, opts);
            let namespace_pending = res.id == Kind::Namespace
                && current
                    .get("spec")
                    .and_then(|s| s.get("finalizers"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty());
            let already = meta_str(&current, "deletionTimestamp").is_some();
            if list.is_empty() && grace == 0 && !namespace_pending {
                if opts.dry_run {
                    return Ok(Deleted::Now(current));
                }
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok(gone) => {
                        if res.id == Kind::Service {
                            crate::service_alloc::release(self.store.as_ref(), &current, None)
                                .await;
                        }
                        let mut last = current;
                        object::set_rv(&mut last, gone.mod_revision);
                        return Ok(Deleted::Now(last));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(ApiError::from_store(res, name, e)),
                }
            }
            let now = self.clock.now();
            let deadline = now + jiff::SignedDuration::from_secs(grace);
            let current_grace = current
                .get("metadata")
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64);
            if !already || current_grace.is_some_and(|g| grace < g) {
                set_meta(&mut new, "deletionTimestamp", json!(format_time(deadline)));
                set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
            }
            if res.id == Kind::Namespace {
                new["status"] = json!({"phase": "Terminating"});
            }
            if object::without_rv(&new) == object::without_rv(&current) || opts.dry_run {
                return Ok(Deleted::Pending(new));
            }
            match self
                .store
                .update(&key, Self::encode(res, &new), kv.mod_revision)
                .await
            {
                Ok(stored) => {
                    object::set_rv(&mut new, stored.mod_revision);
                    return Ok(Deleted::Pending(new));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(res, name, e)),
            }
        }
        Err(ApiError::modified(res, name))
    }

    /// Pods bound to a node and still running get a grace period (the node agent confirms the
    /// deletion); every other object is deleted at once.
    fn grace_period(&self, res: &Resource, obj: &Value, opts: &DeleteOptions) -> i64 {
        if res.id != Kind::Pod {
            return 0;
        }
        let spec = obj.get("spec");
        let bound = spec
            .and_then(|s| s.get("nodeName"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = obj
            .get("status")
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !bound || matches!(phase, "Succeeded" | "Failed") {
            return 0;
        }
        let default = spec
            .and_then(|s| s.get("terminationGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(30);
        let g = opts.grace_period_seconds.unwrap_or(default);
        // A negative request means "as soon as possible" upstream, which is 1 second for a running pod.
        if g < 0 { 1 } else { g }
    }

    /// Binds a pod to a node (the `binding` subresource).
    pub async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let res = everynode_api::registry::by_kind(Kind::Pod);
        let now = format_time(self.clock.now());
        let node = node.to_owned();
        let pod_name = pod.to_owned();
        let write = Write {
            dry_run,
            ..Write::system(res, Some(namespace), pod)
        };
        self.update_with(&write, &move |current| {
            if meta_str(current, "deletionTimestamp").is_some() {
                return Err(ApiError::conflict(res, &pod_name, &format!("pod {pod_name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(existing) = current.get("spec").and_then(|s| s.get("nodeName")).and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(ApiError::conflict(res, &pod_name, &format!("pod {pod_name} is already assigned to node {existing:?}")));
            }
            let mut new = current.clone();
            new["spec"]["nodeName"] = json!(node);
            let mut conditions: Vec<Value> = new["status"].get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}));
            new["status"]["conditions"] = json!(conditions);
            Ok(new)
        })
        .await
    }

    /// A list filter for a resource in a namespace (or all).
    pub fn filter(
        res: &Resource,
        namespace: Option<&str>,
        labels: everynode_api::selector::Selector,
        fields: everynode_api::selector::FieldSelector,
    ) -> Filter {
        Filter {
            prefix: res.list_prefix(namespace),
            labels,
            fields,
        }
    }
}

/// Before both Event APIs shared one storage, `events.k8s.io/v1` Events were kept under a prefix
/// of their own; such leftovers move to their core Event's key, converted, once. Returns how
/// many moved.
pub async fn move_separately_stored_events(store: &dyn Store) -> Result<usize, StoreError> {
    let old_prefix = everynode_api::registry::by_kind(Kind::EventsV1Event).key_prefix();
    let core_prefix = everynode_api::registry::by_kind(Kind::Event).key_prefix();
    let page = store.list(&old_prefix, None, 0).await?;
    let mut moved = 0;
    for kv in page.items {
        let Ok(value) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let target = format!("{core_prefix}{}", &kv.key[old_prefix.len()..]);
        let core = everynode_api::event_versions::to_core(&value);
        match store.create(&target, object::to_stored(&core)).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        match store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => moved += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use everynode_store::MemoryStore;

    #[tokio::test]
    async fn separately_stored_events_move_to_their_core_key() {
        let store = MemoryStore::new(100);
        let old = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default", "uid": "u"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "eventTime": null});
        store
            .create("/events.k8s.io/events/default/e", object::to_stored(&old))
            .await
            .expect("legacy event");
        assert_eq!(
            move_separately_stored_events(&store).await.expect("moved"),
            1
        );
        let moved = store
            .get("/core/events/default/e")
            .await
            .expect("read")
            .expect("there");
        let core: Value = serde_json::from_slice(&moved.value).expect("json");
        assert_eq!(
            (
                core["message"].as_str(),
                core["involvedObject"]["name"].as_str()
            ),
            (Some("hello"), Some("p"))
        );
        assert_eq!(core["metadata"]["uid"], "u");
        assert!(
            store
                .get("/events.k8s.io/events/default/e")
                .await
                .expect("read")
                .is_none()
        );
        assert_eq!(
            move_separately_stored_events(&store).await.expect("again"),
            0,
            "once"
        );
    }
}
