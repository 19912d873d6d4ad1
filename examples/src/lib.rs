//! Runnable examples of keyrot: the logic another Rust tool needs to embed it, shared by the
//! programs in `examples/` and the tests in `tests/`.
//!
//! Nothing here reads the clock or decides anything about keys: time comes through the
//! [`Clock`](keyrot_core::Clock) port of the [`Ports`] the caller passes in, and every
//! decision is keyrot-core's.
//!
//! - [`rotate_once`] runs one reconcile pass over the given users, as a dry run, for real, or
//!   forcing a rotation ([`Mode`]), and returns the [`RunReport`].
//! - [`publish_check`] is "user code": a small function written against keyrot's
//!   [`SecretStore`] and [`Verifier`] ports that tells whether a user's published key works
//!   ([`Health`], [`CheckError`]). `tests/mocks.rs` unit-tests it with the mockall mocks.
//! - `FakeAws::ports` wires keyrot-core's in-memory fakes into [`Ports`]; the `embed` example
//!   uses `keyrot_aws::BackendSettings::ports` instead, and [`endpoint_url`] checks its
//!   `--endpoint-url` argument.
//!
//! One pass and a check, against the fakes:
//!
//! ```
//! use std::time::Duration;
//!
//! use examples::{Health, Mode, publish_check, rotate_once};
//! use futures::executor::block_on;
//! use keyrot_core::fake::{FakeAws, FaultRates};
//! use keyrot_core::{KeyStatus, Policy, Timestamp, UserName};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let start: Timestamp = "2026-01-01T00:00:00Z".parse()?;
//! let aws = FakeAws::new(start, 7, FaultRates::none());
//! let ci = UserName::new("ci-deployer")?;
//! aws.iam.add_managed_user(ci.clone());
//! let legacy = aws.iam.add_key(&ci, KeyStatus::Active, start - Duration::from_secs(100 * 86_400))?;
//!
//! let ports = aws.ports();
//! let users = [ci.clone()];
//! let policy = Policy::builder().build()?;
//! assert_eq!(block_on(publish_check(&*ports.store, &*ports.verifier, &ci))?, Health::Unpublished);
//!
//! let report = block_on(rotate_once(ports.clone(), policy, &users, Mode::Apply))?;
//! assert_eq!(report.rotations(), 1);
//! match block_on(publish_check(&*ports.store, &*ports.verifier, &ci))? {
//!     Health::Works(key) => assert_ne!(key, legacy.key.id),
//!     other => panic!("{other}"),
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;

use keyrot_core::driver::RunError;
use keyrot_core::{
    AccessKeyId, Policy, Ports, Rotator, RunOptions, RunReport, SecretStore, StoreError, UserName,
    Verifier, VerifyError,
};

/// What a pass may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Observe and plan; change nothing. Each user's outcome is the step keyrot would take.
    #[default]
    DryRun,
    /// Take every step that is due.
    Apply,
    /// As [`Mode::Apply`], and rotate now whatever the keys' ages.
    Force,
}

/// One reconcile pass over `users` (every managed user when empty), under `policy`, through
/// `ports`. Users named but not managed are reported as
/// [`Outcome::NotManaged`](keyrot_core::Outcome::NotManaged) and left untouched.
///
/// # Errors
///
/// [`RunError`] when the managed users could not be listed; a failure for one user is in the
/// report instead.
pub async fn rotate_once(
    ports: Ports,
    policy: Policy,
    users: &[UserName],
    mode: Mode,
) -> Result<RunReport, RunError> {
    let options = RunOptions {
        users: users.to_vec(),
        force: mode == Mode::Force,
        dry_run: mode == Mode::DryRun,
        deadline: None,
    };
    Rotator::new(ports, policy).run(&options).await
}

/// Whether the key a user's consumers would be given right now works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The published key authenticates as the user.
    Works(AccessKeyId),
    /// A key is published but does not authenticate: it was deactivated or deleted behind
    /// keyrot's back, and consumers that fetch it will fail.
    Refused(AccessKeyId),
    /// No key is published for the user yet.
    Unpublished,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Works(key) => write!(f, "published key {key} authenticates"),
            Self::Refused(key) => write!(f, "published key {key} does not authenticate"),
            Self::Unpublished => f.write_str("no key published yet"),
        }
    }
}

/// Why [`publish_check`] could not tell.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Reading the published key from the secret store failed.
    #[error("could not read the published key")]
    Store(#[source] StoreError),
    /// The verification call failed, or the key authenticates as someone else.
    #[error("could not verify the published key")]
    Verify(#[source] VerifyError),
}

/// Reads the key published for `user` from `store` and asks `verifier` whether it
/// authenticates. The secret is passed to the verifier only; it appears in no result or error.
///
/// # Errors
///
/// [`CheckError`] when either call fails; a key that is refused is [`Health::Refused`].
pub async fn publish_check(
    store: &dyn SecretStore,
    verifier: &dyn Verifier,
    user: &UserName,
) -> Result<Health, CheckError> {
    let Some(credentials) = store.current(user).await.map_err(CheckError::Store)? else {
        return Ok(Health::Unpublished);
    };
    let works = verifier
        .authenticates(user, &credentials)
        .await
        .map_err(CheckError::Verify)?;
    let key = credentials.access_key_id.clone();
    Ok(if works {
        Health::Works(key)
    } else {
        Health::Refused(key)
    })
}

/// An endpoint URL argument that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an endpoint URL: write http://host:port or https://host, e.g. http://127.0.0.1:5000"
)]
pub struct EndpointError(String);

/// Checks an endpoint URL (`--endpoint-url`, `AWS_ENDPOINT_URL`): `http` or `https`, with a
/// host. Returns it unchanged.
///
/// # Errors
///
/// [`EndpointError`] for anything else, so that a typo is refused before any call is made.
pub fn endpoint_url(text: &str) -> Result<String, EndpointError> {
    let err = || EndpointError(text.to_owned());
    let uri: http::Uri = text.parse().map_err(|_| err())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(text.to_owned()),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls_need_a_scheme_and_a_host() {
        for good in [
            "http://127.0.0.1:5000",
            "https://iam.amazonaws.com",
            "http://localhost:4566/",
        ] {
            assert_eq!(endpoint_url(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            "127.0.0.1:5000",
            "localhost",
            "ftp://example.com",
            "http://",
            "http:// spaced",
        ] {
            let err = endpoint_url(bad).unwrap_err();
            assert!(
                err.to_string().contains("e.g. http://127.0.0.1:5000"),
                "{bad}: {err}"
            );
        }
    }
}
