//! The API function: an [`Api`] and where its metrics go, one event at a time.

use std::fmt;
use std::sync::Arc;

use keyrot_api::{Api, ErrorCode, error_response};
use keyrot_aws::{AwsClients, BackendSettings, SystemClock};
use keyrot_core::driver::error_chain;
use keyrot_core::{Clock, SecretStore, Timestamp};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tracing::{info, warn};

use super::event::RestEvent;
use super::response::{Handled, Outcome, audit, gateway_response};
use super::secrets::LiveApi;
use super::{ApiInitError, aws_settings};
use crate::config::ApiFunctionConfig;
use crate::metrics::{self, api_line};

/// The API function: the [`Api`] it answers with, how to build it again with fresh secrets,
/// and where its metrics go.
///
/// Built by [`ApiFunction::reading_secrets`] (or [`ApiFunction::from_env`]), it reads the
/// signing keys and the client registry on its first request, not at cold start, and again on
/// the first request [`ApiFunctionConfig::api_secrets_ttl`] after it last read them,
/// rebuilding the `Api` (whose key cache starts empty). Should the first reading fail, the
/// request is a `503 store_unavailable` and the next one tries again; should a later one fail
/// (Secrets Manager down or slower than [`super::SECRETS_RELOAD_TIMEOUT`], a secret
/// malformed), it logs a warning, answers with the last good `Api`, and tries again a TTL
/// later. Built by [`ApiFunction::new`], it keeps its `Api`.
pub struct ApiFunction {
    api: LiveApi,
    namespace: String,
}

impl fmt::Debug for ApiFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiFunction")
            .field("api", &self.api)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl ApiFunction {
    /// A function answering with `api` for good, writing metrics to `namespace`.
    pub fn new(api: Api, namespace: impl Into<String>) -> Self {
        Self {
            api: LiveApi::Fixed(Arc::new(api)),
            namespace: namespace.into(),
        }
    }

    /// The function `config` describes, its secrets read from Secrets Manager through `aws`
    /// on its first request and again every [`ApiFunctionConfig::api_secrets_ttl`], the
    /// users' keys read from `store`. It reads nothing now.
    pub fn reading_secrets(
        config: ApiFunctionConfig,
        aws: AwsClients,
        store: Arc<dyn SecretStore>,
    ) -> Self {
        let namespace = config.metrics_namespace.clone();
        Self {
            api: LiveApi::reading(config, aws, store),
            namespace,
        }
    }

    /// The function as deployed: configuration from `lookup` (see [`crate::config`]), AWS from
    /// aws-config's standard chain with the API's [`aws_settings`], the signing keys and the
    /// client registry from Secrets Manager on the first request (see
    /// [`ApiFunction::reading_secrets`]), the users' keys read through
    /// [`keyrot_aws::AwsSecretStore`]. It makes no AWS call: only the configuration can fail.
    pub async fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ApiInitError> {
        let config = ApiFunctionConfig::from_env(lookup)?;
        let clients = AwsClients::from_settings(&aws_settings()).await;
        let store = BackendSettings {
            secret_prefix: config.secret_prefix.clone(),
            ..BackendSettings::default()
        }
        .store(&clients);
        info!(
            prefix = %config.secret_prefix,
            issuer = %config.issuer,
            audience = %config.audience,
            cache_ttl = ?config.key_cache_ttl,
            secrets_ttl = ?config.api_secrets_ttl,
            "api ready"
        );
        Ok(Self::reading_secrets(config, clients, Arc::new(store)))
    }

    /// Answers one API Gateway event at `now`; `lambda_request_id` stands in for a missing
    /// API Gateway request id, `jti` is the id of a token this request may issue. An event
    /// the adapter cannot read (see [`RestEvent`]) is a `400 invalid_request`, secrets that
    /// cannot be read yet a `503 store_unavailable`; both audited.
    pub async fn handle(
        &self,
        event: Value,
        lambda_request_id: &str,
        now: Timestamp,
        jti: String,
    ) -> Handled {
        let (response, outcome) = match RestEvent::from_value(event) {
            Ok(event) => match self.api.at(now).await {
                Ok(api) => {
                    let context = event.context(lambda_request_id, now, jti);
                    let answer = api.handle(event.into_request(), context).await;
                    let outcome = Outcome::Api(answer.outcome());
                    (answer.into_response(), outcome)
                }
                Err(e) => {
                    warn!(error = %error_chain(&e), "could not read the api's secrets");
                    let outcome = Outcome::SecretsUnavailable;
                    audit(lambda_request_id, outcome, "secrets_unavailable", &e);
                    (error_response(ErrorCode::StoreUnavailable), outcome)
                }
            },
            Err(unreadable) => {
                let outcome = Outcome::InvalidEvent;
                audit(lambda_request_id, outcome, "unreadable_event", &unreadable);
                (error_response(ErrorCode::InvalidRequest), outcome)
            }
        };
        let metrics = api_line(
            &self.namespace,
            outcome.as_str(),
            outcome.status().as_u16(),
            now,
        );
        Handled {
            response: gateway_response(response),
            outcome,
            metrics,
        }
    }
}

/// Serves API Gateway events until Lambda ends the process, printing each request's EMF line.
pub async fn serve(function: ApiFunction) -> Result<(), lambda_runtime::Error> {
    let function = &function;
    lambda_runtime::run(service_fn(
        // Any JSON: the adapter reads the event itself (see `RestEvent`).
        move |event: LambdaEvent<Value>| async move {
            // The edge reads the clock, once per request.
            let now = SystemClock.now();
            let handled = function
                .handle(event.payload, &event.context.request_id, now, fresh_jti())
                .await;
            metrics::emit(&handled.metrics);
            Ok::<_, lambda_runtime::Error>(handled.response)
        },
    ))
    .await
}

/// 16 bytes from the operating system's generator, in hex; empty if it failed (see the
/// module docs).
pub fn fresh_jti() -> String {
    use rand::TryRng;
    let mut bytes = [0u8; 16];
    match rand::rngs::SysRng.try_fill_bytes(&mut bytes) {
        Ok(()) => hex::encode(bytes),
        Err(e) => {
            warn!(error = %e, "the operating system's random generator failed");
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http::StatusCode;
    use keyrot_api::{ApiConfig, ApiOutcome};
    use keyrot_core::fake::{FakeAws, FaultRates};
    use keyrot_core::token::{
        ApiKey, ApiKeyDigest, ClientRegistry, SigningKey, TokenConfig, TokenPolicy,
    };
    use keyrot_core::{AccessKeyId, Credentials, Policy, SecretAccessKey, SecretStore, UserName};
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyResponse;
    use lambda_http::{Body, RequestExt};
    use serde_json::json;

    use super::*;
    use crate::api::INVALID_EVENT_CODE;
    use crate::api::fixtures::{
        ACTIVE_KEY, BASE_PATH_ACTIVE_KEY, GENERATE_TOKEN, HEALTH, from_allowed_address, now,
    };

    const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    struct World {
        function: ApiFunction,
        api_key: String,
    }

    async fn world() -> World {
        let aws = FakeAws::new(now(), 1, FaultRates::none());
        let api_key = ApiKey::generate_from([7; 32]);
        let clients = ClientRegistry::from_json(&format!(
            r#"{{"clients": [{{"id": "ci", "api_key_sha256": "{}",
                "scope": ["ci-deployer", "ci+deployer"], "allowed_cidrs": ["52.255.255.0/24"]}}]}}"#,
            ApiKeyDigest::of(&api_key),
        ))
        .unwrap();
        let signing = SigningKey::new("k1", vec![42; 32]).unwrap();
        let tokens = TokenPolicy::new(TokenConfig::new("keyrot", "keyrot-api", signing)).unwrap();
        let user = UserName::new("ci-deployer").unwrap();
        let credentials = Credentials {
            access_key_id: AccessKeyId::new(KEY_ID).unwrap(),
            secret_access_key: SecretAccessKey::new(SECRET),
        };
        aws.store
            .put_pending(&user, &credentials, now())
            .await
            .unwrap();
        aws.store
            .promote(&user, &credentials.access_key_id, None)
            .await
            .unwrap();
        let api = Api::new(
            ApiConfig::new(&Policy::builder().build().unwrap()),
            tokens,
            clients,
            Arc::new(aws.store.clone()),
        )
        .unwrap();
        World {
            function: ApiFunction::new(api, "keyrot"),
            api_key,
        }
    }

    /// A fixture with its placeholders filled and `edit` applied to its JSON.
    fn event(fixture: &str, w: &World, token: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let text = fixture
            .replace("{{API_KEY}}", &w.api_key)
            .replace("{{TOKEN}}", token);
        let mut value: Value = serde_json::from_str(&text).unwrap();
        edit(&mut value);
        value
    }

    struct Answer {
        status: StatusCode,
        body: Value,
        response: ApiGatewayProxyResponse,
        metrics: Value,
    }

    async fn call(w: &World, event: Value) -> Answer {
        let handled = w
            .function
            .handle(event, "lambda-request-id", now(), "jti-1".into())
            .await;
        let body = match &handled.response.body {
            Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
            other => panic!("not a text body: {other:?}"),
        };
        Answer {
            status: StatusCode::from_u16(u16::try_from(handled.response.status_code).unwrap())
                .unwrap(),
            body,
            metrics: serde_json::from_str(&handled.metrics).unwrap(),
            response: handled.response,
        }
    }

    async fn token(w: &World) -> String {
        let a = call(w, event(GENERATE_TOKEN, w, "", from_allowed_address)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        a.body["token"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn health_answers_on_the_stage_path() {
        let w = world().await;
        let a = call(&w, event(HEALTH, &w, "", |_| {})).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, json!({"status": "ok"}));
        assert_eq!(a.response.headers["cache-control"], "no-store");
        assert_eq!(a.response.headers["content-type"], "application/json");
        assert_eq!(a.metrics["Outcome"], "healthy");
        assert_eq!(a.metrics["StatusCode"], 200);
    }

    /// The route is the resource: lambda_http's URI has the stage, and behind a base-path
    /// mapping its raw HTTP path has the base path, on which no route would match.
    #[test]
    fn routes_see_the_resource() {
        for (fixture, uri_path, raw_path) in [
            (ACTIVE_KEY, "/prod/active-key", "/active-key"),
            (
                BASE_PATH_ACTIVE_KEY,
                "/prod/keys/active-key",
                "/keys/active-key",
            ),
        ] {
            let via_lambda_http = lambda_http::request::from_str(fixture).unwrap();
            assert_eq!(via_lambda_http.uri().path(), uri_path);
            assert_eq!(via_lambda_http.raw_http_path(), raw_path);
            let event = RestEvent::from_value(serde_json::from_str(fixture).unwrap()).unwrap();
            let request = event.into_request();
            assert_eq!(request.uri().path(), "/active-key");
            assert_eq!(request.uri().query(), Some("username=ci-deployer"));
            assert_eq!(request.method(), http::Method::GET);
        }
    }

    /// A custom domain maps the API under `/keys`: `path` is `/keys/active-key`, `resource`
    /// is `/active-key`.
    #[tokio::test]
    async fn a_base_path_mapping_routes_on_the_resource() {
        let w = world().await;
        let a = call(
            &w,
            event(GENERATE_TOKEN, &w, "", |e| {
                from_allowed_address(e);
                e["path"] = json!("/keys/generate-token");
            }),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        let token = a.body["token"].as_str().unwrap().to_owned();
        let a = call(&w, event(BASE_PATH_ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["AccessKeyId"], KEY_ID);
        // Without a resource, the path is the route.
        let a = call(
            &w,
            event(BASE_PATH_ACTIVE_KEY, &w, &token, |e| {
                e["resource"] = json!(null);
            }),
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    }

    #[tokio::test]
    async fn a_token_then_the_key_with_lower_and_mixed_case_headers() {
        let w = world().await;
        let token = token(&w).await;
        // The fixture sends `authorization` and `x-api-key` in lower case; the token request
        // sent `X-API-Key`.
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert_eq!(a.body["AccessKeyId"], KEY_ID);
        assert_eq!(a.body["SecretAccessKey"], SECRET);
        assert_eq!(a.response.headers["cache-control"], "no-store");
        assert_eq!(a.metrics["Outcome"], "key_served");
        assert!(!a.metrics.to_string().contains(SECRET));
    }

    #[tokio::test]
    async fn debug_never_prints_a_served_key_or_token() {
        let w = world().await;
        let a = w
            .function
            .handle(
                event(GENERATE_TOKEN, &w, "", from_allowed_address),
                "lambda-request-id",
                now(),
                "jti-1".into(),
            )
            .await;
        assert_eq!(a.outcome, Outcome::Api(ApiOutcome::TokenIssued));
        let Some(Body::Text(body)) = &a.response.body else {
            panic!("no body")
        };
        let token = serde_json::from_str::<Value>(body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let debug = format!("{a:?}");
        assert!(!debug.contains(&token), "{debug}");
        assert!(debug.contains("TokenIssued"), "{debug}");

        let served = w
            .function
            .handle(
                event(ACTIVE_KEY, &w, &token, |_| {}),
                "lambda-request-id",
                now(),
                "jti-2".into(),
            )
            .await;
        assert_eq!(served.outcome, Outcome::Api(ApiOutcome::KeyServed));
        let debug = format!("{served:?}");
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!debug.contains(KEY_ID), "{debug}");
        assert!(
            debug.contains("200") && debug.contains("no-store"),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn a_spoofed_forwarded_for_is_not_the_source() {
        let w = world().await;
        // The fixture comes from 198.51.100.7 and claims the allowed 52.255.255.12.
        let a = call(&w, event(GENERATE_TOKEN, &w, "", |_| {})).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.body["error"]["code"], "unauthorized");
        assert_eq!(a.metrics["Outcome"], "unauthorized");
        // And the other way round: an allowed source whose first forwarded entry (10.9.8.7) is
        // not allowed is served.
        let token = token(&w).await;
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK);
    }

    #[tokio::test]
    async fn without_a_source_address_nothing_authenticates() {
        let w = world().await;
        for source in [json!(null), json!("test-invoke-source-ip")] {
            let a = call(
                &w,
                event(GENERATE_TOKEN, &w, "", |e| {
                    e["requestContext"]["identity"]["sourceIp"] = source.clone();
                }),
            )
            .await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{source}");
        }
    }

    /// lambda_http would keep only the last of two `Authorization` headers.
    #[tokio::test]
    async fn a_repeated_authorization_header_stays_repeated() {
        let w = world().await;
        let token = token(&w).await;
        let duplicated = |e: &mut Value| {
            e["multiValueHeaders"]["authorization"] =
                json!(["Bearer not-a-token", format!("Bearer {token}")]);
        };
        let via_lambda_http = {
            let mut value: Value = serde_json::from_str(
                &ACTIVE_KEY
                    .replace("{{API_KEY}}", &w.api_key)
                    .replace("{{TOKEN}}", &token),
            )
            .unwrap();
            duplicated(&mut value);
            lambda_http::request::from_str(&value.to_string()).unwrap()
        };
        assert_eq!(
            via_lambda_http
                .headers()
                .get_all("authorization")
                .iter()
                .count(),
            1
        );

        let a = call(&w, event(ACTIVE_KEY, &w, &token, duplicated)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    }

    /// API Gateway decodes `username=ci%20deployer` to `ci deployer`; it must stay a space
    /// (an invalid name), not become the `+` of `ci+deployer`, a user this client may read.
    #[tokio::test]
    async fn a_decoded_query_is_encoded_back_exactly() {
        let w = world().await;
        let token = token(&w).await;
        let with_user = |name: &str| {
            let name = name.to_owned();
            move |e: &mut Value| {
                e["queryStringParameters"] = json!({"username": name});
                e["multiValueQueryStringParameters"] = json!({"username": [name]});
            }
        };
        let a = call(&w, event(ACTIVE_KEY, &w, &token, with_user("ci deployer"))).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.body["error"]["code"], "invalid_username");
        let a = call(&w, event(ACTIVE_KEY, &w, &token, with_user("ci+deployer"))).await;
        assert_eq!(a.body["error"]["code"], "key_not_found", "{}", a.body);
        let a = call(
            &w,
            event(ACTIVE_KEY, &w, &token, |e| {
                e["multiValueQueryStringParameters"] = json!({"username": ["ci-deployer", "x"]});
            }),
        )
        .await;
        assert_eq!(a.body["error"]["code"], "invalid_query", "{}", a.body);
    }

    #[tokio::test]
    async fn odd_bodies_and_paths_never_panic() {
        let w = world().await;
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Edit, StatusCode)> = vec![
            (
                Box::new(|e| {
                    e["body"] = json!("not base64 at all!");
                    e["isBase64Encoded"] = json!(true);
                }),
                StatusCode::UNAUTHORIZED,
            ),
            (
                Box::new(|e| {
                    e["body"] = json!("QUFB".repeat(400));
                    e["isBase64Encoded"] = json!(true);
                }),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                Box::new(|e| e["resource"] = json!("/gen erate-token?x#y")),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| {
                    e["resource"] = json!(null);
                    e["path"] = json!(null);
                }),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| {
                    e["resource"] = json!("");
                    e["path"] = json!("/prod/generate-token");
                }),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| e["resource"] = json!("/generate-token/")),
                StatusCode::NOT_FOUND,
            ),
            (
                Box::new(|e| e["headers"]["Host"] = json!("not a host at all")),
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (edit, status) in cases {
            let a = call(&w, event(GENERATE_TOKEN, &w, "", edit)).await;
            assert_eq!(a.status, status, "{}", a.body);
        }
    }

    #[test]
    fn the_request_id_comes_from_api_gateway_else_lambda() {
        let w_event = |edit: fn(&mut Value)| {
            let mut value: Value = serde_json::from_str(HEALTH).unwrap();
            edit(&mut value);
            RestEvent::from_value(value).unwrap()
        };
        let ctx = w_event(|_| {}).context("lambda-id", now(), "j".into());
        assert_eq!(ctx.request_id, "0a1b2c3d-xmpl-4b79-853a-f982474efe20");
        assert_eq!(ctx.source_ip, "203.0.113.50".parse::<IpAddr>().unwrap());
        for edit in [
            (|e: &mut Value| e["requestContext"]["requestId"] = json!(null)) as fn(&mut Value),
            |e| e["requestContext"]["requestId"] = json!(""),
            |e| e["requestContext"] = json!(null),
            |e| {
                e.as_object_mut().unwrap().remove("requestContext");
            },
        ] {
            let ctx = w_event(edit).context("lambda-id", now(), "j".into());
            assert_eq!(ctx.request_id, "lambda-id");
        }
    }

    /// Events API Gateway never sends, as a direct invocation may: each a 4xx in the API's
    /// error format, none a panic or a function error.
    #[tokio::test]
    async fn malformed_events_are_a_4xx_never_a_panic() {
        let w = world().await;
        let token = token(&w).await;
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let invalid = (StatusCode::BAD_REQUEST, INVALID_EVENT_CODE);
        let cases: Vec<(&str, Edit, (StatusCode, &str))> = vec![
            // query_map's iterator indexes the first value of every list.
            (
                ACTIVE_KEY,
                Box::new(|e| e["multiValueQueryStringParameters"] = json!({"username": []})),
                (StatusCode::BAD_REQUEST, "missing_username"),
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| {
                    e["multiValueQueryStringParameters"] = json!({"username": [], "x": []});
                    e["queryStringParameters"] = json!({"username": []});
                }),
                invalid,
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| e["queryStringParameters"] = json!(["username", "ci-deployer"])),
                invalid,
            ),
            (
                ACTIVE_KEY,
                Box::new(|e| e["multiValueQueryStringParameters"] = json!({"username": [7]})),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"]["x-api-key"] = json!(7)),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["multiValueHeaders"]["X-API-Key"] = json!([{"a": 1}])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                // A string where a list belongs: refused without quoting the key.
                Box::new(|e| {
                    let key = e["headers"]["X-API-Key"].clone();
                    e["multiValueHeaders"]["X-API-Key"] = key;
                }),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["multiValueHeaders"]["bad header"] = json!(["x"])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"]["x-note"] = json!("a\nb")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["headers"] = json!("x-api-key: k")),
                invalid,
            ),
            // No requestContext: no source address, so no client authenticates.
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e.as_object_mut().unwrap().remove("requestContext");
                }),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["requestContext"] = json!("prod")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["requestContext"]["identity"]["sourceIp"] = json!([52, 255])),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e["body"] = json!("%%% not base64");
                    e["isBase64Encoded"] = json!(true);
                }),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["isBase64Encoded"] = json!("yes")),
                invalid,
            ),
            (GENERATE_TOKEN, Box::new(|e| e["body"] = json!(12)), invalid),
            (
                GENERATE_TOKEN,
                Box::new(|e| {
                    e.as_object_mut().unwrap().remove("httpMethod");
                }),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["httpMethod"] = json!("PO ST")),
                invalid,
            ),
            (
                GENERATE_TOKEN,
                Box::new(|e| e["resource"] = json!(7)),
                invalid,
            ),
            (HEALTH, Box::new(|e| *e = json!([1, 2])), invalid),
            (HEALTH, Box::new(|e| *e = json!(null)), invalid),
        ];
        for (i, (fixture, edit, (status, code))) in cases.into_iter().enumerate() {
            let a = call(&w, event(fixture, &w, &token, edit)).await;
            assert_eq!(
                (a.status, a.body["error"]["code"].as_str()),
                (status, Some(code)),
                "case {i}: {}",
                a.body
            );
            assert!(a.body["error"]["message"].is_string(), "case {i}");
            assert_eq!(a.response.headers["content-type"], "application/json");
            assert_eq!(a.response.headers["cache-control"], "no-store");
            assert_eq!(a.response.headers["x-content-type-options"], "nosniff");
            assert_eq!(a.metrics["Outcome"], code, "case {i}");
            assert_eq!(a.metrics["StatusCode"], status.as_u16(), "case {i}");
            assert!(!a.body.to_string().contains(&w.api_key), "case {i}");
        }
        // The function still answers.
        let a = call(&w, event(ACTIVE_KEY, &w, &token, |_| {})).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }

    #[test]
    fn token_ids_are_fresh_hex() {
        let (a, b) = (fresh_jti(), fresh_jti());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
