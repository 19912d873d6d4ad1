//! `keyrot-api` as Lambda runs it.

use super::*;

/// The API deployed in moto under names of its own: the signing key and client registry
/// secrets, and one user's stored key.
pub(crate) struct ApiDeployment {
    /// The function's environment: moto and the `KEYROT_*` variables.
    pub(crate) env: Vec<(&'static str, String)>,
    /// The one client's API key (allowed from 52.255.255.0/24, may read `user`).
    pub(crate) api_key: String,
    user: &'static str,
    credentials: Credentials,
}

fn deploy_api(rt: &tokio::runtime::Runtime, moto: &Moto, name: &str) -> ApiDeployment {
    deploy_api_for(rt, moto, name, &["lambda-api-ci"])
}

/// As [`deploy_api`], the client's scope being `scope`.
pub(crate) fn deploy_api_for(
    rt: &tokio::runtime::Runtime,
    moto: &Moto,
    name: &str,
    scope: &[&str],
) -> ApiDeployment {
    let config = rt.block_on(moto.admin_config());
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let base = format!("keyrot-lambda-test/{name}");
    let prefix = format!("{base}/users/");
    let user = "lambda-api-ci";
    let api_key = ApiKey::generate_from([name.len() as u8; 32]);
    let registry = json!({"clients": [{
        "id": "ci",
        "api_key_sha256": ApiKeyDigest::of(&api_key).to_hex(),
        "scope": scope,
        "allowed_cidrs": ["52.255.255.0/24"],
    }]});
    let credentials = Credentials {
        access_key_id: AccessKeyId::new("AKIALAMBDATEST000001").unwrap(),
        secret_access_key: SecretAccessKey::new("lambda/test/SECRET/0123456789abcdefghij"),
    };
    let (signing_key_secret, clients_secret) =
        (format!("{base}/signing-key"), format!("{base}/clients"));
    rt.block_on(async {
        for (name, value) in [
            (
                &signing_key_secret,
                json!({"kid": "k1", "secret": "0123456789abcdefghijABCDEFGHIJ0123456789"}),
            ),
            (&clients_secret, registry),
        ] {
            secrets
                .create_secret()
                .name(name)
                .secret_string(value.to_string())
                .send()
                .await
                .unwrap();
        }
        let store = AwsSecretStore::new(secrets.clone()).with_prefix(&prefix);
        let user = UserName::new(user).unwrap();
        let created = "2025-06-01T00:00:00Z".parse().unwrap();
        store
            .put_pending(&user, &credentials, created)
            .await
            .unwrap();
        store
            .promote(&user, &credentials.access_key_id, None)
            .await
            .unwrap();
    });
    let mut env = aws_env(moto);
    env.extend([
        ("KEYROT_SECRET_PREFIX", prefix),
        ("KEYROT_SIGNING_KEY_SECRET", signing_key_secret),
        ("KEYROT_CLIENTS_SECRET", clients_secret),
    ]);
    ApiDeployment {
        env,
        api_key,
        user,
        credentials,
    }
}

/// An API deployed in moto and its function running.
struct ApiRun {
    deployment: ApiDeployment,
    runtime: RuntimeApi,
    function: Function,
}

/// Deploys the API as `name` and starts `keyrot-api` for it.
fn start_api(name: &str) -> ApiRun {
    let deployment = deploy_api(&tokio(), moto(), name);
    let runtime = RuntimeApi::start();
    let function = Function::start(env!("CARGO_BIN_EXE_keyrot-api"), &runtime, &deployment.env);
    ApiRun {
        deployment,
        runtime,
        function,
    }
}

/// Invokes the API function with `event`; its response and the response's body.
pub(crate) fn call_api(
    runtime: &RuntimeApi,
    function: &mut Function,
    id: &str,
    event: &Value,
) -> (Value, Value) {
    let report = runtime.invoke(function, id, event);
    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let response = report.json();
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    (response, body)
}

pub(crate) fn from_allowed(event: &mut Value) {
    event["requestContext"]["identity"]["sourceIp"] = json!("52.255.255.12");
}

/// `POST /generate-token` from an allowed address: the token.
pub(crate) fn token(
    runtime: &RuntimeApi,
    function: &mut Function,
    deployment: &ApiDeployment,
) -> String {
    let fill = [("{{API_KEY}}", deployment.api_key.as_str())];
    let (response, body) = call_api(
        runtime,
        function,
        "token",
        &event(GENERATE_TOKEN, &fill, from_allowed),
    );
    assert_eq!(response["statusCode"], 200, "{response}");
    body["token"].as_str().unwrap().to_owned()
}

/// `POST /generate-token`, then `GET /active-key` with the token: the token.
fn token_then_key(
    runtime: &RuntimeApi,
    function: &mut Function,
    deployment: &ApiDeployment,
) -> String {
    let token = token(runtime, function, deployment);

    let fill = [
        ("{{API_KEY}}", deployment.api_key.as_str()),
        ("{{TOKEN}}", token.as_str()),
    ];
    let user = deployment.user;
    let (response, body) = call_api(
        runtime,
        function,
        "key",
        &event(ACTIVE_KEY, &fill, |e| {
            e["queryStringParameters"] = json!({"username": user});
            e["multiValueQueryStringParameters"] = json!({"username": [user]});
        }),
    );
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(body["UserName"], user);
    assert_eq!(body["AccessKeyId"], "AKIALAMBDATEST000001");
    assert_eq!(
        body["SecretAccessKey"],
        deployment.credentials.secret_access_key.expose()
    );
    token
}

/// Neither the secret access key, nor the token, nor the API key is in `function`'s output.
fn assert_no_secrets(function: &mut Function, deployment: &ApiDeployment, token: &str) {
    let output = function.output();
    assert!(
        !output.contains(deployment.credentials.secret_access_key.expose()),
        "a secret access key reached the logs\n{output}"
    );
    assert!(
        !output.contains(token),
        "a token reached the logs\n{output}"
    );
    assert!(
        !output.contains(&deployment.api_key),
        "the api key reached the logs\n{output}"
    );
}

#[test]
fn keyrot_api_answers_health_and_a_token_then_the_key() {
    let ApiRun {
        deployment,
        runtime,
        mut function,
        ..
    } = start_api("api");

    let (response, body) = call_api(
        &runtime,
        &mut function,
        "health",
        &event(HEALTH, &[], |_| {}),
    );
    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(body, json!({"status": "ok"}));
    assert_eq!(response["headers"]["cache-control"], "no-store");

    let fill = [("{{API_KEY}}", deployment.api_key.as_str())];
    // From outside the allowlist, whatever X-Forwarded-For claims.
    let (response, body) = call_api(
        &runtime,
        &mut function,
        "spoofed",
        &event(GENERATE_TOKEN, &fill, |_| {}),
    );
    assert_eq!(response["statusCode"], 401, "{response}");
    assert_eq!(body["error"]["code"], "unauthorized");

    let token = token_then_key(&runtime, &mut function, &deployment);

    function.wait_line(|l| l.contains("\"key_served\"") && l.contains("\"_aws\""));
    let outcomes: Vec<String> = function
        .metric_lines()
        .iter()
        .map(|m| m["Outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        ["healthy", "unauthorized", "token_issued", "key_served"]
    );
    assert_no_secrets(&mut function, &deployment, &token);
}

/// At `TRACE`, lambda_runtime logs every raw event, with its `x-api-key` and `Authorization`
/// headers; however the level is asked for, the runtime's and the SDK's crates stay at `info`.
#[test]
fn keyrot_api_at_trace_logs_no_secret() {
    let moto = moto();
    let rt = tokio();
    let deployment = deploy_api(&rt, moto, "api-trace");
    for levels in [
        [("RUST_LOG", "trace"), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")],
        [("RUST_LOG", ""), ("AWS_LAMBDA_LOG_LEVEL", "TRACE")],
        // A span directive enables every event inside the span, whatever its target.
        [
            ("RUST_LOG", "info,[{requestId}]=trace"),
            ("AWS_LAMBDA_LOG_LEVEL", ""),
        ],
    ] {
        let runtime = RuntimeApi::start();
        let mut env = deployment.env.clone();
        env.extend(levels.map(|(name, value)| (name, value.to_owned())));
        let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-api"), &runtime, &env);
        let token = token_then_key(&runtime, &mut function, &deployment);
        function.wait_line(|l| l.contains("\"key_served\"") && l.contains("\"_aws\""));
        assert_no_secrets(&mut function, &deployment, &token);
    }
}

/// Events API Gateway never sends, as a direct invocation may: each answered with a 4xx, the
/// process serving on.
#[test]
fn keyrot_api_answers_malformed_events_with_a_4xx() {
    let ApiRun {
        deployment,
        runtime,
        mut function,
        ..
    } = start_api("api-malformed");
    let token = token_then_key(&runtime, &mut function, &deployment);
    let fill = [
        ("{{API_KEY}}", deployment.api_key.as_str()),
        ("{{TOKEN}}", token.as_str()),
    ];
    let empty_list = event(ACTIVE_KEY, &fill, |e| {
        e["multiValueQueryStringParameters"] = json!({"username": []});
    });
    let (response, body) = call_api(&runtime, &mut function, "empty-list", &empty_list);
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(body["error"]["code"], "missing_username");
    let number = event(GENERATE_TOKEN, &fill, |e| {
        from_allowed(e);
        e["headers"]["x-api-key"] = json!(7);
    });
    let (response, body) = call_api(&runtime, &mut function, "number", &number);
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(body["error"]["code"], "invalid_request");
    assert_eq!(response["headers"]["cache-control"], "no-store");

    token_then_key(&runtime, &mut function, &deployment);
}
