//! The peer wire codec: `Handshake::decode`, `wire::decode` over a stream of frames (as the
//! connection's read loop drives it), and `Message::validate` against a torrent geometry taken
//! from the first input bytes. Nothing panics; a decoded frame never claims more bytes than it
//! was given; plain messages re-encode to the bytes they came from.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::peer_wire(data));
