//! Routes and the happy path.

use futures::executor::block_on;
use http::Request;

use keyrot_api::{ApiOutcome, ErrorCode, RequestContext};

use crate::world::*;

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
    // What the local server and the Lambda adapter need.
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
