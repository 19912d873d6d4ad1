//! `keyrot serve`'s flags for its HTTP edge.

use clap::Args;
use keyrot_config::Setting;

/// `serve`'s TLS, timeouts and limits (keyrot-config's setting table has their variables and
/// file keys).
#[derive(Debug, Args)]
pub(crate) struct EdgeArgs {
    /// TLS certificate chain (PEM), reloaded when it changes; with --tls-key.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// TLS private key (PEM), reloaded when it changes; with --tls-cert.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// Time to send a request's head (and the TLS handshake); default 10s.
    #[arg(long, value_name = "DURATION")]
    header_timeout: Option<String>,
    /// Time to send a request's body and be answered; default 30s.
    #[arg(long, value_name = "DURATION")]
    request_timeout: Option<String>,
    /// Time an idle keep-alive connection stays open; default 60s.
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Connections open at once; default 256.
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Time open requests get to finish after SIGTERM or Ctrl-C; default 10s.
    #[arg(long, value_name = "DURATION")]
    shutdown_timeout: Option<String>,
    /// Requests per client, e.g. 60/1m, or off; default 60/1m.
    #[arg(long, value_name = "RATE")]
    client_rate_limit: Option<String>,
    /// Requests per source address, e.g. 300/1m, or off; default 300/1m.
    #[arg(long, value_name = "RATE")]
    source_rate_limit: Option<String>,
}

impl EdgeArgs {
    pub(crate) fn flags(self) -> Vec<(Setting, Option<String>)> {
        vec![
            (Setting::TlsCert, self.tls_cert),
            (Setting::TlsKey, self.tls_key),
            (Setting::HeaderTimeout, self.header_timeout),
            (Setting::RequestTimeout, self.request_timeout),
            (Setting::IdleTimeout, self.idle_timeout),
            (Setting::MaxConnections, self.max_connections),
            (Setting::ShutdownTimeout, self.shutdown_timeout),
            (Setting::ClientRateLimit, self.client_rate_limit),
            (Setting::SourceRateLimit, self.source_rate_limit),
        ]
    }
}
