//! Resource quantities (`100m`, `1.5Gi`, `1e3`). Nothing may panic on any text, nor on the
//! arithmetic a scheduler does with what parses.
#![no_main]

use everynode_api::quantity::Quantity;
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering;

fuzz_target!(|text: &str| {
    let Ok(q) = Quantity::parse(text) else {
        return;
    };
    assert_eq!(q.compare(q), Ordering::Equal);
    let _ = (q.milli_ceil(), q.units_ceil(), q.is_negative(), q.nanos());
    let _ = q + q;
});
