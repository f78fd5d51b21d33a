//! Field ownership (`metadata.managedFields`) and server-side apply, as structured-merge-diff
//! defines them for the API server. Written here because no Rust crate implements them.
//!
//! - Every write names a field manager. An update (create, PUT, PATCH) gives its manager the
//!   fields it changed and takes them from every other manager, without conflicts.
//! - An apply (`application/apply-patch+yaml`) declares the complete set of fields its manager
//!   wants: they are merged into the object (maps by key, associative lists by their keys, sets
//!   as sets, everything else replaced), fields the manager applied before and no longer
//!   declares are removed unless someone else owns them, and a field another manager owns with
//!   a different value is a conflict — refused unless forced, in which case the applier takes it.
//!
//! Field sets use the `FieldsV1` encoding: `f:<field>`, `k:<json of key fields>` for items of
//! associative lists, `v:<json value>` for items of sets, and `.` for "this node itself".

use crate::strategic_merge::{ListType, Schema};
use everynode_api::registry::Kind;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The metadata fields no manager owns: the server sets them.
const SERVER_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// A set of field paths (a `FieldsV1` tree).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether the path leading here is itself in the set.
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.is_empty()
    }

    fn child(&mut self, element: String) -> &mut FieldSet {
        self.children.entry(element).or_default()
    }

    /// Decodes a `fieldsV1` value; anything that is not an object is an empty set.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let Some(map) = v.as_object() else {
            return FieldSet::default();
        };
        let mut set = FieldSet {
            member: map.is_empty() || map.contains_key("."),
            children: BTreeMap::new(),
        };
        for (k, child) in map.iter().filter(|(k, _)| *k != ".") {
            let child = FieldSet::from_fields_v1(child);
            if !child.is_empty() {
                set.children.insert(k.clone(), child);
            }
        }
        set
    }

    /// Encodes the set as `fieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.member && !self.children.is_empty() {
            map.insert(".".into(), json!({}));
        }
        for (k, child) in &self.children {
            map.insert(k.clone(), child.to_fields_v1());
        }
        Value::Object(map)
    }

    /// Every member path, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Adds one path.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for element in path {
            node = node.child(element.clone());
        }
        node.member = true;
    }

    /// The members both sets hold.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, child) in &self.children {
            if let Some(theirs) = other.children.get(k) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    out.children.insert(k.clone(), both);
                }
            }
        }
        out
    }

    pub fn union(&mut self, other: &FieldSet) {
        self.member |= other.member;
        for (k, child) in &other.children {
            self.child(k.clone()).union(child);
        }
    }

    /// Removes `other`'s members from this set.
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.member {
            self.member = false;
        }
        for (k, child) in &other.children {
            if let Some(mine) = self.children.get_mut(k) {
                mine.subtract(child);
                if mine.is_empty() {
                    self.children.remove(k);
                }
            }
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether the set holds `path` or anything beneath it.
    pub fn touches(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.is_empty(),
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.touches(rest)),
        }
    }
}

/// Which part of the object a write may change: the main resource leaves status to the status
/// subresource and the other way round (upstream's reset fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The object, without `status` when the resource has a status subresource.
    Main { has_status: bool },
    /// Only `status`.
    Status,
}

impl Part {
    fn owns_top_level(self, field: &str) -> bool {
        if matches!(field, "apiVersion" | "kind") {
            return false;
        }
        match self {
            Part::Main { has_status } => !(has_status && field == "status"),
            Part::Status => field == "status",
        }
    }

    fn subresource(self) -> Option<&'static str> {
        matches!(self, Part::Status).then_some("status")
    }
}

/// The key element of an item of an associative list (`k:{"name":"x"}`), or None when the item
/// lacks every key field. A missing `protocol` is TCP, as the server defaults it.
fn key_element(item: &Value, keys: &[&str]) -> Option<String> {
    let mut fields = Map::new();
    for key in keys {
        match item.get(*key) {
            Some(v) if !v.is_null() => {
                fields.insert((*key).to_owned(), v.clone());
            }
            _ if *key == "protocol" => {
                fields.insert("protocol".into(), json!("TCP"));
            }
            _ => {}
        }
    }
    (!fields.is_empty()).then(|| format!("k:{}", Value::Object(fields)))
}

fn set_element(item: &Value) -> String {
    format!("v:{item}")
}

/// Whether a list item is the one `element` (`k:...` or `v:...`) names.
fn is_element(item: &Value, list: ListType, element: &str) -> bool {
    match list {
        ListType::Map(keys) => key_element(item, keys).as_deref() == Some(element),
        _ => set_element(item) == element,
    }
}

/// The fields a value sets: every leaf, and every item of associative lists and sets.
fn fields_of_object(map: &Map<String, Value>, schema: Schema, out: &mut FieldSet) {
    for (k, v) in map {
        let (child_schema, list) = schema.field(k);
        fields_of_value(v, child_schema, list, out.child(format!("f:{k}")));
    }
}

fn fields_of_value(v: &Value, schema: Schema, list: ListType, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => fields_of_object(m, schema, out),
        Value::Array(items) if !items.is_empty() && list != ListType::Atomic => {
            for item in items {
                let element = match list {
                    ListType::Map(keys) => key_element(item, keys),
                    _ => Some(set_element(item)),
                };
                let Some(element) = element else {
                    // An item without its keys cannot be tracked apart: own the whole list.
                    out.member = true;
                    continue;
                };
                let child = out.child(element);
                child.member = true;
                if let (ListType::Map(_), Value::Object(m)) = (list, item) {
                    fields_of_object(m, schema, child);
                }
            }
        }
        _ => out.member = true,
    }
}

/// What an update did: the fields it set or changed, and the fields it removed.
#[derive(Debug, Default)]
struct Diff {
    changed: FieldSet,
    removed: FieldSet,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }

    /// Hangs `child` under `element` in both sets, where it is not empty.
    fn adopt(&mut self, element: String, child: Diff) {
        if !child.changed.is_empty() {
            self.changed.children.insert(element.clone(), child.changed);
        }
        if !child.removed.is_empty() {
            self.removed.children.insert(element, child.removed);
        }
    }
}

/// Compares two versions of an object in one walk, without copying them: `keep` says which
/// fields of the map count (the writer's part, and no server-set metadata at the top).
fn diff_object(
    old: Option<&Map<String, Value>>,
    new: &Map<String, Value>,
    schema: Schema,
    keep: &dyn Fn(&str) -> bool,
    out: &mut Diff,
) {
    for (k, v) in new.iter().filter(|(k, _)| keep(k)) {
        let (child_schema, child_list) = schema.field(k);
        let mut child = Diff::default();
        diff_value(
            old.and_then(|o| o.get(k)),
            v,
            child_schema,
            child_list,
            &mut child,
        );
        out.adopt(format!("f:{k}"), child);
    }
    for (k, v) in old.into_iter().flatten() {
        if keep(k) && !new.contains_key(k) {
            let (child_schema, child_list) = schema.field(k);
            let mut gone = FieldSet::default();
            fields_of_value(v, child_schema, child_list, &mut gone);
            out.removed.children.insert(format!("f:{k}"), gone);
        }
    }
}

fn diff_value(old: Option<&Value>, new: &Value, schema: Schema, list: ListType, out: &mut Diff) {
    match new {
        Value::Object(m) if !m.is_empty() => {
            diff_object(old.and_then(Value::as_object), m, schema, &|_| true, out);
        }
        Value::Array(items) if !items.is_empty() && list != ListType::Atomic => {
            let old_items = old
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let ListType::Map(keys) = list else {
                for item in items.iter().filter(|i| !old_items.contains(i)) {
                    out.changed.child(set_element(item)).member = true;
                }
                for item in old_items.iter().filter(|i| !items.contains(i)) {
                    out.removed.child(set_element(item)).member = true;
                }
                return;
            };
            let mut seen = Vec::new();
            for item in items {
                let Some(element) = key_element(item, keys) else {
                    if old != Some(new) {
                        out.changed.member = true;
                    }
                    continue;
                };
                let before = old_items.iter().find(|o| is_element(o, list, &element));
                let mut child = Diff::default();
                child.changed.member = before.is_none();
                if let Value::Object(m) = item {
                    diff_object(
                        before.and_then(Value::as_object),
                        m,
                        schema,
                        &|_| true,
                        &mut child,
                    );
                }
                seen.push(element.clone());
                out.adopt(element, child);
            }
            for item in old_items {
                if let Some(element) = key_element(item, keys)
                    && !seen.contains(&element)
                {
                    let gone = out.removed.child(element);
                    gone.member = true;
                    if let Value::Object(m) = item {
                        fields_of_object(m, schema, gone);
                    }
                }
            }
        }
        _ => {
            if old == Some(new) {
                return;
            }
            out.changed.member = true;
            // A map or list emptied (or replaced by a value) loses what it held.
            if let Some(before) =
                old.filter(|o| !is_empty_container(o) && (o.is_object() || o.is_array()))
            {
                let mut gone = FieldSet::default();
                fields_of_value(before, schema, list, &mut gone);
                gone.member = false;
                out.removed.union(&gone);
            }
        }
    }
}

fn metadata_of(obj: Option<&Map<String, Value>>) -> Option<&Map<String, Value>> {
    obj?.get("metadata")?.as_object()
}

/// The fields of `obj` that a manager writing `part` can own: everything it sets, as if it were
/// created.
pub fn fields_of(obj: &Value, kind: Kind, part: Part) -> FieldSet {
    diff_root(None, obj, kind, part).changed
}

/// The update `old` → `new` as seen by a writer of `part`.
fn diff_root(old: Option<&Value>, new: &Value, kind: Kind, part: Part) -> Diff {
    let mut out = Diff::default();
    let Some(new) = new.as_object() else {
        return out;
    };
    let old = old.and_then(Value::as_object);
    let root = Schema::root(kind);
    let top = |k: &str| part.owns_top_level(k) && k != "metadata";
    diff_object(old, new, root, &top, &mut out);
    if part.owns_top_level("metadata") {
        let empty = Map::new();
        let (meta_schema, _) = root.field("metadata");
        let mut child = Diff::default();
        let client_meta = |k: &str| !SERVER_META.contains(&k);
        diff_object(
            metadata_of(old),
            metadata_of(Some(new)).unwrap_or(&empty),
            meta_schema,
            &client_meta,
            &mut child,
        );
        out.adopt("f:metadata".into(), child);
    }
    out
}

/// The value at a field path, if the object has it.
fn value_at<'v>(
    obj: &'v Value,
    path: &[String],
    schema: Schema,
    list: ListType,
) -> Option<&'v Value> {
    let Some((head, rest)) = path.split_first() else {
        return Some(obj);
    };
    if let Some(name) = head.strip_prefix("f:") {
        let (s, l) = schema.field(name);
        return value_at(obj.as_object()?.get(name)?, rest, s, l);
    }
    let item = obj.as_array()?.iter().find(|i| is_element(i, list, head))?;
    value_at(item, rest, schema, ListType::Atomic)
}

/// Removes the field at `path` from the object, if present.
fn remove_at(obj: &mut Value, path: &[String], schema: Schema, list: ListType) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if let Some(name) = head.strip_prefix("f:") {
        let (s, l) = schema.field(name);
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            map.remove(name);
        } else if let Some(child) = map.get_mut(name) {
            remove_at(child, rest, s, l);
        }
        return;
    }
    let Some(items) = obj.as_array_mut() else {
        return;
    };
    if rest.is_empty() {
        items.retain(|i| !is_element(i, list, head));
    } else if let Some(item) = items.iter_mut().find(|i| is_element(i, list, head)) {
        remove_at(item, rest, schema, ListType::Atomic);
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Merges an applied configuration into the live object: maps by key, associative lists by
/// their keys (new items appended in the configuration's order), sets as sets, the rest replaced.
fn merge(live: Option<&Value>, config: &Value, schema: Schema, list: ListType) -> Value {
    match (live, config) {
        (Some(Value::Object(l)), Value::Object(c)) => {
            let mut out = l.clone();
            for (k, v) in c {
                let (s, li) = schema.field(k);
                let merged = merge(l.get(k), v, s, li);
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(c)) => match list {
            ListType::Atomic => config.clone(),
            ListType::Set => {
                let mut out = l.clone();
                out.extend(c.iter().filter(|i| !l.contains(i)).cloned());
                Value::Array(out)
            }
            ListType::Map(keys) => {
                let mut out = l.clone();
                for item in c {
                    let at = key_element(item, keys)
                        .and_then(|e| out.iter().position(|o| is_element(o, list, &e)));
                    match at {
                        Some(i) => out[i] = merge(Some(&out[i]), item, schema, ListType::Atomic),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => config.clone(),
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn from_value(v: &Value) -> Option<Entry> {
        Some(Entry {
            manager: v.get("manager")?.as_str()?.to_owned(),
            operation: v.get("operation")?.as_str()?.to_owned(),
            api_version: v
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            fields: FieldSet::from_fields_v1(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }

    fn to_value(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_fields_v1(),
        });
        if let Some(sub) = &self.subresource {
            v["subresource"] = json!(sub);
        }
        v
    }

    /// Whether this entry is the one `manager` writes with `operation` on `part`. Appliers are
    /// one manager whatever the version they apply (upstream's manager identifier).
    fn is(&self, manager: &str, operation: &str, api_version: &str, part: Part) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == part.subresource()
            && (operation == "Apply" || self.api_version == api_version)
    }

    /// How a conflict names this manager, as upstream prints it.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// `metadata.managedFields`, as sent or stored.
fn managed_fields(obj: &Value) -> Option<&Value> {
    obj.get("metadata")?.get("managedFields")
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    managed_fields(obj)
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Entry::from_value).collect())
        .unwrap_or_default()
}

fn store_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(entries.iter().map(Entry::to_value).collect()),
        );
    }
}

/// Who writes, and when.
#[derive(Clone, Copy, Debug)]
pub struct Writer<'a> {
    pub manager: &'a str,
    /// The group/version written, e.g. `apps/v1`.
    pub api_version: &'a str,
    /// RFC 3339, seconds.
    pub time: &'a str,
    pub part: Part,
}

/// What the request said about `managedFields`: upstream keeps the stored ones when a request
/// leaves them out and resets them when it sends a single empty entry.
fn requested_entries(requested: &Value, stored: Option<&Value>) -> Vec<Entry> {
    match managed_fields(requested) {
        Some(Value::Array(list))
            if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) =>
        {
            Vec::new()
        }
        Some(Value::Array(list)) if !list.is_empty() => {
            list.iter().filter_map(Entry::from_value).collect()
        }
        _ => stored.map(entries_of).unwrap_or_default(),
    }
}

/// Records an update (create when `old` is None): `writer` takes every field it changed from
/// the other managers; fields it removed leave every manager. Sets `metadata.managedFields`
/// on `new`.
pub fn record_update(old: Option<&Value>, new: &mut Value, kind: Kind, writer: Writer<'_>) {
    let mut entries = requested_entries(new, old);
    let diff = diff_root(old, new, kind, writer.part);
    if diff.is_empty()
        && let Some(old) = old
    {
        // Nothing changed: the stored entries stand as stored (not re-encoded, so the write
        // stays a no-op), unless the request set others.
        let requested = managed_fields(new);
        if requested.is_none() {
            let stored = managed_fields(old).cloned();
            let meta = new.get_mut("metadata").and_then(Value::as_object_mut);
            if let (Some(list), Some(meta)) = (stored, meta) {
                meta.insert("managedFields".into(), list);
            }
        } else if requested != managed_fields(old) {
            store_entries(new, entries);
        }
        return;
    }
    for e in &mut entries {
        e.fields.subtract(&diff.removed);
        e.fields.subtract(&diff.changed);
    }
    if !diff.changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.is(writer.manager, "Update", writer.api_version, writer.part))
        {
            Some(mine) => {
                mine.fields.union(&diff.changed);
                mine.time = writer.time.to_owned();
            }
            None => entries.push(Entry {
                manager: writer.manager.to_owned(),
                operation: "Update".into(),
                api_version: writer.api_version.to_owned(),
                time: writer.time.to_owned(),
                subresource: writer.part.subresource().map(str::to_owned),
                fields: diff.changed,
            }),
        }
    }
    store_entries(new, entries);
}

/// A field another manager owns with a different value than the applied one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream prints it: `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field as upstream prints it: `.spec.template.spec.containers[name="app"].image`.
    pub field: String,
}

/// Conflicts refuse an apply (HTTP 409, reason Conflict) unless it is forced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", conflict_message(.0))]
pub struct Conflicts(pub Vec<Conflict>);

/// Upstream's message: one conflict inline; several grouped by manager in sorted order.
fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager, only.field
        );
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(&c.manager).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// A path as upstream prints it: `.spec.containers[name="app"].image`, `.metadata.finalizers[="x"]`.
pub fn path_string(path: &[String]) -> String {
    let mut s = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            s.push('.');
            s.push_str(name);
        } else if let Some(key) = element.strip_prefix("k:") {
            let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(value) = element.strip_prefix("v:") {
            s.push_str(&format!("[={value}]"));
        } else if element != "." {
            s.push_str(&format!("[{element}]"));
        }
    }
    s
}

/// Server-side apply of `config` by `writer` over `live` (None: the object does not exist yet).
/// Returns the object to store, with its `managedFields`, or the conflicts when not `force`d.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    kind: Kind,
    writer: Writer<'_>,
    force: bool,
) -> Result<Value, Conflicts> {
    let root = Schema::root(kind);
    let mut entries = live.map(entries_of).unwrap_or_default();
    if let Some(live) = live
        && entries.is_empty()
    {
        // Objects written before fields were tracked: their fields belong to one manager, so
        // an apply that changes them conflicts rather than silently taking them.
        entries.push(Entry {
            manager: "before-first-apply".into(),
            operation: "Update".into(),
            api_version: writer.api_version.to_owned(),
            time: writer.time.to_owned(),
            subresource: None,
            fields: fields_of(live, kind, writer.part),
        });
    }
    let mut config = config.clone();
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    let applied = fields_of(&config, kind, writer.part);
    let empty = json!({});
    let base = live.unwrap_or(&empty);
    let mut merged = merge(Some(base), &config, root, ListType::Atomic);
    let mine = |e: &Entry| e.is(writer.manager, "Apply", writer.api_version, writer.part);
    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        let mut taken = FieldSet::default();
        for path in e.fields.intersection(&applied).paths() {
            let before = value_at(base, &path, root, ListType::Atomic);
            let after = value_at(&merged, &path, root, ListType::Atomic);
            let is_item = path.last().is_some_and(|p| !p.starts_with("f:"));
            let differs = if is_item {
                before.is_none() != after.is_none()
            } else {
                before != after
            };
            if differs {
                conflicts.push(Conflict {
                    manager: e.describe(),
                    field: path_string(&path),
                });
                taken.insert(&path);
            }
        }
        if force {
            e.fields.subtract(&taken);
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Conflicts(conflicts));
    }
    // Fields this manager applied before and no longer declares go, unless someone else
    // still owns them or something beneath them.
    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut dropped = previous;
    dropped.subtract(&applied);
    let others: Vec<&FieldSet> = entries
        .iter()
        .filter(|e| !mine(e))
        .map(|e| &e.fields)
        .collect();
    // Shallowest first: an item nobody else touches goes whole, while its key still finds it.
    let mut dropped_paths = dropped.paths();
    dropped_paths.sort_by_key(Vec::len);
    for path in dropped_paths {
        if others.iter().any(|o| o.touches(&path)) {
            continue;
        }
        remove_at(&mut merged, &path, root, ListType::Atomic);
        // A map or list left empty goes too, unless someone owns it as such.
        let mut parent = &path[..path.len().saturating_sub(1)];
        while !parent.is_empty()
            && value_at(&merged, parent, root, ListType::Atomic).is_some_and(is_empty_container)
            && !applied.contains(parent)
            && !others.iter().any(|o| o.contains(parent))
        {
            remove_at(&mut merged, parent, root, ListType::Atomic);
            parent = &parent[..parent.len() - 1];
        }
    }
    entries.retain(|e| !mine(e));
    entries.insert(
        0,
        Entry {
            manager: writer.manager.to_owned(),
            operation: "Apply".into(),
            api_version: writer.api_version.to_owned(),
            time: writer.time.to_owned(),
            subresource: writer.part.subresource().map(str::to_owned),
            fields: applied,
        },
    );
    // Only an object has metadata to record owners in; a scalar in, found by fuzzing, is
    // returned merged and untracked rather than panicking on the index.
    if let Some(map) = merged.as_object_mut() {
        map.entry("metadata").or_insert_with(|| json!({}));
    }
    store_entries(&mut merged, entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Part = Part::Main { has_status: true };

    /// Fuzzing found a live value that is not an object panicking the merge's metadata insert
    /// (`fuzz/artifacts/apply`, a live number and a configuration string).
    #[test]
    fn apply_over_a_scalar_does_not_panic() {
        for live in [json!(1000), json!("x"), json!([1]), json!(null)] {
            let _ = apply(
                Some(&live),
                &json!("t, \"s\"{"),
                Kind::DaemonSet,
                writer("m"),
                false,
            );
            let _ = apply(
                Some(&live),
                &json!({"spec": {}}),
                Kind::DaemonSet,
                writer("m"),
                true,
            );
        }
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "apps/v1",
            time: "2026-11-25T10:00:00Z",
            part: MAIN,
        }
    }

    fn ds(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "labels": {"app": "agent"}},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {
                    "metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "agent", "image": image,
                        "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    fn managers(obj: &Value) -> Vec<(String, String)> {
        entries_of(obj)
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    fn owned(obj: &Value, manager: &str) -> Vec<String> {
        entries_of(obj)
            .into_iter()
            .filter(|e| e.manager == manager)
            .flat_map(|e| e.fields.paths())
            .map(|p| path_string(&p))
            .collect()
    }

    const IMAGE: &str = r#".spec.template.spec.containers[name="agent"].image"#;

    #[test]
    fn fields_v1_round_trips_with_item_markers() {
        let set = fields_of(&ds("a:1"), Kind::DaemonSet, MAIN);
        let v1 = set.to_fields_v1();
        let item = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"agent"}"#];
        assert_eq!(item["."], json!({}));
        assert_eq!(item["f:image"], json!({}));
        assert_eq!(
            item["f:ports"][r#"k:{"containerPort":80,"protocol":"TCP"}"#]["f:containerPort"],
            json!({})
        );
        assert!(
            v1["f:metadata"].get("f:name").is_none(),
            "the server owns the name"
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
    }

    #[test]
    fn first_apply_creates_with_an_apply_entry() {
        let obj =
            apply(None, &ds("a:1"), Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        assert_eq!(managers(&obj), vec![("kubectl".into(), "Apply".into())]);
        assert!(owned(&obj, "kubectl").contains(&IMAGE.to_owned()));
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts_naming_both() {
        let obj =
            apply(None, &ds("a:1"), Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let err = apply(
            Some(&obj),
            &ds("a:2"),
            Kind::DaemonSet,
            writer("other"),
            false,
        )
        .expect_err("conflicts");
        assert_eq!(
            err.to_string(),
            format!("Apply failed with 1 conflict: conflict with \"kubectl\": {IMAGE}")
        );
    }

    #[test]
    fn the_same_value_is_shared_without_conflict() {
        let obj =
            apply(None, &ds("a:1"), Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let obj = apply(
            Some(&obj),
            &ds("a:1"),
            Kind::DaemonSet,
            writer("other"),
            false,
        )
        .expect("co-owns");
        assert!(owned(&obj, "kubectl").contains(&IMAGE.to_owned()));
        assert!(owned(&obj, "other").contains(&IMAGE.to_owned()));
    }

    #[test]
    fn force_takes_the_field_from_the_other_manager() {
        let obj =
            apply(None, &ds("a:1"), Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let obj = apply(
            Some(&obj),
            &ds("a:2"),
            Kind::DaemonSet,
            writer("other"),
            true,
        )
        .expect("forced");
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:2"
        );
        assert!(!owned(&obj, "kubectl").contains(&IMAGE.to_owned()));
        assert!(owned(&obj, "other").contains(&IMAGE.to_owned()));
    }

    #[test]
    fn an_update_takes_fields_and_a_later_apply_conflicts_with_it() {
        let obj =
            apply(None, &ds("a:1"), Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let mut edited = obj.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:3");
        record_update(
            Some(&obj),
            &mut edited,
            Kind::DaemonSet,
            writer("kubectl-set"),
        );
        assert_eq!(owned(&edited, "kubectl-set"), vec![IMAGE.to_owned()]);
        assert!(!owned(&edited, "kubectl").contains(&IMAGE.to_owned()));
        let err = apply(
            Some(&edited),
            &ds("a:1"),
            Kind::DaemonSet,
            writer("kubectl"),
            false,
        )
        .expect_err("conflicts");
        assert_eq!(
            err.0,
            vec![Conflict {
                manager: "\"kubectl-set\" using apps/v1".into(),
                field: IMAGE.into()
            }]
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_another_manager_owns_them() {
        let mut with_env = ds("a:1");
        with_env["spec"]["template"]["spec"]["containers"][0]["env"] =
            json!([{"name": "A", "value": "1"}]);
        with_env["metadata"]["labels"]["tier"] = json!("node");
        let obj =
            apply(None, &with_env, Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let mut labelled = obj.clone();
        labelled["metadata"]["labels"]["tier"] = json!("edge");
        record_update(
            Some(&obj),
            &mut labelled,
            Kind::DaemonSet,
            writer("kubectl-label"),
        );
        let obj = apply(
            Some(&labelled),
            &ds("a:1"),
            Kind::DaemonSet,
            writer("kubectl"),
            false,
        )
        .expect("applies");
        let container = &obj["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container.get("env").is_none(),
            "env was only applied by kubectl"
        );
        assert_eq!(
            obj["metadata"]["labels"]["tier"], "edge",
            "kubectl-label owns it"
        );
    }

    #[test]
    fn associative_lists_merge_by_key_and_sets_as_sets() {
        let mut live = ds("a:1");
        live["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "sidecar", "image": "s:1"}));
        live["metadata"]["finalizers"] = json!(["a"]);
        let mut obj = live.clone();
        record_update(None, &mut obj, Kind::DaemonSet, writer("kubectl-create"));
        let config = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "finalizers": ["b"]},
            "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "s:2"}]}}}});
        let obj = apply(Some(&obj), &config, Kind::DaemonSet, writer("ops"), true).expect("forced");
        let containers = obj["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list");
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["image"], "a:1");
        assert_eq!(containers[1]["image"], "s:2");
        assert_eq!(obj["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn an_update_removing_a_field_takes_it_from_every_manager() {
        let mut two = ds("a:1");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "sidecar", "image": "s:1"}));
        let obj = apply(None, &two, Kind::DaemonSet, writer("kubectl"), false).expect("applies");
        let mut one = obj.clone();
        one["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .pop();
        record_update(
            Some(&obj),
            &mut one,
            Kind::DaemonSet,
            writer("kubectl-edit"),
        );
        assert!(
            !owned(&one, "kubectl").iter().any(|p| p.contains("sidecar")),
            "{:?}",
            owned(&one, "kubectl")
        );
        assert!(
            owned(&one, "kubectl-edit").is_empty(),
            "removing owns nothing"
        );
    }

    #[test]
    fn objects_from_before_tracking_belong_to_before_first_apply() {
        let live = ds("a:1");
        let err = apply(
            Some(&live),
            &ds("a:2"),
            Kind::DaemonSet,
            writer("kubectl"),
            false,
        )
        .expect_err("conflicts");
        assert_eq!(err.0[0].manager, "\"before-first-apply\" using apps/v1");
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let c = |m: &str, f: &str| Conflict {
            manager: m.into(),
            field: f.into(),
        };
        let msg = conflict_message(&[c("\"b\"", ".x"), c("\"a\"", ".y"), c("\"b\"", ".z")]);
        assert_eq!(
            msg,
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .y\nconflicts with \"b\":\n- .x\n- .z"
        );
    }

    #[test]
    fn status_writers_own_only_status() {
        let mut obj = ds("a:1");
        record_update(None, &mut obj, Kind::DaemonSet, writer("kubectl-create"));
        let mut with_status = obj.clone();
        with_status["status"] = json!({"numberReady": 3});
        let status_writer = Writer {
            part: Part::Status,
            ..writer("everynode-controllers")
        };
        record_update(Some(&obj), &mut with_status, Kind::DaemonSet, status_writer);
        let entry = entries_of(&with_status)
            .into_iter()
            .find(|e| e.manager == "everynode-controllers")
            .expect("an entry");
        assert_eq!(entry.subresource.as_deref(), Some("status"));
        assert_eq!(
            entry
                .fields
                .paths()
                .iter()
                .map(|p| path_string(p))
                .collect::<Vec<_>>(),
            vec![".status.numberReady"]
        );
    }

    #[test]
    fn a_request_can_reset_managed_fields_with_one_empty_entry() {
        let mut obj = ds("a:1");
        record_update(None, &mut obj, Kind::DaemonSet, writer("kubectl-create"));
        let mut reset = obj.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(
            Some(&obj),
            &mut reset,
            Kind::DaemonSet,
            writer("kubectl-edit"),
        );
        assert!(reset["metadata"].get("managedFields").is_none());
    }
}
