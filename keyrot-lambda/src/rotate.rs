//! The scheduled rotator: one reconcile pass over the managed users per EventBridge event.
//!
//! - **Time.** The event's `time` is the run's `now`: the report and the metrics are stamped
//!   with it and key ages are measured from it. The rotator itself reads its clock port
//!   ([`keyrot_aws::SystemClock`] in the function), which also measures the time left.
//! - **Deadline.** The run starts no user after [`run_deadline`]: the Lambda deadline less a
//!   margin that leaves a user started just before it the time to finish its verification.
//!   Users left over are reported `skipped`; the next run carries on with them.
//! - **Errors.** A failure of one user is in the report and the metrics, never a function
//!   error, so one bad user never fails the schedule. The function fails only when the run
//!   cannot start: the event is unreadable (not retryable), or listing the managed users
//!   failed, which is retryable when IAM throttled or failed transiently and not retryable when
//!   IAM denied access. [`RotateError::error_type`] says which, in the `errorType` Lambda
//!   records.

use std::time::Duration;

use keyrot_aws::{AwsClients, Objects};
use keyrot_core::delivery::DeliveryError;
use keyrot_core::driver::{RunError, error_chain};
use keyrot_core::{
    IamError, LeaseError, Outcome, Rotator, RunOptions, RunReport, Step, StepError, StoreError,
    Timestamp, VerifyError,
};
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;

use keyrot_core::duration::format_duration;

use crate::config::{ConfigError, RotateConfig};
use crate::metrics::{self, RunMetrics, run_line};
use crate::report::Reports;

/// Time kept back at the end of the invocation beyond the verify timeout, for the users in
/// flight to store their outcome and for the report and metrics to be written.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(30);

/// The part of an EventBridge scheduled event the rotator reads. Every field is optional, so a
/// manual invocation with `{}` runs too (it takes the clock's time).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ScheduledEvent {
    /// The event's id.
    #[serde(default)]
    pub id: Option<String>,
    /// `Scheduled Event` for the schedule.
    #[serde(default, rename = "detail-type")]
    pub detail_type: Option<String>,
    /// When the schedule fired, RFC 3339 (`2025-06-01T12:00:00Z`).
    #[serde(default)]
    pub time: Option<String>,
}

/// Why a run could not start. Failures of single users are not errors: they are in the report.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The event is not a JSON object with the fields of a scheduled event.
    #[error("the event is not an EventBridge scheduled event")]
    BadEvent(#[source] serde_json::Error),
    /// The event's `time` is not an RFC 3339 timestamp.
    #[error("the event's time {0:?} is not an RFC 3339 timestamp")]
    BadTime(String),
    /// Listing the managed users failed.
    #[error("could not list the managed users")]
    ListUsers(#[source] IamError),
}

impl RotateError {
    /// Whether running again later may succeed without a person acting: throttling and
    /// transient IAM failures are; a bad event and a denied permission are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadEvent(_) | Self::BadTime(_) => false,
            Self::ListUsers(e) => iam_retryable(e),
        }
    }

    /// The `errorType` reported to Lambda: `keyrot.Retryable.<kind>` or
    /// `keyrot.NotRetryable.<kind>`.
    pub fn error_type(&self) -> String {
        let kind = match self {
            Self::BadEvent(_) | Self::BadTime(_) => "BadEvent",
            Self::ListUsers(IamError::AccessDenied(_)) => "AccessDenied",
            Self::ListUsers(_) => "ListUsers",
        };
        let class = if self.is_retryable() {
            "Retryable"
        } else {
            "NotRetryable"
        };
        format!("keyrot.{class}.{kind}")
    }
}

/// Whether the same IAM call may succeed later without a person acting: throttling and
/// transient failures may; a denied permission, the two-key limit or a missing user do not.
pub fn iam_retryable(error: &IamError) -> bool {
    matches!(error, IamError::Throttled(_) | IamError::Other(_))
}

/// Whether a user's failed run may succeed on the next run without a person acting: the
/// classification this edge reports (`retryable` in the output). The core says what happened;
/// the Lambda decides what that means for the schedule.
pub fn step_retryable(error: &StepError) -> bool {
    let store = |e: &StoreError| matches!(e, StoreError::Throttled(_) | StoreError::Other(_));
    let lease = |e: &LeaseError| matches!(e, LeaseError::Throttled(_) | LeaseError::Other(_));
    match error {
        StepError::Iam(e) => iam_retryable(e),
        StepError::Store(e) => store(e),
        StepError::Lease(e) => lease(e),
        StepError::Verify(VerifyError::Other(_))
        | StepError::TooManySteps(_)
        | StepError::LeaseLost
        | StepError::Unfinished(_) => true,
        StepError::Verify(VerifyError::WrongIdentity { .. }) | StepError::MissingSecret(_) => false,
        // A bad tag needs a person; a failed read of the tags may pass.
        StepError::Destinations(e) => !matches!(e, DeliveryError::BadTag(_)),
    }
}

impl From<RotateError> for Diagnostic {
    fn from(error: RotateError) -> Self {
        Self {
            error_type: error.error_type(),
            error_message: error_chain(&error),
        }
    }
}

/// The run report the function returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutput {
    /// The run's `now`: the event's time, or the clock's when the event had none.
    pub now: String,
    /// When the rotator started, by its clock.
    pub started: String,
    /// No user was started after this time.
    pub deadline: Option<String>,
    /// How many users ended how.
    pub counts: Counts,
    /// One entry per user, by name.
    pub users: Vec<UserOutput>,
    /// What the operator should know about the run itself (for example a function timeout
    /// too short for the verify timeout).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The report's objects written after the run, if any (see [`crate::report`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<String>,
}

/// How many users ended how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Users in the run.
    pub users: usize,
    /// Users that got a new key published.
    pub rotated: usize,
    /// Users settled and waiting (whether or not they rotated first).
    pub waiting: usize,
    /// Users blocked until a person acts.
    pub blocked: usize,
    /// Users whose step failed, or whose new key was discarded.
    pub failed: usize,
    /// Users not started for lack of time.
    pub skipped: usize,
}

/// What happened to one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserOutput {
    /// The IAM user.
    pub user: String,
    /// `waiting`, `blocked`, `failed`, `discarded`, `skipped`, `planned` or `not_managed`.
    pub status: &'static str,
    /// The outcome in words.
    pub outcome: String,
    /// The steps performed, in order.
    pub steps: Vec<String>,
    /// For a failed user: whether the next run may succeed on its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
}

impl RunOutput {
    /// The report of a run, for the function's response.
    pub fn of(report: &RunReport, now: Timestamp, deadline: Option<Timestamp>) -> Self {
        let mut counts = Counts {
            users: report.users.len(),
            rotated: report.rotations(),
            ..Counts::default()
        };
        let users = report
            .users
            .iter()
            .map(|user| {
                let (status, retryable) = match &user.outcome {
                    Outcome::Waiting(_) => ("waiting", None),
                    Outcome::Blocked(_) => ("blocked", None),
                    Outcome::Planned(_) => ("planned", None),
                    Outcome::Discarded(_) => ("discarded", Some(true)),
                    Outcome::Failed { error, .. } => ("failed", Some(step_retryable(error))),
                    Outcome::Skipped | Outcome::Busy { .. } => ("skipped", None),
                    Outcome::NotManaged => ("not_managed", None),
                };
                match status {
                    "waiting" => counts.waiting += 1,
                    "blocked" => counts.blocked += 1,
                    "failed" | "discarded" => counts.failed += 1,
                    "skipped" => counts.skipped += 1,
                    _ => {}
                }
                UserOutput {
                    user: user.user.to_string(),
                    status,
                    outcome: user.outcome.to_string(),
                    steps: user.steps.iter().map(Step::to_string).collect(),
                    retryable,
                }
            })
            .collect();
        Self {
            now: now.to_string(),
            started: report.started.to_string(),
            deadline: deadline.map(|d| d.to_string()),
            counts,
            users,
            warnings: Vec::new(),
            reports: Vec::new(),
        }
    }
}

/// The time after which a run invoked at `now` with the Lambda deadline `lambda_deadline`
/// starts no user: the deadline less the verify timeout and [`DEADLINE_SLACK`], but less at
/// least a fifth and at most half of the time left.
pub fn run_deadline(
    now: Timestamp,
    lambda_deadline: Timestamp,
    verify_timeout: Duration,
) -> Timestamp {
    let left = Duration::try_from(lambda_deadline.duration_since(now)).unwrap_or(Duration::ZERO);
    let margin = (verify_timeout + DEADLINE_SLACK)
        .max(left / 5)
        .min(left / 2);
    lambda_deadline.saturating_sub(margin).unwrap_or(now)
}

/// What one invocation produced: the response and the EMF line to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The function's response.
    pub output: RunOutput,
    /// The run's metrics (see [`crate::metrics`]).
    pub metrics: String,
}

/// The rotator function: a [`Rotator`] and where its metrics go.
#[derive(Debug, Clone)]
pub struct RotateFunction {
    rotator: Rotator,
    namespace: String,
    fan_out: Option<crate::fanout::FanOut>,
    reports: Option<Reports>,
}

impl RotateFunction {
    /// A function running `rotator`, writing metrics to `namespace`.
    pub fn new(rotator: Rotator, namespace: impl Into<String>) -> Self {
        Self {
            rotator,
            namespace: namespace.into(),
            fan_out: None,
            reports: None,
        }
    }

    /// The function writing a report after its runs (see [`crate::report`]).
    #[must_use]
    pub fn with_reports(mut self, reports: Reports) -> Self {
        self.reports = Some(reports);
        self
    }

    /// The function answering the fan-out's requests too (see [`crate::fanout`]).
    #[must_use]
    pub fn with_fan_out(mut self, fan_out: crate::fanout::FanOut) -> Self {
        self.fan_out = Some(fan_out);
        self
    }

    /// The function as deployed: configuration from `lookup` (see [`crate::config`]), AWS
    /// from aws-config's standard chain (`AWS_REGION`, the role's credentials, and
    /// `AWS_ENDPOINT_URL` for an emulator).
    pub async fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = RotateConfig::from_env(lookup)?;
        let clients = AwsClients::from_settings(&config.aws).await;
        let fan_out = crate::fanout::FanOut::new(
            clients.clone(),
            config.backend.clone(),
            config.org,
            config.policy.clone(),
        );
        let rotator = config.backend.rotator(&clients, config.policy);
        info!(
            policy = %keyrot_core::settings::Summary(rotator.policy()),
            prefix = %config.backend.secret_prefix,
            lease_table = %config.backend.lease_table,
            "rotator ready"
        );
        let function = Self::new(rotator, config.metrics_namespace).with_fan_out(fan_out);
        Ok(match config.report_bucket {
            Some(bucket) => function.with_reports(Reports::new(Objects::new(clients.s3, bucket))),
            None => function,
        })
    }

    /// The rotator.
    pub fn rotator(&self) -> &Rotator {
        &self.rotator
    }

    /// Runs once for `event`, starting no user after [`run_deadline`] of `lambda_deadline`.
    pub async fn handle(
        &self,
        event: Value,
        lambda_deadline: Option<Timestamp>,
    ) -> Result<Handled, RotateError> {
        let event: ScheduledEvent = serde_json::from_value(event).map_err(RotateError::BadEvent)?;
        let clock_now = self.rotator.ports().clock.now();
        let now = match &event.time {
            Some(time) => time
                .parse::<Timestamp>()
                .map_err(|_| RotateError::BadTime(time.clone()))?,
            None => clock_now,
        };
        let verify_timeout = self.rotator.policy().verify_timeout();
        let deadline = lambda_deadline.map(|d| run_deadline(clock_now, d, verify_timeout));
        let mut warnings = Vec::new();
        if let Some(d) = lambda_deadline {
            let left = Duration::try_from(d.duration_since(clock_now)).unwrap_or(Duration::ZERO);
            if (verify_timeout + DEADLINE_SLACK) * 2 > left {
                let warning = format!(
                    "the invocation had {} left, less than twice the verify timeout ({}) plus \
                     {}: a user started late may not finish verifying before the deadline (the \
                     next run completes it); raise the function's timeout or lower {}",
                    format_duration(left),
                    format_duration(verify_timeout),
                    format_duration(DEADLINE_SLACK),
                    keyrot_config::Name::unwritten(keyrot_config::Setting::VerifyTimeout),
                );
                tracing::warn!("{warning}");
                warnings.push(warning);
            }
        }
        info!(
            event = event.id.as_deref(),
            now = %now,
            deadline = deadline.map(|d| d.to_string()),
            "scheduled run"
        );
        let options = RunOptions {
            deadline,
            ..RunOptions::default()
        };
        let report = self
            .rotator
            .run(&options)
            .await
            .map_err(|RunError::ListUsers(e)| RotateError::ListUsers(e))?;
        let metrics = RunMetrics::of(&report, now);
        let mut output = RunOutput::of(&report, now, deadline);
        if let Some(reports) = &self.reports {
            match reports.after_run(&self.rotator, &report, now).await {
                Ok(written) => output.reports = written,
                Err(error) => {
                    let warning = format!("the report was not written: {}", error_chain(&error));
                    tracing::warn!("{warning}");
                    warnings.push(warning);
                }
            }
        }
        output.warnings = warnings;
        Ok(Handled {
            output,
            metrics: run_line(&self.namespace, &metrics, now),
        })
    }
}

/// What the function answers: a scheduled run's report, or a fan-out request's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Response {
    /// A scheduled run's report.
    Run(RunOutput),
    /// The accounts in scope.
    Inventory(crate::fanout::Inventory),
    /// One account's run.
    Account(crate::fanout::AccountOutput),
}

impl RotateFunction {
    /// Answers a fan-out request, printing an account run's EMF line.
    pub async fn fan_out(
        &self,
        request: crate::fanout::FanOutEvent,
        lambda_deadline: Option<Timestamp>,
    ) -> Result<Response, crate::fanout::FanOutError> {
        use crate::fanout::{FanOutError, FanOutEvent};
        let fan_out = self.fan_out.as_ref().ok_or(FanOutError::NotSetUp)?;
        match request {
            FanOutEvent::Inventory => Ok(Response::Inventory(fan_out.inventory().await?)),
            FanOutEvent::Account { account } => {
                let handled = fan_out
                    .account(&account, lambda_deadline, &self.namespace)
                    .await?;
                metrics::emit(&handled.metrics);
                Ok(Response::Account(handled.output))
            }
        }
    }
}

/// Serves scheduled events and the fan-out's requests until Lambda ends the process, printing
/// each run's EMF line.
pub async fn serve(function: RotateFunction) -> Result<(), lambda_runtime::Error> {
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = crate::runtime::deadline_of(&event.context);
        let failed = |error_type: &str, error: &dyn std::error::Error| {
            tracing::error!(error_type, error = %error_chain(error), "run failed");
        };
        if let Some(request) = crate::fanout::FanOutEvent::of(&event.payload) {
            return match request {
                Ok(request) => function.fan_out(request, deadline).await,
                Err(error) => Err(error),
            }
            .map_err(|error| {
                failed(error.error_type(), &error);
                Diagnostic::from(error)
            });
        }
        match function.handle(event.payload, deadline).await {
            Ok(handled) => {
                metrics::emit(&handled.metrics);
                Ok(Response::Run(handled.output))
            }
            Err(error) => {
                failed(&error.error_type(), &error);
                Err(Diagnostic::from(error))
            }
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keyrot_core::fake::{FakeAws, FaultKind, FaultRates, op};
    use keyrot_core::{Iam, MockIam, Policy, Ports, UserName};
    use serde_json::json;

    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn the_deadline_keeps_time_for_a_verification() {
        let now = t("2025-06-01T12:00:00Z");
        let at = |secs: u64| now.checked_add(Duration::from_secs(secs)).unwrap();
        // 15 minutes, 5 minute verify timeout: stop starting users 5m30s before the end.
        assert_eq!(run_deadline(now, at(900), 5 * MIN), at(900 - 330));
        // An hour left: a fifth of it is kept back.
        assert_eq!(run_deadline(now, at(3600), 5 * MIN), at(3600 - 720));
        // Little time left: at most half of it is kept back.
        assert_eq!(run_deadline(now, at(60), 5 * MIN), at(30));
        // No time left, or less than none: start nothing.
        assert_eq!(run_deadline(now, now, 5 * MIN), now);
        let before = now.checked_sub(Duration::from_secs(5)).unwrap();
        assert_eq!(run_deadline(now, before, 5 * MIN), before);
    }

    fn user(name: &str) -> UserName {
        UserName::new(name).unwrap()
    }

    /// The rotator over the fakes, with `iam` in place of the fake IAM.
    fn function_with(aws: &FakeAws, iam: Arc<dyn Iam>) -> RotateFunction {
        let ports = Ports { iam, ..aws.ports() };
        RotateFunction::new(
            Rotator::new(ports, Policy::builder().build().unwrap()),
            "keyrot",
        )
    }

    fn function(aws: &FakeAws) -> RotateFunction {
        function_with(aws, Arc::new(aws.iam.clone()))
    }

    fn event(time: &str) -> Value {
        json!({
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time,
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/keyrot-rotate"],
            "detail": {}
        })
    }

    fn metric(line: &str, name: &str) -> Value {
        serde_json::from_str::<Value>(line).unwrap()[name].clone()
    }

    #[tokio::test]
    async fn a_run_rotates_and_reports_on_the_event_time() {
        let start = t("2025-06-01T12:00:05Z");
        let aws = FakeAws::new(start, 1, FaultRates::none());
        aws.iam.add_managed_user(user("ci"));
        let f = function(&aws);
        let deadline = start.checked_add(15 * MIN).unwrap();
        let handled = f
            .handle(event("2025-06-01T12:00:00Z"), Some(deadline))
            .await
            .unwrap();
        let out = &handled.output;
        assert_eq!(out.now, "2025-06-01T12:00:00Z");
        assert_eq!(out.started, "2025-06-01T12:00:05Z");
        assert_eq!(out.deadline.as_deref(), Some("2025-06-01T12:09:35Z"));
        assert_eq!(out.counts.rotated, 1);
        assert_eq!(out.counts.waiting, 1);
        assert_eq!(out.users[0].user, "ci");
        assert_eq!(out.users[0].status, "waiting");
        assert!(
            out.users[0].steps.iter().any(|s| s.starts_with("publish")),
            "{out:?}"
        );
        assert_eq!(metric(&handled.metrics, "RotationsSucceeded"), 1);
        assert_eq!(metric(&handled.metrics, "OldestKeyAgeDays"), 0);
        let stamp = &serde_json::from_str::<Value>(&handled.metrics).unwrap()["_aws"]["Timestamp"];
        assert_eq!(stamp, t("2025-06-01T12:00:00Z").as_millisecond());
        assert_eq!(aws.iam.keys(&user("ci")).len(), 1);
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[tokio::test]
    async fn a_timeout_too_short_for_verification_is_reported() {
        let start = t("2025-06-01T12:00:00Z");
        let aws = FakeAws::new(start, 1, FaultRates::none());
        // 8 minutes left, the default verify timeout is 5: a late user could not finish.
        let deadline = start.checked_add(8 * MIN).unwrap();
        let handled = function(&aws)
            .handle(json!({}), Some(deadline))
            .await
            .unwrap();
        let warnings = &handled.output.warnings;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("KEYROT_VERIFY_TIMEOUT"),
            "{warnings:?}"
        );
        let json = serde_json::to_value(&handled.output).unwrap();
        assert_eq!(json["warnings"][0], warnings[0].as_str());
    }

    #[tokio::test]
    async fn past_the_deadline_every_user_is_skipped_for_the_next_run() {
        let start = t("2025-06-01T12:00:00Z");
        let aws = FakeAws::new(start, 1, FaultRates::none());
        aws.iam.add_managed_user(user("a"));
        aws.iam.add_managed_user(user("b"));
        let handled = function(&aws).handle(json!({}), Some(start)).await.unwrap();
        assert_eq!(handled.output.counts.skipped, 2);
        assert_eq!(handled.output.users[1].status, "skipped");
        assert_eq!(handled.output.now, "2025-06-01T12:00:00Z");
        assert_eq!(metric(&handled.metrics, "SkippedUsers"), 2);
        assert!(aws.iam.keys(&user("a")).is_empty());
    }

    #[tokio::test]
    async fn one_users_failure_is_reported_not_raised() {
        let start = t("2025-06-01T12:00:00Z");
        let aws = FakeAws::new(start, 1, FaultRates::none());
        aws.iam.add_managed_user(user("a"));
        aws.iam.add_managed_user(user("b"));
        aws.plan.fail_at(op::IAM_CREATE_KEY, FaultKind::Throttle);
        let handled = function(&aws)
            .handle(event("2025-06-01T12:00:00Z"), None)
            .await
            .unwrap();
        let out = &handled.output;
        assert_eq!((out.counts.failed, out.counts.rotated), (1, 1), "{out:?}");
        let failed = out.users.iter().find(|u| u.status == "failed").unwrap();
        assert_eq!(failed.retryable, Some(true));
        assert!(failed.outcome.contains("throttled"), "{}", failed.outcome);
        assert_eq!(metric(&handled.metrics, "RotationFailures"), 1);
        assert_eq!(out.deadline, None);
    }

    #[tokio::test]
    async fn a_throttled_listing_fails_the_run_for_a_retry() {
        let aws = FakeAws::new(t("2025-06-01T12:00:00Z"), 1, FaultRates::none());
        aws.iam.add_managed_user(user("a"));
        aws.plan.fail_at(op::IAM_MANAGED_USERS, FaultKind::Throttle);
        let err = function(&aws).handle(json!({}), None).await.unwrap_err();
        assert!(err.is_retryable());
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "keyrot.Retryable.ListUsers");
        assert_eq!(
            diagnostic.error_message,
            "could not list the managed users: throttled by IAM: injected throttle in \
             iam.managed_users"
        );
    }

    #[test]
    fn step_errors_say_whether_the_next_run_may_succeed() {
        let other = || -> keyrot_core::BoxError { "connection reset".into() };
        let retryable = [
            StepError::Iam(IamError::Throttled(other())),
            StepError::Iam(IamError::Other(other())),
            StepError::Store(StoreError::Throttled(other())),
            StepError::Store(StoreError::Other(other())),
            StepError::Lease(LeaseError::Throttled(other())),
            StepError::Lease(LeaseError::Other(other())),
            StepError::Verify(VerifyError::Other(other())),
            StepError::TooManySteps(32),
            StepError::LeaseLost,
            StepError::Unfinished("waiting".to_owned()),
        ];
        for error in &retryable {
            assert!(step_retryable(error), "{error:?}");
        }
        let for_a_person = [
            StepError::Iam(IamError::LimitExceeded),
            StepError::Iam(IamError::NoSuchEntity),
            StepError::Iam(IamError::AccessDenied(other())),
            StepError::Store(StoreError::Malformed(other())),
            StepError::Store(StoreError::AccessDenied(other())),
            StepError::Lease(LeaseError::AccessDenied(other())),
            StepError::Verify(VerifyError::WrongIdentity {
                actual: "arn:aws:iam::123456789012:user/mallory".to_owned(),
            }),
            StepError::MissingSecret(
                keyrot_core::AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap(),
            ),
        ];
        for error in &for_a_person {
            assert!(!step_retryable(error), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_denied_listing_is_not_retryable() {
        let aws = FakeAws::new(t("2025-06-01T12:00:00Z"), 1, FaultRates::none());
        let mut iam = MockIam::new();
        iam.expect_managed_users().returning(|_| {
            Err(IamError::AccessDenied(
                "not authorized: iam:ListUsers".into(),
            ))
        });
        let f = function_with(&aws, Arc::new(iam));
        let err = f.handle(json!({}), None).await.unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(err.error_type(), "keyrot.NotRetryable.AccessDenied");
    }

    #[tokio::test]
    async fn a_bad_event_is_not_retryable() {
        let aws = FakeAws::new(t("2025-06-01T12:00:00Z"), 1, FaultRates::none());
        let f = function(&aws);
        for bad in [
            json!("hello"),
            json!({"time": 5}),
            json!({"time": "yesterday"}),
        ] {
            let err = f.handle(bad.clone(), None).await.unwrap_err();
            assert!(!err.is_retryable(), "{bad}");
            assert_eq!(err.error_type(), "keyrot.NotRetryable.BadEvent", "{bad}");
        }
        assert_eq!(aws.plan.total_calls(), 0);
    }
}
