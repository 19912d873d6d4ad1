//! The API's token policy: issuing and verifying an HS256 token, and authenticating an API key
//! against a registry of 50 clients (each key is compared with every digest, in constant time).
#![allow(clippy::expect_used)] // benchmark setup: a failure is a bug in the benchmark

use std::hint::black_box;

use benches::START;
use criterion::{Criterion, criterion_group, criterion_main};
use keyrot_core::token::{
    ApiKey, ApiKeyDigest, ClientId, ClientRegistry, Scope, SigningKey, TokenConfig, TokenPolicy,
};

const CLIENTS: u8 = 50;

fn policy() -> TokenPolicy {
    let key = SigningKey::new("2026-11", vec![7u8; 32]).expect("a valid signing key");
    TokenPolicy::new(TokenConfig::new("keyrot", "keyrot-api", key)).expect("a valid policy")
}

fn registry() -> (ClientRegistry, Vec<String>) {
    let keys: Vec<String> = (0..CLIENTS)
        .map(|i| ApiKey::generate_from([i; 32]))
        .collect();
    let clients: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            format!(
                r#"{{"id": "client-{i}", "api_key_sha256": "{}", "scope": ["deployer-{i}"], "allowed_cidrs": ["10.0.0.0/8"]}}"#,
                ApiKeyDigest::of(key).to_hex()
            )
        })
        .collect();
    let json = format!(r#"{{"clients": [{}]}}"#, clients.join(","));
    (
        ClientRegistry::from_json(&json).expect("a valid registry"),
        keys,
    )
}

fn tokens(c: &mut Criterion) {
    let policy = policy();
    let client = ClientId::new("ci").expect("a valid client id");
    let scope: Scope = "deployer".parse().expect("a valid scope");
    let token = policy
        .issue(&client, &scope, START, "b7f1c2d4e5f60718")
        .expect("a token");

    let mut group = c.benchmark_group("token");
    group.bench_function("issue HS256", |b| {
        b.iter(|| policy.issue(black_box(&client), &scope, START, "b7f1c2d4e5f60718"));
    });
    group.bench_function("verify HS256", |b| {
        b.iter(|| policy.verify(black_box(token.expose_token()), START));
    });
    group.finish();

    let (registry, keys) = registry();
    let last = keys.last().expect("50 keys");
    let unknown = ApiKey::generate_from([0xff; 32]);
    let mut group = c.benchmark_group("registry");
    group.bench_function("authenticate (50 clients)", |b| {
        b.iter(|| {
            registry
                .authenticate(black_box(last))
                .map(|c| c.id().as_str().len())
        });
    });
    group.bench_function("authenticate unknown key (50 clients)", |b| {
        b.iter(|| registry.authenticate(black_box(&unknown)).is_err());
    });
    group.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
