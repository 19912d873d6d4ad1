//! The source address: never taken from a header, allowlisted per client.

use http::Request;

use keyrot_api::ApiOutcome;

use crate::world::*;

const SPOOFING_HEADERS: [&str; 5] = [
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-client-ip",
    "true-client-ip",
];

pub(crate) fn with_spoof(request: Request<Vec<u8>>, name: &str, ip: &str) -> Request<Vec<u8>> {
    let (mut parts, body) = request.into_parts();
    let value = if name == "forwarded" {
        format!("for={ip}")
    } else {
        format!("{ip}, 198.51.100.1")
    };
    parts.headers.insert(
        http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
        value.parse().unwrap(),
    );
    Request::from_parts(parts, body)
}

#[test]
fn forwarded_headers_never_stand_in_for_the_source_address() {
    let world = World::new();
    let token = world.token(&alpha_key());
    for name in SPOOFING_HEADERS {
        // Outside the allowlist, claiming to be inside: refused.
        let response = world.send(with_spoof(generate(&alpha_key()), name, INSIDE), OUTSIDE);
        assert_unauthorized(&response, "ip_not_allowed");
        let request = with_spoof(get_key("alice", &alpha_key(), &token), name, INSIDE);
        assert_unauthorized(&world.send(request, OUTSIDE), "ip_not_allowed");
        // Inside, claiming to be outside: allowed.
        let response = world.send(with_spoof(generate(&alpha_key()), name, OUTSIDE), INSIDE);
        assert_eq!(response.outcome(), ApiOutcome::TokenIssued);
        let request = with_spoof(get_key("alice", &alpha_key(), &token), name, OUTSIDE);
        assert_served(&world.send(request, INSIDE), "alice", USERS[0].1);
    }
}

#[test]
fn allowlists_are_per_client_and_ipv6_mapped_addresses_count_as_ipv4() {
    let world = World::new();
    // bravo may call from 192.0.2.0/24, alpha may not.
    assert_eq!(
        world.send(generate(&bravo_key()), "192.0.2.10").outcome(),
        ApiOutcome::TokenIssued
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "192.0.2.10"),
        "ip_not_allowed",
    );
    assert_eq!(
        world
            .send(generate(&alpha_key()), "::ffff:10.1.2.3")
            .outcome(),
        ApiOutcome::TokenIssued
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "::ffff:203.0.113.9"),
        "ip_not_allowed",
    );
    assert_unauthorized(
        &world.send(generate(&alpha_key()), "2001:db8::1"),
        "ip_not_allowed",
    );
}
