//! Reading a request: size limits, the credentials in its headers, the user name in its query.
//! Every failure is a [`Rejection`] with a precise reason for the audit log.

use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;

use super::{ErrorCode, Limits};
use keyrot_core::accounts::AccountId;
use keyrot_core::model::UserName;
use keyrot_core::token::{AuthError, TokenError, TokenRejection};

/// Why a request was refused: the code the caller sees, and the reason (and perhaps a
/// detail) only the audit log sees.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) code: ErrorCode,
    pub(super) reason: &'static str,
    pub(super) detail: Option<String>,
    /// For `429`: when the caller may try again.
    pub(super) retry_after: Option<Duration>,
}

impl Rejection {
    pub(super) fn new(code: ErrorCode, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            detail: None,
            retry_after: None,
        }
    }

    /// Over a rate limit, for `wait`.
    pub(super) fn rate_limited(reason: &'static str, wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(ErrorCode::RateLimited, reason)
        }
    }

    /// Adds a detail for the audit log. It must hold no secret and no unescaped caller input.
    pub(super) fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(detail);
        self
    }

    pub(super) fn from_auth(err: AuthError) -> Self {
        let reason = match err {
            AuthError::Missing => "api_key_missing",
            AuthError::TooLong => "api_key_too_long",
            AuthError::Unknown => "api_key_unknown",
        };
        Self::new(ErrorCode::Unauthorized, reason)
    }

    pub(super) fn from_token(err: &TokenRejection) -> Self {
        // The rejection's message quotes attacker-chosen header values only cut short and
        // escaped (`{:?}`), and never the token.
        Self::new(ErrorCode::Unauthorized, err.code()).with_detail(err.to_string())
    }

    pub(super) fn from_issue_error(err: &TokenError) -> Self {
        Self::new(ErrorCode::InternalError, "token_issue_failed").with_detail(err.to_string())
    }
}

/// Refuses a request whose URI, headers or body is over `limits`, before anything reads them.
pub(super) fn check_limits(parts: &Parts, body: &[u8], limits: &Limits) -> Result<(), Rejection> {
    let uri_len = parts.uri.path().len() + parts.uri.query().map_or(0, |q| q.len() + 1);
    if uri_len > limits.max_uri_len {
        return Err(Rejection::new(ErrorCode::UriTooLong, "uri_too_long"));
    }
    if parts.headers.len() > limits.max_header_count {
        return Err(Rejection::new(
            ErrorCode::HeadersTooLarge,
            "too_many_headers",
        ));
    }
    let mut total = 0usize;
    for (name, value) in &parts.headers {
        let len = name.as_str().len() + value.len();
        if len > limits.max_header_len {
            return Err(Rejection::new(
                ErrorCode::HeadersTooLarge,
                "header_too_large",
            ));
        }
        total = total.saturating_add(len);
    }
    if total > limits.max_headers_len {
        return Err(Rejection::new(
            ErrorCode::HeadersTooLarge,
            "headers_too_large",
        ));
    }
    if body.len() > limits.max_body_len {
        return Err(Rejection::new(ErrorCode::BodyTooLarge, "body_too_large"));
    }
    Ok(())
}

/// A credential carried in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credential {
    /// The API key, in `x-api-key`.
    ApiKey,
    /// The token, in `Authorization: Bearer <token>`.
    Bearer,
}

impl Credential {
    fn header(self) -> HeaderName {
        match self {
            Self::ApiKey => HeaderName::from_static("x-api-key"),
            Self::Bearer => AUTHORIZATION,
        }
    }

    fn refuse(self, api_key: &'static str, authorization: &'static str) -> Rejection {
        let reason = match self {
            Self::ApiKey => api_key,
            Self::Bearer => authorization,
        };
        Rejection::new(ErrorCode::Unauthorized, reason)
    }
}

/// The API key or bearer token in `headers`: exactly one header field, visible ASCII, with
/// surrounding spaces and tabs removed; for a token, the `Bearer` scheme (in any case), one
/// or more spaces, then `b64token` characters (RFC 6750 §2.1).
pub(super) fn credential(headers: &HeaderMap, kind: Credential) -> Result<&str, Rejection> {
    let mut values = headers.get_all(kind.header()).into_iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(kind.refuse("api_key_missing", "authorization_missing")),
        (Some(_), Some(_)) => {
            return Err(kind.refuse("api_key_duplicated", "authorization_duplicated"));
        }
        (Some(value), None) => value,
    };
    let text = value
        .to_str()
        .map_err(|_| kind.refuse("api_key_not_ascii", "authorization_not_ascii"))?
        .trim_matches([' ', '\t']);
    if text.is_empty() {
        return Err(kind.refuse("api_key_missing", "authorization_missing"));
    }
    match kind {
        Credential::ApiKey => Ok(text),
        Credential::Bearer => bearer_token(text),
    }
}

/// The `WWW-Authenticate` header of a `401` (RFC 9110 §11.6.1, RFC 6750 §3), from the
/// request's own `Authorization` header only (`reads_token`: the route takes a token), never
/// from which check failed: no error code without one, `invalid_request` for one that is not a
/// well-formed bearer credential, `invalid_token` for one that is.
pub(super) fn www_authenticate(headers: &HeaderMap, reads_token: bool) -> HeaderValue {
    let challenge = if !reads_token {
        r#"Bearer realm="keyrot""#
    } else {
        match credential(headers, Credential::Bearer) {
            Ok(_) => r#"Bearer realm="keyrot", error="invalid_token""#,
            Err(r) if r.reason == "authorization_missing" => r#"Bearer realm="keyrot""#,
            Err(_) => r#"Bearer realm="keyrot", error="invalid_request""#,
        }
    };
    HeaderValue::from_static(challenge)
}

/// `Retry-After` for `wait`: whole seconds, rounded up, at least 1.
pub(super) fn retry_after(wait: Duration) -> HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    HeaderValue::from(secs.max(1))
}

fn bearer_token(value: &str) -> Result<&str, Rejection> {
    let not_bearer = || Rejection::new(ErrorCode::Unauthorized, "authorization_not_bearer");
    let (scheme, rest) = value.split_once(' ').ok_or_else(not_bearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(not_bearer());
    }
    let token = rest.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let is_b64token = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !is_b64token {
        return Err(Rejection::new(
            ErrorCode::Unauthorized,
            "authorization_malformed",
        ));
    }
    Ok(token)
}

/// The `username` (required) and `account` (a member account's id, optional) of `GET
/// /active-key`: each once, nothing else in the query.
pub(super) fn key_query(query: Option<&str>) -> Result<(Option<AccountId>, UserName), Rejection> {
    let bad_query = |reason| Rejection::new(ErrorCode::InvalidQuery, reason);
    let mut found: Option<Vec<u8>> = None;
    let mut account: Option<Vec<u8>> = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name).ok_or_else(|| bad_query("query_bad_encoding"))?;
        let (slot, repeated) = match name.as_slice() {
            b"username" => (&mut found, "username_repeated"),
            b"account" => (&mut account, "account_repeated"),
            _ => return Err(bad_query("query_unknown_parameter")),
        };
        if slot.is_some() {
            return Err(bad_query(repeated));
        }
        *slot = Some(percent_decode(value).ok_or_else(|| bad_query("query_bad_encoding"))?);
    }
    let raw = found.ok_or(Rejection::new(
        ErrorCode::MissingUsername,
        "username_missing",
    ))?;
    let text = String::from_utf8(raw)
        .map_err(|_| Rejection::new(ErrorCode::InvalidUsername, "username_not_utf8"))?;
    let user = UserName::new(text).map_err(|err| {
        // The error quotes at most one offending character, escaped.
        Rejection::new(ErrorCode::InvalidUsername, "username_invalid").with_detail(err.to_string())
    })?;
    let account = account
        .map(|raw| {
            let text = String::from_utf8_lossy(&raw);
            AccountId::new(&text).map_err(|_| bad_query("account_invalid"))
        })
        .transpose()?;
    Ok((account, user))
}

/// Decodes `%XX` escapes; every other byte stands for itself. `None` for a `%` not followed by
/// two hex digits, which the percent-encoding crate would pass through as it is.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let well_formed = s.split('%').skip(1).all(|escape| {
        escape
            .as_bytes()
            .get(..2)
            .is_some_and(|digits| digits.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode_str(s).collect())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn reason<T: std::fmt::Debug>(result: Result<T, Rejection>) -> &'static str {
        result.unwrap_err().reason
    }

    #[test]
    fn percent_decoding_is_rfc_3986() {
        assert_eq!(percent_decode("a+b").unwrap(), b"a+b");
        assert_eq!(percent_decode("a%2Bb%2b").unwrap(), b"a+b+");
        assert_eq!(percent_decode("%2e%2E%2F").unwrap(), b"../");
        assert_eq!(percent_decode("").unwrap(), b"");
        for bad in ["%", "%2", "%zz", "a%2", "%+1", "%-1"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_escape_is_checked_and_decoded_once() {
        assert_eq!(percent_decode("%2541").unwrap(), b"%41");
        assert_eq!(percent_decode("%41%42c").unwrap(), b"ABc");
        assert_eq!(percent_decode("%c3%A9").unwrap(), "\u{e9}".as_bytes());
        assert_eq!(percent_decode("%FF").unwrap(), [0xff]);
        assert_eq!(percent_decode("\u{e9}").unwrap(), "\u{e9}".as_bytes());
        for bad in ["%%41", "%41%", "a%4", "%4g", "%\u{e9}1", "%41%2"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    fn username(query: Option<&str>) -> Result<UserName, Rejection> {
        key_query(query).map(|(_, user)| user)
    }

    #[test]
    fn accounts_from_queries() {
        let (account, user) = key_query(Some("account=111122223333&username=ci")).unwrap();
        assert_eq!(account.unwrap().as_str(), "111122223333");
        assert_eq!(user.as_str(), "ci");
        assert_eq!(key_query(Some("username=ci")).unwrap().0, None);
        for (query, expected) in [
            ("account=1111&username=ci", "account_invalid"),
            ("account=&username=ci", "account_invalid"),
            (
                "account=111122223333&account=111122223333&username=ci",
                "account_repeated",
            ),
            ("account=111122223333", "username_missing"),
        ] {
            assert_eq!(reason(key_query(Some(query))), expected, "{query}");
        }
    }

    #[test]
    fn usernames_from_queries() {
        let ok = |q: &str| username(Some(q)).unwrap().as_str().to_owned();
        assert_eq!(ok("username=deployer"), "deployer");
        assert_eq!(ok("username=a+b"), "a+b");
        assert_eq!(ok("username=a%2Bb"), "a+b");
        assert_eq!(ok("&username=x&"), "x");
        assert_eq!(ok("user%6Eame=x"), "x");
        assert_eq!(reason(username(None)), "username_missing");
        let long = format!("username={}", "a".repeat(65));
        let refused = [
            ("", "username_missing"),
            ("&&", "username_missing"),
            ("username", "username_invalid"),
            ("username=", "username_invalid"),
            ("username=a&username=a", "username_repeated"),
            ("username=a&x=1", "query_unknown_parameter"),
            ("Username=a", "query_unknown_parameter"),
            ("username=%", "query_bad_encoding"),
            ("username=%ff", "username_not_utf8"),
            ("username=a%20b", "username_invalid"),
            ("username=..%2Fx", "username_invalid"),
            ("username=*", "username_invalid"),
            (long.as_str(), "username_invalid"),
        ];
        for (query, expected) in refused {
            assert_eq!(reason(username(Some(query))), expected, "{query}");
        }
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    /// The credential in `pairs`, or the reason it was refused.
    fn read(pairs: &[(&str, &[u8])], kind: Credential) -> Result<String, &'static str> {
        credential(&headers(pairs), kind)
            .map(str::to_owned)
            .map_err(|r| r.reason)
    }

    #[test]
    fn bearer_tokens() {
        let token = |v: &[u8]| read(&[("authorization", v)], Credential::Bearer);
        assert_eq!(token(b"Bearer a.b.c").unwrap(), "a.b.c");
        assert_eq!(token(b"bearer a.b.c").unwrap(), "a.b.c");
        assert_eq!(token(b"BEARER  a.b.c ").unwrap(), "a.b.c");
        assert_eq!(token(b"Bearer abc==").unwrap(), "abc==");
        assert_eq!(token(b"Bearer"), Err("authorization_not_bearer"));
        assert_eq!(token(b"Basic YTpi"), Err("authorization_not_bearer"));
        assert_eq!(token(b"Bearer\ta.b.c"), Err("authorization_not_bearer"));
        assert_eq!(token(b"Bearer a b"), Err("authorization_malformed"));
        assert_eq!(token(b"Bearer a,b"), Err("authorization_malformed"));
        assert_eq!(token(b"Bearer =="), Err("authorization_malformed"));
        assert_eq!(token(b"Bearer a=b"), Err("authorization_malformed"));
        assert_eq!(token(b"  "), Err("authorization_missing"));
        assert_eq!(token(b"Bearer \xe9"), Err("authorization_not_ascii"));
        assert_eq!(read(&[], Credential::Bearer), Err("authorization_missing"));
        let twice: &[(&str, &[u8])] = &[
            ("authorization", b"Bearer a"),
            ("Authorization", b"Bearer a"),
        ];
        assert_eq!(
            read(twice, Credential::Bearer),
            Err("authorization_duplicated")
        );
    }

    #[test]
    fn api_keys() {
        let key = |v: &[u8]| read(&[("x-api-key", v)], Credential::ApiKey);
        assert_eq!(key(b" krk_1 ").unwrap(), "krk_1");
        assert_eq!(key(b""), Err("api_key_missing"));
        assert_eq!(key(b"k\xff"), Err("api_key_not_ascii"));
        let twice: &[(&str, &[u8])] = &[("x-api-key", b"a"), ("X-Api-Key", b"b")];
        assert_eq!(read(twice, Credential::ApiKey), Err("api_key_duplicated"));
    }
}
