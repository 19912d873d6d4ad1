//! Many accounts: `GET /active-key?account=ID&username=X` serves a member account's user, and
//! a scope names accounts (`ID/*`) and their users (`ID/user`) apart from the hub's users.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::executor::block_on;
use keyrot_api::{AccountStores, Api, ApiConfig, ErrorCode};
use keyrot_core::SecretStore;
use keyrot_core::Timestamp;
use keyrot_core::accounts::AccountId;
use keyrot_core::fake::{FakeAws, FaultRates, op};
use keyrot_core::token::{ApiKey, ApiKeyDigest, ClientRegistry};

use crate::world::*;

const ONE: &str = "111111111111";
const TWO: &str = "222222222222";
const THREE: &str = "333333333333";

fn fleet_key() -> String {
    ApiKey::generate_from([0xd4; 32])
}

/// alpha, bravo and ops as in the world, and `fleet`: the hub's alice, account one's ci, every
/// user of account two.
fn registry_with_fleet() -> ClientRegistry {
    let client = |id: &str, key: &str, scope: &str| {
        format!(
            r#"{{"id":"{id}","api_key_sha256":"{}","scope":{scope},"allowed_cidrs":["10.0.0.0/8"]}}"#,
            ApiKeyDigest::of(key)
        )
    };
    let clients = [
        client("alpha", &alpha_key(), r#"["alice"]"#),
        client("ops", &ops_key(), r#"["*"]"#),
        client(
            "fleet",
            &fleet_key(),
            &format!(r#"["alice","{ONE}/ci","{TWO}/*"]"#),
        ),
    ];
    ClientRegistry::from_json(&format!(r#"{{"clients":[{}]}}"#, clients.join(","))).unwrap()
}

/// The world's hub store, and a store per member account: one holds ci and deploy, two holds
/// ci; three holds nothing.
fn api_with_accounts() -> Api {
    api_with_member_fakes().0
}

/// [`api_with_accounts`], with each member account's fake (its store's calls counted).
fn api_with_member_fakes() -> (Api, BTreeMap<AccountId, FakeAws>) {
    let hub = World::new();
    let mut fakes = BTreeMap::new();
    let mut stores: BTreeMap<AccountId, Arc<dyn SecretStore>> = BTreeMap::new();
    for (n, (account, users)) in [(ONE, &["ci", "deploy"][..]), (TWO, &["ci"]), (THREE, &[])]
        .into_iter()
        .enumerate()
    {
        let aws = FakeAws::new(t0(), 11 + n as u64, FaultRates::none());
        for name in users {
            let id = format!("AKIA{}{:012}", n + 1, name.len());
            let id = format!("{id:0<20}");
            assert!(aws.store.create_secret(
                &user(name),
                &creds(&id, "member-secret"),
                t0() - secs(3600)
            ));
        }
        let account = AccountId::new(account).unwrap();
        stores.insert(account.clone(), Arc::new(aws.store.clone()));
        fakes.insert(account, aws);
    }
    let stores: AccountStores = Arc::new(move |account: &AccountId| Arc::clone(&stores[account]));
    let mut config = ApiConfig::new(&rotation());
    config.cache_ttl = TTL;
    let api = Api::new(
        config,
        tokens(("k1", SECRET_K1), &[]),
        registry_with_fleet(),
        Arc::new(hub.aws.store),
    )
    .unwrap()
    .with_account_stores(stores);
    (api, fakes)
}

fn send(api: &Api, query: &str, api_key: &str) -> keyrot_api::ApiResponse {
    send_at(api, query, api_key, t0())
}

/// `GET /active-key?{query}` by the client of `api_key` at `now`, with a token issued then.
fn send_at(api: &Api, query: &str, api_key: &str, now: Timestamp) -> keyrot_api::ApiResponse {
    let world = World {
        aws: FakeAws::new(t0(), 1, FaultRates::none()),
        api: api.with_secrets(tokens(("k1", SECRET_K1), &[]), registry_with_fleet()),
    };
    let token = world.token_at(api_key, now);
    world.send_at(active_key(query, Some(api_key), Some(&token)), INSIDE, now)
}

#[test]
fn a_scope_names_member_accounts_and_their_users_apart_from_the_hubs() {
    let api = api_with_accounts();
    let fleet = fleet_key();
    // Account one's ci, every user of account two, and the hub's alice.
    let served = send(&api, &format!("account={ONE}&username=ci"), &fleet);
    assert_eq!(body(&served)["UserName"], "ci", "{served:?}");
    assert!(
        body(&served)["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("AKIA1")
    );
    let served = send(&api, &format!("account={TWO}&username=ci"), &fleet);
    assert!(
        body(&served)["AccessKeyId"]
            .as_str()
            .unwrap()
            .starts_with("AKIA2")
    );
    assert_served(&send(&api, "username=alice", &fleet), "alice", USERS[0].1);

    // Nothing else: another user of account one, account three, the hub's ci (a plain name
    // is the hub's user only), and alice of account one.
    for query in [
        format!("account={ONE}&username=deploy"),
        format!("account={THREE}&username=ci"),
        "username=ci".to_owned(),
        format!("account={ONE}&username=alice"),
    ] {
        assert_refused(
            &send(&api, &query, &fleet),
            ErrorCode::Forbidden,
            "token_scope_denies_user",
        );
    }
    // A hub-only client reaches no member account.
    assert_refused(
        &send(&api, &format!("account={ONE}&username=ci"), &alpha_key()),
        ErrorCode::Forbidden,
        "token_scope_denies_user",
    );
}

#[test]
fn every_account_is_in_star_and_a_bad_account_is_a_bad_query() {
    let api = api_with_accounts();
    let ops = ops_key();
    let served = send(&api, &format!("account={ONE}&username=deploy"), &ops);
    assert_eq!(body(&served)["UserName"], "deploy", "{served:?}");
    assert_refused(
        &send(&api, &format!("account={THREE}&username=ci"), &ops),
        ErrorCode::KeyNotFound,
        "no_stored_key",
    );
    assert_refused(
        &send(&api, "account=12345&username=ci", &ops),
        ErrorCode::InvalidQuery,
        "account_invalid",
    );
}

#[test]
fn an_api_without_member_stores_serves_no_account() {
    let world = World::new();
    let token = world.token(&ops_key());
    let response = world.send(
        active_key(
            &format!("account={ONE}&username=alice"),
            Some(&ops_key()),
            Some(&token),
        ),
        INSIDE,
    );
    assert_refused(&response, ErrorCode::KeyNotFound, "accounts_not_served");
    // The single-account form is unchanged.
    assert_served(
        &world.send(get_key("alice", &ops_key(), &token), INSIDE),
        "alice",
        USERS[0].1,
    );
}

#[test]
fn member_keys_are_cached_by_account_and_user_for_the_ttl_found_or_not() {
    let (api, fakes) = api_with_member_fakes();
    let ops = ops_key();
    let fake = |n: &str| &fakes[&AccountId::new(n).unwrap()];
    let reads = |n: &str| fake(n).plan.calls(op::STORE_CURRENT);
    let key_id = |response: &keyrot_api::ApiResponse| {
        body(response)["AccessKeyId"]
            .as_str()
            .unwrap_or_else(|| panic!("{response:?}"))
            .to_owned()
    };
    let one_ci = format!("account={ONE}&username=ci");
    let first = key_id(&send_at(&api, &one_ci, &ops, at(0)));
    assert!(first.starts_with("AKIA1"), "{first}");
    assert_eq!(reads(ONE), 1);

    // The same name in account two is its own entry, with its own key.
    let two_ci = format!("account={TWO}&username=ci");
    assert!(key_id(&send_at(&api, &two_ci, &ops, at(1))).starts_with("AKIA2"));
    assert_eq!(reads(TWO), 1);
    // Nor is the hub's ci (which the hub's store lacks) answered from account one's entry.
    assert_refused(
        &send_at(&api, "username=ci", &ops, at(2)),
        ErrorCode::KeyNotFound,
        "no_stored_key",
    );

    // The rotator publishes a new key for account one's ci: the cached key is served until
    // the TTL has passed, from the cache, then the new one, read once more.
    let ci = user("ci");
    let next = creds("AKIA9000000000000001", "member-next-secret");
    let store = &fake(ONE).store;
    block_on(store.put_pending(&ci, &next, at(3))).unwrap();
    let seen = store.current_key(&ci);
    block_on(store.promote(&ci, &next.access_key_id, seen)).unwrap();
    let cached = send_at(&api, &one_ci, &ops, at(29));
    assert_eq!(key_id(&cached), first);
    assert_eq!(body(&cached)["RetrievedAt"], "2025-06-01T12:00:00Z");
    assert_eq!(reads(ONE), 1, "served from the cache");
    assert_eq!(
        key_id(&send_at(&api, &one_ci, &ops, at(30))),
        next.access_key_id.as_str()
    );
    assert_eq!(reads(ONE), 2);

    // A user an account's store has no key for is remembered as such, as long.
    let three_ci = format!("account={THREE}&username=ci");
    assert_refused(
        &send_at(&api, &three_ci, &ops, at(0)),
        ErrorCode::KeyNotFound,
        "no_stored_key",
    );
    assert_refused(
        &send_at(&api, &three_ci, &ops, at(29)),
        ErrorCode::KeyNotFound,
        "no_stored_key_cached",
    );
    assert_eq!(reads(THREE), 1);
    assert_refused(
        &send_at(&api, &three_ci, &ops, at(30)),
        ErrorCode::KeyNotFound,
        "no_stored_key",
    );
    assert_eq!(reads(THREE), 2);
}
