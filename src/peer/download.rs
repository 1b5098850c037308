//! `peer download`: the key from the tracker (checked against the torrent before anything
//! is decrypted), ciphertext from the swarm, each piece verified, decrypted and written, and a
//! partial download resumed.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::content::ContentKey;
use crate::crypto::identity::CipherTarget;
use crate::metainfo::Metainfo;
use crate::peer::bitfield::Bitfield;
use crate::peer::node::{PeerError, PeerNode};
use crate::peer::resume;
use crate::peer::session::Torrent;
use crate::peer::storage::{self, ContentFiles, OpenMode, PieceStore, PlaintextStore};
use crate::peer::tracker_client::TrackerError;
use crate::types::InfoHash;
use tokio_util::sync::CancellationToken;

/// How long [`content_key`] keeps asking a tracker that answers "temporarily unavailable".
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(120);
/// The pause between those attempts (the tracker's own `Retry-After`).
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Asks the tracker for the torrent's key and checks it against `info.ivcsd` (key id and key
/// check), so a wrong key is reported instead of writing garbage. A tracker that is
/// temporarily unavailable is asked again every [`UNAVAILABLE_RETRY`] for up to
/// [`UNAVAILABLE_PATIENCE`].
///
/// # Errors
/// Not an ivcsd torrent, a refusal, an unreachable tracker, a tracker still unavailable after
/// [`UNAVAILABLE_PATIENCE`], or a key that does not match.
pub async fn content_key(node: &PeerNode, metainfo: &Metainfo) -> Result<ContentKey, PeerError> {
    let ivcsd = metainfo.info.ivcsd.ok_or(PeerError::NotEncrypted)?;
    let give_up = tokio::time::Instant::now() + UNAVAILABLE_PATIENCE;
    let grant = loop {
        let asked = node
            .tracker
            .get_cipher(node.identity()?, CipherTarget::Torrent(metainfo.info_hash))
            .await;
        match asked {
            // The tracker cannot record the hand-out now (a full disk under its audit log):
            // a passing condition, so ask again for a while instead of failing at once.
            Err(TrackerError::Unavailable(reason))
                if tokio::time::Instant::now() + UNAVAILABLE_RETRY < give_up =>
            {
                tracing::warn!(%reason, retry_in = ?UNAVAILABLE_RETRY, "tracker cannot hand out the key now");
                tokio::select! {
                    _ = node.shutdown.cancelled() => {
                        return Err(TrackerError::Unavailable(reason).into());
                    }
                    _ = tokio::time::sleep(UNAVAILABLE_RETRY) => {}
                }
            }
            other => break other?,
        }
    };
    if grant.key_id != ivcsd.key_id || !grant.key.matches_check(&ivcsd.check) {
        return Err(PeerError::WrongKey {
            key_id: grant.key_id.to_hex(),
        });
    }
    if grant.cipher != ivcsd.cipher {
        return Err(PeerError::CipherMismatch {
            tracker: grant.cipher,
            torrent: ivcsd.cipher,
        });
    }
    Ok(grant.key)
}

/// Whether to trust a resume record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Use a valid resume record; verify what is on disk only without one.
    IfNeeded,
    /// Verify every piece on disk (`--recheck`).
    Always,
}

/// Whether a download first checks that its file system has room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceCheck {
    /// Refuse to start when the free space is less than the download still needs.
    Before,
    /// Start anyway (`--no-space-check`); a full disk then stops the download when it comes.
    Skip,
}

/// Starts downloading `metainfo` into `output` (the torrent's name is created inside it).
///
/// # Errors
/// Not enough free space (with [`SpaceCheck::Before`]), as [`content_key`], or the files
/// cannot be created.
pub async fn start(
    node: &PeerNode,
    metainfo: &Metainfo,
    output: &Path,
    recheck: Recheck,
    space: SpaceCheck,
) -> Result<Arc<Torrent>, PeerError> {
    if space == SpaceCheck::Before {
        storage::check_space(output, &metainfo.info)?;
    }
    let key = content_key(node, metainfo).await?;
    let info = metainfo.info.clone();
    let content = output.join(&info.name);
    let existed = content.exists();
    let files = ContentFiles::open(output, &info, OpenMode::Create)?;
    let store: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(files, info.clone(), key));
    let resume_path = resume::record_path(output, metainfo.info_hash);
    let (have, _) = pieces_on_disk(
        &store,
        metainfo.info_hash,
        &resume_path,
        existed,
        recheck,
        &node.shutdown,
    )
    .await?;
    let torrent = Torrent::new(
        metainfo.info_hash,
        store,
        have,
        node.session_config(),
        Some(Arc::clone(&node.tracker)),
        Some(resume_path),
        node.shutdown.child_token(),
    )?;
    node.registry.insert(Arc::clone(&torrent));
    torrent.start(&[]);
    Ok(torrent)
}

/// Where the verified pieces of a store came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// A valid fast-resume record.
    ResumeRecord,
    /// Every piece on disk was hashed.
    Verified,
    /// Nothing was on disk.
    Nothing,
}

/// The verified pieces of `store`: from its resume record at `resume_path` when that is valid
/// (and `recheck` allows it), else by hashing the data on disk (off the reactor) when `existed`,
/// else none. Downloads, seeds and relays all resume this way. Hashing stops early when
/// `shutdown` is cancelled.
///
/// # Errors
/// The verification task failed, or `shutdown` came during it ([`PeerError::Interrupted`]).
pub async fn pieces_on_disk(
    store: &Arc<dyn PieceStore>,
    info_hash: InfoHash,
    resume_path: &Path,
    existed: bool,
    recheck: Recheck,
    shutdown: &CancellationToken,
) -> Result<(Bitfield, OnDisk), PeerError> {
    let piece_count = store.info().piece_count();
    let recorded = match recheck {
        Recheck::IfNeeded => {
            let paths = store.file_paths();
            resume::load(
                resume_path,
                info_hash,
                piece_count,
                paths.iter().map(|p| p.as_path()),
            )
        }
        Recheck::Always => None,
    };
    if let Some(have) = recorded {
        tracing::info!(%info_hash, pieces = have.count(), "resuming from the resume record");
        return Ok((have, OnDisk::ResumeRecord));
    }
    if !existed {
        return Ok((Bitfield::new(piece_count), OnDisk::Nothing));
    }
    tracing::info!(%info_hash, "verifying the data already on disk");
    let checking = Arc::clone(store);
    let stop = shutdown.clone();
    let ok = tokio::task::spawn_blocking(move || {
        storage::recheck(checking.as_ref(), &|| stop.is_cancelled())
    })
    .await
    .map_err(|source| PeerError::Task {
        task: "verification",
        source,
    })?;
    if shutdown.is_cancelled() {
        return Err(PeerError::Interrupted);
    }
    let mut have = Bitfield::new(piece_count);
    for (index, ok) in ok.iter().enumerate() {
        if *ok {
            have.set(index as u32);
        }
    }
    tracing::info!(%info_hash, pieces = have.count(), "verified pieces on disk");
    Ok((have, OnDisk::Verified))
}
