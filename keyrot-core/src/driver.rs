//! The driver: observes a user, asks the [planner](mod@crate::plan), performs the one step, records
//! its effect and asks again, until the user is waiting or blocked. Runs all managed users with
//! bounded concurrency; one user's failure never stops the others.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::model::{
    AccessKey, AccessKeyId, Credentials, KeyStatus, Mark, StoredVersion, Timestamp, UserName,
};
use crate::plan::{Blocked, Observation, Step, Wait, plan, warning_ahead};
use crate::policy::Policy;
use crate::ports::{
    Clock, Iam, IamError, Lease, Notice, Notifier, SecretStore, StoreError, Verifier, VerifyError,
};

/// Why a step failed for one user.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An IAM call failed.
    #[error("IAM call failed")]
    Iam(#[from] IamError),
    /// A secret store call failed.
    #[error("secret store call failed")]
    Store(#[from] StoreError),
    /// The verification call failed.
    #[error("verification failed")]
    Verify(#[from] VerifyError),
    /// The pending key's secret is not in the store.
    #[error("the secret of {0} is not stored")]
    MissingSecret(AccessKeyId),
    /// The planner kept asking for steps; a bug or an interfering writer.
    #[error("gave up after {0} steps in one run")]
    TooManySteps(usize),
}

impl StepError {
    /// Whether the next run may succeed without a person acting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Iam(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Verify(VerifyError::Other(_)) | Self::TooManySteps(_) => true,
            Self::Verify(VerifyError::WrongIdentity { .. }) | Self::MissingSecret(_) => false,
        }
    }
}

/// Why a whole run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Listing the managed users failed.
    #[error("could not list managed users")]
    ListUsers(#[source] IamError),
}

/// Why a rollback was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The user is not managed by keyrot, or is exempt.
    #[error("{0} is not managed by keyrot")]
    NotManaged(UserName),
    /// There is no previous key with a stored secret to go back to.
    #[error("no previous key to roll back to")]
    NoPreviousKey,
    /// The previous key did not authenticate again within the verify timeout.
    #[error("{0} did not authenticate after re-activation")]
    DidNotAuthenticate(AccessKeyId),
    /// A call failed.
    #[error("rollback step failed")]
    Step(#[from] StepError),
}

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

/// What a run should do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only these users (each must be managed); empty means every managed user.
    pub users: Vec<UserName>,
    /// Rotate now, whatever the keys' ages.
    pub force: bool,
    /// Observe and plan, change nothing.
    pub dry_run: bool,
    /// Start no user after this time (the Lambda deadline less a margin).
    pub deadline: Option<Timestamp>,
}

/// The adapters a [`Rotator`] works through.
#[derive(Clone)]
pub struct Ports {
    /// IAM.
    pub iam: Arc<dyn Iam>,
    /// The secret store.
    pub store: Arc<dyn SecretStore>,
    /// Proves new keys authenticate.
    pub verifier: Arc<dyn Verifier>,
    /// One run per user at a time.
    pub lease: Arc<dyn Lease>,
    /// Tells an administrator.
    pub notifier: Arc<dyn Notifier>,
    /// Now, and waiting.
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// The longest single wait between two verification attempts.
const MAX_VERIFY_BACKOFF: Duration = Duration::from_secs(8);
/// A bound on steps for one user in one run; a full rotation takes about ten.
const MAX_STEPS: usize = 32;

/// Reconciles managed users' keys with the policy.
#[derive(Debug, Clone)]
pub struct Rotator {
    ports: Ports,
    policy: Policy,
    concurrency: usize,
}

impl Rotator {
    /// A rotator working through `ports` under `policy`, four users at a time.
    pub fn new(ports: Ports, policy: Policy) -> Self {
        Self {
            ports,
            policy,
            concurrency: 4,
        }
    }

    /// How many users are reconciled at once (at least one).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The users keyrot manages: selected, less the exempt ones, sorted.
    pub async fn managed_users(&self) -> Result<Vec<UserName>, IamError> {
        let mut users = self
            .ports
            .iam
            .managed_users(self.policy.selection())
            .await?;
        users.retain(|u| !self.policy.is_exempt(u));
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// One reconcile pass over the managed users (or the ones named in `options`).
    pub async fn run(&self, options: &RunOptions) -> Result<RunReport, RunError> {
        let started = self.ports.clock.now();
        let managed = self.managed_users().await.map_err(RunError::ListUsers)?;
        let (users, mut reports) = if options.users.is_empty() {
            (managed, Vec::new())
        } else {
            let mut chosen = Vec::new();
            let mut refused = Vec::new();
            for user in &options.users {
                if managed.binary_search(user).is_ok() {
                    chosen.push(user.clone());
                } else {
                    refused.push(UserReport {
                        user: user.clone(),
                        steps: Vec::new(),
                        outcome: Outcome::NotManaged,
                        keys: Vec::new(),
                    });
                }
            }
            (chosen, refused)
        };
        info!(
            users = users.len(),
            dry_run = options.dry_run,
            force = options.force,
            "run started"
        );
        let done: Vec<UserReport> = futures::stream::iter(users)
            .map(|user| async move {
                if let Some(deadline) = options.deadline
                    && self.ports.clock.now() >= deadline
                {
                    return UserReport {
                        user,
                        steps: Vec::new(),
                        outcome: Outcome::Skipped,
                        keys: Vec::new(),
                    };
                }
                let span = info_span!("user", user = %user);
                self.reconcile(user, options.force, options.dry_run)
                    .instrument(span)
                    .await
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        reports.extend(done);
        reports.sort_by(|a, b| a.user.cmp(&b.user));
        let report = RunReport {
            started,
            users: reports,
        };
        info!(
            users = report.users.len(),
            rotated = report.rotations(),
            failed = report.failures(),
            "run finished"
        );
        Ok(report)
    }

    /// Reconciles one user: steps until it waits, is blocked, or a step fails. The caller has
    /// checked that the user is managed.
    pub async fn reconcile(&self, user: UserName, force: bool, dry_run: bool) -> UserReport {
        let mut steps = Vec::new();
        let mut obs = match self.observe(&user).await {
            Ok(obs) => obs,
            Err(error) => {
                return self.failed(user, steps, None, error, Vec::new()).await;
            }
        };
        obs.force = force;
        let mut fresh: Option<Credentials> = None;
        let mut verify_attempts = 0u32;
        loop {
            let now = self.ports.clock.now();
            let step = plan(&obs, &self.policy, now);
            if dry_run && !step.is_read_only() {
                return UserReport {
                    user,
                    steps,
                    outcome: Outcome::Planned(step),
                    keys: obs.keys,
                };
            }
            if steps.len() >= MAX_STEPS {
                let error = StepError::TooManySteps(MAX_STEPS);
                return self.failed(user, steps, Some(step), error, obs.keys).await;
            }
            match &step {
                Step::Wait(wait) => {
                    if let Some((key, at)) = warning_ahead(&step, &self.policy, now) {
                        self.notify(Notice::WillForceDeactivate {
                            user: user.clone(),
                            key,
                            at,
                        })
                        .await;
                    }
                    debug!(%step, "settled");
                    return UserReport {
                        user,
                        steps,
                        outcome: Outcome::Waiting(wait.clone()),
                        keys: obs.keys,
                    };
                }
                Step::Blocked(blocked) => {
                    warn!(reason = %blocked, "blocked");
                    self.notify(Notice::Blocked {
                        user: user.clone(),
                        reason: blocked.to_string(),
                    })
                    .await;
                    return UserReport {
                        user,
                        steps,
                        outcome: Outcome::Blocked(blocked.clone()),
                        keys: obs.keys,
                    };
                }
                _ => {}
            }
            info!(%step, "step");
            match self.perform(&mut obs, &step, &mut fresh, now).await {
                Ok(Progress::Done) => {
                    verify_attempts = 0;
                    steps.push(step);
                }
                Ok(Progress::NotYet { deadline }) => {
                    // IAM has not propagated the key yet: wait and try again, within the
                    // verify timeout (past it the planner discards the key).
                    verify_attempts += 1;
                    let backoff =
                        Duration::from_secs(1 << verify_attempts.min(3)).min(MAX_VERIFY_BACKOFF);
                    let left = deadline.duration_since(now);
                    let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
                    debug!(
                        attempt = verify_attempts,
                        "new key does not authenticate yet"
                    );
                    if !left.is_zero() {
                        // Past the deadline the planner discards the key without waiting.
                        let wait = backoff.min(left + Duration::from_secs(1));
                        self.ports.clock.sleep(wait).await;
                    }
                    if verify_attempts == 1 {
                        steps.push(step);
                    }
                }
                Ok(Progress::Discarded(key)) => {
                    steps.push(step);
                    return UserReport {
                        user,
                        steps,
                        outcome: Outcome::Discarded(key),
                        keys: obs.keys,
                    };
                }
                Err(error) => {
                    return self.failed(user, steps, Some(step), error, obs.keys).await;
                }
            }
        }
    }

    async fn failed(
        &self,
        user: UserName,
        steps: Vec<Step>,
        step: Option<Step>,
        error: StepError,
        keys: Vec<AccessKey>,
    ) -> UserReport {
        let message = error_chain(&error);
        let doing = step
            .as_ref()
            .map_or_else(|| "observe".to_owned(), Step::to_string);
        warn!(step = %doing, error = %message, retryable = error.is_retryable(), "step failed");
        self.notify(Notice::Failed {
            user: user.clone(),
            error: format!("{doing}: {message}"),
        })
        .await;
        UserReport {
            user,
            steps,
            outcome: Outcome::Failed { step, error },
            keys,
        }
    }

    /// Reads what IAM and the store say about `user`.
    pub async fn observe(&self, user: &UserName) -> Result<Observation, StepError> {
        let keys = self.ports.iam.list_keys(user).await?;
        let stored = self.ports.store.load(user).await?;
        Ok(Observation::new(user.clone(), keys, stored))
    }

    /// Plans one user without changing anything (read-only observations included).
    pub async fn plan_user(&self, user: &UserName) -> UserReport {
        self.reconcile(user.clone(), false, true).await
    }

    async fn perform(
        &self,
        obs: &mut Observation,
        step: &Step,
        fresh: &mut Option<Credentials>,
        now: Timestamp,
    ) -> Result<Progress, StepError> {
        let user = obs.user.clone();
        let (iam, store) = (&self.ports.iam, &self.ports.store);
        match step {
            Step::Adopt(key) => {
                store.mark(&user, key, Mark::Adopted, now).await?;
                obs.stored
                    .marks
                    .entry(key.clone())
                    .or_default()
                    .set(Mark::Adopted, now);
            }
            Step::CheckLastUsed(key) => {
                let answer = iam.last_used(key).await;
                obs.last_used.insert(key.clone(), answer);
            }
            Step::DeleteOrphan(key) | Step::MakeRoom(key) | Step::Delete(key) => {
                delete(iam.as_ref(), &user, key).await?;
                obs.keys.retain(|k| &k.id != key);
            }
            Step::Discard(key) => {
                delete(iam.as_ref(), &user, key).await?;
                obs.keys.retain(|k| &k.id != key);
                self.notify(Notice::Discarded {
                    user: user.clone(),
                    key: key.clone(),
                })
                .await;
                // Try again next run, not in a loop now.
                return Ok(Progress::Discarded(key.clone()));
            }
            Step::CreateAndStage => {
                debug_assert!(obs.keys.len() < 2, "the planner never asks for a third key");
                let new = iam.create_key(&user).await?;
                obs.keys.push(new.key.clone());
                let credentials = new.credentials();
                // Stage at once: the secret exists nowhere else. If this fails the key is an
                // orphan, which the next run deletes.
                store
                    .put_pending(&user, &credentials, new.key.created)
                    .await?;
                for v in &mut obs.stored.versions {
                    v.stages.pending = false;
                }
                obs.stored.versions.insert(
                    0,
                    StoredVersion {
                        key_id: new.key.id.clone(),
                        stages: crate::model::Stages {
                            pending: true,
                            ..Default::default()
                        },
                    },
                );
                *fresh = Some(credentials);
            }
            Step::Verify(key) => {
                let credentials = match fresh.as_ref().filter(|c| &c.access_key_id == key) {
                    Some(c) => c.clone(),
                    None => store
                        .credentials(&user, key)
                        .await?
                        .ok_or_else(|| StepError::MissingSecret(key.clone()))?,
                };
                if self
                    .ports
                    .verifier
                    .authenticates(&user, &credentials)
                    .await?
                {
                    obs.verified.insert(key.clone());
                    *fresh = Some(credentials);
                } else {
                    obs.unverified.insert(key.clone());
                    let created = obs.key(key).map_or(now, |k| k.created);
                    return Ok(Progress::NotYet {
                        deadline: created + self.policy.verify_timeout(),
                    });
                }
            }
            Step::Publish(key) => {
                let old = obs.stored.current().cloned();
                store.promote(&user, key).await?;
                for v in &mut obs.stored.versions {
                    let is_new = &v.key_id == key;
                    let was_current = v.stages.current;
                    v.stages.previous = !is_new && was_current;
                    v.stages.current = is_new;
                }
                obs.force = false;
                info!(new = %key, old = ?old, "published");
                let old = old.or_else(|| {
                    obs.keys
                        .iter()
                        .find(|k| &k.id != key && obs.stored.knows(&k.id))
                        .map(|k| k.id.clone())
                });
                self.notify(Notice::Rotated {
                    user: user.clone(),
                    new: key.clone(),
                    old,
                })
                .await;
            }
            Step::RecordSuperseded(key) => {
                store.mark(&user, key, Mark::Superseded, now).await?;
                obs.stored
                    .marks
                    .entry(key.clone())
                    .or_default()
                    .set(Mark::Superseded, now);
            }
            Step::Deactivate { key, forced } => {
                iam.set_status(&user, key, KeyStatus::Inactive).await?;
                if let Some(k) = obs.keys.iter_mut().find(|k| &k.id == key) {
                    k.status = KeyStatus::Inactive;
                }
                if *forced {
                    self.notify(Notice::ForcedDeactivation {
                        user: user.clone(),
                        key: key.clone(),
                    })
                    .await;
                }
            }
            Step::RecordDeactivated(key) => {
                store.mark(&user, key, Mark::Deactivated, now).await?;
                obs.stored
                    .marks
                    .entry(key.clone())
                    .or_default()
                    .set(Mark::Deactivated, now);
            }
            Step::Forget(key) => {
                store.clear_marks(&user, key).await?;
                obs.stored.marks.remove(key);
            }
            Step::Wait(_) | Step::Blocked(_) => {}
        }
        Ok(Progress::Done)
    }

    /// Re-activates the previous key and makes it current again; the key that was current is
    /// superseded now and goes through grace, deactivation and deletion as usual.
    pub async fn rollback(&self, user: &UserName) -> Result<AccessKeyId, RollbackError> {
        let managed = self.managed_users().await.map_err(StepError::from)?;
        if managed.binary_search(user).is_err() {
            return Err(RollbackError::NotManaged(user.clone()));
        }
        let obs = self.observe(user).await?;
        let current = obs.stored.current().cloned();
        let previous = obs
            .stored
            .versions
            .iter()
            .filter(|v| v.stages.previous && Some(&v.key_id) != current.as_ref())
            .find_map(|v| obs.key(&v.key_id))
            .cloned()
            .ok_or(RollbackError::NoPreviousKey)?;
        let store = &self.ports.store;
        let credentials = store
            .credentials(user, &previous.id)
            .await
            .map_err(StepError::from)?
            .ok_or(RollbackError::NoPreviousKey)?;
        if previous.status == KeyStatus::Inactive {
            self.ports
                .iam
                .set_status(user, &previous.id, KeyStatus::Active)
                .await
                .map_err(StepError::from)?;
        }
        let deadline = self.ports.clock.now() + self.policy.verify_timeout();
        let mut attempt = 0u32;
        loop {
            let ok = self
                .ports
                .verifier
                .authenticates(user, &credentials)
                .await
                .map_err(StepError::from)?;
            if ok {
                break;
            }
            if self.ports.clock.now() >= deadline {
                return Err(RollbackError::DidNotAuthenticate(previous.id));
            }
            attempt += 1;
            self.ports
                .clock
                .sleep(Duration::from_secs(1 << attempt.min(3)))
                .await;
        }
        store
            .promote(user, &previous.id)
            .await
            .map_err(StepError::from)?;
        store
            .clear_marks(user, &previous.id)
            .await
            .map_err(StepError::from)?;
        if let Some(current) = &current {
            let now = self.ports.clock.now();
            store
                .mark(user, current, Mark::Superseded, now)
                .await
                .map_err(StepError::from)?;
        }
        info!(key = %previous.id, "rolled back");
        self.notify(Notice::Rotated {
            user: user.clone(),
            new: previous.id.clone(),
            old: current,
        })
        .await;
        Ok(previous.id)
    }

    async fn notify(&self, notice: Notice) {
        if let Err(error) = self.ports.notifier.notify(&notice).await {
            warn!(error = %error_chain(&error), "could not send notification");
        }
    }
}

enum Progress {
    Done,
    NotYet { deadline: Timestamp },
    Discarded(AccessKeyId),
}

async fn delete(iam: &dyn Iam, user: &UserName, key: &AccessKeyId) -> Result<(), StepError> {
    match iam.delete_key(user, key).await {
        // Already gone (a lost response last time): the effect we wanted.
        Ok(()) | Err(IamError::NoSuchEntity) => Ok(()),
        Err(e) => Err(e.into()),
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
