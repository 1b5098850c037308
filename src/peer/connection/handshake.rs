//! Opening a connection (docs/protocol.md section 7): our handshake out, the peer's in, within
//! [`ConnectionConfig::handshake_timeout`], and checked against the torrent and our own peer
//! id. The result is a [`Handshaken`], which becomes a [`super::Connection`].

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{ConnectionConfig, ConnectionError, Handshaken, io_error};
use crate::peer::wire::{HANDSHAKE_LEN, Handshake};
use crate::types::InfoHash;

/// Opens our side: sends our handshake for `info_hash`, reads the peer's and checks it.
///
/// # Errors
/// A timeout, an I/O error, a malformed handshake, another info hash, or our own peer id.
pub async fn connect(
    mut stream: TcpStream,
    info_hash: InfoHash,
    config: &ConnectionConfig,
) -> Result<Handshaken, ConnectionError> {
    let exchange = async {
        let ours = Handshake::new(info_hash, config.peer_id);
        stream
            .write_all(&ours.encode())
            .await
            .map_err(io_error("writing the handshake"))?;
        let remote = read_handshake(&mut stream).await?;
        if remote.info_hash != info_hash {
            return Err(ConnectionError::InfoHashMismatch {
                expected: info_hash,
                received: remote.info_hash,
            });
        }
        check_peer_id(&remote, config)?;
        Ok(remote)
    };
    let remote = tokio::time::timeout(config.handshake_timeout, exchange)
        .await
        .map_err(|_| ConnectionError::Timeout("waiting for the handshake"))??;
    Ok(Handshaken {
        peer_addr: stream.peer_addr().ok(),
        stream,
        remote,
    })
}

/// Answers an incoming connection: reads the peer's handshake, checks that we serve its
/// info hash (`serves`), then sends ours.
///
/// # Errors
/// A timeout, an I/O error, a malformed handshake, an info hash we do not serve, or our own
/// peer id.
pub async fn accept(
    mut stream: TcpStream,
    serves: impl FnOnce(&InfoHash) -> bool,
    config: &ConnectionConfig,
) -> Result<Handshaken, ConnectionError> {
    let exchange = async {
        let remote = read_handshake(&mut stream).await?;
        if !serves(&remote.info_hash) {
            return Err(ConnectionError::UnknownInfoHash(remote.info_hash));
        }
        check_peer_id(&remote, config)?;
        let ours = Handshake::new(remote.info_hash, config.peer_id);
        stream
            .write_all(&ours.encode())
            .await
            .map_err(io_error("writing the handshake"))?;
        Ok(remote)
    };
    let remote = tokio::time::timeout(config.handshake_timeout, exchange)
        .await
        .map_err(|_| ConnectionError::Timeout("waiting for the handshake"))??;
    Ok(Handshaken {
        peer_addr: stream.peer_addr().ok(),
        stream,
        remote,
    })
}

fn check_peer_id(remote: &Handshake, config: &ConnectionConfig) -> Result<(), ConnectionError> {
    if remote.peer_id == config.peer_id {
        return Err(ConnectionError::OwnPeerId);
    }
    Ok(())
}

/// Reads exactly the 68 handshake bytes (nothing of what follows), checking them as they
/// arrive so garbage is refused at once.
async fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, ConnectionError> {
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(io_error("reading the handshake"))?;
        if n == 0 {
            return Err(ConnectionError::ClosedByPeer);
        }
        filled += n;
        if let Some((handshake, _)) =
            Handshake::decode(&buf[..filled]).map_err(ConnectionError::Handshake)?
        {
            return Ok(handshake);
        }
    }
}
