//! The run summary over all accounts: what the state machine's last state asks the worker for
//! (`{"keyrot": "summary", ...}`, see [`crate::fanout`]) and writes to S3 as one JSON document
//! per execution, `summaries/<execution>.json`.
//!
//! It is made from what the run left in the accounts bucket, never from memory: the inventory
//! the map read (`inventory/<execution>.json`), the accounts the inventory found missing (in
//! the request), and the map's results as its `ResultWriter` wrote them (a `manifest.json`
//! naming result files, each a JSON array of the child executions' records: `Input`, `Status`,
//! `Output` or `Error` and `Cause`). Every account of the inventory is named, with the
//! outcome its record says, or `not_run` when the map left no record of it (the map failed
//! before its turn); every missing account is named `missing`.

use std::collections::BTreeMap;

use keyrot_core::accounts::{AccountId, AccountSummary, OrgSummary};
use serde::{Deserialize, Serialize};

/// Where a summary is written: `summaries/<execution>.json`.
pub fn summary_key(execution: &str) -> String {
    format!("summaries/{execution}.json")
}

/// Where the state machine writes the inventory the map reads: `inventory/<execution>.json`.
pub fn inventory_key(execution: &str) -> String {
    format!("inventory/{execution}.json")
}

/// Whether `name` can be an execution's name in a key: Step Functions' names are 1 to 80 of
/// letters, digits, `-` and `_` (keyrot asks no more, so no name walks out of its prefix).
pub fn is_execution_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `ResultWriter`'s manifest: the result files, by the child executions' status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Manifest {
    /// The files.
    #[serde(default)]
    pub result_files: ResultFiles,
}

/// A manifest's result files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub struct ResultFiles {
    /// The succeeded executions' files.
    #[serde(default)]
    pub succeeded: Vec<ResultFile>,
    /// The failed (and timed out or aborted) executions' files.
    #[serde(default)]
    pub failed: Vec<ResultFile>,
    /// The files of executions that had not ended.
    #[serde(default)]
    pub pending: Vec<ResultFile>,
}

impl ResultFiles {
    /// Every file, succeeded first.
    pub fn all(&self) -> impl Iterator<Item = &ResultFile> {
        self.succeeded
            .iter()
            .chain(&self.failed)
            .chain(&self.pending)
    }
}

/// One result file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultFile {
    /// Its key in the bucket.
    pub key: String,
}

/// One child execution's record in a result file (the fields keyrot reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    /// The item, as JSON text: `{"account": "..."}`.
    #[serde(default)]
    pub input: Option<String>,
    /// `SUCCEEDED`, `FAILED`, `TIMED_OUT`, `ABORTED` or `PENDING_REDRIVE`.
    #[serde(default)]
    pub status: String,
    /// The last worker answer, as JSON text (for a succeeded execution).
    #[serde(default)]
    pub output: Option<String>,
    /// The error name (for a failed execution): `keyrot.NotRetryable.AccessDenied`, ...
    #[serde(default)]
    pub error: Option<String>,
    /// The error's cause: the worker's `errorMessage` in Lambda's error JSON, or text.
    #[serde(default)]
    pub cause: Option<String>,
}

/// The summary of one execution over all accounts: what `summaries/<execution>.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The execution's name.
    pub execution: String,
    /// Every account with its outcome and counts, and the totals.
    #[serde(flatten)]
    pub summary: OrgSummary,
    /// Why the map itself failed (more accounts failed than tolerated), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map_error: Option<String>,
}

/// What a worker's account answer says (see [`crate::fanout::AccountOutput`]).
#[derive(Debug, Deserialize)]
struct Answer {
    account: AccountId,
    outcome: String,
    users: usize,
    rotated: usize,
    failed: usize,
}

#[derive(Debug, Deserialize)]
struct Item {
    account: AccountId,
}

/// The account a record is about, from its input.
fn account_of(record: &Record) -> Option<AccountId> {
    let input = record.input.as_deref()?;
    serde_json::from_str::<Item>(input).ok().map(|i| i.account)
}

/// The account line a record says.
fn line_of(account: AccountId, record: &Record) -> AccountSummary {
    let answer = (record.status == "SUCCEEDED")
        .then(|| serde_json::from_str::<Answer>(record.output.as_deref()?).ok())
        .flatten();
    match answer {
        Some(a) if a.account == account => AccountSummary {
            account,
            outcome: if a.outcome == "ok" { "ok" } else { "failed" },
            users: a.users,
            rotated: a.rotated,
            failed: a.failed,
            error: None,
        },
        _ => AccountSummary {
            account,
            outcome: "unreachable",
            users: 0,
            rotated: 0,
            failed: 0,
            error: Some(error_of(record)),
        },
    }
}

/// A failed record's error: its name and the worker's message (Lambda's error JSON's
/// `errorMessage`, or the cause as it is).
fn error_of(record: &Record) -> String {
    let message = record.cause.as_deref().map(|cause| {
        serde_json::from_str::<serde_json::Value>(cause)
            .ok()
            .and_then(|v| v["errorMessage"].as_str().map(str::to_owned))
            .unwrap_or_else(|| cause.to_owned())
    });
    match (record.error.as_deref(), message) {
        (Some(error), Some(message)) => format!("{error}: {message}"),
        (Some(error), None) => error.to_owned(),
        (None, Some(message)) => message,
        (None, None) => format!("the account's run ended {}", record.status),
    }
}

/// The summary of `execution`: one line per account of `inventory` (from its record in
/// `records`, or `not_run`), per account of `missing` (`missing`), and per account a record
/// names that the inventory does not.
pub fn summarize(
    execution: &str,
    inventory: &[AccountId],
    missing: &[AccountId],
    records: &[Record],
    map_error: Option<String>,
) -> RunSummary {
    let mut lines: BTreeMap<AccountId, AccountSummary> = BTreeMap::new();
    for account in inventory {
        lines.insert(
            account.clone(),
            AccountSummary {
                account: account.clone(),
                outcome: "not_run",
                users: 0,
                rotated: 0,
                failed: 0,
                error: Some("the map left no result for this account".to_owned()),
            },
        );
    }
    for record in records {
        if let Some(account) = account_of(record) {
            lines.insert(account.clone(), line_of(account, record));
        }
    }
    for account in missing {
        lines.insert(
            account.clone(),
            AccountSummary {
                account: account.clone(),
                outcome: "missing",
                users: 0,
                rotated: 0,
                failed: 0,
                error: Some(format!(
                    "account {account} is not an active account of the organization"
                )),
            },
        );
    }
    RunSummary {
        execution: execution.to_owned(),
        summary: OrgSummary::from_lines(lines.into_values().collect()),
        map_error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: char) -> AccountId {
        AccountId::new(&n.to_string().repeat(12)).unwrap()
    }

    fn succeeded(n: char, outcome: &str, rotated: usize) -> Record {
        let account = id(n);
        Record {
            input: Some(format!(r#"{{"account":"{account}"}}"#)),
            status: "SUCCEEDED".into(),
            output: Some(format!(
                r#"{{"account":"{account}","outcome":"{outcome}","users":3,"rotated":{rotated},"failed":{},"skipped":0,"more":false}}"#,
                usize::from(outcome != "ok")
            )),
            ..Record::default()
        }
    }

    #[test]
    fn every_account_is_named_with_its_outcome() {
        let denied = Record {
            input: Some(format!(r#"{{"account":"{}"}}"#, id('3'))),
            status: "FAILED".into(),
            error: Some("keyrot.NotRetryable.AccessDenied".into()),
            cause: Some(
                r#"{"errorType":"keyrot.NotRetryable.AccessDenied","errorMessage":"could not list the managed users of account 333333333333: denied"}"#
                    .into(),
            ),
            ..Record::default()
        };
        let timed_out = Record {
            input: Some(format!(r#"{{"account":"{}"}}"#, id('5'))),
            status: "TIMED_OUT".into(),
            error: Some("States.Timeout".into()),
            ..Record::default()
        };
        let records = [
            succeeded('1', "ok", 2),
            succeeded('2', "failed", 1),
            denied,
            timed_out,
        ];
        let inventory: Vec<AccountId> = "12345".chars().map(id).collect();
        let summary = summarize("run-1", &inventory, &[id('9')], &records, None);
        let lines: Vec<(&str, &str, Option<&str>)> = summary
            .summary
            .accounts
            .iter()
            .map(|a| (&a.account.as_str()[..1], a.outcome, a.error.as_deref()))
            .collect();
        assert_eq!(
            lines,
            [
                ("1", "ok", None),
                ("2", "failed", None),
                (
                    "3",
                    "unreachable",
                    Some(
                        "keyrot.NotRetryable.AccessDenied: could not list the managed users of \
                         account 333333333333: denied"
                    )
                ),
                (
                    "4",
                    "not_run",
                    Some("the map left no result for this account")
                ),
                ("5", "unreachable", Some("States.Timeout")),
                (
                    "9",
                    "missing",
                    Some("account 999999999999 is not an active account of the organization")
                ),
            ]
        );
        let s = &summary.summary;
        assert_eq!((s.total, s.failed, s.rotated), (6, 5, 3));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["execution"], "run-1");
        assert_eq!(json["accounts"][0]["users"], 3);
        assert!(json.get("map_error").is_none(), "{json}");
    }

    #[test]
    fn the_manifest_and_records_read_as_step_functions_writes_them() {
        let manifest: Manifest = serde_json::from_str(
            r#"{"DestinationBucket":"b","MapRunArn":"arn:aws:states:us-east-1:1:mapRun:m/l:u",
               "ResultFiles":{"FAILED":[{"Key":"runs/u/FAILED_0.json","Size":10}],
               "PENDING":[],"SUCCEEDED":[{"Key":"runs/u/SUCCEEDED_0.json","Size":12}]}}"#,
        )
        .unwrap();
        let keys: Vec<&str> = manifest
            .result_files
            .all()
            .map(|f| f.key.as_str())
            .collect();
        assert_eq!(keys, ["runs/u/SUCCEEDED_0.json", "runs/u/FAILED_0.json"]);
        let records: Vec<Record> = serde_json::from_str(
            r#"[{"ExecutionArn":"arn","Input":"{\"account\":\"111111111111\"}",
                 "InputDetails":{"Included":true},"Name":"n","Output":"{}",
                 "OutputDetails":{"Included":true},"RedriveCount":0,
                 "Status":"SUCCEEDED","StartDate":"2025-06-01T12:00:00Z"}]"#,
        )
        .unwrap();
        assert_eq!(account_of(&records[0]), Some(id('1')));
        // An output that is not the worker's answer is not taken for one.
        assert_eq!(line_of(id('1'), &records[0]).outcome, "unreachable");
    }

    #[test]
    fn only_plain_execution_names_make_keys() {
        assert!(is_execution_name("a1b2-c3_d4"));
        for bad in ["", "../x", "a/b", "a.b", &"x".repeat(81)] {
            assert!(!is_execution_name(bad), "{bad}");
        }
        assert_eq!(summary_key("run-1"), "summaries/run-1.json");
    }
}
