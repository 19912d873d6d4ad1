//! `keyrot serve`: the API over HTTP (axum) and the rotation schedule, in one process.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use keyrot_api::{Api, RequestContext};
use keyrot_aws::SystemClock;
use keyrot_core::{Clock, Credentials, Rotator, RunOptions, SecretAccessKey};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::embedded::Embedded;
use crate::random_bytes;

/// What the HTTP handlers share.
#[derive(Debug)]
struct App {
    api: Api,
    embedded: Option<Arc<Embedded>>,
}

/// The router: every path goes to the shared API implementation; with the embedded backend,
/// `POST /demo/authenticate` also tells whether a key would be accepted (a stand-in for
/// `sts:GetCallerIdentity`, which the in-memory services cannot offer over HTTP).
pub fn router(api: Api, embedded: Option<Arc<Embedded>>) -> Router {
    let app = Arc::new(App { api, embedded });
    let mut router = Router::new();
    if app.embedded.is_some() {
        router = router.route("/demo/authenticate", axum::routing::post(demo_authenticate));
    }
    router.fallback(handle).with_state(app)
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = app.api.config().limits.max_body_len;
    // Read at most one byte past the limit; a longer body is answered by the API as too large
    // (with its usual error and audit line), without buffering the rest.
    let body = match axum::body::to_bytes(body, limit + 1).await {
        Ok(bytes) => bytes,
        Err(_) => Bytes::from(vec![0u8; limit + 1]),
    };
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
    let ctx = RequestContext::new(peer.ip(), request_id, SystemClock.now(), jti);
    let response = app
        .api
        .handle(http::Request::from_parts(parts, body), ctx)
        .await;
    response.into_response().map(Body::from)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Presented {
    access_key_id: String,
    secret_access_key: String,
}

async fn demo_authenticate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let reply = |status: http::StatusCode, body: serde_json::Value| {
        (
            status,
            [
                (http::header::CONTENT_TYPE, "application/json"),
                (http::header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response()
    };
    let Some(embedded) = &app.embedded else {
        return reply(
            http::StatusCode::NOT_FOUND,
            serde_json::json!({"error": {"code": "not_found"}}),
        );
    };
    let presented: Presented = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(_) => {
            return reply(
                http::StatusCode::BAD_REQUEST,
                serde_json::json!({"error": {"code": "invalid_body", "message": "send {\"AccessKeyId\", \"SecretAccessKey\"}"}}),
            );
        }
    };
    let Ok(id) = keyrot_core::AccessKeyId::new(presented.access_key_id) else {
        return reply(
            http::StatusCode::OK,
            serde_json::json!({"valid": false, "reason": "malformed access key id"}),
        );
    };
    let credentials = Credentials {
        access_key_id: id,
        secret_access_key: SecretAccessKey::new(presented.secret_access_key),
    };
    match embedded.authenticate(&credentials) {
        Ok(user) => reply(
            http::StatusCode::OK,
            serde_json::json!({"valid": true, "user": user.as_str()}),
        ),
        Err(reason) => reply(
            http::StatusCode::OK,
            serde_json::json!({"valid": false, "reason": reason.to_string()}),
        ),
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

/// Serves `router` on `listener` until Ctrl-C (or SIGTERM).
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
}

async fn shutdown() {
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
