//! The API's security suite: every way in that a caller controls, driven through
//! `Api::handle` against the in-memory secret store.
//!
//! Each refusal is checked for its status, its public error code and its precise audit reason,
//! next to a baseline that shows the same request succeeds once the one thing under test is
//! put right, so a test fails if the check it names stops working.

// A test: a panic is how it reports a failure, helpers included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Once};
use std::time::Duration;

use futures::executor::block_on;
use http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::Value;

use keyrot_api::{
    Api, ApiConfig, ApiConfigError, ApiOutcome, ApiResponse, ErrorCode, RequestContext,
};
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, op};
use keyrot_core::token::{
    ApiKey, ApiKeyDigest, Claims, ClientRegistry, SigningKey, TokenConfig, TokenPolicy,
};
use keyrot_core::{
    AccessKeyId, Credentials, Policy, SecretAccessKey, SecretStore, Timestamp, UserName,
};

// ---------------------------------------------------------------------------------------------
// The world: three clients, three stored users, one API
// ---------------------------------------------------------------------------------------------

const SECRET_K1: &[u8] = b"k1-signing-secret-0123456789-abcdefghij";
const SECRET_K0: &[u8] = b"k0-retired-secret-9876543210-zyxwvutsrq";

/// Inside every client's allowlist (10.0.0.0/8).
const INSIDE: &str = "10.1.2.3";
/// Inside no client's allowlist.
const OUTSIDE: &str = "203.0.113.9";

const TTL: Duration = Duration::from_secs(30);

/// (user, access key id, secret access key) of every stored user.
const USERS: [(&str, &str, &str); 3] = [
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
const ALICE_NEXT: (&str, &str) = (
    "AKIAALICE00000000002",
    "aliceRotatedSecretMaterial/000000000002",
);

fn t0() -> Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn at(offset: u64) -> Timestamp {
    t0() + secs(offset)
}

/// Client `alpha` may read alice.
fn alpha_key() -> String {
    ApiKey::generate_from([0xa1; 32])
}

/// Client `bravo` may read bob, also from 192.0.2.0/24.
fn bravo_key() -> String {
    ApiKey::generate_from([0xb2; 32])
}

/// Client `ops` may read every user (`*`).
fn ops_key() -> String {
    ApiKey::generate_from([0xc3; 32])
}

fn registry() -> ClientRegistry {
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
    ];
    ClientRegistry::from_json(&format!(r#"{{"clients":[{}]}}"#, clients.join(","))).unwrap()
}

fn signing(kid: &str, secret: &[u8]) -> SigningKey {
    SigningKey::new(kid, secret.to_vec()).unwrap()
}

/// A token policy signing with `active`, still accepting tokens of `retired`.
fn tokens(active: (&str, &[u8]), retired: &[(&str, &[u8])]) -> TokenPolicy {
    let mut config = TokenConfig::new("keyrot", "keyrot-api", signing(active.0, active.1));
    config.retired_keys = retired.iter().map(|(k, s)| signing(k, s)).collect();
    TokenPolicy::new(config).unwrap()
}

fn user(name: &str) -> UserName {
    UserName::new(name).unwrap()
}

fn creds(id: &str, secret: &str) -> Credentials {
    Credentials {
        access_key_id: AccessKeyId::new(id).unwrap(),
        secret_access_key: SecretAccessKey::new(secret),
    }
}

/// The usual production rotation policy: 7 days of grace.
fn rotation() -> Policy {
    Policy::builder().build().unwrap()
}

struct World {
    aws: FakeAws,
    api: Api,
}

impl World {
    fn new() -> Self {
        Self::with(tokens(("k1", SECRET_K1), &[]))
    }

    fn with(tokens: TokenPolicy) -> Self {
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

    fn send(&self, request: Request<Vec<u8>>, ip: &str) -> ApiResponse {
        self.send_at(request, ip, t0())
    }

    fn send_at(&self, request: Request<Vec<u8>>, ip: &str, now: Timestamp) -> ApiResponse {
        let ctx = RequestContext::new(ip.parse().unwrap(), "req-test-1", now, "jti-test-0001");
        let response = block_on(self.api.handle(request, ctx));
        check_every_response(&response);
        response
    }

    /// A token for the client of `api_key`, issued at `now`.
    fn token_at(&self, api_key: &str, now: Timestamp) -> String {
        let response = self.send_at(generate(api_key), INSIDE, now);
        assert_eq!(response.outcome(), ApiOutcome::TokenIssued, "{response:?}");
        body(&response)["token"].as_str().unwrap().to_owned()
    }

    fn token(&self, api_key: &str) -> String {
        self.token_at(api_key, t0())
    }

    /// alpha asks for alice's key with `token` at `now`.
    fn alpha_fetches_alice(&self, token: &str, now: Timestamp) -> ApiResponse {
        self.send_at(get_key("alice", &alpha_key(), token), INSIDE, now)
    }

    /// alpha's API key and `Bearer <a fresh token>`, as header bytes.
    fn alpha_credentials(&self) -> (Vec<u8>, Vec<u8>) {
        let bearer = format!("Bearer {}", self.token(&alpha_key()));
        (alpha_key().into_bytes(), bearer.into_bytes())
    }
}

fn generate(api_key: &str) -> Request<Vec<u8>> {
    Request::post("/generate-token")
        .header("x-api-key", api_key)
        .body(Vec::new())
        .unwrap()
}

/// `GET /active-key?{query}` with an API key and a bearer token, if given.
fn active_key(query: &str, api_key: Option<&str>, token: Option<&str>) -> Request<Vec<u8>> {
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
fn get_key(name: &str, api_key: &str, token: &str) -> Request<Vec<u8>> {
    active_key(&format!("username={name}"), Some(api_key), Some(token))
}

fn body(response: &ApiResponse) -> Value {
    serde_json::from_str(response.response().body()).unwrap()
}

/// What every response must be, whatever it says.
fn check_every_response(response: &ApiResponse) {
    let headers = response.response().headers();
    assert_eq!(headers["content-type"], "application/json", "{response:?}");
    assert_eq!(headers["cache-control"], "no-store", "{response:?}");
    assert_eq!(response.status(), response.outcome().status());
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
fn assert_refused(response: &ApiResponse, code: ErrorCode, reason: &str) {
    assert_eq!(
        (response.outcome(), response.audit_reason()),
        (ApiOutcome::Failed(code), reason),
        "{response:?}"
    );
}

#[track_caller]
fn assert_unauthorized(response: &ApiResponse, reason: &str) {
    assert_refused(response, ErrorCode::Unauthorized, reason);
}

#[track_caller]
fn assert_served(response: &ApiResponse, name: &str, key_id: &str) {
    assert_eq!(response.outcome(), ApiOutcome::KeyServed, "{response:?}");
    let body = body(response);
    assert_eq!(body["UserName"], name);
    assert_eq!(body["AccessKeyId"], key_id);
}

// ---------------------------------------------------------------------------------------------
// Forged tokens
// ---------------------------------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut acc = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            acc |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((acc >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Claims as the API would issue them to `alpha` at `iat`, valid 60 s.
fn claims(iat: Timestamp) -> Claims {
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
fn sign(claims: &Claims, alg: Algorithm, kid: &str, secret: &[u8]) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// `token` with its header replaced by `header_json`.
fn with_header(token: &str, header_json: &str) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", b64url(header_json.as_bytes()))
}

/// Sends alpha's request for alice with `token`, at t0.
fn alpha_with(world: &World, token: &str) -> ApiResponse {
    world.send(get_key("alice", &alpha_key(), token), INSIDE)
}

// ---------------------------------------------------------------------------------------------
// Routes and the happy path
// ---------------------------------------------------------------------------------------------

#[test]
fn token_then_key() {
    let world = World::new();
    let response = world.send(generate(&alpha_key()), INSIDE);
    assert_eq!(response.outcome(), ApiOutcome::TokenIssued);
    assert_eq!(response.client().unwrap().as_str(), "alpha");
    let token = body(&response);
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 120);
    assert_eq!(token["expires_at"], "2025-06-01T12:02:00Z");
    assert!(!format!("{response:?}").contains(token["token"].as_str().unwrap()));

    let response = world.send(
        get_key("alice", &alpha_key(), token["token"].as_str().unwrap()),
        INSIDE,
    );
    assert_served(&response, "alice", USERS[0].1);
    let key = body(&response);
    assert_eq!(key["SecretAccessKey"], USERS[0].2);
    assert_eq!(key["RetrievedAt"], "2025-06-01T12:00:00Z");
    assert_eq!(key.as_object().unwrap().len(), 4);
    assert!(!format!("{response:?}").contains(USERS[0].2));
    assert_eq!(response.audit_reason(), "ok");
}

#[test]
fn the_api_is_shareable_and_its_future_can_move_between_threads() {
    // What the axum and Lambda adapters need.
    fn shareable<T: Send + Sync>(_: &T) {}
    fn sendable<T: Send>(_: &T) {}
    let world = World::new();
    shareable(&world.api);
    let ctx = RequestContext::new(INSIDE.parse().unwrap(), "req-1", t0(), "jti-1");
    let future = world.api.handle(generate(&alpha_key()), ctx);
    sendable(&future);
    assert_eq!(block_on(future).outcome(), ApiOutcome::TokenIssued);
}

#[test]
fn health_needs_no_credentials_and_says_nothing_secret() {
    let world = World::new();
    let response = world.send(Request::get("/health").body(Vec::new()).unwrap(), OUTSIDE);
    assert_eq!(response.outcome(), ApiOutcome::Healthy);
    assert_eq!(body(&response), serde_json::json!({"status": "ok"}));
}

#[test]
fn unknown_routes_and_methods() {
    let world = World::new();
    for path in [
        "/",
        "/active-key/",
        "/Active-Key",
        "/prod/active-key",
        "/active-key/../health",
        "/generate-token.json",
        "/%61ctive-key",
    ] {
        let response = world.send(Request::get(path).body(Vec::new()).unwrap(), INSIDE);
        assert_refused(&response, ErrorCode::NotFound, "no_route");
    }
    let cases = [
        ("GET", "/generate-token", "POST"),
        ("PUT", "/generate-token", "POST"),
        ("POST", "/active-key", "GET"),
        ("HEAD", "/active-key", "GET"),
        ("DELETE", "/health", "GET"),
        ("OPTIONS", "/health", "GET"),
    ];
    for (method, path, allow) in cases {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-api-key", alpha_key())
            .body(Vec::new())
            .unwrap();
        let response = world.send(request, INSIDE);
        assert_refused(&response, ErrorCode::MethodNotAllowed, "method_not_allowed");
        assert_eq!(response.response().headers()["allow"], allow);
    }
}

// ---------------------------------------------------------------------------------------------
// The Authorization and x-api-key headers
// ---------------------------------------------------------------------------------------------

/// Header fields as (name, raw value) pairs.
type Headers<'a> = &'a [(&'a str, &'a [u8])];

/// `method uri` with exactly these header fields and an empty body.
fn request(method: &str, uri: &str, headers: Headers<'_>) -> Request<Vec<u8>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
    }
    builder.body(Vec::new()).unwrap()
}

/// `GET /active-key?username=alice` with exactly these header fields.
fn for_alice(headers: Headers<'_>) -> Request<Vec<u8>> {
    request("GET", "/active-key?username=alice", headers)
}

#[test]
fn a_missing_credential_is_refused_on_active_key() {
    let world = World::new();
    let (key, bearer) = world.alpha_credentials();
    let bearer = bearer.as_slice();
    let cases: [(Headers<'_>, &str); 4] = [
        (&[("x-api-key", &key)], "authorization_missing"),
        // A token alone is not enough: the API key is always required.
        (&[("authorization", bearer)], "api_key_missing"),
        (
            &[("x-api-key", b""), ("authorization", bearer)],
            "api_key_missing",
        ),
        (&[], "api_key_missing"),
    ];
    for (headers, reason) in cases {
        assert_unauthorized(&world.send(for_alice(headers), INSIDE), reason);
    }
    assert_unauthorized(&world.send(generate(" "), INSIDE), "api_key_missing");
    // Baseline.
    let both = for_alice(&[("x-api-key", &key), ("authorization", bearer)]);
    assert_served(&world.send(both, INSIDE), "alice", USERS[0].1);
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_bearer() {
    let world = World::new();
    let token = world.token(&alpha_key());
    let key = alpha_key().into_bytes();
    let with_authorization = |value: &str| {
        world.send(
            for_alice(&[("x-api-key", &key), ("authorization", value.as_bytes())]),
            INSIDE,
        )
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = with_authorization(&format!("{scheme} {token}"));
        assert_served(&response, "alice", USERS[0].1);
    }
    let cases = [
        (format!("Basic {token}"), "authorization_not_bearer"),
        (format!("Bearer{token}"), "authorization_not_bearer"),
        (token.clone(), "authorization_not_bearer"),
        ("Bearer".to_owned(), "authorization_not_bearer"),
        (format!("Bearer {token} {token}"), "authorization_malformed"),
        (
            format!("Bearer {token},Bearer {token}"),
            "authorization_malformed",
        ),
        (format!("Bearer \"{token}\""), "authorization_malformed"),
    ];
    for (value, reason) in cases {
        assert_unauthorized(&with_authorization(&value), reason);
    }
}

#[test]
fn duplicated_credentials_are_refused() {
    let world = World::new();
    let (key, bearer) = world.alpha_credentials();
    let bearer = bearer.as_slice();
    // The same valid credential twice, in any spelling of the name.
    let twice_bearer = [
        ("x-api-key", key.as_slice()),
        ("Authorization", bearer),
        ("authorization", bearer),
    ];
    let twice_key = [
        ("X-API-KEY", key.as_slice()),
        ("x-api-key", &key),
        ("authorization", bearer),
    ];
    let response = world.send(for_alice(&twice_bearer), INSIDE);
    assert_unauthorized(&response, "authorization_duplicated");
    let response = world.send(for_alice(&twice_key), INSIDE);
    assert_unauthorized(&response, "api_key_duplicated");
    // One unknown and one valid key: neither is picked.
    let guess_and_key = [("x-api-key", b"krk_guess".as_slice()), ("x-api-key", &key)];
    let response = world.send(request("POST", "/generate-token", &guess_and_key), INSIDE);
    assert_unauthorized(&response, "api_key_duplicated");
}

#[test]
fn credentials_that_are_not_ascii_are_refused() {
    let world = World::new();
    let token = world.token(&alpha_key());
    let key = alpha_key().into_bytes();
    let mut bearer = format!("Bearer {token}").into_bytes();
    bearer.push(0xe9);
    let response = world.send(
        for_alice(&[("x-api-key", &key), ("authorization", &bearer)]),
        INSIDE,
    );
    assert_unauthorized(&response, "authorization_not_ascii");
    let mut odd_key = key;
    odd_key.extend_from_slice("é".as_bytes());
    let response = world.send(
        request("POST", "/generate-token", &[("x-api-key", &odd_key)]),
        INSIDE,
    );
    assert_unauthorized(&response, "api_key_not_ascii");
}

#[test]
fn every_authentication_failure_looks_the_same() {
    let world = World::new();
    let token = world.token(&alpha_key());
    let responses = [
        world.send(generate("krk_not_a_key"), INSIDE),
        world.send(generate(&alpha_key()), OUTSIDE),
        world.send(get_key("alice", &alpha_key(), "a.b.c"), INSIDE),
        world.send(get_key("alice", &bravo_key(), &token), INSIDE),
        world.send(get_key("alice", &alpha_key(), &token), OUTSIDE),
        world.send(active_key("username=alice", None, None), INSIDE),
    ];
    let reasons: Vec<_> = responses.iter().map(ApiResponse::audit_reason).collect();
    assert_eq!(
        reasons,
        [
            "api_key_unknown",
            "ip_not_allowed",
            "token_malformed",
            "token_wrong_client",
            "ip_not_allowed",
            "api_key_missing",
        ]
    );
    for response in &responses {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.response().body(), responses[0].response().body());
        assert_eq!(
            response.response().headers(),
            responses[0].response().headers()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The token
// ---------------------------------------------------------------------------------------------

#[test]
fn alg_none_is_refused() {
    let world = World::new();
    let good = sign(&claims(t0()), Algorithm::HS256, "k1", SECRET_K1);
    assert_served(&alpha_with(&world, &good), "alice", USERS[0].1);
    for alg in ["none", "None", "NONE", ""] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"k1"}}"#);
        let unsigned = with_header(&good, &header);
        let (head_and_claims, _) = unsigned.rsplit_once('.').unwrap();
        for token in [format!("{head_and_claims}."), unsigned.clone()] {
            let response = alpha_with(&world, &token);
            assert_unauthorized(&response, "token_unsupported_algorithm");
        }
    }
}

#[test]
fn other_algorithms_are_refused() {
    let world = World::new();
    // Signed with the right secret, but not HS256.
    let mut tokens: Vec<String> = [Algorithm::HS384, Algorithm::HS512]
        .into_iter()
        .map(|alg| sign(&claims(t0()), alg, "k1", SECRET_K1))
        .collect();
    // An asymmetric algorithm named over an HMAC signature (key confusion).
    let good = sign(&claims(t0()), Algorithm::HS256, "k1", SECRET_K1);
    for alg in ["RS256", "ES256", "PS256", "EdDSA"] {
        tokens.push(with_header(
            &good,
            &format!(r#"{{"alg":"{alg}","kid":"k1"}}"#),
        ));
    }
    for token in tokens {
        let response = alpha_with(&world, &token);
        assert_unauthorized(&response, "token_unsupported_algorithm");
    }
}

#[test]
fn tokens_are_refused_outside_their_lifetime() {
    let world = World::new();
    let issued = world.token(&alpha_key());
    // Not valid until a minute from now.
    let early = sign(&claims(at(60)), Algorithm::HS256, "k1", SECRET_K1);
    // (token, when, refusal or None for served): 120 s of life and 5 s of leeway.
    let cases = [
        (&issued, 125, None),
        (&issued, 126, Some("token_expired")),
        (&issued, 86_400, Some("token_expired")),
        (&early, 0, Some("token_not_yet_valid")),
        (&early, 60, None),
    ];
    for (token, offset, refusal) in cases {
        let response = world.alpha_fetches_alice(token, at(offset));
        match refusal {
            Some(reason) => assert_unauthorized(&response, reason),
            None => assert_served(&response, "alice", USERS[0].1),
        }
    }
}

#[test]
fn tokens_for_another_audience_or_from_another_issuer_are_refused() {
    let world = World::new();
    let mut other_audience = claims(t0());
    other_audience.aud = "another-api".into();
    let mut other_issuer = claims(t0());
    other_issuer.iss = "someone-else".into();
    for (claims, reason) in [
        (other_audience, "token_wrong_audience"),
        (other_issuer, "token_wrong_issuer"),
    ] {
        let token = sign(&claims, Algorithm::HS256, "k1", SECRET_K1);
        assert_unauthorized(&alpha_with(&world, &token), reason);
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let world = World::new();
    let token = world.token(&alpha_key());
    assert_served(&alpha_with(&world, &token), "alice", USERS[0].1);

    // A changed signature.
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{first}{}", &signature[1..]);
    assert_unauthorized(&alpha_with(&world, &tampered), "token_bad_signature");

    // Widened claims under the original signature.
    let mut wider = claims(t0());
    wider.scope = "*".into();
    let payload = b64url(&serde_json::to_vec(&wider).unwrap());
    let (header, _) = token.split_once('.').unwrap();
    let widened = format!("{header}.{payload}.{signature}");
    let response = world.send(get_key("bob", &alpha_key(), &widened), INSIDE);
    assert_unauthorized(&response, "token_bad_signature");

    // Signed with a key the API does not hold, under a kid it knows.
    let forged = sign(&claims(t0()), Algorithm::HS256, "k1", SECRET_K0);
    assert_unauthorized(&alpha_with(&world, &forged), "token_bad_signature");
}

#[test]
fn a_retired_kid_verifies_only_while_it_is_configured() {
    // Before the signing key rotates: k0 signs.
    let before = World::with(tokens(("k0", SECRET_K0), &[]));
    let old_token = before.token(&alpha_key());

    // During: k1 signs, k0 is retired but configured.
    let during = World::with(tokens(("k1", SECRET_K1), &[("k0", SECRET_K0)]));
    assert_served(&alpha_with(&during, &old_token), "alice", USERS[0].1);
    let new_token = during.token(&alpha_key());
    assert_served(&alpha_with(&during, &new_token), "alice", USERS[0].1);

    // After: k0 is gone.
    let after = World::with(tokens(("k1", SECRET_K1), &[]));
    assert_unauthorized(&alpha_with(&after, &old_token), "token_unknown_kid");
    assert_served(&alpha_with(&after, &new_token), "alice", USERS[0].1);
}

#[test]
fn oversized_tokens_are_refused() {
    let world = World::new();
    let huge = "a".repeat(5000);
    assert_unauthorized(&alpha_with(&world, &huge), "token_too_large");
    // A well-formed token with an enormous claim.
    let mut padded = claims(t0());
    padded.jti = "j".repeat(4000);
    let token = sign(&padded, Algorithm::HS256, "k1", SECRET_K1);
    assert_unauthorized(&alpha_with(&world, &token), "token_too_large");
    // An API key too long to hash.
    let response = world.send(generate(&"k".repeat(300)), INSIDE);
    assert_unauthorized(&response, "api_key_too_long");
}

// ---------------------------------------------------------------------------------------------
// Clients and scopes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_client_reads_only_the_users_its_scope_allows() {
    let world = World::new();
    let alpha = world.token(&alpha_key());
    let bravo = world.token(&bravo_key());
    assert_served(
        &world.send(get_key("bob", &bravo_key(), &bravo), INSIDE),
        "bob",
        USERS[1].1,
    );
    let response = world.send(get_key("bob", &alpha_key(), &alpha), INSIDE);
    assert_refused(&response, ErrorCode::Forbidden, "token_scope_denies_user");
    assert_eq!(response.client().unwrap().as_str(), "alpha");

    // The same answer for a user that exists and one that does not.
    let exists = world.send(get_key("carol", &alpha_key(), &alpha), INSIDE);
    let missing = world.send(get_key("nobody", &alpha_key(), &alpha), INSIDE);
    assert_refused(&exists, ErrorCode::Forbidden, "token_scope_denies_user");
    assert_refused(&missing, ErrorCode::Forbidden, "token_scope_denies_user");
    assert_eq!(exists.response().body(), missing.response().body());
    assert_eq!(exists.response().body(), response.response().body());

    // A `*` client tells them apart: it may read both.
    let ops = world.token(&ops_key());
    assert_served(
        &world.send(get_key("carol", &ops_key(), &ops), INSIDE),
        "carol",
        USERS[2].1,
    );
    assert_refused(
        &world.send(get_key("nobody", &ops_key(), &ops), INSIDE),
        ErrorCode::KeyNotFound,
        "no_stored_key",
    );
}

#[test]
fn the_registry_scope_bounds_a_wider_token() {
    // A token issued while alpha could still read bob, after the registry narrowed alpha.
    let world = World::new();
    let mut wider = claims(t0());
    wider.scope = "alice bob".into();
    let token = sign(&wider, Algorithm::HS256, "k1", SECRET_K1);
    assert_served(&alpha_with(&world, &token), "alice", USERS[0].1);
    let response = world.send(get_key("bob", &alpha_key(), &token), INSIDE);
    assert_refused(&response, ErrorCode::Forbidden, "client_scope_denies_user");
}

#[test]
fn a_token_only_works_with_its_own_clients_api_key() {
    let world = World::new();
    let alpha = world.token(&alpha_key());
    // alpha's token with bravo's key, for bravo's user and for alpha's.
    for name in ["bob", "alice"] {
        let response = world.send(get_key(name, &bravo_key(), &alpha), INSIDE);
        assert_unauthorized(&response, "token_wrong_client");
    }
    // And bravo's own token works with bravo's key.
    let bravo = world.token(&bravo_key());
    assert_served(
        &world.send(get_key("bob", &bravo_key(), &bravo), INSIDE),
        "bob",
        USERS[1].1,
    );
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------

/// Queries naming no valid user, and the code each must get.
fn hostile_queries() -> Vec<(String, ErrorCode)> {
    let invalid = ErrorCode::InvalidUsername;
    let query = ErrorCode::InvalidQuery;
    let mut cases: Vec<(String, ErrorCode)> = [
        ("username=../alice", invalid),
        ("username=..%2Falice", invalid),
        ("username=%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", invalid),
        ("username=alice%2F..", invalid),
        ("username=..%5Calice", invalid),
        ("username=*", invalid),
        ("username=%2A", invalid),
        ("username=alice*", invalid),
        ("username=al?ce", invalid),
        ("username=al%C3%AFce", invalid),
        ("username=%E2%80%AEalice", invalid),
        ("username=%F0%9F%94%91", invalid),
        ("username=%EF%BC%A1lice", invalid),
        ("username=%ff%fe", invalid),
        ("username=alice%00", invalid),
        ("username=alice%0D%0Aforged%20audit%20line", invalid),
        ("username=alice%20", invalid),
        ("username=%20alice", invalid),
        ("username=alice;bob", invalid),
        ("username=alice%27--", invalid),
        ("username=", invalid),
        ("username", invalid),
        ("username=alice&username=alice", query),
        ("username=alice&username=bob", query),
        ("username=bob&username=alice", query),
        ("username=alice&user=bob", query),
        ("username%5B%5D=alice", query),
        ("username=%", query),
        ("username=%zz", query),
        ("", ErrorCode::MissingUsername),
        ("user=alice", query),
    ]
    .into_iter()
    .map(|(q, c)| (q.to_owned(), c))
    .collect();
    cases.push((format!("username={}", "a".repeat(65)), invalid));
    cases.push((format!("username={}", "a".repeat(1000)), invalid));
    cases.push((format!("username={}", "%C3%A9".repeat(64)), invalid));
    cases
}

#[test]
fn hostile_usernames_are_bad_requests() {
    let world = World::new();
    for api_key in [alpha_key(), ops_key()] {
        let token = world.token(&api_key);
        for (query, code) in hostile_queries() {
            let response = world.send(active_key(&query, Some(&api_key), Some(&token)), INSIDE);
            assert_eq!(response.outcome(), ApiOutcome::Failed(code), "{query}");
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            // The answer never echoes the input.
            let text = response.response().body();
            for echo in ["passwd", "forged", "bob", "alice", "%"] {
                assert!(!text.contains(echo), "{query}: {text}");
            }
        }
        // The longest valid name is a name: not found (ops) or not allowed (alpha).
        let longest = format!("username={}", "a".repeat(64));
        let response = world.send(active_key(&longest, Some(&api_key), Some(&token)), INSIDE);
        assert!(response.status() == 404 || response.status() == 403);
    }
}

#[test]
fn bad_input_from_unauthenticated_callers_is_401_first() {
    // Nothing about the input is confirmed before the caller authenticates.
    let world = World::new();
    for (query, _) in hostile_queries() {
        let response = world.send(active_key(&query, Some("krk_nope"), Some("a.b.c")), INSIDE);
        assert_unauthorized(&response, "api_key_unknown");
    }
}

#[test]
fn oversized_requests_get_the_4xx_that_fits() {
    let world = World::new();
    let (key, bearer) = world.alpha_credentials();
    let credentials = [("x-api-key", key.as_slice()), ("authorization", &bearer)];
    // alice's key with both credentials and `extra` headers.
    let alice_with = |extra: Headers<'_>| {
        let headers: Vec<_> = credentials.iter().chain(extra).copied().collect();
        world.send(for_alice(&headers), INSIDE)
    };
    assert_served(&alice_with(&[]), "alice", USERS[0].1);

    let padding = vec![b'p'; 9000];
    let big_bearer = format!("Bearer {}", "a".repeat(9000)).into_bytes();
    let medium = vec![b'p'; 7000];
    let three_medium = [
        ("x-pad-1", &medium[..]),
        ("x-pad-2", &medium),
        ("x-pad-3", &medium),
    ];
    let many = vec![("x-many", b"1".as_slice()); 100];
    let headers_cases: [(Headers<'_>, &str); 3] = [
        (&[("x-padding", &padding)], "header_too_large"),
        (&three_medium, "headers_too_large"),
        (&many, "too_many_headers"),
    ];
    for (extra, reason) in headers_cases {
        assert_refused(&alice_with(extra), ErrorCode::HeadersTooLarge, reason);
    }
    let huge_token = [
        ("x-api-key", key.as_slice()),
        ("authorization", &big_bearer),
    ];
    let response = world.send(for_alice(&huge_token), INSIDE);
    assert_refused(&response, ErrorCode::HeadersTooLarge, "header_too_large");

    let long_query = format!("/active-key?username=alice&pad={}", "x".repeat(3000));
    let long_path = format!("/{}", "p".repeat(3000));
    for uri in [long_query, long_path] {
        let response = world.send(request("GET", &uri, &credentials), INSIDE);
        assert_refused(&response, ErrorCode::UriTooLong, "uri_too_long");
    }

    let mut post = request("POST", "/generate-token", &[("x-api-key", &key)]);
    *post.body_mut() = vec![b'{'; 1025];
    let response = world.send(post, INSIDE);
    assert_refused(&response, ErrorCode::BodyTooLarge, "body_too_large");
    let mut post = request("POST", "/generate-token", &[("x-api-key", &key)]);
    *post.body_mut() = b"{}".to_vec();
    assert_eq!(world.send(post, INSIDE).outcome(), ApiOutcome::TokenIssued);
}

// ---------------------------------------------------------------------------------------------
// The source address
// ---------------------------------------------------------------------------------------------

const SPOOFING_HEADERS: [&str; 5] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-client-ip",
    "true-client-ip",
];

fn with_spoof(request: Request<Vec<u8>>, name: &str, ip: &str) -> Request<Vec<u8>> {
    let (mut parts, body) = request.into_parts();
    let value = if name == "forwarded" {
        format!("for={ip}")
    } else {
        format!("{ip}, 198.51.100.1")
    };
    parts.headers.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    Request::from_parts(parts, body)
}

#[test]
fn forwarded_headers_never_stand_in_for_the_source_address() {
    let world = World::new();
    let token = world.token(&alpha_key());
    for name in SPOOFING_HEADERS {
        // Outside the allowlist, claiming to be inside: refused.
        let response = world.send(with_spoof(generate(&alpha_key()), name, INSIDE), OUTSIDE);
        assert_unauthorized(&response, "ip_not_allowed");
        let request = with_spoof(get_key("alice", &alpha_key(), &token), name, INSIDE);
        assert_unauthorized(&world.send(request, OUTSIDE), "ip_not_allowed");
        // Inside, claiming to be outside: allowed.
        let response = world.send(with_spoof(generate(&alpha_key()), name, OUTSIDE), INSIDE);
        assert_eq!(response.outcome(), ApiOutcome::TokenIssued);
        let request = with_spoof(get_key("alice", &alpha_key(), &token), name, OUTSIDE);
        assert_served(&world.send(request, INSIDE), "alice", USERS[0].1);
    }
}

#[test]
fn allowlists_are_per_client_and_ipv6_mapped_addresses_count_as_ipv4() {
    let world = World::new();
    // bravo may call from 192.0.2.0/24, alpha may not.
    assert_eq!(
        world.send(generate(&bravo_key()), "192.0.2.10").outcome(),
        ApiOutcome::TokenIssued
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "192.0.2.10"),
        "ip_not_allowed",
    );
    assert_eq!(
        world
            .send(generate(&alpha_key()), "::ffff:10.1.2.3")
            .outcome(),
        ApiOutcome::TokenIssued
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "::ffff:203.0.113.9"),
        "ip_not_allowed",
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "2001:db8::1"),
        "ip_not_allowed",
    );
}

// ---------------------------------------------------------------------------------------------
// The cache and the store
// ---------------------------------------------------------------------------------------------

#[test]
fn a_rotated_key_is_served_once_the_cache_ttl_has_passed() {
    let world = World::new();
    let token = world.token(&alpha_key());
    let fetch = |offset: u64| world.alpha_fetches_alice(&token, at(offset));
    assert_served(&fetch(0), "alice", USERS[0].1);

    // The rotator publishes a new key.
    let alice = user("alice");
    let next = creds(ALICE_NEXT.0, ALICE_NEXT.1);
    block_on(world.aws.store.put_pending(&alice, &next, at(1))).unwrap();
    block_on(world.aws.store.promote(&alice, &next.access_key_id)).unwrap();
    assert_eq!(
        world.aws.store.current_key(&alice),
        Some(next.access_key_id)
    );

    let cached = fetch(29);
    assert_served(&cached, "alice", USERS[0].1);
    assert_eq!(body(&cached)["RetrievedAt"], "2025-06-01T12:00:00Z");
    let fresh = fetch(30);
    assert_served(&fresh, "alice", ALICE_NEXT.0);
    assert_eq!(body(&fresh)["SecretAccessKey"], ALICE_NEXT.1);
    assert_eq!(body(&fresh)["RetrievedAt"], "2025-06-01T12:00:30Z");
    // A clock that steps back does not resurrect anything stale.
    assert_served(&fetch(10), "alice", ALICE_NEXT.0);
}

#[test]
fn new_secrets_keep_the_key_cache_and_take_effect_at_once() {
    let world = World::new();
    let token = world.token(&alpha_key());
    assert_served(
        &world.alpha_fetches_alice(&token, at(0)),
        "alice",
        USERS[0].1,
    );
    let reads = world.aws.plan.calls(op::STORE_CURRENT);
    let reloaded = |clients: ClientRegistry| World {
        api: world
            .api
            .with_secrets(tokens(("k1", SECRET_K1), &[]), clients),
        aws: world.aws.clone(),
    };

    // Read again unchanged: alice's key comes from the cache the old API filled.
    let same = reloaded(registry());
    assert_served(
        &same.alpha_fetches_alice(&token, at(2)),
        "alice",
        USERS[0].1,
    );
    assert_eq!(
        world.aws.plan.calls(op::STORE_CURRENT),
        reads,
        "served from the cache"
    );

    // Read again without client alpha: refused at once, whatever is cached.
    let without_alpha = reloaded(ClientRegistry::from_json(r#"{"clients": []}"#).unwrap());
    let refused = without_alpha.alpha_fetches_alice(&token, at(3));
    assert_eq!(
        refused.outcome(),
        ApiOutcome::Failed(ErrorCode::Unauthorized)
    );
}

#[test]
fn the_cache_ttl_must_be_shorter_than_the_grace_period() {
    let store =
        || -> Arc<dyn SecretStore> { Arc::new(FakeAws::new(t0(), 1, FaultRates::none()).store) };
    let grace = rotation().grace();
    let mut config = ApiConfig::new(&rotation());
    config.cache_ttl = grace;
    let err = Api::new(
        config.clone(),
        tokens(("k1", SECRET_K1), &[]),
        registry(),
        store(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApiConfigError::CacheTtlNotBelowGrace {
            cache_ttl: grace,
            grace
        }
    );
    assert!(
        err.to_string()
            .contains("shorter than the rotation grace period")
    );
    config.cache_ttl = grace - secs(1);
    assert!(Api::new(config, tokens(("k1", SECRET_K1), &[]), registry(), store()).is_ok());

    // A demo policy with 20 s of grace cannot keep the default 30 s TTL.
    let demo = Policy::builder().grace(secs(20)).build().unwrap();
    let config = ApiConfig::new(&demo);
    assert!(matches!(
        Api::new(config, tokens(("k1", SECRET_K1), &[]), registry(), store()),
        Err(ApiConfigError::CacheTtlNotBelowGrace { .. })
    ));

    let mut config = ApiConfig::new(&rotation());
    config.limits.max_header_len = 1000;
    assert!(matches!(
        Api::new(config, tokens(("k1", SECRET_K1), &[]), registry(), store()),
        Err(ApiConfigError::LimitTooSmall {
            limit: "max_header_len",
            ..
        })
    ));
}

#[test]
fn a_failing_store_is_503_and_never_served_stale() {
    let world = World::new();
    let token = world.token(&alpha_key());
    let fetch = |offset: u64| world.alpha_fetches_alice(&token, at(offset));
    assert_served(&fetch(0), "alice", USERS[0].1);
    world
        .aws
        .plan
        .fail_at(op::STORE_CURRENT, FaultKind::Throttle);
    // Inside the TTL the store is not asked.
    assert_served(&fetch(10), "alice", USERS[0].1);
    let response = fetch(31);
    assert_refused(&response, ErrorCode::StoreUnavailable, "store_error");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_served(&fetch(32), "alice", USERS[0].1);

    // A user whose secret is gone is not found, also after it was cached.
    assert!(world.aws.store.delete_secret(&user("alice")));
    assert_refused(&fetch(70), ErrorCode::KeyNotFound, "no_stored_key");
}

// ---------------------------------------------------------------------------------------------
// No 5xx from any input, no secret in any log
// ---------------------------------------------------------------------------------------------

/// A varied set of requests, good and bad, with the address each comes from.
fn assorted_requests(world: &World) -> Vec<(Request<Vec<u8>>, &'static str)> {
    let alpha = world.token(&alpha_key());
    let bravo = world.token(&bravo_key());
    let forged = sign(&claims(t0()), Algorithm::HS256, "k1", SECRET_K0);
    let none = {
        let t = with_header(&alpha, r#"{"alg":"none","kid":"k1"}"#);
        format!("{}.", t.rsplit_once('.').unwrap().0)
    };
    let get = |uri: &str| Request::get(uri).body(Vec::new()).unwrap();
    let mut requests = vec![
        (generate(&alpha_key()), INSIDE),
        (generate(&bravo_key()), OUTSIDE),
        (generate(&ops_key()), INSIDE),
        (generate("krk_guess"), INSIDE),
        (get_key("alice", &alpha_key(), &alpha), INSIDE),
        (get_key("bob", &bravo_key(), &bravo), INSIDE),
        (get_key("bob", &alpha_key(), &alpha), INSIDE),
        (get_key("bob", &bravo_key(), &alpha), INSIDE),
        (get_key("alice", &alpha_key(), &forged), INSIDE),
        (get_key("alice", &alpha_key(), &none), INSIDE),
        (get_key("alice", &alpha_key(), &alpha), OUTSIDE),
        (
            with_spoof(
                get_key("alice", &alpha_key(), &alpha),
                "x-forwarded-for",
                INSIDE,
            ),
            OUTSIDE,
        ),
        (
            active_key("username=alice", Some(&alpha_key()), None),
            INSIDE,
        ),
        (active_key("username=alice", None, Some(&alpha)), INSIDE),
        (get("/health"), INSIDE),
        (get("/"), INSIDE),
        (get("/active-key"), INSIDE),
        (get("/generate-token"), INSIDE),
        (get("/active-key?username=alice&username=bob"), INSIDE),
        (get("/%00"), INSIDE),
        (get("/active-key?%"), INSIDE),
        (get("/active-key?=&=&&=="), INSIDE),
        (get("http://evil.example/active-key?username=alice"), INSIDE),
        (get("*"), INSIDE),
    ];
    for (query, _) in hostile_queries() {
        requests.push((active_key(&query, Some(&alpha_key()), Some(&alpha)), INSIDE));
    }
    for method in [
        "PATCH",
        "TRACE",
        "CONNECT",
        "X-WEIRD-METHOD-THAT-IS-QUITE-LONG",
    ] {
        let request = Request::builder()
            .method(method)
            .uri("/active-key?username=alice")
            .header("x-api-key", alpha_key())
            .header("authorization", format!("Bearer {alpha}"))
            .body(b"\x00\xff garbage".to_vec())
            .unwrap();
        requests.push((request, INSIDE));
    }
    let request = Request::post("/generate-token")
        .header("x-api-key", alpha_key())
        .header("content-type", "text/html")
        .header("content-length", "-1")
        .header("transfer-encoding", "chunked, gzip")
        .header(
            "x-odd",
            http::HeaderValue::from_bytes(b"\xff\xfe\x80").unwrap(),
        )
        .body(vec![0xff; 1024])
        .unwrap();
    requests.push((request, INSIDE));
    requests
}

#[test]
fn no_request_in_the_assortment_gets_a_5xx() {
    let world = World::new();
    let requests = assorted_requests(&world);
    assert!(requests.len() > 60);
    for (request, ip) in requests {
        let uri = request.uri().to_string();
        let response = world.send(request, ip);
        assert!(!response.status().is_server_error(), "{uri}: {response:?}");
    }
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
fn capture_logs() {
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
fn take_logs() -> String {
    String::from_utf8(LOGS.with_borrow_mut(std::mem::take)).unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn no_secret_reaches_the_logs() {
    capture_logs();
    take_logs();
    let mut seen_tokens = Vec::new();
    let mut requests = 0;
    let world = World::with(tokens(("k1", SECRET_K1), &[("k0", SECRET_K0)]));
    for (request, ip) in assorted_requests(&world) {
        if let Some(value) = request.headers().get("authorization") {
            seen_tokens.push(value.to_str().unwrap_or_default().to_owned());
        }
        let response = world.send(request, ip);
        if response.outcome() == ApiOutcome::TokenIssued {
            seen_tokens.push(body(&response)["token"].as_str().unwrap().to_owned());
        }
        requests += 1;
    }
    requests += 2; // the tokens assorted_requests asked for
    world
        .aws
        .plan
        .fail_at(op::STORE_CURRENT, FaultKind::FailBefore);
    let token = world.token(&ops_key());
    seen_tokens.push(token.clone());
    let response = world.send_at(get_key("carol", &ops_key(), &token), INSIDE, at(1));
    assert_eq!(
        response.outcome().error(),
        Some(ErrorCode::StoreUnavailable)
    );
    requests += 2;
    let logs = take_logs();

    // One audit line per request, with the precise reasons.
    assert_eq!(logs.matches("keyrot::audit").count(), requests, "{logs}");
    for reason in [
        "ip_not_allowed",
        "token_bad_signature",
        "token_unsupported_algorithm",
        "token_wrong_client",
        "username_repeated",
        "store_error",
        "api_key_unknown",
    ] {
        assert!(logs.contains(reason), "no {reason} in the logs");
    }
    assert!(logs.contains(r#"user="alice""#) || logs.contains("user=alice"));
    // Hostile names are not logged as users.
    assert!(!logs.contains("passwd") && !logs.contains("forged audit"));

    let mut secrets: Vec<String> = vec![alpha_key(), bravo_key(), ops_key()];
    for (_, _, secret) in USERS {
        secrets.push(secret.to_owned());
    }
    for key in [SECRET_K1, SECRET_K0] {
        secrets.push(String::from_utf8(key.to_vec()).unwrap());
        secrets.push(hex(key));
    }
    assert!(seen_tokens.len() > 10);
    for token in &seen_tokens {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        secrets.push(token.to_owned());
        if let Some((_, signature)) = token.rsplit_once('.')
            && signature.len() > 16
        {
            secrets.push(signature.to_owned());
        }
    }
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret leaked: {secret}");
        assert!(
            !logs.contains(&secret[..16]),
            "part of a secret leaked: {secret}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary requests
// ---------------------------------------------------------------------------------------------

/// A header that may be anything `http` can carry.
fn any_header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        1 => Just("authorization".to_owned()),
        1 => Just("x-api-key".to_owned()),
        1 => Just("x-forwarded-for".to_owned()),
        1 => Just("content-length".to_owned()),
        6 => "[a-zA-Z][a-zA-Z0-9-]{0,30}",
    ];
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,9000}".prop_map(String::into_bytes),
    ];
    (name, value)
}

fn regex(pattern: &str) -> impl Strategy<Value = String> + use<> {
    proptest::string::string_regex(pattern).unwrap()
}

/// Requests that are mostly almost right, so that most get past the early checks.
fn request_strategy(alpha_token: &str) -> impl Strategy<Value = Request<Vec<u8>>> + use<> {
    const URI_CHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]";
    // Mostly a route with its own method, so that most requests get past routing.
    let route = prop_oneof![
        6 => Just(("GET".to_owned(), "/active-key".to_owned())),
        3 => Just(("POST".to_owned(), "/generate-token".to_owned())),
        1 => Just(("GET".to_owned(), "/health".to_owned())),
        2 => (
            prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), "[A-Z]{1,12}"],
            prop_oneof![
                Just("/active-key".to_owned()),
                regex(&format!("/{URI_CHARS}{{0,60}}")),
            ],
        ),
    ];
    let query = prop_oneof![
        1 => Just(None),
        3 => "username=(alice|bob|carol|nobody)".prop_map(Some),
        2 => regex(&format!("username={URI_CHARS}{{0,80}}")).prop_map(Some),
        1 => regex(&format!("{URI_CHARS}{{0,300}}")).prop_map(Some),
    ];
    let api_key = prop_oneof![
        3 => Just(Some(alpha_key())),
        1 => Just(Some(bravo_key())),
        1 => Just(None),
        1 => "[ -~]{0,300}".prop_map(Some),
    ];
    let authorization = prop_oneof![
        3 => Just(Some(format!("Bearer {alpha_token}"))),
        1 => Just(Some(format!("bearer {alpha_token}"))),
        1 => Just(None),
        1 => "(Bearer |bearer |Basic )?[ -~]{0,5000}".prop_map(Some),
    ];
    let extra = proptest::collection::vec(any_header(), 0..3);
    let body = prop_oneof![
        4 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), 0..1500),
    ];
    (route, query, api_key, authorization, extra, body).prop_filter_map(
        "not a valid http request",
        |((method, path), query, api_key, authorization, extra, body)| {
            let uri = match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut builder = Request::builder().method(method.as_str()).uri(uri);
            let credentials = [("x-api-key", api_key), ("authorization", authorization)];
            let headers = credentials
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?.into_bytes())))
                .chain(extra);
            for (name, value) in headers {
                let Ok(value) = http::HeaderValue::from_bytes(&value) else {
                    continue;
                };
                builder = builder.header(name, value);
            }
            builder.body(body).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_never_get_a_5xx(
        request in request_strategy(&World::new().token(&alpha_key())),
        ip in prop_oneof![4 => Just(INSIDE), 1 => Just(OUTSIDE), 1 => Just("::1")],
        offset in 0u64..150,
    ) {
        // Every world signs with the same key, so the token verifies here too.
        let world = World::new();
        let response = world.send_at(request, ip, at(offset));
        prop_assert!(!response.status().is_server_error(), "{:?}", response);
    }
}
