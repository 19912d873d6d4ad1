//! The fan-out's worker: what `keyrot-rotate` does when the hub's state machine (a Step
//! Functions Distributed Map, `cfn/template.yaml`) invokes it rather than the schedule.
//!
//! - `{"keyrot": "inventory"}`: lists the organization (through the list-only role in the
//!   management account, `KEYROT_ORG_LIST_ROLE`) and answers with the accounts in scope,
//!   `{"accounts": [{"account": "111122223333"}, ...], "missing": [...]}`; the state machine
//!   writes them to S3, where the map's `ItemReader` reads them, one item per account.
//! - `{"keyrot": "account", "account": "111122223333"}`: one run over that account, its member
//!   role assumed, starting no user after the run's deadline (as the scheduled run). It
//!   answers with the account's summary line ([`AccountSummary`]) and `more: true` when users
//!   were left for lack of time, which the map's item loops on: an account's run is resumable
//!   past the Lambda deadline, and never runs twice at once (one item per account). Its EMF line
//!   carries the dimension `Account`.
//!
//! An account that cannot be reached (its role missing or refusing) fails the invocation with
//! `keyrot.NotRetryable.AccessDenied`, or `keyrot.Retryable.Unreachable` for a failure that
//! may pass (throttling, a transient error): the map retries the latter, counts the former
//! against its `ToleratedFailurePercentage`, and writes both in its results. One account's
//! failure never stops the others.

use keyrot_aws::org::{MemberAccess, OrgError, OrgSettings, Organization, accounts_in_scope};
use keyrot_aws::{AwsClients, BackendSettings};
use keyrot_core::accounts::{AccountId, AccountSummary};
use keyrot_core::driver::{RunError, error_chain};
use keyrot_core::{IamError, Outcome, Policy, RunOptions, Timestamp};
use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{RunMetrics, account_run_line};
use crate::rotate::{iam_retryable, run_deadline};

/// What the state machine asks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "keyrot", rename_all = "lowercase", deny_unknown_fields)]
pub enum FanOutEvent {
    /// The accounts in scope.
    Inventory,
    /// One run over one account.
    Account {
        /// The account's id.
        account: String,
    },
}

impl FanOutEvent {
    /// The fan-out's request in `event`, if it is one (it has a `keyrot` field); otherwise
    /// the event is the schedule's.
    pub fn of(event: &Value) -> Option<Result<Self, FanOutError>> {
        event
            .get("keyrot")
            .map(|_| serde_json::from_value(event.clone()).map_err(FanOutError::BadEvent))
    }
}

/// Why the fan-out's request failed.
#[derive(Debug, thiserror::Error)]
pub enum FanOutError {
    /// The event is not one of the fan-out's.
    #[error("the event is not a fan-out request (keyrot: inventory, or account with its id)")]
    BadEvent(#[source] serde_json::Error),
    /// The event's account is not an account id.
    #[error("the event's account is not an account id")]
    BadAccount(#[source] keyrot_core::accounts::OrgIdError),
    /// The organization could not be listed, or the account reached.
    #[error(transparent)]
    Org(#[from] OrgError),
    /// The account's managed users could not be listed.
    #[error("could not list the managed users of account {account}")]
    ListUsers {
        /// The account.
        account: AccountId,
        /// Why.
        #[source]
        source: IamError,
    },
    /// The function was deployed without the fan-out's settings.
    #[error("this function is not set up for many accounts")]
    NotSetUp,
}

impl FanOutError {
    /// The `errorType` reported to Lambda, which the state machine's `Retry` matches.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadEvent(_) | Self::BadAccount(_) | Self::NotSetUp => {
                "keyrot.NotRetryable.BadEvent"
            }
            Self::Org(
                OrgError::Exempt(_) | OrgError::NotInOrganization(_) | OrgError::Malformed(_),
            ) => "keyrot.NotRetryable.OutOfScope",
            Self::ListUsers { source, .. } if iam_retryable(source) => {
                "keyrot.Retryable.Unreachable"
            }
            // A role that is missing or refuses (AWS answers AssumeRole with AccessDenied;
            // moto, which lets any role be assumed, answers the first call made with it).
            Self::ListUsers { .. } => "keyrot.NotRetryable.AccessDenied",
            Self::Org(OrgError::AssumeRole { .. } | OrgError::List { .. }) => {
                "keyrot.Retryable.Unreachable"
            }
        }
    }
}

impl From<FanOutError> for Diagnostic {
    fn from(error: FanOutError) -> Self {
        Self {
            error_type: error.error_type().to_owned(),
            error_message: error_chain(&error),
        }
    }
}

/// The answer to an inventory request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The accounts in scope: the map's items.
    pub accounts: Vec<Item>,
    /// Accounts the scope names that the organization does not list as active.
    pub missing: Vec<AccountId>,
}

/// One item of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The account.
    pub account: AccountId,
}

/// The answer to an account request: the account's line of the run summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountOutput {
    /// Outcome and counts.
    #[serde(flatten)]
    pub summary: AccountSummary,
    /// Users not started for lack of time.
    pub skipped: usize,
    /// Whether the account has users left: the state machine invokes again.
    pub more: bool,
}

/// What an account request produced: the answer, and the EMF line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountHandled {
    /// The answer.
    pub output: AccountOutput,
    /// The account's metrics.
    pub metrics: String,
}

/// The fan-out's part of the rotator function: the hub's clients, the organization's settings
/// and the member accounts' ports.
#[derive(Debug, Clone)]
pub struct FanOut {
    hub: AwsClients,
    org: OrgSettings,
    access: MemberAccess,
    policy: Policy,
}

impl FanOut {
    /// The fan-out from the hub's `clients`, keeping secrets and claims as `backend` says.
    pub fn new(
        hub: AwsClients,
        backend: BackendSettings,
        org: OrgSettings,
        policy: Policy,
    ) -> Self {
        let access = MemberAccess::new(hub.clone(), backend, org.member_role.clone());
        Self {
            hub,
            org,
            access,
            policy,
        }
    }

    /// The accounts in scope.
    pub async fn inventory(&self) -> Result<Inventory, FanOutError> {
        let org = Organization::connect(&self.hub.config, self.org.list_role.as_deref()).await?;
        let chosen = accounts_in_scope(&org, &self.org.scope).await?;
        Ok(Inventory {
            accounts: chosen
                .accounts
                .into_iter()
                .map(|account| Item { account })
                .collect(),
            missing: chosen.missing,
        })
    }

    /// One run over `account`, starting no user after [`run_deadline`] of `lambda_deadline`,
    /// its metrics in `namespace`.
    pub async fn account(
        &self,
        account: &str,
        lambda_deadline: Option<Timestamp>,
        namespace: &str,
    ) -> Result<AccountHandled, FanOutError> {
        let account = AccountId::new(account).map_err(FanOutError::BadAccount)?;
        if self.org.scope.is_exempt(&account) {
            return Err(OrgError::Exempt(account).into());
        }
        let rotator = self.access.rotator(&account, self.policy.clone()).await?;
        let now = rotator.ports().clock.now();
        let options = RunOptions {
            deadline: lambda_deadline.map(|d| run_deadline(now, d, self.policy.verify_timeout())),
            ..RunOptions::default()
        };
        let report = rotator
            .run(&options)
            .await
            .map_err(|RunError::ListUsers(source)| FanOutError::ListUsers {
                account: account.clone(),
                source,
            })?;
        let skipped = report
            .users
            .iter()
            // Not `Busy`: another run holds those users, and this one would only loop on them.
            .filter(|u| matches!(u.outcome, Outcome::Skipped))
            .count();
        let metrics = account_run_line(
            namespace,
            &RunMetrics::of(&report, now),
            now,
            account.as_str(),
        );
        Ok(AccountHandled {
            output: AccountOutput {
                summary: AccountSummary::of(account, &Ok(report)),
                skipped,
                more: skipped > 0,
            },
            metrics,
        })
    }
}
