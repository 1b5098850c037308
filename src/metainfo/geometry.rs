//! Piece geometry: where each piece starts and ends in the content, and which file bytes a
//! content range covers.
//!
//! Only [`Geometry`] makes a [`PieceIndex`], after checking it against the piece count, so code
//! past that check (the piece picker, storage, hash checks) cannot index out of range. The piece
//! length is validated when the geometry is made, before anything divides by it.
//!
//! This module does no I/O: storage asks [`FileSegments`] which file bytes to read or write.

use std::ops::Range;

use super::FileEntry;

/// The smallest piece length ivcsd accepts (docs/protocol.md 5): one cipher block, 16 KiB.
pub const MIN_PIECE_LENGTH: u64 = 16 * 1024;

/// The largest piece length ivcsd accepts: 256 MiB. Peers hold whole pieces in memory while
/// they verify them, so a torrent cannot make them allocate more than this per piece.
/// (docs/protocol.md 5 only gives a lower bound; this upper one is ours.)
pub const MAX_PIECE_LENGTH: u64 = 256 * 1024 * 1024;

/// The most pieces a torrent may have: piece indices are 32-bit on the peer wire (BEP 3).
pub const MAX_PIECE_COUNT: u64 = u32::MAX as u64;

/// A piece index checked against its torrent's piece count. Only [`Geometry`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The index as sent on the wire.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The index for slices (`pieces[index.as_usize()]`).
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a piece length and total length cannot describe a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("piece length {0} is not a power of two of at least {MIN_PIECE_LENGTH}")]
    PieceLength(u64),
    #[error("piece length {0} is larger than {MAX_PIECE_LENGTH} (256 MiB)")]
    PieceLengthTooLarge(u64),
    #[error("the content is empty (total length 0)")]
    Empty,
    #[error("{count} pieces is more than {MAX_PIECE_COUNT}")]
    TooManyPieces { count: u64 },
}

/// Checks a piece length on its own: a power of two from [`MIN_PIECE_LENGTH`] to
/// [`MAX_PIECE_LENGTH`].
///
/// # Errors
/// [`GeometryError::PieceLength`] or [`GeometryError::PieceLengthTooLarge`].
pub fn check_piece_length(piece_length: u64) -> Result<(), GeometryError> {
    if piece_length < MIN_PIECE_LENGTH || !piece_length.is_power_of_two() {
        return Err(GeometryError::PieceLength(piece_length));
    }
    if piece_length > MAX_PIECE_LENGTH {
        return Err(GeometryError::PieceLengthTooLarge(piece_length));
    }
    Ok(())
}

/// The piece layout of a torrent: piece length, total length and piece count, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the piece length; the piece length is `1 << piece_shift`, 14..=28.
    piece_shift: u32,
    /// Greater than 0.
    total_length: u64,
    /// `ceil(total_length / piece_length)`, at least 1, at most [`MAX_PIECE_COUNT`].
    piece_count: u32,
}

impl Geometry {
    /// Validates `piece_length` (before dividing by it) and derives the piece count.
    ///
    /// # Errors
    /// A piece length that is not a power of two from 16 KiB to 256 MiB, an empty content,
    /// or more than 2^32 - 1 pieces.
    pub fn new(piece_length: u64, total_length: u64) -> Result<Geometry, GeometryError> {
        check_piece_length(piece_length)?;
        if total_length == 0 {
            return Err(GeometryError::Empty);
        }
        let count = total_length.div_ceil(piece_length);
        let piece_count =
            u32::try_from(count).map_err(|_| GeometryError::TooManyPieces { count })?;
        Ok(Geometry {
            piece_shift: piece_length.trailing_zeros(),
            total_length,
            piece_count,
        })
    }

    /// The nominal piece length (every piece but possibly the last has it).
    pub fn piece_length(&self) -> u64 {
        1 << self.piece_shift
    }

    /// The length of the content: all files concatenated.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// How many pieces the content has (at least 1).
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Checks an index from outside (a peer's `have` or `request`, a resume file).
    pub fn piece_index(&self, index: u32) -> Option<PieceIndex> {
        (index < self.piece_count).then_some(PieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = PieceIndex> + ExactSizeIterator {
        (0..self.piece_count).map(PieceIndex)
    }

    /// The last piece, the only one that may be shorter than the piece length.
    pub fn last_piece(&self) -> PieceIndex {
        PieceIndex(self.piece_count - 1)
    }

    /// The absolute content offset where `index` starts.
    pub fn piece_offset(&self, index: PieceIndex) -> u64 {
        u64::from(index.0) << self.piece_shift
    }

    /// The length of piece `index` in bytes: the piece length, or less for the last piece.
    pub fn piece_len(&self, index: PieceIndex) -> u32 {
        let start = self.piece_offset(index);
        let len = (self.total_length - start).min(self.piece_length());
        // Cannot fail: at most the piece length, which is at most 2^28.
        u32::try_from(len).expect("a piece is at most 256 MiB")
    }

    /// The content byte range of piece `index`.
    pub fn piece_range(&self, index: PieceIndex) -> Range<u64> {
        let start = self.piece_offset(index);
        start..start + u64::from(self.piece_len(index))
    }

    /// The piece that holds content byte `offset`, `None` past the end.
    pub fn piece_at(&self, offset: u64) -> Option<PieceIndex> {
        (offset < self.total_length).then(|| PieceIndex((offset >> self.piece_shift) as u32))
    }

    /// The content range of `len` bytes at `begin` inside piece `index` (a wire request or
    /// piece message), `None` when it is empty or does not lie inside the piece.
    pub fn block_range(&self, index: PieceIndex, begin: u32, len: u32) -> Option<Range<u64>> {
        let end = begin.checked_add(len)?;
        if len == 0 || end > self.piece_len(index) {
            return None;
        }
        let start = self.piece_offset(index) + u64::from(begin);
        Some(start..start + u64::from(len))
    }
}

/// The default piece length of docs/protocol.md 5: the smallest power of two from 256 KiB to 16 MiB
/// that keeps the piece count at or below 65,536 (16 MiB for anything above 1 TiB).
pub fn default_piece_length(total_length: u64) -> u64 {
    const SMALLEST: u64 = 256 * 1024;
    const LARGEST: u64 = 16 * 1024 * 1024;
    const MAX_COUNT: u64 = 65_536;
    let mut piece_length = SMALLEST;
    while piece_length < LARGEST && total_length.div_ceil(piece_length) > MAX_COUNT {
        piece_length *= 2;
    }
    piece_length
}

/// A run of bytes inside one file: part of a content range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSegment {
    /// Index into `Info::files`.
    pub file: usize,
    /// Where the run starts inside that file.
    pub file_offset: u64,
    /// How many bytes (greater than 0).
    pub len: u64,
}

/// The file runs that a content range covers, in content order; zero-length files are skipped
/// (they cover no bytes). Made by `Info::segments` and `Info::piece_segments`; allocates nothing.
#[derive(Debug, Clone)]
pub struct FileSegments<'a> {
    files: &'a [FileEntry],
    /// The next file to look at.
    next_file: usize,
    /// The next content byte to map.
    pos: u64,
    /// One past the last content byte to map; at most the total length.
    end: u64,
}

impl<'a> FileSegments<'a> {
    /// `range` must lie within the content of `files` (checked by the caller).
    pub(super) fn new(files: &'a [FileEntry], range: Range<u64>) -> FileSegments<'a> {
        // The first file whose end lies past `range.start`: files are sorted by offset.
        let next_file = files.partition_point(|f| f.offset + f.length <= range.start);
        FileSegments {
            files,
            next_file,
            pos: range.start,
            end: range.end,
        }
    }
}

impl Iterator for FileSegments<'_> {
    type Item = FileSegment;

    fn next(&mut self) -> Option<FileSegment> {
        while self.pos < self.end {
            let file = self.files.get(self.next_file)?;
            let file_end = file.offset + file.length;
            if file_end <= self.pos {
                // A zero-length file, or one that ends where the range starts.
                self.next_file += 1;
                continue;
            }
            let seg_end = file_end.min(self.end);
            let segment = FileSegment {
                file: self.next_file,
                file_offset: self.pos - file.offset,
                len: seg_end - self.pos,
            };
            self.pos = seg_end;
            self.next_file += 1;
            return Some(segment);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_lengths_are_checked_before_use() {
        for bad in [0, 1, 1000, 8192, 16383, 16385, 3 * 16384] {
            assert_eq!(
                Geometry::new(bad, 100),
                Err(GeometryError::PieceLength(bad))
            );
        }
        assert_eq!(
            Geometry::new(1 << 29, 100),
            Err(GeometryError::PieceLengthTooLarge(1 << 29))
        );
        assert_eq!(
            Geometry::new(u64::MAX, 100),
            Err(GeometryError::PieceLength(u64::MAX))
        );
        assert_eq!(Geometry::new(16384, 0), Err(GeometryError::Empty));
        assert_eq!(
            Geometry::new(16384, u64::MAX),
            Err(GeometryError::TooManyPieces {
                count: u64::MAX.div_ceil(16384)
            })
        );
    }

    #[test]
    fn pieces_cover_the_content() {
        let g = Geometry::new(16384, 40_000).unwrap();
        assert_eq!(g.piece_count(), 3);
        let last = g.last_piece();
        assert_eq!(g.piece_len(g.piece_index(0).unwrap()), 16384);
        assert_eq!(g.piece_len(last), 40_000 - 2 * 16384);
        assert_eq!(g.piece_range(last), 32768..40_000);
        assert_eq!(g.piece_index(3), None);
        assert_eq!(g.piece_at(39_999), Some(last));
        assert_eq!(g.piece_at(40_000), None);
        let lens: u64 = g.pieces().map(|p| u64::from(g.piece_len(p))).sum();
        assert_eq!(lens, 40_000);
        // Exactly a multiple: the last piece is full.
        let g = Geometry::new(16384, 32768).unwrap();
        assert_eq!(g.piece_count(), 2);
        assert_eq!(g.piece_len(g.last_piece()), 16384);
    }

    #[test]
    fn block_ranges_stay_inside_their_piece() {
        let g = Geometry::new(16384, 40_000).unwrap();
        let p1 = g.piece_index(1).unwrap();
        let last = g.last_piece();
        assert_eq!(g.block_range(p1, 0, 16384), Some(16384..32768));
        assert_eq!(g.block_range(p1, 100, 16285), None);
        assert_eq!(g.block_range(p1, 0, 0), None);
        assert_eq!(g.block_range(p1, u32::MAX, 2), None);
        assert_eq!(g.block_range(last, 0, 7232), Some(32768..40_000));
        assert_eq!(g.block_range(last, 0, 7233), None);
    }

    #[test]
    fn default_piece_length_follows_spec_5() {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const GIB: u64 = 1024 * MIB;
        assert_eq!(default_piece_length(1), 256 * KIB);
        assert_eq!(default_piece_length(16 * GIB), 256 * KIB); // exactly 65,536 pieces
        assert_eq!(default_piece_length(16 * GIB + 1), 512 * KIB);
        assert_eq!(default_piece_length(1024 * GIB), 16 * MIB); // 1 TiB
        assert_eq!(default_piece_length(100 * 1024 * GIB), 16 * MIB);
        assert_eq!(default_piece_length(u64::MAX), 16 * MIB);
    }
}
