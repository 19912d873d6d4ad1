//! Many accounts on AWS: the organization's inventory ([`Organization`], on the Organizations
//! API) and a member account's ports ([`MemberAccess`], through sts:AssumeRole of the member
//! role). Which accounts are in scope is keyrot-core's [`AccountScope`]; this module lists and
//! connects, nothing else.

use std::collections::VecDeque;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_iam::config::ProvideCredentials;
use aws_sdk_organizations::types::{AccountState, ChildType};
use keyrot_core::accounts::{AccountId, AccountNotifier, AccountScope, OrgAccount, OuId};
use keyrot_core::{BoxError, Policy, Ports, Rotator};

use crate::{AwsClients, AwsIam, AwsSecretStore, BackendSettings};

/// The member role's name (the member template's) unless configured otherwise.
pub const DEFAULT_MEMBER_ROLE: &str = "keyrot-member";
/// How many accounts run at once unless configured otherwise.
pub const DEFAULT_MAX_PARALLEL_ACCOUNTS: usize = 10;
/// The session name keyrot's assumed roles carry (in the member accounts' CloudTrail).
pub const SESSION_NAME: &str = "keyrot";

/// How keyrot reaches an organization's accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSettings {
    /// Which accounts are managed.
    pub scope: AccountScope,
    /// The role keyrot assumes in each member account: a name, with its path if it has one
    /// (`keyrot-member`, `keyrot/keyrot-member`).
    pub member_role: String,
    /// A role in the management account that may only list the organization (an ARN); unset:
    /// list with keyrot's own credentials (the hub is the management account or a delegated
    /// administrator).
    pub list_role: Option<String>,
    /// At most this many accounts run at once.
    pub max_parallel: usize,
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            scope: AccountScope::default(),
            member_role: DEFAULT_MEMBER_ROLE.to_owned(),
            list_role: None,
            max_parallel: DEFAULT_MAX_PARALLEL_ACCOUNTS,
        }
    }
}

/// Why the organization could not be listed or an account reached.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    /// An Organizations call failed.
    #[error("could not list the organization ({call})")]
    List {
        /// The call.
        call: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Organizations listed an id that is not an account's or a unit's.
    #[error("the organization listed {0:?}, which is not an account or unit id")]
    Malformed(String),
    /// A role could not be assumed.
    #[error("could not assume {role}")]
    AssumeRole {
        /// The role's ARN.
        role: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The account is exempt: keyrot never touches it.
    #[error("account {0} is exempt")]
    Exempt(AccountId),
    /// The account was named but the organization does not list it as active.
    #[error("account {0} is not an active account of the organization")]
    NotInOrganization(AccountId),
}

/// The organization's accounts, through the Organizations API (in the management account, or
/// a delegated administrator).
#[derive(Debug, Clone)]
pub struct Organization {
    client: aws_sdk_organizations::Client,
}

impl Organization {
    /// Lists through `client`.
    pub fn new(client: aws_sdk_organizations::Client) -> Self {
        Self { client }
    }

    /// Lists with the hub's credentials, or with `list_role` assumed from them.
    pub async fn connect(hub: &SdkConfig, list_role: Option<&str>) -> Result<Self, OrgError> {
        let config = match list_role {
            Some(role) => assume(hub, role).await?,
            None => hub.clone(),
        };
        Ok(Self::new(aws_sdk_organizations::Client::new(&config)))
    }

    /// Every account of the organization, with its place in the tree when `tree` is set
    /// (ListRoots, then ListChildren and ListAccountsForParent under each unit, nested units
    /// included); otherwise the flat list (ListAccounts), which costs a call per page only.
    pub async fn inventory(&self, tree: bool) -> Result<Vec<OrgAccount>, OrgError> {
        if tree {
            return self.tree().await;
        }
        let pages: Vec<_> = self
            .client
            .list_accounts()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(list("ListAccounts"))?;
        pages
            .iter()
            .flat_map(|page| page.accounts())
            .map(|a| account(a, Vec::new()))
            .collect()
    }

    async fn tree(&self) -> Result<Vec<OrgAccount>, OrgError> {
        let roots: Vec<_> = self
            .client
            .list_roots()
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(list("ListRoots"))?;
        let mut queue: VecDeque<Vec<OuId>> = roots
            .iter()
            .flat_map(|page| page.roots())
            .map(|root| ou_id(root.id()).map(|id| vec![id]))
            .collect::<Result<_, _>>()?;
        let mut accounts = Vec::new();
        while let Some(path) = queue.pop_front() {
            let Some(parent) = path.last() else { continue };
            let pages: Vec<_> = self
                .client
                .list_accounts_for_parent()
                .parent_id(parent.as_str())
                .into_paginator()
                .send()
                .try_collect()
                .await
                .map_err(list("ListAccountsForParent"))?;
            for a in pages.iter().flat_map(|page| page.accounts()) {
                accounts.push(account(a, path.clone())?);
            }
            let pages: Vec<_> = self
                .client
                .list_children()
                .parent_id(parent.as_str())
                .child_type(ChildType::OrganizationalUnit)
                .into_paginator()
                .send()
                .try_collect()
                .await
                .map_err(list("ListChildren"))?;
            for child in pages.iter().flat_map(|page| page.children()) {
                let mut nested = path.clone();
                nested.push(ou_id(child.id())?);
                queue.push_back(nested);
            }
        }
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(accounts)
    }
}

fn list<E>(call: &'static str) -> impl FnOnce(E) -> OrgError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| OrgError::List {
        call,
        source: Box::new(e),
    }
}

fn ou_id(id: Option<&str>) -> Result<OuId, OrgError> {
    let id = id.unwrap_or_default();
    OuId::new(id).map_err(|_| OrgError::Malformed(id.to_owned()))
}

fn account(
    a: &aws_sdk_organizations::types::Account,
    path: Vec<OuId>,
) -> Result<OrgAccount, OrgError> {
    let id = a.id().unwrap_or_default();
    Ok(OrgAccount {
        id: AccountId::new(id).map_err(|_| OrgError::Malformed(id.to_owned()))?,
        // `State` replaces the deprecated `Status`; an account without it is not counted as
        // active (keyrot rather skips an account than touches a closing one).
        active: a.state() == Some(&AccountState::Active),
        path,
    })
}

/// The partition of `region` (`aws`, `aws-cn`, `aws-us-gov`).
fn partition(region: Option<&str>) -> &'static str {
    match region.unwrap_or_default() {
        r if r.starts_with("cn-") => "aws-cn",
        r if r.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    }
}

/// `hub` signing with `role` assumed from its credentials (refreshed before they expire). The
/// role is assumed once here, so that a role that is missing or refuses keyrot fails now, by
/// name, rather than at the first call made with it.
pub(crate) async fn assume(hub: &SdkConfig, role: &str) -> Result<SdkConfig, OrgError> {
    let provider = AssumeRoleProvider::builder(role)
        .session_name(SESSION_NAME)
        .configure(hub)
        .build()
        .await;
    provider
        .provide_credentials()
        .await
        .map_err(|e| OrgError::AssumeRole {
            role: role.to_owned(),
            source: Box::new(e),
        })?;
    Ok(hub
        .to_builder()
        .credentials_provider(aws_sdk_iam::config::SharedCredentialsProvider::new(
            provider,
        ))
        .build())
}

/// A member account's ports: IAM through the member role; the secret store (secrets named
/// `<prefix><account>/<UserName>`), the lease (items `<account>/<UserName>`), the verifier,
/// the notifier (its notices naming the account, [`AccountNotifier`]) and the clock the
/// hub's.
#[derive(Debug, Clone)]
pub struct MemberAccess {
    hub: AwsClients,
    backend: BackendSettings,
    member_role: String,
}

impl MemberAccess {
    /// Reaches member accounts from `hub` through `member_role`, keeping secrets and claims
    /// as `backend` says.
    pub fn new(hub: AwsClients, backend: BackendSettings, member_role: impl Into<String>) -> Self {
        Self {
            hub,
            backend,
            member_role: member_role.into(),
        }
    }

    /// The member role's ARN in `account`.
    pub fn role_arn(&self, account: &AccountId) -> String {
        let partition = partition(self.hub.config.region().map(|r| r.as_ref()));
        format!("arn:{partition}:iam::{account}:role/{}", self.member_role)
    }

    /// `account`'s ports, once its member role is assumed.
    pub async fn ports(&self, account: &AccountId) -> Result<Ports, OrgError> {
        Ok(self.member(account).await?.1)
    }

    /// `account`'s clients (its member role assumed) and ports.
    async fn member(&self, account: &AccountId) -> Result<(AwsClients, Ports), OrgError> {
        let member = AwsClients::new(assume(&self.hub.config, &self.role_arn(account)).await?);
        let hub = self.backend.ports(&self.hub);
        let ports = Ports {
            iam: Arc::new(AwsIam::new(member.iam.clone()).with_user_tags(member.user_tags.clone())),
            store: Arc::new(self.backend.account_store(&self.hub, account)),
            lease: Arc::new(self.backend.lease(&self.hub).for_account(account)),
            // The hub's notifiers, each notice naming the account. Owners are not read through
            // the member role (it may only touch keys): a member account's notices go to the
            // administrators alone, never to a hub user's owner of the same name.
            notifier: Arc::new(AccountNotifier::new(
                account.clone(),
                self.backend.notifier(&self.hub, None),
            )),
            ..hub
        };
        Ok((member, ports))
    }

    /// A rotator over `account` under `policy`, with the backend's alert settings, delivering
    /// as the backend says: the member account's destinations are written with its member
    /// role.
    pub async fn rotator(&self, account: &AccountId, policy: Policy) -> Result<Rotator, OrgError> {
        let (member, ports) = self.member(account).await?;
        let rotator = self
            .backend
            .with_alert_settings(Rotator::new(ports, policy));
        Ok(self.backend.with_delivery(rotator, &member))
    }
}

impl BackendSettings {
    /// The hub's store of member account `account`'s users: secrets named
    /// `<prefix><account>/<UserName>`.
    pub fn account_store(&self, hub: &AwsClients, account: &AccountId) -> AwsSecretStore {
        Self {
            secret_prefix: format!("{}{account}/", self.secret_prefix),
            ..self.clone()
        }
        .store(hub)
    }
}

/// The accounts `scope` chooses from those the organization `org` lists, with the accounts it
/// names that are not found.
pub async fn accounts_in_scope(
    org: &Organization,
    scope: &AccountScope,
) -> Result<keyrot_core::accounts::Chosen, OrgError> {
    let inventory = org.inventory(scope.needs_tree()).await?;
    Ok(scope.select(&inventory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_the_region() {
        assert_eq!(partition(Some("eu-west-1")), "aws");
        assert_eq!(partition(Some("cn-north-1")), "aws-cn");
        assert_eq!(partition(Some("us-gov-west-1")), "aws-us-gov");
        assert_eq!(partition(None), "aws");
    }
}
