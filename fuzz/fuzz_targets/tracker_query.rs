//! The tracker's query parsing: `Query::parse` and the parameter readers every endpoint uses
//! (announce, getcipher, scrape's info hashes, flags and integers). Never panics.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tracker_query(data));
