//! `peer seed`, and the seeding half of `peer publish`: serve a torrent from its plaintext,
//! encrypting each block on the way out.

use std::path::Path;
use std::sync::Arc;

use crate::crypto::content::ContentKey;
use crate::metainfo::Metainfo;
use crate::peer::bitfield::Bitfield;
use crate::peer::download::content_key;
use crate::peer::node::{PeerError, PeerNode};
use crate::peer::session::Torrent;
use crate::peer::storage::{self, ContentFiles, OpenMode, PieceStore, PlaintextStore};

/// Whether the data on disk is known to match the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The pieces were just hashed from this data (by `publish`).
    JustHashed,
    /// Verify every piece before serving any.
    Verify,
}

/// Starts seeding `metainfo` from `content` (its top-level file or directory). Without `key`,
/// the key is asked of the tracker (the owner and readers get it).
///
/// # Errors
/// The tracker refuses the key, the key does not match, the data is missing or differs.
pub async fn start(
    node: &PeerNode,
    metainfo: &Metainfo,
    content: &Path,
    key: Option<ContentKey>,
    trust: Trust,
) -> Result<Arc<Torrent>, PeerError> {
    let key = match key {
        Some(k) => k,
        None => content_key(node, metainfo).await?,
    };
    let info = metainfo.info.clone();
    let files = ContentFiles::open_content(content, &info, OpenMode::Existing)?;
    let store: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(files, info.clone(), key));
    if trust == Trust::Verify {
        let checking = Arc::clone(&store);
        let ok =
            tokio::task::spawn_blocking(move || storage::recheck(checking.as_ref(), &|_, _| {}))
                .await
                .map_err(|e| PeerError::Session(format!("verification task failed: {e}")))?;
        let bad = ok.iter().filter(|ok| !**ok).count();
        if bad > 0 {
            return Err(PeerError::Torrent(format!(
                "{} does not match the torrent: {bad} of {} pieces differ",
                content.display(),
                ok.len()
            )));
        }
    }
    let torrent = Torrent::new(
        metainfo.info_hash,
        store,
        Bitfield::full(info.piece_count()),
        node.session_config(),
        Some(Arc::clone(&node.tracker)),
        None,
        node.shutdown.child_token(),
    )
    .map_err(|e| PeerError::Session(e.to_string()))?;
    node.registry.insert(Arc::clone(&torrent));
    torrent.start(&[]);
    Ok(torrent)
}
