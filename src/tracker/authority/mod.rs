//! authority.xml: the users, their password hashes and authority levels (docs/protocol.md 3.1).
//!
//! The file is the paper's format with two optional extensions (`<admin>`, `<public_key>`). It
//! is parsed in full and validated before it replaces the table in force, so a broken edit
//! never opens or closes access by accident: unknown elements are errors (a typo must not
//! silently drop an `<ip>` rule), every error names the file and line, and the last good table
//! stays in force ([`AuthoritySource::reload`]).
//!
//! This module reads and writes the file; deciding what a user may do is elsewhere
//! (`tracker/decide.rs`).
//!
//! # Layout
//! - `users.rs`: [`User`] and [`UserTable`], one version of the file in memory.
//! - `password.rs`: [`PasswordHash`], argon2id and the legacy unsalted hashes.
//! - `ip_rule.rs`: [`IpRule`], the `<ip>` address or network a user's requests must come from.
//! - `xml.rs`: reading ([`load_file`], [`UserTable::parse`]) and writing
//!   ([`UserTable::to_xml`]) the file, and [`AuthorityFileError`] with its line numbers.
//! - `source.rs`: [`AuthoritySource`], the table in force, its reload and the file watcher.

mod ip_rule;
mod password;
mod source;
mod users;
mod xml;

#[cfg(test)]
mod test_files;

pub use ip_rule::IpRule;
pub use password::PasswordHash;
pub use source::AuthoritySource;
pub use users::{User, UserTable};
pub use xml::{AuthorityFileError, Problem, load_file};

/// Longest accepted user name, in bytes.
pub const MAX_USERNAME_LEN: usize = 64;
/// Largest accepted authority.xml; the file is read whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
