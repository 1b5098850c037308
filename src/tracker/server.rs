//! The HTTP/1.1 server: accept loop, limits, routing, shutdown. Endpoint logic lives in one
//! file per endpoint; this file only routes and supervises.
//!
//! Limits: at most `max_connections` connections are served at once (a permit is taken before
//! `accept`, so excess connections wait in the kernel's backlog), and at most
//! `max_connections_per_ip` from one source address (more are closed as soon as they are
//! accepted, so one address cannot fill the cap: slowloris); a request head must arrive
//! within `header_read_timeout_secs` and fit in `max_header_bytes`; a body is read only for
//! POST and only up to `max_torrent_bytes`; a whole request must be answered within
//! `request_timeout_secs`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::conn_limit::AddressLimit;

use super::answer::Answer;
use super::audit::{AUDIT_FILE, AuditLog};
use super::authority::AuthoritySource;
use super::catalogue::Catalogue;
use super::clock::Clock;
use super::config::Config;
use super::credentials::{Authenticator, CredentialLimits};
use super::endpoint::{ADMIN_PREFIX, Endpoint};
use super::query::Query;
use super::refusal::Refusal;
use super::response::{self, Body, RefusalStatus};
use super::state::claimed_user;
use super::store::Store;
use super::swarm::{SwarmLimits, Swarms, canonical_ip};
use super::{ApiRequest, TrackerRunError, TrackerState};

/// How often expired peers, logins, nonces and pending keys are swept.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(10);
/// Most header lines in one request (stock clients send fewer than 10).
const MAX_HEADERS: usize = 64;
/// Pause after a failed `accept` (for example out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs a tracker on `listener` until `shutdown` resolves, then drains open requests for at
/// most `drain_timeout_secs` and closes the audit log and the database cleanly.
///
/// The caller binds the listener (tests use `127.0.0.1:0`) and loads the authority file.
///
/// # Errors
/// The data directory, master key, database or audit log cannot be opened, a signal handler
/// cannot be installed, or a background task died ([`TrackerRunError::TaskDied`]).
pub async fn run(
    listener: TcpListener,
    config: Config,
    users: Arc<AuthoritySource>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TrackerRunError> {
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(cert, key)?,
        )),
        _ => None,
    };
    let clock = Clock::start();
    let data_dir = config.data_dir.clone();
    let master_key = config.master_key_path();
    let (store, store_thread, master) =
        tokio::task::spawn_blocking(move || Store::open(&data_dir, &master_key))
            .await
            .map_err(|_| TrackerRunError::TaskDied("store start"))??;
    let token_key = master.derive("ivcsd token key v1");
    let swarms = Arc::new(Mutex::new(Swarms::new(SwarmLimits {
        peer_ttl: config.peer_ttl(),
        max_peers_per_torrent: config.max_peers_per_torrent,
        numwant_cap: config.numwant_cap,
        numwant_default: config.numwant_default,
    })));
    let catalogue = Catalogue::load(store, master, swarms.clone()).await?;
    let audit_path = config.audit.then(|| config.data_dir.join(AUDIT_FILE));
    let (audit, audit_writer) = AuditLog::start(
        audit_path.as_deref(),
        config.audit_queue,
        config.audit_on_failure,
    )?;
    let authenticator = Authenticator::new(
        users.clone(),
        clock,
        CredentialLimits::from_config(&config),
        token_key,
        config.argon2_concurrency,
    );
    tracing::info!(
        "tracker listening on {}, {} torrents, {} users",
        listener
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string()),
        catalogue.len(),
        users.current().len()
    );
    let state = Arc::new(TrackerState::new(
        config,
        clock,
        users.clone(),
        authenticator,
        swarms,
        catalogue,
        audit,
    ));
    let metrics_listener = match state.config.metrics_listen {
        Some(addr) => {
            let listener = crate::metrics::bind(addr).await?;
            tracing::info!("metrics on http://{addr}/metrics");
            Some(listener)
        }
        None => None,
    };

    let cancel = CancellationToken::new();
    let mut watcher = users.clone().spawn_watcher(
        Duration::from_secs(state.config.authority_poll_secs),
        cancel.clone(),
    );
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(TrackerRunError::Signal)?;
    let mut maintenance = tokio::spawn(maintain(state.clone(), cancel.clone()));
    let server = tokio::spawn(serve(listener, state.clone(), tls, cancel.clone()));
    let metrics_server = metrics_listener.map(|listener| {
        let state = state.clone();
        tokio::spawn(crate::metrics::serve(
            listener,
            Box::new(move || state.metrics_page()),
            cancel.clone(),
        ))
    });

    let mut failure = None;
    let mut check = tokio::time::interval(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = &mut maintenance => { failure = Some("maintenance"); break }
            _ = &mut watcher => { failure = Some("authority watcher"); break }
            _ = hangup.recv() => {
                // Log rotation: the operator renamed audit.log; write on in a new one.
                state.reopen_audit();
                let users = users.clone();
                match tokio::task::spawn_blocking(move || users.reload()).await {
                    Ok(Ok(_)) => tracing::info!("SIGHUP: authority file reloaded"),
                    Ok(Err(e)) => tracing::error!("SIGHUP: {e}; keeping the last good authority table"),
                    Err(_) => tracing::error!("SIGHUP: authority reload panicked"),
                }
            }
            _ = check.tick() => {
                if audit_writer.is_finished() { failure = Some("audit writer"); break }
                if store_thread.is_finished() { failure = Some("store"); break }
                if server.is_finished() { failure = Some("accept loop"); break }
                if metrics_server.as_ref().is_some_and(|m| m.is_finished()) {
                    failure = Some("metrics accept loop");
                    break
                }
            }
        }
    }
    tracing::info!("tracker shutting down");
    cancel.cancel();
    if server.await.is_err() {
        failure = failure.or(Some("accept loop"));
    }
    if let Some(metrics_server) = metrics_server
        && metrics_server.await.is_err()
    {
        failure = failure.or(Some("metrics accept loop"));
    }
    maintenance.abort();
    watcher.abort();
    state.close_audit();
    state.catalogue.close().await;
    drop(state);
    let _ = tokio::task::spawn_blocking(move || {
        audit_writer.finish();
        store_thread.join();
    })
    .await;
    match failure {
        Some(task) => Err(TrackerRunError::TaskDied(task)),
        None => Ok(()),
    }
}

/// Expires what is keyed by remote input; returns only when cancelled.
async fn maintain(state: Arc<TrackerState>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(MAINTENANCE_PERIOD);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.swarms.lock().clean(state.clock.instant());
        state.authenticator.clean();
        state.nonces.lock().clean(state.clock.unix_secs());
        let ttl_ms = state.config.pending_key_ttl_secs.saturating_mul(1000);
        match state
            .catalogue
            .purge_pending_keys(state.clock.unix_ms().saturating_sub(ttl_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} unclaimed pending keys"),
            Err(e) => tracing::error!("error purging pending keys: {e}"),
        }
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<TrackerState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    let handshake_timeout = Duration::from_secs(state.config.header_read_timeout_secs);
    let per_address = AddressLimit::new(state.config.max_connections_per_ip);
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(state.config.header_read_timeout_secs))
        .keep_alive(true)
        .max_headers(MAX_HEADERS)
        .max_header_size(state.config.max_header_bytes)
        .max_buf_size(state.config.max_header_bytes);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = stop.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let Some(address_permit) = per_address.try_acquire(canonical_ip(remote.ip())) else {
            tracing::debug!("connection from {remote} closed: too many from its address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, remote, req).await) }
        });
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _permits = (permit, address_permit);
                    if let Err(e) = conn.await {
                        tracing::debug!("connection from {remote}: {e}");
                    }
                });
            }
            Some(acceptor) => {
                // The TLS handshake runs in the connection's own task, under the same
                // deadline as reading headers, so slow handshakes cannot hold the accept loop.
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _permits = (permit, address_permit);
                    let stream = match tokio::time::timeout(
                        handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake with {remote} failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake with {remote} timed out");
                            return;
                        }
                    };
                    let conn =
                        watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = conn.await {
                        tracing::debug!("connection from {remote}: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    let drain = Duration::from_secs(state.config.drain_timeout_secs);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => {
            tracing::warn!("open connections did not finish within {drain:?}; closing them");
        }
    }
}

/// Answers one request within `request_timeout_secs`, inside a span naming its method, its
/// endpoint (recorded once routed) and the peer's address, so that a log line about it says
/// which request it is about. Never the query string: it carries passwords and tokens.
async fn handle(
    state: &TrackerState,
    remote: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Response<Body> {
    // At the `error` level, so that a warning under `--quiet` still names its request.
    let span = tracing::error_span!(
        "request",
        method = %req.method(),
        endpoint = tracing::field::Empty,
        peer = %remote,
    );
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let routed = tokio::time::timeout(timeout, route(state, remote, req)).instrument(span);
    let response = match routed.await {
        Ok(response) => response,
        Err(_) => response::refusal(
            &Refusal::internal("request timed out"),
            RefusalStatus::ByKind,
        ),
    };
    // Only a request the audit log could not take is answered 503, wherever it was refused.
    if response.status() == hyper::StatusCode::SERVICE_UNAVAILABLE {
        state.count_audit_unavailable();
    }
    response
}

/// Reads a POST body of at most `max` bytes.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Refusal> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::malformed(format!(
            "request body larger than {max} bytes"
        ))),
        Err(e) => Err(Refusal::malformed(format!(
            "error reading request body: {e}"
        ))),
    }
}

/// Answers a request: reads a POST body, routes the path to its endpoint and turns the
/// handler's answer or refusal into a response. A decision the audit log could not record
/// comes back as a 503 refusal (docs/security.md 2.6: the tracker fails closed by default).
async fn route(
    state: &TrackerState,
    remote: SocketAddr,
    req: hyper::Request<Incoming>,
) -> Response<Body> {
    // First, before any work: while the audit log cannot be written (and
    // audit_on_failure = "refuse") nothing is answered.
    if let Err(unavailable) = state.check_audit() {
        return response::refusal(&unavailable.into(), RefusalStatus::ByKind);
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let mut request = ApiRequest {
        source: canonical_ip(remote.ip()),
        query: parts.uri.query().unwrap_or(""),
        method: &parts.method,
        body: Bytes::new(),
    };
    if parts.method == Method::POST {
        match read_body(body, state.config.max_torrent_bytes).await {
            Ok(bytes) => request.body = bytes,
            Err(refusal) => {
                tracing::Span::current().record("endpoint", Endpoint::Http.name());
                let user = Query::parse(request.query)
                    .ok()
                    .and_then(|q| claimed_user(&q));
                let refusal = state
                    .refuse(&request, Endpoint::Http, user.as_deref(), None, refusal)
                    .await;
                return response::refusal(&refusal, RefusalStatus::ByKind);
            }
        }
    }
    let Some(endpoint) = Endpoint::from_path(path) else {
        return response::refusal(&no_such_endpoint(path), RefusalStatus::ByKind);
    };
    // Admin calls check their method after authentication, so that a wrong one is audited.
    if let Some(takes) = endpoint.method()
        && !endpoint.is_admin()
        && takes != parts.method
    {
        return response::refusal(
            &Refusal::malformed(format!("{path} takes {takes}")),
            RefusalStatus::ByKind,
        );
    }
    tracing::Span::current().record("endpoint", endpoint.name());
    let (endpoint, outcome) = run_endpoint(state, &request, endpoint, path).await;
    match outcome {
        Ok(answer) => response::answer(answer),
        Err(refusal) => response::refusal(&refusal, RefusalStatus::of(endpoint)),
    }
}

/// Parses the query and runs the endpoint's handler; returns the endpoint that answered
/// (`announce?getCipher=yes` is the getcipher alias, docs/protocol.md 4.1) with its answer or
/// its refusal, either one already recorded in the audit log.
async fn run_endpoint(
    state: &TrackerState,
    request: &ApiRequest<'_>,
    endpoint: Endpoint,
    path: &str,
) -> (Endpoint, Result<Answer, Refusal>) {
    let query = match Query::parse(request.query) {
        Ok(query) => query,
        Err(e) => {
            let refusal = state.refuse(request, endpoint, None, None, e.into()).await;
            return (endpoint, Err(refusal));
        }
    };
    let endpoint = if endpoint == Endpoint::Announce && super::announce::asks_for_cipher(&query) {
        tracing::Span::current().record("endpoint", Endpoint::AnnounceGetCipher.name());
        Endpoint::AnnounceGetCipher
    } else {
        endpoint
    };
    let outcome = match endpoint {
        Endpoint::Announce => super::announce::handle(state, request, &query).await,
        Endpoint::Getcipher | Endpoint::AnnounceGetCipher => {
            super::getcipher::handle(state, request, &query, endpoint).await
        }
        Endpoint::Scrape => super::scrape::handle(state, request, &query).await,
        Endpoint::Publish => super::publish::handle(state, request, &query).await,
        Endpoint::Torrent => super::metainfo_file::handle(state, request, &query).await,
        Endpoint::RelayAssignments => super::relay::handle(state, request, &query).await,
        Endpoint::AdminTorrents
        | Endpoint::AdminTorrent
        | Endpoint::AdminSetAuthority
        | Endpoint::AdminRelayAssign
        | Endpoint::AdminRelayUnassign
        | Endpoint::AdminAudit
        | Endpoint::AdminRemove
        | Endpoint::AdminUnknown => {
            let call = path.strip_prefix(ADMIN_PREFIX).unwrap_or(path);
            super::admin::handle(state, request, &query, endpoint, call).await
        }
        // Never named by a path (see `Endpoint::from_path`).
        Endpoint::Http => Err(no_such_endpoint(path)),
    };
    (endpoint, outcome)
}

/// A path that names no endpoint: 404.
fn no_such_endpoint(path: &str) -> Refusal {
    Refusal::no_such_endpoint(format!("no such endpoint {path}"))
}
