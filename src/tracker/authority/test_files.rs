//! authority.xml texts shared by the tests of the parser, the table and the reload.

use std::path::Path;

use super::{AuthorityFileError, UserTable};

/// The legacy SHA-256 hex digest of the password `secret`.
pub const SHA256_OF_SECRET: &str =
    "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// The elements of a valid user `u1` (password `secret`, authority 1).
pub const GOOD: &str = "<username>u1</username><psw_hash>2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b</psw_hash><authority>1</authority>";

/// Parses `text` as a file named authority.xml.
pub fn parse(text: &str) -> Result<UserTable, AuthorityFileError> {
    UserTable::parse(text, Path::new("authority.xml"))
}

/// A file of one `<peer>` with `body`, which starts on line 3.
pub fn peer(body: &str) -> String {
    format!("<peerAuthority>\n<peer>\n{body}\n</peer>\n</peerAuthority>\n")
}
