//! Incoming peer connections: one TCP listener per process, each connection routed after its
//! handshake to the torrent it names (a relay serves many torrents on one port).
//!
//! Handshakes in progress are bounded ([`MAX_PENDING_HANDSHAKES`], of which at most
//! [`MAX_PENDING_HANDSHAKES_PER_ADDRESS`] from one address) and each has a deadline, so idle or
//! trickling connections cannot pile up, and one address cannot keep honest peers out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::conn_limit::AddressLimit;
use crate::peer::connection::{self, ConnectionConfig};
use crate::peer::session::Torrent;
use crate::types::InfoHash;

/// Most incoming connections that may be in their handshake at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// Most of those from one source address; more from it are closed as soon as accepted. Half
/// the total: one address can never take every slot, and a few honest peers behind one NAT
/// address still get through while others from it stall.
pub const MAX_PENDING_HANDSHAKES_PER_ADDRESS: usize = MAX_PENDING_HANDSHAKES / 2;

/// The torrents this process serves, by info hash.
#[derive(Default)]
pub struct Registry {
    torrents: Mutex<HashMap<InfoHash, Arc<Torrent>>>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    pub fn insert(&self, torrent: Arc<Torrent>) {
        self.lock().insert(torrent.info_hash(), torrent);
    }

    pub fn remove(&self, info_hash: &InfoHash) -> Option<Arc<Torrent>> {
        self.lock().remove(info_hash)
    }

    pub fn get(&self, info_hash: &InfoHash) -> Option<Arc<Torrent>> {
        self.lock().get(info_hash).cloned()
    }

    /// Every registered torrent, for totals over them.
    pub fn torrents(&self) -> Vec<Arc<Torrent>> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<InfoHash, Arc<Torrent>>> {
        self.torrents.lock()
    }
}

/// Accepts connections on `listener` until `shutdown`, and hands each one whose handshake
/// names a registered torrent to that torrent.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    config: ConnectionConfig,
    shutdown: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    let per_address = AddressLimit::new(MAX_PENDING_HANDSHAKES_PER_ADDRESS);
    let config = Arc::new(config);
    loop {
        // Take a permit before accepting: at most MAX_PENDING_HANDSHAKES at once.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = Arc::clone(&pending).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr): (_, SocketAddr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(address_permit) = per_address.try_acquire(addr.ip()) else {
            tracing::debug!(%addr, "incoming connection closed: too many handshakes from its address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let registry = Arc::clone(&registry);
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            let result =
                connection::accept(stream, |hash| registry.get(hash).is_some(), &config).await;
            drop((permit, address_permit));
            match result {
                Ok(handshaken) => {
                    if let Some(torrent) = registry.get(&handshaken.info_hash()) {
                        torrent.add_peer(handshaken);
                    }
                }
                Err(e) => tracing::debug!(%addr, error = %e, "incoming handshake failed"),
            }
        });
    }
}
