//! Durable tracker state (docs/protocol.md section 8): torrents, owners, authorities, content
//! keys and relay assignments in SQLite in the data directory.
//!
//! - One dedicated thread owns the connection; requests reach it over a bounded channel and
//!   carry their own reply channel, so no SQLite call ever runs on the async reactor.
//! - Write-ahead log with `synchronous=FULL`: a transaction that returned is on disk, so a
//!   publish that was answered survives any crash (docs/protocol.md 4.4).
//! - The schema is versioned with `PRAGMA user_version`; the migrations of `schema.rs` run in
//!   order, each in its own transaction.
//! - Content keys are stored sealed: the sealing and the master key are [`super::master_key`],
//!   which this module only opens (or creates, with a new database) at start.
//!
//! Live swarms are not here: they are in memory ([`super::swarm`]).

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::content::Cipher;
use crate::types::{Authority, InfoHash, KeyId};

mod schema;

use super::master_key::MasterKeyError;
use schema::{blob, open_db, read_torrents};

// The master key's types, under `store::` too: `Store::open` returns the key.
pub use super::master_key::{MASTER_KEY_FILE, MasterKey, RawKey};

/// The database's file name in the data directory.
pub const DB_FILE: &str = "tracker.sqlite";
/// Requests waiting for the store thread.
const QUEUE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("error creating data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    MasterKey(#[from] MasterKeyError),
    #[error(
        "master key {key} is missing, but database {db} exists: its content keys open only with the master key they were sealed with (restore it, or name it with --master-key)"
    )]
    MasterKeyMissing { key: PathBuf, db: PathBuf },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this tracker's {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("database row damaged: {0}")]
    Corrupt(&'static str),
    #[error("the store thread has stopped")]
    Stopped,
}

/// A torrent as the tracker keeps it in memory (everything but the .torrent bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentRecord {
    pub info_hash: InfoHash,
    pub name: String,
    pub size: u64,
    pub owner: String,
    pub authority: Authority,
    pub published_ms: u64,
    pub key_id: KeyId,
    /// Its content cipher suite (`info.ivcsd.cipher`), which getcipher names.
    pub cipher: Cipher,
    /// Users assigned to relay it, sorted.
    pub relays: Vec<String>,
}

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored now.
    Published(TorrentRecord),
    /// The same torrent by the same owner was already stored: nothing changed.
    AlreadyPublished(TorrentRecord),
    /// The key id names no pending key of this requester.
    UnknownKey,
    /// The info hash is stored with another owner or another key.
    Conflict,
}

/// A content key row as stored: still sealed.
#[derive(Debug, Clone)]
pub struct SealedKey {
    pub sealed: Vec<u8>,
    pub owner: String,
    /// `None` while pending.
    pub info_hash: Option<InfoHash>,
    pub created_ms: u64,
}

/// A unit of work for the store thread; it answers whether the thread should go on.
type Job = Box<dyn FnOnce(&mut Connection) -> bool + Send>;

/// A handle to the store thread. Cheap to clone; the thread ends when the last handle is
/// dropped and [`Store::close`] waits for it.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

/// The store thread; join it at shutdown so the database is closed cleanly.
pub struct StoreThread(std::thread::JoinHandle<()>);

impl StoreThread {
    /// Whether the thread ended (it only should after [`Store::close`]).
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Waits for the thread to finish its queue and close the database (all handles must be
    /// dropped first).
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("store thread panicked");
        }
    }
}

impl Store {
    /// Opens (creating if needed) the data directory, the master key at `master_key` and the
    /// database, and starts the store thread. A master key is created only with a new
    /// database: for an existing one a missing key is an error, not a new key that would open
    /// none of its content keys.
    ///
    /// # Errors
    /// Any I/O or SQLite error, a damaged or missing master key, or a schema newer than this
    /// build.
    pub fn open(
        data_dir: &Path,
        master_key: &Path,
    ) -> Result<(Store, StoreThread, MasterKey), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let db_path = data_dir.join(DB_FILE);
        if db_path.exists() && !master_key.exists() {
            return Err(StoreError::MasterKeyMissing {
                key: master_key.to_owned(),
                db: db_path,
            });
        }
        let master = MasterKey::load_or_create(master_key)?;
        let mut conn = open_db(&db_path)?;
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("tracker-store".into())
            .spawn(move || {
                while let Some(job) = rx.blocking_recv() {
                    if !job(&mut conn) {
                        break;
                    }
                }
                // dropping `conn` checkpoints and closes the database
            })
            .map_err(|source| StoreError::DataDir {
                path: data_dir.to_owned(),
                source,
            })?;
        Ok((Store { jobs: tx }, StoreThread(thread), master))
    }

    /// Runs `f` on the store thread and returns its result.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
                true
            }))
            .await
            .map_err(|_| StoreError::Stopped)?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Asks the store thread to stop after the work queued before this call; later calls
    /// fail with [`StoreError::Stopped`].
    pub async fn close(&self) {
        let _ = self.jobs.send(Box::new(|_| false)).await;
    }

    /// Every torrent, with its relays (not the .torrent bytes).
    pub async fn torrents(&self) -> Result<Vec<TorrentRecord>, StoreError> {
        self.call(|conn| read_torrents(conn)).await
    }

    /// Records a new pending key of `owner`, unless it already has `max_pending` of them.
    /// Returns whether it was stored.
    pub async fn insert_pending_key(
        &self,
        key_id: KeyId,
        owner: String,
        sealed: Vec<u8>,
        created_ms: u64,
        max_pending: usize,
    ) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let pending: i64 = tx.query_row(
                "SELECT count(*) FROM content_keys WHERE owner = $1 AND info_hash IS NULL",
                params![owner],
                |r| r.get(0),
            )?;
            if pending as usize >= max_pending {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO content_keys (key_id, owner, sealed, created_ms) VALUES ($1, $2, $3, $4)",
                params![&key_id.0[..], owner, sealed, created_ms as i64],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    /// Publishes a torrent in one transaction: the pending key `record.key_id` of
    /// `record.owner` is bound to the info hash and the torrent stored. Answers only after the
    /// commit is on disk.
    pub async fn publish(
        &self,
        record: TorrentRecord,
        metainfo: Vec<u8>,
        pending_since_ms: u64,
    ) -> Result<PublishOutcome, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let existing: Option<(String, Vec<u8>)> = tx
                .query_row(
                    "SELECT owner, key_id FROM torrents WHERE info_hash = $1",
                    params![&record.info_hash.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((owner, key_id)) = existing {
                if owner == record.owner && key_id == record.key_id.0 {
                    let all = read_torrents(&tx)?;
                    let stored = all
                        .into_iter()
                        .find(|t| t.info_hash == record.info_hash)
                        .ok_or(StoreError::Corrupt("torrent vanished in a transaction"))?;
                    return Ok(PublishOutcome::AlreadyPublished(stored));
                }
                return Ok(PublishOutcome::Conflict);
            }
            let claimed = tx.execute(
                "UPDATE content_keys SET info_hash = $1
                 WHERE key_id = $2 AND owner = $3 AND info_hash IS NULL AND created_ms >= $4",
                params![
                    &record.info_hash.0[..],
                    &record.key_id.0[..],
                    record.owner,
                    pending_since_ms as i64
                ],
            )?;
            if claimed != 1 {
                return Ok(PublishOutcome::UnknownKey);
            }
            tx.execute(
                "INSERT INTO torrents (info_hash, name, size, owner, authority, published_ms, key_id, metainfo, cipher)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                params![
                    &record.info_hash.0[..],
                    record.name,
                    record.size as i64,
                    record.owner,
                    i64::from(record.authority.0),
                    record.published_ms as i64,
                    &record.key_id.0[..],
                    metainfo,
                    record.cipher.name()
                ],
            )?;
            tx.commit()?;
            Ok(PublishOutcome::Published(record))
        })
        .await
    }

    /// The stored .torrent bytes.
    pub async fn metainfo(&self, info_hash: InfoHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT metainfo FROM torrents WHERE info_hash = $1",
                    params![&info_hash.0[..]],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The sealed content key of a key id, if it exists (pending or bound), with its owner,
    /// the info hash it is bound to and its creation time.
    pub async fn sealed_key(&self, key_id: KeyId) -> Result<Option<SealedKey>, StoreError> {
        type Row = (Vec<u8>, String, Option<Vec<u8>>, i64);
        self.call(move |conn| {
            let row: Option<Row> = conn
                .query_row(
                    "SELECT sealed, owner, info_hash, created_ms FROM content_keys WHERE key_id = $1",
                    params![&key_id.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            row.map(|(sealed, owner, hash, created)| {
                let hash = hash.map(|h| blob(h, "key info_hash").map(InfoHash)).transpose()?;
                Ok(SealedKey {
                    sealed,
                    owner,
                    info_hash: hash,
                    created_ms: u64::try_from(created).unwrap_or(0),
                })
            })
            .transpose()
        })
        .await
    }

    /// Sets a torrent's authority; false if there is no such torrent.
    pub async fn set_authority(
        &self,
        info_hash: InfoHash,
        authority: Authority,
    ) -> Result<bool, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute(
                "UPDATE torrents SET authority = $1 WHERE info_hash = $2",
                params![i64::from(authority.0), &info_hash.0[..]],
            )? == 1)
        })
        .await
    }

    /// Removes a torrent with its relay assignments and its content key, in one transaction;
    /// returns whether it existed. The key is destroyed: its row is overwritten
    /// (`secure_delete`) and the write-ahead log, which still holds the old pages, is
    /// checkpointed and truncated, so the sealed key survives only in backups.
    pub async fn remove_torrent(&self, info_hash: InfoHash) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let hash = &info_hash.0[..];
            let key_id: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT key_id FROM torrents WHERE info_hash = $1",
                    params![hash],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(key_id) = key_id else {
                return Ok(false);
            };
            tx.execute("DELETE FROM relays WHERE info_hash = $1", params![hash])?;
            tx.execute(
                "DELETE FROM content_keys WHERE info_hash = $1 OR key_id = $2",
                params![hash, key_id],
            )?;
            tx.execute("DELETE FROM torrents WHERE info_hash = $1", params![hash])?;
            tx.commit()?;
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(true)
        })
        .await
    }

    /// Assigns or unassigns a relay; returns whether anything changed.
    pub async fn set_relay(
        &self,
        info_hash: InfoHash,
        username: String,
        assigned: bool,
    ) -> Result<bool, StoreError> {
        self.call(move |conn| {
            let sql = if assigned {
                "INSERT OR IGNORE INTO relays (info_hash, username) VALUES ($1, $2)"
            } else {
                "DELETE FROM relays WHERE info_hash = $1 AND username = $2"
            };
            Ok(conn.execute(sql, params![&info_hash.0[..], username])? == 1)
        })
        .await
    }

    /// Deletes one pending key (never a key bound to a torrent); returns whether it existed.
    pub async fn forget_pending_key(&self, key_id: KeyId) -> Result<bool, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM content_keys WHERE key_id = $1 AND info_hash IS NULL",
                params![&key_id.0[..]],
            )? == 1)
        })
        .await
    }

    /// Deletes pending keys created before `before_ms`; returns how many.
    pub async fn purge_pending(&self, before_ms: u64) -> Result<usize, StoreError> {
        self.call(move |conn| {
            Ok(conn.execute(
                "DELETE FROM content_keys WHERE info_hash IS NULL AND created_ms < $1",
                params![before_ms as i64],
            )?)
        })
        .await
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(super) fn record(owner: &str, key: KeyId) -> TorrentRecord {
        TorrentRecord {
            info_hash: InfoHash([1; 20]),
            name: "data".into(),
            size: 100,
            owner: owner.into(),
            authority: Authority(0),
            published_ms: 5,
            key_id: key,
            cipher: Cipher::Aes256Ctr,
            relays: vec![],
        }
    }

    /// Creates a store (master key and database) in `dir` and closes it, for a test that then
    /// edits the database itself; returns the master key's path.
    pub(super) async fn created_and_closed(dir: &Path) -> PathBuf {
        let key_file = dir.join(MASTER_KEY_FILE);
        let (store, thread, _master) = Store::open(dir, &key_file).unwrap();
        store.close().await;
        drop(store);
        thread.join();
        key_file
    }

    #[tokio::test]
    async fn forgetting_a_pending_key_frees_its_place_and_spares_bound_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _thread, master) =
            Store::open(dir.path(), &dir.path().join(MASTER_KEY_FILE)).unwrap();
        let (pending, bound) = (KeyId([5; 16]), KeyId([6; 16]));
        for id in [pending, bound] {
            let sealed = master.seal(&id, &[1; 32]);
            assert!(
                store
                    .insert_pending_key(id, "u3".into(), sealed, 1000, 2)
                    .await
                    .unwrap()
            );
        }
        store
            .publish(record("u3", bound), b"t".to_vec(), 0)
            .await
            .unwrap();
        // u3 holds its two places (one pending, one bound: the limit counts pending keys only).
        let third = KeyId([7; 16]);
        let sealed = master.seal(&third, &[1; 32]);
        assert!(
            !store
                .insert_pending_key(third, "u3".into(), sealed.clone(), 1000, 1)
                .await
                .unwrap()
        );
        assert!(store.forget_pending_key(pending).await.unwrap());
        assert!(!store.forget_pending_key(pending).await.unwrap());
        assert!(
            !store.forget_pending_key(bound).await.unwrap(),
            "bound keys stay"
        );
        assert!(store.sealed_key(bound).await.unwrap().is_some());
        assert!(
            store
                .insert_pending_key(third, "u3".into(), sealed, 1000, 1)
                .await
                .unwrap(),
            "the place is free again"
        );
    }

    #[tokio::test]
    async fn a_removed_torrent_leaves_no_row_and_no_copy_of_its_sealed_key_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread, master) =
            Store::open(dir.path(), &dir.path().join(MASTER_KEY_FILE)).unwrap();
        let (kept, removed) = (KeyId([3; 16]), KeyId([4; 16]));
        let sealed = master.seal(&removed, &[7; 32]);
        for (id, owner, sealed) in [
            (kept, "u1", master.seal(&kept, &[8; 32])),
            (removed, "u3", sealed.clone()),
        ] {
            assert!(
                store
                    .insert_pending_key(id, owner.into(), sealed, 1000, 2)
                    .await
                    .unwrap()
            );
        }
        let mut other = record("u1", kept);
        other.info_hash = InfoHash([2; 20]);
        store.publish(other, b"kept".to_vec(), 0).await.unwrap();
        store
            .publish(record("u3", removed), b"removed".to_vec(), 0)
            .await
            .unwrap();
        store
            .set_relay(InfoHash([1; 20]), "r".into(), true)
            .await
            .unwrap();

        assert!(store.remove_torrent(InfoHash([1; 20])).await.unwrap());
        assert!(!store.remove_torrent(InfoHash([1; 20])).await.unwrap());
        assert!(store.sealed_key(removed).await.unwrap().is_none());
        assert!(store.metainfo(InfoHash([1; 20])).await.unwrap().is_none());
        let left = store.torrents().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].info_hash, InfoHash([2; 20]));
        assert!(store.sealed_key(kept).await.unwrap().is_some());
        // Neither the database nor its write-ahead log still holds the sealed key, while the
        // store is open and after it is closed.
        let no_copy_left = || {
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(sealed.len()).any(|w| w == &sealed[..]),
                    "{} still holds the removed key",
                    path.display()
                );
            }
        };
        no_copy_left();
        drop(store);
        thread.join();
        no_copy_left();
    }

    #[tokio::test]
    async fn publish_binds_a_pending_key_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (store, thread, master) =
            Store::open(dir.path(), &dir.path().join(MASTER_KEY_FILE)).unwrap();
        let key_id = KeyId([9; 16]);
        let sealed = master.seal(&key_id, &[42; 32]);
        assert!(
            store
                .insert_pending_key(key_id, "u3".into(), sealed, 1000, 2)
                .await
                .unwrap()
        );
        // someone else cannot claim u3's key
        assert_eq!(
            store
                .publish(record("u1", key_id), b"t".to_vec(), 0)
                .await
                .unwrap(),
            PublishOutcome::UnknownKey
        );
        // an expired pending key cannot be claimed
        assert_eq!(
            store
                .publish(record("u3", key_id), b"t".to_vec(), 2000)
                .await
                .unwrap(),
            PublishOutcome::UnknownKey
        );
        assert!(matches!(
            store
                .publish(record("u3", key_id), b"t".to_vec(), 0)
                .await
                .unwrap(),
            PublishOutcome::Published(_)
        ));
        assert!(matches!(
            store
                .publish(record("u3", key_id), b"t".to_vec(), 0)
                .await
                .unwrap(),
            PublishOutcome::AlreadyPublished(_)
        ));
        assert_eq!(
            store
                .publish(record("u1", key_id), b"t".to_vec(), 0)
                .await
                .unwrap(),
            PublishOutcome::Conflict
        );
        assert!(
            store
                .set_authority(InfoHash([1; 20]), Authority(4))
                .await
                .unwrap()
        );
        assert!(
            store
                .set_relay(InfoHash([1; 20]), "r".into(), true)
                .await
                .unwrap()
        );
        drop(store);
        thread.join();

        let (store, _thread, master2) =
            Store::open(dir.path(), &dir.path().join(MASTER_KEY_FILE)).unwrap();
        let torrents = store.torrents().await.unwrap();
        assert_eq!(torrents.len(), 1);
        assert_eq!(torrents[0].authority, Authority(4));
        assert_eq!(torrents[0].relays, vec!["r".to_string()]);
        let row = store.sealed_key(key_id).await.unwrap().unwrap();
        assert_eq!(row.owner, "u3");
        assert_eq!(row.info_hash, Some(InfoHash([1; 20])));
        assert_eq!(*master2.open(&key_id, &row.sealed).unwrap(), [42; 32]);
        assert_eq!(
            store.metainfo(InfoHash([1; 20])).await.unwrap(),
            Some(b"t".to_vec())
        );
    }

    #[tokio::test]
    async fn a_master_key_kept_elsewhere_is_required_once_the_database_exists() {
        let data = tempfile::tempdir().unwrap();
        let vault = tempfile::tempdir().unwrap();
        let key_path = vault.path().join("tracker-master.key");
        let (store, thread, master) = Store::open(data.path(), &key_path).unwrap();
        let id = KeyId([9; 16]);
        assert!(
            store
                .insert_pending_key(id, "u".into(), master.seal(&id, &[7; 32]), 1, 10)
                .await
                .unwrap()
        );
        drop(store);
        thread.join();
        assert!(key_path.exists());
        assert!(
            !data.path().join(MASTER_KEY_FILE).exists(),
            "no key in the data directory"
        );
        // Without its key the database is refused, and no new key is made.
        let moved = vault.path().join("elsewhere.key");
        std::fs::rename(&key_path, &moved).unwrap();
        let err = Store::open(data.path(), &key_path).map(|_| ()).unwrap_err();
        assert!(
            matches!(&err, StoreError::MasterKeyMissing { key, .. } if *key == key_path),
            "{err}"
        );
        assert!(err.to_string().contains("--master-key"), "{err}");
        assert!(!key_path.exists());
        // Named where it is now, it opens the sealed key.
        let (store, _t, master) = Store::open(data.path(), &moved).unwrap();
        let row = store.sealed_key(id).await.unwrap().unwrap();
        assert_eq!(*master.open(&id, &row.sealed).unwrap(), [7; 32]);
    }

    #[tokio::test]
    async fn pending_keys_are_bounded_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _t, master) =
            Store::open(dir.path(), &dir.path().join(MASTER_KEY_FILE)).unwrap();
        for i in 0..3u8 {
            let id = KeyId([i; 16]);
            let stored = store
                .insert_pending_key(id, "u".into(), master.seal(&id, &[0; 32]), u64::from(i), 2)
                .await
                .unwrap();
            assert_eq!(stored, i < 2);
        }
        assert_eq!(store.purge_pending(1).await.unwrap(), 1);
        assert!(store.sealed_key(KeyId([0; 16])).await.unwrap().is_none());
    }
}
