//! One connection's IO as `serve` holds it: the header and idle timeouts on reads, a write
//! timeout, and hyper's own answers (to a request head it cannot parse) rewritten into the
//! API's uniform error.
//!
//! hyper answers a head it cannot parse by itself, before any service sees the request: `400`
//! (a NUL or obs-fold in a header, a URI that is not one, such as invalid UTF-8 in the query),
//! `414` (a URI of 64 KiB or more) and `431` (more headers than allowed, or a head over the
//! buffer), each with an empty body and no other header than `content-length` and `date`, and
//! then closes. It has no hook for that answer, so [`Guarded`] recognises it on the way out (a
//! response head of `4xx`/`5xx` without `x-content-type-options`, which every response keyrot
//! writes carries) and writes the uniform error in its place, with `connection: close`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use keyrot_api::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the connection's service tells its IO: whether a request is being answered.
#[derive(Debug)]
pub(super) struct ConnState {
    in_request: AtomicBool,
    served: AtomicU64,
    peer: SocketAddr,
}

impl ConnState {
    pub(super) fn new(peer: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            in_request: AtomicBool::new(false),
            served: AtomicU64::new(0),
            peer,
        })
    }

    /// A request's head was read; until the guard drops, the read timeouts wait.
    pub(super) fn request(self: &Arc<Self>) -> InRequest {
        self.in_request.store(true, Ordering::Release);
        InRequest(Arc::clone(self))
    }
}

/// A request being answered (see [`ConnState::request`]).
#[derive(Debug)]
pub(super) struct InRequest(Arc<ConnState>);

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::AcqRel);
        self.0.in_request.store(false, Ordering::Release);
    }
}

/// The timeouts [`Guarded`] applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// For a request's head, from the connection (first request) or from its first byte.
    pub(super) header: Duration,
    /// For the next request on a kept-alive connection, from the end of the last one.
    pub(super) idle: Duration,
    /// For a write that makes no progress (a client that does not read).
    pub(super) write: Duration,
}

/// A connection's IO with `serve`'s timeouts and hyper's own answers rewritten.
pub(super) struct Guarded<T> {
    io: T,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    /// Requests answered when the read deadline was last set.
    seen_served: u64,
    /// Whether the current head has begun (the header timeout runs, not the idle one).
    head_started: bool,
    read_deadline: Pin<Box<Sleep>>,
    write_deadline: Option<Pin<Box<Sleep>>>,
    rewrite: Option<Rewrite>,
}

/// The uniform answer being written in place of hyper's own.
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's answer, reported as written once ours is.
    replaces: usize,
}

impl<T> Guarded<T> {
    /// `io`, whose first request head must begin within the header timeout.
    pub(super) fn new(io: T, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        Self {
            io,
            state,
            timeouts,
            seen_served: 0,
            head_started: true,
            read_deadline: Box::pin(tokio::time::sleep(timeouts.header)),
            write_deadline: None,
            rewrite: None,
        }
    }
}

impl<T> Guarded<T> {
    /// Whether a request is being answered; if the last one has just been, the idle timeout
    /// starts.
    fn start_idle(&mut self) -> bool {
        let in_request = self.state.in_request.load(Ordering::Acquire);
        let served = self.state.served.load(Ordering::Acquire);
        if !in_request && served != self.seen_served {
            // The last request was answered: the connection is idle until a head begins.
            self.seen_served = served;
            self.head_started = false;
            self.read_deadline
                .as_mut()
                .reset(Instant::now() + self.timeouts.idle);
        }
        in_request
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let in_request = this.start_idle();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !in_request && !this.head_started && buf.filled().len() > before {
                    this.head_started = true;
                    this.read_deadline
                        .as_mut()
                        .reset(Instant::now() + this.timeouts.header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if !in_request && this.read_deadline.as_mut().poll(cx).is_ready() => {
                let which = if this.head_started { "header" } else { "idle" };
                tracing::debug!(peer = %this.state.peer, timeout = which, "closing a connection");
                // End of stream: hyper closes the connection (mid-head: without an answer).
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> Guarded<T> {
    fn poll_io_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(result) => {
                self.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let write = self.timeouts.write;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(write)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client did not read the answer in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none()
            && let Some(code) = hypers_own_answer(buf)
        {
            audit_refusal(this.state.peer, code);
            this.rewrite = Some(Rewrite {
                bytes: uniform_answer(code),
                written: 0,
                replaces: buf.len(),
            });
        }
        let Some(mut rewrite) = this.rewrite.take() else {
            return this.poll_io_write(cx, buf);
        };
        while rewrite.written < rewrite.bytes.len() {
            match this.poll_io_write(cx, &rewrite.bytes[rewrite.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => rewrite.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    this.rewrite = Some(rewrite);
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(rewrite.replaces))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes an answer and then waits for the socket without reading it: the idle
        // timeout's timer must wake the connection, so it is started (and registered) here.
        if !this.start_idle() && !this.head_started {
            let _ = this.read_deadline.as_mut().poll(cx);
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The error code of hyper's own answer, if `buf` begins one: a response head with a `4xx` or
/// `5xx` status and without the `x-content-type-options` header every keyrot answer carries.
fn hypers_own_answer(buf: &[u8]) -> Option<ErrorCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = std::str::from_utf8(rest.get(..3)?)
        .ok()?
        .parse::<u16>()
        .ok()?;
    if status < 400 {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    if head.contains("\r\nx-content-type-options:") {
        return None;
    }
    Some(match status {
        414 => ErrorCode::UriTooLong,
        431 => ErrorCode::HeadersTooLarge,
        _ => ErrorCode::InvalidRequest,
    })
}

/// The whole HTTP/1.1 answer for `code`: the API's uniform error, then the connection closes.
fn uniform_answer(code: ErrorCode) -> Vec<u8> {
    let response = keyrot_api::error_response(code);
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    let body = response.into_body();
    head.push_str(&format!(
        "connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    head.into_bytes()
}

/// The audit line of a request the HTTP layer refused before the API saw it.
fn audit_refusal(peer: SocketAddr, code: ErrorCode) {
    tracing::info!(
        target: "keyrot::audit",
        source_ip = %peer.ip(),
        route = "unknown",
        outcome = code.as_str(),
        status = code.status().as_u16(),
        reason = "http_head_unparsable",
        "api request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_own_error_heads_are_rewritten() {
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            hypers_own_answer(hyper_400),
            Some(ErrorCode::InvalidRequest)
        );
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            hypers_own_answer(hyper_431),
            Some(ErrorCode::HeadersTooLarge)
        );
        let hyper_414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(hypers_own_answer(hyper_414), Some(ErrorCode::UriTooLong));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n\r\n{}";
        assert_eq!(hypers_own_answer(ours), None);
        assert_eq!(hypers_own_answer(b"HTTP/1.1 100 Continue\r\n\r\n"), None);
        assert_eq!(hypers_own_answer(b"{\"error\":1}"), None);
    }

    #[test]
    fn the_rewritten_answer_is_the_uniform_error() {
        let answer = String::from_utf8(uniform_answer(ErrorCode::HeadersTooLarge)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        for line in [
            "content-type: application/json",
            "cache-control: no-store",
            "x-content-type-options: nosniff",
            "connection: close",
        ] {
            assert!(head.contains(line), "{head}");
        }
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
    }
}
