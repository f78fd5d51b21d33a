//! A request's query string into every verb's options, as the request layer decodes it, and
//! the values those options carry on to: selectors, watch timeouts, continue tokens, dry-run
//! field managers, and a delete's body. Nothing may panic; a bad value is a 400.
#![no_main]

use everynode_api::registry::RESOURCES;
use everynode_apiserver::handlers::list::decode_continue;
use everynode_apiserver::request::Query;
use everynode_apiserver::request::options::{
    DeleteOptions, GetOptions, ListOptions, LogOptions, PatchOptions, WriteOptions,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    // The query, then (after the first newline) a DeleteOptions body.
    let (raw, delete_body) = input.split_once('\n').unwrap_or((input, ""));
    let Ok(query) = Query::parse(Some(raw)) else {
        return;
    };
    if let Ok(list) = query.decode::<ListOptions>() {
        let _ = list.labels();
        for res in RESOURCES {
            let _ = list.fields(res);
        }
        let _ = list.watch_timeout();
        if let Some(token) = &list.continue_token {
            let _ = decode_continue(token);
        }
    }
    let _ = query.decode::<GetOptions>();
    if let Ok(write) = query.decode::<WriteOptions>() {
        let _ = write.manager("kubectl/v1.33.0 (linux/amd64)");
    }
    let _ = query.decode::<PatchOptions>();
    let _ = DeleteOptions::from_request(&query, delete_body.as_bytes());
    if let Ok(log) = query.decode::<LogOptions>() {
        let _ = log.validate();
        let _ = log.agent_query();
    }
});
