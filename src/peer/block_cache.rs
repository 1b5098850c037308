//! Ciphertext on its way out: blocks are read and encrypted in units of up to 1 MiB, off the
//! async reactor, and kept in a small cache so that a unit encrypted once serves every peer
//! that asks for it (one seeder, many downloaders: the CPU cost per byte stays flat).
//!
//! Concurrent requests for the same unit wait for one read instead of starting their own. The
//! cache is bounded in bytes; the oldest units are dropped first. A downloader also puts the
//! ciphertext of each piece it has just verified here ([`BlockCache::offer_piece`]): in a swarm
//! those are the pieces the others ask for next, and serving them then needs no second
//! encryption. Unit buffers are recycled ([`BufferPool`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, Semaphore};

use crate::metainfo::PieceIndex;
use crate::peer::buffers::BufferPool;
use crate::peer::storage::{PieceStore, StorageError};

/// Bytes read and encrypted at once; a multiple of the 16 KiB cipher block.
pub const UNIT_LEN: u64 = 1024 * 1024;

/// A unit: the content range `[unit * UNIT_LEN, ...)`, cut at piece boundaries so that a unit
/// never spans two pieces (requests never do).
type UnitKey = (u32, u32); // (piece, unit within the piece)

type Slot = Arc<OnceCell<Bytes>>;

/// See the module documentation.
pub struct BlockCache {
    store: Arc<dyn PieceStore>,
    inner: Mutex<CacheInner>,
    /// Bounds the blocking reads in flight.
    readers: Semaphore,
    capacity_bytes: u64,
    /// Buffers of one unit's length (a piece, when pieces are shorter than [`UNIT_LEN`]).
    buffers: BufferPool,
}

#[derive(Default)]
struct CacheInner {
    slots: HashMap<UnitKey, Slot>,
    /// Insertion order, for eviction. Invariant: the keys of `slots`, each once.
    order: VecDeque<UnitKey>,
    bytes: u64,
}

impl BlockCache {
    pub fn new(store: Arc<dyn PieceStore>, capacity_bytes: u64, max_readers: usize) -> Self {
        let unit_capacity = store.info().piece_length.min(UNIT_LEN);
        // Idle buffers: what a full cache holds, plus the reads in flight.
        let max_idle = (capacity_bytes / unit_capacity.max(1)) as usize + max_readers;
        BlockCache {
            store,
            inner: Mutex::new(CacheInner::default()),
            readers: Semaphore::new(max_readers.max(1)),
            capacity_bytes,
            buffers: BufferPool::new(unit_capacity as usize, max_idle),
        }
    }

    /// The ciphertext of `len` bytes at `begin` in piece `index`. The caller has checked that
    /// the range lies inside the piece (the connection validates requests).
    ///
    /// # Errors
    /// The store could not read the unit.
    pub async fn block(
        &self,
        piece: PieceIndex,
        begin: u32,
        len: u32,
    ) -> Result<Bytes, StorageError> {
        let info = self.store.info();
        let index = piece.get();
        let piece_len = u64::from(info.piece_len(piece));
        let piece_offset = u64::from(index) * info.piece_length;
        let unit = u64::from(begin) / UNIT_LEN;
        let unit_start = unit * UNIT_LEN;
        let unit_len = (piece_len.saturating_sub(unit_start)).min(UNIT_LEN);
        let key = (index, unit as u32);
        let slot = self.slot(key);
        let data = slot
            .get_or_try_init(|| async {
                let _permit = self.readers.acquire().await.map_err(|_| StorageError::Io {
                    action: "reading",
                    path: "(shutting down)".into(),
                    source: std::io::Error::other("shutting down"),
                })?;
                let store = Arc::clone(&self.store);
                let buffers = self.buffers.clone();
                let offset = piece_offset + unit_start;
                let result = tokio::task::spawn_blocking(move || {
                    let mut buf = buffers.take(unit_len as usize);
                    match store.read_ciphertext(offset, &mut buf) {
                        Ok(()) => Ok(buffers.share(buf)),
                        Err(e) => {
                            buffers.give(buf);
                            Err(e)
                        }
                    }
                })
                .await
                .unwrap_or_else(|join| {
                    Err(StorageError::Io {
                        action: "reading",
                        path: "(worker)".into(),
                        source: std::io::Error::other(join.to_string()),
                    })
                });
                if result.is_ok() {
                    self.account(unit_len);
                }
                result
            })
            .await;
        match data {
            Ok(unit_bytes) => {
                let start = (u64::from(begin) - unit_start) as usize;
                let end = (start + len as usize).min(unit_bytes.len());
                Ok(unit_bytes.slice(start.min(end)..end))
            }
            Err(e) => {
                // Do not keep a failed slot: a later request tries again.
                self.forget(key);
                Err(e)
            }
        }
    }

    /// Takes the verified ciphertext of a whole piece (a downloader's or a relay's, just before
    /// it is decrypted or written), so that serving the piece to other peers reads and encrypts
    /// nothing. The copy costs a small fraction of an RC4+ pass. Units already cached or being
    /// read are left alone. Call it off the reactor (it copies the piece).
    pub fn offer_piece(&self, piece: PieceIndex, ciphertext: &[u8]) {
        let index = piece.get();
        let mut added = 0u64;
        for (unit, chunk) in ciphertext.chunks(self.buffers.capacity()).enumerate() {
            // Pieces are cut into units of at most UNIT_LEN bytes (`block`), and a piece is at
            // most 2^32 bytes long (u32 offsets on the wire): the unit number fits in u32.
            let slot = self.slot((index, unit as u32));
            if slot.initialized() {
                continue;
            }
            let mut buf = self.buffers.take(chunk.len());
            buf.copy_from_slice(chunk);
            if slot.set(self.buffers.share(buf)).is_ok() {
                added += chunk.len() as u64;
            }
        }
        if added > 0 {
            self.account(added);
        }
    }

    fn slot(&self, key: UnitKey) -> Slot {
        let mut inner = self.inner.lock();
        if let Some(slot) = inner.slots.get(&key) {
            return Arc::clone(slot);
        }
        let slot: Slot = Arc::new(OnceCell::new());
        inner.slots.insert(key, Arc::clone(&slot));
        inner.order.push_back(key);
        slot
    }

    /// Counts a filled unit and evicts the oldest while over capacity.
    fn account(&self, len: u64) {
        let mut inner = self.inner.lock();
        inner.bytes += len;
        while inner.bytes > self.capacity_bytes && inner.order.len() > 1 {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(slot) = inner.slots.remove(&old)
                && let Some(b) = slot.get()
            {
                inner.bytes = inner.bytes.saturating_sub(b.len() as u64);
            }
        }
    }

    /// Drops the cached units of piece `index` (every peer we know has it now).
    pub fn forget_piece(&self, piece: PieceIndex) {
        let index = piece.get();
        let mut inner = self.inner.lock();
        let before = inner.order.len();
        let mut freed = 0u64;
        let CacheInner { slots, order, .. } = &mut *inner;
        order.retain(|key| {
            if key.0 != index {
                return true;
            }
            if let Some(slot) = slots.remove(key)
                && let Some(b) = slot.get()
            {
                freed += b.len() as u64;
            }
            false
        });
        if inner.order.len() != before {
            inner.bytes = inner.bytes.saturating_sub(freed);
        }
    }

    fn forget(&self, key: UnitKey) {
        let mut inner = self.inner.lock();
        if inner.slots.remove(&key).is_some() {
            inner.order.retain(|k| *k != key);
        }
    }

    /// Bytes of ciphertext held now.
    pub fn cached_bytes(&self) -> u64 {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::content::ContentKey;
    use crate::metainfo::create_encrypted;
    use crate::peer::storage::{ContentFiles, OpenMode, PlaintextStore};
    use crate::types::KeyId;

    /// A plaintext store of `len` bytes of patterned content, cut into `piece_len` pieces;
    /// the temporary directory holds the file `data.bin`.
    fn store(len: u32, piece_len: u64) -> (tempfile::TempDir, Arc<dyn PieceStore>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.bin");
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let key = ContentKey::generate();
        let info = create_encrypted(&file, &key, KeyId([0; 16]), "", Some(piece_len))
            .unwrap()
            .metainfo
            .info;
        let store = PlaintextStore::new(
            ContentFiles::open(dir.path(), &info, OpenMode::Existing).unwrap(),
            info,
            key,
        );
        (dir, Arc::new(store))
    }

    /// Piece `index` of the store's torrent, which the test knows exists.
    fn piece(store: &Arc<dyn PieceStore>, index: u32) -> PieceIndex {
        store
            .info()
            .piece_index(index)
            .expect("a piece of the test torrent")
    }

    #[tokio::test]
    async fn blocks_match_direct_reads_and_units_are_shared() {
        let (_dir, store) = store(3_000_000, 2 * 1024 * 1024);
        let cache = BlockCache::new(Arc::clone(&store), 4 * UNIT_LEN, 2);
        for (index, begin, len) in [
            (0u32, 0u32, 16384u32),
            (0, 1_048_576 + 16384, 16384),
            (1, 0, 16384),
            (1, 902_848 - 1000, 1000),
        ] {
            let got = cache.block(piece(&store, index), begin, len).await.unwrap();
            let mut want = vec![0u8; len as usize];
            store
                .read_ciphertext(
                    u64::from(index) * 2 * 1024 * 1024 + u64::from(begin),
                    &mut want,
                )
                .unwrap();
            assert_eq!(&got[..], &want[..], "piece {index} at {begin}");
        }
        // Piece 0 is two units, piece 1 (902,848 bytes) one: three units read, not four.
        assert_eq!(cache.cached_bytes(), 2 * UNIT_LEN + 902_848);
    }

    #[tokio::test]
    async fn offered_pieces_are_served_without_reading_the_store() {
        let (dir, store) = store(5_000_000, 2 * 1024 * 1024);
        let file = dir.path().join("data.bin");
        let mut piece1 = vec![0u8; 2 * 1024 * 1024];
        store.read_ciphertext(2 * 1024 * 1024, &mut piece1).unwrap();
        let cache = BlockCache::new(Arc::clone(&store), 8 * UNIT_LEN, 2);
        // A block read before the offer keeps its unit; the offer fills the other one.
        let before = cache.block(piece(&store, 1), 0, 16384).await.unwrap();
        assert_eq!(&before[..], &piece1[..16384]);
        cache.offer_piece(piece(&store, 1), &piece1);
        assert_eq!(cache.cached_bytes(), 2 * UNIT_LEN);
        // The store's file is emptied: what is served now can only come from the offer.
        std::fs::write(&file, b"").unwrap();
        for begin in [1_048_576 + 5 * 16384, 2 * 1_048_576 - 16384] {
            let got = cache.block(piece(&store, 1), begin, 16384).await.unwrap();
            assert_eq!(&got[..], &piece1[begin as usize..begin as usize + 16384]);
        }
        // And a unit neither offered nor cached fails to read, as it should.
        assert!(cache.block(piece(&store, 0), 0, 16384).await.is_err());
        // Forgetting the piece drops both its units (the store is empty: reads fail now).
        cache.forget_piece(piece(&store, 1));
        assert_eq!(cache.cached_bytes(), 0);
        assert!(cache.block(piece(&store, 1), 0, 16384).await.is_err());
        cache.forget_piece(piece(&store, 1)); // nothing left: no change
        assert_eq!(cache.cached_bytes(), 0);
    }

    #[tokio::test]
    async fn evicted_units_return_their_buffers_for_reuse() {
        let (_dir, store) = store(4 * 262_144, 262_144);
        // Room for two 256 KiB units.
        let cache = BlockCache::new(Arc::clone(&store), 2 * 262_144, 1);
        for index in 0..4 {
            let block = cache.block(piece(&store, index), 0, 16384).await.unwrap();
            let mut want = vec![0u8; 16384];
            store
                .read_ciphertext(u64::from(index) * 262_144, &mut want)
                .unwrap();
            assert_eq!(&block[..], &want[..], "piece {index}");
        }
        assert_eq!(cache.cached_bytes(), 2 * 262_144);
        // Unit 0's buffer, evicted when unit 2 came in, was reused for unit 3; unit 1's,
        // evicted last, waits idle.
        assert_eq!(cache.buffers.idle(), 1);
    }
}
