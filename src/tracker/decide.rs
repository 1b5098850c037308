//! The authority rules of docs/protocol.md 2 in one pure function.
//!
//! Every endpoint asks [`decide`] and nothing else whether a user may act on a torrent, so the
//! rules are written, and tested, in one place. "Smaller is higher" itself lives in
//! [`Authority::may_read`].
//!
//! Rules, in order:
//! 1. The owner (publisher) may do anything a reader may, on its own torrent, whatever the
//!    torrent's authority.
//! 2. A user assigned as relay of a torrent is refused its key, always (docs/protocol.md 2: "is
//!    always refused getcipher"), even if its authority would reach it: the relay role promises
//!    that the relaying machine never holds a key.
//! 3. A user whose authority reaches the torrent's (`P <= T`) may read it.
//! 4. An administrator may read every torrent. docs/protocol.md 1 has administrators lower
//!    authorities "after examining content", which needs the key; docs/protocol.md 2 does not
//!    say it, so it is our reading and is audited as `admin` so it stands out.
//! 5. An assigned relay may announce, scrape and fetch the metainfo.
//! 6. Anything else is refused, with the same public text as an unknown torrent.

use crate::types::Authority;

use super::refusal::Refusal;

/// Who asks, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub name: &'a str,
    pub authority: Authority,
    pub admin: bool,
}

/// The torrent, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct TorrentAccess<'a> {
    pub owner: &'a str,
    pub authority: Authority,
    /// Whether the requester is assigned to relay this torrent.
    pub requester_is_relay: bool,
}

/// What the requester wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Join the swarm (download or seed).
    Announce,
    /// Read the swarm counts.
    Scrape,
    /// Fetch the stored .torrent.
    Metainfo,
    /// Get the content key, wrapped for the requester.
    Getcipher,
}

/// Why a request was allowed, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Owner,
    Reader,
    Admin,
    Relay,
}

impl Grant {
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::Owner => "owner",
            Grant::Reader => "authority",
            Grant::Admin => "admin",
            Grant::Relay => "relay",
        }
    }
}

/// Decides whether `user` may do `action` on `torrent` (`None`: no such torrent).
///
/// # Errors
/// A [`Refusal`] whose public text is the same for an unknown and a forbidden torrent; its
/// audit text says which.
pub fn decide(
    user: &Requester<'_>,
    torrent: Option<&TorrentAccess<'_>>,
    action: Action,
) -> Result<Grant, Refusal> {
    let Some(t) = torrent else {
        return Err(Refusal::not_found("unknown torrent"));
    };
    if t.owner == user.name {
        return Ok(Grant::Owner);
    }
    if action == Action::Getcipher && t.requester_is_relay {
        return Err(Refusal::not_found("relays never get a key"));
    }
    if user.authority.may_read(t.authority) {
        return Ok(Grant::Reader);
    }
    if user.admin {
        return Ok(Grant::Admin);
    }
    if t.requester_is_relay {
        return Ok(Grant::Relay);
    }
    Err(Refusal::not_found(format!(
        "authority {} does not reach torrent authority {}",
        user.authority, t.authority
    )))
}

/// Whether `user` may use the admin API.
///
/// # Errors
/// A refusal that says so; it is no oracle, an admin API exists on every tracker.
pub fn decide_admin(user: &Requester<'_>) -> Result<Grant, Refusal> {
    if user.admin {
        Ok(Grant::Admin)
    } else {
        Err(Refusal::identity("administrators only"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal::{NOT_FOUND, RefusalKind};
    use super::*;

    /// (user authority, admin, owner?, relay?, torrent authority, action, expected)
    type Row = (u32, bool, bool, bool, u32, Action, Option<Grant>);

    #[test]
    fn rule_table() {
        use Action::*;
        use Grant::*;
        let rows: &[Row] = &[
            // plain authority: P <= T reads
            (1, false, false, false, 4, Announce, Some(Reader)),
            (4, false, false, false, 4, Getcipher, Some(Reader)),
            (5, false, false, false, 4, Announce, None),
            (5, false, false, false, 4, Scrape, None),
            (5, false, false, false, 4, Metainfo, None),
            (5, false, false, false, 4, Getcipher, None),
            (1, false, false, false, 0, Announce, None),
            (0, false, false, false, 0, Getcipher, Some(Reader)),
            // owner rule: the publisher keeps access whatever T
            (3, false, true, false, 0, Announce, Some(Owner)),
            (3, false, true, false, 0, Getcipher, Some(Owner)),
            (9, false, true, true, 0, Getcipher, Some(Owner)),
            // relays: carry, never a key, even with authority
            (9, false, false, true, 0, Announce, Some(Relay)),
            (9, false, false, true, 0, Scrape, Some(Relay)),
            (9, false, false, true, 0, Metainfo, Some(Relay)),
            (9, false, false, true, 0, Getcipher, None),
            (0, false, false, true, 4, Getcipher, None),
            (0, false, false, true, 4, Announce, Some(Reader)),
            // admins read everything
            (9, true, false, false, 0, Getcipher, Some(Admin)),
            (9, true, false, false, 0, Announce, Some(Admin)),
        ];
        for &(p, admin, owner, relay, t, action, expected) in rows {
            let user = Requester {
                name: "u",
                authority: Authority(p),
                admin,
            };
            let torrent = TorrentAccess {
                owner: if owner { "u" } else { "someone" },
                authority: Authority(t),
                requester_is_relay: relay,
            };
            let got = decide(&user, Some(&torrent), action);
            match expected {
                Some(grant) => assert_eq!(
                    got,
                    Ok(grant),
                    "row {p} {admin} {owner} {relay} {t} {action:?}"
                ),
                None => {
                    let refusal = got.expect_err("refused");
                    assert_eq!(refusal.kind, RefusalKind::NotFound);
                    assert_eq!(refusal.public, NOT_FOUND);
                }
            }
        }
    }

    #[test]
    fn unknown_and_forbidden_look_the_same() {
        let user = Requester {
            name: "u5",
            authority: Authority(5),
            admin: false,
        };
        let torrent = TorrentAccess {
            owner: "u3",
            authority: Authority(4),
            requester_is_relay: false,
        };
        let unknown = decide(&user, None, Action::Announce).unwrap_err();
        let forbidden = decide(&user, Some(&torrent), Action::Announce).unwrap_err();
        assert_eq!(
            (unknown.kind, &unknown.public),
            (forbidden.kind, &forbidden.public)
        );
        assert_ne!(unknown.audit, forbidden.audit);
    }

    #[test]
    fn admin_api_only_for_admins() {
        let mut user = Requester {
            name: "a",
            authority: Authority(0),
            admin: false,
        };
        assert_eq!(decide_admin(&user).unwrap_err().kind, RefusalKind::Identity);
        user.admin = true;
        assert_eq!(decide_admin(&user), Ok(Grant::Admin));
    }
}
