//! Delivery destinations on AWS: an SSM Parameter Store `SecureString` and a Secrets Manager
//! secret of the consumer's choosing, each in any region, holding the same JSON as keyrot's own
//! secret, and read back after each write (see [`keyrot_core::delivery`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_ssm::types::ParameterType;
use keyrot_core::delivery::{
    DELIVER_TAG, Delivery, DeliveryError, Destination, DestinationError, Target, parse_destinations,
};
use keyrot_core::{AccessKeyId, Credentials, Timestamp, UserName, request_token};

use crate::error::{Kind, boxed, kind};
use crate::github::GitHubDelivery;
use crate::store::payload;

/// One region's clients.
#[derive(Clone)]
struct Regional {
    ssm: aws_sdk_ssm::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

/// The [`Delivery`] port on AWS.
///
/// - An SSM destination is written with `PutParameter(Type=SecureString, Overwrite=true)`,
///   with the configured KMS key (`KeyId`) or the account's `alias/aws/ssm`, and read back
///   with `GetParameter(WithDecryption=true)`: it holds the key when the JSON's `AccessKeyId`
///   is the key's. A missing parameter holds nothing.
/// - A Secrets Manager destination is written with `PutSecretValue`, with the key's
///   [`request_token`] as `ClientRequestToken` (a retry of the same key makes no second
///   version), and created with `CreateSecret` when it does not exist yet (a name, not an
///   ARN); it is read back with `GetSecretValue` (`AWSCURRENT`).
/// - Clients are made per region from one [`SdkConfig`] (credentials, endpoint, retries and
///   timeouts as everywhere else).
/// - GitHub destinations go to the [`GitHubDelivery`] given with [`AwsDelivery::with_github`];
///   without one they are refused ([`DeliveryError::Rejected`]): the user's old key then stays
///   active until the maximum grace, with an alert that names the destination.
/// - Destinations come from configuration and, with [`AwsDelivery::with_user_tags`], from the
///   user's [`DELIVER_TAG`] (`ListUserTags`, one call per user and observation).
pub struct AwsDelivery {
    base: SdkConfig,
    configured: BTreeMap<UserName, Vec<Destination>>,
    tags: Option<aws_sdk_iam::Client>,
    github: Option<GitHubDelivery>,
    regions: Mutex<BTreeMap<String, Regional>>,
}

impl std::fmt::Debug for AwsDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsDelivery")
            .field("users", &self.configured.len())
            .field("tags", &self.tags.is_some())
            .field("github", &self.github)
            .finish_non_exhaustive()
    }
}

impl AwsDelivery {
    /// Destinations as configured, per user, reached with `base`'s credentials and settings.
    pub fn new(base: &SdkConfig, configured: BTreeMap<UserName, Vec<Destination>>) -> Self {
        Self {
            base: base.clone(),
            configured,
            tags: None,
            github: None,
            regions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Also reads each user's [`DELIVER_TAG`] through `iam`.
    #[must_use]
    pub fn with_user_tags(mut self, iam: aws_sdk_iam::Client) -> Self {
        self.tags = Some(iam);
        self
    }

    /// Sends GitHub destinations to `github`.
    #[must_use]
    pub fn with_github(mut self, github: GitHubDelivery) -> Self {
        self.github = Some(github);
        self
    }

    /// The GitHub adapter, or the refusal of GitHub destinations without one.
    fn github(&self) -> Result<&GitHubDelivery, DeliveryError> {
        self.github.as_ref().ok_or_else(unsupported)
    }

    fn regional(&self, region: &str) -> Regional {
        let mut regions = self.regions.lock().unwrap_or_else(PoisonError::into_inner);
        regions
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = self
                    .base
                    .to_builder()
                    .region(Region::new(region.to_owned()))
                    .build();
                Regional {
                    ssm: aws_sdk_ssm::Client::new(&config),
                    secrets: aws_sdk_secretsmanager::Client::new(&config),
                }
            })
            .clone()
    }

    /// The value `destination` holds now, if any.
    async fn read(&self, destination: &Destination) -> Result<Option<String>, DeliveryError> {
        match &destination.target {
            Target::Ssm { region, name, .. } => {
                let answer = self
                    .regional(region)
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await;
                match answer {
                    Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_owned)),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_parameter_not_found()) =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(delivery_error(e)),
                }
            }
            Target::SecretsManager { region, secret } => {
                let answer = self
                    .regional(region)
                    .secrets
                    .get_secret_value()
                    .secret_id(secret)
                    .send()
                    .await;
                match answer {
                    Ok(out) => Ok(out.secret_string().map(str::to_owned)),
                    Err(e) if kind(&e) == Kind::NotFound => Ok(None),
                    Err(e) => Err(delivery_error(e)),
                }
            }
            Target::GitHub { .. } => Err(unsupported()),
        }
    }
}

fn unsupported() -> DeliveryError {
    DeliveryError::Rejected("no GitHub credential is configured for GitHub destinations".into())
}

/// The key id a delivered value names, if it is keyrot's JSON.
fn key_of(value: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(value).ok()?;
    value.get("AccessKeyId")?.as_str().map(str::to_owned)
}

fn delivery_error<E>(
    err: aws_sdk_iam::error::SdkError<E, aws_sdk_iam::config::http::HttpResponse>,
) -> DeliveryError
where
    E: aws_sdk_iam::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match kind(&err) {
        Kind::NotFound => DeliveryError::NotFound(boxed(err)),
        Kind::Throttled => DeliveryError::Throttled(boxed(err)),
        Kind::AccessDenied => DeliveryError::AccessDenied(boxed(err)),
        Kind::NotAuthenticated => DeliveryError::Unauthorized(boxed(err)),
        Kind::Exists | Kind::LimitExceeded | Kind::Other => DeliveryError::Other(boxed(err)),
    }
}

#[async_trait]
impl Delivery for AwsDelivery {
    async fn destinations(&self, user: &UserName) -> Result<Vec<Destination>, DeliveryError> {
        let mut found = self.configured.get(user).cloned().unwrap_or_default();
        let Some(iam) = &self.tags else {
            return Ok(found);
        };
        let tags = iam
            .list_user_tags()
            .user_name(user.as_str())
            .send()
            .await
            .map_err(delivery_error)?;
        let tagged = tags.tags().iter().find(|t| t.key() == DELIVER_TAG);
        if let Some(tag) = tagged {
            for destination in parse_destinations(tag.value()).map_err(DeliveryError::BadTag)? {
                if found.iter().any(|d| d.id == destination.id) {
                    let id = destination.id.as_str().to_owned();
                    return Err(DeliveryError::BadTag(DestinationError::DuplicateId(id)));
                }
                found.push(destination);
            }
        }
        Ok(found)
    }

    async fn holds(
        &self,
        _user: &UserName,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, DeliveryError> {
        if let Target::GitHub { .. } = destination.target {
            return self.github()?.holds(destination, key).await;
        }
        let value = self.read(destination).await?;
        Ok(value.and_then(|v| key_of(&v)).as_deref() == Some(key.as_str()))
    }

    async fn write(
        &self,
        user: &UserName,
        destination: &Destination,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), DeliveryError> {
        if let Target::GitHub { .. } = destination.target {
            return self.github()?.write(destination, credentials).await;
        }
        let value =
            payload(user, credentials, created).map_err(|e| DeliveryError::Other(Box::new(e)))?;
        match &destination.target {
            Target::Ssm {
                region,
                name,
                kms_key,
            } => {
                self.regional(region)
                    .ssm
                    .put_parameter()
                    .name(name)
                    .value(value)
                    .r#type(ParameterType::SecureString)
                    .set_key_id(kms_key.clone())
                    .overwrite(true)
                    .send()
                    .await
                    .map_err(delivery_error)?;
            }
            Target::SecretsManager { region, secret } => {
                let client = self.regional(region).secrets;
                let token = request_token(&credentials.access_key_id);
                let put = client
                    .put_secret_value()
                    .secret_id(secret)
                    .client_request_token(&token)
                    .secret_string(&value)
                    .send()
                    .await;
                match put {
                    Ok(_) => {}
                    Err(e) if kind(&e) == Kind::NotFound && !secret.starts_with("arn:") => {
                        client
                            .create_secret()
                            .name(secret)
                            .client_request_token(&token)
                            .secret_string(&value)
                            .send()
                            .await
                            .map_err(delivery_error)?;
                    }
                    Err(e) => return Err(delivery_error(e)),
                }
            }
            Target::GitHub { .. } => return Err(unsupported()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_names_its_key_only_in_keyrots_json() {
        assert_eq!(
            key_of(r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"x"}"#).as_deref(),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
        assert_eq!(key_of("AKIAIOSFODNN7EXAMPLE"), None);
        assert_eq!(key_of(r#"{"AccessKeyId":7}"#), None);
    }
}
