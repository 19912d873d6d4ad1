//! [`Iam`] on aws-sdk-iam.

use async_trait::async_trait;
use aws_sdk_iam::config::retry::RetryConfig;
use aws_sdk_iam::types::{AccessKeyMetadata, StatusType};
use futures::{StreamExt, stream};
use keyrot_core::{
    AccessKey, AccessKeyId, BoxError, Iam, IamError, KeyStatus, LastUsed, NewKey, SecretAccessKey,
    Selection, UserName,
};

use crate::error::{boxed, iam_error};
use crate::time::from_aws;

/// How many `ListUserTags` calls run at once while selecting users by tag.
const TAG_LOOKUPS_IN_FLIGHT: usize = 8;

/// IAM through the AWS SDK.
///
/// - Users are selected by tag (`ListUsers`, then `ListUserTags` for each user, since
///   `ListUsers` does not return tags) or taken from a list as given; exemptions are the
///   rotator's business, not this adapter's.
/// - `GetAccessKeyLastUsed` maps to [`LastUsed::Never`] only when IAM answers with no date;
///   every error is [`LastUsed::Unknown`].
/// - `LimitExceeded`, `NoSuchEntity` and throttling map to their own [`IamError`] variants,
///   after the SDK's own retries (see [`crate::AwsSettings`]).
/// - `CreateAccessKey` is sent once, never retried by the SDK (see [`crate::retries`]).
#[derive(Debug, Clone)]
pub struct AwsIam {
    client: aws_sdk_iam::Client,
}

impl AwsIam {
    /// An adapter calling IAM through `client`.
    pub fn new(client: aws_sdk_iam::Client) -> Self {
        Self { client }
    }

    async fn all_users(&self) -> Result<Vec<UserName>, IamError> {
        let users: Vec<_> = self
            .client
            .list_users()
            .max_items(100)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(iam_error)?;
        users
            .iter()
            .map(|u| UserName::new(u.user_name()).map_err(|e| IamError::Other(Box::new(e))))
            .collect()
    }

    async fn has_tag(&self, user: &UserName, key: &str, value: &str) -> Result<bool, IamError> {
        let mut tags = self
            .client
            .list_user_tags()
            .user_name(user.as_str())
            .into_paginator()
            .items()
            .send();
        while let Some(tag) = tags.try_next().await.map_err(iam_error)? {
            if tag.key() == key && tag.value() == value {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl Iam for AwsIam {
    async fn managed_users(&self, selection: &Selection) -> Result<Vec<UserName>, IamError> {
        let (key, value) = match selection {
            Selection::Listed(users) => return Ok(users.iter().cloned().collect()),
            Selection::Tagged { key, value } => (key, value),
        };
        let users = self.all_users().await?;
        let checked: Vec<(UserName, Result<bool, IamError>)> = stream::iter(users)
            .map(|user| async move {
                let tagged = self.has_tag(&user, key, value).await;
                (user, tagged)
            })
            .buffer_unordered(TAG_LOOKUPS_IN_FLIGHT)
            .collect()
            .await;
        let mut managed = Vec::new();
        let mut failed = Vec::new();
        for (user, tagged) in checked {
            match tagged {
                Ok(true) => managed.push(user),
                // A user deleted between ListUsers and ListUserTags is not one to manage.
                Ok(false) | Err(IamError::NoSuchEntity) => {}
                Err(_) => failed.push(user),
            }
        }
        // Lookups that failed (throttled beyond the SDK's retries, most likely) get one more
        // try, one at a time; a user whose tags stay unknown fails the listing, since keyrot
        // can neither manage it nor report it as unmanaged.
        for user in failed {
            match self.has_tag(&user, key, value).await {
                Ok(true) => managed.push(user),
                Ok(false) | Err(IamError::NoSuchEntity) => {}
                Err(e) => return Err(e),
            }
        }
        managed.sort();
        Ok(managed)
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
