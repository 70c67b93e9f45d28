//! The query language: parse, then compile to SQL for both databases.
#![no_main]

use clusto_store::{Backend, compile_query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = clusto_core::query::parse(text) {
        let _ = compile_query(&q, Backend::Sqlite, None);
        let _ = compile_query(&q, Backend::Postgres, Some(7));
    }
});
