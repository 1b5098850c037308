//! authority.xml: `UserTable::parse` never panics, and a table it accepts writes out
//! (`to_xml`) to text that parses back to the same users.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::authority_xml(data));
