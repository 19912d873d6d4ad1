//! `keyrot serve`'s edge through real sockets to the real binary: the header and idle
//! timeouts, a half-sent request at SIGTERM, declared and malformed bodies, hyper's own
//! refusals, the 401 challenge, the rate limit, TLS off loopback with a certificate the test
//! makes (and reloads), plain HTTP refused there. Timeouts are set short (a few hundred
//! milliseconds); every wait has a bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A real server on the wall clock: the test measures it with real deadlines.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

mod common;

/// The longest any answer may take in these tests.
const BOUND: Duration = Duration::from_secs(5);

fn keyrot() -> Command {
    common::keyrot("info")
}

/// A running `keyrot serve`, its port, its demo API key and its log.
struct Server {
    child: Child,
    port: u16,
    api_key: String,
    log: tokio::sync::watch::Receiver<String>,
}

async fn serve(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = keyrot()
        .arg("serve")
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log_tx, log) = tokio::sync::watch::channel(String::new());
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr.next_line().await {
            log_tx.send_modify(|log| {
                log.push_str(&line);
                log.push('\n');
            });
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut port, mut api_key) = (None, None);
    let banner = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("listening on ") {
                port = url.rsplit(':').next().map(|p| p.parse().unwrap());
            }
            if let Some(key) = line.trim().strip_prefix("export KEYROT_API_KEY=") {
                api_key = Some(key.to_owned());
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), banner)
        .await
        .expect("keyrot serve printed its banner");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        child,
        port: port.expect("the banner names the address"),
        api_key: api_key.expect("the banner prints the API key"),
        log,
    }
}

impl Server {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr()).await.unwrap()
    }

    /// The log once it holds `needle` `times` times (the log is read as the server writes
    /// it), within the bound.
    async fn log_with(&self, needle: &str, times: usize) -> String {
        let mut log = self.log.clone();
        let enough = |log: &String| log.matches(needle).count() >= times;
        let found = tokio::time::timeout(BOUND, log.wait_for(enough))
            .await
            .is_ok();
        let log = self.log.borrow().clone();
        assert!(found, "{needle:?} is not in the log: {log}");
        log
    }

    /// A connection from another loopback address (another source for the rate limits).
    async fn connect_from(&self, source: [u8; 4]) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        socket.connect(self.addr()).await.unwrap()
    }
}

/// Sends `request` and reads until the server closes or `quiet` passes without a byte.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    quiet: Duration,
) -> String {
    stream.write_all(request).await.unwrap();
    read_answer(stream, quiet).await
}

async fn read_answer<S: AsyncRead + Unpin>(stream: &mut S, quiet: Duration) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `stream` (end of stream or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The status, the headers (lower-case names) and the JSON body of one answer.
fn parse(answer: &str) -> (u16, Vec<(String, String)>, serde_json::Value) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"));
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    (status, headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The answer is keyrot's uniform error `code` with `status`, and the headers every answer
/// carries.
#[track_caller]
fn assert_uniform(answer: &str, status: u16, code: &str) -> Vec<(String, String)> {
    let (got, headers, body) = parse(answer);
    assert_eq!(got, status, "{answer}");
    assert_eq!(body["error"]["code"], code, "{answer}");
    assert!(body["error"]["message"].is_string(), "{answer}");
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    headers
}

const FAST_EDGE: [(&str, &str); 3] = [
    ("KEYROT_HEADER_TIMEOUT", "200ms"),
    ("KEYROT_IDLE_TIMEOUT", "300ms"),
    ("KEYROT_REQUEST_TIMEOUT", "500ms"),
];

#[tokio::test]
async fn slow_and_idle_clients_are_closed_after_their_timeouts() {
    let server = serve(&["--listen", "127.0.0.1:0"], &FAST_EDGE).await;
    // Half a request head, then nothing: closed after the header timeout, unanswered.
    let mut slow = server.connect().await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
    let start = Instant::now();
    assert!(
        closed_within(&mut slow, BOUND).await,
        "a slow client was kept"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    // A connection that never sends a byte: the same.
    let mut silent = server.connect().await;
    assert!(closed_within(&mut silent, BOUND).await);
    // 50 slow clients at once: all closed too.
    let mut many = Vec::new();
    for _ in 0..50 {
        let mut stream = server.connect().await;
        stream.write_all(b"GET /he").await.unwrap();
        many.push(stream);
    }
    for stream in &mut many {
        assert!(closed_within(stream, BOUND).await);
    }
    // A kept-alive connection answers again, then is closed once idle for 300 ms.
    let mut kept = server.connect().await;
    for _ in 0..2 {
        kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_answer(&mut kept, Duration::from_millis(100)).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    }
    let idle = Instant::now();
    assert!(
        closed_within(&mut kept, BOUND).await,
        "an idle connection was kept"
    );
    assert!(
        idle.elapsed() >= Duration::from_millis(150),
        "{:?}",
        idle.elapsed()
    );
}

#[tokio::test]
async fn sigterm_stops_the_server_within_its_deadline_despite_a_half_sent_request() {
    let mut server = serve(
        &["--listen", "127.0.0.1:0", "--shutdown-timeout", "300ms"],
        &[("KEYROT_HEADER_TIMEOUT", "1m")],
    )
    .await;
    let mut half = server.connect().await;
    half.write_all(b"POST /generate-token HTTP/1.1\r\nHost: x\r\nContent-Le")
        .await
        .unwrap();
    // The server has the bytes before it is told to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pid = server.child.id().unwrap().to_string();
    let term = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(BOUND, server.child.wait())
        .await
        .expect("keyrot serve exited after SIGTERM")
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    let took = term.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "it waited for the request: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(closed_within(&mut half, BOUND).await);
}

#[tokio::test]
async fn bodies_are_refused_by_their_declared_length_and_their_framing() {
    let server = serve(&["--listen", "127.0.0.1:0"], &FAST_EDGE).await;
    let quiet = Duration::from_millis(400);
    // A declared length over the limit, no body: 413 at once.
    let start = Instant::now();
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
        quiet,
    )
    .await;
    let headers = assert_uniform(&answer, 413, "body_too_large");
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert!(start.elapsed() < Duration::from_secs(2));
    // Expect: 100-continue with 5 MB: no 100 Continue, the 413 straight away.
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n",
        quiet,
    )
    .await;
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert_uniform(&answer, 413, "body_too_large");
    // A chunked body that is not chunked: 400; one over the limit: 413.
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        quiet,
    )
    .await;
    assert_uniform(&answer, 400, "invalid_request");
    let mut big =
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
            .to_vec();
    big.extend_from_slice(&[b'a'; 0x800]);
    big.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = exchange(&mut server.connect().await, &big, quiet).await;
    assert_uniform(&answer, 413, "body_too_large");
    // A body that stops half way: 408 after the request timeout.
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
        Duration::from_secs(2),
    )
    .await;
    assert_uniform(&answer, 408, "request_timeout");
    // A body within the limit reaches the API (which answers 401 without an API key).
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        quiet,
    )
    .await;
    assert_uniform(&answer, 401, "unauthorized");
}

#[tokio::test]
async fn hypers_own_refusals_are_the_uniform_error() {
    let server = serve(&["--listen", "127.0.0.1:0"], &FAST_EDGE).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..101)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"GET /health HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",
            400,
            "invalid_request",
        ),
        (
            b"GET /active-key?username=\xff HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "invalid_request",
        ),
        (long_uri.as_bytes(), 414, "uri_too_long"),
        (many_headers.as_bytes(), 431, "headers_too_large"),
    ];
    for (request, status, code) in cases {
        let answer = exchange(&mut server.connect().await, request, Duration::from_secs(1)).await;
        let headers = assert_uniform(&answer, status, code);
        assert_eq!(header(&headers, "connection"), Some("close"), "{answer}");
    }
    let log = server.log_with("http_head_unparsable", 5).await;
    assert_eq!(
        log.matches("http_head_unparsable").count(),
        5,
        "an audit line each: {log}"
    );
}

#[tokio::test]
async fn a_401_says_how_to_authenticate() {
    let server = serve(&["--listen", "127.0.0.1:0"], &FAST_EDGE).await;
    let quiet = Duration::from_millis(400);
    let answer = exchange(
        &mut server.connect().await,
        b"POST /generate-token HTTP/1.1\r\nHost: x\r\nx-api-key: krk_wrong\r\nConnection: close\r\n\r\n",
        quiet,
    )
    .await;
    let headers = assert_uniform(&answer, 401, "unauthorized");
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"Bearer realm="keyrot""#)
    );
    let request = format!(
        "GET /active-key?username=ci-deployer HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nAuthorization: Bearer not.a.token\r\nConnection: close\r\n\r\n",
        server.api_key
    );
    let answer = exchange(&mut server.connect().await, request.as_bytes(), quiet).await;
    let headers = assert_uniform(&answer, 401, "unauthorized");
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some(r#"Bearer realm="keyrot", error="invalid_token""#)
    );
}

#[tokio::test]
async fn the_demo_route_takes_the_api_key_and_answers_uniformly() {
    let server = serve(&["--listen", "127.0.0.1:0"], &FAST_EDGE).await;
    let quiet = Duration::from_millis(400);
    let body = r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"x"}"#;
    let post = |key: &str| {
        format!(
            "POST /demo/authenticate HTTP/1.1\r\nHost: x\r\n{key}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let answer = exchange(&mut server.connect().await, post("").as_bytes(), quiet).await;
    let headers = assert_uniform(&answer, 401, "unauthorized");
    assert!(header(&headers, "www-authenticate").is_some());
    let with_key = post(&format!("x-api-key: {}\r\n", server.api_key));
    let answer = exchange(&mut server.connect().await, with_key.as_bytes(), quiet).await;
    let (status, headers, json) = parse(&answer);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json["valid"], false, "{answer}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    let get = "GET /demo/authenticate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = exchange(&mut server.connect().await, get.as_bytes(), quiet).await;
    let headers = assert_uniform(&answer, 405, "method_not_allowed");
    assert_eq!(header(&headers, "allow"), Some("POST"));
    server.log_with("route=\"demo_authenticate\"", 3).await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let server = serve(
        &["--listen", "127.0.0.1:0", "--max-connections", "2"],
        &[
            ("KEYROT_HEADER_TIMEOUT", "1m"),
            ("KEYROT_IDLE_TIMEOUT", "1m"),
        ],
    )
    .await;
    let health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let quiet = Duration::from_millis(300);
    let mut first = server.connect().await;
    assert!(
        exchange(&mut first, health, quiet)
            .await
            .starts_with("HTTP/1.1 200")
    );
    let mut second = server.connect().await;
    assert!(
        exchange(&mut second, health, quiet)
            .await
            .starts_with("HTTP/1.1 200")
    );
    // The third waits in the listen queue: no answer while two are open.
    let mut third = server.connect().await;
    assert_eq!(exchange(&mut third, health, quiet).await, "");
    drop(first);
    let answer = read_answer(&mut third, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn a_burst_over_the_source_limit_is_429_and_another_source_is_not_affected() {
    let server = serve(
        &["--listen", "127.0.0.1:0", "--source-rate-limit", "5/1m"],
        &FAST_EDGE,
    )
    .await;
    let generate = format!(
        "POST /generate-token HTTP/1.1\r\nHost: x\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        server.api_key
    );
    let quiet = Duration::from_millis(400);
    for _ in 0..5 {
        let answer = exchange(&mut server.connect().await, generate.as_bytes(), quiet).await;
        assert_eq!(parse(&answer).0, 200, "{answer}");
    }
    let answer = exchange(&mut server.connect().await, generate.as_bytes(), quiet).await;
    let headers = assert_uniform(&answer, 429, "rate_limited");
    let wait: u64 = header(&headers, "retry-after").unwrap().parse().unwrap();
    assert!((1..=12).contains(&wait), "{wait}");
    // Another source address (the demo client may call from all of 127.0.0.0/8).
    let mut other = server.connect_from([127, 0, 0, 2]).await;
    let answer = exchange(&mut other, generate.as_bytes(), quiet).await;
    assert_eq!(parse(&answer).0, 200, "{answer}");
    // The log has an audit line for each, and neither the API key nor a token.
    let log = server.log_with("source_rate_limited", 1).await;
    assert!(!log.contains(&server.api_key), "the API key is in the log");
    assert!(!log.contains("eyJ"), "a token is in the log");
}

/// A self-signed certificate for 127.0.0.1, written to `dir` as cert.pem and key.pem; its DER.
fn certificate(dir: &std::path::Path) -> Vec<u8> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = made.cert.pem();
    // Written beside and renamed, as a certificate manager does, so no half file is read.
    std::fs::write(dir.join("cert.pem.new"), &cert).unwrap();
    std::fs::write(dir.join("key.pem.new"), made.signing_key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    made.cert.der().to_vec()
}

/// A TLS connection to `port` on 127.0.0.1 trusting only `der`; the certificate it presented.
async fn tls_connect(
    port: u16,
    der: &[u8],
) -> (tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let stream = connector.connect(name, tcp).await.unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    (stream, presented)
}

#[tokio::test]
async fn off_loopback_serve_speaks_tls_reloads_its_certificate_and_refuses_plain_http() {
    // Without TLS, an address off loopback is refused before anything listens.
    let out = keyrot()
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs TLS"), "{stderr}");

    // With a certificate the test makes, on every interface (0.0.0.0), reached by loopback.
    let dir = std::env::temp_dir().join(format!("keyrot-edge-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = certificate(&dir);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let server = serve(
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &FAST_EDGE,
    )
    .await;
    let (mut tls, presented) = tls_connect(server.port, &first).await;
    assert_eq!(presented, first);
    let answer = exchange(
        &mut tls,
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(parse(&answer).0, 200, "{answer}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let answer = exchange(
        &mut server.connect().await,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_millis(400),
    )
    .await;
    assert!(!answer.starts_with("HTTP/"), "{answer:?}");

    // A renewed certificate is served from the next handshake on, without a restart.
    let second = certificate(&dir);
    assert_ne!(first, second);
    let (_, presented) = tls_connect(server.port, &second).await;
    assert_eq!(presented, second);
    server.log_with("TLS certificate reloaded", 1).await;
    let _ = std::fs::remove_dir_all(&dir);
}
