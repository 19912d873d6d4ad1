//! CloudWatch Embedded Metric Format: one JSON object per line on stdout, which CloudWatch Logs
//! turns into metrics.
//!
//! The functions here are pure: they take the values and a timestamp and return the line;
//! [`emit`] prints it. cfn/template.yaml's alarms read the rotator's metrics in the namespace
//! `KEYROT_METRICS_NAMESPACE` with the dimension `Service=keyrot-rotate`:
//!
//! | metric               | unit    | what                                                      |
//! |----------------------|---------|-----------------------------------------------------------|
//! | `ManagedUsers`       | `Count` | users the run looked at                                   |
//! | `RotationsSucceeded` | `Count` | users that got a new key published                        |
//! | `RotationFailures`   | `Count` | users whose step failed or whose new key was discarded    |
//! | `BlockedUsers`       | `Count` | users keyrot stopped for, waiting for a person            |
//! | `SkippedUsers`       | `Count` | users not started before the deadline (the next run does) |
//! | `OldestKeyAgeDays`   | `None`  | age in whole days of the oldest active key of any user the run observed (blocked and failing users included); absent when it observed none |
//!
//! The API writes `ApiRequests` (`Count`, 1 per request) with the dimensions
//! `Service=keyrot-api, Outcome=<outcome>` (`token_issued`, `key_served`, `healthy` or an error
//! code such as `unauthorized`) and `Service=keyrot-api` alone, for the total; the HTTP status
//! rides along as the `StatusCode` property.

use keyrot_core::{KeyStatus, Outcome, RunReport, Timestamp};
use serde_json::{Map, Value, json};

/// The `Service` dimension of the rotator's metrics.
pub const ROTATE_SERVICE: &str = "keyrot-rotate";
/// The `Service` dimension of the API's metrics.
pub const API_SERVICE: &str = "keyrot-api";

const DAY_SECS: i64 = 24 * 3600;

/// A rotation run in numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunMetrics {
    /// Users the run looked at.
    pub users: usize,
    /// Users that got a new key published.
    pub rotated: usize,
    /// Users whose step failed (or whose new key never authenticated and was discarded).
    pub failures: usize,
    /// Users blocked until a person acts.
    pub blocked: usize,
    /// Users not started for lack of time.
    pub skipped: usize,
    /// The age of the oldest active key the run observed, in whole days.
    pub oldest_key_age_days: Option<i64>,
}

impl RunMetrics {
    /// The numbers of `report`, with key ages as of `now`.
    ///
    /// Every active key counts, whatever its user's state: a user that is blocked or keeps
    /// failing is exactly the one whose key grows old, and the key-age alarm is the one that
    /// says how old. An old key within its grace period is active too, so the alarm's threshold
    /// must allow for the rotation period plus the maximum grace.
    pub fn of(report: &RunReport, now: Timestamp) -> Self {
        let mut metrics = Self {
            users: report.users.len(),
            rotated: report.rotations(),
            ..Self::default()
        };
        for user in &report.users {
            match &user.outcome {
                Outcome::Failed { .. } | Outcome::Discarded(_) => metrics.failures += 1,
                Outcome::Blocked(_) => metrics.blocked += 1,
                Outcome::Skipped => metrics.skipped += 1,
                _ => {}
            }
            for key in user.keys.iter().filter(|k| k.status == KeyStatus::Active) {
                let age =
                    (now.as_second().saturating_sub(key.created.as_second()) / DAY_SECS).max(0);
                let oldest = metrics.oldest_key_age_days.get_or_insert(age);
                *oldest = (*oldest).max(age);
            }
        }
        metrics
    }
}

/// The EMF line of a rotation run.
pub fn run_line(namespace: &str, metrics: &RunMetrics, at: Timestamp) -> String {
    run_line_of(namespace, metrics, at, None)
}

/// The EMF line of one member account's run (the fan-out's worker): the run's metrics with the
/// dimension `Account` beside `Service`, and by `Service` alone for the totals.
pub fn account_run_line(
    namespace: &str,
    metrics: &RunMetrics,
    at: Timestamp,
    account: &str,
) -> String {
    run_line_of(namespace, metrics, at, Some(account))
}

fn run_line_of(
    namespace: &str,
    metrics: &RunMetrics,
    at: Timestamp,
    account: Option<&str>,
) -> String {
    let counts = [
        ("ManagedUsers", metrics.users),
        ("RotationsSucceeded", metrics.rotated),
        ("RotationFailures", metrics.failures),
        ("BlockedUsers", metrics.blocked),
        ("SkippedUsers", metrics.skipped),
    ];
    let mut definitions = Vec::new();
    let mut values = Map::new();
    values.insert("Service".into(), ROTATE_SERVICE.into());
    for (name, value) in counts {
        definitions.push(json!({"Name": name, "Unit": "Count"}));
        values.insert(name.into(), value.into());
    }
    if let Some(days) = metrics.oldest_key_age_days {
        definitions.push(json!({"Name": "OldestKeyAgeDays", "Unit": "None"}));
        values.insert("OldestKeyAgeDays".into(), days.into());
    }
    match account {
        Some(account) => {
            values.insert("Account".into(), account.into());
            let dimensions: &[&[&str]] = &[&["Service", "Account"], &["Service"]];
            line(namespace, dimensions, &definitions, values, at)
        }
        None => line(namespace, &[&["Service"]], &definitions, values, at),
    }
}

/// The EMF line of one API request: `outcome` is the API's outcome name, `status` the HTTP
/// status it answered with.
pub fn api_line(namespace: &str, outcome: &str, status: u16, at: Timestamp) -> String {
    let mut values = Map::new();
    values.insert("Service".into(), API_SERVICE.into());
    values.insert("Outcome".into(), outcome.into());
    values.insert("StatusCode".into(), status.into());
    values.insert("ApiRequests".into(), 1.into());
    line(
        namespace,
        &[&["Service", "Outcome"], &["Service"]],
        &[json!({"Name": "ApiRequests", "Unit": "Count"})],
        values,
        at,
    )
}

fn line(
    namespace: &str,
    dimensions: &[&[&str]],
    metrics: &[Value],
    mut values: Map<String, Value>,
    at: Timestamp,
) -> String {
    values.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.as_millisecond(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimensions,
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(values).to_string()
}

/// Prints an EMF line on stdout, where the Lambda runtime hands it to CloudWatch Logs.
#[allow(clippy::print_stdout)] // EMF is read from stdout; one whole line per metric set
pub fn emit(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A lost metric line must not fail the invocation; the log still has the run.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use expect_test::expect;
    use keyrot_core::{
        AccessKey, AccessKeyId, Blocked, IamError, StepError, UserName, UserReport, Wait,
    };

    use super::*;

    fn at() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    fn user(name: &str, outcome: Outcome) -> UserReport {
        UserReport {
            user: UserName::new(name).unwrap(),
            steps: Vec::new(),
            outcome,
            keys: Vec::new(),
        }
    }

    /// A key created `days` before `at()`.
    fn key(id: &str, days: u32, status: KeyStatus) -> AccessKey {
        AccessKey {
            id: AccessKeyId::new(id).unwrap(),
            status,
            created: at()
                .checked_sub(Duration::from_secs(24 * 3600) * days)
                .unwrap(),
        }
    }

    #[test]
    fn a_run_line_has_the_alarms_names_and_dimension() {
        let metrics = RunMetrics {
            users: 5,
            rotated: 2,
            failures: 1,
            blocked: 1,
            skipped: 0,
            oldest_key_age_days: Some(42),
        };
        let line = run_line("keyrot", &metrics, at());
        expect![[r#"{"BlockedUsers":1,"ManagedUsers":5,"OldestKeyAgeDays":42,"RotationFailures":1,"RotationsSucceeded":2,"Service":"keyrot-rotate","SkippedUsers":0,"_aws":{"CloudWatchMetrics":[{"Dimensions":[["Service"]],"Metrics":[{"Name":"ManagedUsers","Unit":"Count"},{"Name":"RotationsSucceeded","Unit":"Count"},{"Name":"RotationFailures","Unit":"Count"},{"Name":"BlockedUsers","Unit":"Count"},{"Name":"SkippedUsers","Unit":"Count"},{"Name":"OldestKeyAgeDays","Unit":"None"}],"Namespace":"keyrot"}],"Timestamp":1748779200000}}"#]].assert_eq(&line);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn without_a_known_age_there_is_no_age_metric() {
        let line = run_line("Team/keyrot", &RunMetrics::default(), at());
        let value: Value = serde_json::from_str(&line).unwrap();
        assert!(value.get("OldestKeyAgeDays").is_none());
        let names: Vec<&str> = value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"OldestKeyAgeDays"), "{names:?}");
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Team/keyrot"
        );
    }

    #[test]
    fn an_api_line_counts_one_request_by_outcome() {
        let line = api_line("keyrot", "unauthorized", 401, at());
        expect![[r#"{"ApiRequests":1,"Outcome":"unauthorized","Service":"keyrot-api","StatusCode":401,"_aws":{"CloudWatchMetrics":[{"Dimensions":[["Service","Outcome"],["Service"]],"Metrics":[{"Name":"ApiRequests","Unit":"Count"}],"Namespace":"keyrot"}],"Timestamp":1748779200000}}"#]].assert_eq(&line);
    }

    #[test]
    fn a_report_in_numbers() {
        let with_keys = |mut report: UserReport, keys: Vec<AccessKey>| {
            report.keys = keys;
            report
        };
        let waiting = || {
            Outcome::Waiting(Wait::AwaitingRotation {
                due: at()
                    .checked_add(Duration::from_secs(24 * 3600) * 80)
                    .unwrap(),
            })
        };
        let report = RunReport {
            started: at(),
            users: vec![
                with_keys(
                    user("a", waiting()),
                    vec![key("AKIAAAAAAAAAAAAAAAA1", 10, KeyStatus::Active)],
                ),
                // An inactive key waiting for deletion is not in service: its age does not count.
                with_keys(
                    user("b", waiting()),
                    vec![
                        key("AKIAAAAAAAAAAAAAAAA2", 5, KeyStatus::Active),
                        key("AKIAAAAAAAAAAAAAAAA3", 300, KeyStatus::Inactive),
                    ],
                ),
                // A blocked user's key grows old: exactly what the alarm is for.
                with_keys(
                    user("c", Outcome::Blocked(Blocked::TwoKeysInService)),
                    vec![
                        key("AKIAAAAAAAAAAAAAAAA4", 120, KeyStatus::Active),
                        key("AKIAAAAAAAAAAAAAAAA5", 95, KeyStatus::Active),
                    ],
                ),
                user(
                    "d",
                    Outcome::Failed {
                        step: None,
                        error: StepError::Iam(IamError::Throttled("slow down".into())),
                    },
                ),
                user("e", Outcome::Skipped),
                user("f", Outcome::Skipped),
            ],
        };
        assert_eq!(
            RunMetrics::of(&report, at()),
            RunMetrics {
                users: 6,
                rotated: 0,
                failures: 1,
                blocked: 1,
                skipped: 2,
                oldest_key_age_days: Some(120),
            }
        );
    }
}
