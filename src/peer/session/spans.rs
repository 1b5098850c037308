//! The tracing spans of a session: `torrent` (the info hash in short hex) around every task
//! of the session, and `peer` (the peer's address) inside it around each connection and dial,
//! so that a log line of a seeder of many torrents, or of a relay, says which torrent and
//! which peer it is about. The spans are at the `error` level so that they stay on under any
//! filter: at `info`, `--quiet` (warnings only) would drop them and warnings would lose their
//! torrent and peer.

use std::net::SocketAddr;

use tracing::Span;

use crate::types::InfoHash;

/// Hex digits of the info hash that name a torrent in log lines: enough to tell apart the
/// torrents of one process, short enough to read.
const SHORT_HASH_HEX_DIGITS: usize = 12;

/// The `torrent` span of the session of `info_hash`.
pub(super) fn torrent_span(info_hash: InfoHash) -> Span {
    let hex = info_hash.to_hex();
    let short = &hex[..SHORT_HASH_HEX_DIGITS.min(hex.len())];
    tracing::error_span!("torrent", info_hash = %short)
}

/// The `peer` span of the connection to (or the dial of) the peer at `addr`, inside
/// `torrent`. An address that is not known is left out.
pub(super) fn peer_span(torrent: &Span, addr: Option<SocketAddr>) -> Span {
    let span = tracing::error_span!(parent: torrent, "peer", addr = tracing::field::Empty);
    if let Some(addr) = addr {
        span.record("addr", tracing::field::display(addr));
    }
    span
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;

    /// Log output, shared with the subscriber that writes it.
    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Output {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_warning_names_the_torrent_and_the_peer() {
        // As `--quiet` logs: warnings and errors only. The spans must survive that filter.
        let output = Output::default();
        let writer = output.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_target(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let torrent = torrent_span(InfoHash([0xab; 20]));
            let peer = peer_span(&torrent, Some(SocketAddr::from(([10, 1, 2, 3], 6881))));
            peer.in_scope(|| tracing::warn!("piece failed verification"));
            torrent.in_scope(|| tracing::warn!("announce failed"));
            peer_span(&torrent, None).in_scope(|| tracing::warn!("connection ended"));
        });
        let text = String::from_utf8(output.0.lock().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].contains("torrent{info_hash=abababababab}:peer{addr=10.1.2.3:6881}:"),
            "{text}"
        );
        assert!(
            lines[1].contains("torrent{info_hash=abababababab}:"),
            "{text}"
        );
        assert!(!lines[1].contains(":peer"), "{text}");
        assert!(
            lines[2].contains("torrent{info_hash=abababababab}:peer:"),
            "{text}"
        );
    }
}
