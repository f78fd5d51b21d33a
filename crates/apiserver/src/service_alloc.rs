//! Cluster IPs and node ports for Services, as upstream's allocators give them out: from
//! `--service-cluster-ip-range` and `--service-node-port-range`, chosen at random unless the
//! Service asks for one, refused with upstream's messages when taken or out of range, and
//! given back when the Service goes or stops needing them.
//!
//! Each address and port in use is a key of its own in the store
//! (`/allocations.everynode.io/serviceips/<ip>`, `.../nodeports/<port>`; in etcd under
//! `/registry/`), naming the Service that holds it — the layout of upstream's IPAddress objects
//! rather than its single bitmap, so that a claim is one create that fails if another server
//! made it first, on every store. A key is claimed before the Service is written and given back
//! if the write fails; `repair` (at start and every few minutes, as upstream's repair loops)
//! gives back keys no Service holds and claims any a Service holds without one.

use crate::error::{ApiError, ApiResult};
use everynode_api::field::{BadValue, FieldError, Path};
use everynode_api::registry::{self, Kind};
use everynode_api::service_ranges::{self, ClusterIpRange};
use everynode_store::{Error as StoreError, Store};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::time::Duration;

/// Where claimed cluster IPs are kept.
pub const IP_PREFIX: &str = "/allocations.everynode.io/serviceips/";
/// Where claimed node ports are kept.
pub const PORT_PREFIX: &str = "/allocations.everynode.io/nodeports/";
/// How long a claim may go without its Service before `repair` gives it back: longer than a
/// create takes between its claim and its write.
const CLAIM_GRACE: Duration = Duration::from_secs(60);

/// The ranges Services are given addresses and ports from.
#[derive(Clone, Debug)]
pub struct ServiceRanges {
    pub cluster_ips: ClusterIpRange,
    pub node_ports: RangeInclusive<u16>,
}

impl Default for ServiceRanges {
    fn default() -> Self {
        ServiceRanges {
            cluster_ips: ClusterIpRange::default(),
            node_ports: 30000..=32767,
        }
    }
}

fn spec(svc: &Value) -> Option<&Value> {
    svc.get("spec")
}

fn spec_str<'a>(svc: &'a Value, field: &str) -> &'a str {
    spec(svc)
        .and_then(|s| s.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn service_type(svc: &Value) -> &str {
    match spec_str(svc, "type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(service_type(svc), "NodePort" | "LoadBalancer")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    service_type(svc) != "ExternalName" && spec_str(svc, "clusterIP") != "None"
}

fn ports(svc: &Value) -> Vec<Value> {
    spec(svc)
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn node_port(port: &Value) -> Option<u16> {
    port.get("nodePort")
        .and_then(Value::as_u64)
        .filter(|p| *p != 0)
        .and_then(|p| u16::try_from(p).ok())
}

/// The keys `svc` holds: its cluster IP and its node ports.
fn held_keys(svc: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let ip = spec_str(svc, "clusterIP");
    if needs_cluster_ip(svc) && !ip.is_empty() {
        keys.insert(format!("{IP_PREFIX}{ip}"));
    }
    if needs_node_ports(svc) {
        for port in ports(svc) {
            if let Some(p) = node_port(&port) {
                keys.insert(format!("{PORT_PREFIX}{p}"));
            }
        }
    }
    keys
}

/// Before an update is validated: what the client left out of what the Service holds is kept
/// (an omitted cluster IP, or node port of the same port), and node ports are dropped when
/// the new type has none, as upstream's update does.
pub fn carry_over_allocations(old: &Value, new: &mut Value) {
    let old_ip = spec_str(old, "clusterIP").to_owned();
    let keep_ip = !old_ip.is_empty()
        && service_type(new) != "ExternalName"
        && spec_str(new, "clusterIP").is_empty();
    let old_ports = ports(old);
    let (new_type_has_ports, old_type_had_ports) = (needs_node_ports(new), needs_node_ports(old));
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if keep_ip {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old.get("spec").and_then(|s| s.get(field)) {
                spec.entry(field.to_owned()).or_insert_with(|| v.clone());
            }
        }
        spec.insert("clusterIP".into(), Value::String(old_ip));
    }
    if !new_type_has_ports && old_type_had_ports {
        // Fields only NodePort and LoadBalancer Services have, when the client left them as
        // they were (upstream's dropTypeDependentFields).
        for field in ["externalTrafficPolicy", "healthCheckNodePort"] {
            if spec.get(field) == old.get("spec").and_then(|s| s.get(field)) {
                spec.remove(field);
            }
        }
    }
    let Some(new_ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return;
    };
    for port in new_ports.iter_mut() {
        if !new_type_has_ports {
            if old_type_had_ports && let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
            continue;
        }
        if node_port(port).is_some() {
            continue;
        }
        let same = |o: &&Value| {
            let key = |p: &Value| {
                (
                    p.get("port").cloned(),
                    p.get("protocol").cloned().unwrap_or_else(|| json!("TCP")),
                )
            };
            key(o) == key(port)
        };
        if let Some(held) = old_ports.iter().find(same).and_then(node_port)
            && let Some(map) = port.as_object_mut()
        {
            map.insert("nodePort".into(), json!(held));
        }
    }
}

/// What one write claimed, to give back if the write does not happen.
#[derive(Debug, Default)]
#[must_use]
pub struct Claimed(Vec<String>);

/// Claims what `new` needs and `old` (the stored Service, on an update) does not already hold,
/// filling in a cluster IP and node ports where the Service asks for none. A dry run checks
/// without claiming.
pub async fn allocate(
    store: &dyn Store,
    ranges: &ServiceRanges,
    now: jiff::Timestamp,
    old: Option<&Value>,
    new: &mut Value,
    dry_run: bool,
) -> ApiResult<Claimed> {
    let mut claimed = Claimed::default();
    let mut claims = Claims {
        store,
        at: now,
        dry_run,
        claimed: &mut claimed,
    };
    let result = allocate_into(&mut claims, ranges, old, new).await;
    match result {
        Ok(()) => Ok(claimed),
        Err(e) => {
            give_back(store, claimed).await;
            Err(e)
        }
    }
}

/// A claim's record: the Service that holds it, and when it was made.
fn owner(svc: &Value, at: jiff::Timestamp) -> bytes::Bytes {
    let meta = svc.get("metadata");
    let field = |f: &str| meta.and_then(|m| m.get(f)).cloned().unwrap_or(Value::Null);
    bytes::Bytes::from(
        json!({"namespace": field("namespace"), "name": field("name"), "uid": field("uid"),
            "at": everynode_clock::format_time(at)})
        .to_string(),
    )
}

/// The claims of one write.
struct Claims<'a> {
    store: &'a dyn Store,
    at: jiff::Timestamp,
    dry_run: bool,
    claimed: &'a mut Claimed,
}

impl Claims<'_> {
    /// Claims `key` for `svc`: false when another holds it.
    async fn claim(&mut self, key: &str, svc: &Value) -> ApiResult<bool> {
        if self.dry_run {
            return self
                .store
                .get(key)
                .await
                .map(|kv| kv.is_none())
                .map_err(ApiError::storage);
        }
        match self.store.create(key, owner(svc, self.at)).await {
            Ok(_) => {
                self.claimed.0.push(key.to_owned());
                Ok(true)
            }
            Err(StoreError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(ApiError::storage(e)),
        }
    }
}

fn invalid(svc: &Value, errors: &[FieldError]) -> ApiError {
    let name = svc
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    ApiError::invalid(registry::by_kind(Kind::Service), name, errors)
}

async fn allocate_into(
    claims: &mut Claims<'_>,
    ranges: &ServiceRanges,
    old: Option<&Value>,
    new: &mut Value,
) -> ApiResult<()> {
    let held = old.map(held_keys).unwrap_or_default();
    if needs_cluster_ip(new) {
        let asked = spec_str(new, "clusterIP").to_owned();
        let ip = if asked.is_empty() {
            pick_ip(claims, ranges, new).await?
        } else if held.contains(&format!("{IP_PREFIX}{asked}")) {
            asked
        } else {
            let field = Path::root("spec").child("clusterIPs");
            let shown = BadValue::Raw(format!("[]string{{{asked:?}}}"));
            let in_range = asked
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| ranges.cluster_ips.contains(ip));
            if !in_range {
                let message = service_ranges::ip_not_in_range(&asked, &ranges.cluster_ips);
                return Err(invalid(new, &[FieldError::invalid(&field, shown, message)]));
            }
            if !claims.claim(&format!("{IP_PREFIX}{asked}"), new).await? {
                let message = service_ranges::ip_already_allocated(&asked);
                return Err(invalid(new, &[FieldError::invalid(&field, shown, message)]));
            }
            asked
        };
        set_cluster_ip(new, json!(ip));
    } else if spec_str(new, "clusterIP") == "None" {
        set_cluster_ip(new, json!("None"));
    } else if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(field);
        }
    }
    if !needs_node_ports(new) {
        return Ok(());
    }
    let mut mine: BTreeSet<u16> = BTreeSet::new();
    let mut list = ports(new);
    for (i, port) in list.iter_mut().enumerate() {
        let field = Path::root("spec").child("ports").index(i).child("nodePort");
        let chosen = match node_port(port) {
            Some(p) if mine.contains(&p) || held.contains(&format!("{PORT_PREFIX}{p}")) => p,
            Some(p) => {
                if !ranges.node_ports.contains(&p) {
                    let message = service_ranges::port_not_in_range(&ranges.node_ports);
                    return Err(invalid(
                        new,
                        &[FieldError::invalid(&field, i64::from(p), message)],
                    ));
                }
                if !claims.claim(&format!("{PORT_PREFIX}{p}"), new).await? {
                    let message = service_ranges::PORT_ALREADY_ALLOCATED;
                    return Err(invalid(
                        new,
                        &[FieldError::invalid(&field, i64::from(p), message)],
                    ));
                }
                p
            }
            None => pick_port(claims, ranges, new).await?,
        };
        mine.insert(chosen);
        if let Some(map) = port.as_object_mut() {
            map.insert("nodePort".into(), json!(chosen));
        }
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("ports".into(), Value::Array(list));
        spec.entry("externalTrafficPolicy")
            .or_insert_with(|| json!("Cluster"));
    }
    Ok(())
}

fn set_cluster_ip(svc: &mut Value, ip: Value) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), ip.clone());
        spec.insert("clusterIPs".into(), json!([ip]));
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
        spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
    }
}

/// The offset of the first of `size` candidates, from a random one onwards, that `svc` could
/// claim (`key_of` names each candidate's key), as upstream's allocators scan from a random
/// place; `None` when every one is taken.
async fn first_free(
    claims: &mut Claims<'_>,
    svc: &Value,
    size: u32,
    key_of: impl Fn(u32) -> String,
) -> ApiResult<Option<u32>> {
    let start = rand::rng().random_range(0..size);
    for i in 0..size {
        let offset = start.wrapping_add(i) % size;
        if claims.claim(&key_of(offset), svc).await? {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

/// A free address.
async fn pick_ip(
    claims: &mut Claims<'_>,
    ranges: &ServiceRanges,
    svc: &Value,
) -> ApiResult<String> {
    let ips = &ranges.cluster_ips;
    let key_of = |i| format!("{IP_PREFIX}{}", ips.nth(i));
    match first_free(claims, svc, ips.size(), key_of).await? {
        Some(i) => Ok(ips.nth(i).to_string()),
        None => Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        )),
    }
}

/// A free node port.
async fn pick_port(claims: &mut Claims<'_>, ranges: &ServiceRanges, svc: &Value) -> ApiResult<u16> {
    let (first, last) = (*ranges.node_ports.start(), *ranges.node_ports.end());
    let port = |i: u32| first + u16::try_from(i).unwrap_or(0);
    let key_of = |i| format!("{PORT_PREFIX}{}", port(i));
    match first_free(claims, svc, u32::from(last - first) + 1, key_of).await? {
        Some(i) => Ok(port(i)),
        None => Err(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        )),
    }
}

/// Gives back what a write claimed when the write did not happen.
pub async fn give_back(store: &dyn Store, claimed: Claimed) {
    for key in claimed.0 {
        let _ = store.delete(&key, None).await;
    }
}

/// After `old` was replaced by `new` (or deleted: `None`), gives back what `old` held and `new`
/// does not, if `old` still holds it.
pub async fn release(store: &dyn Store, old: &Value, new: Option<&Value>) {
    let keep = new.map(held_keys).unwrap_or_default();
    let uid = old
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("");
    for key in held_keys(old).difference(&keep) {
        if let Ok(Some(kv)) = store.get(key).await
            && holder_uid(&kv.value).as_deref() == Some(uid)
        {
            let _ = store.delete(key, Some(kv.mod_revision)).await;
        }
    }
}

fn holder_uid(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(value)
        .ok()?
        .get("uid")?
        .as_str()
        .map(str::to_owned)
}

/// What a repair pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Claims no Service held any more, given back.
    pub released: usize,
    /// Addresses and ports Services held without a claim, claimed.
    pub claimed: usize,
}

/// Upstream's repair loops: every Service's address and ports are claimed by it, and claims no
/// Service holds are given back once older than a create takes.
pub async fn repair(store: &dyn Store, now: jiff::Timestamp) -> Result<Repaired, StoreError> {
    let services = store
        .list(&registry::by_kind(Kind::Service).key_prefix(), None, 0)
        .await?;
    let mut holders = std::collections::BTreeMap::new();
    let mut repaired = Repaired::default();
    for kv in &services.items {
        let Ok(svc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let uid = svc
            .get("metadata")
            .and_then(|m| m.get("uid"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        for key in held_keys(&svc) {
            match store.create(&key, owner(&svc, now)).await {
                Ok(_) => {
                    tracing::warn!(%key, "a Service held an address or port without a claim; claimed");
                    repaired.claimed += 1;
                }
                Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            holders.insert(key, uid.clone());
        }
    }
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        let claims = store.list(prefix, None, 0).await?;
        for kv in claims.items {
            let held = holders
                .get(&kv.key)
                .is_some_and(|uid| holder_uid(&kv.value).as_deref() == Some(uid.as_str()));
            if held || !old_enough(&kv.value, now) {
                continue;
            }
            match store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_) => repaired.released += 1,
                Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(repaired)
}

/// How often `repair` runs (upstream's repair loops run every 3 minutes).
const REPAIR_INTERVAL: Duration = Duration::from_secs(180);

/// Repairs at start and every `REPAIR_INTERVAL`.
pub async fn run_repair(api: std::sync::Arc<crate::registry::Registry>) {
    loop {
        match repair(api.store.as_ref(), api.clock.now()).await {
            Ok(done) if done != Repaired::default() => {
                tracing::info!(
                    released = done.released,
                    claimed = done.claimed,
                    "repaired Service allocations"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "repairing Service allocations failed; retrying later")
            }
        }
        tokio::time::sleep(REPAIR_INTERVAL).await;
    }
}

/// Whether a claim was made long enough ago that its Service would have been written by now.
fn old_enough(value: &[u8], now: jiff::Timestamp) -> bool {
    let at = serde_json::from_slice::<Value>(value)
        .ok()
        .and_then(|v| v.get("at").and_then(Value::as_str).map(str::to_owned))
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match at {
        Some(at) => {
            now.duration_since(at)
                >= jiff::SignedDuration::try_from(CLAIM_GRACE).unwrap_or_default()
        }
        // A claim without a time is from before claims carried one: old.
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use everynode_store::MemoryStore;

    fn ranges() -> ServiceRanges {
        ServiceRanges {
            cluster_ips: ClusterIpRange::parse("10.96.0.0/28").expect("range"),
            node_ports: 30000..=30009,
        }
    }

    fn service(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}, "spec": spec})
    }

    fn now() -> jiff::Timestamp {
        "2026-12-01T00:00:00Z".parse().expect("time")
    }

    async fn claims(store: &MemoryStore) -> Vec<String> {
        let mut keys = Vec::new();
        for prefix in [IP_PREFIX, PORT_PREFIX] {
            let page = store.list(prefix, None, 0).await.expect("list");
            keys.extend(page.items.into_iter().map(|kv| kv.key));
        }
        keys
    }

    #[tokio::test]
    async fn addresses_and_ports_are_given_out_once_and_refused_as_upstream_refuses() {
        let store = MemoryStore::new(100);
        let mut web = service(
            "web",
            json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 443, "nodePort": 30005}]}),
        );
        let claimed = allocate(&store, &ranges(), now(), None, &mut web, false)
            .await
            .expect("allocated");
        assert_eq!(claimed.0.len(), 3);
        let ip: Ipv4Addr = spec_str(&web, "clusterIP").parse().expect("an address");
        assert!(ranges().cluster_ips.contains(ip));
        assert_eq!(web["spec"]["clusterIPs"], json!([ip.to_string()]));
        let first = node_port(&web["spec"]["ports"][0]).expect("a node port");
        assert!((30000..=30009).contains(&first) && first != 30005);
        assert_eq!(web["spec"]["externalTrafficPolicy"], "Cluster");

        let mut taken = service(
            "db",
            json!({"clusterIP": ip.to_string(), "ports": [{"port": 5432}]}),
        );
        let e = allocate(&store, &ranges(), now(), None, &mut taken, false)
            .await
            .expect_err("taken");
        assert_eq!(
            e.message,
            format!(
                "Service \"db\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
            )
        );
        let mut outside = service(
            "db",
            json!({"clusterIP": "10.97.0.1", "ports": [{"port": 5432}]}),
        );
        let e = allocate(&store, &ranges(), now(), None, &mut outside, false)
            .await
            .expect_err("outside");
        assert!(e.message.ends_with("the provided IP (10.97.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/28"), "{}", e.message);
        let mut port_taken = service(
            "db",
            json!({"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30005}]}),
        );
        let e = allocate(&store, &ranges(), now(), None, &mut port_taken, false)
            .await
            .expect_err("port taken");
        assert!(
            e.message.ends_with(
                "spec.ports[0].nodePort: Invalid value: 30005: provided port is already allocated"
            ),
            "{}",
            e.message
        );
        let mut port_outside = service(
            "db",
            json!({"type": "NodePort", "ports": [{"port": 5432, "nodePort": 40000}]}),
        );
        let e = allocate(&store, &ranges(), now(), None, &mut port_outside, false)
            .await
            .expect_err("outside");
        assert!(
            e.message.ends_with(
                "provided port is not in the valid range. The range of valid ports is 30000-30009"
            ),
            "{}",
            e.message
        );
        assert_eq!(
            claims(&store).await.len(),
            3,
            "a refused Service keeps nothing it claimed first"
        );

        // Deleted: everything goes back, and may be taken again.
        release(&store, &web, None).await;
        assert!(claims(&store).await.is_empty());
        let mut again = service(
            "db",
            json!({"type": "NodePort", "ports": [{"port": 5432, "nodePort": 30005}]}),
        );
        let _ = allocate(&store, &ranges(), now(), None, &mut again, false)
            .await
            .expect("free again");
    }

    #[tokio::test]
    async fn an_update_keeps_what_it_holds_and_gives_back_what_it_drops() {
        let store = MemoryStore::new(100);
        let mut old = service("web", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let _ = allocate(&store, &ranges(), now(), None, &mut old, false)
            .await
            .expect("allocated");
        // An apply that omits the allocated fields keeps them.
        let mut new = service(
            "web",
            json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
        );
        carry_over_allocations(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert_eq!(
            new["spec"]["ports"][0]["nodePort"],
            old["spec"]["ports"][0]["nodePort"]
        );
        let claimed = allocate(&store, &ranges(), now(), Some(&old), &mut new, false)
            .await
            .expect("nothing new");
        assert!(claimed.0.is_empty());
        // Back to ClusterIP: the node port is dropped and given back.
        let mut plain = service(
            "web",
            json!({"type": "ClusterIP", "ports": old["spec"]["ports"].clone()}),
        );
        carry_over_allocations(&old, &mut plain);
        assert!(plain["spec"]["ports"][0].get("nodePort").is_none());
        let _ = allocate(&store, &ranges(), now(), Some(&old), &mut plain, false)
            .await
            .expect("allocated");
        release(&store, &old, Some(&plain)).await;
        assert_eq!(
            claims(&store).await,
            vec![format!("{IP_PREFIX}{}", spec_str(&plain, "clusterIP"))]
        );
    }

    #[tokio::test]
    async fn a_dry_run_claims_nothing() {
        let store = MemoryStore::new(100);
        let mut web = service("web", json!({"type": "NodePort", "ports": [{"port": 80}]}));
        let claimed = allocate(&store, &ranges(), now(), None, &mut web, true)
            .await
            .expect("checked");
        assert!(claimed.0.is_empty() && claims(&store).await.is_empty());
        assert!(
            !spec_str(&web, "clusterIP").is_empty(),
            "the answer shows what it would get"
        );
    }

    #[tokio::test]
    async fn repair_gives_back_orphaned_claims_after_the_grace_and_claims_what_services_hold() {
        let store = MemoryStore::new(100);
        let mut orphan = service("gone", json!({"ports": [{"port": 80}]}));
        let _ = allocate(&store, &ranges(), now(), None, &mut orphan, false)
            .await
            .expect("allocated");
        let held = service(
            "kept",
            json!({"clusterIP": "10.96.0.9", "ports": [{"port": 80}]}),
        );
        store
            .create(
                "/core/services/default/kept",
                bytes::Bytes::from(held.to_string()),
            )
            .await
            .expect("stored");
        let soon = now() + jiff::SignedDuration::from_secs(10);
        assert_eq!(
            repair(&store, soon).await.expect("repaired"),
            Repaired {
                released: 0,
                claimed: 1
            }
        );
        let later = now() + jiff::SignedDuration::from_secs(120);
        assert_eq!(
            repair(&store, later).await.expect("repaired"),
            Repaired {
                released: 1,
                claimed: 0
            }
        );
        assert_eq!(claims(&store).await, vec![format!("{IP_PREFIX}10.96.0.9")]);
    }
}
