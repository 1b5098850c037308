//! [`User`] and [`UserTable`]: one version of authority.xml in memory, the users in file order
//! with an index by name. Reading and writing the file is `xml.rs`; the version in force is
//! `source.rs`.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::types::Authority;

use super::{IpRule, PasswordHash};

/// One `<peer>` of authority.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub password: PasswordHash,
    pub authority: Authority,
    pub admin: bool,
    /// When set, requests for this user must come from a matching address.
    pub ip: Option<IpRule>,
    /// When set (SPKI DER), getcipher accepts only this RSA key for the user.
    pub public_key: Option<Vec<u8>>,
    /// Milliseconds since 1970 of the last edit by the tools.
    pub updated_ms: u64,
}

impl User {
    /// See [`PasswordHash::verify`]: slow, call it off the reactor.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        self.password.verify(password)
    }

    /// Changes whenever the password, authority or admin flag changes; tokens embed it so
    /// that they end at such a change (docs/protocol.md 3.2).
    pub fn token_generation(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"ivcsd-token-generation/1\0");
        h.update(self.username.as_bytes());
        h.update([0]);
        h.update(self.password.to_text().as_bytes());
        h.update([0]);
        h.update(self.authority.0.to_be_bytes());
        h.update([u8::from(self.admin)]);
        h.finalize().into()
    }
}

/// All users of one version of authority.xml, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTable {
    users: Vec<User>,
    by_name: HashMap<String, usize>,
}

impl UserTable {
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).map(|&i| &self.users[i])
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }

    /// Adds a user; `false` (and no change) if the name is taken.
    pub fn insert(&mut self, user: User) -> bool {
        if self.by_name.contains_key(&user.username) {
            return false;
        }
        self.by_name.insert(user.username.clone(), self.users.len());
        self.users.push(user);
        true
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut User> {
        let i = *self.by_name.get(name)?;
        Some(&mut self.users[i])
    }

    /// Removes a user; `None` if there is none of that name.
    pub fn remove(&mut self, name: &str) -> Option<User> {
        let i = self.by_name.remove(name)?;
        let user = self.users.remove(i);
        for index in self.by_name.values_mut() {
            if *index > i {
                *index -= 1;
            }
        }
        Some(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::authority::test_files::{GOOD, parse, peer};

    #[test]
    fn token_generation_changes_with_what_ends_tokens() {
        let t = parse(&peer(GOOD)).unwrap();
        let u = t.get("u1").unwrap().clone();
        let g = u.token_generation();
        let mut changed = u.clone();
        changed.authority = Authority(2);
        assert_ne!(changed.token_generation(), g);
        let mut changed = u.clone();
        changed.admin = true;
        assert_ne!(changed.token_generation(), g);
        let mut changed = u.clone();
        changed.password = PasswordHash::LegacySha1([0; 20]);
        assert_ne!(changed.token_generation(), g);
        let mut same = u.clone();
        same.updated_ms = 99;
        same.ip = Some(IpRule::Any);
        assert_eq!(same.token_generation(), g);
    }

    #[test]
    fn remove_keeps_the_index_consistent() {
        let mut t = UserTable::default();
        for name in ["a", "b", "c"] {
            t.insert(User {
                username: name.into(),
                password: PasswordHash::LegacySha1([0; 20]),
                authority: Authority(1),
                admin: false,
                ip: None,
                public_key: None,
                updated_ms: 0,
            });
        }
        assert!(t.remove("a").is_some());
        assert!(t.remove("a").is_none());
        assert_eq!(t.get("c").unwrap().username, "c");
        assert_eq!(t.get("b").unwrap().username, "b");
        assert_eq!(t.len(), 2);
    }
}
