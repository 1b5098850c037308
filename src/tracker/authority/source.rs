//! [`AuthoritySource`]: the user table in force, swapped whole when authority.xml changes and
//! the new version validates; a broken file is logged and the last good table stays in force
//! (docs/protocol.md 3.1). The watcher polls the file's size and modification time and
//! re-reads it off the async reactor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::fsutil::FileStamp;

use super::{AuthorityFileError, UserTable, load_file};

/// The table in force, swapped whole when authority.xml changes and validates.
#[derive(Debug)]
pub struct AuthoritySource {
    path: PathBuf,
    current: ArcSwap<UserTable>,
    /// The stamp of the file last read, good or bad, so a broken file is reported once.
    last_seen: Mutex<Option<FileStamp>>,
}

impl AuthoritySource {
    /// Loads the file; at start a broken file is an error (there is nothing to keep in force).
    ///
    /// # Errors
    /// As [`load_file`].
    pub fn load(path: impl Into<PathBuf>) -> Result<AuthoritySource, AuthorityFileError> {
        let path = path.into();
        let seen = FileStamp::of_path(&path);
        let table = load_file(&path)?;
        warn_legacy(&table, &path);
        Ok(AuthoritySource {
            path,
            current: ArcSwap::from_pointee(table),
            last_seen: Mutex::new(seen),
        })
    }

    /// A source with a fixed table, for tests and embedded use.
    pub fn from_table(path: impl Into<PathBuf>, table: UserTable) -> AuthoritySource {
        AuthoritySource {
            path: path.into(),
            current: ArcSwap::from_pointee(table),
            last_seen: Mutex::new(None),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table in force (cheap; no lock).
    pub fn current(&self) -> Arc<UserTable> {
        self.current.load_full()
    }

    /// Re-reads the file. On success the new table replaces the old one and `Ok(true)` says
    /// whether anything changed; on error the last good table stays in force.
    ///
    /// # Errors
    /// As [`load_file`]; the error is also logged.
    pub fn reload(&self) -> Result<bool, AuthorityFileError> {
        let seen = FileStamp::of_path(&self.path);
        *self.last_seen.lock() = seen;
        match load_file(&self.path) {
            Ok(table) => {
                let changed = *self.current.load_full() != table;
                if changed {
                    warn_legacy(&table, &self.path);
                    tracing::info!(path = %self.path.display(), users = table.len(), "authority file reloaded");
                    self.current.store(Arc::new(table));
                }
                Ok(changed)
            }
            Err(err) => {
                tracing::error!(error = %err, "authority file rejected; the previous one stays in force");
                Err(err)
            }
        }
    }

    /// Reloads when the file's modification time or size changed since it was last read.
    pub fn reload_if_changed(&self) -> Option<Result<bool, AuthorityFileError>> {
        let now = FileStamp::of_path(&self.path);
        let last = *self.last_seen.lock();
        if now == last {
            return None;
        }
        Some(self.reload())
    }

    /// Polls the file every `poll` until `shutdown`, reloading it when it changes.
    pub fn spawn_watcher(
        self: Arc<Self>,
        poll: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {
                        let source = Arc::clone(&self);
                        // File I/O and parsing stay off the reactor.
                        let _ = tokio::task::spawn_blocking(move || source.reload_if_changed()).await;
                    }
                }
            }
        })
    }
}

fn warn_legacy(table: &UserTable, path: &Path) {
    for user in table.iter().filter(|u| u.password.is_legacy()) {
        tracing::warn!(
            path = %path.display(),
            user = %user.username,
            "unsalted legacy password hash; set a new password with `ivcsd admin user passwd`"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::authority::test_files::{GOOD, peer};

    #[test]
    fn reload_keeps_the_last_good_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authority.xml");
        std::fs::write(&path, peer(GOOD)).unwrap();
        let source = AuthoritySource::load(&path).unwrap();
        assert!(source.current().get("u1").is_some());
        assert!(
            source.reload_if_changed().is_none(),
            "unchanged file is not re-read"
        );

        std::fs::write(&path, "<peerAuthority><peer>").unwrap();
        assert!(source.reload().is_err());
        assert!(
            source.current().get("u1").is_some(),
            "old table stays in force"
        );

        std::fs::write(&path, peer(&GOOD.replace("u1", "u2"))).unwrap();
        assert!(source.reload().unwrap());
        assert!(source.current().get("u1").is_none());
        assert!(source.current().get("u2").is_some());
    }
}
