//! The peer engine on 127.0.0.1 without a tracker: a seeder and downloaders exchange a real
//! encrypted torrent over real sockets, and the downloaders end with identical plaintext.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ivcsd::crypto::content::ContentKey;
use ivcsd::metainfo::{Info, Metainfo, PieceIndex, create_encrypted};
use ivcsd::peer::bitfield::Bitfield;
use ivcsd::peer::listener::{self, Registry};
use ivcsd::peer::peer_id::generate_peer_id;
use ivcsd::peer::session::{OnDamage, SessionConfig, Torrent};
use ivcsd::peer::storage::{ContentFiles, OpenMode, PieceStore, PlaintextStore, StorageError};
use ivcsd::types::KeyId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn write_content(dir: &Path, size: usize) -> std::path::PathBuf {
    let root = dir.join("content");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let mut x: u32 = 12345;
    let mut random_bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    std::fs::write(root.join("a.bin"), random_bytes(size / 3)).unwrap();
    std::fs::write(root.join("sub/b.bin"), random_bytes(size - size / 3)).unwrap();
    root
}

struct Peer {
    torrent: Arc<Torrent>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

async fn start_peer(
    metainfo: &Metainfo,
    key: &ContentKey,
    dir: &Path,
    seed: bool,
    peers: &[SocketAddr],
) -> Peer {
    let info = metainfo.info.clone();
    let mode = if seed {
        OpenMode::Existing
    } else {
        OpenMode::Create
    };
    let store: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(
        ContentFiles::open(dir, &info, mode).unwrap(),
        info.clone(),
        key.clone(),
    ));
    start_with_store(metainfo, store, seed, peers, None).await
}

async fn start_with_store(
    metainfo: &Metainfo,
    store: Arc<dyn PieceStore>,
    seed: bool,
    peers: &[SocketAddr],
    resume: Option<std::path::PathBuf>,
) -> Peer {
    let count = metainfo.info.piece_count();
    let have = match &resume {
        Some(path) => {
            let files = store.file_paths();
            ivcsd::peer::resume::load(
                path,
                metainfo.info_hash,
                count,
                files.iter().map(|p| p.as_path()),
            )
            .unwrap_or_else(|| Bitfield::new(count))
        }
        None if seed => Bitfield::full(count),
        None => Bitfield::new(count),
    };
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = SessionConfig::new(generate_peer_id(), addr.port());
    let torrent = Torrent::new(
        metainfo.info_hash,
        store,
        have,
        config.clone(),
        None,
        resume,
        shutdown.clone(),
    )
    .unwrap();
    let registry = Registry::new();
    registry.insert(Arc::clone(&torrent));
    tokio::spawn(listener::serve(
        tcp,
        registry,
        config.connection.clone(),
        shutdown.clone(),
    ));
    torrent.start(peers);
    Peer {
        torrent,
        addr,
        shutdown,
    }
}

async fn wait_complete(peer: &Peer) {
    let mut rx = peer.torrent.subscribe();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            {
                let p = rx.borrow_and_update();
                assert!(p.error.is_none(), "session failed: {:?}", p.error);
                if p.complete {
                    return;
                }
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("download did not complete in time");
}

fn same_tree(a: &Path, b: &Path) {
    for name in ["a.bin", "sub/b.bin"] {
        assert!(
            std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seeder_to_three_downloaders() {
    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 3 * 1024 * 1024 + 12345);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([3; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;

    let seeder = start_peer(&metainfo, &key, src.path(), true, &[]).await;
    let mut downloaders = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        downloaders.push(start_peer(&metainfo, &key, dir.path(), false, &[seeder.addr]).await);
        dirs.push(dir);
    }
    for (d, dir) in downloaders.iter().zip(&dirs) {
        wait_complete(d).await;
        same_tree(&root, &dir.path().join("content"));
    }
    for p in downloaders.iter().chain([&seeder]) {
        p.shutdown.cancel();
        p.torrent.wait_stopped().await;
    }
}

/// A seeder whose every block is damaged on the way out.
struct CorruptStore(Arc<dyn PieceStore>);

impl PieceStore for CorruptStore {
    fn read_ciphertext(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.0.read_ciphertext(offset, buf)?;
        if let Some(b) = buf.first_mut() {
            *b ^= 0x5a;
        }
        Ok(())
    }
    fn write_piece(&self, index: PieceIndex, ciphertext: &mut [u8]) -> Result<(), StorageError> {
        self.0.write_piece(index, ciphertext)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.0.sync()
    }
    fn info(&self) -> &Info {
        self.0.info()
    }
    fn file_paths(&self) -> Vec<std::path::PathBuf> {
        self.0.file_paths()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_corrupt_blocks_is_banned_and_the_download_completes() {
    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 2 * 1024 * 1024);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([3; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;
    let info = metainfo.info.clone();
    let honest_store: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(
        ContentFiles::open(src.path(), &info, OpenMode::Existing).unwrap(),
        info.clone(),
        key.clone(),
    ));
    let corrupt = start_with_store(
        &metainfo,
        Arc::new(CorruptStore(Arc::clone(&honest_store))),
        true,
        &[],
        None,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // First the corrupt seeder alone: it must send a bad piece and be banned for it. (With
    // both seeders from the start, a busy machine can let the honest one serve everything
    // before the corrupt one sends anything.)
    let downloader = start_peer(&metainfo, &key, dir.path(), false, &[corrupt.addr]).await;
    tokio::time::timeout(Duration::from_secs(60), async {
        while downloader.torrent.banned_count() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the corrupt seeder was never banned");
    // Then an honest seeder calls the downloader, which completes from it.
    let honest = start_with_store(&metainfo, honest_store, true, &[downloader.addr], None).await;
    wait_complete(&downloader).await;
    same_tree(&root, &dir.path().join("content"));
    assert_eq!(
        downloader.torrent.banned_count(),
        1,
        "the corrupt seeder is banned, the honest one not"
    );
    for p in [&downloader, &corrupt, &honest] {
        p.shutdown.cancel();
        p.torrent.wait_stopped().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_connections_neither_crash_nor_stall_a_seeder() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 2 * 1024 * 1024 + 777);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([3; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;
    let seeder = start_peer(&metainfo, &key, src.path(), true, &[]).await;

    let handshake = |info_hash: [u8; 20]| {
        let mut h = vec![19u8];
        h.extend_from_slice(b"BitTorrent protocol");
        h.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        h.extend_from_slice(&info_hash);
        h.extend_from_slice(b"-XX0001-hostile-peer");
        h
    };
    let mut hostile = Vec::new();
    // Garbage instead of a handshake.
    hostile.push(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    // A handshake for a torrent the seeder does not serve.
    hostile.push(handshake([9; 20]));
    // A good handshake, then a message claiming 1 GiB.
    let mut m = handshake(metainfo.info_hash.0);
    m.extend_from_slice(&(1u32 << 30).to_be_bytes());
    m.push(7);
    hostile.push(m);
    // A good handshake, then a request outside the torrent and one over 16 KiB.
    let mut m = handshake(metainfo.info_hash.0);
    for (index, begin, len) in [(999u32, 0u32, 16384u32), (0, 0, 65536)] {
        m.extend_from_slice(&13u32.to_be_bytes());
        m.push(6);
        m.extend_from_slice(&index.to_be_bytes());
        m.extend_from_slice(&begin.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
    }
    hostile.push(m);
    // A bitfield of the wrong length.
    let mut m = handshake(metainfo.info_hash.0);
    m.extend_from_slice(&3u32.to_be_bytes());
    m.extend_from_slice(&[5, 0xff, 0xff]);
    hostile.push(m);
    let mut tasks = Vec::new();
    for bytes in hostile {
        let addr = seeder.addr;
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(&bytes).await;
            let mut sink = vec![0u8; 65536];
            // The seeder must close on us, promptly.
            let closed = tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    match s.read(&mut sink).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "the seeder kept a hostile connection open");
        }));
    }
    // Idle connections that never say anything, while an honest downloader is served.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(seeder.addr).await.unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let downloader = start_peer(&metainfo, &key, dir.path(), false, &[seeder.addr]).await;
    wait_complete(&downloader).await;
    same_tree(&root, &dir.path().join("content"));
    for t in tasks {
        t.await.unwrap();
    }
    drop(idle);
    for p in [&downloader, &seeder] {
        p.shutdown.cancel();
        p.torrent.wait_stopped().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_download_resumes_from_its_record_and_finishes_identical() {
    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 6 * 1024 * 1024);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([3; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;
    let info = metainfo.info.clone();
    let seeder = start_peer(&metainfo, &key, src.path(), true, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let record = ivcsd::peer::resume::record_path(dir.path(), metainfo.info_hash);
    let open = || -> Arc<dyn PieceStore> {
        Arc::new(PlaintextStore::new(
            ContentFiles::open(dir.path(), &info, OpenMode::Create).unwrap(),
            info.clone(),
            key.clone(),
        ))
    };

    let first = start_with_store(
        &metainfo,
        open(),
        false,
        &[seeder.addr],
        Some(record.clone()),
    )
    .await;
    let mut rx = first.torrent.subscribe();
    let total = info.piece_count();
    tokio::time::timeout(Duration::from_secs(60), async {
        while rx.borrow_and_update().pieces_have < total / 3 {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    first.shutdown.cancel();
    first.torrent.wait_stopped().await;
    let kept = first.torrent.subscribe().borrow().pieces_have;
    assert!(kept < total, "stopped before the end");

    let second = start_with_store(&metainfo, open(), false, &[seeder.addr], Some(record)).await;
    let resumed = second.torrent.subscribe().borrow().pieces_have;
    assert!(
        resumed >= total / 3 && resumed <= kept,
        "resumed with {resumed} of {kept} pieces"
    );
    wait_complete(&second).await;
    same_tree(&root, &dir.path().join("content"));
    for p in [&second, &seeder] {
        p.shutdown.cancel();
        p.torrent.wait_stopped().await;
    }
}

/// A downloader's store whose disk fills up after `room` pieces.
struct FullDisk {
    inner: Arc<dyn PieceStore>,
    room: std::sync::atomic::AtomicU32,
}

impl PieceStore for FullDisk {
    fn read_ciphertext(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        self.inner.read_ciphertext(offset, buf)
    }
    fn write_piece(&self, index: PieceIndex, ciphertext: &mut [u8]) -> Result<(), StorageError> {
        use std::sync::atomic::Ordering;
        if self
            .room
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| r.checked_sub(1))
            .is_err()
        {
            return Err(StorageError::Io {
                action: "writing",
                path: "data.bin".into(),
                source: std::io::Error::from_raw_os_error(28), // ENOSPC
            });
        }
        self.inner.write_piece(index, ciphertext)
    }
    fn sync(&self) -> Result<(), StorageError> {
        self.inner.sync()
    }
    fn info(&self) -> &Info {
        self.inner.info()
    }
    fn file_paths(&self) -> Vec<std::path::PathBuf> {
        self.inner.file_paths()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_download_with_a_clear_error_and_keeps_verified_pieces() {
    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 4 * 1024 * 1024);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([3; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;
    let info = metainfo.info.clone();
    let seeder = start_peer(&metainfo, &key, src.path(), true, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(
        ContentFiles::open(dir.path(), &info, OpenMode::Create).unwrap(),
        info.clone(),
        key.clone(),
    ));
    let store = Arc::new(FullDisk {
        inner: Arc::clone(&inner),
        room: 5.into(),
    });
    let downloader = start_with_store(&metainfo, store, false, &[seeder.addr], None).await;
    let mut rx = downloader.torrent.subscribe();
    let error = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(e) = rx.borrow_and_update().error.clone() {
                return e;
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("no error reported");
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.starts_with("cannot store piece"), "{error}");
    downloader.torrent.wait_stopped().await;
    // The pieces written before the disk filled are intact.
    let ok = ivcsd::peer::storage::recheck(inner.as_ref(), &|| false);
    assert_eq!(ok.iter().filter(|ok| **ok).count(), 5);
    seeder.shutdown.cancel();
    seeder.torrent.wait_stopped().await;
}

/// Re-verification looks only at the pieces a session has: a torrent still downloading (here
/// one that has nothing yet, and no one to get it from) is not stopped for the pieces that
/// are simply not there, however often it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverification_ignores_pieces_not_yet_downloaded() {
    let src = tempfile::tempdir().unwrap();
    let root = write_content(src.path(), 1024 * 1024);
    let key = ContentKey::generate();
    let metainfo = create_encrypted(&root, &key, KeyId([4; 16]), "", Some(256 * 1024))
        .unwrap()
        .metainfo;
    let dir = tempfile::tempdir().unwrap();
    let info = metainfo.info.clone();
    let store: Arc<dyn PieceStore> = Arc::new(PlaintextStore::new(
        ContentFiles::open(dir.path(), &info, OpenMode::Create).unwrap(),
        info,
        key.clone(),
    ));
    let record = dir.path().join("record");
    let empty = start_with_store(&metainfo, store, false, &[], Some(record.clone())).await;
    empty.torrent.reverify_every(
        Duration::from_millis(300),
        OnDamage::Refetch { restart: None },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let progress = empty.torrent.subscribe().borrow().clone();
    assert_eq!(progress.error, None);
    assert!(!record.exists(), "a resume record was written for nothing");
    empty.shutdown.cancel();
}
