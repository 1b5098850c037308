//! One peer connection over TCP: the handshake, then a loop that reads frames, hands them to
//! the owner and writes what the owner asks for (docs/protocol.md section 7).
//!
//! The connection knows the wire, not the download: it checks every message against the
//! torrent's [`PeerGeometry`], answers keep-alives and BEP 6 rejects itself, and reports the rest
//! as [`Event`]s to a [`Handler`]; the owner (a session: picker, storage, choking) answers with
//! [`Command`]s, either at once through the handler's [`Outbox`] or later through a
//! [`ConnectionHandle`].
//!
//! # Bounds
//! - The handshake must complete within [`ConnectionConfig::handshake_timeout`]; garbage is
//!   refused at its first wrong byte.
//! - The read buffer has a fixed size, the largest frame the torrent allows
//!   ([`wire::WireLimits::max_frame_len`]), and never grows with remote input.
//! - A peer silent for [`ConnectionConfig::read_timeout`] is dropped; we send a keep-alive when
//!   we have written nothing for [`ConnectionConfig::keep_alive_interval`].
//! - Outgoing data waits in a queue of at most [`SEND_HIGH_WATER`] bytes, beyond which we stop
//!   reading and stop taking commands (so a peer that does not read cannot make us buffer),
//!   and a write that makes no progress for [`ConnectionConfig::write_timeout`] closes.
//! - At most [`ConnectionConfig::max_incoming_requests`] requests of the peer are outstanding
//!   (our BEP 10 `reqq`); beyond that, and while we choke it, a request is rejected (BEP 6) or
//!   dropped (without the fast extension).
//!
//! # Tasks
//! [`Connection::run`] is one future that owns the socket: reading, writing, commands and
//! timers are branches of one `select!`, so there is no lock and no second task.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::peer::bitfield::Bitfield;
use crate::peer::geometry::PeerGeometry;
use crate::peer::wire::{
    self, BlockRequest, Extended, ExtendedHandshake, Handshake, Message, WireError, WireLimits,
};
use crate::types::{InfoHash, PeerId};

mod handshake;
mod io_buffers;
pub use handshake::{accept, connect};
use io_buffers::{ReadBuf, SendQueue, write_some};

/// Most bytes queued for sending before the connection stops reading and taking commands.
pub const SEND_HIGH_WATER: usize = 256 * 1024;
/// Smallest read buffer: room for four full piece messages, so one read can take several
/// and the undecoded tail rarely has to move to the front (see `ReadBuf::compact`).
const READ_BUF_MIN: usize = 4 * (wire::MAX_BLOCK_LEN as usize + wire::PIECE_HEADER_LEN);
/// Most slices handed to one vectored write.
const MAX_WRITE_SLICES: usize = 16;

/// Settings of a connection. Durations follow common clients (BEP 3 suggests a keep-alive
/// every two minutes; peers drop a connection silent for longer).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Our peer id; a remote handshake with the same id is ourselves and is refused.
    pub peer_id: PeerId,
    pub handshake_timeout: Duration,
    /// A peer that sends nothing (not even a keep-alive) for this long is dropped.
    pub read_timeout: Duration,
    /// We send a keep-alive after writing nothing for this long.
    pub keep_alive_interval: Duration,
    /// Queued data that cannot be written for this long closes the connection.
    pub write_timeout: Duration,
    /// How many of the peer's requests may be outstanding; sent as `reqq`.
    pub max_incoming_requests: u32,
    /// Capacity of the [`ConnectionHandle`] command queue.
    pub command_queue_len: usize,
    /// Our listening port, sent as `p` in the extension handshake.
    pub listen_port: Option<u16>,
}

impl ConnectionConfig {
    /// Defaults: handshake 10 s, read timeout 120 s, keep-alive 90 s, write timeout 60 s,
    /// 250 incoming requests, 256 queued commands.
    pub fn new(peer_id: PeerId) -> Self {
        ConnectionConfig {
            peer_id,
            handshake_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(120),
            keep_alive_interval: Duration::from_secs(90),
            write_timeout: Duration::from_secs(60),
            max_incoming_requests: 250,
            command_queue_len: 256,
            listen_port: None,
        }
    }
}

/// What the owner's handler may return to close the connection (for example "the peer sent
/// a piece that failed its hash check": banned).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Why a connection ended or could not start. Each names the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("error {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("peer closed the connection")]
    ClosedByPeer,
    #[error("invalid handshake: {0}")]
    Handshake(#[source] WireError),
    #[error("peer asked for torrent {0}, which we do not serve")]
    UnknownInfoHash(InfoHash),
    #[error("peer answered for torrent {received}, we asked for {expected}")]
    InfoHashMismatch {
        expected: InfoHash,
        received: InfoHash,
    },
    #[error("connected to ourselves (our own peer id)")]
    OwnPeerId,
    #[error("invalid message from peer: {0}")]
    Wire(#[from] WireError),
    #[error("protocol violation by peer: {0}")]
    Protocol(&'static str),
    #[error("closed by the session: {0}")]
    Handler(#[source] HandlerError),
}

impl ConnectionError {
    /// The peer broke the protocol (a malformed handshake or message, a message that does not
    /// fit the torrent, a violation of BEP 6 or BEP 10), as opposed to timing out, hanging
    /// up or a network error: docs/protocol.md section 7 counts these against the peer.
    pub fn blames_peer(&self) -> bool {
        matches!(
            self,
            ConnectionError::Handshake(_)
                | ConnectionError::Wire(_)
                | ConnectionError::Protocol(_)
                | ConnectionError::OwnPeerId
        )
    }
}

fn io_error(op: &'static str) -> impl FnOnce(io::Error) -> ConnectionError {
    move |source| ConnectionError::Io { op, source }
}

/// A TCP connection whose handshake completed: who the peer is and what it supports.
#[derive(Debug)]
pub struct Handshaken {
    stream: TcpStream,
    remote: Handshake,
    peer_addr: Option<SocketAddr>,
}

impl Handshaken {
    pub fn remote(&self) -> &Handshake {
        &self.remote
    }

    pub fn peer_id(&self) -> PeerId {
        self.remote.peer_id
    }

    pub fn info_hash(&self) -> InfoHash {
        self.remote.info_hash
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Both sides support BEP 6 (we always do).
    pub fn fast(&self) -> bool {
        self.remote.reserved.fast()
    }

    /// Both sides support BEP 10 (we always do).
    pub fn extended(&self) -> bool {
        self.remote.reserved.extended()
    }

    /// The connection loop for a torrent of `geometry`, of which we have the pieces in
    /// `have` (sent as our bitfield). Returns the connection, to be run, and the handle to
    /// command it.
    pub fn into_connection<H: Handler>(
        self,
        geometry: PeerGeometry,
        have: &Bitfield,
        handler: H,
        config: &ConnectionConfig,
    ) -> (Connection<H>, ConnectionHandle) {
        let limits = geometry.limits();
        let (tx, rx) = mpsc::channel(config.command_queue_len.max(1));
        let now = Instant::now();
        let mut core = Core {
            handler,
            outbox: Outbox::default(),
            geometry,
            limits,
            config: config.clone(),
            fast: self.fast(),
            extended: self.extended(),
            am_choking: true,
            am_interested: false,
            incoming_requests: VecDeque::new(),
            out: SendQueue::default(),
            last_read: now,
            last_write: now,
            write_stalled_since: now,
            closing: false,
        };
        core.queue_greeting(have);
        let connection = Connection {
            stream: self.stream,
            read_buf: ReadBuf::new(limits.max_frame_len().max(READ_BUF_MIN)),
            core,
            commands: rx,
        };
        (connection, ConnectionHandle { tx })
    }
}

/// What a peer told us, checked against the torrent. Borrowed data is valid during the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// The peer's extension handshake (BEP 10); its `reqq` bounds how many requests to send it.
    ExtendedHandshake(ExtendedHandshake<'a>),
    /// The pieces the peer has: from its bitfield, or BEP 6 have-all / have-none.
    Bitfield(Bitfield),
    Have(u32),
    /// The peer choked us. Without the fast extension this discards all our requests to it;
    /// with it, the peer rejects each one explicitly ([`Event::Rejected`]).
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    /// The peer wants a block (inside the torrent, within `reqq`, while we do not choke it).
    /// Answer with [`Command::Piece`] or [`Command::Reject`].
    Request(BlockRequest),
    /// The peer withdrew an outstanding request; a later [`Command::Piece`] for it is dropped.
    Cancel(BlockRequest),
    /// A block arrived (inside the torrent; whether we asked for it is the picker's call).
    Block {
        index: u32,
        begin: u32,
        data: &'a [u8],
    },
    /// BEP 6: the peer will not send a block we requested.
    Rejected(BlockRequest),
    /// BEP 6 suggest-piece.
    Suggest(u32),
    /// BEP 6: we may request this piece even while choked.
    AllowedFast(u32),
    /// A BEP 10 message other than the handshake.
    Extended {
        id: u8,
        payload: &'a [u8],
    },
}

/// What the owner asks a connection to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Choke the peer; with the fast extension its outstanding requests are rejected.
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Request(BlockRequest),
    Cancel(BlockRequest),
    /// The answer to an [`Event::Request`]: the block (ciphertext). `Bytes` lets one encrypted
    /// block go to many peers without a copy. Dropped if the request is no longer
    /// outstanding (cancelled, or we choked the peer) or the length does not match.
    Piece {
        index: u32,
        begin: u32,
        data: Bytes,
    },
    /// Refuse an [`Event::Request`] (BEP 6 reject, or nothing without the fast extension).
    Reject(BlockRequest),
    Suggest(u32),
    AllowedFast(u32),
    /// End the connection ([`Connection::run`] returns `Ok`).
    Close,
}

/// Commands a handler queues while it handles an event; sent once it returns.
#[derive(Debug, Default)]
pub struct Outbox {
    commands: Vec<Command>,
}

impl Outbox {
    pub fn send(&mut self, command: Command) {
        self.commands.push(command);
    }
}

/// The owner's side of a connection: receives every [`Event`], synchronously, on the
/// connection's task. It must not block (hand disk reads and hashing to other tasks, then
/// answer through the [`ConnectionHandle`]).
pub trait Handler: Send {
    /// # Errors
    /// Any error closes the connection with [`ConnectionError::Handler`].
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError>;
}

/// Sends [`Command`]s to a running connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    tx: mpsc::Sender<Command>,
}

impl ConnectionHandle {
    /// Queues a command, waiting while the queue is full.
    ///
    /// # Errors
    /// Gives the command back when the connection has ended.
    pub async fn send(&self, command: Command) -> Result<(), mpsc::error::SendError<Command>> {
        self.tx.send(command).await
    }

    /// Queues a command if there is room.
    ///
    /// # Errors
    /// The queue is full, or the connection has ended.
    pub fn try_send(&self, command: Command) -> Result<(), mpsc::error::TrySendError<Command>> {
        self.tx.try_send(command)
    }

    /// The connection has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A running peer connection; drive it with [`Connection::run`].
pub struct Connection<H> {
    stream: TcpStream,
    read_buf: ReadBuf,
    core: Core<H>,
    commands: mpsc::Receiver<Command>,
}

/// Everything but the socket and the read buffer, so a decoded message (which borrows the
/// read buffer) can be handled with `&mut Core`.
struct Core<H> {
    handler: H,
    outbox: Outbox,
    geometry: PeerGeometry,
    limits: WireLimits,
    config: ConnectionConfig,
    /// Both sides support BEP 6.
    fast: bool,
    /// Both sides support BEP 10.
    extended: bool,
    am_choking: bool,
    am_interested: bool,
    /// Requests of the peer handed to the handler and not answered yet; at most
    /// `config.max_incoming_requests`.
    incoming_requests: VecDeque<BlockRequest>,
    out: SendQueue,
    last_read: Instant,
    last_write: Instant,
    /// When the send queue last became non-empty or made progress.
    write_stalled_since: Instant,
    /// A `Command::Close` was seen.
    closing: bool,
}

impl<H: Handler> Connection<H> {
    /// Runs the connection until the peer leaves, an error, a [`Command::Close`], or
    /// `shutdown` is cancelled. Dropping every [`ConnectionHandle`] does not end it.
    ///
    /// # Errors
    /// Why the connection ended, when it was not asked to.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConnectionError> {
        let Connection {
            mut stream,
            mut read_buf,
            mut core,
            mut commands,
        } = self;
        let (mut reader, mut writer) = stream.split();
        let mut commands_open = true;
        loop {
            if core.closing {
                return Ok(());
            }
            let now = Instant::now();
            let read_deadline = core.last_read + core.config.read_timeout;
            let deadline = if core.out.is_empty() {
                read_deadline.min(core.last_write + core.config.keep_alive_interval)
            } else {
                read_deadline.min(core.write_stalled_since + core.config.write_timeout)
            };
            let room = core.out.len < SEND_HIGH_WATER;
            if !core.out.is_empty() {
                core.out.flush_staging();
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                written = write_some(&mut writer, &core.out.queue), if !core.out.is_empty() => {
                    let n = written.map_err(io_error("writing to the peer"))?;
                    if n == 0 {
                        return Err(ConnectionError::Io {
                            op: "writing to the peer",
                            source: io::ErrorKind::WriteZero.into(),
                        });
                    }
                    core.out.advance(n);
                    core.last_write = Instant::now();
                    core.write_stalled_since = core.last_write;
                }
                read = reader.read(read_buf.spare()), if room => {
                    let n = read.map_err(io_error("reading from the peer"))?;
                    if n == 0 {
                        return Err(ConnectionError::ClosedByPeer);
                    }
                    read_buf.end += n;
                    core.last_read = Instant::now();
                    core.process(&mut read_buf)?;
                }
                command = commands.recv(), if room && commands_open => match command {
                    Some(command) => core.apply(command)?,
                    // Every handle is gone: the handler's outbox still works.
                    None => commands_open = false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now().max(now);
                    if now >= read_deadline {
                        return Err(ConnectionError::Timeout("reading: the peer sent nothing"));
                    }
                    if core.out.is_empty() {
                        if now >= core.last_write + core.config.keep_alive_interval {
                            core.queue(&Message::KeepAlive);
                        }
                    } else if now >= core.write_stalled_since + core.config.write_timeout {
                        return Err(ConnectionError::Timeout("writing: the peer reads nothing"));
                    }
                }
            }
        }
    }
}

impl<H: Handler> Core<H> {
    fn queue(&mut self, message: &Message<'_>) {
        if self.out.is_empty() {
            self.write_stalled_since = Instant::now();
        }
        self.out.push_message(message);
    }

    /// Our bitfield and extension handshake, first thing after the handshake.
    fn queue_greeting(&mut self, have: &Bitfield) {
        if self.fast && have.is_full() {
            self.queue(&Message::HaveAll);
        } else if self.fast && have.is_clear() {
            self.queue(&Message::HaveNone);
        } else if !have.is_clear() && have.len() == self.geometry.piece_count() {
            self.queue(&Message::Bitfield(have.as_bytes()));
        }
        if self.extended {
            let ours = ExtendedHandshake::ivcsd(
                self.config.max_incoming_requests,
                self.config.listen_port,
            );
            self.queue(&Message::Extended(Extended::Handshake(ours)));
        }
    }

    /// Decodes and handles every whole frame in the buffer.
    fn process(&mut self, read_buf: &mut ReadBuf) -> Result<(), ConnectionError> {
        while let Some((message, used)) = wire::decode_with(read_buf.data(), &self.limits)? {
            self.on_message(message)?;
            read_buf.consume(used);
            if self.closing {
                return Ok(());
            }
        }
        read_buf.compact();
        if read_buf.spare().is_empty() {
            // Cannot happen: the buffer holds a whole frame of the largest allowed size, and
            // decoding refused any longer one. Refuse rather than read 0 bytes forever.
            return Err(ConnectionError::Protocol(
                "frame larger than the read buffer",
            ));
        }
        Ok(())
    }

    fn require_fast(&self, what: &'static str) -> Result<(), ConnectionError> {
        if self.fast {
            Ok(())
        } else {
            Err(ConnectionError::Protocol(what))
        }
    }

    fn on_message(&mut self, message: Message<'_>) -> Result<(), ConnectionError> {
        message.validate(self.geometry.metainfo())?;
        let event = match message {
            Message::KeepAlive | Message::Port(_) | Message::Unknown { .. } => return Ok(()),
            Message::Choke => Event::Choke,
            Message::Unchoke => Event::Unchoke,
            Message::Interested => Event::Interested,
            Message::NotInterested => Event::NotInterested,
            Message::Have { index } => Event::Have(index),
            // BEP 3 sends a bitfield only as the first message, but aria2 sends a bitfield (or
            // have-all) later in place of a run of haves; a later one replaces the peer's set.
            Message::Bitfield(bits) => Event::Bitfield(Bitfield::from_wire(bits, &self.geometry)?),
            Message::HaveAll | Message::HaveNone => {
                self.require_fast("have-all or have-none without the fast extension")?;
                let pieces = self.geometry.piece_count();
                Event::Bitfield(if matches!(message, Message::HaveAll) {
                    Bitfield::full(pieces)
                } else {
                    Bitfield::new(pieces)
                })
            }
            Message::Request(request) => {
                let refuse = self.am_choking
                    || self.incoming_requests.len() >= self.config.max_incoming_requests as usize;
                if refuse {
                    if self.fast {
                        self.queue(&Message::RejectRequest(request));
                    }
                    return Ok(());
                }
                if self.incoming_requests.contains(&request) {
                    return Ok(());
                }
                self.incoming_requests.push_back(request);
                Event::Request(request)
            }
            Message::Cancel(request) => {
                let Some(at) = self.incoming_requests.iter().position(|r| *r == request) else {
                    return Ok(());
                };
                self.incoming_requests.remove(at);
                // BEP 6: with the fast extension every request gets a piece or a reject.
                if self.fast {
                    self.queue(&Message::RejectRequest(request));
                }
                Event::Cancel(request)
            }
            Message::Piece {
                index,
                begin,
                block,
            } => Event::Block {
                index,
                begin,
                data: block,
            },
            Message::SuggestPiece { index } => {
                self.require_fast("suggest-piece without the fast extension")?;
                Event::Suggest(index)
            }
            Message::AllowedFast { index } => {
                self.require_fast("allowed-fast without the fast extension")?;
                Event::AllowedFast(index)
            }
            Message::RejectRequest(request) => {
                self.require_fast("reject-request without the fast extension")?;
                Event::Rejected(request)
            }
            Message::Extended(extended) => {
                if !self.extended {
                    return Err(ConnectionError::Protocol(
                        "extended message without the extension protocol",
                    ));
                }
                match extended {
                    Extended::Handshake(h) => Event::ExtendedHandshake(h),
                    Extended::Other { id, payload } => Event::Extended { id, payload },
                }
            }
        };
        self.handler
            .on_event(event, &mut self.outbox)
            .map_err(ConnectionError::Handler)?;
        let mut commands = std::mem::take(&mut self.outbox.commands);
        let mut result = Ok(());
        for command in commands.drain(..) {
            if result.is_ok() {
                result = self.apply(command);
            }
        }
        self.outbox.commands = commands;
        result
    }

    fn take_incoming(&mut self, request: &BlockRequest) -> bool {
        match self.incoming_requests.iter().position(|r| r == request) {
            Some(at) => {
                self.incoming_requests.remove(at);
                true
            }
            None => false,
        }
    }

    fn apply(&mut self, command: Command) -> Result<(), ConnectionError> {
        match command {
            Command::Choke => {
                if !self.am_choking {
                    self.am_choking = true;
                    self.queue(&Message::Choke);
                    let pending = std::mem::take(&mut self.incoming_requests);
                    if self.fast {
                        for request in pending {
                            self.queue(&Message::RejectRequest(request));
                        }
                    }
                }
            }
            Command::Unchoke => {
                if self.am_choking {
                    self.am_choking = false;
                    self.queue(&Message::Unchoke);
                }
            }
            Command::Interested => {
                if !self.am_interested {
                    self.am_interested = true;
                    self.queue(&Message::Interested);
                }
            }
            Command::NotInterested => {
                if self.am_interested {
                    self.am_interested = false;
                    self.queue(&Message::NotInterested);
                }
            }
            Command::Have(index) => self.queue(&Message::Have { index }),
            Command::Request(request) => self.queue(&Message::Request(request)),
            Command::Cancel(request) => self.queue(&Message::Cancel(request)),
            Command::Piece { index, begin, data } => {
                let request = BlockRequest {
                    index,
                    begin,
                    length: u32::try_from(data.len()).unwrap_or(u32::MAX),
                };
                if self.take_incoming(&request) {
                    if self.out.is_empty() {
                        self.write_stalled_since = Instant::now();
                    }
                    self.out.push_block(index, begin, data);
                } else {
                    tracing::debug!(?request, "dropping a block the peer no longer wants");
                }
            }
            Command::Reject(request) => {
                if self.take_incoming(&request) && self.fast {
                    self.queue(&Message::RejectRequest(request));
                }
            }
            Command::Suggest(index) => {
                if self.fast {
                    self.queue(&Message::SuggestPiece { index });
                }
            }
            Command::AllowedFast(index) => {
                if self.fast {
                    self.queue(&Message::AllowedFast { index });
                }
            }
            Command::Close => self.closing = true,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Frames arriving in reads of any size decode to the same messages, and the buffer
        /// always has room for the next read.
        #[test]
        fn read_buffer_never_fills(
            blocks in proptest::collection::vec(1usize..=wire::MAX_BLOCK_LEN as usize, 1..20),
            reads in proptest::collection::vec(1usize..70_000, 1..200),
        ) {
            let limits = WireLimits::default();
            let mut stream = Vec::new();
            let data = vec![7u8; wire::MAX_BLOCK_LEN as usize];
            for (i, len) in blocks.iter().enumerate() {
                Message::Have { index: i as u32 }.encode_into(&mut stream);
                Message::Piece { index: i as u32, begin: 0, block: &data[..*len] }.encode_into(&mut stream);
            }
            let mut buf = ReadBuf::new(limits.max_frame_len().max(READ_BUF_MIN));
            let mut pos = 0;
            let mut decoded = Vec::new();
            let mut reads = reads.into_iter().cycle();
            while pos < stream.len() {
                let spare = buf.spare();
                prop_assert!(!spare.is_empty());
                let n = reads.next().unwrap().min(spare.len()).min(stream.len() - pos);
                spare[..n].copy_from_slice(&stream[pos..pos + n]);
                buf.end += n;
                pos += n;
                while let Some((message, used)) = wire::decode_with(buf.data(), &limits).unwrap() {
                    decoded.extend_from_slice(&message.encode());
                    buf.consume(used);
                }
                buf.compact();
            }
            prop_assert_eq!(buf.data().len(), 0);
            prop_assert_eq!(decoded, stream);
        }
    }
}
