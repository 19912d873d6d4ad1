//! keyrot-core: the zero-downtime IAM access key rotation engine and the API's token policy.
//!
//! It performs no IO and never reads the clock: adapters implement its [ports](crate::ports),
//! and every decision takes `now` as an argument.
#![doc = include_str!("../README.md")]

pub mod accounts;
pub mod delivery;
pub mod driver;
pub mod duration;
#[cfg(feature = "fake")]
pub mod fake;
pub mod model;
pub mod plan;
pub mod policy;
pub mod ports;
pub mod report;
pub mod settings;
pub mod survey;
pub mod token;

pub use driver::{
    Concurrency, ManagedUser, Outcome, Ports, Request, Rotator, RunOptions, RunReport, StepError,
    UserReport,
};
pub use model::*;
pub use plan::{Blocked, Observation, Step, Wait, plan};
pub use policy::{Policy, PolicyBuilder, PolicyError, PolicyField, Selection};
pub use ports::*;
