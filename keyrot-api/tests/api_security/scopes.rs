//! Clients and scopes: who may read whose key.

use jsonwebtoken::Algorithm;

use keyrot_api::ErrorCode;

use crate::world::*;

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
