//! End to end, through the real binary: `keyrot serve` on the embedded backend with short
//! periods, the curl lines it prints, and a consumer that follows rotations with
//! `keyrot credential-process`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]
// A real server on the wall clock: the test waits for it with real deadlines.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod common;

/// A whole rotation cycle in seconds: rotate every 12 s, 4 s of grace (5 at most), idle after
/// 1 s, 3 s of recovery, a pass every second; and a consumer that asks twice a second (time
/// runs about 10 000 times faster than in production, so its client may ask that often).
const FAST: [(&str, &str); 9] = [
    ("KEYROT_ROTATION_PERIOD", "12s"),
    ("KEYROT_GRACE_PERIOD", "4s"),
    ("KEYROT_MAX_GRACE_PERIOD", "5s"),
    ("KEYROT_RECOVERY_WINDOW", "3s"),
    ("KEYROT_QUIET_PERIOD", "1s"),
    ("KEYROT_VERIFY_TIMEOUT", "2s"),
    ("KEYROT_SCHEDULE_INTERVAL", "1s"),
    ("KEYROT_KEY_CACHE_TTL", "1s"),
    ("KEYROT_CLIENT_RATE_LIMIT", "600/1m"),
];

fn keyrot() -> Command {
    common::keyrot("warn")
}

/// A running `keyrot serve` and what its banner said.
struct Server {
    _child: Child,
    base: String,
    api_key: String,
    admin_key: String,
    try_it: String,
}

async fn serve() -> Server {
    let mut child = keyrot()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(FAST)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut base, mut api_key, mut try_it) = (None, None, String::new());
    let mut admin_key = None;
    let mut in_try_it = false;
    let banner = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                base = Some(url.to_owned());
            }
            if let Some(key) = line.trim().strip_prefix("export KEYROT_API_KEY=") {
                api_key = Some(key.to_owned());
            }
            if let Some(key) = line.trim().strip_prefix("export KEYROT_ADMIN_API_KEY=") {
                admin_key = Some(key.to_owned());
            }
            if line.starts_with("Try it") {
                in_try_it = true;
            } else if in_try_it && line.is_empty() {
                break;
            } else if in_try_it {
                try_it.push_str(&line);
                try_it.push('\n');
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), banner)
        .await
        .expect("keyrot serve printed its banner");
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        _child: child,
        base: base.expect("the banner names the address"),
        api_key: api_key.expect("the banner prints the API key"),
        admin_key: admin_key.expect("the banner prints the admin client's API key"),
        try_it,
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessCredentials {
    version: u8,
    access_key_id: String,
    secret_access_key: String,
    expiration: String,
}

async fn credential_process(server: &Server, user: &str) -> Result<ProcessCredentials, String> {
    let out = keyrot()
        .args([
            "credential-process",
            "--endpoint",
            &server.base,
            "--username",
            user,
            "--refresh",
            "1s",
        ])
        .env("KEYROT_API_KEY", &server.api_key)
        .output()
        .await
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("credential_process prints its JSON, only"))
}

/// Whether the embedded IAM accepts the key now (what STS would answer). The demo route is
/// under the API's rules: it takes the API key.
async fn valid(server: &Server, key: &ProcessCredentials) -> serde_json::Value {
    let body = serde_json::json!({"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key});
    let response = reqwest_like_post(
        &format!("{}/demo/authenticate", server.base),
        &server.api_key,
        &body.to_string(),
    )
    .await;
    serde_json::from_str(&response).unwrap()
}

/// A minimal HTTP/1.1 POST over a TCP socket (the test needs no HTTP client crate).
async fn reqwest_like_post(url: &str, api_key: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nx-api-key: {api_key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

#[tokio::test]
async fn the_printed_curl_lines_work_as_printed() {
    let server = serve().await;
    assert!(server.try_it.contains("curl"), "{}", server.try_it);
    // The first rotation pass runs at start; give it a moment to publish.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&server.try_it)
            .env("KEYROT_API_KEY", &server.api_key)
            .output()
            .expect("bash and curl are needed to run the printed commands");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.contains("\"AccessKeyId\"") {
            assert!(stdout.contains("\"SecretAccessKey\""), "{stdout}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the printed commands did not fetch a key: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn a_credential_process_consumer_follows_two_rotations() {
    let server = serve().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = BTreeSet::new();
    let mut cached: Option<ProcessCredentials> = None;
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "saw only {} keys: {seen:?}",
            seen.len()
        );
        // The consumer's SDK still holds the key it fetched last time: it must still work.
        if let Some(old) = &cached {
            let answer = valid(&server, old).await;
            assert_eq!(
                answer["valid"], true,
                "a key the consumer holds was refused: {answer}"
            );
        }
        match credential_process(&server, "ci-deployer").await {
            Ok(fresh) => {
                assert_eq!(fresh.version, 1);
                assert!(fresh.expiration.ends_with('Z'), "{}", fresh.expiration);
                let answer = valid(&server, &fresh).await;
                assert_eq!(
                    answer["valid"], true,
                    "a freshly served key was refused: {answer}"
                );
                assert_eq!(answer["user"], "ci-deployer");
                seen.insert(fresh.access_key_id.clone());
                cached = Some(fresh);
            }
            // Before the first pass has published a key.
            Err(e) if cached.is_none() && e.contains("key_not_found") => {}
            Err(e) => panic!("credential-process failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn one_shot_commands_report_and_exit_as_documented() {
    let out = keyrot()
        .args(["rotate", "--dry-run"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("ci-deployer") && table.contains("3 users"),
        "{table}"
    );

    let out = keyrot()
        .args(["rotate", "--user", "human-admin"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an unmanaged user is a failure");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not managed"));

    let out = keyrot().args(["status", "--json"]).output().await.unwrap();
    assert!(out.status.success());
    let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(statuses.as_array().unwrap().len(), 3, "{statuses}");

    // keyrot does not even plan a user it does not manage: no keys shown, no next step.
    let out = keyrot()
        .args(["status", "--json", "--user", "human-admin"])
        .output()
        .await
        .unwrap();
    let statuses: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        statuses,
        serde_json::json!([{
            "user": "human-admin",
            "keys": [],
            "next": "not managed by keyrot: untouched",
            "at": null,
            "attention": true
        }])
    );

    for (args, env, expected) in [
        (vec!["serve", "--listen", "nowhere"], vec![], "listen"),
        (
            vec!["status"],
            vec![("KEYROT_GRACE_PERIOD", "a week")],
            "KEYROT_GRACE_PERIOD",
        ),
        (vec!["rotate", "--user", "../../etc"], vec![], "--user"),
        (
            vec![
                "get-key",
                "--endpoint",
                "http://127.0.0.1:9",
                "--username",
                "x",
            ],
            vec![],
            "KEYROT_API_KEY",
        ),
    ] {
        let out = keyrot()
            .args(&args)
            .envs(env)
            .env_remove("KEYROT_API_KEY")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }

    // The API refusing is a failure of the work, not of the invocation.
    let out = keyrot()
        .args([
            "get-key",
            "--endpoint",
            "http://127.0.0.1:9",
            "--username",
            "x",
        ])
        .env("KEYROT_API_KEY", "krk_nope")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

/// `keyrot status --endpoint` against a running `serve`, as the admin client: every demo user,
/// and the key each has as `current` is the one the server hands out for it. The admin route's
/// answer holds no secret; a client without the admin right (`*` is not it) gets 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_an_endpoint_shows_what_the_server_serves_to_admins_only() {
    let server = serve().await;
    let users = ["backup-agent", "ci-deployer", "etl-nightly"];
    let status = || {
        keyrot()
            .args(["status", "--json", "--endpoint", &server.base])
            .args(["--api-key-env", "KEYROT_ADMIN_API_KEY"])
            .env("KEYROT_ADMIN_API_KEY", &server.admin_key)
            .output()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let secrets = loop {
        let out = status().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let current = |user: &str| {
            shown
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["user"] == user)
                .and_then(|u| {
                    u["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|k| k["stage"] == "current")
                        .map(|k| {
                            assert_eq!(k["lifecycle"], "current", "{shown}");
                            k["id"].as_str().unwrap().to_owned()
                        })
                })
        };
        let mut same = true;
        let mut secrets = Vec::new();
        for user in users {
            let served = credential_process(&server, user).await;
            match (current(user), served) {
                (Some(id), Ok(key)) if id == key.access_key_id => {
                    secrets.push(key.secret_access_key);
                }
                _ => same = false,
            }
        }
        if same {
            break secrets;
        }
        assert!(
            Instant::now() < deadline,
            "status and the API never agreed: {shown}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // The route's raw answer: no secret, and no field that could carry one.
    let http = reqwest::Client::new();
    let token = token_of(&http, &server.base, &server.admin_key).await;
    let response = http
        .get(format!("{}/admin/status", server.base))
        .header("x-api-key", &server.admin_key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    for user in users {
        assert!(body.contains(user), "{body}");
    }
    assert!(
        !body.contains("SecretAccessKey") && !body.contains("secret"),
        "{body}"
    );
    for secret in &secrets {
        assert!(
            !body.contains(secret.as_str()),
            "a secret in the admin status"
        );
    }

    // The page: the same route family, the API's headers and a strict CSP.
    let page = http
        .get(format!("{}/admin/page", server.base))
        .header("x-api-key", &server.admin_key)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let demo_token = token_of(&http, &server.base, &server.api_key).await;
    for route in ["/admin/status", "/admin/page"] {
        let refused = http
            .get(format!("{}{route}", server.base))
            .header("x-api-key", &server.api_key)
            .bearer_auth(&demo_token)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{route}");
    }

    // The demo client reads every user's key, but `*` is not the admin right.
    let out = keyrot()
        .args(["status", "--endpoint", &server.base])
        .env("KEYROT_API_KEY", &server.api_key)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("403") && stderr.contains("forbidden"),
        "{stderr}"
    );
}

/// A fresh token for the client with `api_key`.
async fn token_of(http: &reqwest::Client, base: &str, api_key: &str) -> String {
    let body = http
        .post(format!("{base}/generate-token"))
        .header("x-api-key", api_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A W3C WebDriver command to chromedriver: its `value`.
async fn webdriver(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let text = request.send().await.unwrap().text().await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(answer["value"]["error"].is_null(), "{answer}");
    answer["value"].clone()
}

/// The status page in real headless Chromium (Debian's, driven by chromedriver): every demo
/// user and a chart per user, a screenshot that is not blank, no sub-resource at all, and no
/// secret anywhere in it. The browser authenticates as API clients do, with the API key and a
/// token in request headers (set through the DevTools protocol), so no credential is in the
/// URL, the history or a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_in_chromium_with_every_user_and_no_secret() {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{chromedriver}: {e} (apt-get install chromium chromium-driver)")
        });
    let server = serve().await;
    let users = ["backup-agent", "ci-deployer", "etl-nightly"];
    let mut secrets = Vec::new();
    for user in users {
        secrets.push(
            credential_process(&server, user)
                .await
                .unwrap()
                .secret_access_key,
        );
    }
    let http = reqwest::Client::new();
    let token = token_of(&http, &server.base, &server.admin_key).await;
    let driver_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let profile = std::env::temp_dir().join(format!("keyrot-chromium-{port}"));
    let session = webdriver(
        &http,
        reqwest::Method::POST,
        format!("{driver_url}/session"),
        Some(serde_json::json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1000,1400",
            ]}
        }}})),
    )
    .await;
    let s = format!(
        "{driver_url}/session/{}",
        session["sessionId"].as_str().unwrap()
    );
    let cdp = |cmd: &'static str, params: serde_json::Value| {
        webdriver(
            &http,
            reqwest::Method::POST,
            format!("{s}/goog/cdp/execute"),
            Some(serde_json::json!({"cmd": cmd, "params": params})),
        )
    };
    let screenshot = || webdriver(&http, reqwest::Method::GET, format!("{s}/screenshot"), None);
    let png_len = |shot: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap()
            .len()
    };
    let blank = png_len(screenshot().await);
    cdp("Network.enable", serde_json::json!({})).await;
    cdp(
        "Network.setExtraHTTPHeaders",
        serde_json::json!({"headers": {
            "x-api-key": server.admin_key,
            "authorization": format!("Bearer {token}"),
        }}),
    )
    .await;
    webdriver(
        &http,
        reqwest::Method::POST,
        format!("{s}/url"),
        Some(serde_json::json!({"url": format!("{}/admin/page", server.base)})),
    )
    .await;
    let dom = webdriver(&http, reqwest::Method::GET, format!("{s}/source"), None).await;
    let dom = dom.as_str().unwrap().to_owned();
    let run = |script: &str| {
        webdriver(
            &http,
            reqwest::Method::POST,
            format!("{s}/execute/sync"),
            Some(serde_json::json!({"script": script, "args": []})),
        )
    };
    let charts = run("return document.querySelectorAll('svg.timeline rect.key').length").await;
    let resources = run("return performance.getEntriesByType('resource').length").await;
    let shown = png_len(screenshot().await);
    webdriver(&http, reqwest::Method::DELETE, s.clone(), None).await;
    driver.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&profile);

    assert!(dom.contains("keyrot status"), "{dom}");
    for user in users {
        assert!(dom.contains(&format!("<h2>{user}</h2>")), "{user}: {dom}");
    }
    assert!(
        charts.as_u64().unwrap() >= 3,
        "a bar per key: {charts} in {dom}"
    );
    assert_eq!(resources, 0, "the page loads nothing");
    for secret in &secrets {
        assert!(!dom.contains(secret.as_str()), "a secret on the page");
    }
    assert!(!dom.contains("SecretAccessKey"));
    assert!(
        shown > 2 * blank,
        "the screenshot is blank: {shown} bytes, blank {blank}"
    );
}
