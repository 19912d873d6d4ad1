//! [`Iam`] on aws-sdk-iam.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::types::{AccessKeyMetadata, StatusType};
use keyrot_core::survey::CredentialReport;
use keyrot_core::{
    AccessKey, AccessKeyId, BoxError, Iam, IamError, KeyStatus, LastUsed, NewKey, SecretAccessKey,
    Selection, UserName,
};

use crate::error::{boxed, iam_error};
use crate::survey;
use crate::time::from_aws;
use crate::user_tags::UserTags;

/// IAM through the AWS SDK.
///
/// - Users are selected by tag (GetAccountAuthorizationDetails: pages of users with their tags)
///   or taken from a list as given; exemptions are the rotator's business, not this adapter's.
/// - The credential report is GenerateCredentialReport until IAM says it is complete, then
///   GetCredentialReport.
/// - `GetAccessKeyLastUsed` maps to [`LastUsed::Never`] only when IAM answers with no date;
///   every error is [`LastUsed::Unknown`].
/// - `LimitExceeded`, `NoSuchEntity` and throttling map to their own [`IamError`] variants,
///   after the SDK's own retries (see [`crate::AwsSettings`]).
/// - `CreateAccessKey` is sent once, never retried by the SDK (see [`crate::retries`]).
/// - Each listing records the listed users' `keyrot:deliver` tags in its [`UserTags`] (see
///   there), which [`AwsDelivery`](crate::AwsDelivery) reads.
#[derive(Debug, Clone)]
pub struct AwsIam {
    client: aws_sdk_iam::Client,
    tags: UserTags,
}

impl AwsIam {
    /// An adapter calling IAM through `client`.
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        Self {
            client,
            tags: UserTags::default(),
        }
    }

    /// Records the listed users' `keyrot:deliver` tags in `tags` (shared with the rotator's
    /// [`AwsDelivery`](crate::AwsDelivery)).
    #[must_use]
    pub fn with_user_tags(mut self, tags: UserTags) -> Self {
        self.tags = tags;
        self
    }
}

#[async_trait]
impl Iam for AwsIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        match selection {
            Selection::Listed(users) => {
                self.tags.replace(BTreeMap::new());
                Ok(users.iter().cloned().collect())
            }
            Selection::Tagged { key, value } => {
                survey::tagged_users(&self.client, key, value, &self.tags).await
            }
        }
    }

    async fn list_keys(&self, user: &UserName) -> Result<Vec<AccessKey>, IamError> {
        let keys: Vec<AccessKeyMetadata> = self
            .client
            .list_access_keys()
            .user_name(user.as_str())
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(iam_error)?;
        keys.iter().map(access_key).collect()
    }

    async fn create_key(&self, user: &UserName) -> Result<NewKey, IamError> {
        // Sent once, whatever the client's retry settings: a retry after a lost reply would
        // make a second key whose secret nobody holds, or ask IAM for a third (see
        // crate::retries). The driver observes again instead.
        let out = self
            .client
            .create_access_key()
            .user_name(user.as_str())
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(iam_error)?;
        let key = out
            .access_key()
            .ok_or_else(|| malformed("CreateAccessKey returned no key"))?;
        Ok(NewKey {
            key: AccessKey {
                id: key_id(key.access_key_id())?,
                status: status(key.status())?,
                created: key
                    .create_date()
                    .and_then(from_aws)
                    .ok_or_else(|| malformed("CreateAccessKey returned no creation date"))?,
            },
            secret: SecretAccessKey::new(key.secret_access_key()),
        })
    }

    async fn set_status(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        status: KeyStatus,
    ) -> Result<(), IamError> {
        let status = match status {
            KeyStatus::Active => StatusType::Active,
            KeyStatus::Inactive => StatusType::Inactive,
        };
        self.client
            .update_access_key()
            .user_name(user.as_str())
            .access_key_id(key.as_str())
            .status(status)
            .send()
            .await
            .map_err(iam_error)?;
        Ok(())
    }

    async fn delete_key(&self, user: &UserName, key: &AccessKeyId) -> Result<(), IamError> {
        self.client
            .delete_access_key()
            .user_name(user.as_str())
            .access_key_id(key.as_str())
            .send()
            .await
            .map_err(iam_error)?;
        Ok(())
    }

    async fn credential_report(&self) -> Result<Option<CredentialReport>, IamError> {
        survey::credential_report(&self.client).await.map(Some)
    }

    async fn last_used(&self, key: &AccessKeyId) -> LastUsed {
        let out = match self
            .client
            .get_access_key_last_used()
            .access_key_id(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                tracing::debug!(key = %key, error = %boxed(e), "GetAccessKeyLastUsed failed");
                return LastUsed::Unknown;
            }
        };
        match out.access_key_last_used() {
            // An answer with a date.
            Some(used) => match used.last_used_date() {
                Some(at) => from_aws(at).map_or(LastUsed::Unknown, LastUsed::At),
                None => LastUsed::Never,
            },
            // No answer at all is not "never used".
            None => LastUsed::Unknown,
        }
    }
}

fn access_key(meta: &AccessKeyMetadata) -> Result<AccessKey, IamError> {
    Ok(AccessKey {
        id: key_id(
            meta.access_key_id()
                .ok_or_else(|| malformed("ListAccessKeys returned a key without an id"))?,
        )?,
        status: status(
            meta.status()
                .ok_or_else(|| malformed("ListAccessKeys returned a key without a status"))?,
        )?,
        created: meta
            .create_date()
            .and_then(from_aws)
            .ok_or_else(|| malformed("ListAccessKeys returned a key without a creation date"))?,
    })
}

fn key_id(id: &str) -> Result<AccessKeyId, IamError> {
    AccessKeyId::new(id).map_err(|e| IamError::Other(Box::new(e)))
}

fn status(status: &StatusType) -> Result<KeyStatus, IamError> {
    match status {
        StatusType::Active => Ok(KeyStatus::Active),
        StatusType::Inactive => Ok(KeyStatus::Inactive),
        other => Err(malformed(format!("unknown access key status {other:?}"))),
    }
}

fn malformed(what: impl Into<String>) -> IamError {
    IamError::Other(BoxError::from(what.into()))
}
