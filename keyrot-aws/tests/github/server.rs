//! A loopback server that follows GitHub's documented REST API for Actions secrets (REST API
//! version `2022-11-28`), as far as keyrot uses it; no emulator of GitHub exists, so the tests
//! bring this one. On 127.0.0.1, optionally under GitHub Enterprise Server's `/api/v3`:
//!
//! - `GET {repos/OWNER/REPO/actions | repos/OWNER/REPO/environments/ENV | orgs/ORG/actions}
//!   /secrets/public-key`: `{"key_id", "key"}`, the key a crypto_box (X25519) public key in
//!   base64;
//! - `GET .../secrets/{secret_name}`: `{"name", "created_at", "updated_at"}` (and
//!   `"visibility"` for an organization), 404 when there is none;
//! - `PUT .../secrets/{secret_name}` with `{"encrypted_value", "key_id"}` (and `"visibility"`:
//!   `all`, `private` or `selected`, required for an organization): 201 when created, 204 when
//!   updated; 422 for a `key_id` that is not the current one, a value that does not open with
//!   the private key, a bad secret name or visibility.
//!
//! Every call needs `Authorization: Bearer TOKEN` (401 `Bad credentials` otherwise) and a
//! `User-Agent` (403 otherwise); an `X-GitHub-Api-Version` other than `2022-11-28` is a 400.
//! An unknown repository, environment or organization is a 404. Errors carry GitHub's JSON
//! body `{"message": ..., "documentation_url": ...}`. The server's clock starts at a fixed
//! instant and moves one second per request (its `Date` header and the secrets' times), so
//! that nothing depends on the wall clock.
#![allow(dead_code)] // each test uses a part

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};

const DOCS: &str = "https://docs.github.com/rest/actions/secrets";

/// A secret as the server keeps it: the plaintext it opened, and GitHub's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) value: String,
    pub(crate) created_at: jiff::Timestamp,
    pub(crate) updated_at: jiff::Timestamp,
    pub(crate) visibility: Option<String>,
}

/// Which calls an injected failure answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Calls {
    All,
    Put,
}

struct State {
    token: String,
    private_key: crypto_box::SecretKey,
    key_id: String,
    scopes: BTreeSet<String>,
    secrets: BTreeMap<(String, String), Stored>,
    failure: Option<(u16, Calls)>,
    drop_writes: bool,
    clock: jiff::Timestamp,
    app: Option<(String, u64, Vec<u8>)>,
    requests: Vec<String>,
    headers_seen: Vec<(String, String, String)>,
}

/// The server; it stops when dropped.
pub(crate) struct GitHubServer {
    addr: SocketAddr,
    prefix: &'static str,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GitHubServer {
    /// A server that accepts `token`, at `/` (GitHub.com) or under `/api/v3` (`ghes`).
    pub(crate) async fn start(token: &str, ghes: bool) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            private_key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
            key_id: "3380204578043523366".to_owned(),
            scopes: BTreeSet::new(),
            secrets: BTreeMap::new(),
            failure: None,
            drop_writes: false,
            clock: "2026-01-01T00:00:00Z".parse().unwrap(),
            app: None,
            requests: Vec::new(),
            headers_seen: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let prefix = if ghes { "/api/v3" } else { "" };
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, prefix, request).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Self {
            addr,
            prefix,
            state,
            task,
        }
    }

    /// The base URL a client is given.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.prefix)
    }

    /// Makes `path` (`repos/OWNER/REPO`, `repos/OWNER/REPO/environments/ENV`, `orgs/ORG`)
    /// exist.
    pub(crate) fn add_scope(&self, path: &str) {
        self.state().scopes.insert(format!("/{path}"));
    }

    /// Accepts `token` from now on (and no other).
    pub(crate) fn set_token(&self, token: &str) {
        self.state().token = token.to_owned();
    }

    /// Knows a GitHub App `app_id`, installed as `installation_id`, whose RSA public key is
    /// `public_key` (PKCS #1 DER): `POST /app/installations/{installation_id}/access_tokens`
    /// with a JWT it signed (RS256, `iss` the App's id, at most ten minutes from `iat` to
    /// `exp`) answers the token the server accepts.
    pub(crate) fn set_app(&self, app_id: &str, installation_id: u64, public_key: Vec<u8>) {
        self.state().app = Some((app_id.to_owned(), installation_id, public_key));
    }

    /// Answers `status` (GitHub's JSON error body) to `calls` until told otherwise.
    pub(crate) fn fail(&self, status: u16, calls: Calls) {
        self.state().failure = Some((status, calls));
    }

    /// Answers as GitHub does again.
    pub(crate) fn recover(&self) {
        self.state().failure = None;
    }

    /// Accepts writes (201/204) but keeps nothing: a write that GitHub lost.
    pub(crate) fn drop_writes(&self, drop: bool) {
        self.state().drop_writes = drop;
    }

    /// The plaintext a secret holds, opened with the private key.
    pub(crate) fn secret(&self, scope: &str, name: &str) -> Option<Stored> {
        self.state()
            .secrets
            .get(&(format!("/{scope}"), name.to_owned()))
            .cloned()
    }

    /// Sets the visibility of every secret of `scope` (as an administrator could).
    pub(crate) fn set_visibility(&self, scope: &str, visibility: &str) {
        let scope = format!("/{scope}");
        for ((s, _), stored) in &mut self.state().secrets {
            if *s == scope {
                stored.visibility = Some(visibility.to_owned());
            }
        }
    }

    /// Removes a secret (as someone in GitHub's UI could).
    pub(crate) fn delete(&self, scope: &str, name: &str) {
        self.state()
            .secrets
            .remove(&(format!("/{scope}"), name.to_owned()));
    }

    /// The calls, `METHOD PATH` (the prefix left out), in order.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }

    /// Each call's `Accept`, `X-GitHub-Api-Version` and `User-Agent`.
    pub(crate) fn headers_seen(&self) -> Vec<(String, String, String)> {
        self.state().headers_seen.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

fn answer(status: u16, body: Option<Value>, date: jiff::Timestamp) -> http::Response<Full<Bytes>> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "date",
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&date)
                .unwrap(),
        )
        .header("x-github-api-version-selected", "2022-11-28")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn error(status: u16, message: &str, date: jiff::Timestamp) -> http::Response<Full<Bytes>> {
    answer(
        status,
        Some(json!({"message": message, "documentation_url": DOCS})),
        date,
    )
}

/// GitHub's secret names: letters, digits and `_`, not starting with a digit or `GITHUB_`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.to_ascii_uppercase().starts_with("GITHUB_")
}

/// The scope and the last part of a secrets path.
fn route(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", "repos", owner, repo, "actions", "secrets", last] => {
            Some((format!("/repos/{owner}/{repo}"), (*last).to_owned()))
        }
        [
            "",
            "repos",
            owner,
            repo,
            "environments",
            env,
            "secrets",
            last,
        ] => Some((
            format!("/repos/{owner}/{repo}/environments/{env}"),
            (*last).to_owned(),
        )),
        ["", "orgs", org, "actions", "secrets", last] => {
            Some((format!("/orgs/{org}"), (*last).to_owned()))
        }
        _ => None,
    }
}

async fn handle(
    state: &Mutex<State>,
    prefix: &str,
    request: http::Request<Incoming>,
) -> http::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.clock += jiff::SignedDuration::from_secs(1);
    let now = s.clock;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let Some(path) = parts.uri.path().strip_prefix(prefix) else {
        return error(404, "Not Found", now);
    };
    let method = parts.method.clone();
    s.requests.push(format!("{method} {path}"));
    s.headers_seen.push((
        header("accept"),
        header("x-github-api-version"),
        header("user-agent"),
    ));

    let auth = header("authorization");
    let presented = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("token "));
    if let Some(installation) = path
        .strip_prefix("/app/installations/")
        .and_then(|p| p.strip_suffix("/access_tokens"))
    {
        return exchange(
            &s,
            &method,
            installation,
            presented.unwrap_or_default(),
            now,
        );
    }
    if presented != Some(s.token.as_str()) {
        return error(401, "Bad credentials", now);
    }
    if header("user-agent").is_empty() {
        return error(
            403,
            "Request forbidden by administrative rules. Please make sure your request has a \
             User-Agent header",
            now,
        );
    }
    let version = header("x-github-api-version");
    if !version.is_empty() && version != "2022-11-28" {
        return error(
            400,
            &format!("API version {version} is not supported."),
            now,
        );
    }
    if let Some((status, calls)) = s.failure
        && (calls == Calls::All || method == http::Method::PUT)
    {
        let message = match status {
            401 => "Bad credentials",
            404 => "Not Found",
            422 => "Validation Failed",
            _ => "Server Error",
        };
        return error(status, message, now);
    }
    let Some((scope, last)) = route(path) else {
        return error(404, "Not Found", now);
    };
    if !s.scopes.contains(&scope) {
        return error(404, "Not Found", now);
    }
    let org = scope.starts_with("/orgs/");
    match (method, last.as_str()) {
        (http::Method::GET, "public-key") => {
            let key = BASE64.encode(s.private_key.public_key().as_bytes());
            answer(200, Some(json!({"key_id": s.key_id, "key": key})), now)
        }
        (http::Method::GET, name) => {
            let key = (scope, name.to_ascii_uppercase());
            match s.secrets.get(&key) {
                None => error(404, "Not Found", now),
                Some(stored) => {
                    let mut meta = json!({
                        "name": key.1,
                        "created_at": stored.created_at.to_string(),
                        "updated_at": stored.updated_at.to_string(),
                    });
                    if let Some(visibility) = &stored.visibility {
                        meta["visibility"] = visibility.clone().into();
                    }
                    answer(200, Some(meta), now)
                }
            }
        }
        (http::Method::PUT, name) => {
            if !valid_name(name) {
                return error(
                    422,
                    "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or underscores (_).",
                    now,
                );
            }
            let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                return error(400, "Problems parsing JSON", now);
            };
            if body["key_id"].as_str() != Some(s.key_id.as_str()) {
                return error(
                    422,
                    "Invalid request.\n\nkey_id does not match the public key.",
                    now,
                );
            }
            let opened = body["encrypted_value"]
                .as_str()
                .and_then(|v| BASE64.decode(v).ok())
                .and_then(|sealed| s.private_key.unseal(&sealed).ok())
                .and_then(|plain| String::from_utf8(plain).ok());
            let Some(value) = opened else {
                return error(
                    422,
                    "Bad request - could not decrypt the secret value.",
                    now,
                );
            };
            let visibility = body["visibility"].as_str().map(str::to_owned);
            if org
                && !visibility
                    .as_deref()
                    .is_some_and(|v| ["all", "private", "selected"].contains(&v))
            {
                return error(
                    422,
                    "Invalid request.\n\n\"visibility\" wasn't supplied.",
                    now,
                );
            }
            if s.drop_writes {
                return answer(204, None, now);
            }
            let key = (scope, name.to_ascii_uppercase());
            let created_at = s.secrets.get(&key).map(|old| old.created_at);
            let stored = Stored {
                value,
                created_at: created_at.unwrap_or(now),
                updated_at: now,
                visibility: visibility.filter(|_| org),
            };
            s.secrets.insert(key, stored);
            answer(if created_at.is_some() { 204 } else { 201 }, None, now)
        }
        _ => error(404, "Not Found", now),
    }
}

/// `POST /app/installations/{installation_id}/access_tokens`.
fn exchange(
    s: &State,
    method: &http::Method,
    installation: &str,
    jwt: &str,
    now: jiff::Timestamp,
) -> http::Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iat: i64,
        exp: i64,
        iss: String,
    }
    let Some((app_id, installation_id, public_key)) = &s.app else {
        return error(404, "Not Found", now);
    };
    if method != http::Method::POST {
        return error(404, "Not Found", now);
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    // The JWT's times are the caller's (a virtual clock): checked against each other here.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let key = jsonwebtoken::DecodingKey::from_rsa_der(public_key);
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation).map(|d| d.claims);
    match claims {
        Ok(c) if c.iss == *app_id && c.iat < c.exp && c.exp - c.iat <= 600 => {}
        Ok(_) => {
            return error(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
                now,
            );
        }
        Err(_) => return error(401, "A JSON web token could not be decoded", now),
    }
    if installation != installation_id.to_string() {
        return error(404, "Not Found", now);
    }
    let expires = now + jiff::SignedDuration::from_hours(1);
    answer(
        201,
        Some(json!({"token": s.token, "expires_at": expires.to_string()})),
        now,
    )
}
