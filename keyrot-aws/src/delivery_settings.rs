//! What a rotator delivers where, as configured: the users' destinations, whether their
//! `keyrot:deliver` tags are read, and what the GitHub adapter needs (see
//! [`keyrot_core::delivery`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use keyrot_core::delivery::Destination;
use keyrot_core::{Rotator, UserName};

use crate::{AwsDelivery, GitHubDelivery, SystemClock, UserTags};

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

/// How long the GitHub adapter waits for a connection, and for each answer.
const GITHUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const GITHUB_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl GitHubSettings {
    /// The GitHub adapter, its credential read with `config`'s Secrets Manager (for a member
    /// account, with the member role: name the secret by an ARN its policy lets that role
    /// read); `None` without a credential secret. A base URL the adapter refuses was refused
    /// by the configuration already; should it happen, it is logged and GitHub destinations
    /// stay refused (their users keep their old keys, with an alert).
    fn adapter(&self, config: &SdkConfig) -> Option<GitHubDelivery> {
        let secret = self.credential_secret.as_ref()?;
        GitHubDelivery::new(
            aws_sdk_secretsmanager::Client::new(config),
            secret.clone(),
            Arc::new(SystemClock),
            &self.api_url,
            GITHUB_CONNECT_TIMEOUT,
            GITHUB_REQUEST_TIMEOUT,
        )
        .inspect_err(|e| {
            tracing::error!(error = %keyrot_core::driver::error_chain(e), "GitHub destinations are off");
        })
        .ok()
    }
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
        let mut delivery = AwsDelivery::new(config, self.users.clone());
        if let Some(github) = self.github.adapter(config) {
            delivery = delivery.with_github(github);
        }
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

#[cfg(test)]
mod tests {
    use keyrot_core::delivery::parse_destinations;

    use super::*;

    fn settings(credential_secret: Option<&str>) -> DeliverySettings {
        let user = UserName::new("ci").unwrap();
        DeliverySettings {
            users: BTreeMap::from([(user, parse_destinations("gh=gh-repo:acme/app:AWS").unwrap())]),
            user_tags: false,
            github: GitHubSettings {
                credential_secret: credential_secret.map(str::to_owned),
                api_url: DEFAULT_GITHUB_API_URL.to_owned(),
            },
        }
    }

    #[test]
    fn github_destinations_go_to_github_once_a_credential_is_configured() {
        let config = SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let iam = aws_sdk_iam::Client::new(&config);
        let tags = UserTags::default();
        let with = settings(Some("keyrot/github"))
            .delivery(&config, &iam, &tags)
            .unwrap();
        assert!(format!("{with:?}").contains("github: Some("), "{with:?}");
        let without = settings(None).delivery(&config, &iam, &tags).unwrap();
        assert!(
            format!("{without:?}").contains("github: None"),
            "{without:?}"
        );
    }
}
