//! A loopback HTTP proxy in front of moto that injects the faults moto never has: throttling,
//! a 5xx or a dropped connection before or after moto performed the call, and a crash of the
//! caller at the moment a call arrives or right after moto performed it.
//!
//! Every request is forwarded on a connection of its own (moto answers `Connection: close`)
//! and recorded in a journal: the operation as an IAM action (`iam:CreateAccessKey`,
//! `secretsmanager:PutSecretValue`), which occurrence of that operation it is, what the proxy
//! did to it and what moto answered. [`Rule`]s choose the faults by operation and occurrence,
//! so a test can say "lose the reply to the first CreateAccessKey" whatever else the caller
//! sends, while the SDK's own retries stay on.
//!
//! ```no_run
//! use keyrot_aws::moto::{Fault, FaultProxy, Moto, Rule};
//!
//! let moto = Moto::shared().unwrap();
//! let proxy = FaultProxy::start(moto.endpoint()).unwrap();
//! proxy.inject(Rule::nth("iam:CreateAccessKey", 1, Fault::FailAfter));
//! // ... point an SDK client at proxy.endpoint(), call ...
//! assert_eq!(proxy.forwarded("iam:CreateAccessKey"), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long the proxy waits on a quiet connection, either side, before giving up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// What the proxy does to a request a [`Rule`] picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Answers AWS's throttling error (400 `Throttling`) without forwarding: the call did not
    /// happen, and the SDK retries it.
    Throttle,
    /// Answers 500 without forwarding: the call did not happen.
    FailBefore,
    /// Forwards, lets moto perform the call, then answers 500 instead of moto's reply: the
    /// call happened, the caller cannot know it.
    FailAfter,
    /// Forwards, lets moto perform the call, then closes the connection without a reply.
    DropAfter,
    /// Calls the crash hook ([`FaultProxy::on_crash`]) without forwarding, then closes the
    /// connection: the caller dies as the call leaves it.
    CrashBefore,
    /// Forwards, lets moto perform the call, calls the crash hook, then closes the
    /// connection: the caller dies before the reply reaches it.
    CrashAfter,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Self; 6] = [
        Self::Throttle,
        Self::FailBefore,
        Self::FailAfter,
        Self::DropAfter,
        Self::CrashBefore,
        Self::CrashAfter,
    ];

    /// Whether moto sees the request.
    pub fn forwards(self) -> bool {
        matches!(self, Self::FailAfter | Self::DropAfter | Self::CrashAfter)
    }

    /// `fail-before`, `crash-after`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttle => "throttle",
            Self::FailBefore => "fail-before",
            Self::FailAfter => "fail-after",
            Self::DropAfter => "drop-after",
            Self::CrashBefore => "crash-before",
            Self::CrashAfter => "crash-after",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which requests get a fault: the occurrences `first..=last` of one operation (counted per
/// operation, retries included), or of all requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    op: Option<String>,
    first: u32,
    last: u32,
    fault: Fault,
}

impl Rule {
    /// The `nth` request (from 1) of the operation `op` (`iam:CreateAccessKey`).
    pub fn nth(op: impl Into<String>, nth: u32, fault: Fault) -> Self {
        Self {
            op: Some(op.into()),
            first: nth,
            last: nth,
            fault,
        }
    }

    /// The first `n` requests of the operation `op`.
    pub fn first_of(op: impl Into<String>, n: u32, fault: Fault) -> Self {
        Self {
            op: Some(op.into()),
            first: 1,
            last: n,
            fault,
        }
    }

    /// The first `n` requests, whatever their operation.
    pub fn first(n: u32, fault: Fault) -> Self {
        Self {
            op: None,
            first: 1,
            last: n,
            fault,
        }
    }

    fn picks(&self, op: &str, nth: u32, global: u32) -> bool {
        let n = match &self.op {
            Some(wanted) if wanted == op => nth,
            Some(_) => return false,
            None => global,
        };
        (self.first..=self.last).contains(&n)
    }
}

/// One request as the proxy saw it.
#[derive(Clone)]
pub struct Call {
    /// The operation as an IAM action: `iam:CreateAccessKey`, `secretsmanager:PutSecretValue`,
    /// `sts:GetCallerIdentity`, `ses:SendEmail`.
    pub op: String,
    /// Which request of this operation it is, from 1 (retries count).
    pub nth: u32,
    /// When it arrived.
    pub at: Instant,
    /// The fault the proxy applied, if any.
    pub fault: Option<Fault>,
    /// The request's body (form fields or JSON). It may hold secrets: never print it.
    pub body: String,
    /// moto's answer, if the request was forwarded.
    pub answer: Option<Answer>,
}

impl Call {
    /// The value of the form field `name` (the query protocols: IAM, STS), decoded.
    pub fn form_field(&self, name: &str) -> Option<String> {
        self.body.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| percent_decode(value))
        })
    }

    /// The string member `name` of the JSON body (Secrets Manager, DynamoDB).
    pub fn json_field(&self, name: &str) -> Option<String> {
        let value: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        value.get(name)?.as_str().map(str::to_owned)
    }

    /// Whether moto performed the call and said it succeeded.
    pub fn succeeded(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.status < 300)
    }

    /// moto's error code, if it answered with an error.
    pub fn error_code(&self) -> Option<&str> {
        self.answer.as_ref()?.error_code.as_deref()
    }
}

// Bodies hold secrets (PutSecretValue, CreateAccessKey's reply): Debug leaves them out.
impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("op", &self.op)
            .field("nth", &self.nth)
            .field("fault", &self.fault)
            .field("status", &self.answer.as_ref().map(|a| a.status))
            .field("error_code", &self.error_code())
            .finish_non_exhaustive()
    }
}

/// What moto answered to a forwarded request.
#[derive(Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The error code (`LimitExceeded`, `InvalidParameterException`), if the body names one.
    pub error_code: Option<String>,
    /// The body. It may hold secrets: never print it.
    pub body: String,
    /// When it came back.
    pub at: Instant,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("error_code", &self.error_code)
            .finish_non_exhaustive()
    }
}

type CrashHook = Arc<dyn Fn(&Call) + Send + Sync>;

/// The proxy: [`FaultProxy::start`] it in front of moto and point the SDK at its endpoint.
/// It runs until the process exits.
pub struct FaultProxy {
    endpoint: String,
    shared: Arc<Shared>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

struct Shared {
    upstream: String,
    state: Mutex<State>,
    crash: Mutex<Option<CrashHook>>,
    /// Connections being served, and a signal when one is done.
    busy: Mutex<usize>,
    idle: Condvar,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    seen: HashMap<String, u32>,
    journal: Vec<Call>,
}

impl FaultProxy {
    /// A proxy on 127.0.0.1 (a free port) forwarding to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_owned(),
            state: Mutex::new(State::default()),
            crash: Mutex::new(None),
            busy: Mutex::new(0),
            idle: Condvar::new(),
        });
        let accepting = shared.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let shared = accepting.clone();
                *lock(&shared.busy) += 1;
                thread::spawn(move || {
                    // A connection that breaks is the client's business (or a fault's).
                    let _ = shared.serve(conn);
                    *lock(&shared.busy) -= 1;
                    shared.idle.notify_all();
                });
            }
        });
        Ok(Self { endpoint, shared })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Adds a rule; the first rule that picks a request decides its fault.
    pub fn inject(&self, rule: Rule) {
        self.shared.state().rules.push(rule);
    }

    /// Gives the next request of `op` (the first one after those already seen) `fault`.
    pub fn inject_next(&self, op: &str, fault: Fault) {
        let mut state = self.shared.state();
        let next = state.seen.get(op).copied().unwrap_or(0) + 1;
        state.rules.push(Rule::nth(op, next, fault));
    }

    /// Removes every rule (the journal stays).
    pub fn clear(&self) {
        self.shared.state().rules.clear();
    }

    /// What a crash fault calls, on the proxy's thread, before it closes the connection: it
    /// must return only once the caller is dead (kill it and wait for it). Without a hook a
    /// crash fault only closes the connection.
    pub fn on_crash(&self, hook: impl Fn(&Call) + Send + Sync + 'static) {
        *lock(&self.shared.crash) = Some(Arc::new(hook));
    }

    /// Waits until no connection is being served (the requests of a killed caller that were
    /// on their way included), for at most `timeout`; whether it is so.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let busy = lock(&self.shared.busy);
        let (busy, _) = self
            .shared
            .idle
            .wait_timeout_while(busy, timeout, |n| *n > 0)
            .unwrap_or_else(PoisonError::into_inner);
        *busy == 0
    }

    /// Every request so far, in the order they arrived.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state().journal.clone()
    }

    /// How many requests of `op` moto saw.
    pub fn forwarded(&self, op: &str) -> usize {
        self.count(|c| c.op == op && c.answer.is_some())
    }

    /// How many requests of `op` moto answered with the error `code`.
    pub fn answered(&self, op: &str, code: &str) -> usize {
        self.count(|c| c.op == op && c.error_code() == Some(code))
    }

    /// How many requests got a fault.
    pub fn faulted(&self) -> usize {
        self.count(|c| c.fault.is_some())
    }

    fn count(&self, pick: impl Fn(&Call) -> bool) -> usize {
        self.shared
            .state()
            .journal
            .iter()
            .filter(|c| pick(c))
            .count()
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// One request per connection: read it, answer, forward or drop it, close.
    fn serve(&self, mut conn: TcpStream) -> io::Result<()> {
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        let request = read_request(&mut conn)?;
        let (head, body) = split_message(&request);
        let op = operation(head, body);
        let (index, fault) = {
            let mut state = self.state();
            let global = u32::try_from(state.journal.len()).unwrap_or(u32::MAX) + 1;
            let nth = {
                let seen = state.seen.entry(op.clone()).or_default();
                *seen += 1;
                *seen
            };
            let fault = state
                .rules
                .iter()
                .find(|r| r.picks(&op, nth, global))
                .map(|r| r.fault);
            state.journal.push(Call {
                op,
                nth,
                at: now(),
                fault,
                body: String::from_utf8_lossy(body).into_owned(),
                answer: None,
            });
            (state.journal.len() - 1, fault)
        };
        let json = head_lower(head).contains("\r\nx-amz-target:");
        match fault {
            Some(Fault::Throttle) => return reply(&mut conn, &error_reply(400, json)),
            Some(Fault::FailBefore) => return reply(&mut conn, &error_reply(500, json)),
            Some(Fault::CrashBefore) => return self.crash(index, &conn),
            _ => {}
        }
        let response = self.forward(&request)?;
        let (response_head, response_body) = split_message(&response);
        let answer = Answer {
            status: status_of(response_head),
            error_code: error_code(response_body),
            body: String::from_utf8_lossy(response_body).into_owned(),
            at: now(),
        };
        self.state().journal[index].answer = Some(answer);
        match fault {
            Some(Fault::FailAfter) => reply(&mut conn, &error_reply(500, json)),
            Some(Fault::DropAfter) => conn.shutdown(Shutdown::Both),
            Some(Fault::CrashAfter) => self.crash(index, &conn),
            _ => reply(&mut conn, &response),
        }
    }

    fn forward(&self, request: &[u8]) -> io::Result<Vec<u8>> {
        let mut up = TcpStream::connect(&self.upstream)?;
        up.set_read_timeout(Some(IO_TIMEOUT))?;
        up.write_all(request)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        Ok(response)
    }

    fn crash(&self, index: usize, conn: &TcpStream) -> io::Result<()> {
        let hook = lock(&self.crash).clone();
        if let Some(hook) = hook {
            let call = self.state().journal[index].clone();
            hook(&call);
        }
        conn.shutdown(Shutdown::Both)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the journal from the others.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// Test support at the edge: the journal's times are the wall clock's, to compare with the
// periods of a policy that the binary under test also reads from the wall clock.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

fn reply(conn: &mut TcpStream, response: &[u8]) -> io::Result<()> {
    conn.write_all(response)?;
    conn.shutdown(Shutdown::Both)
}

/// AWS's throttling error (400) or an internal error (500), in the protocol's own format: the
/// JSON protocols (Secrets Manager, DynamoDB) name the operation in `x-amz-target`, the query
/// protocols (IAM, STS) answer in XML.
fn error_reply(status: u16, json: bool) -> Vec<u8> {
    let (reason, code, message) = match status {
        400 => ("Bad Request", "Throttling", "Rate exceeded"),
        _ => (
            "Internal Server Error",
            "InternalFailure",
            "injected by keyrot's proxy",
        ),
    };
    let (content_type, body) = if json {
        let code = if status == 400 {
            "ThrottlingException"
        } else {
            "InternalServiceError"
        };
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        )
    } else {
        let kind = if status == 400 { "Sender" } else { "Receiver" };
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error><RequestId>keyrot-proxy</RequestId>\
                 </ErrorResponse>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The request's head and its `content-length` body.
/// One whole request: its head and as much body as it declares. A connection that closes
/// before (a caller killed while it connected or wrote) is an error, and nothing is forwarded:
/// a part of a request would keep moto waiting for the rest.
fn read_request(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    let cut = || io::Error::new(io::ErrorKind::UnexpectedEof, "the request was cut short");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(cut());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            let length: usize = head_lower(&buf[..end])
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            while buf.len() < end + 4 + length {
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Err(cut());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(buf);
        }
    }
}

fn find_head_end(message: &[u8]) -> Option<usize> {
    message.windows(4).position(|w| w == b"\r\n\r\n")
}

/// A message's head (without the blank line) and body.
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match find_head_end(message) {
        Some(end) => (&message[..end], &message[end + 4..]),
        None => (message, &[]),
    }
}

fn head_lower(head: &[u8]) -> String {
    String::from_utf8_lossy(head).to_ascii_lowercase()
}

fn status_of(head: &[u8]) -> u16 {
    String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The service's error code in an XML (`<Code>X</Code>`) or JSON (`"__type":"prefix#X"`) body.
fn error_code(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    if let Some(start) = text.find("<Code>") {
        let rest = &text[start + "<Code>".len()..];
        return rest.find("</Code>").map(|end| rest[..end].to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let code = value.get("__type")?.as_str()?;
    Some(code.rsplit('#').next().unwrap_or(code).to_owned())
}

/// The operation of a request as an IAM action: the service from the signature's credential
/// scope, the operation from `x-amz-target` (JSON protocols), the `Action` form field (query
/// protocols) or, for SES v2's REST API, the path.
fn operation(head: &[u8], body: &[u8]) -> String {
    let head = String::from_utf8_lossy(head);
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    // Credential=AKID/20250101/us-east-1/iam/aws4_request
    let service = header("authorization")
        .and_then(|auth| {
            let scope = auth.split("Credential=").nth(1)?;
            scope.split('/').nth(3).map(str::to_owned)
        })
        .unwrap_or_else(|| "unsigned".to_owned());
    let service = match service.as_str() {
        "email" | "ses" => "ses".to_owned(),
        _ => service,
    };
    if let Some(target) = header("x-amz-target") {
        let name = target.rsplit('.').next().unwrap_or(&target);
        return format!("{service}:{name}");
    }
    let body = String::from_utf8_lossy(body);
    if let Some(action) = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
    {
        return format!("{service}:{action}");
    }
    let mut line = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (line.next().unwrap_or("?"), line.next().unwrap_or("?"));
    match (method, path.split('?').next().unwrap_or(path)) {
        ("POST", "/v2/email/outbound-emails") => format!("{service}:SendEmail"),
        (method, path) => format!("{service}:{method} {path}"),
    }
}

/// Decodes a form value (`application/x-www-form-urlencoded`): `+` is a space, `%XX` a byte;
/// a `%` without two hex digits after it stands for itself, as do bytes that are not UTF-8.
fn percent_decode(value: &str) -> String {
    let spaced = value.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_iam_actions() {
        let iam = b"POST / HTTP/1.1\r\nAuthorization: AWS4-HMAC-SHA256 \
                    Credential=AKID/20250101/us-east-1/iam/aws4_request, SignedHeaders=host";
        assert_eq!(
            operation(iam, b"Action=CreateAccessKey&UserName=u&Version=2010-05-08"),
            "iam:CreateAccessKey"
        );
        let secrets = b"POST / HTTP/1.1\r\nx-amz-target: secretsmanager.PutSecretValue\r\n\
                        authorization: AWS4-HMAC-SHA256 \
                        Credential=AKID/20250101/us-east-1/secretsmanager/aws4_request";
        assert_eq!(operation(secrets, b"{}"), "secretsmanager:PutSecretValue");
        let ses = b"POST /v2/email/outbound-emails HTTP/1.1\r\nauthorization: AWS4-HMAC-SHA256 \
                    Credential=AKID/20250101/us-east-1/ses/aws4_request";
        assert_eq!(operation(ses, b"{}"), "ses:SendEmail");
    }

    #[test]
    fn error_codes_come_from_either_protocol() {
        assert_eq!(
            error_code(b"<ErrorResponse><Error><Code>LimitExceeded</Code></Error>").as_deref(),
            Some("LimitExceeded")
        );
        assert_eq!(
            error_code(br#"{"__type":"com.amazonaws#InvalidParameterException"}"#).as_deref(),
            Some("InvalidParameterException")
        );
        assert_eq!(error_code(b"{}"), None);
    }

    #[test]
    fn rules_count_per_operation_or_overall() {
        let rule = Rule::nth("iam:CreateAccessKey", 2, Fault::FailAfter);
        assert!(!rule.picks("iam:CreateAccessKey", 1, 5));
        assert!(rule.picks("iam:CreateAccessKey", 2, 1));
        assert!(!rule.picks("iam:ListAccessKeys", 2, 2));
        let rule = Rule::first(3, Fault::Throttle);
        assert!(rule.picks("anything", 9, 3));
        assert!(!rule.picks("anything", 1, 4));
    }

    #[test]
    fn form_fields_are_decoded() {
        let call = Call {
            op: "iam:UpdateAccessKey".into(),
            nth: 1,
            at: now(),
            fault: None,
            body: "Action=UpdateAccessKey&UserName=a%2Bb&Status=Inactive".into(),
            answer: None,
        };
        assert_eq!(call.form_field("UserName").as_deref(), Some("a+b"));
        assert_eq!(call.form_field("Status").as_deref(), Some("Inactive"));
        assert_eq!(call.form_field("Missing"), None);
    }

    #[test]
    fn form_values_are_form_decoded() {
        for (value, decoded) in [
            ("a+b", "a b"),
            ("a%2Bb%2b", "a+b+"),
            ("%41%42", "AB"),
            ("a%2", "a%2"),
            ("%zz%", "%zz%"),
            ("%C3%A9", "\u{e9}"),
            ("%FF", "\u{fffd}"),
            ("", ""),
        ] {
            assert_eq!(percent_decode(value), decoded, "{value}");
        }
    }
}
