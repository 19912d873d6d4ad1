//! Test support for many accounts: an organization in moto, member accounts in it, an
//! administrator in each, keyrot's member role and users there.
//!
//! moto keeps accounts apart by credentials: a request signed with a key is served by the
//! account that key belongs to, and sts:AssumeRole of a role ARN in another account returns
//! credentials of that account (moto 5.x: `STSBackend.assume_role` makes the key in the role
//! ARN's account; the role need not exist, and its trust policy is not checked across
//! accounts, so "only the hub may assume it" is the member template's guard rule to prove, not
//! this emulator's).

use aws_config::SdkConfig;
use aws_sdk_organizations::error::ProvideErrorMetadata;
use aws_sdk_organizations::types::OrganizationFeatureSet;
use keyrot_core::BoxError;
use keyrot_core::accounts::{AccountId, OuId};

use super::{Moto, create_user_with};
use crate::error::boxed;

/// The role Organizations' CreateAccount makes in each new account (moto's server here gives
/// it an allow-all policy, as AWS does).
pub const ACCOUNT_ACCESS_ROLE: &str = "OrganizationAccountAccessRole";

/// moto's default account: the administrator's, so the organization's management account
/// (and the hub) in the tests.
pub const MANAGEMENT_ACCOUNT: &str = "123456789012";

impl Moto {
    fn organizations(config: &SdkConfig) -> aws_sdk_organizations::Client {
        aws_sdk_organizations::Client::new(config)
    }

    /// The organization's root, the organization made (all features) on first use with the
    /// administrator's account as its management account.
    pub async fn organization_root(&self) -> Result<OuId, BoxError> {
        let org = Self::organizations(&self.admin_config().await);
        let made = org
            .create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await;
        match made {
            Err(e) if e.code() == Some("AlreadyInOrganizationException") => {}
            other => {
                other.map_err(boxed)?;
            }
        }
        let roots = org.list_roots().send().await.map_err(boxed)?;
        let id = roots
            .roots()
            .first()
            .and_then(|r| r.id())
            .ok_or("ListRoots returned no root")?;
        Ok(OuId::new(id)?)
    }

    /// A new organizational unit `name` under `parent`.
    pub async fn create_ou(&self, parent: &OuId, name: &str) -> Result<OuId, BoxError> {
        let org = Self::organizations(&self.admin_config().await);
        let ou = org
            .create_organizational_unit()
            .parent_id(parent.as_str())
            .name(name)
            .send()
            .await
            .map_err(boxed)?;
        let id = ou
            .organizational_unit()
            .and_then(|ou| ou.id())
            .ok_or("CreateOrganizationalUnit returned no id")?;
        Ok(OuId::new(id)?)
    }

    /// A new member account `name`, moved into `parent` (a unit, or the root).
    pub async fn create_account(&self, name: &str, parent: &OuId) -> Result<AccountId, BoxError> {
        let org = Self::organizations(&self.admin_config().await);
        let status = org
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .map_err(boxed)?;
        let id = status
            .create_account_status()
            .and_then(|s| s.account_id())
            .ok_or("CreateAccount returned no account id")?;
        let id = AccountId::new(id)?;
        let root = self.organization_root().await?;
        if parent != &root {
            org.move_account()
                .account_id(id.as_str())
                .source_parent_id(root.as_str())
                .destination_parent_id(parent.as_str())
                .send()
                .await
                .map_err(boxed)?;
        }
        Ok(id)
    }

    /// An SDK configuration acting as the administrator of `account` (its
    /// [`ACCOUNT_ACCESS_ROLE`], assumed from the management account).
    pub async fn account_admin_config(&self, account: &AccountId) -> Result<SdkConfig, BoxError> {
        let role = format!("arn:aws:iam::{account}:role/{ACCOUNT_ACCESS_ROLE}");
        Ok(crate::org::assume(&self.admin_config().await, &role).await?)
    }

    /// Creates the role `name` in `account` with `policy` (a policy document, JSON) inline,
    /// assumable by the management account's principals.
    pub async fn create_role_in(
        &self,
        account: &AccountId,
        name: &str,
        policy: &str,
    ) -> Result<(), BoxError> {
        let iam = aws_sdk_iam::Client::new(&self.account_admin_config(account).await?);
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{MANAGEMENT_ACCOUNT}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        iam.create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .send()
            .await
            .map_err(boxed)?;
        iam.put_role_policy()
            .role_name(name)
            .policy_name("keyrot")
            .policy_document(policy)
            .send()
            .await
            .map_err(boxed)?;
        Ok(())
    }

    /// Creates keyrot's member role `name` in `account`, allowed exactly
    /// [`crate::permissions::MEMBER_ACTIONS`] (moto does not evaluate the template's resource
    /// and tag conditions; `cfn/member.yaml`'s guard rules check those).
    pub async fn create_member_role(
        &self,
        account: &AccountId,
        name: &str,
    ) -> Result<(), BoxError> {
        let actions = serde_json::to_string(crate::permissions::MEMBER_ACTIONS)?;
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":"*"}}]}}"#
        );
        self.create_role_in(account, name, &policy).await
    }

    /// Creates the IAM user `name` carrying `tags` in `account`.
    pub async fn create_user_in(
        &self,
        account: &AccountId,
        name: &str,
        tags: &[(&str, &str)],
    ) -> Result<(), BoxError> {
        create_user_with(&self.account_admin_config(account).await?, name, tags).await
    }
}
