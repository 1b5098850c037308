//! The tracker's endpoints, named once.
//!
//! Routing ([`Endpoint::from_path`]), the audit log (an entry's `endpoint`) and the request
//! metrics (one series per endpoint, found by [`Endpoint::index`]) all take an [`Endpoint`],
//! so a new endpoint cannot be routed and then be missing from the metrics, or be audited
//! under a name the metrics do not know. The names are the audit log's (docs/protocol.md 8)
//! and the metrics' `endpoint` label; they never change.

use hyper::Method;

/// Declares [`Endpoint`] and [`Endpoint::ALL`] from one list, so that `ALL` cannot miss a
/// variant and a variant's index is its place in `ALL`.
macro_rules! endpoints {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// One endpoint of the tracker, as routed, audited and counted.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Endpoint {
            $($(#[$doc])* $variant,)*
        }

        impl Endpoint {
            /// Every endpoint, in declaration order: `ALL[e.index()] == e`.
            pub const ALL: &[Endpoint] = &[$(Endpoint::$variant,)*];

            /// The name in the audit log and in the metrics' `endpoint` label.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Endpoint::$variant => $name,)*
                }
            }
        }
    };
}

endpoints! {
    /// GET /announce (docs/protocol.md 4.1).
    Announce => "announce",
    /// GET /scrape (docs/protocol.md 4.2).
    Scrape => "scrape",
    /// GET /getcipher (docs/protocol.md 4.3).
    Getcipher => "getcipher",
    /// The paper's `/announce?getCipher=yes`, an alias of /getcipher (docs/protocol.md 4.1):
    /// routed as /announce, audited and counted under its own name.
    AnnounceGetCipher => "announce?getCipher",
    /// POST /publish (docs/protocol.md 4.4).
    Publish => "publish",
    /// GET /torrent (docs/protocol.md 4.5).
    Torrent => "torrent",
    /// GET /relay/assignments (docs/protocol.md 4.5).
    RelayAssignments => "relay/assignments",
    /// GET /admin/torrents.
    AdminTorrents => "admin/torrents",
    /// GET /admin/torrent.
    AdminTorrent => "admin/torrent",
    /// POST /admin/set-authority.
    AdminSetAuthority => "admin/set-authority",
    /// POST /admin/relay/assign.
    AdminRelayAssign => "admin/relay/assign",
    /// POST /admin/relay/unassign.
    AdminRelayUnassign => "admin/relay/unassign",
    /// GET /admin/audit.
    AdminAudit => "admin/audit",
    /// POST /admin/remove.
    AdminRemove => "admin/remove",
    /// Any other path under /admin/: authenticated and audited like an admin call, then
    /// answered 404.
    AdminUnknown => "admin",
    /// A request refused before it reached its endpoint: its body could not be read.
    Http => "http",
}

/// The prefix of the admin calls.
pub const ADMIN_PREFIX: &str = "/admin/";

impl Endpoint {
    /// How many endpoints there are: the number of metrics series.
    pub const COUNT: usize = Self::ALL.len();

    /// The endpoint's place in [`Endpoint::ALL`], which indexes the metrics table.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The endpoint a request path names, if any. [`Endpoint::AnnounceGetCipher`] and
    /// [`Endpoint::Http`] are never routed by path.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        let endpoint = match path {
            "/announce" => Endpoint::Announce,
            "/scrape" => Endpoint::Scrape,
            "/getcipher" => Endpoint::Getcipher,
            "/publish" => Endpoint::Publish,
            "/torrent" => Endpoint::Torrent,
            "/relay/assignments" => Endpoint::RelayAssignments,
            _ => match path.strip_prefix(ADMIN_PREFIX)? {
                "torrents" => Endpoint::AdminTorrents,
                "torrent" => Endpoint::AdminTorrent,
                "set-authority" => Endpoint::AdminSetAuthority,
                "relay/assign" => Endpoint::AdminRelayAssign,
                "relay/unassign" => Endpoint::AdminRelayUnassign,
                "audit" => Endpoint::AdminAudit,
                "remove" => Endpoint::AdminRemove,
                _ => Endpoint::AdminUnknown,
            },
        };
        Some(endpoint)
    }

    /// Whether this is an admin call (docs/protocol.md 4.5): its method is checked only after
    /// authentication, so that a wrong one is audited.
    pub fn is_admin(self) -> bool {
        self.name().starts_with("admin")
    }

    /// The method the endpoint takes; `None` for [`Endpoint::AdminUnknown`] and
    /// [`Endpoint::Http`], which take none of their own.
    pub fn method(self) -> Option<Method> {
        match self {
            Endpoint::Announce
            | Endpoint::AnnounceGetCipher
            | Endpoint::Scrape
            | Endpoint::Getcipher
            | Endpoint::Torrent
            | Endpoint::RelayAssignments
            | Endpoint::AdminTorrents
            | Endpoint::AdminTorrent
            | Endpoint::AdminAudit => Some(Method::GET),
            Endpoint::Publish
            | Endpoint::AdminSetAuthority
            | Endpoint::AdminRelayAssign
            | Endpoint::AdminRelayUnassign
            | Endpoint::AdminRemove => Some(Method::POST),
            Endpoint::AdminUnknown | Endpoint::Http => None,
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_its_own_index_and_name() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
        }
        let mut names: Vec<_> = Endpoint::ALL.iter().map(|e| e.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Endpoint::COUNT, "two endpoints share a name");
    }

    #[test]
    fn paths_route_to_their_endpoints() {
        for (path, endpoint) in [
            ("/announce", Some(Endpoint::Announce)),
            ("/scrape", Some(Endpoint::Scrape)),
            ("/getcipher", Some(Endpoint::Getcipher)),
            ("/publish", Some(Endpoint::Publish)),
            ("/torrent", Some(Endpoint::Torrent)),
            ("/relay/assignments", Some(Endpoint::RelayAssignments)),
            ("/admin/torrents", Some(Endpoint::AdminTorrents)),
            ("/admin/torrent", Some(Endpoint::AdminTorrent)),
            ("/admin/set-authority", Some(Endpoint::AdminSetAuthority)),
            ("/admin/relay/assign", Some(Endpoint::AdminRelayAssign)),
            ("/admin/relay/unassign", Some(Endpoint::AdminRelayUnassign)),
            ("/admin/audit", Some(Endpoint::AdminAudit)),
            ("/admin/remove", Some(Endpoint::AdminRemove)),
            ("/admin/", Some(Endpoint::AdminUnknown)),
            ("/admin/nothing", Some(Endpoint::AdminUnknown)),
            ("/admin", None),
            ("/", None),
            ("/announce/", None),
            ("/Announce", None),
        ] {
            assert_eq!(Endpoint::from_path(path), endpoint, "{path}");
        }
    }

    #[test]
    fn admin_calls_are_the_admin_endpoints() {
        for e in Endpoint::ALL {
            let under_admin = matches!(Endpoint::from_path(&format!("/{}", e.name())), Some(r) if r == *e)
                && e.name().starts_with("admin/");
            assert_eq!(
                e.is_admin(),
                under_admin || *e == Endpoint::AdminUnknown,
                "{e:?}"
            );
        }
    }
}
