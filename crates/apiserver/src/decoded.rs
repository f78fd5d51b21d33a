//! Typed copies of cached objects, decoded once per revision and shared by the requests that
//! read many objects of a kind at once (a DaemonSet's placement and preview). Decoding every
//! Node and every pod of a DaemonSet from JSON on each such request was most of its cost at
//! 10,000 nodes; now a request decodes only what changed since the last one.

use crate::cache::CachedObject;
use everynode_store::Revision;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Decoded objects by storage key, each with the revision it was decoded at.
pub struct Decoded<T> {
    by_key: Mutex<HashMap<String, (Revision, Arc<T>)>>,
}

impl<T> Default for Decoded<T> {
    fn default() -> Self {
        Decoded {
            by_key: Mutex::new(HashMap::new()),
        }
    }
}

/// Entries kept beyond the objects of the last request, before those of earlier requests are
/// dropped: room for the pods of other DaemonSets without growing without bound.
const SLACK: usize = 4096;

impl<T: DeserializeOwned> Decoded<T> {
    /// Typed copies of `items`, in their order, decoding only those not already decoded at their
    /// revision. An object that does not decode is left out, as a list that skips it would.
    pub fn of(&self, items: &[Arc<CachedObject>]) -> Vec<Arc<T>> {
        let mut by_key = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match by_key.get(&item.key) {
                Some((revision, object)) if *revision == item.revision => {
                    out.push(Arc::clone(object));
                }
                _ => {
                    let Ok(object) = serde_json::from_slice::<T>(&item.json) else {
                        by_key.remove(&item.key);
                        continue;
                    };
                    let object = Arc::new(object);
                    by_key.insert(item.key.clone(), (item.revision, Arc::clone(&object)));
                    out.push(object);
                }
            }
        }
        // Objects deleted since, or of other requests, are dropped once they outnumber the
        // slack: then only this request's objects stay.
        if by_key.len() > items.len() + SLACK {
            let wanted: std::collections::HashSet<&str> =
                items.iter().map(|i| i.key.as_str()).collect();
            by_key.retain(|key, _| wanted.contains(key.as_str()));
        }
        out
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;

    fn cached(name: &str, revision: Revision, label: &str) -> Arc<CachedObject> {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"l": label}}
        });
        raw(name, revision, serde_json::to_vec(&json).expect("json"))
    }

    fn raw(name: &str, revision: Revision, json: Vec<u8>) -> Arc<CachedObject> {
        Arc::new(CachedObject {
            key: format!("/registry/minions/{name}"),
            json: json.into(),
            revision,
            labels: Default::default(),
            fields: Default::default(),
            node: None,
        })
    }

    fn label(node: &Node) -> &str {
        node.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("l"))
            .map_or("", String::as_str)
    }

    #[test]
    fn an_object_is_decoded_again_only_at_a_new_revision() {
        let decoded = Decoded::<Node>::default();
        let first = decoded.of(&[cached("a", 1, "one"), cached("b", 1, "one")]);
        assert_eq!(first.len(), 2);
        // Same revision, other bytes: the copy decoded before is served (the cache's objects do
        // not change without a new revision).
        let again = decoded.of(&[cached("a", 1, "stale"), cached("b", 2, "two")]);
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert_eq!(label(&again[0]), "one");
        assert_eq!(label(&again[1]), "two");
    }

    #[test]
    fn what_does_not_decode_is_left_out_and_deleted_objects_are_dropped() {
        let decoded = Decoded::<Node>::default();
        let broken = raw("x", 1, b"{not json".to_vec());
        let items: Vec<_> = (0..SLACK + 10)
            .map(|i| cached(&format!("n{i}"), 1, "one"))
            .collect();
        assert_eq!(decoded.of(&items).len(), SLACK + 10);
        let out = decoded.of(&[cached("a", 1, "one"), broken]);
        assert_eq!(out.len(), 1);
        // More than the slack beyond this request's objects: only these stay.
        assert_eq!(decoded.len(), 1);
    }
}
