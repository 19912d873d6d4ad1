//! The `keyrot` command: runs the whole service locally (on an embedded in-memory backend, or
//! against AWS or any AWS-compatible endpoint), operates and inspects it, and serves consumers
//! as an AWS `credential_process`.
//!
//! It decides nothing about keys (every rule is keyrot-core's, every AWS call keyrot-aws'),
//! parses no setting itself (keyrot-config does), and writes a secret key only to the stdout of
//! a command whose caller asked for one (`credential-process`, `get-key`), never to a log.
//!
//! The binary is thin; this library holds its parts so that they can be tested:
//! [`config`] (file, environment, flags), [`embedded`] (the demo backend), [`service`] (the
//! rotator and the API on a backend), [`server`] (the HTTP server and the rotation schedule),
//! [`client`] (the API's client side: tokens, keys, `credential_process`) and [`status`].

pub mod accounts;
pub mod client;
pub mod config;
pub mod embedded;
pub mod progress;
pub mod report;
pub mod server;
pub mod service;
pub mod status;

/// The operating system's random source failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct RandomError(#[source] rand::rngs::SysError);

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    use rand::TryRng;
    let mut bytes = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(RandomError)?;
    Ok(bytes)
}
