//! The session's fast-resume records ([`crate::peer::resume`]): written after the data is
//! synced, rewritten without damaged pieces, or deleted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Torrent;
use crate::metainfo::PieceIndex;
use crate::peer::bitfield::Bitfield;
use crate::peer::resume;
use crate::peer::storage::StorageError;

/// Why a resume record could not be written. Each names the record.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResumeError {
    /// The data was not made durable, so no record may name it.
    #[error("cannot write the resume record {}: {source}", path.display())]
    SyncData {
        path: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("cannot write the resume record {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the resume record {}: the task failed: {source}", path.display())]
    Task {
        path: PathBuf,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Torrent {
    /// Writes the fast-resume record if pieces were verified since the last one (after an
    /// fsync of the data, so the record never names a piece that is not durable).
    pub(super) async fn save_resume(&self) {
        let Some(path) = self.resume_path.clone() else {
            return;
        };
        let have = {
            let mut state = self.lock();
            if !state.resume_dirty || state.resume_frozen {
                return;
            }
            state.resume_dirty = false;
            state.picker.have().clone()
        };
        if let Err(e) = self.write_resume(&path, have).await {
            tracing::warn!("{e}");
        }
    }

    /// Writes `have` as the resume record at `path`, after an fsync of the data so that the
    /// record never names a piece that is not durable. Off the reactor.
    ///
    /// # Errors
    /// The data cannot be synced, the record cannot be written, or the blocking task failed.
    pub(super) async fn write_resume(
        &self,
        path: &Path,
        have: Bitfield,
    ) -> Result<(), ResumeError> {
        let store = Arc::clone(&self.store);
        let (record, info_hash) = (path.to_owned(), self.info_hash);
        tokio::task::spawn_blocking(move || {
            store.sync().map_err(|source| ResumeError::SyncData {
                path: record.clone(),
                source,
            })?;
            let files = store.file_paths();
            resume::save(&record, info_hash, &have, files.iter().map(|p| p.as_path())).map_err(
                |source| ResumeError::Write {
                    path: record.clone(),
                    source,
                },
            )
        })
        .await
        .unwrap_or_else(|source| {
            Err(ResumeError::Task {
                path: path.to_owned(),
                source,
            })
        })
    }

    /// Deletes the resume record and writes none again, so that the next start verifies
    /// everything instead of trusting damaged data (whose size and modification time may be
    /// unchanged).
    pub(super) async fn forget_resume_record(&self, record: &Path) {
        self.lock().resume_frozen = true;
        if let Err(e) = tokio::fs::remove_file(record).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(
                "cannot delete the resume record {} of damaged data: {e}",
                record.display()
            );
        }
    }

    /// Writes the resume record with the `bad` pieces taken out, and none again: the next
    /// start trusts the good pieces and fetches the bad ones. If the record cannot be
    /// written it is deleted, and the next start verifies everything.
    pub(super) async fn save_resume_without(&self, record: &Path, bad: &[PieceIndex]) {
        let mut have = {
            let mut state = self.lock();
            state.resume_frozen = true;
            state.picker.have().clone()
        };
        for &index in bad {
            have.clear(index.get());
        }
        if let Err(e) = self.write_resume(record, have).await {
            tracing::warn!("{e} (without the damaged pieces)");
            self.forget_resume_record(record).await;
        }
    }
}
