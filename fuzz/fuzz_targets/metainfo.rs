//! Torrent files: `Metainfo::from_bytes` never panics, and what it accepts keeps its piece
//! geometry consistent (every piece has a hash and a length, the lengths add up).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::metainfo(data));
