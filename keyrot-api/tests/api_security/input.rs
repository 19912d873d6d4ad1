//! Input: hostile user names, bad input before authentication, oversized requests.

use http::StatusCode;

use keyrot_api::{ApiOutcome, ErrorCode};

use crate::world::*;

/// Queries naming no valid user, and the code each must get.
pub(crate) fn hostile_queries() -> Vec<(String, ErrorCode)> {
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
