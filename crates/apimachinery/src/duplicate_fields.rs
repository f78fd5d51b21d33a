//! Keys written twice in one object of a request body.
//!
//! Parsing into a map keeps the last of two equal keys and loses the fact that there were two, so
//! `fieldValidation` needs a second look at the raw bytes. This walks the document once with
//! serde's visitor (the same parser as the real decode, for JSON and for YAML) and names each
//! repeated key by its dotted path, as upstream's strict decoder does: `duplicate field
//! "metadata.name"`. Malformed bodies yield nothing here; the real decode reports them.

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Dotted paths of the keys repeated in a JSON body, in document order.
pub fn in_json(body: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let scan = Scan {
        path: String::new(),
        found: &found,
    };
    if scan.deserialize(&mut de).is_err() {
        return Vec::new();
    }
    found.into_inner()
}

/// Dotted paths of the keys repeated in a YAML body (one document), in document order.
pub fn in_yaml(body: &[u8]) -> Vec<String> {
    let found = RefCell::new(Vec::new());
    let scan = Scan {
        path: String::new(),
        found: &found,
    };
    if scan
        .deserialize(serde_yaml_ng::Deserializer::from_slice(body))
        .is_err()
    {
        return Vec::new();
    }
    found.into_inner()
}

/// One value at `path`; records repeated keys of the maps beneath it into `found`.
struct Scan<'a> {
    path: String,
    found: &'a RefCell<Vec<String>>,
}

impl Scan<'_> {
    fn child(&self, segment: &str) -> Self {
        Scan {
            path: if self.path.is_empty() {
                segment.to_owned()
            } else {
                format!("{}.{segment}", self.path)
            },
            found: self.found,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let item = Scan {
                path: format!("{}[{index}]", self.path),
                found: self.found,
            };
            if seq.next_element_seed(item)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            let child = self.child(&key.0);
            if !seen.insert(key.0) {
                self.found.borrow_mut().push(child.path.clone());
            }
            map.next_value_seed(child)?;
        }
        Ok(())
    }
}

/// A map key as text; YAML allows non-string keys, which are named by their debug form.
struct KeyText(String);

impl<'de> serde::Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyText, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyText("<sequence>".to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyText, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyText("<mapping>".to_owned()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_duplicates_are_named_by_dotted_path() {
        let body = br#"{"apiVersion":"apps/v1","kind":"DaemonSet",
            "metadata":{"name":"a","name":"b","labels":{"x":"1"}},
            "spec":{"template":{"spec":{"containers":[
                {"name":"c","image":"i","image":"j"}]}}},"kind":"DaemonSet"}"#;
        assert_eq!(
            in_json(body),
            vec![
                "metadata.name",
                "spec.template.spec.containers[0].image",
                "kind"
            ]
        );
    }

    #[test]
    fn yaml_duplicates_are_named_by_dotted_path() {
        let body = b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\n    app: x\n    app: y\nspec:\n  containers:\n  - name: c\n    image: i\n  - name: d\n    name: e\n";
        assert_eq!(
            in_yaml(body),
            vec!["metadata.labels.app", "spec.containers[1].name"]
        );
    }

    #[test]
    fn equal_keys_in_different_objects_are_not_duplicates() {
        let body = br#"{"a":{"name":1},"b":{"name":2},"c":[{"name":1},{"name":2}]}"#;
        assert!(in_json(body).is_empty());
        assert!(in_yaml(b"a: {name: 1}\nb: {name: 2}\n").is_empty());
    }

    #[test]
    fn malformed_bodies_yield_nothing() {
        assert!(in_json(b"{\"a\":1,\"a\":").is_empty());
        assert!(in_yaml(b"a: [\n").is_empty());
    }
}
