//! PATCH before the store: an object (JSON) and a patch document of one of the three
//! non-apply patch types, applied with PATCH's limits. Nothing may panic, and what comes out is
//! bounded by the object plus the growth a patch may cause.
#![no_main]

use everynode_api::registry::RESOURCES;
use everynode_apiserver::handlers::patch::patched;
use libfuzzer_sys::fuzz_target;

const PATCH_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
];

/// What PATCH allows a patch to add (its request-body limit), with room for JSON overhead.
const GROWTH_BOUND: usize = 4 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let [selector, which_type, rest @ ..] = data else {
        return;
    };
    let res = &RESOURCES[usize::from(*selector) % RESOURCES.len()];
    let patch_type = PATCH_TYPES[usize::from(*which_type) % PATCH_TYPES.len()];
    // The object and the patch, separated by the first NUL byte.
    let Some(split) = rest.iter().position(|b| *b == 0) else {
        return;
    };
    let (original, patch) = (&rest[..split], &rest[split + 1..]);
    let Ok(original) = serde_json::from_slice::<serde_json::Value>(original) else {
        return;
    };
    if let Ok(result) = patched(&original, res.id, patch_type, patch) {
        let before = serde_json::to_vec(&original).map_or(0, |v| v.len());
        let after = serde_json::to_vec(&result).map_or(0, |v| v.len());
        assert!(
            after <= before + patch.len() + GROWTH_BOUND,
            "a {patch_type} of {} bytes grew the object from {before} to {after} bytes",
            patch.len()
        );
        assert!(result.is_object(), "a patch left a non-object");
    }
});
