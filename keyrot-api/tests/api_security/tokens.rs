//! The token: algorithms, lifetimes, issuers, tampering, key ids, size.

use jsonwebtoken::Algorithm;

use crate::world::*;

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
