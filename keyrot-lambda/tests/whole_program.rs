//! The two binaries as whole programs: each runs as Lambda runs it, against a small fake of
//! the Lambda Runtime API on 127.0.0.1 (`GET .../invocation/next` hands out an event with the
//! request id and deadline headers; `.../response`, `.../error` and `.../init/error` are
//! recorded), with its AWS calls going to moto's server on 127.0.0.1
//! ([`keyrot_aws::moto::Moto::shared`], authentication enforced).
//!
//! No test sleeps: the fake answers `next` as soon as an event is queued, and every wait is on
//! a condition (a report arrived, a line was printed, the process closed its output), bounded
//! by [`TIMEOUT`]. Every child process is killed when its test ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keyrot_aws::AwsSecretStore;
use keyrot_aws::moto::Moto;
use keyrot_core::token::{ApiKey, ApiKeyDigest};
use keyrot_core::{AccessKeyId, Credentials, SecretAccessKey, SecretStore, Timestamp, UserName};
use serde_json::{Value, json};

/// How long any one wait may take (moto answers in milliseconds; a loaded CI machine is slow).
const TIMEOUT: Duration = Duration::from_secs(120);

const HEALTH: &str = include_str!("fixtures/apigw-rest-health.json");
const GENERATE_TOKEN: &str = include_str!("fixtures/apigw-rest-generate-token.json");
const ACTIVE_KEY: &str = include_str!("fixtures/apigw-rest-active-key.json");
const SCHEDULED: &str = include_str!("fixtures/eventbridge-scheduled.json");

// ------------------------------------------------------------------ the fake Runtime API

/// What the function told the Runtime API.
#[derive(Debug, Clone)]
struct Report {
    /// `response`, `error` or `init-error`.
    kind: &'static str,
    request_id: Option<String>,
    error_type: Option<String>,
    body: String,
}

impl Report {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

#[derive(Default)]
struct State {
    events: VecDeque<(String, String)>,
    reports: Vec<Report>,
    closed: bool,
}

/// The Lambda Runtime API, as much of it as a function uses.
struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl RuntimeApi {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let state = Arc::clone(&shared);
                thread::spawn(move || serve_connection(stream, &state));
            }
        });
        Self { addr, state }
    }

    /// `AWS_LAMBDA_RUNTIME_API`.
    fn host_port(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap()
    }

    /// Queues an event and waits for the function's answer to it.
    fn invoke(&self, function: &mut Function, id: &str, event: &Value) -> Report {
        self.lock()
            .events
            .push_back((id.to_owned(), event.to_string()));
        self.state.1.notify_all();
        self.wait_for(function, |r| r.request_id.as_deref() == Some(id))
    }

    fn wait_for(&self, function: &mut Function, matches: impl Fn(&Report) -> bool) -> Report {
        let guard = self.lock();
        let (guard, timeout) = self
            .state
            .1
            .wait_timeout_while(guard, TIMEOUT, |s| !s.reports.iter().any(&matches))
            .unwrap();
        if timeout.timed_out() {
            drop(guard);
            panic!("no report within {TIMEOUT:?}\n{}", function.output());
        }
        guard.reports.iter().find(|r| matches(r)).cloned().unwrap()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.lock().closed = true;
        self.state.1.notify_all();
    }
}

/// Answers one keep-alive connection of the function's runtime client.
fn serve_connection(stream: TcpStream, state: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap();
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = read_body(
            &mut reader,
            header("content-length"),
            header("transfer-encoding"),
        );
        let prefix = "/2018-06-01/runtime/";
        let route = path.strip_prefix(prefix).unwrap_or(&path);
        let (status, extra, answer) = if method == "GET" && route == "invocation/next" {
            let mut guard = state
                .1
                .wait_while(state.0.lock().unwrap(), |s| {
                    s.events.is_empty() && !s.closed
                })
                .unwrap();
            let Some((id, event)) = guard.events.pop_front() else {
                return;
            };
            #[allow(clippy::disallowed_methods)] // Lambda stamps deadlines in real time too
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let deadline = (now + Duration::from_secs(120)).as_millis();
            let extra = format!(
                "Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:keyrot\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793\r\n\
                 Content-Type: application/json\r\n"
            );
            (200, extra, event)
        } else if method == "POST" {
            let segments: Vec<&str> = route.split('/').collect();
            let (kind, request_id) = match segments.as_slice() {
                ["invocation", id, "response"] => ("response", Some((*id).to_owned())),
                ["invocation", id, "error"] => ("error", Some((*id).to_owned())),
                ["init", "error"] => ("init-error", None),
                _ => ("unknown", None),
            };
            state.0.lock().unwrap().reports.push(Report {
                kind,
                request_id,
                error_type: header("lambda-runtime-function-error-type"),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            state.1.notify_all();
            (202, String::new(), r#"{"status":"OK"}"#.to_owned())
        } else {
            (404, String::new(), "{}".to_owned())
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}\r\n{answer}",
            answer.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn read_body(
    reader: &mut impl BufRead,
    length: Option<String>,
    encoding: Option<String>,
) -> Vec<u8> {
    let mut body = Vec::new();
    if encoding.is_some_and(|e| e.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let length = length.map_or(0, |l| l.parse().unwrap());
    body.resize(length, 0);
    reader.read_exact(&mut body).unwrap();
    body
}

// ------------------------------------------------------------------ the function's process

#[derive(Default)]
struct Output {
    stdout: Vec<String>,
    stderr: Vec<String>,
    stdout_closed: bool,
}

/// A function binary running against a [`RuntimeApi`]; killed when dropped.
struct Function {
    child: Child,
    output: Arc<(Mutex<Output>, Condvar)>,
}

impl Function {
    /// Starts `binary` with `RUST_LOG=info`, the Lambda variables and `env`, in which an empty
    /// value removes a variable.
    fn start(binary: &str, runtime: &RuntimeApi, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", runtime.host_port())
            .env("AWS_LAMBDA_FUNCTION_NAME", "keyrot-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/keyrot-test")
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2025/06/01/[$LATEST]0123456789abcdef",
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in env {
            if value.is_empty() {
                command.env_remove(name);
            } else {
                command.env(name, value);
            }
        }
        let mut child = command.spawn().unwrap();
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let stdout = child.stdout.take().unwrap();
        let shared = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                shared.0.lock().unwrap().stdout.push(line);
                shared.1.notify_all();
            }
            shared.0.lock().unwrap().stdout_closed = true;
            shared.1.notify_all();
        });
        let stderr = child.stderr.take().unwrap();
        let shared = Arc::clone(&output);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                shared.0.lock().unwrap().stderr.push(line);
            }
        });
        Self { child, output }
    }

    /// Everything the process printed so far, for a failure message.
    fn output(&mut self) -> String {
        let exited = self.child.try_wait().ok().flatten();
        let out = self.output.0.lock().unwrap();
        format!(
            "exit: {exited:?}\n--- stdout\n{}\n--- stderr\n{}",
            out.stdout.join("\n"),
            out.stderr.join("\n")
        )
    }

    /// Waits for a stdout line that `matches`, and returns it.
    fn wait_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let found = {
            let guard = self.output.0.lock().unwrap();
            let (guard, _) = self
                .output
                .1
                .wait_timeout_while(guard, TIMEOUT, |o| {
                    !o.stdout_closed && !o.stdout.iter().any(|l| matches(l))
                })
                .unwrap();
            guard.stdout.iter().find(|l| matches(l)).cloned()
        };
        found.unwrap_or_else(|| panic!("no such line\n{}", self.output()))
    }

    /// The EMF metric lines printed so far.
    fn metric_lines(&self) -> Vec<Value> {
        let out = self.output.0.lock().unwrap();
        out.stdout
            .iter()
            .filter(|l| l.contains("\"_aws\""))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits for the process to end by itself (it closes its stdout first).
    fn wait_exit(&mut self) -> ExitStatus {
        let closed = {
            let guard = self.output.0.lock().unwrap();
            let (guard, _) = self
                .output
                .1
                .wait_timeout_while(guard, TIMEOUT, |o| !o.stdout_closed)
                .unwrap();
            guard.stdout_closed
        };
        assert!(closed, "the process did not exit\n{}", self.output());
        self.child.wait().unwrap()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ moto

fn moto() -> &'static Moto {
    Moto::shared().unwrap_or_else(|e| panic!("{e}"))
}

/// One runtime per test: SDK clients keep their connections on the runtime they first ran on.
fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The lease table the tests' rotators share (each test has users of its own).
const LEASE_TABLE: &str = "keyrot-lambda-test-leases";

/// The AWS part of a function's environment: moto, signed with its administrator's key, and
/// the lease table (made if need be), as the template passes it to the rotator.
fn aws_env(moto: &Moto) -> Vec<(&'static str, String)> {
    tokio()
        .block_on(moto.create_lease_table(LEASE_TABLE))
        .unwrap();
    let (key_id, secret) = moto.admin_credentials();
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint().to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", key_id.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
        ("KEYROT_LEASE_TABLE", LEASE_TABLE.to_owned()),
    ]
}

fn event(fixture: &str, fill: &[(&str, &str)], edit: impl FnOnce(&mut Value)) -> Value {
    let mut text = fixture.to_owned();
    for (placeholder, value) in fill {
        text = text.replace(placeholder, value);
    }
    let mut value: Value = serde_json::from_str(&text).unwrap();
    edit(&mut value);
    value
}

// ------------------------------------------------------------------ the tests

#[test]
fn keyrot_rotate_rotates_a_tagged_user_in_moto_and_returns_the_report() {
    let moto = moto();
    let rt = tokio();
    let config = rt.block_on(moto.admin_config());
    let iam = aws_sdk_iam::Client::new(&config);
    let tag = "keyrot:managed:lambda-rotate";
    let (fresh, legacy, other) = ("lambda-rot-fresh", "lambda-rot-legacy", "lambda-rot-other");
    let legacy_key = rt.block_on(async {
        for (user, tags) in [
            (fresh, &[(tag, "true")][..]),
            (legacy, &[(tag, "true")]),
            (other, &[]),
        ] {
            moto.create_user(user, tags).await.unwrap();
        }
        iam.create_access_key()
            .user_name(other)
            .send()
            .await
            .unwrap();
        let key = iam
            .create_access_key()
            .user_name(legacy)
            .send()
            .await
            .unwrap();
        key.access_key().unwrap().access_key_id().to_owned()
    });
    let prefix = "keyrot-lambda-test/rotate/";

    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.extend([
        ("KEYROT_SECRET_PREFIX", prefix.to_owned()),
        ("KEYROT_MANAGED_TAG", format!("{tag}=true")),
        ("KEYROT_METRICS_NAMESPACE", "keyrot-test".to_owned()),
    ]);
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);
    let scheduled = event(SCHEDULED, &[("{{TIME}}", "2025-06-01T12:00:00Z")], |_| {});
    let report = runtime.invoke(&mut function, "rotate-1", &scheduled);

    assert_eq!(report.kind, "response", "{report:?}\n{}", function.output());
    let out = report.json();
    assert_eq!(out["now"], "2025-06-01T12:00:00Z");
    assert!(out["deadline"].is_string(), "{out}");
    assert_eq!(out["counts"]["users"], 2, "{out}");
    assert_eq!(out["counts"]["rotated"], 1, "{out}");
    let users = out["users"].as_array().unwrap();
    assert_eq!(users[0]["user"], fresh);
    assert_eq!(users[0]["status"], "waiting");
    let steps: Vec<&str> = users[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(steps.iter().any(|s| s.starts_with("publish")), "{steps:?}");
    assert_eq!(users[1]["user"], legacy);
    assert!(
        users[1]["steps"][0].as_str().unwrap().starts_with("adopt"),
        "{out}"
    );

    // What the report says is what moto holds: the fresh user's one key is the stored current
    // one; the legacy key is untouched; the untagged user was not touched at all.
    let store =
        AwsSecretStore::new(aws_sdk_secretsmanager::Client::new(&config)).with_prefix(prefix);
    rt.block_on(async {
        let keys = iam
            .list_access_keys()
            .user_name(fresh)
            .send()
            .await
            .unwrap();
        let ids: Vec<&str> = keys
            .access_key_metadata()
            .iter()
            .filter_map(|k| k.access_key_id())
            .collect();
        let current = store
            .current(&UserName::new(fresh).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids, [current.access_key_id.as_str()]);
        let keys = iam
            .list_access_keys()
            .user_name(legacy)
            .send()
            .await
            .unwrap();
        assert_eq!(
            keys.access_key_metadata()[0].access_key_id(),
            Some(legacy_key.as_str())
        );
        let keys = iam
            .list_access_keys()
            .user_name(other)
            .send()
            .await
            .unwrap();
        assert_eq!(keys.access_key_metadata().len(), 1);
        assert!(
            store
                .load(&UserName::new(other).unwrap())
                .await
                .unwrap()
                .versions
                .is_empty()
        );
    });

    let line = function.wait_line(|l| l.contains("\"RotationsSucceeded\""));
    let metrics: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(metrics["RotationsSucceeded"], 1);
    assert_eq!(metrics["RotationFailures"], 0);
    assert_eq!(metrics["Service"], "keyrot-rotate");
    assert_eq!(
        metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "keyrot-test"
    );
    assert_eq!(
        metrics["_aws"]["Timestamp"],
        "2025-06-01T12:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond()
    );

    // The second run finds nothing to do, in the same process.
    let report = runtime.invoke(&mut function, "rotate-2", &scheduled);
    assert_eq!(report.json()["counts"]["rotated"], 0, "{}", report.body);
}

#[test]
fn keyrot_rotate_fails_an_invocation_it_cannot_start_as_not_retryable() {
    let moto = moto();
    let runtime = RuntimeApi::start();
    let mut env = aws_env(moto);
    env.retain(|(name, _)| !name.starts_with("AWS_SECRET") && !name.starts_with("AWS_ACCESS"));
    // A key moto does not know: IAM refuses the listing.
    env.push(("AWS_SECRET_ACCESS_KEY", "not-the-secret".to_owned()));
    env.push(("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000".to_owned()));
    env.push((
        "KEYROT_MANAGED_TAG",
        "keyrot:managed:lambda-denied=true".to_owned(),
    ));
    let mut function = Function::start(env!("CARGO_BIN_EXE_keyrot-rotate"), &runtime, &env);
    let scheduled = event(SCHEDULED, &[("{{TIME}}", "2025-06-01T12:00:00Z")], |_| {});
    let report = runtime.invoke(&mut function, "denied-1", &scheduled);
    assert_eq!(report.kind, "error", "{report:?}");
    let body = report.json();
    assert_eq!(
        body["errorType"], "keyrot.NotRetryable.AccessDenied",
        "{body}"
    );
    assert!(
        body["errorMessage"]
            .as_str()
            .unwrap()
            .starts_with("could not list the managed users"),
        "{body}"
    );
    assert!(function.metric_lines().is_empty());
}

/// The API deployed in moto under names of its own: the signing key and client registry
/// secrets, and one user's stored key.
struct ApiDeployment {
    /// The function's environment: moto and the `KEYROT_*` variables.
    env: Vec<(&'static str, String)>,
    /// The one client's API key (allowed from 52.255.255.0/24, may read `user`).
    api_key: String,
    user: &'static str,
    credentials: Credentials,
}

fn deploy_api(rt: &tokio::runtime::Runtime, moto: &Moto, name: &str) -> ApiDeployment {
    let config = rt.block_on(moto.admin_config());
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let base = format!("keyrot-lambda-test/{name}");
    let prefix = format!("{base}/users/");
    let user = "lambda-api-ci";
    let api_key = ApiKey::generate_from([name.len() as u8; 32]);
    let registry = json!({"clients": [{
        "id": "ci",
        "api_key_sha256": ApiKeyDigest::of(&api_key).to_hex(),
        "scope": [user],
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
            .promote(&user, &credentials.access_key_id)
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
fn call_api(
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

fn from_allowed(event: &mut Value) {
    event["requestContext"]["identity"]["sourceIp"] = json!("52.255.255.12");
}

/// `POST /generate-token`, then `GET /active-key` with the token: the token.
fn token_then_key(
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
    let token = body["token"].as_str().unwrap().to_owned();

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

#[test]
fn a_bad_configuration_is_an_init_error_not_a_silent_crash() {
    for (binary, env, error_type, message) in [
        (
            env!("CARGO_BIN_EXE_keyrot-rotate"),
            vec![
                ("KEYROT_LEASE_TABLE", LEASE_TABLE.to_owned()),
                ("KEYROT_GRACE_PERIOD", "1 week".to_owned()),
            ],
            "keyrot.NotRetryable.Config",
            "KEYROT_GRACE_PERIOD: \"1 week\" is not a duration",
        ),
        (
            env!("CARGO_BIN_EXE_keyrot-rotate"),
            vec![],
            "keyrot.NotRetryable.Config",
            "KEYROT_LEASE_TABLE is required but not set",
        ),
        (
            env!("CARGO_BIN_EXE_keyrot-api"),
            vec![("KEYROT_CLIENTS_SECRET", "keyrot/api/clients".to_owned())],
            "keyrot.NotRetryable.Config",
            "invalid configuration: KEYROT_SIGNING_KEY_SECRET is required but not set",
        ),
    ] {
        let runtime = RuntimeApi::start();
        let mut function = Function::start(binary, &runtime, &env);
        let report = runtime.wait_for(&mut function, |r| r.kind == "init-error");
        assert_eq!(report.error_type.as_deref(), Some(error_type), "{report:?}");
        let body = report.json();
        assert_eq!(body["errorType"], error_type);
        assert!(
            body["errorMessage"].as_str().unwrap().starts_with(message),
            "{binary}: {body}"
        );
        let status = function.wait_exit();
        assert!(!status.success(), "{binary} exited with {status}");
        // Logged too, as JSON.
        function.wait_line(|l| l.contains("cold start failed") && l.starts_with('{'));
    }
}
