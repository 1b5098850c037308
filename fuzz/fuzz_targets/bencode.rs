//! Strict bencode: any input either fails with an error or decodes to a value whose canonical
//! encoding is exactly the input (the decoder accepts canonical form only).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::bencode(data));
