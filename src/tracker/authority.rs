//! authority.xml: the users, their password hashes and authority levels (docs/protocol.md 3.1).
