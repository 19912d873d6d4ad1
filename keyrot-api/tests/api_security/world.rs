//! The world every test runs in: four clients, three stored users, one API; the requests,
//! tokens and checks the tests share; and the log capture.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Once};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::executor::block_on;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use keyrot_api::{Api, ApiConfig, ApiOutcome, ApiResponse, ErrorCode, RequestContext};
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::token::{
    ApiKey, ApiKeyDigest, Claims, ClientRegistry, SigningKey, TokenConfig, TokenPolicy,
};
use keyrot_core::{AccessKeyId, Credentials, Policy, SecretAccessKey, Timestamp, UserName};

pub(crate) const SECRET_K1: &[u8] = b"k1-signing-secret-0123456789-abcdefghij";
pub(crate) const SECRET_K0: &[u8] = b"k0-retired-secret-9876543210-zyxwvutsrq";

/// Inside every client's allowlist (10.0.0.0/8).
pub(crate) const INSIDE: &str = "10.1.2.3";
/// Inside no client's allowlist.
pub(crate) const OUTSIDE: &str = "203.0.113.9";

pub(crate) const TTL: Duration = Duration::from_secs(30);

/// (user, access key id, secret access key) of every stored user.
pub(crate) const USERS: [(&str, &str, &str); 3] = [
    (
        "alice",
        "AKIAALICE00000000001",
        "aliceSecretKeyMaterial/00000000000000001",
    ),
    (
        "bob",
        "AKIABOB0000000000001",
        "bobSecretKeyMaterial/000000000000000000001",
    ),
    (
        "carol",
        "AKIACAROL00000000001",
        "carolSecretKeyMaterial/00000000000000001",
    ),
];

/// The key alice's is rotated to in the cache test.
pub(crate) const ALICE_NEXT: (&str, &str) = (
    "AKIAALICE00000000002",
    "aliceRotatedSecretMaterial/000000000002",
);

pub(crate) fn t0() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(crate) fn at(offset: u64) -> Timestamp {
    t0() + secs(offset)
}

/// Client `alpha` may read alice.
pub(crate) fn alpha_key() -> String {
    ApiKey::generate_from([0xa1; 32])
}

/// Client `bravo` may read bob, also from 192.0.2.0/24.
pub(crate) fn bravo_key() -> String {
    ApiKey::generate_from([0xb2; 32])
}

/// Client `ops` may read every user (`*`).
pub(crate) fn ops_key() -> String {
    ApiKey::generate_from([0xc3; 32])
}

/// Client `admin` holds the admin right (`keyrot:admin`) and may read no user's key.
pub(crate) fn admin_key() -> String {
    ApiKey::generate_from([0xd4; 32])
}

pub(crate) fn registry() -> ClientRegistry {
    let client = |id: &str, key: &str, scope: &str, cidrs: &str| {
        format!(
            r#"{{"id":"{id}","api_key_sha256":"{}","scope":{scope},"allowed_cidrs":{cidrs}}}"#,
            ApiKeyDigest::of(key)
        )
    };
    let clients = [
        client("alpha", &alpha_key(), r#"["alice"]"#, r#"["10.0.0.0/8"]"#),
        client(
            "bravo",
            &bravo_key(),
            r#"["bob"]"#,
            r#"["10.0.0.0/8","192.0.2.0/24"]"#,
        ),
        client("ops", &ops_key(), r#"["*"]"#, r#"["10.0.0.0/8"]"#),
        client(
            "admin",
            &admin_key(),
            r#"["keyrot:admin"]"#,
            r#"["10.0.0.0/8"]"#,
        ),
    ];
    ClientRegistry::from_json(&format!(r#"{{"clients":[{}]}}"#, clients.join(","))).unwrap()
}

pub(crate) fn signing(kid: &str, secret: &[u8]) -> SigningKey {
    SigningKey::new(kid, secret.to_vec()).unwrap()
}

/// A token policy signing with `active`, still accepting tokens of `retired`.
pub(crate) fn tokens(active: (&str, &[u8]), retired: &[(&str, &[u8])]) -> TokenPolicy {
    let mut config = TokenConfig::new("keyrot", "keyrot-api", signing(active.0, active.1));
    config.retired_keys = retired.iter().map(|(k, s)| signing(k, s)).collect();
    TokenPolicy::new(config).unwrap()
}

pub(crate) fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

pub(crate) fn creds(id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: AccessKeyId::new(id).unwrap(),
        secret_access_key: SecretAccessKey::new(secret),
    }
}

/// The usual production rotation policy: 7 days of grace.
pub(crate) fn rotation() -> Policy {
    Policy::builder().build().unwrap()
}

pub(crate) struct World {
    pub(crate) aws: FakeAws,
    pub(crate) api: Api,
}

impl World {
    pub(crate) fn new() -> Self {
        Self::with(tokens(("k1", SECRET_K1), &[]))
    }

    pub(crate) fn with(tokens: TokenPolicy) -> Self {
        capture_logs();
        let aws = FakeAws::new(t0(), 7, FaultRates::none());
        for (name, id, secret) in USERS {
            assert!(
                aws.store
                    .create_secret(&user(name), &creds(id, secret), t0() - secs(86_400))
            );
        }
        let mut config = ApiConfig::new(&rotation());
        config.cache_ttl = TTL;
        let api = Api::new(config, tokens, registry(), Arc::new(aws.store.clone())).unwrap();
        Self { aws, api }
    }

    pub(crate) fn send(&self, request: Request<Vec<u8>>, ip: &str) -> ApiResponse {
        self.send_at(request, ip, t0())
    }

    pub(crate) fn send_at(
        &self,
        request: Request<Vec<u8>>,
        ip: &str,
        now: Timestamp,
    ) -> ApiResponse {
        let ctx = RequestContext::new(ip.parse().unwrap(), "req-test-1", now, "jti-test-0001");
        let response = block_on(self.api.handle(request, ctx));
        check_every_response(&response);
        response
    }

    /// A token for the client of `api_key`, issued at `now`.
    pub(crate) fn token_at(&self, api_key: &str, now: Timestamp) -> String {
        let response = self.send_at(generate(api_key), INSIDE, now);
        assert_eq!(response.outcome(), ApiOutcome::TokenIssued, "{response:?}");
        body(&response)["token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn token(&self, api_key: &str) -> String {
        self.token_at(api_key, t0())
    }

    /// alpha asks for alice's key with `token` at `now`.
    pub(crate) fn alpha_fetches_alice(&self, token: &str, now: Timestamp) -> ApiResponse {
        self.send_at(get_key("alice", &alpha_key(), token), INSIDE, now)
    }

    /// alpha's API key and `Bearer <a fresh token>`, as header bytes.
    pub(crate) fn alpha_credentials(&self) -> (Vec<u8>, Vec<u8>) {
        let bearer = format!("Bearer {}", self.token(&alpha_key()));
        (alpha_key().into_bytes(), bearer.into_bytes())
    }
}

pub(crate) fn generate(api_key: &str) -> Request<Vec<u8>> {
    Request::post("/generate-token")
        .header("x-api-key", api_key)
        .body(Vec::new())
        .unwrap()
}

/// `GET /active-key?{query}` with an API key and a bearer token, if given.
pub(crate) fn active_key(
    query: &str,
    api_key: Option<&str>,
    token: Option<&str>,
) -> Request<Vec<u8>> {
    let mut builder = Request::get(format!("/active-key?{query}"));
    if let Some(key) = api_key {
        builder = builder.header("x-api-key", key);
    }
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Vec::new()).unwrap()
}

/// `GET /active-key?username={name}` with both credentials.
pub(crate) fn get_key(name: &str, api_key: &str, token: &str) -> Request<Vec<u8>> {
    active_key(&format!("username={name}"), Some(api_key), Some(token))
}

pub(crate) fn body(response: &ApiResponse) -> Value {
    serde_json::from_str(response.response().body()).unwrap()
}

/// What every response must be, whatever it says.
pub(crate) fn check_every_response(response: &ApiResponse) {
    let headers = response.response().headers();
    let page = response.outcome() == ApiOutcome::PageServed;
    let content_type = if page {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    };
    assert_eq!(headers["content-type"], content_type, "{response:?}");
    assert_eq!(headers["cache-control"], "no-store", "{response:?}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{response:?}");
    assert_eq!(response.status(), response.outcome().status());
    // A 401 challenges (RFC 9110 §11.6.1), a 429 says when to come back; nothing else does.
    let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap());
    match response.status() {
        StatusCode::UNAUTHORIZED => assert!(
            challenge.is_some_and(|c| c.starts_with(r#"Bearer realm="keyrot""#)),
            "{response:?}"
        ),
        _ => assert_eq!(challenge, None, "{response:?}"),
    }
    assert_eq!(
        headers.contains_key("retry-after"),
        response.status() == StatusCode::TOO_MANY_REQUESTS,
        "{response:?}"
    );
    if page {
        // The status page: HTML, under the page's own headers (the admin tests check them).
        assert!(response.response().body().starts_with("<!DOCTYPE html>"));
        return;
    }
    let body: Value = serde_json::from_str(response.response().body())
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {response:?}"));
    match response.outcome().error() {
        Some(code) => {
            assert_eq!(body["error"]["code"], code.as_str(), "{response:?}");
            assert!(body["error"]["message"].is_string());
            assert_eq!(body.as_object().unwrap().len(), 1);
        }
        None => assert_eq!(response.status(), StatusCode::OK),
    }
}

#[track_caller]
pub(crate) fn assert_refused(response: &ApiResponse, code: ErrorCode, reason: &str) {
    assert_eq!(
        (response.outcome(), response.audit_reason()),
        (ApiOutcome::Failed(code), reason),
        "{response:?}"
    );
}

#[track_caller]
pub(crate) fn assert_unauthorized(response: &ApiResponse, reason: &str) {
    assert_refused(response, ErrorCode::Unauthorized, reason);
}

#[track_caller]
pub(crate) fn assert_served(response: &ApiResponse, name: &str, key_id: &str) {
    assert_eq!(response.outcome(), ApiOutcome::KeyServed, "{response:?}");
    let body = body(response);
    assert_eq!(body["UserName"], name);
    assert_eq!(body["AccessKeyId"], key_id);
}

/// Unpadded base64url, as JWS writes a token's parts.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims as the API would issue them to `alpha` at `iat`, valid 60 s.
pub(crate) fn claims(iat: Timestamp) -> Claims {
    let iat = iat.as_second();
    Claims {
        iss: "keyrot".into(),
        aud: "keyrot-api".into(),
        sub: "alpha".into(),
        iat,
        nbf: iat,
        exp: iat + 60,
        jti: "forged-0001".into(),
        scope: "alice".into(),
    }
}

/// Signs `claims` as anyone holding `secret` could.
pub(crate) fn sign(claims: &Claims, alg: Algorithm, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// `token` with its header replaced by `header_json`.
pub(crate) fn with_header(token: &str, header_json: &str) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64url(header_json.as_bytes()))
}

/// Sends alpha's request for alice with `token`, at t0.
pub(crate) fn alpha_with(world: &World, token: &str) -> ApiResponse {
    world.send(get_key("alice", &alpha_key(), token), INSIDE)
}

/// Header fields as (name, raw value) pairs.
pub(crate) type Headers<'a> = &'a [(&'a str, &'a [u8])];

/// `method uri` with exactly these header fields and an empty body.
pub(crate) fn request(method: &str, uri: &str, headers: Headers<'_>) -> Request<Vec<u8>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    builder.body(Vec::new()).unwrap()
}

/// `GET /active-key?username=alice` with exactly these header fields.
pub(crate) fn for_alice(headers: Headers<'_>) -> Request<Vec<u8>> {
    request("GET", "/active-key?username=alice", headers)
}

thread_local! {
    static LOGS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes log output to the current thread's buffer: each test runs on its own thread, and
/// `Api::handle` runs on the test's thread, so a test reads exactly its own logs.
struct ThreadLogs;

impl Write for ThreadLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.with_borrow_mut(|logs| logs.extend_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once for the whole test binary, a global subscriber that records everything at
/// TRACE into per-thread buffers. A global one rather than `with_default`: tracing caches
/// whether a callsite is enabled across threads, and a scoped subscriber in one test can miss
/// events while other tests run without one.
pub(crate) fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadLogs)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Everything logged on this thread since the last call.
pub(crate) fn take_logs() -> String {
    String::from_utf8(LOGS.with_borrow_mut(std::mem::take)).unwrap()
}
