//! The tracker's HTTP limits over raw sockets: header size, idle keep-alive connections,
//! the connection limit and graceful shutdown with open connections.

use std::time::Duration;

use crate::common_tracker::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one response head (up to the blank line) or `None` at EOF.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads a whole response with a Content-Length body.
async fn read_response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let head = read_head(stream).await?;
    let len = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse::<usize>().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let t = TestTracker::start(&standard_users()).await;
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let big = "x".repeat(40 * 1024);
    s.write_all(format!("GET /scrape HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
}

#[tokio::test]
async fn keep_alive_serves_many_requests_then_idle_connections_time_out() {
    let t = TestTracker::start_with(&standard_users(), |c| c.header_read_timeout_secs = 1).await;
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let request = format!("GET /scrape?{} HTTP/1.1\r\nHost: t\r\n\r\n", creds("u1"));
    for _ in 0..3 {
        s.write_all(request.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut s).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(body.starts_with(b"d5:filesde"), "{body:?}");
    }
    // idle: the server closes the connection after the header read timeout
    let closed = tokio::time::timeout(Duration::from_secs(10), read_head(&mut s)).await;
    assert_eq!(closed.expect("the idle connection was not closed"), None);
    // a request head that never completes is cut off the same way
    let mut slow = TcpStream::connect(t.addr).await.unwrap();
    slow.write_all(b"GET /scrape HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(10), read_head(&mut slow)).await;
    let head = cut.expect("the slow connection was not closed");
    assert!(head.is_none() || head.unwrap().starts_with("HTTP/1.1 408"));
}

#[tokio::test]
async fn connections_beyond_the_limit_wait() {
    let t = TestTracker::start_with(&standard_users(), |c| c.max_connections = 1).await;
    let mut first = TcpStream::connect(t.addr).await.unwrap();
    let request = format!("GET /scrape?{} HTTP/1.1\r\nHost: t\r\n\r\n", creds("u1"));
    first.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut first).await.unwrap();
    // the first connection holds the only permit: a second one is not served...
    let mut second = TcpStream::connect(t.addr).await.unwrap();
    second.write_all(request.as_bytes()).await.unwrap();
    let waiting = tokio::time::timeout(Duration::from_millis(500), read_head(&mut second)).await;
    assert!(waiting.is_err(), "served beyond the connection limit");
    // ...until the first one closes
    drop(first);
    let (head, _) = tokio::time::timeout(Duration::from_secs(10), read_response(&mut second))
        .await
        .unwrap()
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_and_returns() {
    let mut t = TestTracker::start(&standard_users()).await;
    let mut s = TcpStream::connect(t.addr).await.unwrap();
    let request = format!("GET /scrape?{} HTTP/1.1\r\nHost: t\r\n\r\n", creds("u1"));
    s.write_all(request.as_bytes()).await.unwrap();
    read_response(&mut s).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), t.stop())
        .await
        .expect("shutdown did not finish");
    assert_eq!(read_head(&mut s).await, None);
    // the listener is gone
    assert!(TcpStream::connect(t.addr).await.is_err());
}
