//! Why a session stops with an error: its fatal failures, as values. The first one is
//! reported, as its text, through [`super::Progress::error`]; the ones after it add nothing.

use std::fmt;

use crate::metainfo::PieceIndex;
use crate::peer::storage::StorageError;

/// Pieces that no longer match the torrent when the data on disk is verified again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Damage {
    /// How many pieces are damaged (at least 1).
    pub(super) damaged: usize,
    /// How many pieces were checked.
    pub(super) checked: usize,
    pub(super) first: PieceIndex,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} pieces no longer match the torrent (the first: piece {})",
            self.damaged, self.checked, self.first
        )
    }
}

/// A fatal failure of a session: it stops.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    /// A verified piece could not be written (a full disk, say).
    #[error("cannot store piece {index}: {source}")]
    StorePiece {
        index: PieceIndex,
        #[source]
        source: StorageError,
    },
    #[error("piece {index}: verification task failed: {source}")]
    VerifyTask {
        index: PieceIndex,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The content changed under a seeder: nothing it serves can be trusted any more.
    #[error(transparent)]
    ContentChanged(StorageError),
    /// A seeder's data is damaged: it stops serving it ([`super::OnDamage::StopServing`]).
    #[error(
        "{0}: the data changed or is damaged on disk; stopped serving it (restore the data, or \
         seed it again to verify it)"
    )]
    DamagedData(Damage),
    /// A relay's ciphertext is damaged: the pieces are fetched again at the next start
    /// ([`super::OnDamage::Refetch`]).
    #[error(
        "{0}: damaged on disk; stopped, and those pieces are fetched again when it starts again"
    )]
    DamagedCiphertext(Damage),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_names_the_count_and_the_first_piece() {
        let geometry = crate::metainfo::Geometry::new(16 * 1024, 9 * 16 * 1024).unwrap();
        let damage = Damage {
            damaged: 1,
            checked: 9,
            first: geometry.piece_index(1).unwrap(),
        };
        assert_eq!(
            Failure::DamagedCiphertext(damage).to_string(),
            "1 of 9 pieces no longer match the torrent (the first: piece 1): damaged on disk; \
             stopped, and those pieces are fetched again when it starts again"
        );
        assert_eq!(
            Failure::DamagedData(damage).to_string(),
            "1 of 9 pieces no longer match the torrent (the first: piece 1): the data changed \
             or is damaged on disk; stopped serving it (restore the data, or seed it again to \
             verify it)"
        );
    }
}
