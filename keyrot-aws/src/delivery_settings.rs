//! What a rotator delivers where, as configured: the users' destinations, whether their
//! `keyrot:deliver` tags are read, and what the GitHub adapter needs (see
//! [`keyrot_core::delivery`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use keyrot_core::delivery::Destination;
use keyrot_core::{Rotator, UserName};

use crate::{AwsDelivery, UserTags};

/// GitHub's REST API unless a GitHub Enterprise Server's is configured.
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";

/// How keyrot reaches GitHub for GitHub Actions destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubSettings {
    /// The Secrets Manager secret (name or ARN) holding the GitHub App or token keyrot writes
    /// Actions secrets with; never a flag.
    pub credential_secret: Option<String>,
    /// The REST API's base URL. Default [`DEFAULT_GITHUB_API_URL`].
    pub api_url: String,
}

impl Default for GitHubSettings {
    fn default() -> Self {
        Self {
            credential_secret: None,
            api_url: DEFAULT_GITHUB_API_URL.to_owned(),
        }
    }
}

/// The configured delivery. With no destination and the tags not read, a rotator gets no
/// delivery port at all (and makes no call for it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverySettings {
    /// Each user's destinations, as configured.
    pub users: BTreeMap<UserName, Vec<Destination>>,
    /// Whether destinations are also read from each user's `keyrot:deliver` tag.
    pub user_tags: bool,
    /// GitHub, for GitHub Actions destinations.
    pub github: GitHubSettings,
}

impl DeliverySettings {
    /// Whether anything is to be delivered.
    pub fn is_configured(&self) -> bool {
        !self.users.is_empty() || self.user_tags
    }

    /// The delivery port of an account reached with `config`, its users listed through `iam`
    /// (which records their tags in `tags`); `None` when nothing is configured.
    pub fn delivery(
        &self,
        config: &SdkConfig,
        iam: &aws_sdk_iam::Client,
        tags: &UserTags,
    ) -> Option<AwsDelivery> {
        if !self.is_configured() {
            return None;
        }
        let delivery = AwsDelivery::new(config, self.users.clone());
        Some(match self.user_tags {
            true => delivery
                .with_user_tags(iam.clone())
                .with_tags_seen(tags.clone()),
            false => delivery,
        })
    }

    /// `rotator` delivering as configured through [`DeliverySettings::delivery`]; unchanged
    /// when nothing is configured.
    pub fn attach(
        &self,
        rotator: Rotator,
        config: &SdkConfig,
        iam: &aws_sdk_iam::Client,
        tags: &UserTags,
    ) -> Rotator {
        match self.delivery(config, iam, tags) {
            Some(delivery) => rotator.with_delivery(Arc::new(delivery)),
            None => rotator,
        }
    }
}
