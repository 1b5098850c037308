//! The SQLite schema of the store: the migrations that build it, the connection settings it
//! is opened with, and how its rows read back into [`TorrentRecord`]s. Runs on the store
//! thread only.

use std::path::Path;

use rusqlite::Connection;

use crate::crypto::content::Cipher;
use crate::types::{Authority, InfoHash, KeyId};

use super::{StoreError, TorrentRecord};

/// Schema versions: `MIGRATIONS[i]` takes `user_version` from i to i + 1.
const MIGRATIONS: &[&str] = &[
    // 1: torrents, keys, relay assignments
    "CREATE TABLE torrents (
        info_hash    BLOB PRIMARY KEY CHECK (length(info_hash) = 20),
        name         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        owner        TEXT NOT NULL,
        authority    INTEGER NOT NULL,
        published_ms INTEGER NOT NULL,
        key_id       BLOB NOT NULL UNIQUE,
        metainfo     BLOB NOT NULL
    ) STRICT;
    CREATE TABLE content_keys (
        key_id     BLOB PRIMARY KEY CHECK (length(key_id) = 16),
        owner      TEXT NOT NULL,
        sealed     BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        info_hash  BLOB
    ) STRICT;
    CREATE INDEX content_keys_pending ON content_keys (created_ms) WHERE info_hash IS NULL;
    CREATE TABLE relays (
        info_hash BLOB NOT NULL REFERENCES torrents (info_hash),
        username  TEXT NOT NULL,
        PRIMARY KEY (info_hash, username)
    ) STRICT;",
    // 2: the content cipher suite of each torrent (`info.ivcsd.cipher`), for getcipher's answer
    "ALTER TABLE torrents ADD COLUMN cipher TEXT NOT NULL DEFAULT 'rc4+';",
];

pub(super) fn open_db(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows are overwritten, not left in free pages: a removed torrent's sealed key
    // must not stay readable in the file (see `remove_torrent`).
    conn.pragma_update(None, "secure_delete", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!("database schema migrated to version {}", i + 1);
    }
    Ok(())
}

pub(super) fn blob<const N: usize>(v: Vec<u8>, what: &'static str) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::Corrupt(what))
}

pub(super) fn read_torrents(conn: &Connection) -> Result<Vec<TorrentRecord>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT info_hash, name, size, owner, authority, published_ms, key_id, cipher FROM torrents",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Vec<u8>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (hash, name, size, owner, authority, published_ms, key_id, cipher) = row?;
        let info_hash = InfoHash(blob(hash, "info_hash")?);
        out.push(TorrentRecord {
            info_hash,
            name,
            size: u64::try_from(size).map_err(|_| StoreError::Corrupt("size"))?,
            owner,
            authority: Authority(
                u32::try_from(authority).map_err(|_| StoreError::Corrupt("authority"))?,
            ),
            published_ms: u64::try_from(published_ms).unwrap_or(0),
            key_id: KeyId(blob(key_id, "key_id")?),
            cipher: Cipher::from_name(cipher.as_bytes()).ok_or(StoreError::Corrupt("cipher"))?,
            relays: Vec::new(),
        });
    }
    let mut stmt = conn.prepare("SELECT info_hash, username FROM relays ORDER BY username")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (hash, user) = row?;
        let hash = InfoHash(blob(hash, "relay info_hash")?);
        if let Some(t) = out.iter_mut().find(|t| t.info_hash == hash) {
            t.relays.push(user);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::*;
    use crate::tracker::store::tests::{created_and_closed, record};
    use crate::tracker::store::{DB_FILE, Store};

    #[tokio::test]
    async fn a_version_1_database_gains_the_cipher_column_and_its_torrents_are_rc4_plus() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = created_and_closed(dir.path()).await;
        // A database as the first schema left it, with one torrent.
        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO torrents VALUES (?1, 'old', 9, 'u1', 0, 5, ?2, x'00')",
                params![&[8u8; 20][..], &[9u8; 16][..]],
            )
            .unwrap();
        }
        let (store, _thread, master) = Store::open(dir.path(), &key_file).unwrap();
        let torrents = store.torrents().await.unwrap();
        assert_eq!(torrents.len(), 1);
        assert_eq!(torrents[0].cipher, Cipher::Rc4Plus);
        // And a new torrent keeps the suite it was published with.
        let id = KeyId([2; 16]);
        let sealed = master.seal(&id, &[1; 32]);
        store
            .insert_pending_key(id, "u3".into(), sealed, 1000, 2)
            .await
            .unwrap();
        store
            .publish(record("u3", id), b"t".to_vec(), 0)
            .await
            .unwrap();
        let stored = store.torrents().await.unwrap();
        let new = stored.iter().find(|t| t.key_id == id).unwrap();
        assert_eq!(new.cipher, Cipher::Aes256Ctr);
    }

    #[tokio::test]
    async fn an_unknown_cipher_in_a_row_is_a_damaged_row_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let key_file = created_and_closed(dir.path()).await;
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
            conn.execute(
                "INSERT INTO torrents VALUES (?1, 'x', 9, 'u1', 0, 5, ?2, x'00', 'rc5')",
                params![&[8u8; 20][..], &[9u8; 16][..]],
            )
            .unwrap();
        }
        let (store, _thread, _master) = Store::open(dir.path(), &key_file).unwrap();
        let err = store.torrents().await.unwrap_err();
        assert_eq!(err.to_string(), "database row damaged: cipher");
    }
}
