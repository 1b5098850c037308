//! The torrent catalogue: every published torrent with its owner, authority, relays and
//! content key, and the pending keys of torrents not yet published (docs/protocol.md 4.3,
//! 4.4 and 4.5).
//!
//! The catalogue has two copies: the store (durable, the truth) and a map in memory from which
//! announce, scrape and getcipher decide without a database round trip. [`Catalogue`] is the
//! only thing that changes either: each change (publish, set authority, assign or unassign a
//! relay, remove) is one method that commits to the store first and then updates the map, the
//! sealed key kept beside it and, for a removal, the torrent's live swarm. Changes run one at
//! a time, so the two copies see them in the same order; readers never wait for the store.
//!
//! Content keys are sealed at rest with the master key ([`super::master_key`]); the catalogue
//! opens them only to hand one to a requester or to check a publish, and keeps in memory only
//! sealed ones, each filled on first use and dropped with its torrent.
//!
//! What it does not do: decide who may see what ([`super::decide`]) or hold live peers
//! ([`super::swarm`]; it only drops a removed torrent's swarm).
//!
//! Lock order: `changes` (async, held across the store call), then `torrents`, then the
//! swarms' mutex; `torrents` and the swarms are never held across an await.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::crypto::content::{Cipher, ContentKey};
use crate::types::{Authority, InfoHash, KeyId};

use super::decide::TorrentAccess;
use super::master_key::MasterKeyError;
use super::refusal::Refusal;
use super::store::{MasterKey, PublishOutcome, Store, StoreError, TorrentRecord};
use super::swarm::Swarms;

/// Why a catalogue lookup or change failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// No such torrent in the catalogue.
    #[error("unknown torrent")]
    UnknownTorrent,
    /// The torrent was in memory but the store no longer had it when it was to change.
    #[error("torrent vanished from the store")]
    Vanished,
    #[error("key {key_id} of {info_hash} missing")]
    KeyMissing { key_id: KeyId, info_hash: InfoHash },
    #[error("key {key_id} is not bound to {info_hash}")]
    KeyNotBound { key_id: KeyId, info_hash: InfoHash },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
}

impl From<CatalogueError> for Refusal {
    /// An unknown torrent is "not found" like a forbidden one; anything else is the tracker's
    /// own failure, whose details go to the audit log only.
    fn from(e: CatalogueError) -> Self {
        match e {
            CatalogueError::UnknownTorrent | CatalogueError::Vanished => {
                Refusal::not_found(e.to_string())
            }
            _ => Refusal::internal(e.to_string()),
        }
    }
}

/// A torrent as kept in memory.
struct Entry {
    record: TorrentRecord,
    /// Its content key, still sealed, once a getcipher has read it from the store; a torrent's
    /// key never changes, and a sealed key is no secret without the master key.
    sealed_key: Option<Arc<[u8]>>,
}

/// The torrent catalogue: the store and its copy in memory, changed together.
pub struct Catalogue {
    /// The durable copy; every change commits here first.
    store: Store,
    /// Opens and seals content keys.
    master: MasterKey,
    /// Every stored torrent, as the store had it after the last committed change.
    torrents: RwLock<HashMap<InfoHash, Entry>>,
    /// Held by each change across its store call and map update, so that changes reach both
    /// copies in the same order.
    changes: tokio::sync::Mutex<()>,
    /// The live swarms, shared with the tracker: a removed torrent's swarm goes with it.
    swarms: Arc<Mutex<Swarms>>,
}

impl Catalogue {
    /// Reads every torrent from `store`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn load(
        store: Store,
        master: MasterKey,
        swarms: Arc<Mutex<Swarms>>,
    ) -> Result<Catalogue, StoreError> {
        let torrents = store
            .torrents()
            .await?
            .into_iter()
            .map(|record| {
                let entry = Entry {
                    record,
                    sealed_key: None,
                };
                (entry.record.info_hash, entry)
            })
            .collect();
        Ok(Catalogue {
            store,
            master,
            torrents: RwLock::new(torrents),
            changes: tokio::sync::Mutex::new(()),
            swarms,
        })
    }

    /// How many torrents are published.
    pub fn len(&self) -> usize {
        self.torrents.read().len()
    }

    /// Whether no torrent is published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `info_hash` is published.
    pub fn contains(&self, info_hash: &InfoHash) -> bool {
        self.torrents.read().contains_key(info_hash)
    }

    /// The rules' view of a torrent for `username`; `None` if it is unknown.
    pub fn with_access<T>(
        &self,
        info_hash: &InfoHash,
        username: &str,
        f: impl FnOnce(Option<&TorrentAccess<'_>>) -> T,
    ) -> T {
        let torrents = self.torrents.read();
        match torrents.get(info_hash) {
            None => f(None),
            Some(Entry { record: t, .. }) => f(Some(&TorrentAccess {
                owner: &t.owner,
                authority: t.authority,
                requester_is_relay: t.relays.iter().any(|r| r == username),
            })),
        }
    }

    /// One torrent.
    pub fn get(&self, info_hash: &InfoHash) -> Option<TorrentRecord> {
        self.torrents
            .read()
            .get(info_hash)
            .map(|e| e.record.clone())
    }

    /// Every torrent, oldest publish first.
    pub fn all(&self) -> Vec<TorrentRecord> {
        let mut all: Vec<TorrentRecord> = self
            .torrents
            .read()
            .values()
            .map(|e| e.record.clone())
            .collect();
        all.sort_by_key(|t| (t.published_ms, t.info_hash));
        all
    }

    /// The info hash of every torrent, in no particular order.
    pub fn info_hashes(&self) -> Vec<InfoHash> {
        self.torrents.read().keys().copied().collect()
    }

    /// The torrents `relay` is assigned to, sorted.
    pub fn relayed_by(&self, relay: &str) -> Vec<InfoHash> {
        let mut hashes: Vec<InfoHash> = self
            .torrents
            .read()
            .values()
            .filter(|e| e.record.relays.iter().any(|r| r == relay))
            .map(|e| e.record.info_hash)
            .collect();
        hashes.sort_unstable();
        hashes
    }

    /// The stored .torrent of `info_hash`.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn metainfo(&self, info_hash: InfoHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.metainfo(info_hash).await
    }

    /// A published torrent's suite, key id and content key (opened: the caller wraps it for a
    /// requester and drops it). The sealed key comes from memory, or from the store the first
    /// time.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownTorrent`]; the key row missing or bound to another torrent;
    /// the store or the master key failing.
    pub async fn content_key(
        &self,
        info_hash: &InfoHash,
    ) -> Result<(Cipher, KeyId, ContentKey), CatalogueError> {
        let (cipher, key_id, cached) = {
            let torrents = self.torrents.read();
            let entry = torrents
                .get(info_hash)
                .ok_or(CatalogueError::UnknownTorrent)?;
            (
                entry.record.cipher,
                entry.record.key_id,
                entry.sealed_key.clone(),
            )
        };
        let sealed = match cached {
            Some(sealed) => sealed,
            None => self.read_sealed_key(info_hash, key_id).await?,
        };
        let raw = self.master.open(&key_id, &sealed)?;
        Ok((cipher, key_id, ContentKey::from_bytes(*raw)))
    }

    /// Reads a torrent's sealed key from the store and keeps it beside the torrent, unless
    /// the torrent was removed meanwhile (its key must not outlive it in memory).
    async fn read_sealed_key(
        &self,
        info_hash: &InfoHash,
        key_id: KeyId,
    ) -> Result<Arc<[u8]>, CatalogueError> {
        let row = self
            .store
            .sealed_key(key_id)
            .await?
            .ok_or(CatalogueError::KeyMissing {
                key_id,
                info_hash: *info_hash,
            })?;
        if row.info_hash != Some(*info_hash) {
            return Err(CatalogueError::KeyNotBound {
                key_id,
                info_hash: *info_hash,
            });
        }
        let sealed: Arc<[u8]> = row.sealed.into();
        if let Some(entry) = self.torrents.write().get_mut(info_hash)
            && entry.record.key_id == key_id
        {
            entry.sealed_key = Some(sealed.clone());
        }
        Ok(sealed)
    }

    /// Makes a new content key, pending for `owner` until a publish binds it, unless `owner`
    /// already has `max_pending` pending keys (`None` then).
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn new_pending_key(
        &self,
        owner: &str,
        created_ms: u64,
        max_pending: usize,
    ) -> Result<Option<(KeyId, ContentKey)>, StoreError> {
        let key = ContentKey::generate();
        let mut id = [0u8; KeyId::LEN];
        rand::fill(&mut id);
        let key_id = KeyId(id);
        let sealed = self.master.seal(&key_id, key.as_bytes());
        let stored = self
            .store
            .insert_pending_key(key_id, owner.to_owned(), sealed, created_ms, max_pending)
            .await?;
        Ok(stored.then_some((key_id, key)))
    }

    /// The content key `key_id` if it exists (pending or bound) and belongs to `owner`, so
    /// that a publish can check its `check` bytes against it.
    ///
    /// # Errors
    /// The store or the master key failing.
    pub async fn owned_key(
        &self,
        key_id: KeyId,
        owner: &str,
    ) -> Result<Option<ContentKey>, CatalogueError> {
        let Some(row) = self.store.sealed_key(key_id).await? else {
            return Ok(None);
        };
        if row.owner != owner {
            return Ok(None);
        }
        let raw = self.master.open(&key_id, &row.sealed)?;
        Ok(Some(ContentKey::from_bytes(*raw)))
    }

    /// Deletes one pending key (never a key bound to a torrent); returns whether it existed.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn forget_pending_key(&self, key_id: KeyId) -> Result<bool, StoreError> {
        self.store.forget_pending_key(key_id).await
    }

    /// Deletes pending keys made before `before_ms`; returns how many.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn purge_pending_keys(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.store.purge_pending(before_ms).await
    }

    /// Publishes `record` with its .torrent bytes, binding its pending key made at or after
    /// `pending_since_ms` (see [`Store::publish`]); a new torrent is in memory once the store
    /// committed it.
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn publish(
        &self,
        record: TorrentRecord,
        metainfo: Vec<u8>,
        pending_since_ms: u64,
    ) -> Result<PublishOutcome, StoreError> {
        let _change = self.changes.lock().await;
        let outcome = self
            .store
            .publish(record, metainfo, pending_since_ms)
            .await?;
        if let PublishOutcome::Published(record) = &outcome {
            self.torrents.write().insert(
                record.info_hash,
                Entry {
                    record: record.clone(),
                    sealed_key: None,
                },
            );
        }
        Ok(outcome)
    }

    /// Sets a torrent's authority; returns the previous one.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownTorrent`], [`CatalogueError::Vanished`], or the store failing.
    pub async fn set_authority(
        &self,
        info_hash: InfoHash,
        authority: Authority,
    ) -> Result<Authority, CatalogueError> {
        let _change = self.changes.lock().await;
        let previous = self
            .get(&info_hash)
            .ok_or(CatalogueError::UnknownTorrent)?
            .authority;
        if !self.store.set_authority(info_hash, authority).await? {
            return Err(CatalogueError::Vanished);
        }
        if let Some(entry) = self.torrents.write().get_mut(&info_hash) {
            entry.record.authority = authority;
        }
        Ok(previous)
    }

    /// Assigns `relay` to a torrent; returns whether it was not assigned before.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownTorrent`], or the store failing.
    pub async fn assign_relay(
        &self,
        info_hash: InfoHash,
        relay: &str,
    ) -> Result<bool, CatalogueError> {
        self.set_relay(info_hash, relay, true).await
    }

    /// Unassigns `relay` from a torrent; returns whether it was assigned.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownTorrent`], or the store failing.
    pub async fn unassign_relay(
        &self,
        info_hash: InfoHash,
        relay: &str,
    ) -> Result<bool, CatalogueError> {
        self.set_relay(info_hash, relay, false).await
    }

    async fn set_relay(
        &self,
        info_hash: InfoHash,
        relay: &str,
        assigned: bool,
    ) -> Result<bool, CatalogueError> {
        let _change = self.changes.lock().await;
        if !self.contains(&info_hash) {
            return Err(CatalogueError::UnknownTorrent);
        }
        let changed = self
            .store
            .set_relay(info_hash, relay.to_owned(), assigned)
            .await?;
        if let Some(entry) = self.torrents.write().get_mut(&info_hash) {
            let relays = &mut entry.record.relays;
            relays.retain(|r| r != relay);
            if assigned {
                relays.push(relay.to_owned());
                relays.sort();
            }
        }
        Ok(changed)
    }

    /// Withdraws a torrent: its record, relay assignments, stored .torrent and content key
    /// leave the store (the key destroyed, see [`Store::remove_torrent`]), then memory, and its
    /// swarm goes. Returns the torrent as it was.
    ///
    /// # Errors
    /// [`CatalogueError::UnknownTorrent`], [`CatalogueError::Vanished`], or the store failing.
    pub async fn remove(&self, info_hash: InfoHash) -> Result<TorrentRecord, CatalogueError> {
        let _change = self.changes.lock().await;
        let before = self.get(&info_hash).ok_or(CatalogueError::UnknownTorrent)?;
        if !self.store.remove_torrent(info_hash).await? {
            return Err(CatalogueError::Vanished);
        }
        self.torrents.write().remove(&info_hash);
        self.swarms.lock().remove(&info_hash);
        Ok(before)
    }

    /// Asks the store to close once the work queued before this call is done.
    pub async fn close(&self) {
        self.store.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::tracker::store::{MASTER_KEY_FILE, StoreThread};
    use crate::tracker::swarm::{AnnounceInput, SwarmEvent, SwarmLimits};
    use crate::types::PeerId;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A catalogue over a real SQLite store in `dir`.
    fn open(dir: &Path) -> (Catalogue, StoreThread) {
        let (store, thread, master) = Store::open(dir, &dir.join(MASTER_KEY_FILE)).unwrap();
        let swarms = Arc::new(Mutex::new(Swarms::new(SwarmLimits {
            peer_ttl: Duration::from_secs(60),
            max_peers_per_torrent: 10,
            numwant_cap: 10,
            numwant_default: 10,
        })));
        let catalogue = block_on(Catalogue::load(store, master, swarms)).unwrap();
        (catalogue, thread)
    }

    fn close(catalogue: Catalogue, thread: StoreThread) {
        block_on(catalogue.close());
        drop(catalogue);
        thread.join();
    }

    fn record(hash: u8, owner: &str, key_id: KeyId) -> TorrentRecord {
        TorrentRecord {
            info_hash: InfoHash([hash; 20]),
            name: format!("data {hash}"),
            size: 100,
            owner: owner.into(),
            authority: Authority(3),
            published_ms: u64::from(hash),
            key_id,
            cipher: Cipher::Aes256Ctr,
            relays: vec![],
        }
    }

    /// Publishes torrent `hash` of `owner` with a new key; returns the key.
    fn publish(catalogue: &Catalogue, hash: u8, owner: &str) -> ContentKey {
        let (key_id, key) = block_on(catalogue.new_pending_key(owner, 1000, 10))
            .unwrap()
            .unwrap();
        let outcome = block_on(catalogue.publish(record(hash, owner, key_id), vec![hash], 0));
        assert!(matches!(outcome, Ok(PublishOutcome::Published(_))));
        key
    }

    /// The invariant: memory holds exactly what the store holds.
    fn assert_copies_agree(catalogue: &Catalogue) {
        let mut stored = block_on(catalogue.store.torrents()).unwrap();
        stored.sort_by_key(|t| (t.published_ms, t.info_hash));
        assert_eq!(catalogue.all(), stored);
    }

    fn announce(catalogue: &Catalogue, hash: u8) {
        let addr: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        catalogue.swarms.lock().announce(
            &AnnounceInput {
                info_hash: InfoHash([hash; 20]),
                peer_id: PeerId([hash; 20]),
                addr,
                left: 0,
                event: SwarmEvent::Started,
                numwant: None,
            },
            Instant::now(),
        );
    }

    #[test]
    fn a_published_torrent_is_in_both_copies_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (catalogue, thread) = open(dir.path());
        assert!(catalogue.is_empty());
        let key = publish(&catalogue, 1, "u3");
        let t = catalogue.get(&InfoHash([1; 20])).unwrap();
        assert_eq!(t.owner, "u3");
        assert_copies_agree(&catalogue);
        // Publishing it again changes nothing.
        let again = block_on(catalogue.publish(record(1, "u3", t.key_id), vec![1], 0)).unwrap();
        assert!(matches!(again, PublishOutcome::AlreadyPublished(_)));
        assert_eq!(catalogue.len(), 1);
        // Its key opens, first from the store, then from memory.
        for _ in 0..2 {
            let (cipher, key_id, opened) =
                block_on(catalogue.content_key(&InfoHash([1; 20]))).unwrap();
            assert_eq!((cipher, key_id), (Cipher::Aes256Ctr, t.key_id));
            assert_eq!(opened.as_bytes(), key.as_bytes());
        }
        assert_eq!(
            block_on(catalogue.metainfo(InfoHash([1; 20]))).unwrap(),
            Some(vec![1])
        );
        close(catalogue, thread);

        let (catalogue, thread) = open(dir.path());
        assert_eq!(catalogue.info_hashes(), vec![InfoHash([1; 20])]);
        let (_, _, opened) = block_on(catalogue.content_key(&InfoHash([1; 20]))).unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        close(catalogue, thread);
    }

    #[test]
    fn authority_and_relay_changes_reach_both_copies() {
        let dir = tempfile::tempdir().unwrap();
        let (catalogue, thread) = open(dir.path());
        publish(&catalogue, 1, "u3");
        publish(&catalogue, 2, "u3");
        let hash = InfoHash([1; 20]);
        assert_eq!(
            block_on(catalogue.set_authority(hash, Authority(7))).unwrap(),
            Authority(3)
        );
        assert_eq!(catalogue.get(&hash).unwrap().authority, Authority(7));
        assert!(block_on(catalogue.assign_relay(hash, "r2")).unwrap());
        assert!(block_on(catalogue.assign_relay(hash, "r1")).unwrap());
        assert!(!block_on(catalogue.assign_relay(hash, "r1")).unwrap());
        assert!(block_on(catalogue.assign_relay(InfoHash([2; 20]), "r1")).unwrap());
        assert_eq!(catalogue.get(&hash).unwrap().relays, vec!["r1", "r2"]);
        assert_eq!(
            catalogue.relayed_by("r1"),
            vec![InfoHash([1; 20]), InfoHash([2; 20])]
        );
        assert_copies_agree(&catalogue);
        assert!(block_on(catalogue.unassign_relay(hash, "r2")).unwrap());
        assert!(!block_on(catalogue.unassign_relay(hash, "r2")).unwrap());
        assert_eq!(catalogue.relayed_by("r2"), vec![]);
        catalogue.with_access(&hash, "r1", |t| {
            let t = t.unwrap();
            assert_eq!(t.authority, Authority(7));
            assert!(t.requester_is_relay);
        });
        assert_copies_agree(&catalogue);
        // Unknown torrents change nothing anywhere.
        let unknown = InfoHash([9; 20]);
        assert!(matches!(
            block_on(catalogue.set_authority(unknown, Authority(1))),
            Err(CatalogueError::UnknownTorrent)
        ));
        assert!(matches!(
            block_on(catalogue.assign_relay(unknown, "r1")),
            Err(CatalogueError::UnknownTorrent)
        ));
        assert_copies_agree(&catalogue);
        close(catalogue, thread);
    }

    #[test]
    fn a_removed_torrent_leaves_the_store_memory_its_key_and_its_swarm() {
        let dir = tempfile::tempdir().unwrap();
        let (catalogue, thread) = open(dir.path());
        publish(&catalogue, 1, "u3");
        publish(&catalogue, 2, "u1");
        let (hash, kept) = (InfoHash([1; 20]), InfoHash([2; 20]));
        block_on(catalogue.assign_relay(hash, "r1")).unwrap();
        block_on(catalogue.content_key(&hash)).unwrap();
        announce(&catalogue, 1);
        announce(&catalogue, 2);
        assert_eq!(catalogue.swarms.lock().number_of_torrents(), 2);

        let removed = block_on(catalogue.remove(hash)).unwrap();
        assert_eq!(removed.relays, vec!["r1"]);
        assert!(!catalogue.contains(&hash));
        assert_eq!(catalogue.relayed_by("r1"), vec![]);
        assert_eq!(catalogue.swarms.lock().number_of_torrents(), 1);
        assert_eq!(catalogue.swarms.lock().counts(&kept).complete, 1);
        assert!(matches!(
            block_on(catalogue.content_key(&hash)),
            Err(CatalogueError::UnknownTorrent)
        ));
        assert!(
            block_on(catalogue.store.sealed_key(removed.key_id))
                .unwrap()
                .is_none()
        );
        assert_eq!(block_on(catalogue.metainfo(hash)).unwrap(), None);
        assert!(matches!(
            block_on(catalogue.remove(hash)),
            Err(CatalogueError::UnknownTorrent)
        ));
        assert_copies_agree(&catalogue);
        close(catalogue, thread);
    }

    #[test]
    fn pending_keys_are_bounded_per_owner_and_owned_by_their_maker() {
        let dir = tempfile::tempdir().unwrap();
        let (catalogue, thread) = open(dir.path());
        let (first, key) = block_on(catalogue.new_pending_key("u3", 1000, 2))
            .unwrap()
            .unwrap();
        block_on(catalogue.new_pending_key("u3", 1000, 2))
            .unwrap()
            .unwrap();
        assert!(
            block_on(catalogue.new_pending_key("u3", 1000, 2))
                .unwrap()
                .is_none()
        );
        let owned = block_on(catalogue.owned_key(first, "u3")).unwrap().unwrap();
        assert_eq!(owned.as_bytes(), key.as_bytes());
        assert!(
            block_on(catalogue.owned_key(first, "u1"))
                .unwrap()
                .is_none()
        );
        assert!(block_on(catalogue.forget_pending_key(first)).unwrap());
        assert!(
            block_on(catalogue.owned_key(first, "u3"))
                .unwrap()
                .is_none()
        );
        assert_eq!(block_on(catalogue.purge_pending_keys(1001)).unwrap(), 1);
        assert!(catalogue.is_empty(), "pending keys are no torrents");
        close(catalogue, thread);
    }
}
