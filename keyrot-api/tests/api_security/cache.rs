//! The cache and the store.

use std::sync::Arc;

use futures::executor::block_on;
use http::StatusCode;

use keyrot_api::{Api, ApiConfig, ApiConfigError, ApiOutcome, ErrorCode};
use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, op};
use keyrot_core::token::ClientRegistry;
use keyrot_core::{Policy, SecretStore};

use crate::world::*;

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
    let seen = world.aws.store.current_key(&alice);
    block_on(world.aws.store.promote(&alice, &next.access_key_id, seen)).unwrap();
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
