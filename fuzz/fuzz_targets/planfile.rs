//! The plan file reader (`clusto apply PLAN`): JSON → PlanFile, then its
//! manifests parsed and planned against an empty inventory, as apply does.
#![no_main]

use clusto_core::Inventory;
use clusto_manifest::plan::PlanFile;
use clusto_manifest::{apply, parse_sources};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(f) = PlanFile::read(text) else {
        return;
    };
    let (objects, _errors) = parse_sources(&f.sources);
    let mut inv = Inventory::new();
    let _ = apply(&mut inv, &objects, &f.options());
});
