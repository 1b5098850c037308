//! Peer connections over real 127.0.0.1 sockets: two ivcsd connections transferring a torrent
//! through the picker, and raw sockets playing hostile or silent peers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ivcsd::peer::bitfield::Bitfield;
use ivcsd::peer::connection::{
    Command, ConnectionConfig, ConnectionError, Event, Handler, HandlerError, Outbox, accept,
    connect,
};
use ivcsd::peer::geometry::PeerGeometry;
use ivcsd::peer::peer_id::generate_peer_id;
use ivcsd::peer::picker::{BlockOutcome, Picker};
use ivcsd::peer::wire::{
    self, BlockRequest, CLIENT_VERSION, HANDSHAKE_LEN, Handshake, Message, Reserved, WireError,
};
use ivcsd::types::{InfoHash, PeerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const INFO_HASH: InfoHash = InfoHash([0x11; 20]);

/// 3 pieces of 32 KiB and a last one of 1000 bytes.
fn geometry() -> PeerGeometry {
    PeerGeometry::new(32768, 3 * 32768 + 1000).unwrap()
}

fn content() -> Arc<Vec<u8>> {
    let len = geometry().total_length() as usize;
    Arc::new((0..len).map(|i| (i * 7 % 251) as u8).collect())
}

fn piece_range(index: u32) -> std::ops::Range<usize> {
    let g = geometry();
    let start = index as usize * g.piece_length() as usize;
    start..start + g.piece_len(index).unwrap() as usize
}

/// Serves `content`: unchokes whoever is interested and answers every request.
struct Seeder {
    content: Arc<Vec<u8>>,
}

impl Handler for Seeder {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        match event {
            Event::Interested => out.send(Command::Unchoke),
            Event::Request(r) => {
                let start = piece_range(r.index).start + r.begin as usize;
                let data = Bytes::copy_from_slice(&self.content[start..start + r.length as usize]);
                out.send(Command::Piece {
                    index: r.index,
                    begin: r.begin,
                    data,
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// Downloads through the picker, checks each piece against `expected`, and closes when done.
struct Downloader {
    picker: Picker<u32>,
    pieces: Vec<Vec<u8>>,
    expected: Arc<Vec<u8>>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Downloader {
    fn request_more(&mut self, out: &mut Outbox) {
        for r in self.picker.next_requests(0, 8, std::time::Instant::now()) {
            out.send(Command::Request(r));
        }
    }
}

impl Handler for Downloader {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        self.seen.lock().unwrap().push(format!("{event:?}"));
        match event {
            Event::Bitfield(has) => {
                self.picker.peer_bitfield(0, has);
                if self.picker.is_interesting(0) {
                    out.send(Command::Interested);
                }
            }
            Event::Unchoke => self.request_more(out),
            Event::Block { index, begin, data } => {
                let piece_index = geometry()
                    .metainfo()
                    .piece_index(index)
                    .ok_or("piece index past the end")?;
                match self
                    .picker
                    .block_received(0, piece_index, begin, data.len() as u32)
                {
                    BlockOutcome::Accepted { piece_complete, .. } => {
                        let piece = &mut self.pieces[index as usize];
                        piece[begin as usize..begin as usize + data.len()].copy_from_slice(data);
                        if piece_complete {
                            if piece[..] != self.expected[piece_range(index)] {
                                return Err(format!("piece {index} is corrupt").into());
                            }
                            self.picker.piece_verified(piece_index);
                        }
                    }
                    other => return Err(format!("unexpected block: {other:?}").into()),
                }
                if self.picker.is_complete() {
                    out.send(Command::NotInterested);
                    out.send(Command::Close);
                } else {
                    self.request_more(out);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Records events, does nothing else (a seeder whose disk never answers).
#[derive(Default, Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    unchoke_interested: bool,
}

impl Handler for Recorder {
    fn on_event(&mut self, event: Event<'_>, out: &mut Outbox) -> Result<(), HandlerError> {
        if self.unchoke_interested && event == Event::Interested {
            out.send(Command::Unchoke);
        }
        self.events.lock().unwrap().push(format!("{event:?}"));
        Ok(())
    }
}

#[tokio::test]
async fn two_connections_transfer_a_torrent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let content = content();
    let pieces = geometry().piece_count();

    let seeder_content = content.clone();
    let seeder: JoinHandle<Result<(), ConnectionError>> = tokio::spawn(async move {
        let config = ConnectionConfig::new(generate_peer_id());
        let (stream, _) = listener.accept().await.unwrap();
        let hs = accept(stream, |h| *h == INFO_HASH, &config).await?;
        let seeder = Seeder {
            content: seeder_content,
        };
        let (connection, _handle) =
            hs.into_connection(geometry(), &Bitfield::full(pieces), seeder, &config);
        connection.run(CancellationToken::new()).await
    });

    let mut config = ConnectionConfig::new(generate_peer_id());
    config.listen_port = Some(6881);
    let stream = TcpStream::connect(addr).await.unwrap();
    let hs = connect(stream, INFO_HASH, &config).await.unwrap();
    assert!(hs.fast() && hs.extended());
    assert_eq!(hs.info_hash(), INFO_HASH);
    assert_eq!(&hs.peer_id().0[..3], b"-IV");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut picker = Picker::new(*geometry().metainfo(), Bitfield::new(pieces));
    picker.add_peer(0);
    let downloader = Downloader {
        picker,
        pieces: (0..pieces)
            .map(|i| vec![0; geometry().piece_len(i).unwrap() as usize])
            .collect(),
        expected: content.clone(),
        seen: seen.clone(),
    };
    let (connection, _handle) =
        hs.into_connection(geometry(), &Bitfield::new(pieces), downloader, &config);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        connection.run(CancellationToken::new()),
    )
    .await
    .expect("the transfer finishes");
    assert!(result.is_ok(), "{result:?}");

    let seen = seen.lock().unwrap().clone();
    let handshake = seen
        .iter()
        .find(|e| e.starts_with("ExtendedHandshake"))
        .expect("an extension handshake");
    assert!(handshake.contains("reqq: Some(250)"), "{handshake}");
    assert!(
        handshake.contains(&format!("{:?}", CLIENT_VERSION.as_bytes()))
            || handshake.contains(CLIENT_VERSION),
        "{handshake}"
    );
    assert_eq!(seen.iter().filter(|e| e.starts_with("Block")).count(), 7);
    // We closed; the seeder sees the peer leave.
    let seeder_result = seeder.await.unwrap();
    assert!(
        matches!(seeder_result, Err(ConnectionError::ClosedByPeer)),
        "{seeder_result:?}"
    );
}

/// Connects a raw socket to `addr` and completes the handshake with `reserved`.
async fn raw_peer(addr: std::net::SocketAddr, reserved: Reserved) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut ours = Handshake::new(INFO_HASH, generate_peer_id());
    ours.reserved = reserved;
    stream.write_all(&ours.encode()).await.unwrap();
    let mut theirs = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut theirs).await.unwrap();
    let (theirs, _) = Handshake::decode(&theirs).unwrap().unwrap();
    assert_eq!(theirs.info_hash, INFO_HASH);
    stream
}

/// Accepts one connection on a fresh listener and runs it with `handler`, as a seeder of
/// every piece.
async fn serve_one<H: Handler + 'static>(
    handler: H,
    config: ConnectionConfig,
) -> (
    std::net::SocketAddr,
    JoinHandle<Result<(), ConnectionError>>,
    tokio::sync::oneshot::Receiver<ivcsd::peer::connection::ConnectionHandle>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let hs = accept(stream, |h| *h == INFO_HASH, &config).await?;
        let pieces = geometry().piece_count();
        let (connection, handle) =
            hs.into_connection(geometry(), &Bitfield::full(pieces), handler, &config);
        let _ = handle_tx.send(handle);
        connection.run(CancellationToken::new()).await
    });
    (addr, task, handle_rx)
}

/// Reads one message from a raw socket, as its encoded bytes (test helper; `buf` keeps what
/// follows).
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some((message, used)) = wire::decode(buf).unwrap() {
            let bytes = message.encode();
            buf.drain(..used);
            return Some(bytes);
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads until the connection closes, returning every message.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    let mut all = Vec::new();
    while let Some(m) = read_message(stream, &mut buf).await {
        all.push(m);
    }
    all
}

fn frame(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    v.push(id);
    v.extend_from_slice(payload);
    v
}

/// One line per hostile input after a good handshake: the peer's reserved bytes, what it
/// sends, and the error that must close the connection (without a panic, and promptly).
macro_rules! hostile {
    ($name:ident, $reserved:expr, $bytes:expr, $pattern:pat) => {
        #[tokio::test]
        async fn $name() {
            let config = ConnectionConfig::new(generate_peer_id());
            let (addr, task, _handle) = serve_one(Recorder::default(), config).await;
            let mut peer = raw_peer(addr, $reserved).await;
            peer.write_all(&$bytes).await.unwrap();
            let result = tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("closed promptly")
                .unwrap();
            assert!(matches!(result, Err($pattern)), "{result:?}");
            assert!(result.unwrap_err().blames_peer());
            // The socket is closed: the peer reads to the end.
            tokio::time::timeout(Duration::from_secs(5), read_until_closed(&mut peer))
                .await
                .expect("socket closed");
        }
    };
}

hostile!(
    oversized_piece_message,
    Reserved::IVCSD,
    [0, 0x10, 0, 0, wire::MSGID_PIECE],
    ConnectionError::Wire(WireError::MessageTooLong {
        id: 7,
        max: 16393,
        received: 0x0010_0000
    })
);
hostile!(
    absurd_unknown_message,
    Reserved::IVCSD,
    [0xff, 0xff, 0xff, 0xff, 200],
    ConnectionError::Wire(WireError::MessageTooLong { id: 200, .. })
);
hostile!(
    bitfield_of_wrong_length,
    Reserved::IVCSD,
    frame(wire::MSGID_BITFIELD, &[0xf0, 0]),
    // Refused from its length prefix: the torrent's bitfield is 1 byte.
    ConnectionError::Wire(WireError::MessageTooLong {
        id: 5,
        max: 2,
        received: 3
    })
);
hostile!(
    bitfield_with_spare_bits,
    Reserved::IVCSD,
    frame(wire::MSGID_BITFIELD, &[0xf1]),
    ConnectionError::Wire(WireError::BitfieldSpareBits)
);
hostile!(
    request_outside_the_torrent,
    Reserved::IVCSD,
    frame(
        wire::MSGID_REQUEST,
        &[0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0x40, 0]
    ),
    ConnectionError::Wire(WireError::PieceIndexOutOfRange {
        id: 6,
        index: 9,
        ..
    })
);
hostile!(
    request_past_the_last_piece_end,
    Reserved::IVCSD,
    frame(
        wire::MSGID_REQUEST,
        &[0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x40, 0]
    ),
    ConnectionError::Wire(WireError::BlockOutOfRange {
        piece_len: 1000,
        ..
    })
);
hostile!(
    request_over_16k,
    Reserved::IVCSD,
    frame(
        wire::MSGID_REQUEST,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0]
    ),
    ConnectionError::Wire(WireError::BadBlockLength {
        id: 6,
        length: 32768
    })
);
hostile!(
    have_past_the_end,
    Reserved::IVCSD,
    frame(wire::MSGID_HAVE, &[0, 0, 0, 4]),
    ConnectionError::Wire(WireError::PieceIndexOutOfRange {
        id: 4,
        index: 4,
        piece_count: 4
    })
);
hostile!(
    have_all_without_fast,
    Reserved([0; 8]),
    frame(wire::MSGID_HAVE_ALL, &[]),
    ConnectionError::Protocol("have-all or have-none without the fast extension")
);
hostile!(
    reject_without_fast,
    Reserved([0; 8]),
    frame(
        wire::MSGID_REJECT_REQUEST,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0]
    ),
    ConnectionError::Protocol("reject-request without the fast extension")
);
hostile!(
    extended_without_extension_protocol,
    Reserved([0; 8]),
    frame(wire::MSGID_EXTENDED, b"\x00de"),
    ConnectionError::Protocol("extended message without the extension protocol")
);
hostile!(
    malformed_extended_handshake,
    Reserved::IVCSD,
    frame(wire::MSGID_EXTENDED, b"\x00d4:reqqi-5ee"),
    ConnectionError::Wire(WireError::ExtendedHandshakeField { field: "reqq", .. })
);

/// Waits for the task's handshake, with a raw client that sends `bytes` and then reads.
async fn handshake_refused(bytes: &[u8], serves: bool, own_id: bool) -> ConnectionError {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ConnectionConfig::new(generate_peer_id());
    let our_id = config.peer_id;
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        accept(stream, |_| serves, &config).await.map(drop)
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut bytes = bytes.to_vec();
    if own_id {
        bytes = Handshake::new(INFO_HASH, our_id).encode().to_vec();
    }
    client.write_all(&bytes).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("refused promptly")
        .unwrap()
        .unwrap_err();
    // Nothing is sent back and the socket is closed.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "sent {rest:?}");
    err
}

#[tokio::test]
async fn garbage_handshake_is_closed() {
    let err = handshake_refused(b"GET /announce HTTP/1.1\r\nHost: x\r\n\r\n", true, false).await;
    assert!(
        matches!(
            err,
            ConnectionError::Handshake(WireError::HandshakePstrLen { found: b'G' })
        ),
        "{err:?}"
    );
    let err = handshake_refused(b"\x13BitTorrent Protocol", true, false).await;
    assert!(
        matches!(err, ConnectionError::Handshake(WireError::HandshakePstr)),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_info_hash_is_refused() {
    let hs = Handshake::new(InfoHash([9; 20]), generate_peer_id()).encode();
    let err = handshake_refused(&hs, false, false).await;
    assert!(
        matches!(err, ConnectionError::UnknownInfoHash(h) if h == InfoHash([9; 20])),
        "{err:?}"
    );
}

#[tokio::test]
async fn own_peer_id_is_refused() {
    let err = handshake_refused(&[], true, true).await;
    assert!(matches!(err, ConnectionError::OwnPeerId), "{err:?}");
}

#[tokio::test]
async fn connect_checks_the_answering_info_hash() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut theirs = [0u8; HANDSHAKE_LEN];
        stream.read_exact(&mut theirs).await.unwrap();
        let wrong = Handshake::new(InfoHash([2; 20]), PeerId([b'x'; 20]));
        stream.write_all(&wrong.encode()).await.unwrap();
        let _ = stream.read_to_end(&mut Vec::new()).await;
    });
    let config = ConnectionConfig::new(generate_peer_id());
    let stream = TcpStream::connect(addr).await.unwrap();
    let err = connect(stream, INFO_HASH, &config).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::InfoHashMismatch { expected, received }
            if expected == INFO_HASH && received == InfoHash([2; 20])),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn silent_handshake_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let config = ConnectionConfig::new(generate_peer_id());
        let (stream, _) = listener.accept().await.unwrap();
        accept(stream, |_| true, &config).await.map(drop)
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"\x13BitTorrent").await.unwrap();
    let started = tokio::time::Instant::now();
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, ConnectionError::Timeout("waiting for the handshake")),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn silent_peer_gets_keep_alives_then_times_out() {
    let config = ConnectionConfig::new(generate_peer_id());
    let (addr, task, _handle) = serve_one(Recorder::default(), config).await;
    let started = tokio::time::Instant::now();
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    let messages = read_until_closed(&mut peer).await;
    let elapsed = started.elapsed();
    let result = task.await.unwrap();
    assert!(
        matches!(
            result,
            Err(ConnectionError::Timeout("reading: the peer sent nothing"))
        ),
        "{result:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(120) && elapsed < Duration::from_secs(130),
        "{elapsed:?}"
    );
    // Our greeting (have-all, extension handshake), then one keep-alive at 90 s.
    assert_eq!(messages[0], Message::HaveAll.encode());
    assert_eq!(messages[1][4], wire::MSGID_EXTENDED);
    assert_eq!(&messages[2..], &[Message::KeepAlive.encode()]);
}

#[tokio::test(start_paused = true)]
async fn keep_alives_keep_a_peer_connected() {
    let config = ConnectionConfig::new(generate_peer_id());
    let (addr, task, _handle) = serve_one(Recorder::default(), config).await;
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(100)).await;
        peer.write_all(&Message::KeepAlive.encode()).await.unwrap();
    }
    assert!(!task.is_finished(), "400 s with keep-alives every 100 s");
    peer.shutdown().await.unwrap();
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(ConnectionError::ClosedByPeer)),
        "{result:?}"
    );
}

#[tokio::test]
async fn requests_beyond_reqq_are_rejected_and_choke_rejects_the_rest() {
    let mut config = ConnectionConfig::new(generate_peer_id());
    config.max_incoming_requests = 2;
    let recorder = Recorder {
        unchoke_interested: true,
        ..Recorder::default()
    };
    let events = recorder.events.clone();
    let (addr, _task, handle) = serve_one(recorder, config).await;
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    let mut buf = Vec::new();
    let greeting = read_message(&mut peer, &mut buf).await.unwrap();
    assert_eq!(greeting, Message::HaveAll.encode());
    let ext = read_message(&mut peer, &mut buf).await.unwrap();
    let Some((Message::Extended(wire::Extended::Handshake(h)), _)) = wire::decode(&ext).unwrap()
    else {
        panic!("not an extension handshake");
    };
    assert_eq!(h.reqq, Some(2));

    // While choked, a request is rejected at once.
    let r = |begin| BlockRequest {
        index: 0,
        begin,
        length: 16384,
    };
    peer.write_all(&Message::Request(r(0)).encode())
        .await
        .unwrap();
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::RejectRequest(r(0)).encode()
    );
    peer.write_all(&Message::Interested.encode()).await.unwrap();
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::Unchoke.encode()
    );
    // Three requests: the third is over reqq = 2.
    let mut three = Vec::new();
    for begin in [0, 16384, 32768 - 1000] {
        let request = BlockRequest {
            index: 0,
            begin,
            length: if begin == 0 || begin == 16384 {
                16384
            } else {
                1000
            },
        };
        Message::Request(request).encode_into(&mut three);
    }
    peer.write_all(&three).await.unwrap();
    let third = BlockRequest {
        index: 0,
        begin: 32768 - 1000,
        length: 1000,
    };
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::RejectRequest(third).encode()
    );
    // The owner chokes: the two pending requests are rejected (BEP 6).
    let handle = handle.await.unwrap();
    handle.send(Command::Choke).await.unwrap();
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::Choke.encode()
    );
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::RejectRequest(r(0)).encode()
    );
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::RejectRequest(r(16384)).encode()
    );
    // A late answer from the owner is not sent: the request is gone.
    handle
        .send(Command::Piece {
            index: 0,
            begin: 0,
            data: Bytes::from(vec![0; 16384]),
        })
        .await
        .unwrap();
    handle.send(Command::Have(2)).await.unwrap();
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::Have { index: 2 }.encode()
    );
    let events = events.lock().unwrap().clone();
    let requests = events.iter().filter(|e| e.starts_with("Request")).count();
    assert_eq!(requests, 2, "{events:?}");
}

#[tokio::test]
async fn cancel_with_fast_is_answered_with_reject() {
    let recorder = Recorder {
        unchoke_interested: true,
        ..Recorder::default()
    };
    let events = recorder.events.clone();
    let config = ConnectionConfig::new(generate_peer_id());
    let (addr, _task, _handle) = serve_one(recorder, config).await;
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    let mut buf = Vec::new();
    read_message(&mut peer, &mut buf).await.unwrap();
    read_message(&mut peer, &mut buf).await.unwrap();
    peer.write_all(&Message::Interested.encode()).await.unwrap();
    read_message(&mut peer, &mut buf).await.unwrap();
    let r = BlockRequest {
        index: 1,
        begin: 0,
        length: 16384,
    };
    peer.write_all(&[Message::Request(r).encode(), Message::Cancel(r).encode()].concat())
        .await
        .unwrap();
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::RejectRequest(r).encode()
    );
    let events = events.lock().unwrap().clone();
    assert!(events.iter().any(|e| e.starts_with("Cancel")), "{events:?}");
}

/// aria2 sends a bitfield after other messages, in place of a run of haves: it replaces the
/// peer's set instead of closing the connection.
#[tokio::test]
async fn a_later_bitfield_replaces_the_peers_set() {
    let recorder = Recorder {
        unchoke_interested: true,
        ..Recorder::default()
    };
    let events = recorder.events.clone();
    let config = ConnectionConfig::new(generate_peer_id());
    let (addr, task, _handle) = serve_one(recorder, config).await;
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    let mut buf = Vec::new();
    read_message(&mut peer, &mut buf).await.unwrap();
    read_message(&mut peer, &mut buf).await.unwrap();
    peer.write_all(
        &[
            frame(wire::MSGID_HAVE_NONE, &[]),
            frame(wire::MSGID_HAVE, &[0, 0, 0, 1]),
            frame(wire::MSGID_BITFIELD, &[0xf0]),
            frame(wire::MSGID_HAVE_ALL, &[]),
            Message::Interested.encode(),
        ]
        .concat(),
    )
    .await
    .unwrap();
    // The unchoke answers the last message, so every one before it was handled.
    assert_eq!(
        read_message(&mut peer, &mut buf).await.unwrap(),
        Message::Unchoke.encode()
    );
    assert!(!task.is_finished(), "the connection stays open");
    let events = events.lock().unwrap().clone();
    let bitfields = events.iter().filter(|e| e.starts_with("Bitfield")).count();
    assert_eq!(bitfields, 3, "{events:?}");
    assert!(events.iter().any(|e| e == "Have(1)"), "{events:?}");
}

/// Random bytes after a good handshake: the connection ends with an error or on the peer's
/// hang-up, never with a panic, and never hangs.
#[tokio::test]
async fn random_bytes_never_panic_or_hang() {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
    for round in 0..40 {
        let config = ConnectionConfig::new(generate_peer_id());
        let (addr, task, _handle) = serve_one(Recorder::default(), config).await;
        let mut peer = raw_peer(addr, Reserved::IVCSD).await;
        let len = rng.random_range(0..3000);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        // Half the rounds start with a plausible message id, so parsing goes deeper.
        if round % 2 == 0 && len > 5 {
            bytes[..4].copy_from_slice(&(rng.random_range(1..40u32)).to_be_bytes());
            bytes[4] = rng.random_range(0..21);
        }
        let _ = peer.write_all(&bytes).await;
        let _ = peer.shutdown().await;
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("ends promptly")
            .expect("no panic");
        assert!(result.is_err(), "round {round}: {result:?}");
    }
}

/// A peer that asks for blocks and never reads them: the send queue stays bounded (we stop
/// reading its requests) and the stalled write closes the connection.
#[tokio::test(start_paused = true)]
async fn peer_that_does_not_read_is_dropped() {
    let mut config = ConnectionConfig::new(generate_peer_id());
    config.max_incoming_requests = 10_000;
    let seeder = Seeder { content: content() };
    let (addr, task, _handle) = serve_one(seeder, config).await;
    let mut peer = raw_peer(addr, Reserved::IVCSD).await;
    let mut requests = Message::Interested.encode();
    let r = BlockRequest {
        index: 0,
        begin: 0,
        length: 16384,
    };
    // The same block 20,000 times (each answered before it is asked again): 320 MiB of
    // answers, far beyond any socket buffer.
    for _ in 0..20_000 {
        Message::Request(r).encode_into(&mut requests);
    }
    let writer = tokio::spawn(async move {
        let _ = peer.write_all(&requests).await;
        peer
    });
    let started = tokio::time::Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(600), task)
        .await
        .expect("closed")
        .unwrap();
    assert!(
        matches!(
            result,
            Err(ConnectionError::Timeout("writing: the peer reads nothing"))
        ),
        "{result:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(60));
    writer.abort();
}
