//! A small HTTP/1.1 client for talking to the tracker: one request per connection, a deadline on
//! every wait, and a cap on the size of the answer, because the tracker may be hostile or slow.
//!
//! It is deliberately minimal (GET and POST, no redirects, no cookies): every caller speaks to one
//! known tracker.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// Answers larger than this are refused (a .torrent is at most 16 MiB by default).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// How long to wait for the connection and for the whole exchange.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
        }
    }
}

/// Why a request did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("TLS with {authority} failed: {source}")]
    Tls {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    TlsConfig(#[from] crate::tls::TlsError),
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("HTTP error talking to {authority}: {source}")]
    Protocol {
        authority: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the answer from {authority} is larger than {max} bytes")]
    TooLarge { authority: String, max: usize },
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// The client TLS configuration with the public web's roots, built once.
fn default_tls() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(Arc::clone(c));
    }
    let config = crate::tls::client_config(None)?;
    Ok(Arc::clone(CONFIG.get_or_init(|| config)))
}

/// Sends one request and reads the whole answer (at most `max_bytes`). https URLs are
/// verified against the public web's roots; see [`request_with_tls`] for a private CA.
///
/// # Errors
/// An unusable URL, a failed or timed out connection, an HTTP protocol error, or an answer over
/// `max_bytes`.
pub async fn request(
    method: hyper::Method,
    uri: &Uri,
    body: Option<Bytes>,
    timeouts: Timeouts,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    let tls = match uri.scheme_str() {
        Some("https") => Some(default_tls()?),
        _ => None,
    };
    request_with_tls(tls.as_ref(), method, uri, body, timeouts, max_bytes).await
}

/// Like [`request`], with the TLS configuration for https URLs (`None`: the public roots).
///
/// # Errors
/// As [`request`], and a TLS handshake or certificate failure.
pub async fn request_with_tls(
    tls: Option<&Arc<rustls::ClientConfig>>,
    method: hyper::Method,
    uri: &Uri,
    body: Option<Bytes>,
    timeouts: Timeouts,
    max_bytes: usize,
) -> Result<Response, HttpError> {
    let url_err = |reason: &str| HttpError::Url {
        url: uri.to_string(),
        reason: reason.to_owned(),
    };
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(url_err("the scheme must be http or https")),
    };
    let authority = uri.authority().ok_or_else(|| url_err("no host"))?.clone();
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let address = format!("{host}:{port}");

    let stream = tokio::time::timeout(timeouts.connect, TcpStream::connect(&address))
        .await
        .map_err(|_| HttpError::Timeout("connecting to the tracker"))?
        .map_err(|source| HttpError::Connect {
            authority: authority.to_string(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let exchange = async {
        if !https {
            return exchange(stream, method, uri, &authority, body, max_bytes).await;
        }
        let config = match tls {
            Some(c) => Arc::clone(c),
            None => default_tls()?,
        };
        let server_name = rustls_pki_types::ServerName::try_from(host.to_owned())
            .map_err(|_| url_err("the host is not a valid TLS server name"))?;
        let tls_stream = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, stream)
            .await
            .map_err(|source| HttpError::Tls {
                authority: authority.to_string(),
                source,
            })?;
        exchange(tls_stream, method, uri, &authority, body, max_bytes).await
    };
    tokio::time::timeout(timeouts.request, exchange)
        .await
        .map_err(|_| HttpError::Timeout("waiting for the tracker's answer"))?
}

/// One request and its whole answer over an established connection.
async fn exchange<S>(
    stream: S,
    method: hyper::Method,
    uri: &Uri,
    authority: &hyper::http::uri::Authority,
    body: Option<Bytes>,
    max_bytes: usize,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |source| HttpError::Protocol {
        authority: authority.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(protocol)?;
    // The connection future drives the socket; it ends when the exchange is over.
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("ivcsd/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body.unwrap_or_default()))
        .map_err(|e| HttpError::Url {
            url: uri.to_string(),
            reason: e.to_string(),
        })?;
    let response = sender.send_request(req).await.map_err(protocol)?;
    let status = response.status().as_u16();
    let collected = Limited::new(response.into_body(), max_bytes)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => protocol(*e),
            Err(_) => HttpError::TooLarge {
                authority: authority.to_string(),
                max: max_bytes,
            },
        })?;
    driver.abort();
    Ok(Response {
        status,
        body: collected.to_bytes(),
    })
}

/// `GET uri` with the default limits.
///
/// # Errors
/// As [`request`].
pub async fn get(uri: &Uri) -> Result<Response, HttpError> {
    request(
        hyper::Method::GET,
        uri,
        None,
        Timeouts::default(),
        DEFAULT_MAX_RESPONSE_BYTES,
    )
    .await
}

/// `POST uri` with `body` and the default limits.
///
/// # Errors
/// As [`request`].
pub async fn post(uri: &Uri, body: Bytes) -> Result<Response, HttpError> {
    request(
        hyper::Method::POST,
        uri,
        Some(body),
        Timeouts::default(),
        DEFAULT_MAX_RESPONSE_BYTES,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot server on 127.0.0.1 that answers with `reply` (raw bytes) after reading the
    /// request head.
    async fn server(reply: &'static [u8], delay: Duration) -> Uri {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            tokio::time::sleep(delay).await;
            let _ = sock.write_all(reply).await;
            let _ = sock.shutdown().await;
        });
        format!("http://{addr}/announce?x=1").parse().unwrap()
    }

    #[tokio::test]
    async fn reads_an_answer() {
        let uri = server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            Duration::ZERO,
        )
        .await;
        let r = get(&uri).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"hello");
    }

    #[tokio::test]
    async fn refuses_large_answers() {
        let uri = server(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n01234567890123456789012345678901234567890123456789", Duration::ZERO).await;
        let err = request(hyper::Method::GET, &uri, None, Timeouts::default(), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge { max: 10, .. }), "{err}");
    }

    #[tokio::test]
    async fn times_out_on_a_silent_server() {
        let uri = server(b"", Duration::from_secs(30)).await;
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_millis(200),
        };
        let err = request(hyper::Method::GET, &uri, None, timeouts, 10)
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout(_)), "{err}");
    }

    #[tokio::test]
    async fn garbage_is_a_protocol_error() {
        let uri = server(b"NOT HTTP AT ALL\r\n\r\n", Duration::ZERO).await;
        let err = get(&uri).await.unwrap_err();
        assert!(matches!(err, HttpError::Protocol { .. }), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_clear() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let uri: Uri = format!("http://{addr}/x").parse().unwrap();
        let err = get(&uri).await.unwrap_err();
        assert!(
            err.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{err}"
        );
    }
}
