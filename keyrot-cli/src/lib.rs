//! The `keyrot` command: runs the whole service locally (on an embedded in-memory backend, or
//! against AWS or any AWS-compatible endpoint), operates and inspects it, and serves consumers
//! as an AWS `credential_process`.
//!
//! The binary is thin; this library holds its parts so that they can be tested:
//! [`config`] (file, environment, flags), [`embedded`] (the demo backend), [`service`] (the
//! rotator and the API on a backend), [`server`] (the HTTP server and the rotation schedule),
//! [`client`] (the API's client side: tokens, keys, `credential_process`) and [`status`].

pub mod client;
pub mod config;
pub mod embedded;
pub mod server;
pub mod service;
pub mod status;

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    use rand::TryRng;
    let mut bytes = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| format!("the operating system's random source failed: {e}"))?;
    Ok(bytes)
}
