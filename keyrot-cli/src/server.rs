//! `keyrot serve`: the API over HTTP/1.1 (hyper, with rustls for TLS) and the rotation
//! schedule, in one process.
//!
//! The edge around the API: TLS from files reloaded when they change ([`tls`]); a header
//! timeout, an idle keep-alive timeout and a write timeout on each connection, hyper's own
//! answers rewritten into the uniform error (`server/conn.rs`); a request timeout; a body refused from
//! its declared length before a byte of it is read (so no `100 Continue` is sent for it), a
//! malformed chunked body `400`, an oversized one `413`; a limit on open connections; and a
//! graceful shutdown with a deadline, after which open connections are dropped, half-sent
//! requests included.

mod conn;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use keyrot_api::{AdapterRoute, Api, ErrorCode, RequestContext};
use keyrot_aws::SystemClock;
use keyrot_config::ServeSettings;
use keyrot_core::token::ClientId;
use keyrot_core::{Clock, Credentials, Rotator, RunOptions, SecretAccessKey};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::embedded::Embedded;
use crate::random_bytes;
use conn::{ConnState, Guarded, Timeouts};

/// The largest request head hyper buffers (it answers `431` past it): the API's header limits
/// and its longest URI fit many times over.
const MAX_HEAD_BUFFER: usize = 128 * 1024;

/// The demo's route: whether a key would be accepted (a stand-in for
/// `sts:GetCallerIdentity`, which the in-memory services cannot offer over HTTP).
pub const DEMO_AUTHENTICATE: &str = "/demo/authenticate";

/// What every connection's requests are answered with.
#[derive(Debug)]
pub struct App {
    api: Api,
    embedded: Option<Arc<Embedded>>,
    request_timeout: Duration,
}

impl App {
    /// The API; with the embedded backend, also `POST /demo/authenticate` (see
    /// [`DEMO_AUTHENTICATE`]), under the API's rules: the API key and allowlist, the limits,
    /// uniform errors, one audit line.
    pub fn new(api: Api, embedded: Option<Arc<Embedded>>, settings: &ServeSettings) -> Arc<Self> {
        Arc::new(Self {
            api,
            embedded,
            request_timeout: settings.request_timeout,
        })
    }

    async fn respond(
        &self,
        request: http::Request<Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Full<Bytes>> {
        let ctx = context(peer.ip());
        let (parts, body) = request.into_parts();
        let limit = self.api.config().limits.max_body_len;
        let over = || Bytes::from(vec![0u8; limit + 1]);
        // A declared length over the limit is refused before the body is polled, which is
        // what would send `100 Continue`; the API answers it (`413`, its audit line) as if it
        // had read one byte too many.
        let body = if body.size_hint().lower() > limit as u64 {
            Err(over())
        } else {
            let read = Limited::new(body, limit).collect();
            match tokio::time::timeout(self.request_timeout, read).await {
                Ok(Ok(collected)) => Ok(collected.to_bytes()),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(over()),
                Ok(Err(_)) => {
                    return refuse(
                        &ctx,
                        &parts.method,
                        ErrorCode::InvalidRequest,
                        "body_malformed",
                    );
                }
                Err(_) => {
                    return refuse(
                        &ctx,
                        &parts.method,
                        ErrorCode::RequestTimeout,
                        "body_timeout",
                    );
                }
            }
        };
        let body_read = body.is_ok();
        let body = body.unwrap_or_else(|over| over);
        let request = http::Request::from_parts(parts, body);
        let method = request.method().clone();
        let answer = |_: &ClientId, body: &[u8]| self.demo_authenticate(body);
        let demo = AdapterRoute {
            path: DEMO_AUTHENTICATE,
            name: "demo_authenticate",
            answer: &answer,
        };
        let adapter = self.embedded.as_ref().map(|_| &demo);
        let handled = self.api.handle_with(request, ctx.clone(), adapter);
        let Ok(response) = tokio::time::timeout(self.request_timeout, handled).await else {
            return refuse(&ctx, &method, ErrorCode::StoreUnavailable, "answer_timeout");
        };
        let mut response = response
            .into_response()
            .map(|body| Full::new(Bytes::from(body)));
        if !body_read {
            // The rest of the body is not read: the connection cannot carry another request.
            close(&mut response);
        }
        response
    }

    fn demo_authenticate(&self, body: &[u8]) -> Result<serde_json::Value, ErrorCode> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Presented {
            access_key_id: String,
            secret_access_key: String,
        }
        let embedded = self.embedded.as_ref().ok_or(ErrorCode::NotFound)?;
        let presented: Presented =
            serde_json::from_slice(body).map_err(|_| ErrorCode::InvalidRequest)?;
        let secret_access_key = SecretAccessKey::new(presented.secret_access_key);
        let Ok(access_key_id) = keyrot_core::AccessKeyId::new(presented.access_key_id) else {
            return Ok(serde_json::json!({"valid": false, "reason": "malformed access key id"}));
        };
        let credentials = Credentials {
            access_key_id,
            secret_access_key,
        };
        Ok(match embedded.authenticate(&credentials) {
            Ok(user) => serde_json::json!({"valid": true, "user": user.as_str()}),
            Err(reason) => serde_json::json!({"valid": false, "reason": reason.to_string()}),
        })
    }
}

/// A request's context: the peer, fresh ids, now.
fn context(source: IpAddr) -> RequestContext {
    let jti = match random_bytes::<16>() {
        Ok(bytes) => hex::encode(bytes),
        Err(e) => {
            tracing::error!(error = %keyrot_core::driver::error_chain(&e), "no randomness for a token id");
            String::new()
        }
    };
    let request_id = match random_bytes::<8>() {
        Ok(bytes) => hex::encode(bytes),
        Err(_) => "unknown".to_owned(),
    };
    RequestContext::new(source, request_id, SystemClock.now(), jti)
}

fn close<B>(response: &mut http::Response<B>) {
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
}

/// The uniform error for a request the server refused before the API saw it (its body could
/// not be read, or no answer came in time), with its audit line; the connection closes.
fn refuse(
    ctx: &RequestContext,
    method: &http::Method,
    code: ErrorCode,
    reason: &'static str,
) -> http::Response<Full<Bytes>> {
    tracing::info!(
        target: "keyrot::audit",
        request_id = ?ctx.request_id,
        source_ip = %ctx.source_ip,
        method = if method.as_str().len() <= 16 { method.as_str() } else { "other" },
        route = "unknown",
        outcome = code.as_str(),
        status = code.status().as_u16(),
        reason,
        "api request"
    );
    let mut response = keyrot_api::error_response(code).map(|body| Full::new(Bytes::from(body)));
    close(&mut response);
    response
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` completes; then gives the
/// open requests [`ServeSettings::shutdown_timeout`] to finish and drops what is left.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    settings: &ServeSettings,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = async {
            // A connection is accepted only when a slot is free; others wait in the backlog.
            let slot = Arc::clone(&slots).acquire_owned().await;
            (slot, listener.accept().await)
        };
        let (slot, accepted) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accepted => accepted,
        };
        let Ok(slot) = slot else { break };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = Arc::clone(&app);
        let tls = tls.clone();
        let stopping = stopping.clone();
        let settings = settings.clone();
        connections.spawn(async move {
            let _slot = slot;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => connection(tcp, peer, app, &settings, stopping).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(settings.header_timeout, tls.accept(tcp));
                    match handshake.await {
                        Ok(Ok(stream)) => connection(stream, peer, app, &settings, stopping).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(settings.shutdown_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "shutdown deadline passed; dropping the connections still open"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Serves one connection until it closes, or until shutdown and its current request ends.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    app: Arc<App>,
    settings: &ServeSettings,
    mut stopping: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = ConnState::new(peer);
    let timeouts = Timeouts {
        header: settings.header_timeout,
        idle: settings.idle_timeout,
        write: settings.request_timeout,
    };
    let io = hyper_util::rt::TokioIo::new(Guarded::new(io, Arc::clone(&state), timeouts));
    let service = hyper::service::service_fn(move |request| {
        let app = Arc::clone(&app);
        let answering = state.request();
        async move {
            let response = app.respond(request, peer).await;
            drop(answering);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BUFFER)
        .writev(false);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { stopping.wait_for(|stop| *stop).await.map(drop) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended");
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Runs the rotator every schedule interval until the process stops; each run's report goes
/// to the log.
pub async fn rotation_schedule(rotator: Arc<Rotator>, interval: std::time::Duration) {
    loop {
        match rotator.run(&RunOptions::default()).await {
            Ok(report) => {
                for user in &report.users {
                    tracing::info!(target: "keyrot::rotation", user = %user.user, outcome = %user.outcome, "reconciled");
                }
                tracing::info!(
                    users = report.users.len(),
                    rotated = report.rotations(),
                    failed = report.failures(),
                    "rotation run finished"
                );
            }
            Err(e) => {
                tracing::error!(error = %keyrot_core::driver::error_chain(&e), "rotation run failed");
            }
        }
        tokio::time::sleep(interval).await;
    }
}
