//! [`Verifier`] on aws-sdk-sts.

use async_trait::async_trait;
use aws_config::SdkConfig;
use keyrot_core::{Credentials, UserName, Verifier, VerifyError};

use crate::error::{Kind, boxed, kind};

/// Checks a key by calling `sts:GetCallerIdentity` signed with it, which needs no permission.
///
/// - The key works if the call succeeds and the returned ARN is the user's
///   (`arn:<partition>:iam::<account>:user/[<path>/]<name>`); another identity is
///   [`VerifyError::WrongIdentity`].
/// - A refusal of the credentials (`InvalidClientTokenId`, `SignatureDoesNotMatch`, or an
///   authentication status without a code) is `Ok(false)`: a new key takes a few seconds to
///   propagate, and the rotator retries within its verify timeout.
/// - Anything else is [`VerifyError::Other`].
#[derive(Debug, Clone)]
pub struct AwsVerifier {
    config: SdkConfig,
}

impl AwsVerifier {
    /// A verifier that reaches STS as `config` says (region, endpoint, retries, HTTP client),
    /// with each candidate key as the credentials.
    pub fn new(config: SdkConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Verifier for AwsVerifier {
    async fn authenticates(
        &self,
        user: &UserName,
        credentials: &Credentials,
    ) -> Result<bool, VerifyError> {
        let key = aws_sdk_sts::config::Credentials::new(
            credentials.access_key_id.as_str(),
            credentials.secret_access_key.expose(),
            None,
            None,
            "keyrot-verifier",
        );
        let config = aws_sdk_sts::config::Builder::from(&self.config)
            .credentials_provider(key)
            .build();
        let client = aws_sdk_sts::Client::from_conf(config);
        match client.get_caller_identity().send().await {
            Ok(out) => {
                let arn = out.arn().unwrap_or_default();
                if arn_names_user(arn, user) {
                    Ok(true)
                } else {
                    Err(VerifyError::WrongIdentity {
                        actual: arn.to_owned(),
                    })
                }
            }
            Err(e) if kind(&e) == Kind::NotAuthenticated => Ok(false),
            Err(e) => Err(VerifyError::Other(boxed(e))),
        }
    }
}

/// Whether `arn` is the ARN of the IAM user `user`, whatever its path.
fn arn_names_user(arn: &str, user: &UserName) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _partition, service, region, _account, resource] = parts[..] else {
        return false;
    };
    prefix == "arn"
        && service == "iam"
        && region.is_empty()
        && resource
            .strip_prefix("user/")
            .and_then(|path| path.rsplit('/').next())
            == Some(user.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_own_arn_matches() {
        let user = UserName::new("deployer").unwrap();
        for arn in [
            "arn:aws:iam::123456789012:user/deployer",
            "arn:aws:iam::123456789012:user/ci/deployer",
            "arn:aws-cn:iam::123456789012:user/deployer",
        ] {
            assert!(arn_names_user(arn, &user), "{arn}");
        }
        for arn in [
            "arn:aws:iam::123456789012:user/moto",
            "arn:aws:iam::123456789012:user/deployer2",
            "arn:aws:iam::123456789012:user/deployer/other",
            "arn:aws:iam::123456789012:role/deployer",
            "arn:aws:sts::123456789012:assumed-role/deployer/session",
            "arn:aws:iam::123456789012:root",
            "deployer",
            "",
        ] {
            assert!(!arn_names_user(arn, &user), "{arn}");
        }
    }
}
