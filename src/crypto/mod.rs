//! The cipher system (docs/protocol.md section 6) and peer identities (section 4.3).
//!
//! - [`rc4plus`]: the bare RC4+ stream cipher.
//! - [`content`]: content keys, per-block keying, encryption of any byte range.
//! - [`identity`]: RSA keys, PSS signatures, OAEP key wrapping, the signed getcipher message.

pub mod content;
pub mod identity;
pub mod rc4plus;
