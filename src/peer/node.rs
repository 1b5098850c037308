//! A running peer process: its identity, its tracker client, its listener for incoming
//! connections, and the torrents it serves. `peer publish`, `seed`, `download` and `relay`
//! all start one.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::crypto::identity::Identity;
use crate::peer::listener::{self, Registry};
use crate::peer::metrics::Traffic;
use crate::peer::peer_id::generate_peer_id;
use crate::peer::session::SessionConfig;
use crate::peer::tracker_client::TrackerClient;
use crate::types::PeerId;

/// Why a peer could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tracker(#[from] crate::peer::tracker_client::TrackerError),
    #[error(
        "{} does not match the torrent: {missing} of {pieces} pieces differ or are missing",
        path.display()
    )]
    DataMismatch {
        path: std::path::PathBuf,
        missing: u32,
        pieces: u32,
    },
    #[error("the tracker answered for info hash {answered}, not {published}")]
    InfoHashMismatch {
        answered: crate::types::InfoHash,
        published: crate::types::InfoHash,
    },
    #[error(
        "wrong key: the tracker's key does not match this torrent's key check (key id {key_id}); refusing to decrypt"
    )]
    WrongKey { key_id: String },
    #[error(
        "the tracker names cipher {tracker} for this torrent, but the torrent names {torrent}; refusing to decrypt"
    )]
    CipherMismatch {
        tracker: crate::metainfo::Cipher,
        torrent: crate::metainfo::Cipher,
    },
    #[error("not an ivcsd torrent (no info.ivcsd): it has no key to ask the tracker for")]
    NotEncrypted,
    #[error(transparent)]
    Storage(#[from] crate::peer::storage::StorageError),
    #[error(transparent)]
    Create(#[from] crate::metainfo::CreateError),
    #[error(transparent)]
    Session(#[from] crate::peer::session::SessionError),
    /// A blocking task (verification, torrent creation) panicked or was cancelled.
    #[error("{task} task failed: {source}")]
    Task {
        task: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("this peer has no RSA identity, so it cannot ask for content keys")]
    NoIdentity,
    /// Stopped (Ctrl-C, SIGTERM) while it was verifying data on disk.
    #[error("stopped while verifying the data on disk")]
    Interrupted,
}

/// A peer process. Dropping it does not stop it; call [`PeerNode::shutdown`].
pub struct PeerNode {
    pub tracker: Arc<TrackerClient>,
    /// The RSA identity keys are wrapped for; a relay has none (it never gets a key).
    identity: Option<Arc<Identity>>,
    pub peer_id: PeerId,
    pub registry: Arc<Registry>,
    /// Counters of all its torrents, for `--metrics-listen`.
    pub traffic: Arc<Traffic>,
    /// Where incoming connections are accepted.
    pub local_addr: SocketAddr,
    pub shutdown: CancellationToken,
}

impl PeerNode {
    /// Binds the listener (port 0 picks a free one) and starts accepting connections.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(
        tracker: TrackerClient,
        identity: Option<Arc<Identity>>,
        listen: SocketAddr,
        shutdown: CancellationToken,
    ) -> Result<PeerNode, PeerError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| PeerError::Listen {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| PeerError::Listen {
            addr: listen,
            source,
        })?;
        let peer_id = generate_peer_id();
        let registry = Registry::new();
        let node = PeerNode {
            tracker: Arc::new(tracker),
            identity,
            peer_id,
            registry: Arc::clone(&registry),
            traffic: Arc::default(),
            local_addr,
            shutdown: shutdown.clone(),
        };
        let config = node.session_config().connection;
        tokio::spawn(listener::serve(listener, registry, config, shutdown));
        tracing::info!(addr = %local_addr, "listening for peers");
        Ok(node)
    }

    /// The identity to ask the tracker for keys with.
    ///
    /// # Errors
    /// [`PeerError::NoIdentity`] for a node started without one (a relay).
    pub fn identity(&self) -> Result<&Arc<Identity>, PeerError> {
        self.identity.as_ref().ok_or(PeerError::NoIdentity)
    }

    /// The settings for a torrent of this node.
    pub fn session_config(&self) -> SessionConfig {
        let mut config = SessionConfig::new(self.peer_id, self.local_addr.port());
        config.traffic = Arc::clone(&self.traffic);
        config
    }

    /// Serves this process's metrics ([`crate::peer::metrics`]) on `listener` until shutdown.
    pub fn serve_metrics(&self, listener: TcpListener) {
        let (traffic, registry) = (Arc::clone(&self.traffic), Arc::clone(&self.registry));
        tokio::spawn(crate::metrics::serve(
            listener,
            Box::new(move || crate::peer::metrics::render(&traffic, &registry)),
            self.shutdown.clone(),
        ));
    }
}
