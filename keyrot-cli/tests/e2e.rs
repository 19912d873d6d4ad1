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
    let mut in_try_it = false;
    let banner = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                base = Some(url.to_owned());
            }
            if let Some(key) = line.trim().strip_prefix("export KEYROT_API_KEY=") {
                api_key = Some(key.to_owned());
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
