//! A loopback HTTP proxy in front of moto that answers the first requests with AWS's
//! throttling error, then forwards: moto itself never throttles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct Proxy {
    endpoint: String,
    throttled: Arc<AtomicU32>,
    forwarded: Arc<AtomicU32>,
}

impl Proxy {
    /// Proxies to `upstream` (`http://host:port`), throttling the first `throttle` requests.
    pub(crate) async fn start(upstream: &str, throttle: u32) -> Self {
        Self::start_matching(upstream, throttle, "").await
    }

    /// As [`Proxy::start`], counting (and throttling) only requests whose text contains
    /// `marker`, such as `Action=ListUserTags`.
    pub(crate) async fn start_matching(upstream: &str, throttle: u32, marker: &str) -> Self {
        let marker = marker.to_owned();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let throttled = Arc::new(AtomicU32::new(0));
        let forwarded = Arc::new(AtomicU32::new(0));
        let (t, f) = (throttled.clone(), forwarded.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (upstream, t, f) = (upstream.clone(), t.clone(), f.clone());
                let marker = marker.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, throttle, &marker, &t, &f).await;
                });
            }
        });
        Self {
            endpoint,
            throttled,
            forwarded,
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub(crate) fn throttled(&self) -> u32 {
        self.throttled.load(Ordering::SeqCst)
    }

    pub(crate) fn forwarded(&self) -> u32 {
        self.forwarded.load(Ordering::SeqCst)
    }
}

/// One request per connection: read it, answer or forward it, close.
async fn serve(
    mut conn: TcpStream,
    upstream: &str,
    throttle: u32,
    marker: &str,
    throttled: &AtomicU32,
    forwarded: &AtomicU32,
) -> std::io::Result<()> {
    let request = read_request(&mut conn).await?;
    let text = String::from_utf8_lossy(&request);
    let head = text.to_ascii_lowercase();
    let take = text.contains(marker)
        && throttled
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < throttle).then_some(n + 1)
            })
            .is_ok();
    if take {
        // The JSON protocols (Secrets Manager, SES) name the operation in x-amz-target; the
        // query protocols (IAM, STS) answer in XML.
        let (content_type, body) = if head.contains("\r\nx-amz-target:") {
            (
                "application/x-amz-json-1.1",
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
            )
        } else {
            (
                "text/xml",
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>\
                 <Message>Rate exceeded</Message></Error><RequestId>keyrot-test</RequestId>\
                 </ErrorResponse>"
                    .to_owned(),
            )
        };
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(response.as_bytes()).await?;
        return conn.shutdown().await;
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&request).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    conn.write_all(&response).await?;
    conn.shutdown().await
}

/// The request's head and its content-length body.
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            while buf.len() < end + 4 + length {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(buf);
        }
    }
}
