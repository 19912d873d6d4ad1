//! Reading an API Gateway REST proxy event: only the fields the API needs, each read on its
//! own, so that an event of another shape is an [`UnreadableEvent`] (a `400`), never a panic
//! or a function error.
//!
//! Every field may be missing or `null`. A field of another type (a header value that is a
//! number, a query that is a list, `isBase64Encoded: "yes"`), a header name or value HTTP does
//! not allow, or a method that is not an HTTP token makes the event unreadable. A query
//! parameter with an empty list of values stands for no value at all.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use keyrot_api::RequestContext;
use keyrot_core::Timestamp;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// An event the adapter cannot read. It names the field, and never quotes the value: that may
/// be an API key or a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not what API Gateway sends")]
pub struct UnreadableEvent {
    /// The field, as a JSON path from the event (`event` for the event itself).
    pub field: &'static str,
}

/// The parts of an API Gateway REST proxy event the API reads.
///
/// `Debug` prints the method and the route, never the headers or the body.
pub struct RestEvent {
    resource: Option<String>,
    path: Option<String>,
    method: Method,
    headers: HeaderMap,
    /// Decoded, as API Gateway gives it; every value of a repeated parameter.
    query: Vec<(String, String)>,
    body: Vec<u8>,
    request_id: Option<String>,
    source_ip: Option<String>,
}

impl std::fmt::Debug for RestEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestEvent")
            .field("method", &self.method)
            .field("resource", &self.resource)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Takes `name` out of `object`: `None` if missing or `null`.
fn take<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    name: &str,
    field: &'static str,
) -> Result<Option<T>, UnreadableEvent> {
    match object.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|_| UnreadableEvent { field }),
    }
}

impl RestEvent {
    /// Reads the fields the API needs from `event`.
    pub fn from_value(event: Value) -> Result<Self, UnreadableEvent> {
        let Value::Object(mut event) = event else {
            return Err(UnreadableEvent { field: "event" });
        };
        let mut context: Map<String, Value> =
            take(&mut event, "requestContext", "requestContext")?.unwrap_or_default();
        let mut identity: Map<String, Value> =
            take(&mut context, "identity", "requestContext.identity")?.unwrap_or_default();
        let method: String =
            take(&mut event, "httpMethod", "httpMethod")?.ok_or(UnreadableEvent {
                field: "httpMethod",
            })?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| UnreadableEvent {
            field: "httpMethod",
        })?;
        let body: Option<String> = take(&mut event, "body", "body")?;
        let base64: bool = take(&mut event, "isBase64Encoded", "isBase64Encoded")?.unwrap_or(false);
        let body = match body {
            None => Vec::new(),
            Some(text) if base64 => base64::engine::general_purpose::STANDARD
                .decode(&text)
                // Not base64 after all: the API only measures bodies, so measure the text.
                .unwrap_or_else(|_| text.into_bytes()),
            Some(text) => text.into_bytes(),
        };
        Ok(Self {
            resource: take(&mut event, "resource", "resource")?,
            path: take(&mut event, "path", "path")?,
            method,
            headers: headers(
                take(&mut event, "multiValueHeaders", "multiValueHeaders")?,
                take(&mut event, "headers", "headers")?,
            )?,
            query: query(
                take(
                    &mut event,
                    "multiValueQueryStringParameters",
                    "multiValueQueryStringParameters",
                )?,
                take(&mut event, "queryStringParameters", "queryStringParameters")?,
            ),
            body,
            request_id: take(&mut context, "requestId", "requestContext.requestId")?,
            source_ip: take(
                &mut identity,
                "sourceIp",
                "requestContext.identity.sourceIp",
            )?,
        })
    }

    /// What the API must know besides the request: the source address, the request id (API
    /// Gateway's, else `lambda_request_id`), `now` and the token id `jti`.
    pub fn context(&self, lambda_request_id: &str, now: Timestamp, jti: String) -> RequestContext {
        let source_ip = self
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let request_id = self
            .request_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| lambda_request_id.to_owned());
        RequestContext::new(source_ip, request_id, now, jti)
    }

    /// The request as the API reads it: method, the route (the resource, else the path) and
    /// the query, every header (repeated ones repeated), the body.
    pub fn into_request(self) -> http::Request<Vec<u8>> {
        let mut target = String::new();
        let path = self
            .resource
            .as_deref()
            .filter(|resource| !resource.is_empty())
            .or(self.path.as_deref())
            .unwrap_or_default();
        if !path.starts_with('/') {
            target.push('/');
        }
        target.extend(utf8_percent_encode(path, PATH));
        for (i, (name, value)) in self.query.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            target.extend(utf8_percent_encode(name, COMPONENT));
            target.push('=');
            target.extend(utf8_percent_encode(value, COMPONENT));
        }
        let mut request = http::Request::new(self.body);
        *request.method_mut() = self.method;
        // Everything outside the unreserved characters is percent-encoded, so this parses; the
        // fallback is no route (a 404) all the same.
        *request.uri_mut() = target
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/unparseable-request-target"));
        *request.headers_mut() = self.headers;
        request
    }
}

/// Every header of `multi`, then those of `single` whose names `multi` lacks (API Gateway
/// sends both; the single values are the last of each).
fn headers(
    multi: Option<BTreeMap<String, Vec<String>>>,
    single: Option<BTreeMap<String, String>>,
) -> Result<HeaderMap, UnreadableEvent> {
    let parse = |name: &str, field: &'static str| {
        HeaderName::from_bytes(name.as_bytes()).map_err(|_| UnreadableEvent { field })
    };
    let value = |value: &str, field: &'static str| {
        HeaderValue::from_str(value).map_err(|_| UnreadableEvent { field })
    };
    let mut headers = HeaderMap::new();
    for (name, values) in multi.unwrap_or_default() {
        let name = parse(&name, "multiValueHeaders")?;
        for v in values {
            headers.append(&name, value(&v, "multiValueHeaders")?);
        }
    }
    let from_multi: HashSet<HeaderName> = headers.keys().cloned().collect();
    for (name, v) in single.unwrap_or_default() {
        let name = parse(&name, "headers")?;
        let v = value(&v, "headers")?;
        // Two spellings of one name (`X-Api-Key`, `x-api-key`) stay two values.
        if !from_multi.contains(&name) {
            headers.append(name, v);
        }
    }
    Ok(headers)
}

/// Every value of `multi`, else of `single` (API Gateway sends both, the single values being
/// the last of each).
fn query(
    multi: Option<BTreeMap<String, Vec<String>>>,
    single: Option<BTreeMap<String, String>>,
) -> Vec<(String, String)> {
    match multi.filter(|m| !m.is_empty()) {
        Some(multi) => multi
            .into_iter()
            .flat_map(|(name, values)| values.into_iter().map(move |v| (name.clone(), v)))
            .collect(),
        None => single.unwrap_or_default().into_iter().collect(),
    }
}

/// Every byte but RFC 3986's unreserved characters is percent-encoded in a query name or value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// In a path, `/` separates segments and stays as it is.
const PATH: &AsciiSet = &COMPONENT.remove(b'/');
