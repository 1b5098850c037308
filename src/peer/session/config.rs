//! The settings of a torrent session.

use std::sync::Arc;
use std::time::Duration;

use crate::peer::connection::ConnectionConfig;
use crate::peer::metrics::Traffic;
use crate::types::PeerId;

/// Settings of a torrent session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub connection: ConnectionConfig,
    /// The port we announce (where our listener accepts).
    pub announce_port: u16,
    /// Most connections at once, incoming and outgoing.
    pub max_peers: usize,
    /// Most of our requests outstanding at one peer (fewer if the peer's `reqq` says so).
    pub pipeline: usize,
    /// Peers unchoked by merit; one more is unchoked optimistically.
    pub unchoke_slots: usize,
    /// A request unanswered for this long goes to another peer.
    pub request_timeout: Duration,
    /// Most bytes of pieces being assembled or verified in memory.
    pub piece_buffer_budget: u64,
    /// Most bytes of encrypted blocks kept for uploads (a downloader keeps the pieces it has
    /// just verified there: the others ask for those next).
    pub upload_cache_bytes: u64,
    /// How many peers to ask the tracker for.
    pub numwant: u32,
    /// The process's counters ([`crate::peer::metrics`]), shared by all its torrents.
    pub traffic: Arc<Traffic>,
}

impl SessionConfig {
    pub fn new(peer_id: PeerId, announce_port: u16) -> Self {
        let mut connection = ConnectionConfig::new(peer_id);
        connection.listen_port = Some(announce_port);
        SessionConfig {
            connection,
            announce_port,
            max_peers: 50,
            pipeline: 128,
            unchoke_slots: 4,
            request_timeout: Duration::from_secs(20),
            // A downloader's resident memory is about 12 MiB plus the piece budget and its
            // upload cache, plus its connections' buffers: about 52 MiB in a swarm of four
            // downloaders (docs/benchmarks.md). Of the two, the cache gains more: 16 MiB of
            // pieces in flight fill a loopback link, and every upload that misses the cache
            // costs an RC4+ pass (24 + 8 MiB measured 239 MB/s one-to-four, 16 + 16 MiB 270).
            piece_buffer_budget: 16 * 1024 * 1024,
            upload_cache_bytes: 16 * 1024 * 1024,
            numwant: 50,
            traffic: Arc::default(),
        }
    }
}
