//! The manifest loader: YAML → objects (every error with a line), and what
//! parses is applied to an empty inventory by the core's rules.
#![no_main]

use clusto_core::Inventory;
use clusto_manifest::{ApplyOptions, Source, apply, parse_sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let src = Source {
        file: "fuzz.yaml".into(),
        text: text.to_string(),
    };
    let (objects, errors) = parse_sources(std::slice::from_ref(&src));
    for e in &errors {
        assert!(e.loc.line >= 1, "an error without a line: {e}");
    }
    let mut inv = Inventory::new();
    let _ = apply(&mut inv, &objects, &ApplyOptions::default());
});
