//! The fake Lambda Runtime API.

use super::*;

// ------------------------------------------------------------------ the fake Runtime API

/// What the function told the Runtime API.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// `response`, `error` or `init-error`.
    pub(crate) kind: &'static str,
    pub(crate) request_id: Option<String>,
    pub(crate) error_type: Option<String>,
    pub(crate) body: String,
}

impl Report {
    pub(crate) fn json(&self) -> Value {
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
pub(crate) struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl RuntimeApi {
    pub(crate) fn start() -> Self {
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
    pub(crate) fn host_port(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.0.lock().unwrap()
    }

    /// Queues an event and waits for the function's answer to it.
    pub(crate) fn invoke(&self, function: &mut Function, id: &str, event: &Value) -> Report {
        self.lock()
            .events
            .push_back((id.to_owned(), event.to_string()));
        self.state.1.notify_all();
        self.wait_for(function, |r| r.request_id.as_deref() == Some(id))
    }

    pub(crate) fn wait_for(
        &self,
        function: &mut Function,
        matches: impl Fn(&Report) -> bool,
    ) -> Report {
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
