//! Monitoring for every long-running ivcsd process (the tracker, relays, seeders): totals in
//! the Prometheus text format (version 0.0.4), served as `GET /metrics` on a listener of their
//! own, off by default.
//!
//! Only totals are shown, never a user, torrent or address, so the listener takes no
//! credentials; bind it to loopback or a monitoring network all the same. The format is a few
//! lines written by hand ([`Exposition`]): a metrics crate would bring a registry and encoders
//! for far more than this needs.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connections served at once: a scraper or two, and a person.
const CONNECTIONS: usize = 8;
/// Time allowed for a request head, also between requests on a kept-alive connection.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole connection: a scrape is one small request.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head accepted (hyper's floor).
const MAX_HEADER_BYTES: usize = 8192;
/// A page is rendered at most this often; scrapes in between get the same page. Rendering
/// walks every swarm or torrent under a lock, which a flood of scrapes must not turn into
/// contention for the requests that matter.
const RENDER_INTERVAL: Duration = Duration::from_secs(1);

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Announces a family: its `# HELP` and `# TYPE` lines, before its samples.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample: `series` is the name with its labels, e.g. `x{state="seeder"}`.
    pub fn sample(&mut self, series: &str, value: u64) {
        let _ = writeln!(self.text, "{series} {value}");
    }

    /// A family of one unlabelled gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "gauge", help);
        self.sample(name, value);
    }

    /// A gauge family with one sample per value of `label`: `name{label="value"} n`.
    pub fn gauges_by(&mut self, name: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
        self.family(name, "gauge", help);
        for (value, n) in samples {
            self.sample(&format!("{name}{{{label}=\"{value}\"}}"), *n);
        }
    }

    /// A family of one unlabelled counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, value);
    }

    /// The running version as `{prefix}_build_info{version="…"} 1`.
    pub fn build_info(&mut self, prefix: &str) {
        let name = format!("{prefix}_build_info");
        self.family(&name, "gauge", "The running version, as a label.");
        let version = env!("CARGO_PKG_VERSION");
        self.sample(&format!("{name}{{version=\"{version}\"}}"), 1);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Why a metrics listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("error listening for metrics on {addr}: {source}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` for [`serve`].
///
/// # Errors
/// [`ListenError`] naming the address (in use, not local, no permission).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })
}

/// Answers `GET /metrics` with what `render` writes (at most once per [`RENDER_INTERVAL`]),
/// and everything else with 404, until `stop`. At most [`CONNECTIONS`] at once (more wait in
/// the backlog), each with timeouts, so that whoever floods the listener slows down only
/// their own scrapes.
pub async fn serve(
    listener: TcpListener,
    render: Box<dyn Fn() -> String + Send + Sync>,
    stop: CancellationToken,
) {
    let page = Arc::new(Page {
        render,
        last: Mutex::new(None),
    });
    let limit = Arc::new(Semaphore::new(CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stop.cancelled() => return,
        };
        let page = page.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let page = page.clone();
            async move { Ok::<_, Infallible>(answer(req.method(), req.uri().path(), &page)) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// The renderer and its last page.
struct Page {
    render: Box<dyn Fn() -> String + Send + Sync>,
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Page {
    fn current(&self) -> Bytes {
        let mut last = self.last.lock();
        match &*last {
            Some((at, text)) if at.elapsed() < RENDER_INTERVAL => text.clone(),
            _ => {
                let text = Bytes::from((self.render)());
                *last = Some((Instant::now(), text.clone()));
                text
            }
        }
    }
}

fn answer(method: &Method, path: &str, page: &Page) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if *method == Method::GET && path == "/metrics" {
        (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            page.current(),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"this listener serves only GET /metrics\n"),
        )
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

/// The value of the sample whose name and labels are `series`, in a page of metrics: what
/// tests and scripts read.
pub fn sample_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_follows_its_help_and_type() {
        let mut page = Exposition::default();
        page.counter("x_total", "Things.", 3);
        page.family("y", "gauge", "Ys by state.");
        page.sample("y{state=\"a\"}", 1);
        page.sample("y{state=\"b\"}", 2);
        page.build_info("x");
        let text = page.finish();
        assert_eq!(sample_value(&text, "x_total"), Some(3));
        assert_eq!(sample_value(&text, "y{state=\"b\"}"), Some(2));
        assert_eq!(sample_value(&text, "y"), None, "a prefix is not a series");
        let mut announced = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                announced.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(announced.last().map(String::as_str), Some(name), "{line}");
            }
        }
    }

    #[tokio::test]
    async fn only_get_metrics_is_answered_and_the_server_stops() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let renders = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = renders.clone();
        let server = tokio::spawn(serve(
            listener,
            Box::new(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "up 1\n".to_owned()
            }),
            stop.clone(),
        ));
        let get = |path: &str| {
            let uri: hyper::Uri = format!("http://{addr}{path}").parse().unwrap();
            async move { crate::http_client::get(&uri).await.unwrap() }
        };
        let page = get("/metrics").await;
        assert_eq!((page.status, &page.body[..]), (200, &b"up 1\n"[..]));
        assert_eq!(get("/").await.status, 404);
        // A second scrape within the interval gets the same page, not a new rendering.
        assert_eq!(get("/metrics").await.body, page.body);
        assert_eq!(renders.load(std::sync::atomic::Ordering::Relaxed), 1);
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server did not stop")
            .unwrap();
    }

    #[tokio::test]
    async fn a_taken_address_is_named() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind(addr).await.unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("error listening for metrics on {addr}: ")),
            "{error}"
        );
    }
}
