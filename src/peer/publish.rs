//! `peer publish`: a new content key from the tracker, the encrypted torrent built on all
//! cores, and the torrent published (docs/protocol.md 4.3 `new=1`, 4.4, 5).

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::crypto::content::ContentKey;
use crate::crypto::identity::CipherTarget;
use crate::metainfo::{Cipher, Metainfo, TorrentBuilder};
use crate::peer::node::{PeerError, PeerNode};
use crate::types::Authority;

/// A torrent the tracker has accepted.
#[derive(Debug)]
pub struct Published {
    pub metainfo: Metainfo,
    /// The .torrent file as published.
    pub torrent_bytes: Vec<u8>,
    pub key: ContentKey,
    /// The authority the tracker gave it (the highest, 0, unless configured otherwise).
    pub authority: Authority,
}

/// Gets a new key, builds the torrent of `path` encrypted with `cipher` (the tracker's
/// preferred suite when `None`) and publishes it. `progress` is called with the bytes
/// encrypted and hashed so far and the total, about every 32 MiB, on the building thread: a
/// terabyte takes minutes, and whoever waits should see it move.
///
/// # Errors
/// The tracker refuses or cannot be reached, the content cannot be read, or the tracker
/// answers for another info hash.
pub async fn publish(
    node: &PeerNode,
    path: &Path,
    piece_length: Option<u64>,
    cipher: Option<Cipher>,
    mut progress: impl FnMut(u64, u64) + Send + 'static,
) -> Result<Published, PeerError> {
    let grant = node
        .tracker
        .get_cipher(node.identity()?, CipherTarget::New)
        .await?;
    let announce = node.tracker.announce_url();
    let path: PathBuf = path.to_owned();
    let key = grant.key.clone();
    let cipher = cipher.unwrap_or(grant.cipher);
    // Reading, encrypting and hashing everything is CPU and disk work: off the reactor.
    let created = tokio::task::spawn_blocking(move || {
        TorrentBuilder::new(&path)
            .announce(&announce)
            .piece_length(piece_length)
            .cipher(cipher)
            .progress(&mut progress)
            .encrypted(&key, grant.key_id)
    })
    .await
    .map_err(|source| PeerError::Task {
        task: "torrent creation",
        source,
    })??;
    let (info_hash, authority) = node
        .tracker
        .publish(Bytes::from(created.bytes.clone()))
        .await?;
    if info_hash != created.metainfo.info_hash {
        return Err(PeerError::InfoHashMismatch {
            answered: info_hash,
            published: created.metainfo.info_hash,
        });
    }
    tracing::info!(%info_hash, %authority, %cipher, "published");
    Ok(Published {
        metainfo: created.metainfo,
        torrent_bytes: created.bytes,
        key: grant.key,
        authority,
    })
}
