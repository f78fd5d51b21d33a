//! Server-side apply's merge and field ownership: a live object (JSON) and an apply
//! configuration (YAML, as sent), by two managers in turn. Nothing may panic; an apply that
//! succeeds leaves an object whose managedFields parse as field sets.
#![no_main]

use everynode_api::registry::RESOURCES;
use everynode_apimachinery::managed_fields::{self, Part, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [selector, force, rest @ ..] = data else {
        return;
    };
    let res = &RESOURCES[usize::from(*selector) % RESOURCES.len()];
    let Some(split) = rest.iter().position(|b| *b == 0) else {
        return;
    };
    let (live, config) = (&rest[..split], &rest[split + 1..]);
    let live: Option<serde_json::Value> = serde_json::from_slice(live).ok();
    let Ok(config) = everynode_apiserver::body::yaml(&bytes::Bytes::copy_from_slice(config)) else {
        return;
    };
    let api_version = res.api_version();
    for manager in ["kubectl", "helm"] {
        let writer = Writer {
            manager,
            api_version: &api_version,
            time: "2026-11-29T00:00:00Z",
            part: if selector & 1 == 1 { Part::Status } else { Part::Main { has_status: res.has_subresource("status") } },
        };
        if let Ok(result) = managed_fields::apply(live.as_ref(), &config, res.id, writer, force & 1 == 1) {
            for entry in result["metadata"]["managedFields"].as_array().into_iter().flatten() {
                let set = managed_fields::FieldSet::from_fields_v1(&entry["fieldsV1"]);
                let _ = set.paths();
            }
        }
    }
});

