//! The deployed rotator's report: after a run, the state of every managed user with its
//! compliance ([`Snapshot`]: what `keyrot report --format json` shows), written to the stack's
//! reports bucket, where auditors read it and the deployed API's admin routes show it.
//!
//! - **Where.** `reports/latest.json`, replaced each time, and `reports/YYYY-MM-DD.json`, the
//!   day's last, kept as evidence (the bucket's lifecycle expires them). The rotator may only
//!   put and read objects under `reports/`; the API may only read `reports/latest.json`.
//! - **When.** After a run that acted on a user or met a failure, and after any run when the
//!   latest report is a day old or missing. A report reads every managed user (a dry run of
//!   each, and when each key was last used: three to four calls a user), so a quiet run costs
//!   one `HeadObject`, not a second pass over the account.
//! - **What it never holds:** secret material. It is built from [`UserState`](keyrot_core::report::UserState)s, which carry
//!   key ids, dates and stages only.

use std::time::Duration;

use async_trait::async_trait;
use keyrot_api::{Status, StatusSource};
use keyrot_aws::{ObjectError, Objects};
use keyrot_core::driver::Unobserved;
use keyrot_core::report::{GatherOptions, Snapshot, gather};
use keyrot_core::{BoxError, IamError, Rotator, RunReport, Timestamp};

/// The latest report's key.
pub const LATEST: &str = "reports/latest.json";

/// How old the latest report may grow before a quiet run writes a new one.
pub const REPORT_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The rule's N: "no active key older than 90 days", as Security Hub's IAM.3.
pub const MAX_AGE_DAYS: u64 = 90;

/// Why the report was not written. The run's outcome stands either way: a report that fails
/// is logged, and the next run writes it.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the users' states failed.
    #[error("could not read the users' states")]
    Gather(#[source] IamError),
    /// The bucket refused or failed.
    #[error("could not reach the reports bucket")]
    Bucket(#[source] ObjectError),
    /// The report could not be serialised.
    #[error("could not serialise the report")]
    Json(#[source] serde_json::Error),
}

/// The reports bucket.
#[derive(Debug, Clone)]
pub struct Reports {
    objects: Objects,
}

impl Reports {
    /// Reports in `objects`' bucket.
    pub fn new(objects: Objects) -> Self {
        Self { objects }
    }

    /// Writes the report after `run` (see the [module docs](self) for when), at `now`.
    /// Answers the keys written, none when the latest report still stands.
    pub async fn after_run(
        &self,
        rotator: &Rotator,
        run: &RunReport,
        now: Timestamp,
    ) -> Result<Vec<String>, ReportError> {
        let acted = run
            .users
            .iter()
            .any(|u| !u.steps.is_empty() || u.outcome.is_failure());
        if !acted && self.fresh(now).await? {
            return Ok(Vec::new());
        }
        let options = GatherOptions {
            last_used: true,
            exempt: true,
        };
        let users = gather(rotator, &[], options, now, &Unobserved)
            .await
            .map_err(ReportError::Gather)?;
        let snapshot = Snapshot::new(users, MAX_AGE_DAYS, now);
        let body = serde_json::to_vec_pretty(&snapshot).map_err(ReportError::Json)?;
        let day = format!("reports/{}.json", now.strftime("%Y-%m-%d"));
        for key in [LATEST, day.as_str()] {
            self.objects
                .put(key, body.clone(), "application/json")
                .await
                .map_err(ReportError::Bucket)?;
        }
        Ok(vec![LATEST.to_owned(), day])
    }

    /// Whether the latest report is less than [`REPORT_EVERY`] old.
    async fn fresh(&self, now: Timestamp) -> Result<bool, ReportError> {
        let info = self
            .objects
            .info(LATEST)
            .await
            .map_err(ReportError::Bucket)?;
        // A report S3 dates after `now` (clocks apart) is as fresh as one written now.
        Ok(info
            .and_then(|i| i.modified)
            .map(|at| Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO))
            .is_some_and(|age| age < REPORT_EVERY))
    }
}

/// The deployed API's [`StatusSource`]: the latest report in the bucket. The API reads no IAM
/// and no other user's secret for it; the page says when the report was made.
#[derive(Debug, Clone)]
pub struct LatestReport {
    objects: Objects,
}

impl LatestReport {
    /// The latest report in `objects`' bucket.
    pub fn new(objects: Objects) -> Self {
        Self { objects }
    }
}

/// There is no report yet: the rotator has not run since the bucket was made.
#[derive(Debug, thiserror::Error)]
#[error("no report yet at {LATEST}: the rotator writes it after its next run")]
pub struct NoReport;

#[async_trait]
impl StatusSource for LatestReport {
    async fn status(&self, _now: Timestamp) -> Result<Status, BoxError> {
        let body = self.objects.get(LATEST).await?.ok_or(NoReport)?;
        let snapshot: Snapshot = serde_json::from_slice(&body)?;
        Ok(Status {
            generated_at: snapshot.generated_at,
            users: snapshot.states(),
        })
    }
}
