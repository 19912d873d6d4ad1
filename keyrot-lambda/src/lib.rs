//! keyrot-lambda: keyrot's two AWS Lambda functions, the scheduled rotator (`keyrot-rotate`)
//! and the API behind API Gateway (`keyrot-api`).
//!
//! It decides nothing: every rule is keyrot-core's, every AWS call keyrot-aws'. This crate
//! reads the functions' configuration ([`config`]), turns Lambda events into calls of the core
//! and their results into responses ([`rotate`], [`api`]), writes the rotator's report ([`report`]), writes JSON logs and CloudWatch
//! Embedded Metric Format lines ([`metrics`]), and reports a cold start with a bad
//! configuration to Lambda as an init error ([`runtime`]). It reads the clock only at the
//! edge: the rotator through [`keyrot_aws::SystemClock`], the API once per
//! request.
//!
//! The key types are [`rotate::RotateFunction`] and [`api::ApiFunction`]; the binaries in
//! `src/bin` only build one of them from the environment and hand it to the Lambda runtime.
//!
//! ```
//! use keyrot_lambda::config::RotateConfig;
//!
//! let env = [
//!     ("KEYROT_LEASE_TABLE", "keyrot-leases"),
//!     ("KEYROT_ROTATION_PERIOD", "30d"),
//!     ("KEYROT_GRACE_PERIOD", "1 week"),
//! ];
//! let lookup = |name: &str| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
//! let err = RotateConfig::from_env(lookup).unwrap_err();
//! assert!(err.chain().starts_with("KEYROT_GRACE_PERIOD: \"1 week\" is not a duration"));
//! ```

pub mod api;
pub mod config;
pub mod fanout;
pub mod metrics;
pub mod report;
pub mod rotate;
pub mod runtime;
