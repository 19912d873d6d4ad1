//! The Authorization and x-api-key headers.

use http::StatusCode;

use keyrot_api::ApiResponse;

use crate::world::*;

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
    // `WWW-Authenticate` follows the request's own `Authorization` header (none on
    // /generate-token; a well-formed bearer token on the next three; none on the last), never
    // the check that failed: every other header and the body are the same for all.
    let challenges = [
        r#"Bearer realm="keyrot""#,
        r#"Bearer realm="keyrot""#,
        r#"Bearer realm="keyrot", error="invalid_token""#,
        r#"Bearer realm="keyrot", error="invalid_token""#,
        r#"Bearer realm="keyrot", error="invalid_token""#,
        r#"Bearer realm="keyrot""#,
    ];
    let without_challenge = |response: &ApiResponse| {
        let mut headers = response.response().headers().clone();
        headers.remove("www-authenticate");
        headers
    };
    for (response, challenge) in responses.iter().zip(challenges) {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.response().body(), responses[0].response().body());
        assert_eq!(
            without_challenge(response),
            without_challenge(&responses[0])
        );
        assert_eq!(
            response.response().headers()["www-authenticate"],
            challenge,
            "{response:?}"
        );
    }
}

#[test]
fn a_401_challenges_for_a_bearer_token_as_rfc_6750_says() {
    let world = World::new();
    let key = alpha_key();
    let challenge = |auth: Option<&str>| {
        let mut headers: Vec<(&str, &[u8])> = vec![("x-api-key", key.as_bytes())];
        if let Some(auth) = auth {
            headers.push(("authorization", auth.as_bytes()));
        }
        let request = request("GET", "/active-key?username=alice", &headers);
        let response = world.send(request, INSIDE);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        response.response().headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(challenge(None), r#"Bearer realm="keyrot""#);
    assert_eq!(
        challenge(Some("Basic YTpi")),
        r#"Bearer realm="keyrot", error="invalid_request""#
    );
    assert_eq!(
        challenge(Some("Bearer a b")),
        r#"Bearer realm="keyrot", error="invalid_request""#
    );
    assert_eq!(
        challenge(Some("Bearer not.a.token")),
        r#"Bearer realm="keyrot", error="invalid_token""#
    );
    // Only 401s carry it.
    let token = world.token(&alpha_key());
    let served = world.alpha_fetches_alice(&token, at(1));
    assert!(!served.response().headers().contains_key("www-authenticate"));
}
