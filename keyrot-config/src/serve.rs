//! `keyrot serve`'s edge: TLS, timeouts, the connection limit and the shutdown deadline; and
//! the API's rate limits (the command's server and the API function alike).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use keyrot_api::{Rate, RateLimits};

use crate::error::{ConfigError, Reason};
use crate::setting::Setting;
use crate::sources::Sources;

/// The default [`ServeSettings::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default [`ServeSettings::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`ServeSettings::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default [`ServeSettings::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The default [`ServeSettings::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where `keyrot serve`'s certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS #8, PKCS #1 or SEC1).
    pub key: PathBuf,
}

/// How `keyrot serve` holds its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeSettings {
    /// TLS; `None`: plain HTTP, allowed only on a loopback address.
    pub tls: Option<Tls>,
    /// Time a client has for the TLS handshake and for each request's head, counted from the
    /// connection (first request) or from the head's first byte.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body, and the server to answer it.
    pub request_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// The most connections open at once; more wait in the listen queue.
    pub max_connections: usize,
    /// Time open requests get to finish after SIGTERM or Ctrl-C; then the server stops anyway.
    pub shutdown_timeout: Duration,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            tls: None,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl Sources {
    fn timeout(&self, setting: Setting, default: Duration) -> Result<Duration, ConfigError> {
        let value = self.duration(setting)?.unwrap_or(default);
        if value.is_zero() {
            return Err(self.invalid(setting, Reason::ZeroTimeout));
        }
        Ok(value)
    }

    /// How `keyrot serve` holds its connections.
    pub fn serve(&self) -> Result<ServeSettings, ConfigError> {
        let cert = self.text(Setting::TlsCert)?.map(PathBuf::from);
        let key = self.text(Setting::TlsKey)?.map(PathBuf::from);
        let requires = |missing, by| ConfigError::Requires {
            missing: self.name(missing),
            by: self.name(by),
        };
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            (Some(_), None) => return Err(requires(Setting::TlsKey, Setting::TlsCert)),
            (None, Some(_)) => return Err(requires(Setting::TlsCert, Setting::TlsKey)),
            (None, None) => None,
        };
        let max_connections = self
            .text(Setting::MaxConnections)?
            .map(|text| match text.parse::<usize>() {
                Ok(n @ 1..=65536) => Ok(n),
                _ => Err(self.invalid(Setting::MaxConnections, Reason::Connections(text))),
            })
            .transpose()?
            .unwrap_or(DEFAULT_MAX_CONNECTIONS);
        Ok(ServeSettings {
            tls,
            header_timeout: self.timeout(Setting::HeaderTimeout, DEFAULT_HEADER_TIMEOUT)?,
            request_timeout: self.timeout(Setting::RequestTimeout, DEFAULT_REQUEST_TIMEOUT)?,
            idle_timeout: self.timeout(Setting::IdleTimeout, DEFAULT_IDLE_TIMEOUT)?,
            max_connections,
            shutdown_timeout: self.timeout(Setting::ShutdownTimeout, DEFAULT_SHUTDOWN_TIMEOUT)?,
        })
    }

    /// Refuses plain HTTP on `listen` unless it is a loopback address: `serve` hands out keys.
    pub fn check_listen(
        &self,
        listen: SocketAddr,
        serve: &ServeSettings,
    ) -> Result<(), ConfigError> {
        if serve.tls.is_none() && !listen.ip().is_loopback() {
            return Err(self.invalid(Setting::Listen, Reason::PlainOffLoopback(listen)));
        }
        Ok(())
    }

    /// The API's rate limits: each `N/duration` or `off`, defaults [`RateLimits::default`].
    pub fn rate_limits(&self) -> Result<RateLimits, ConfigError> {
        let defaults = RateLimits::default();
        let rate = |setting, default| -> Result<Option<Rate>, ConfigError> {
            match self.text(setting)? {
                None => Ok(default),
                Some(text) if text.eq_ignore_ascii_case("off") => Ok(None),
                Some(text) => text
                    .parse::<Rate>()
                    .map(Some)
                    .map_err(|_| self.invalid(setting, Reason::Rate(text))),
            }
        };
        Ok(RateLimits {
            per_client: rate(Setting::ClientRateLimit, defaults.per_client)?,
            per_source: rate(Setting::SourceRateLimit, defaults.per_source)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup_in;

    fn env(vars: &[(&str, &str)]) -> Sources {
        Sources::lambda(lookup_in(vars))
    }

    #[test]
    fn defaults_are_sane_and_each_setting_is_read() {
        let serve = env(&[]).serve().unwrap();
        assert_eq!(serve, ServeSettings::default());
        let serve = env(&[
            ("KEYROT_TLS_CERT", "/etc/keyrot/cert.pem"),
            ("KEYROT_TLS_KEY", "/etc/keyrot/key.pem"),
            ("KEYROT_HEADER_TIMEOUT", "2s"),
            ("KEYROT_REQUEST_TIMEOUT", "5s"),
            ("KEYROT_IDLE_TIMEOUT", "1m"),
            ("KEYROT_MAX_CONNECTIONS", "64"),
            ("KEYROT_SHUTDOWN_TIMEOUT", "3s"),
        ])
        .serve()
        .unwrap();
        assert_eq!(
            serve.tls,
            Some(Tls {
                cert: "/etc/keyrot/cert.pem".into(),
                key: "/etc/keyrot/key.pem".into()
            })
        );
        assert_eq!(serve.header_timeout, Duration::from_secs(2));
        assert_eq!(serve.request_timeout, Duration::from_secs(5));
        assert_eq!(serve.idle_timeout, Duration::from_secs(60));
        assert_eq!(serve.max_connections, 64);
        assert_eq!(serve.shutdown_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_name_their_setting() {
        let refused = |vars: &[(&str, &str)], expected: &str| {
            let sources = env(vars);
            let err = sources
                .serve()
                .and_then(|_| sources.rate_limits())
                .unwrap_err();
            assert!(err.chain().contains(expected), "{vars:?}: {}", err.chain());
        };
        refused(
            &[("KEYROT_TLS_CERT", "c.pem")],
            "KEYROT_TLS_KEY is required when KEYROT_TLS_CERT is set",
        );
        refused(
            &[("KEYROT_HEADER_TIMEOUT", "0s")],
            "KEYROT_HEADER_TIMEOUT: must be longer",
        );
        refused(
            &[("KEYROT_MAX_CONNECTIONS", "0")],
            "KEYROT_MAX_CONNECTIONS: \"0\"",
        );
        refused(
            &[("KEYROT_CLIENT_RATE_LIMIT", "lots")],
            "KEYROT_CLIENT_RATE_LIMIT: \"lots\" is not a rate limit",
        );
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let sources = env(&[]);
        let plain = ServeSettings::default();
        let ok = |addr: &str| sources.check_listen(addr.parse().unwrap(), &plain);
        assert!(ok("127.0.0.1:8080").is_ok());
        assert!(ok("[::1]:8080").is_ok());
        let err = ok("0.0.0.0:8080").unwrap_err();
        assert!(err.chain().contains("needs TLS"), "{}", err.chain());
        let tls = ServeSettings {
            tls: Some(Tls {
                cert: "c".into(),
                key: "k".into(),
            }),
            ..ServeSettings::default()
        };
        assert!(
            sources
                .check_listen("0.0.0.0:8443".parse().unwrap(), &tls)
                .is_ok()
        );
    }

    #[test]
    fn rate_limits_read_and_turn_off() {
        assert_eq!(env(&[]).rate_limits().unwrap(), RateLimits::default());
        let limits = env(&[
            ("KEYROT_CLIENT_RATE_LIMIT", "10/1s"),
            ("KEYROT_SOURCE_RATE_LIMIT", "off"),
        ])
        .rate_limits()
        .unwrap();
        assert_eq!(limits.per_client, Some("10/1s".parse().unwrap()));
        assert_eq!(limits.per_source, None);
    }
}
