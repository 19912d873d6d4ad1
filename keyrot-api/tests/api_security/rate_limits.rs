//! Rate limits per source address and per client, and negative caching of users without a
//! key: all on the requests' own `now`, so every step is exact.

use std::sync::Arc;

use futures::executor::block_on;
use http::StatusCode;
use keyrot_api::{Api, ApiConfig, ApiResponse, ErrorCode, RateLimits, RequestContext};
use keyrot_core::fake::op;

use crate::world::*;

/// The world's clients and store, with these rate limits.
fn limited(limits: RateLimits) -> (World, Api) {
    let world = World::new();
    let mut config = ApiConfig::new(&rotation());
    config.cache_ttl = TTL;
    config.rate_limits = limits;
    let api = Api::new(
        config,
        tokens(("k1", SECRET_K1), &[]),
        registry(),
        Arc::new(world.aws.store.clone()),
    )
    .unwrap();
    (world, api)
}

fn send(api: &Api, request: http::Request<Vec<u8>>, ip: &str, offset: u64) -> ApiResponse {
    let ctx = RequestContext::new(ip.parse().unwrap(), "req-limit", at(offset), "jti-limit-01");
    let response = block_on(api.handle(request, ctx));
    check_every_response(&response);
    response
}

fn retry_after(response: &ApiResponse) -> &str {
    response.response().headers()["retry-after"]
        .to_str()
        .unwrap()
}

#[test]
fn a_burst_from_one_address_is_429_with_retry_after_and_others_are_not_affected() {
    let (_world, api) = limited(RateLimits {
        per_client: None,
        per_source: Some("5/10s".parse().unwrap()),
    });
    for _ in 0..5 {
        let response = send(&api, generate("krk_not_a_key"), INSIDE, 0);
        assert_refused(&response, ErrorCode::Unauthorized, "api_key_unknown");
    }
    let refused = send(&api, generate(&alpha_key()), INSIDE, 0);
    assert_refused(&refused, ErrorCode::RateLimited, "source_rate_limited");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&refused), "2");
    // Another address is not affected, and the first one gets a request back after 2 s.
    assert_eq!(
        send(&api, generate(&bravo_key()), "192.0.2.7", 0).status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&api, generate(&alpha_key()), INSIDE, 2).status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&api, generate(&alpha_key()), INSIDE, 2).status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[test]
fn a_client_over_its_limit_is_429_and_another_client_is_not_affected() {
    let (_world, api) = limited(RateLimits {
        per_client: Some("3/1m".parse().unwrap()),
        per_source: None,
    });
    for _ in 0..3 {
        assert_eq!(
            send(&api, generate(&alpha_key()), INSIDE, 0).status(),
            StatusCode::OK
        );
    }
    let refused = send(&api, generate(&alpha_key()), INSIDE, 0);
    assert_refused(&refused, ErrorCode::RateLimited, "client_rate_limited");
    assert_eq!(retry_after(&refused), "20");
    assert_eq!(refused.client().map(|c| c.as_str()), Some("alpha"));
    // Same address, another client: under its own limit.
    assert_eq!(
        send(&api, generate(&bravo_key()), INSIDE, 0).status(),
        StatusCode::OK
    );
    // A wrong API key is not counted against the client it names nothing of.
    let unknown = send(&api, generate("krk_not_a_key"), INSIDE, 0);
    assert_refused(&unknown, ErrorCode::Unauthorized, "api_key_unknown");
    assert_eq!(
        send(&api, generate(&alpha_key()), INSIDE, 20).status(),
        StatusCode::OK
    );
}

#[test]
fn the_default_limits_let_ordinary_use_through() {
    let world = World::new();
    let token = world.token(&alpha_key());
    for second in 0..30 {
        assert_served(
            &world.alpha_fetches_alice(&token, at(second)),
            "alice",
            USERS[0].1,
        );
    }
    assert_eq!(
        ApiConfig::new(&rotation()).rate_limits,
        RateLimits::default()
    );
}

#[test]
fn users_without_a_key_are_remembered_for_the_cache_ttl() {
    let world = World::new();
    let token = world.token(&ops_key());
    let before = world.aws.plan.calls(op::STORE_CURRENT);
    let fetch = |offset| world.send_at(get_key("nobody", &ops_key(), &token), INSIDE, at(offset));
    assert_refused(&fetch(0), ErrorCode::KeyNotFound, "no_stored_key");
    for offset in 1..20 {
        assert_refused(
            &fetch(offset),
            ErrorCode::KeyNotFound,
            "no_stored_key_cached",
        );
    }
    assert_eq!(
        world.aws.plan.calls(op::STORE_CURRENT),
        before + 1,
        "one store read"
    );
    // After the TTL the store is asked again.
    assert_refused(&fetch(31), ErrorCode::KeyNotFound, "no_stored_key");
    assert_eq!(world.aws.plan.calls(op::STORE_CURRENT), before + 2);
}
