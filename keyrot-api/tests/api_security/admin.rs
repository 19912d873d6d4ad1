//! The admin routes, `GET /admin/status` and `GET /admin/page`: the same API key, bearer
//! token and allowlist as `/active-key`, then the admin right (`keyrot:admin`, never implied
//! by `*`) in both the token's scope and the client's; the API's headers and the page's strict
//! CSP; and no secret in any answer.

use std::sync::Arc;

use http::{Request, StatusCode};
use jsonwebtoken::Algorithm;

use keyrot_api::{Api, ApiConfig, ApiOutcome, ApiResponse, ErrorCode};
use keyrot_core::fake::{FakeAws, FaultRates};
use keyrot_core::{KeyStatus, Rotator};

use crate::world::*;

const ROUTES: [&str; 2] = ["/admin/status", "/admin/page"];

/// The page's Content-Security-Policy, as strict as the page promises: nothing may load, run,
/// submit or frame it.
const STRICT_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The world's clients and users, the users in IAM too (a key each, stored as their
/// current version), the admin routes answered by a rotator over them; and every secret the
/// world holds, none of which an admin answer may carry.
fn admin_world() -> (World, Vec<String>) {
    capture_logs();
    let aws = FakeAws::new(t0(), 7, FaultRates::none());
    let mut secrets: Vec<String> = vec![
        String::from_utf8(SECRET_K1.to_vec()).unwrap(),
        alpha_key(),
        bravo_key(),
        ops_key(),
        admin_key(),
    ];
    for (name, _, _) in USERS {
        let name = user(name);
        aws.iam.add_managed_user(name.clone());
        let key = aws
            .iam
            .add_key(&name, KeyStatus::Active, t0() - secs(86_400))
            .unwrap();
        assert!(
            aws.store
                .create_secret(&name, &key.credentials(), t0() - secs(86_400))
        );
        secrets.push(key.secret.expose().to_owned());
    }
    let mut config = ApiConfig::new(&rotation());
    config.cache_ttl = TTL;
    let rotator = Rotator::new(aws.ports(), rotation());
    let api = Api::new(
        config,
        tokens(("k1", SECRET_K1), &[]),
        registry(),
        Arc::new(aws.store.clone()),
    )
    .unwrap()
    .with_status_source(Arc::new(rotator));
    (World { aws, api }, secrets)
}

/// `GET path` with an API key and a bearer token, if given.
fn admin_get(path: &str, api_key: Option<&str>, token: Option<&str>) -> Request<Vec<u8>> {
    let mut builder = Request::get(path);
    if let Some(key) = api_key {
        builder = builder.header("x-api-key", key);
    }
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Vec::new()).unwrap()
}

fn served(path: &str) -> ApiOutcome {
    if path == "/admin/page" {
        ApiOutcome::PageServed
    } else {
        ApiOutcome::StatusServed
    }
}

/// Panics if `response` (its body or any header) holds one of `secrets`.
#[track_caller]
fn assert_no_secret(response: &ApiResponse, secrets: &[String]) {
    let mut text = response.response().body().clone();
    for (name, value) in response.response().headers() {
        text.push_str(&format!("\n{name}: {}", value.to_str().unwrap()));
    }
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "a secret in {response:?}");
    }
}

#[test]
fn an_admin_client_is_answered_under_the_apis_headers_and_the_pages_strict_csp() {
    let (world, secrets) = admin_world();
    let token = world.token(&admin_key());
    for path in ROUTES {
        let response = world.send(admin_get(path, Some(&admin_key()), Some(&token)), INSIDE);
        assert_eq!(response.outcome(), served(path), "{response:?}");
        assert_eq!(response.client().unwrap().as_str(), "admin");
        let headers = response.response().headers();
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = response.response().body();
        for (name, _, _) in USERS {
            assert!(body.contains(name), "{path} shows {name}: {body}");
        }
        if path == "/admin/page" {
            assert_eq!(headers["content-security-policy"], STRICT_CSP);
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "no-referrer");
            assert!(!body.contains("<script"), "{body}");
        } else {
            assert_eq!(headers["content-type"], "application/json");
            let users = &serde_json::from_str::<serde_json::Value>(body).unwrap()["users"];
            assert_eq!(users.as_array().unwrap().len(), USERS.len(), "{body}");
        }
        assert_no_secret(&response, &secrets);
    }
    let logs = take_logs();
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs: {logs}"
        );
    }
}

#[test]
fn without_credentials_the_admin_routes_are_401_with_a_challenge() {
    let (world, _) = admin_world();
    let token = world.token(&admin_key());
    for path in ROUTES {
        // (`World::send` checks every 401 carries `WWW-Authenticate: Bearer realm="keyrot"`.)
        let cases = [
            (admin_get(path, None, None), "api_key_missing"),
            (admin_get(path, None, Some(&token)), "api_key_missing"),
            (
                admin_get(path, Some(&admin_key()), None),
                "authorization_missing",
            ),
        ];
        for (request, reason) in cases {
            let response = world.send(request, INSIDE);
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(
                response
                    .response()
                    .headers()
                    .contains_key("www-authenticate")
            );
            assert_unauthorized(&response, reason);
        }
    }
}

#[test]
fn a_client_without_the_admin_right_is_403_even_one_that_may_read_every_user() {
    let (world, secrets) = admin_world();
    for path in ROUTES {
        let mut bodies = Vec::new();
        for key in [alpha_key(), ops_key()] {
            let token = world.token(&key);
            let response = world.send(admin_get(path, Some(&key), Some(&token)), INSIDE);
            assert_refused(&response, ErrorCode::Forbidden, "token_scope_not_admin");
            assert_no_secret(&response, &secrets);
            bodies.push(response.response().body().clone());
        }
        assert_eq!(bodies[0], bodies[1], "{path}: one answer for both");

        // A token claiming the admin right, signed with the API's key, for a client whose
        // registry entry lacks it: the client's scope bounds the token's.
        for (client, key) in [("alpha", alpha_key()), ("ops", ops_key())] {
            let mut forged = claims(t0());
            forged.sub = client.into();
            forged.scope = "* keyrot:admin".into();
            let token = sign(&forged, Algorithm::HS256, "k1", SECRET_K1);
            let response = world.send(admin_get(path, Some(&key), Some(&token)), INSIDE);
            assert_refused(&response, ErrorCode::Forbidden, "client_scope_not_admin");
        }
        // Baseline: the admin client itself.
        let token = world.token(&admin_key());
        let response = world.send(admin_get(path, Some(&admin_key()), Some(&token)), INSIDE);
        assert_eq!(response.outcome(), served(path), "{response:?}");
    }
}

#[test]
fn outside_the_allowlist_the_admin_routes_refuse_as_active_key_does() {
    let (world, _) = admin_world();
    let token = world.token(&admin_key());
    let alpha = world.token(&alpha_key());
    let active = world.send(get_key("alice", &alpha_key(), &alpha), OUTSIDE);
    assert_unauthorized(&active, "ip_not_allowed");
    for path in ROUTES {
        let response = world.send(admin_get(path, Some(&admin_key()), Some(&token)), OUTSIDE);
        assert_unauthorized(&response, "ip_not_allowed");
        assert_eq!(response.response().body(), active.response().body());
        // A forwarded header claiming to be inside changes nothing.
        let spoofed = crate::source_address::with_spoof(
            admin_get(path, Some(&admin_key()), Some(&token)),
            "x-forwarded-for",
            INSIDE,
        );
        assert_unauthorized(&world.send(spoofed, OUTSIDE), "ip_not_allowed");
        // Baseline: the same request from inside.
        let response = world.send(admin_get(path, Some(&admin_key()), Some(&token)), INSIDE);
        assert_eq!(response.outcome(), served(path));
    }
}

#[test]
fn a_bad_or_expired_token_is_401_on_the_admin_routes() {
    let (world, _) = admin_world();
    let token = world.token(&admin_key());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{first}{}", &signature[1..]);
    let mut admin_claims = claims(t0());
    admin_claims.sub = "admin".into();
    admin_claims.scope = "keyrot:admin".into();
    let forged = sign(&admin_claims, Algorithm::HS256, "k1", SECRET_K0);
    let alpha = world.token(&alpha_key());
    for path in ROUTES {
        let send = |token: &str, offset| {
            world.send_at(
                admin_get(path, Some(&admin_key()), Some(token)),
                INSIDE,
                at(offset),
            )
        };
        assert_eq!(send(&token, 125).outcome(), served(path), "still valid");
        assert_unauthorized(&send(&token, 126), "token_expired");
        assert_unauthorized(&send(&tampered, 0), "token_bad_signature");
        assert_unauthorized(&send(&forged, 0), "token_bad_signature");
        assert_unauthorized(&send("not.a.jwt", 0), "token_malformed");
        // Another client's token with the admin client's key.
        assert_unauthorized(&send(&alpha, 0), "token_wrong_client");
    }
}
