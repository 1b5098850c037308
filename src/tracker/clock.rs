//! Wall-clock time that follows tokio's clock.
//!
//! Tokens, `ts` windows, pending keys and the audit log need Unix time; tests need to move it
//! with `tokio::time::pause`/`advance`. So Unix time is read once at start and then advanced by
//! tokio's monotonic clock, which also makes it immune to the system clock jumping back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Unix time derived from tokio's clock. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    unix_at_start: Duration,
    start: Instant,
}

impl Clock {
    /// Must be called inside a tokio runtime (it reads tokio's clock).
    pub fn start() -> Self {
        Clock {
            unix_at_start: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
            start: Instant::now(),
        }
    }

    fn unix(&self) -> Duration {
        self.unix_at_start + self.start.elapsed()
    }

    /// Seconds since 1970.
    pub fn unix_secs(&self) -> u64 {
        self.unix().as_secs()
    }

    /// Milliseconds since 1970.
    pub fn unix_ms(&self) -> u64 {
        u64::try_from(self.unix().as_millis()).unwrap_or(u64::MAX)
    }

    /// Time since the tracker started.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    /// The monotonic instant the swarm state uses.
    pub fn instant(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}
