//! keyrot's ports implemented with the AWS SDK: [`AwsIam`], [`AwsSecretStore`],
//! [`AwsVerifier`], [`SesNotifier`] (with the users' [`Owners`]), [`WebhookNotifier`] and
//! [`DynamoLease`], plus the API's secrets ([`load_api_secrets`]).
//!
//! This crate holds no policy: what to do and when is keyrot-core's business. It maps calls
//! and errors, and nothing else.
//!
//! Build the SDK clients once with [`AwsSettings`] and [`AwsClients`] (aws-config's standard
//! chain: environment, profiles, container and instance credentials, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`), then the adapters from them:
//!
//! ```no_run
//! use keyrot_aws::{AwsClients, AwsIam, AwsSecretStore, AwsSettings, AwsVerifier};
//!
//! # async fn run() {
//! let clients = AwsClients::from_settings(&AwsSettings::default()).await;
//! let iam = AwsIam::new(clients.iam.clone());
//! let store = AwsSecretStore::new(clients.secrets.clone()).with_prefix("keyrot/users/");
//! let verifier = AwsVerifier::new(clients.config.clone());
//! # let _ = (iam, store, verifier);
//! # }
//! ```
//!
//! Every adapter passes the same contract suite as keyrot-core's in-memory fakes, against
//! moto's server (`tests/contract/`).
//!
//! The SDK retries failed calls, and a failure may hide a call that took effect: [`retries`]
//! lists every call the adapters make, whether the SDK retries it, and why that is safe
//! (CreateAccessKey is never retried).

mod api_secrets;
mod config;
mod delivery;
mod delivery_settings;
mod error;
pub mod github;
mod iam;
mod lease;
pub mod moto;
mod notifier;
mod notifiers;
mod objects;
pub mod org;
mod owners;
pub mod permissions;
mod pressure;
pub mod retries;
mod store;
mod survey;
mod time;
mod user_tags;
mod verifier;
mod webhook;
mod wiring;

pub use api_secrets::{ApiSecretsError, SigningKeys, load_api_secrets};
pub use aws_config::retry::RetryMode;
pub use config::{AwsClients, AwsSettings};
pub use delivery::AwsDelivery;
pub use delivery_settings::{DEFAULT_GITHUB_API_URL, DeliverySettings, GitHubSettings};
pub use github::{GitHubDelivery, GitHubError};
pub use iam::AwsIam;
pub use lease::{DEFAULT_LEASE_TABLE, DynamoLease, check_table_name};
pub use notifier::{SesNotifier, subject};
pub use notifiers::Notifiers;
pub use objects::{ObjectError, ObjectInfo, Objects};
pub use owners::{OWNER_TAG, OWNER_TTL, Owner, Owners, concerns_owner, is_email_address};
pub use pressure::ThrottleCounter;
pub use store::{AwsSecretStore, DEFAULT_PREFIX, MANAGED_BY_TAG};
pub use user_tags::UserTags;
pub use verifier::AwsVerifier;
pub use webhook::{WebhookError, WebhookNotifier};
pub use wiring::{BackendSettings, LogNotifier, SystemClock};
