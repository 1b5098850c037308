//! The peer engine on 127.0.0.1 without a tracker: a seeder and downloaders exchange a real
//! encrypted torrent over real sockets, and the downloaders end with identical plaintext.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ivcsd::crypto::content::ContentKey;
use ivcsd::metainfo::{Metainfo, create_encrypted};
use ivcsd::peer::bitfield::Bitfield;
use ivcsd::peer::listener::{self, Registry};
use ivcsd::peer::session::{SessionConfig, Torrent};
use ivcsd::peer::storage::{ContentFiles, OpenMode, PieceStore, PlaintextStore};
use ivcsd::peer::wire::generate_peer_id;
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
    let have = if seed {
        Bitfield::full(info.piece_count())
    } else {
        Bitfield::new(info.piece_count())
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
        None,
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
