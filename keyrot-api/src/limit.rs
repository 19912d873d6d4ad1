//! The rate limits: per authenticated client and per source address (an IPv6 address by its
//! /64), on governor's GCRA, each a burst refilled evenly (`60/1m`: 60 at once, then one a
//! second), with the requests' own `now` as the limiter's clock (so a test drives it with the
//! timestamps it passes in, and the API still reads no clock). API Gateway's usage plan stays
//! the outer limit of the deployed API.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};
use keyrot_core::duration::{format_duration, parse_duration};
use keyrot_core::model::Timestamp;
use keyrot_core::token::ClientId;

/// A rate: at most `requests` in any `per`, all of them at once if the caller has been quiet
/// (a burst of `requests`, refilled evenly over `per`). Written `60/1m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The burst, and the requests allowed per `per`.
    pub requests: NonZeroU32,
    /// The window the requests are refilled over; not zero.
    pub per: Duration,
}

impl Rate {
    /// `requests` per `per`; `None` if `per` is zero.
    pub fn new(requests: NonZeroU32, per: Duration) -> Option<Self> {
        (!per.is_zero()).then_some(Self { requests, per })
    }

    fn quota(self) -> Option<Quota> {
        Quota::with_period(self.per / self.requests.get()).map(|q| q.allow_burst(self.requests))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.requests, format_duration(self.per))
    }
}

/// Why a text is not a [`Rate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a rate: write requests/duration, e.g. 60/1m (a whole number over 0)")]
pub struct RateError {
    /// What was given.
    pub text: String,
}

impl FromStr for Rate {
    type Err = RateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || RateError {
            text: text.to_owned(),
        };
        let (requests, per) = text.split_once('/').ok_or_else(err)?;
        let requests = requests.trim().parse::<NonZeroU32>().map_err(|_| err())?;
        let per = parse_duration(per.trim()).map_err(|_| err())?;
        Self::new(requests, per).ok_or_else(err)
    }
}

/// The API's rate limits. `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per authenticated client (counted once the API key and allowlist passed).
    /// Default `60/1m`.
    pub per_client: Option<Rate>,
    /// Requests per source address (an IPv6 address counts by its /64), counted before
    /// anything else is looked at. Default `300/1m`.
    pub per_source: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        let rate = |n| NonZeroU32::new(n).and_then(|n| Rate::new(n, Duration::from_secs(60)));
        Self {
            per_client: rate(60),
            per_source: rate(300),
        }
    }
}

/// The limiter's clock: the latest `now` any request brought (so it never runs backwards),
/// in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Default)]
struct RequestClock(Arc<AtomicU64>);

impl RequestClock {
    fn advance_to(&self, now: Timestamp) {
        let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
        self.0.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl Clock for RequestClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.0.load(Ordering::Relaxed))
    }
}

type Keyed<K> = RateLimiter<K, HashMapStateStore<K>, RequestClock, NoOpMiddleware<Nanos>>;

/// The most keys a limiter remembers before it forgets those back at a full bucket.
const MAX_KEYS: usize = 100_000;

/// The limiters of one [`Api`](crate::Api).
pub(crate) struct Limiter {
    clock: RequestClock,
    per_client: Option<Keyed<ClientId>>,
    per_source: Option<Keyed<IpAddr>>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("clients", &self.per_client.as_ref().map(Keyed::len))
            .field("sources", &self.per_source.as_ref().map(Keyed::len))
            .finish()
    }
}

/// The request is over a limit: it may be tried again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverLimit(pub(crate) Duration);

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        let clock = RequestClock::default();
        Self {
            per_client: keyed(limits.per_client, &clock),
            per_source: keyed(limits.per_source, &clock),
            clock,
        }
    }

    /// Counts a request from `source` at `now`.
    pub(crate) fn source(&self, source: IpAddr, now: Timestamp) -> Result<(), OverLimit> {
        self.check(self.per_source.as_ref(), &source_key(source), now)
    }

    /// Counts a request of `client` at `now`.
    pub(crate) fn client(&self, client: &ClientId, now: Timestamp) -> Result<(), OverLimit> {
        self.check(self.per_client.as_ref(), client, now)
    }

    fn check<K>(&self, limiter: Option<&Keyed<K>>, key: &K, now: Timestamp) -> Result<(), OverLimit>
    where
        K: Clone + Eq + std::hash::Hash,
    {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        self.clock.advance_to(now);
        if limiter.len() >= MAX_KEYS {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| OverLimit(not_until.wait_time_from(self.clock.now())))
    }
}

fn keyed<K: Clone + Eq + std::hash::Hash>(
    rate: Option<Rate>,
    clock: &RequestClock,
) -> Option<Keyed<K>> {
    rate.and_then(Rate::quota)
        .map(|quota| RateLimiter::new(quota, HashMapStateStore::default(), clock.clone()))
}

/// The key a source address counts under: IPv4 as it is, IPv6 by its /64 (one host usually
/// holds a whole /64).
fn source_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Timestamp {
        "2025-06-01T12:00:00Z".parse::<Timestamp>().unwrap() + Duration::from_secs(secs)
    }

    #[test]
    fn rates_read_and_print() {
        let rate: Rate = "60/1m".parse().unwrap();
        assert_eq!(rate.requests.get(), 60);
        assert_eq!(rate.per, Duration::from_secs(60));
        assert_eq!(rate.to_string(), "60/1m");
        for bad in [
            "",
            "60",
            "0/1m",
            "x/1m",
            "60/",
            "60/0s",
            "-1/1m",
            "60/1 minute",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_over_the_limit_waits_and_others_do_not() {
        let limits = RateLimits {
            per_client: None,
            per_source: Some("3/30s".parse().unwrap()),
        };
        let limiter = Limiter::new(limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.source(a, at(0)), Ok(()));
        }
        assert_eq!(
            limiter.source(a, at(0)),
            Err(OverLimit(Duration::from_secs(10)))
        );
        assert_eq!(
            limiter.source(b, at(0)),
            Ok(()),
            "another source is not affected"
        );
        assert_eq!(
            limiter.source(a, at(4)),
            Err(OverLimit(Duration::from_secs(6)))
        );
        assert_eq!(limiter.source(a, at(10)), Ok(()), "one refilled after 10 s");
        assert!(limiter.source(a, at(10)).is_err());
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let two: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(source_key(one), source_key(two));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn off_means_off() {
        let limiter = Limiter::new(RateLimits {
            per_client: None,
            per_source: None,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            assert_eq!(limiter.source(ip, at(0)), Ok(()));
        }
    }
}
