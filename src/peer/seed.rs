//! `peer seed`, and the seeding half of `peer publish`: serve a torrent from its plaintext,
//! encrypting each block on the way out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::content::ContentKey;
use crate::metainfo::Metainfo;
use crate::peer::bitfield::Bitfield;
use crate::peer::download::{self, Recheck, content_key};
use crate::peer::node::{PeerError, PeerNode};
use crate::peer::resume;
use crate::peer::session::Torrent;
use crate::peer::storage::{ContentFiles, OpenMode, PieceStore, PlaintextStore};

/// Whether the data on disk is known to match the torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The pieces were just hashed from this data (by `publish`).
    JustHashed,
    /// Verify the data before serving any of it; [`Recheck::IfNeeded`] trusts a valid resume
    /// record beside the data, [`Recheck::Always`] (`--recheck`) hashes every piece.
    Verify(Recheck),
}

/// Starts seeding `metainfo` from `content` (its top-level file or directory). Without `key`,
/// the key is asked of the tracker (the owner and readers get it). With [`Trust::Verify`] a
/// valid resume record next to the content (what `peer download` leaves there, or what an
/// earlier seed wrote) stands for hashing everything again.
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
    if let Trust::Verify(recheck) = trust {
        verify_or_resume(node, metainfo, content, &store, recheck).await?;
    }
    let torrent = Torrent::new(
        metainfo.info_hash,
        store,
        Bitfield::full(info.piece_count()),
        node.session_config(),
        Some(Arc::clone(&node.tracker)),
        // Complete from the start, the session never writes it; a re-verification that finds
        // damage deletes it.
        Some(resume_record(content, metainfo.info_hash)),
        node.shutdown.child_token(),
    )?;
    node.registry.insert(Arc::clone(&torrent));
    torrent.start(&[]);
    Ok(torrent)
}

/// Where the resume record of seeding `info_hash` from `content` is: in `.ivcsd/` beside it,
/// as `peer download --output` leaves it.
pub fn resume_record(content: &Path, info_hash: crate::types::InfoHash) -> PathBuf {
    resume::record_path(content.parent().unwrap_or(Path::new(".")), info_hash)
}

/// Checks that every piece of `content` is there and right: from the resume record in
/// `content`'s directory when its files are unchanged, else by hashing them all, after which
/// a record is written (best effort: the data may be read-only) so that the next start is
/// quick even for terabytes.
async fn verify_or_resume(
    node: &PeerNode,
    metainfo: &Metainfo,
    content: &Path,
    store: &Arc<dyn PieceStore>,
    recheck: Recheck,
) -> Result<(), PeerError> {
    let info_hash = metainfo.info_hash;
    let record = resume_record(content, info_hash);
    let (have, on_disk) =
        download::pieces_on_disk(store, info_hash, &record, true, recheck, &node.shutdown).await?;
    let pieces = metainfo.info.piece_count();
    let missing = pieces - have.count();
    if missing > 0 {
        return Err(PeerError::DataMismatch {
            path: content.to_path_buf(),
            missing,
            pieces,
        });
    }
    if on_disk == download::OnDisk::Verified {
        let files = store.file_paths();
        let saved = tokio::task::spawn_blocking(move || {
            resume::save(
                &record,
                info_hash,
                &have,
                files.iter().map(PathBuf::as_path),
            )
        })
        .await;
        if let Ok(Err(e)) = saved {
            tracing::warn!(%info_hash, error = %e, "cannot write the resume record; the next start verifies everything again");
        }
    }
    Ok(())
}
