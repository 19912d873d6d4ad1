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
//! - `{"keyrot": "summary", "bucket": ..., "execution": ..., "run": {...}}`: the run summary
//!   over all accounts ([`crate::summary`]), from the inventory and the map's results in the
//!   accounts bucket, written there as `summaries/<execution>.json`; it answers with that key
//!   and the totals. `run` is the execution's state when the map ended: the inventory's
//!   `missing`, the map's output (`results`, its `ResultWriterDetails`) or, when the map
//!   failed, `failure`.
//!
//! An account that cannot be reached (its role missing or refusing) fails the invocation with
//! `keyrot.NotRetryable.AccessDenied`, or `keyrot.Retryable.Unreachable` for a failure that
//! may pass (throttling, a transient error): the map retries the latter, counts the former
//! against its `ToleratedFailurePercentage`, and writes both in its results. One account's
//! failure never stops the others.

use keyrot_aws::org::{MemberAccess, OrgError, OrgSettings, Organization, accounts_in_scope};
use keyrot_aws::{AwsClients, BackendSettings, Objects};
use keyrot_core::accounts::{AccountId, AccountSummary};
use keyrot_core::driver::{RunError, error_chain};
use keyrot_core::{IamError, Outcome, Policy, RunOptions, Timestamp};
use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::{RunMetrics, account_run_line};
use crate::rotate::{iam_retryable, run_deadline};
use crate::summary::{
    Manifest, Record, RunSummary, inventory_key, is_execution_name, summarize, summary_key,
};

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
        /// The previous answer for this account when the map's item loops (users were left
        /// for lack of time): its rotations are counted in this answer's.
        #[serde(default)]
        before: Option<Before>,
    },
    /// The run summary over all accounts.
    Summary {
        /// The accounts bucket.
        bucket: String,
        /// The execution's name.
        execution: String,
        /// The execution's state when the map ended.
        #[serde(default)]
        run: RunState,
    },
}

/// What the summary reads of the execution's state (`$` when the map ended): the accounts
/// the inventory found missing, the map's output, or why it failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RunState {
    /// The inventory's answer (its `missing`).
    #[serde(default)]
    pub inventory: Option<InventoryState>,
    /// The map's output: where its results are (absent when it failed).
    #[serde(default)]
    pub results: Option<MapResults>,
    /// Why the map failed (its `Error` and `Cause`), if it did.
    #[serde(default)]
    pub failure: Option<Value>,
}

/// The inventory's answer as the state keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct InventoryState {
    /// The accounts the scope names that the organization does not list as active.
    #[serde(default)]
    pub missing: Vec<String>,
}

/// What a looping item carries from its previous answer (nothing on its first turn).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Before {
    /// Users rotated so far.
    #[serde(default)]
    pub rotated: usize,
}

/// A Distributed Map's output with a `ResultWriter`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MapResults {
    /// Where the manifest is.
    #[serde(default)]
    pub result_writer_details: Option<ResultsAt>,
}

/// Where a map's manifest is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultsAt {
    /// The bucket.
    pub bucket: String,
    /// The manifest's key.
    pub key: String,
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
    /// The summary's execution name cannot name an object, or its results are in another
    /// bucket.
    #[error("the summary request names {0:?}, which is not this run's")]
    BadSummary(String),
    /// An object in the accounts bucket could not be read or written.
    #[error(transparent)]
    Objects(#[from] keyrot_aws::ObjectError),
    /// An object in the accounts bucket is not what the state machine writes.
    #[error("s3://{bucket}/{key} is not what the state machine writes")]
    BadObject {
        /// The bucket.
        bucket: String,
        /// The object's key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

impl FanOutError {
    /// The `errorType` reported to Lambda, which the state machine's `Retry` matches.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::BadEvent(_) | Self::BadAccount(_) | Self::NotSetUp | Self::BadSummary(_) => {
                "keyrot.NotRetryable.BadEvent"
            }
            Self::BadObject { .. } => "keyrot.NotRetryable.BadObject",
            Self::Objects(keyrot_aws::ObjectError::AccessDenied { .. }) => {
                "keyrot.NotRetryable.AccessDenied"
            }
            Self::Objects(_) => "keyrot.Retryable.Storage",
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        before: Option<&Before>,
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
        let mut summary = AccountSummary::of(account, &Ok(report));
        // Users and failures are this run's (it saw every user again); rotations add up.
        summary.rotated += before.map_or(0, |b| b.rotated);
        Ok(AccountHandled {
            output: AccountOutput {
                summary,
                skipped,
                more: skipped > 0,
            },
            metrics,
        })
    }

    /// The run summary of `execution` over all accounts, from the accounts `bucket` (see
    /// [`crate::summary`]), written there; the key it was written to, with the summary.
    pub async fn summary(
        &self,
        bucket: &str,
        execution: &str,
        run: &RunState,
    ) -> Result<(String, RunSummary), FanOutError> {
        if !is_execution_name(execution) {
            return Err(FanOutError::BadSummary(execution.to_owned()));
        }
        let objects = Objects::new(self.hub.s3.clone(), bucket);
        let inventory: Vec<Item> = read(&objects, inventory_key(execution))
            .await?
            .unwrap_or_default();
        let mut records: Vec<Record> = Vec::new();
        if let Some(at) = run
            .results
            .as_ref()
            .and_then(|r| r.result_writer_details.as_ref())
        {
            if at.bucket != bucket {
                return Err(FanOutError::BadSummary(at.bucket.clone()));
            }
            let manifest: Manifest = read(&objects, at.key.clone()).await?.unwrap_or_default();
            for file in manifest.result_files.all() {
                let file: Vec<Record> = read(&objects, file.key.clone()).await?.unwrap_or_default();
                records.extend(file);
            }
        }
        let missing: Vec<AccountId> = run
            .inventory
            .iter()
            .flat_map(|i| &i.missing)
            .map(|a| AccountId::new(a).map_err(FanOutError::BadAccount))
            .collect::<Result<_, _>>()?;
        let accounts: Vec<AccountId> = inventory.into_iter().map(|i| i.account).collect();
        let map_error =
            run.failure
                .as_ref()
                .map(|f| match (f["Error"].as_str(), f["Cause"].as_str()) {
                    (Some(error), Some(cause)) => format!("{error}: {cause}"),
                    (Some(error), None) => error.to_owned(),
                    _ => f.to_string(),
                });
        let summary = summarize(execution, &accounts, &missing, &records, map_error);
        let key = summary_key(execution);
        let body =
            serde_json::to_vec_pretty(&summary).map_err(|source| FanOutError::BadObject {
                bucket: bucket.to_owned(),
                key: key.clone(),
                source,
            })?;
        objects.put(&key, body, "application/json").await?;
        Ok((key, summary))
    }
}

/// The JSON object at `key`, if there is one.
async fn read<T: serde::de::DeserializeOwned>(
    objects: &Objects,
    key: String,
) -> Result<Option<T>, FanOutError> {
    let Some(body) = objects.get(&key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|source| FanOutError::BadObject {
            bucket: objects.bucket().to_owned(),
            key,
            source,
        })
}

/// The answer to a summary request: where the summary is, and its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryOutput {
    /// The summary's key in the accounts bucket.
    pub key: String,
    /// Accounts named.
    pub total: usize,
    /// Accounts that did not end `ok`.
    pub failed: usize,
    /// Users given a new key.
    pub rotated: usize,
}
