//! Label and field selectors as a query carries them. Nothing may panic; a label selector that
//! parses prints as one that parses to the same requirements.
#![no_main]

use everynode_api::selector::{parse_field_selector, parse_label_selector};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|text: &str| {
    if let Ok(selector) = parse_label_selector(text) {
        let printed = selector.to_string();
        let again = parse_label_selector(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which does not parse: {e}"));
        assert_eq!(printed, again.to_string(), "printing is not stable for {text:?}");
        let labels: BTreeMap<String, String> =
            [("app".to_owned(), "a".to_owned()), ("tier".to_owned(), String::new())].into();
        assert_eq!(selector.matches(&labels), again.matches(&labels));
    }
    if let Ok(selector) = parse_field_selector(text) {
        let _ = selector.equality_value("metadata.name");
        for res in everynode_api::registry::RESOURCES {
            let _ = res.check_field_labels(&selector);
        }
    }
});
