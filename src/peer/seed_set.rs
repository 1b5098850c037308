//! The torrents one `peer seed` process serves on one port: a list given once, or a directory
//! of `.torrent` files that is read again on request (SIGHUP), so that a site adds a dataset by
//! dropping its torrent there and withdraws one by removing it.
//!
//! A torrent that cannot start or fails later is reported and stopped; the others go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::metainfo::Metainfo;
use crate::metainfo::file::{MAX_TORRENT_FILE, TorrentFileError};
use crate::peer::node::PeerNode;
use crate::peer::seed;
use crate::peer::session::{OnDamage, Torrent};
use crate::types::InfoHash;

/// What happened to one torrent, for the caller to report.
#[derive(Debug)]
pub enum SeedEvent {
    Started {
        name: String,
        info_hash: InfoHash,
    },
    /// It could not start (bad torrent file, key refused, data missing or different).
    NotStarted {
        what: String,
        error: String,
    },
    /// It stopped: its torrent file is gone, or its session failed.
    Stopped {
        name: String,
        info_hash: InfoHash,
        why: String,
    },
}

struct Seeding {
    name: String,
    torrent: Arc<Torrent>,
    watcher: tokio::task::JoinHandle<()>,
}

/// The torrents being seeded, by info hash.
pub struct SeedSet<'a> {
    node: &'a PeerNode,
    /// How each torrent's data is checked before it is served.
    trust: seed::Trust,
    /// How often each torrent's data is verified again while it is served.
    reverify: Option<std::time::Duration>,
    seeding: HashMap<InfoHash, Seeding>,
    failed_tx: mpsc::UnboundedSender<(InfoHash, String)>,
    failed: mpsc::UnboundedReceiver<(InfoHash, String)>,
}

impl<'a> SeedSet<'a> {
    /// An empty set serving through `node` (its port, tracker and identity), checking each
    /// torrent's data as `trust` says.
    pub fn new(node: &'a PeerNode, trust: seed::Trust) -> Self {
        // Unbounded but never long: each torrent sends at most one failure.
        let (failed_tx, failed) = mpsc::unbounded_channel();
        SeedSet {
            node,
            trust,
            reverify: None,
            seeding: HashMap::new(),
            failed_tx,
            failed,
        }
    }

    /// Verifies each torrent's data again every `every` while it is served
    /// ([`crate::peer::session::Torrent::reverify_every`]).
    pub fn reverify_every(mut self, every: Option<std::time::Duration>) -> Self {
        self.reverify = every;
        self
    }

    /// Torrents being seeded now.
    pub fn len(&self) -> usize {
        self.seeding.len()
    }

    /// Nothing left to serve: a list-mode seeder then ends.
    pub fn is_empty(&self) -> bool {
        self.seeding.is_empty()
    }

    /// Starts seeding `metainfo` from `content` (verified first); already seeded is no change.
    pub async fn start(&mut self, metainfo: &Metainfo, content: &Path) -> SeedEvent {
        let name = metainfo.info.name.clone();
        let info_hash = metainfo.info_hash;
        if self.seeding.contains_key(&info_hash) {
            return SeedEvent::Started { name, info_hash };
        }
        let torrent = match seed::start(self.node, metainfo, content, None, self.trust).await {
            Ok(torrent) => torrent,
            Err(e) => {
                return SeedEvent::NotStarted {
                    what: name,
                    error: e.to_string(),
                };
            }
        };
        if let Some(every) = self.reverify {
            torrent.reverify_every(every, OnDamage::StopServing);
        }
        let mut progress = torrent.subscribe();
        let failed_tx = self.failed_tx.clone();
        let watcher = tokio::spawn(async move {
            while progress.changed().await.is_ok() {
                let error = progress.borrow_and_update().error.clone();
                if let Some(error) = error {
                    let _ = failed_tx.send((info_hash, error));
                    return;
                }
            }
        });
        self.seeding.insert(
            info_hash,
            Seeding {
                name: name.clone(),
                torrent,
                watcher,
            },
        );
        SeedEvent::Started { name, info_hash }
    }

    /// Stops one torrent: no new connections, then its session (with its `stopped` announce).
    pub async fn stop(&mut self, info_hash: InfoHash, why: &str) -> Option<SeedEvent> {
        let seeding = self.seeding.remove(&info_hash)?;
        self.node.registry.remove(&info_hash);
        seeding.watcher.abort();
        seeding.torrent.stop_and_wait().await;
        Some(SeedEvent::Stopped {
            name: seeding.name,
            info_hash,
            why: why.to_owned(),
        })
    }

    /// Stops every torrent at once (each sends its `stopped` announce at the same time).
    pub async fn stop_all(&mut self) {
        for seeding in self.seeding.values() {
            seeding.torrent.stop();
        }
        let hashes: Vec<InfoHash> = self.seeding.keys().copied().collect();
        for info_hash in hashes {
            self.stop(info_hash, "shutting down").await;
        }
    }

    /// Waits for the next torrent whose session fails, stops it and reports it. Pending
    /// forever while none fails.
    pub async fn next_failure(&mut self) -> SeedEvent {
        loop {
            // Cannot end: `self` holds a sender.
            let Some((info_hash, error)) = self.failed.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            if let Some(event) = self.stop(info_hash, &error).await {
                return event;
            }
        }
    }

    /// Makes the set what `dir` holds: every `*.torrent` in it is seeded from `data_dir/NAME`,
    /// and a torrent whose file is gone is stopped. Files that cannot be read or parsed are
    /// reported and skipped; a directory that cannot be read changes nothing.
    pub async fn sync_with_dir(&mut self, dir: &Path, data_dir: &Path) -> Vec<SeedEvent> {
        let mut events = Vec::new();
        let files = match torrent_files(dir) {
            Ok(files) => files,
            Err(e) => {
                events.push(SeedEvent::NotStarted {
                    what: dir.display().to_string(),
                    error: format!("cannot read the directory: {e}"),
                });
                return events;
            }
        };
        let mut wanted: HashMap<InfoHash, (Metainfo, PathBuf)> = HashMap::new();
        for file in files {
            // Bounded: a huge file dropped in the directory is refused, not read whole.
            match crate::metainfo::file::read(&file) {
                Ok(metainfo) => {
                    wanted.insert(metainfo.info_hash, (metainfo, file));
                }
                Err(e) => events.push(SeedEvent::NotStarted {
                    what: file.display().to_string(),
                    error: match e {
                        TorrentFileError::Open { error, .. }
                        | TorrentFileError::Read { error, .. } => error.to_string(),
                        TorrentFileError::TooLarge { .. } => {
                            format!("larger than {MAX_TORRENT_FILE} bytes: not a torrent")
                        }
                        TorrentFileError::Invalid { error, .. } => {
                            format!("not a valid torrent: {error}")
                        }
                    },
                }),
            }
        }
        let gone: Vec<InfoHash> = self
            .seeding
            .keys()
            .filter(|h| !wanted.contains_key(h))
            .copied()
            .collect();
        for info_hash in gone {
            events.extend(self.stop(info_hash, "its torrent file is gone").await);
        }
        let mut new: Vec<(Metainfo, PathBuf)> = wanted
            .into_values()
            .filter(|(m, _)| !self.seeding.contains_key(&m.info_hash))
            .collect();
        new.sort_by(|a, b| a.1.cmp(&b.1));
        for (metainfo, _) in new {
            let content = data_dir.join(&metainfo.info.name);
            events.push(self.start(&metainfo, &content).await);
        }
        events
    }
}

/// The `*.torrent` files directly in `dir`, sorted.
fn torrent_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "torrent") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
