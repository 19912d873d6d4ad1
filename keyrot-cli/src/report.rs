//! `keyrot report`: evidence for auditors. Per selected user (managed or exempt), each key's
//! id, status, stage, creation, age and last use, the user's last rotation and next action,
//! and whether it passes "no active key older than N days" (Security Hub IAM.3) and since when
//! ([`keyrot_core::report::compliance`] says how that date is derived). As CSV, JSON or a
//! Markdown table. Over member accounts (`--account`, `--org`, [`render_accounts`]) every row
//! begins with its account.

use std::fmt::Write as _;
use std::time::Duration;

use keyrot_core::Timestamp;
use keyrot_core::accounts::AccountId;
use keyrot_core::report::{Compliance, KeyState, LastUse, UserState, compliance};
use serde::Serialize;

/// One day.
const DAY: Duration = Duration::from_secs(86_400);

/// The report's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row, one row per key (per user without keys).
    Csv,
    /// One JSON array of users with their keys and their compliance.
    Json,
    /// A Markdown table with the CSV's columns.
    Markdown,
}

/// The columns of the CSV and Markdown reports, in order.
pub const COLUMNS: [&str; 14] = [
    "user",
    "managed",
    "key_id",
    "status",
    "stage",
    "created",
    "age_days",
    "last_used",
    "last_rotation",
    "next_action",
    "next_at",
    "max_age_days",
    "compliant",
    "compliant_since",
];

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A CSV row could not be written.
    #[error("could not write CSV")]
    Csv(#[from] csv::Error),
    /// The CSV writer's buffer could not be taken back.
    #[error("could not finish the CSV")]
    CsvBuffer(#[source] std::io::Error),
    /// JSON could not be written.
    #[error("could not write JSON")]
    Json(#[from] serde_json::Error),
}

/// The users of one account: the credentials' own (`account: None`) or a member account's.
#[derive(Debug, Clone, Copy)]
pub struct AccountUsers<'a> {
    /// The member account, if it is one.
    pub account: Option<&'a AccountId>,
    /// Its users' states.
    pub users: &'a [UserState],
}

/// A user in the JSON report.
#[derive(Debug, Serialize)]
struct JsonUser<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a AccountId>,
    #[serde(flatten)]
    state: &'a UserState,
    max_age_days: u64,
    compliance: Compliance,
}

/// The report of `users` at `now` under "no active key older than `max_age_days` days".
pub fn render(
    users: &[UserState],
    max_age_days: u64,
    now: Timestamp,
    format: Format,
) -> Result<String, ReportError> {
    render_accounts(
        &[AccountUsers {
            account: None,
            users,
        }],
        max_age_days,
        now,
        format,
    )
}

/// As [`render`], over the users of several accounts: when one is a member account, each row
/// begins with an `account` column (each JSON user with an `account` field).
pub fn render_accounts(
    accounts: &[AccountUsers<'_>],
    max_age_days: u64,
    now: Timestamp,
    format: Format,
) -> Result<String, ReportError> {
    let max_age = DAY * u32::try_from(max_age_days).unwrap_or(u32::MAX);
    let named = accounts.iter().any(|a| a.account.is_some());
    let columns: Vec<&str> = named
        .then_some("account")
        .into_iter()
        .chain(COLUMNS)
        .collect();
    let all_rows = || {
        accounts.iter().flat_map(move |a| {
            rows(a.users, max_age_days, max_age, now)
                .into_iter()
                .map(move |row| {
                    let account = a.account.map(ToString::to_string).unwrap_or_default();
                    named.then_some(account).into_iter().chain(row).collect()
                })
        })
    };
    match format {
        Format::Json => {
            let users: Vec<JsonUser<'_>> = accounts
                .iter()
                .flat_map(|a| {
                    a.users.iter().map(|state| JsonUser {
                        account: a.account,
                        state,
                        max_age_days,
                        compliance: compliance(state, max_age, now),
                    })
                })
                .collect();
            Ok(serde_json::to_string_pretty(&users)? + "\n")
        }
        Format::Csv => {
            let mut out = csv::Writer::from_writer(Vec::new());
            out.write_record(&columns)?;
            for row in all_rows() {
                let row: Vec<String> = row;
                out.write_record(&row)?;
            }
            let bytes = out
                .into_inner()
                .map_err(|e| ReportError::CsvBuffer(e.into_error()))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
        Format::Markdown => {
            let mut out = String::new();
            let _ = writeln!(out, "| {} |", columns.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(columns.len()));
            for row in all_rows() {
                let row: Vec<String> = row;
                let cells: Vec<String> = row.iter().map(|c| markdown_cell(c)).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            Ok(out)
        }
    }
}

/// The rows: one per key IAM lists, or one with empty key columns for a user without keys.
fn rows(
    users: &[UserState],
    max_age_days: u64,
    max_age: Duration,
    now: Timestamp,
) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for user in users {
        let rule = compliance(user, max_age, now);
        let keys: Vec<&KeyState> = user.keys.iter().filter(|k| k.created.is_some()).collect();
        let user_cells = |key: [String; 6]| {
            let [id, status, stage, created, age, last_used] = key;
            vec![
                user.user.to_string(),
                user.managed.to_string(),
                id,
                status,
                stage,
                created,
                age,
                last_used,
                time(user.last_rotation),
                user.next.clone(),
                time(user.at),
                max_age_days.to_string(),
                if rule.passes { "pass" } else { "fail" }.to_owned(),
                time(rule.since),
            ]
        };
        if keys.is_empty() {
            rows.push(user_cells(Default::default()));
        }
        for key in keys {
            let age = key
                .created
                .and_then(|c| Duration::try_from(now.duration_since(c)).ok())
                .map(|age| (age.as_secs() / DAY.as_secs()).to_string())
                .unwrap_or_default();
            rows.push(user_cells([
                key.id.to_string(),
                key.status.map(|s| s.to_string()).unwrap_or_default(),
                key.stage.as_str().to_owned(),
                time(key.created),
                age,
                last_used(key.last_used),
            ]));
        }
    }
    rows
}

fn time(at: Option<Timestamp>) -> String {
    at.map(|t| t.to_string()).unwrap_or_default()
}

fn last_used(answer: LastUse) -> String {
    match answer {
        LastUse::NotAsked => String::new(),
        LastUse::Never => "never".to_owned(),
        LastUse::At(at) => at.to_string(),
        LastUse::Unknown => "unknown".to_owned(),
    }
}

/// A cell that cannot break the table: `|` escaped, line breaks as spaces.
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use keyrot_core::report::{KeyState, Stage};
    use keyrot_core::{AccessKeyId, KeyStatus, UserName};

    use super::*;

    fn state() -> UserState {
        UserState {
            user: UserName::new("ci").unwrap(),
            managed: true,
            keys: vec![KeyState {
                id: AccessKeyId::new("AKIAOLD0000000000001").unwrap(),
                status: Some(KeyStatus::Active),
                created: Some("2025-01-01T00:00:00Z".parse().unwrap()),
                label: "current".to_owned(),
                stage: Stage::Current,
                last_used: LastUse::Never,
                adopted: None,
                superseded: None,
                deactivated: None,
            }],
            last_rotation: None,
            next: "wait | see, then act".to_owned(),
            at: None,
            attention: false,
        }
    }

    #[test]
    fn every_format_carries_the_rule_and_its_date() {
        let now = "2025-06-01T00:00:00Z".parse().unwrap();
        let users = [state()];
        let csv = render(&users, 90, now, Format::Csv).unwrap();
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "ci,true,AKIAOLD0000000000001,active,current,2025-01-01T00:00:00Z,151,never,,\
             \"wait | see, then act\",,90,fail,2025-04-01T00:00:00Z"
        );
        let markdown = render(&users, 90, now, Format::Markdown).unwrap();
        assert!(
            markdown.contains("| wait \\| see, then act |"),
            "{markdown}"
        );
        assert_eq!(markdown.lines().count(), 3, "{markdown}");
        let json: serde_json::Value =
            serde_json::from_str(&render(&users, 200, now, Format::Json).unwrap()).unwrap();
        assert_eq!(json[0]["user"], "ci");
        assert_eq!(json[0]["keys"][0]["stage"], "current");
        assert_eq!(json[0]["compliance"]["passes"], true, "{json}");
        assert_eq!(json[0]["max_age_days"], 200);
        assert!(json[0].get("account").is_none(), "{json}");
    }

    #[test]
    fn over_member_accounts_every_row_begins_with_its_account() {
        let now = "2025-06-01T00:00:00Z".parse().unwrap();
        let (one, two) = (
            AccountId::new("111111111111").unwrap(),
            AccountId::new("222222222222").unwrap(),
        );
        let users = [state()];
        let accounts = [
            AccountUsers {
                account: Some(&one),
                users: &users,
            },
            AccountUsers {
                account: Some(&two),
                users: &users,
            },
        ];
        let csv = render_accounts(&accounts, 90, now, Format::Csv).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("account,user,managed,"), "{csv}");
        assert!(
            lines[1].starts_with("111111111111,ci,true,AKIAOLD"),
            "{csv}"
        );
        assert!(
            lines[2].starts_with("222222222222,ci,true,AKIAOLD"),
            "{csv}"
        );
        assert_eq!(lines.len(), 3, "{csv}");
        let markdown = render_accounts(&accounts, 90, now, Format::Markdown).unwrap();
        assert!(markdown.starts_with("| account | user |"), "{markdown}");
        assert!(markdown.contains("| 222222222222 | ci |"), "{markdown}");
        assert!(markdown.lines().nth(1).unwrap().matches("---|").count() == 15);
        let json: serde_json::Value =
            serde_json::from_str(&render_accounts(&accounts, 90, now, Format::Json).unwrap())
                .unwrap();
        assert_eq!(json[0]["account"], "111111111111", "{json}");
        assert_eq!(json[1]["account"], "222222222222", "{json}");
        assert_eq!(json[1]["user"], "ci", "{json}");
    }
}
