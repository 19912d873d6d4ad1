//! Many accounts: which accounts of an AWS Organization keyrot manages ([`AccountScope`]),
//! and one rotation run per account with a cap on parallel accounts ([`for_each_account`]).
//!
//! Like the rest of keyrot-core this performs no IO: the organization's inventory
//! ([`OrgAccount`]s, listed by an adapter) comes in, the accounts in scope go out, and the
//! fan-out runs whatever per-account work it is given. An account's run is an ordinary
//! [`crate::Rotator`] run on that account's ports: the single-account engine is unchanged.
//!
//! ```
//! use keyrot_core::accounts::{AccountId, AccountScope, OrgAccount, OuId, Target};
//!
//! let root = OuId::new("r-ab12").unwrap();
//! let first = OuId::new("ou-ab12-11111111").unwrap();
//! let account = |id: &str, path: &[&OuId]| OrgAccount {
//!     id: AccountId::new(id).unwrap(),
//!     active: true,
//!     path: path.iter().map(|ou| (*ou).clone()).collect(),
//! };
//! let inventory = [
//!     account("111111111111", &[&root, &first]),
//!     account("222222222222", &[&root]),
//! ];
//! // A staged rollout: the first OU only.
//! let scope = AccountScope {
//!     include: vec![Target::Ou(first)],
//!     ..AccountScope::default()
//! };
//! let chosen = scope.select(&inventory);
//! assert_eq!(chosen.accounts, [AccountId::new("111111111111").unwrap()]);
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::str::FromStr;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::driver::RunReport;

mod notifier;
pub use notifier::AccountNotifier;

/// A twelve-digit AWS account id (read from JSON as its checked string).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

/// A string that is not an account id or an organization unit id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgIdError {
    /// Not twelve digits.
    #[error("{0:?} is not an account id: write its twelve digits")]
    Account(String),
    /// Not a root (`r-` and 4 to 32 of 0-9 a-z) or an OU (`ou-`, 4 to 32, `-`, 8 to 32).
    #[error(
        "{0:?} is not an organization root or unit id: write r-xxxx or ou-xxxx-xxxxxxxx \
         (lower-case letters and digits)"
    )]
    Ou(String),
    /// Neither.
    #[error(
        "{0:?} is neither an account id (twelve digits) nor an organization root or unit id \
         (r-xxxx, ou-xxxx-xxxxxxxx)"
    )]
    Target(String),
}

impl AccountId {
    /// `id`, if it is twelve ASCII digits.
    pub fn new(id: &str) -> Result<Self, OrgIdError> {
        if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(id.to_owned()))
        } else {
            Err(OrgIdError::Account(id.to_owned()))
        }
    }

    /// The twelve digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<AccountId> for String {
    fn from(id: AccountId) -> Self {
        id.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = OrgIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl FromStr for AccountId {
    type Err = OrgIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of an organization's root (`r-…`) or of one of its units (`ou-…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OuId(String);

impl OuId {
    /// `id`, if it has the form of a root id or an OU id (Organizations' patterns).
    pub fn new(id: &str) -> Result<Self, OrgIdError> {
        let part = |s: &str, min: usize| {
            (min..=32).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        };
        let valid = match (id.strip_prefix("r-"), id.strip_prefix("ou-")) {
            (Some(root), _) => part(root, 4),
            (_, Some(ou)) => ou
                .split_once('-')
                .is_some_and(|(root, unit)| part(root, 4) && part(unit, 8)),
            _ => false,
        };
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(OrgIdError::Ou(id.to_owned()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry of a scope list: one account, or an OU (or the root) with everything under it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// One account.
    Account(AccountId),
    /// A unit or the root, nested units included.
    Ou(OuId),
}

impl FromStr for Target {
    type Err = OrgIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(account) = AccountId::new(s) {
            Ok(Self::Account(account))
        } else if let Ok(ou) = OuId::new(s) {
            Ok(Self::Ou(ou))
        } else {
            Err(OrgIdError::Target(s.to_owned()))
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(a) => a.fmt(f),
            Self::Ou(ou) => ou.fmt(f),
        }
    }
}

/// An account as the organization lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgAccount {
    /// Its id.
    pub id: AccountId,
    /// Whether it is active (a suspended or closing account is never in scope).
    pub active: bool,
    /// The root and the units above it, outermost first (empty when listed without the tree).
    pub path: Vec<OuId>,
}

impl OrgAccount {
    fn matches(&self, target: &Target) -> bool {
        match target {
            Target::Account(id) => &self.id == id,
            Target::Ou(ou) => self.path.contains(ou),
        }
    }
}

/// Which accounts keyrot manages: `include` (empty: the whole organization) less `exclude`,
/// less the `exempt` accounts. A staged rollout names one OU in `include` first, then the
/// root (or nothing). Exclusion wins over inclusion; an exempt account is never touched, not
/// even when it is named alone (`keyrot rotate --account`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountScope {
    /// Accounts and units in scope; empty means every account of the organization.
    pub include: Vec<Target>,
    /// Accounts and units out of scope, whatever `include` says.
    pub exclude: Vec<Target>,
    /// Accounts never touched.
    pub exempt: BTreeSet<AccountId>,
}

/// The accounts a scope chose from an inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chosen {
    /// In scope, sorted, each once.
    pub accounts: Vec<AccountId>,
    /// Accounts `include` names that the organization does not list as active: reported as
    /// failed, since someone expects them to be rotated.
    pub missing: Vec<AccountId>,
}

impl AccountScope {
    /// Whether choosing needs the organization's tree (some list names a unit), or the flat
    /// account list is enough.
    pub fn needs_tree(&self) -> bool {
        self.include
            .iter()
            .chain(&self.exclude)
            .any(|t| matches!(t, Target::Ou(_)))
    }

    /// Whether `account` may never be touched.
    pub fn is_exempt(&self, account: &AccountId) -> bool {
        self.exempt.contains(account)
    }

    /// The active accounts of `inventory` in scope, and the accounts `include` names that
    /// `inventory` does not hold as active.
    pub fn select(&self, inventory: &[OrgAccount]) -> Chosen {
        let mut accounts: Vec<AccountId> = inventory
            .iter()
            .filter(|a| a.active && !self.is_exempt(&a.id))
            .filter(|a| self.include.is_empty() || self.include.iter().any(|t| a.matches(t)))
            .filter(|a| !self.exclude.iter().any(|t| a.matches(t)))
            .map(|a| a.id.clone())
            .collect();
        accounts.sort();
        accounts.dedup();
        let mut missing: Vec<AccountId> = self
            .include
            .iter()
            .filter_map(|t| match t {
                Target::Account(id) => Some(id),
                Target::Ou(_) => None,
            })
            .filter(|id| !inventory.iter().any(|a| a.active && &a.id == *id))
            .filter(|id| !self.is_exempt(id))
            .filter(|id| !self.exclude.contains(&Target::Account((*id).clone())))
            .cloned()
            .collect();
        missing.sort();
        missing.dedup();
        Chosen { accounts, missing }
    }
}

/// What happened to one account in a run over many.
#[derive(Debug)]
pub struct AccountReport<T> {
    /// The account.
    pub account: AccountId,
    /// Its run's result, or why it could not run (its role could not be assumed, its users
    /// not listed), as the error's chain of messages.
    pub outcome: Result<T, String>,
}

/// Runs `work` once for each account of `accounts` (a repeated account runs once), at most
/// `max_parallel` at a time (at least one), and returns every account's result sorted by
/// account. One account's failure never stops the others: each result is its own.
pub async fn for_each_account<T, E, F, Fut>(
    accounts: &[AccountId],
    max_parallel: usize,
    work: F,
) -> Vec<AccountReport<T>>
where
    F: Fn(AccountId) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::error::Error,
{
    let unique: BTreeSet<&AccountId> = accounts.iter().collect();
    let mut reports: Vec<AccountReport<T>> = futures::stream::iter(unique)
        .map(|account| {
            let run = work(account.clone());
            async move {
                AccountReport {
                    account: account.clone(),
                    outcome: run.await.map_err(|e| crate::driver::error_chain(&e)),
                }
            }
        })
        .buffer_unordered(max_parallel.max(1))
        .collect()
        .await;
    reports.sort_by(|a, b| a.account.cmp(&b.account));
    reports
}

/// One account's line of a run summary: its outcome and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountSummary {
    /// The account.
    pub account: AccountId,
    /// `ok` (every user reconciled), `failed` (some users failed or are blocked) or
    /// `unreachable` (the account's run could not start); in the deployed fan-out's summary
    /// also `not_run` (the map ended before the account's turn) and `missing` (named in
    /// scope, not an active account of the organization).
    pub outcome: &'static str,
    /// Managed users run.
    pub users: usize,
    /// Users given a new key.
    pub rotated: usize,
    /// Users that failed or are blocked.
    pub failed: usize,
    /// Why the account could not run (for `unreachable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AccountSummary {
    /// The summary of `account`'s `run`.
    pub fn of(account: AccountId, run: &Result<RunReport, String>) -> Self {
        match run {
            Ok(report) => Self {
                account,
                outcome: if report.failures() == 0 {
                    "ok"
                } else {
                    "failed"
                },
                users: report.users.len(),
                rotated: report.rotations(),
                failed: report.failures(),
                error: None,
            },
            Err(error) => Self {
                account,
                outcome: "unreachable",
                users: 0,
                rotated: 0,
                failed: 0,
                error: Some(error.clone()),
            },
        }
    }

    /// Whether the account's run failed, wholly or for some user.
    pub fn is_failure(&self) -> bool {
        self.outcome != "ok"
    }
}

/// A run over many accounts, summed up: what the fan-out writes to S3 and `keyrot rotate
/// --org` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgSummary {
    /// One line per account, sorted by account.
    pub accounts: Vec<AccountSummary>,
    /// Accounts run.
    pub total: usize,
    /// Accounts that failed (some user, or the whole account).
    pub failed: usize,
    /// Users given a new key, over every account.
    pub rotated: usize,
}

impl OrgSummary {
    /// The summary of `reports` (from [`for_each_account`]).
    pub fn of(reports: &[AccountReport<RunReport>]) -> Self {
        Self::from_lines(
            reports
                .iter()
                .map(|r| AccountSummary::of(r.account.clone(), &r.outcome))
                .collect(),
        )
    }

    /// The summary of these accounts' lines.
    pub fn from_lines(mut accounts: Vec<AccountSummary>) -> Self {
        accounts.sort_by(|a, b| a.account.cmp(&b.account));
        Self {
            total: accounts.len(),
            failed: accounts.iter().filter(|a| a.is_failure()).count(),
            rotated: accounts.iter().map(|a| a.rotated).sum(),
            accounts,
        }
    }
}

impl fmt::Display for OrgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ACCOUNT       OUTCOME      USERS  ROTATED  FAILED")?;
        for a in &self.accounts {
            write!(
                f,
                "{:12}  {:11}  {:5}  {:7}  {:6}",
                a.account.as_str(),
                a.outcome,
                a.users,
                a.rotated,
                a.failed
            )?;
            if let Some(error) = &a.error {
                write!(f, "  {error}")?;
            }
            writeln!(f)?;
        }
        write!(
            f,
            "{} accounts, {} failed, {} users rotated",
            self.total, self.failed, self.rotated
        )
    }
}

#[cfg(test)]
mod tests;
