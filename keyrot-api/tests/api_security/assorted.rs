//! No 5xx from any input, no secret in any log.

use http::Request;
use jsonwebtoken::Algorithm;

use keyrot_api::{ApiOutcome, ErrorCode};
use keyrot_core::fake::{FaultKind, op};

use crate::input::hostile_queries;
use crate::source_address::with_spoof;
use crate::world::*;

/// A varied set of requests, good and bad, with the address each comes from.
fn assorted_requests(world: &World) -> Vec<(Request<Vec<u8>>, &'static str)> {
    let alpha = world.token(&alpha_key());
    let bravo = world.token(&bravo_key());
    let forged = sign(&claims(t0()), Algorithm::HS256, "k1", SECRET_K0);
    let none = {
        let t = with_header(&alpha, r#"{"alg":"none","kid":"k1"}"#);
        format!("{}.", t.rsplit_once('.').unwrap().0)
    };
    let get = |uri: &str| Request::get(uri).body(Vec::new()).unwrap();
    let mut requests = vec![
        (generate(&alpha_key()), INSIDE),
        (generate(&bravo_key()), OUTSIDE),
        (generate(&ops_key()), INSIDE),
        (generate("krk_guess"), INSIDE),
        (get_key("alice", &alpha_key(), &alpha), INSIDE),
        (get_key("bob", &bravo_key(), &bravo), INSIDE),
        (get_key("bob", &alpha_key(), &alpha), INSIDE),
        (get_key("bob", &bravo_key(), &alpha), INSIDE),
        (get_key("alice", &alpha_key(), &forged), INSIDE),
        (get_key("alice", &alpha_key(), &none), INSIDE),
        (get_key("alice", &alpha_key(), &alpha), OUTSIDE),
        (
            with_spoof(
                get_key("alice", &alpha_key(), &alpha),
                "x-forwarded-for",
                INSIDE,
            ),
            OUTSIDE,
        ),
        (
            active_key("username=alice", Some(&alpha_key()), None),
            INSIDE,
        ),
        (active_key("username=alice", None, Some(&alpha)), INSIDE),
        (get("/health"), INSIDE),
        (get("/"), INSIDE),
        (get("/active-key"), INSIDE),
        (get("/generate-token"), INSIDE),
        (get("/active-key?username=alice&username=bob"), INSIDE),
        (get("/%00"), INSIDE),
        (get("/active-key?%"), INSIDE),
        (get("/active-key?=&=&&=="), INSIDE),
        (get("http://evil.example/active-key?username=alice"), INSIDE),
        (get("*"), INSIDE),
    ];
    for (query, _) in hostile_queries() {
        requests.push((active_key(&query, Some(&alpha_key()), Some(&alpha)), INSIDE));
    }
    for method in [
        "PATCH",
        "TRACE",
        "CONNECT",
        "X-WEIRD-METHOD-THAT-IS-QUITE-LONG",
    ] {
        let request = Request::builder()
            .method(method)
            .uri("/active-key?username=alice")
            .header("x-api-key", alpha_key())
            .header("authorization", format!("Bearer {alpha}"))
            .body(b"\x00\xff garbage".to_vec())
            .unwrap();
        requests.push((request, INSIDE));
    }
    let request = Request::post("/generate-token")
        .header("x-api-key", alpha_key())
        .header("content-type", "text/html")
        .header("content-length", "-1")
        .header("transfer-encoding", "chunked, gzip")
        .header(
            "x-odd",
            http::HeaderValue::from_bytes(b"\xff\xfe\x80").unwrap(),
        )
        .body(vec![0xff; 1024])
        .unwrap();
    requests.push((request, INSIDE));
    requests
}

#[test]
fn no_request_in_the_assortment_gets_a_5xx() {
    let world = World::new();
    let requests = assorted_requests(&world);
    assert!(requests.len() > 60);
    for (request, ip) in requests {
        let uri = request.uri().to_string();
        let response = world.send(request, ip);
        assert!(!response.status().is_server_error(), "{uri}: {response:?}");
    }
}

#[test]
fn no_secret_reaches_the_logs() {
    capture_logs();
    take_logs();
    let mut seen_tokens = Vec::new();
    let mut requests = 0;
    let world = World::with(tokens(("k1", SECRET_K1), &[("k0", SECRET_K0)]));
    for (request, ip) in assorted_requests(&world) {
        if let Some(value) = request.headers().get("authorization") {
            seen_tokens.push(value.to_str().unwrap_or_default().to_owned());
        }
        let response = world.send(request, ip);
        if response.outcome() == ApiOutcome::TokenIssued {
            seen_tokens.push(body(&response)["token"].as_str().unwrap().to_owned());
        }
        requests += 1;
    }
    requests += 2; // the tokens assorted_requests asked for
    world
        .aws
        .plan
        .fail_at(op::STORE_CURRENT, FaultKind::FailBefore);
    let token = world.token(&ops_key());
    seen_tokens.push(token.clone());
    let response = world.send_at(get_key("carol", &ops_key(), &token), INSIDE, at(1));
    assert_eq!(
        response.outcome().error(),
        Some(ErrorCode::StoreUnavailable)
    );
    requests += 2;
    let logs = take_logs();

    // One audit line per request, with the precise reasons.
    assert_eq!(logs.matches("keyrot::audit").count(), requests, "{logs}");
    for reason in [
        "ip_not_allowed",
        "token_bad_signature",
        "token_unsupported_algorithm",
        "token_wrong_client",
        "username_repeated",
        "store_error",
        "api_key_unknown",
    ] {
        assert!(logs.contains(reason), "no {reason} in the logs");
    }
    assert!(logs.contains(r#"user="alice""#) || logs.contains("user=alice"));
    // Hostile names are not logged as users.
    assert!(!logs.contains("passwd") && !logs.contains("forged audit"));

    let mut secrets: Vec<String> = vec![alpha_key(), bravo_key(), ops_key()];
    for (_, _, secret) in USERS {
        secrets.push(secret.to_owned());
    }
    for key in [SECRET_K1, SECRET_K0] {
        secrets.push(String::from_utf8(key.to_vec()).unwrap());
        secrets.push(hex::encode(key));
    }
    assert!(seen_tokens.len() > 10);
    for token in &seen_tokens {
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        secrets.push(token.to_owned());
        if let Some((_, signature)) = token.rsplit_once('.')
            && signature.len() > 16
        {
            secrets.push(signature.to_owned());
        }
    }
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret leaked: {secret}");
        assert!(
            !logs.contains(&secret[..16]),
            "part of a secret leaked: {secret}"
        );
    }
}
