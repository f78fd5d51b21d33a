//! A request body, as JSON, YAML or protobuf, through what a create does before the store:
//! parse by content type, decode into the resource's type, default, validate. Nothing may
//! panic, and a YAML body the nesting check lets through must parse in bounded time (libFuzzer's
//! timeout catches a quadratic parse).
#![no_main]

use everynode_api::registry::RESOURCES;
use everynode_apiserver::body;
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fuzz_target!(|data: &[u8]| {
    let [selector, which_type, rest @ ..] = data else {
        return;
    };
    let res = &RESOURCES[usize::from(*selector) % RESOURCES.len()];
    let content_type = CONTENT_TYPES[usize::from(*which_type) % CONTENT_TYPES.len()];
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let _ = body::duplicated_fields(&headers, rest);
    let Ok(mut obj) = body::object(&headers, &bytes::Bytes::copy_from_slice(rest)) else {
        return;
    };
    obj["apiVersion"] = res.api_version().into();
    obj["kind"] = res.kind.into();
    let Ok(mut decoded) = res.decode(obj) else {
        return;
    };
    everynode_api::defaults::apply(res.id, &mut decoded);
    let errors = everynode_api::validation::validate_create(res, &decoded);
    // Every error names a field path, as a Status cause must.
    for e in &errors {
        let _ = e.to_string();
    }
    let _ = everynode_api::validation::validate_update(res, &decoded, &decoded);
});
