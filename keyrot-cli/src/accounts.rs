//! `--account ID` and `--org`: the same commands over one member account (its role assumed)
//! or every account in scope, one run per account, at most `max_parallel_accounts` at once,
//! one account's failure never stopping the others. The rules are keyrot-core's
//! ([`keyrot_core::accounts`]) and the deployed fan-out's; only the engine differs.

use std::future::Future;

use keyrot_aws::AwsClients;
use keyrot_aws::org::{MemberAccess, OrgError, OrgSettings, Organization, accounts_in_scope};
use keyrot_core::accounts::{AccountId, AccountReport, for_each_account};
use keyrot_core::{Policy, Rotator};

use crate::config::{BackendKind, Config};
use crate::service::Backend;

/// Why the accounts could not be reached at all (one account's failure is in its report).
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// `--account` or `--org` on the embedded backend.
    #[error("--account and --org need the aws backend (the embedded demo has one account)")]
    Embedded,
    /// The organization could not be listed.
    #[error(transparent)]
    Org(#[from] OrgError),
}

/// The hub's way into the organization's accounts.
#[derive(Debug)]
pub struct Fleet {
    hub: AwsClients,
    access: MemberAccess,
    org: OrgSettings,
    policy: Policy,
}

impl Fleet {
    /// The fleet of `backend` (which must be the AWS backend) under `config`'s organization
    /// settings.
    pub fn open(backend: &Backend, config: &Config) -> Result<Self, AccountsError> {
        let hub = match (&backend.clients, backend.kind) {
            (Some(clients), BackendKind::Aws) => clients.clone(),
            _ => return Err(AccountsError::Embedded),
        };
        let access = MemberAccess::new(
            hub.clone(),
            config.backend_settings.clone(),
            config.org.member_role.clone(),
        );
        Ok(Self {
            hub,
            access,
            org: config.org.clone(),
            policy: backend.policy.clone(),
        })
    }

    /// A rotator over `account`, its member role assumed; an exempt account is refused.
    pub async fn rotator(&self, account: &AccountId) -> Result<Rotator, OrgError> {
        if self.org.scope.is_exempt(account) {
            return Err(OrgError::Exempt(account.clone()));
        }
        self.access.rotator(account, self.policy.clone()).await
    }

    /// Runs `work` on a rotator over each account in scope, at most `max_parallel_accounts` at
    /// once. An account the scope names but the organization does not list as active is
    /// reported failed.
    pub async fn each<T, E, F, Fut>(&self, work: F) -> Result<Vec<AccountReport<T>>, OrgError>
    where
        F: Fn(Rotator) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let org = Organization::connect(&self.hub.config, self.org.list_role.as_deref()).await?;
        let chosen = accounts_in_scope(&org, &self.org.scope).await?;
        let work = &work;
        let mut reports = for_each_account(
            &chosen.accounts,
            self.org.max_parallel,
            |account| async move {
                let rotator = self.rotator(&account).await.map_err(Failure::Reach)?;
                work(rotator).await.map_err(|e| Failure::Work(Box::new(e)))
            },
        )
        .await;
        reports.extend(chosen.missing.into_iter().map(|account| AccountReport {
            outcome: Err(OrgError::NotInOrganization(account.clone()).to_string()),
            account,
        }));
        reports.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(reports)
    }
}

/// One account's failure: it could not be reached, or its work failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The member role could not be assumed.
    #[error(transparent)]
    Reach(OrgError),
    /// The work on the account failed.
    #[error(transparent)]
    Work(Box<dyn std::error::Error + Send + Sync>),
}
