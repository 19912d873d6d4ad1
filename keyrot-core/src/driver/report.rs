//! What a run reports: each user's [`Outcome`], steps and keys.

use std::fmt;

use super::StepError;
use crate::model::{AccessKey, AccessKeyId, Timestamp, UserName};
use crate::plan::{Blocked, Step, Wait};

/// How one user's run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Settled: nothing to do until the wait ends.
    Waiting(Wait),
    /// A person must act (an alert was sent).
    Blocked(Blocked),
    /// Dry run: the step keyrot would take next.
    Planned(Step),
    /// A new key never authenticated and was deleted (an alert was sent); the next run
    /// tries again.
    Discarded(AccessKeyId),
    /// A step failed; the next run starts over from what it observes.
    Failed {
        /// The step that failed; `None` when observing the user failed.
        step: Option<Step>,
        /// Why.
        error: StepError,
    },
    /// Not started: the run ran out of time. The next run carries on.
    Skipped,
    /// Not acted on: another run holds the user's lease. That run carries on.
    Busy {
        /// When the other run's lease expires unless renewed.
        until: Timestamp,
    },
    /// Asked for by name but not managed (or exempt): nothing was touched.
    NotManaged,
}

impl Outcome {
    /// Whether the user's run failed (blocked counts: a person must act).
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Failed { .. } | Self::Blocked(_) | Self::NotManaged | Self::Discarded(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Waiting(w) => write!(f, "{w}"),
            Self::Blocked(b) => write!(f, "blocked: {b}"),
            Self::Planned(s) => write!(f, "next: {s}"),
            Self::Discarded(key) => write!(f, "discarded {key}: it never authenticated"),
            Self::Failed {
                step: Some(step),
                error,
            } => write!(f, "failed to {step}: {}", error_chain(error)),
            Self::Failed { step: None, error } => {
                write!(f, "failed to observe: {}", error_chain(error))
            }
            Self::Skipped => f.write_str("skipped: out of time, next run carries on"),
            Self::Busy { until } => {
                write!(f, "skipped: another run holds the user until {until}")
            }
            Self::NotManaged => f.write_str("not managed by keyrot: untouched"),
        }
    }
}

/// An error and its sources, joined by ": ". Secrets never reach error messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// What happened to one user in a run.
#[derive(Debug)]
pub struct UserReport {
    /// Whose keys.
    pub user: UserName,
    /// The steps performed, in order.
    pub steps: Vec<Step>,
    /// How it ended.
    pub outcome: Outcome,
    /// The user's keys as IAM listed them, updated by the steps performed (empty when the user
    /// was not observed): their ages feed the key-age metric.
    pub keys: Vec<AccessKey>,
}

impl UserReport {
    /// Whether a new key was published in this run.
    pub fn rotated(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Step::Publish(_)))
    }

    /// Whether the user's run failed on throttling (that the adapters' retries could not
    /// absorb).
    pub fn throttled(&self) -> bool {
        matches!(&self.outcome, Outcome::Failed { error, .. } if error.is_throttled())
    }
}

/// What happened in a run, user by user (sorted by user name).
#[derive(Debug)]
pub struct RunReport {
    /// When the run started.
    pub started: Timestamp,
    /// One report per user.
    pub users: Vec<UserReport>,
}

impl RunReport {
    /// How many users failed or are blocked.
    pub fn failures(&self) -> usize {
        self.users.iter().filter(|u| u.outcome.is_failure()).count()
    }

    /// How many users got a new key.
    pub fn rotations(&self) -> usize {
        self.users.iter().filter(|u| u.rotated()).count()
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<String> = self
            .users
            .iter()
            .map(|u| {
                if u.steps.is_empty() {
                    "-".to_owned()
                } else {
                    let names: Vec<&str> = u.steps.iter().map(Step::name).collect();
                    names.join(",")
                }
            })
            .collect();
        let width = self
            .users
            .iter()
            .map(|u| u.user.as_str().len())
            .max()
            .unwrap_or(4)
            .max(4);
        let steps_width = steps.iter().map(String::len).max().unwrap_or(5).max(5);
        writeln!(f, "{:width$}  {:steps_width$}  OUTCOME", "USER", "STEPS")?;
        for (user, steps) in self.users.iter().zip(&steps) {
            writeln!(
                f,
                "{:width$}  {steps:steps_width$}  {}",
                user.user.as_str(),
                user.outcome
            )?;
        }
        write!(
            f,
            "{} users, {} rotated, {} failed or blocked",
            self.users.len(),
            self.rotations(),
            self.failures()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Wait;

    #[test]
    fn the_report_table_keeps_its_columns_whatever_the_step_lists() {
        let at: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap();
        let user = |name: &str, steps: Vec<Step>| UserReport {
            user: UserName::new(name).unwrap(),
            steps,
            outcome: Outcome::Waiting(Wait::AwaitingRotation { due: at }),
            keys: Vec::new(),
        };
        let many = vec![
            Step::Adopt(key.clone()),
            Step::CreateAndStage,
            Step::Verify(key.clone()),
            Step::Publish(key.clone()),
            Step::RecordSuperseded(key),
        ];
        let report = RunReport {
            started: at,
            users: vec![user("a-very-long-user-name", many), user("b", Vec::new())],
        };
        let text = report.to_string();
        let columns: Vec<usize> = text
            .lines()
            .filter(|l| !l.contains(" users, "))
            .map(|l| {
                l.find("OUTCOME")
                    .or_else(|| l.find("idle until"))
                    .unwrap_or_else(|| panic!("{l}"))
            })
            .collect();
        assert_eq!(columns.len(), 3, "{text}");
        assert!(columns.iter().all(|&c| c == columns[0]), "{text}");
    }
}
