//! Arbitrary requests: none gets a 5xx.

use http::Request;
use proptest::prelude::*;

use crate::world::*;

/// A header that may be anything `http` can carry.
fn any_header() -> impl Strategy<Value = (String, Vec<u8>)> {
    let name = prop_oneof![
        1 => Just("authorization".to_owned()),
        1 => Just("x-api-key".to_owned()),
        1 => Just("x-forwarded-for".to_owned()),
        1 => Just("content-length".to_owned()),
        6 => "[a-zA-Z][a-zA-Z0-9-]{0,30}",
    ];
    let value = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,9000}".prop_map(String::into_bytes),
    ];
    (name, value)
}

fn regex(pattern: &str) -> impl Strategy<Value = String> + use<> {
    proptest::string::string_regex(pattern).unwrap()
}

/// Requests that are mostly almost right, so that most get past the early checks.
fn request_strategy(alpha_token: &str) -> impl Strategy<Value = Request<Vec<u8>>> + use<> {
    const URI_CHARS: &str = "[A-Za-z0-9._~!$&'()*+,;=:@/?%-]";
    // Mostly a route with its own method, so that most requests get past routing.
    let route = prop_oneof![
        6 => Just(("GET".to_owned(), "/active-key".to_owned())),
        3 => Just(("POST".to_owned(), "/generate-token".to_owned())),
        1 => Just(("GET".to_owned(), "/health".to_owned())),
        2 => (
            prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), "[A-Z]{1,12}"],
            prop_oneof![
                Just("/active-key".to_owned()),
                regex(&format!("/{URI_CHARS}{{0,60}}")),
            ],
        ),
    ];
    let query = prop_oneof![
        1 => Just(None),
        3 => "username=(alice|bob|carol|nobody)".prop_map(Some),
        2 => regex(&format!("username={URI_CHARS}{{0,80}}")).prop_map(Some),
        1 => regex(&format!("{URI_CHARS}{{0,300}}")).prop_map(Some),
    ];
    let api_key = prop_oneof![
        3 => Just(Some(alpha_key())),
        1 => Just(Some(bravo_key())),
        1 => Just(None),
        1 => "[ -~]{0,300}".prop_map(Some),
    ];
    let authorization = prop_oneof![
        3 => Just(Some(format!("Bearer {alpha_token}"))),
        1 => Just(Some(format!("bearer {alpha_token}"))),
        1 => Just(None),
        1 => "(Bearer |bearer |Basic )?[ -~]{0,5000}".prop_map(Some),
    ];
    let extra = proptest::collection::vec(any_header(), 0..3);
    let body = prop_oneof![
        4 => Just(Vec::new()),
        1 => proptest::collection::vec(any::<u8>(), 0..1500),
    ];
    (route, query, api_key, authorization, extra, body).prop_filter_map(
        "not a valid http request",
        |((method, path), query, api_key, authorization, extra, body)| {
            let uri = match query {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let mut builder = Request::builder().method(method.as_str()).uri(uri);
            let credentials = [("x-api-key", api_key), ("authorization", authorization)];
            let headers = credentials
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?.into_bytes())))
                .chain(extra);
            for (name, value) in headers {
                let Ok(value) = http::HeaderValue::from_bytes(&value) else {
                    continue;
                };
                builder = builder.header(name, value);
            }
            builder.body(body).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_requests_never_get_a_5xx(
        request in request_strategy(&World::new().token(&alpha_key())),
        ip in prop_oneof![4 => Just(INSIDE), 1 => Just(OUTSIDE), 1 => Just("::1")],
        offset in 0u64..150,
    ) {
        // Every world signs with the same key, so the token verifies here too.
        let world = World::new();
        let response = world.send_at(request, ip, at(offset));
        prop_assert!(!response.status().is_server_error(), "{:?}", response);
    }
}
