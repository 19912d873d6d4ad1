//! The driver: observes a user, asks the [planner](mod@crate::plan), performs the one step, records
//! its effect and asks again, until the user is waiting or blocked. Runs all managed users with
//! bounded concurrency; one user's failure never stops the others.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::model::{
    AccessKey, AccessKeyId, Credentials, Intent, KeyStatus, Mark, StoredUser, StoredVersion,
    Timestamp, UserName,
};
use crate::plan::{Blocked, Observation, Step, Wait, plan, warning_ahead};
use crate::policy::Policy;
use crate::ports::{
    Claim, Clock, Iam, IamError, Lease, LeaseError, LeaseToken, Notice, Notifier, SecretStore,
    StoreError, Verifier, VerifyError,
};
use crate::survey::{self, Triage};

/// Why a step failed for one user.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An IAM call failed (its error says how).
    #[error(transparent)]
    Iam(#[from] IamError),
    /// A secret store call failed (its error says how).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The verification call failed (its error says how).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The pending key's secret is not in the store.
    #[error("the secret of {0} is not stored")]
    MissingSecret(AccessKeyId),
    /// The planner kept asking for steps; a bug or an interfering writer.
    #[error("gave up after {0} steps in one run")]
    TooManySteps(usize),
    /// The run ended before the step it was asked for (the outcome says how).
    #[error("the run ended without finishing: {0}")]
    Unfinished(String),
    /// The lease call failed (its error says how): without the lease no step is taken.
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// Our lease expired and another run took the user: this run stops acting on it.
    #[error("the lease on the user expired and another run took it")]
    LeaseLost,
}

impl StepError {
    /// Whether the next run may succeed without a person acting.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Iam(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Lease(e) => e.is_retryable(),
            Self::Verify(VerifyError::Other(_))
            | Self::TooManySteps(_)
            | Self::LeaseLost
            | Self::Unfinished(_) => true,
            Self::Verify(VerifyError::WrongIdentity { .. }) | Self::MissingSecret(_) => false,
        }
    }

    /// Whether the failed call may have had its effect all the same (a lost reply, a timeout,
    /// a 5xx): what keyrot believed about the user may be stale, so it observes again before
    /// it acts again.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Self::Iam(IamError::Other(_))
                | Self::Store(StoreError::Other(_))
                | Self::Verify(VerifyError::Other(_))
                | Self::Lease(LeaseError::Other(_))
        )
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
    /// Another run holds the user; try again after `until`.
    #[error("another run holds the user until {until}")]
    Busy {
        /// When the other run's lease expires unless renewed.
        until: Timestamp,
    },
    /// The user is blocked for another reason a person must see to first.
    #[error("blocked: {0}")]
    Blocked(Blocked),
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

/// A user keyrot manages: selected by the policy and not exempt. Only a [`Rotator`] makes one,
/// from IAM's answer, so that no caller can point [`Rotator::reconcile`] at a user keyrot must
/// never touch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManagedUser(UserName);

impl ManagedUser {
    /// The user's name.
    pub fn name(&self) -> &UserName {
        &self.0
    }
}

impl fmt::Display for ManagedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What is asked of one user's run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// Rotate now, whatever the keys' ages.
    pub force: bool,
    /// Observe and plan, change nothing.
    pub dry_run: bool,
    /// Go back to the previous key (a person asked).
    pub rollback: bool,
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

/// A bound on steps for one user in one run; a full rotation takes about ten.
const MAX_STEPS: usize = 32;
/// How many times one user's run observes again after a failure that may have had its effect.
const MAX_REOBSERVE: u32 = 2;
/// The shortest lease on a user (see [`Rotator::with_lease_duration`]).
const MIN_LEASE: Duration = Duration::from_secs(15 * 60);

/// Reconciles managed users' keys with the policy.
#[derive(Debug, Clone)]
pub struct Rotator {
    ports: Ports,
    policy: Policy,
    concurrency: usize,
    lease_duration: Duration,
}

impl Rotator {
    /// A rotator working through `ports` under `policy`, four users at a time, holding each
    /// user it acts on for 15 minutes at a time (at least three verify timeouts).
    pub fn new(ports: Ports, policy: Policy) -> Self {
        let lease_duration = MIN_LEASE.max(policy.verify_timeout() * 3);
        Self {
            ports,
            policy,
            concurrency: 4,
            lease_duration,
        }
    }

    /// How long a claim on a user lasts before it must be renewed (the driver renews it before
    /// a step when less than half is left). A crashed run's claim keeps other runs off the user
    /// for this long. At least twice the verify timeout, so that a verification fits.
    #[must_use]
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration.max(self.policy.verify_timeout() * 2);
        self
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
    pub async fn managed_users(&self) -> Result<Vec<ManagedUser>, IamError> {
        let mut users = self
            .ports
            .iam
            .managed_users(self.policy.selection())
            .await?;
        users.retain(|u| !self.policy.is_exempt(u));
        users.sort();
        users.dedup();
        Ok(users.into_iter().map(ManagedUser).collect())
    }

    /// `user`, if keyrot manages it.
    pub async fn managed(&self, user: &UserName) -> Result<Option<ManagedUser>, IamError> {
        let managed = self.managed_users().await?;
        Ok(managed.into_iter().find(|m| &m.0 == user))
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
                match managed.iter().find(|m| &m.0 == user) {
                    Some(m) => chosen.push(m.clone()),
                    None => refused.push(UserReport {
                        user: user.clone(),
                        steps: Vec::new(),
                        outcome: Outcome::NotManaged,
                        keys: Vec::new(),
                    }),
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
        let request = Request {
            force: options.force,
            dry_run: options.dry_run,
            rollback: false,
        };
        // A forced run, or one over users a person named, looks at each of them.
        let mut idle = if options.force || !options.users.is_empty() {
            BTreeMap::new()
        } else {
            self.survey(&users, started).await
        };
        let (skipped, users): (Vec<ManagedUser>, Vec<ManagedUser>) =
            users.into_iter().partition(|u| idle.contains_key(&u.0));
        reports.extend(skipped.into_iter().filter_map(|user| {
            let (wait, keys) = idle.remove(&user.0)?;
            Some(UserReport {
                user: user.0,
                steps: Vec::new(),
                outcome: Outcome::Waiting(wait),
                keys,
            })
        }));
        let done: Vec<UserReport> = futures::stream::iter(users)
            .map(|user| async move {
                if let Some(deadline) = options.deadline
                    && self.ports.clock.now() >= deadline
                {
                    return UserReport {
                        user: user.0,
                        steps: Vec::new(),
                        outcome: Outcome::Skipped,
                        keys: Vec::new(),
                    };
                }
                let span = info_span!("user", user = %user);
                self.reconcile(user, request).instrument(span).await
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

    /// The users a [survey](crate::survey) proves idle, with what each waits for and its keys
    /// as the survey sees them; empty when the ports offer no bulk reads or one fails (the run
    /// then observes every user, as without a survey). Users due for their periodic full look
    /// are left out.
    async fn survey(
        &self,
        users: &[ManagedUser],
        now: Timestamp,
    ) -> BTreeMap<UserName, (Wait, Vec<AccessKey>)> {
        let (report, stored) = futures::join!(
            self.ports.iam.credential_report(),
            self.ports.store.list_stored()
        );
        let (report, stored) = match (report, stored) {
            (Ok(Some(report)), Ok(Some(stored))) => (report, stored),
            (Ok(_), Ok(_)) => return BTreeMap::new(),
            (Err(error), _) => {
                warn!(error = %error_chain(&error), "no credential report: observing every user");
                return BTreeMap::new();
            }
            (_, Err(error)) => {
                warn!(error = %error_chain(&error), "no listing of the secrets: observing every user");
                return BTreeMap::new();
            }
        };
        let interval = self.policy.schedule_interval();
        let empty = StoredUser::default();
        let mut idle = BTreeMap::new();
        for user in users {
            if survey::full_look_due(&user.0, interval, now) {
                continue;
            }
            let listed = stored.get(&user.0).unwrap_or(&empty);
            match survey::triage(&user.0, &report, listed, &self.policy, now) {
                // A warning is due before a forced deactivation: the step loop sends it.
                Triage::Idle { wait, .. }
                    if warning_ahead(&Step::Wait(wait.clone()), &self.policy, now).is_some() => {}
                Triage::Idle { wait, keys } => {
                    idle.insert(user.0.clone(), (wait, keys));
                }
                Triage::Look(why) => debug!(user = %user.0, "observing: {why}"),
            }
        }
        info!(
            users = users.len(),
            idle = idle.len(),
            report_generated = %report.generated,
            "survey"
        );
        idle
    }

    /// Reconciles one user: steps until it waits, is blocked, or a step fails. Before its first
    /// change it claims the user's lease (and observes again, as another run may have acted
    /// meanwhile); a dry run changes nothing and claims nothing.
    pub async fn reconcile(&self, user: ManagedUser, request: Request) -> UserReport {
        let mut run = UserRun {
            user: user.0,
            steps: Vec::new(),
            lease: None,
        };
        let (outcome, keys) = match self.observe(&run.user).await {
            Ok(mut obs) => {
                obs.force = request.force;
                obs.rollback = request.rollback;
                let outcome = self.drive(&mut run, &mut obs, request.dry_run).await;
                (outcome, obs.keys)
            }
            Err(error) => (self.failed(&run, None, error).await, Vec::new()),
        };
        if let Some(held) = run.lease.take()
            && let Err(error) = self.ports.lease.release(&run.user, &held.token).await
        {
            // It expires by itself.
            warn!(error = %error_chain(&error), "could not release the lease");
        }
        UserReport {
            user: run.user,
            steps: run.steps,
            outcome,
            keys,
        }
    }

    /// The step loop of [`Rotator::reconcile`].
    async fn drive(&self, run: &mut UserRun, obs: &mut Observation, dry_run: bool) -> Outcome {
        let mut fresh: Option<Credentials> = None;
        let mut verify_attempts = 0u32;
        let mut reobserved = 0u32;
        loop {
            let now = self.ports.clock.now();
            let step = plan(obs, &self.policy, now);
            if dry_run && !step.is_read_only() {
                return Outcome::Planned(step);
            }
            if run.steps.len() >= MAX_STEPS {
                let error = StepError::TooManySteps(MAX_STEPS);
                return self.failed(run, Some(step), error).await;
            }
            match &step {
                Step::Wait(wait) => {
                    if let Some((key, at)) = warning_ahead(&step, &self.policy, now) {
                        self.notify(Notice::WillForceDeactivate {
                            user: run.user.clone(),
                            key,
                            at,
                        })
                        .await;
                    }
                    debug!(%step, "settled");
                    return Outcome::Waiting(wait.clone());
                }
                Step::Blocked(blocked) => {
                    warn!(reason = %blocked, "blocked");
                    // A rollback with nothing to go back to is the asker's error, not an alert.
                    if *blocked != Blocked::NothingToRollBackTo {
                        self.notify(Notice::Blocked {
                            user: run.user.clone(),
                            reason: blocked.to_string(),
                        })
                        .await;
                    }
                    return Outcome::Blocked(blocked.clone());
                }
                _ => {}
            }
            if !step.is_read_only() {
                match self.hold(run, now).await {
                    Ok(Hold::Kept) => {}
                    Ok(Hold::Acquired) => {
                        // What was observed before the claim may be stale: another run may
                        // have acted on the user until it released it.
                        match self.observe(&run.user).await {
                            Ok(seen) => obs.refresh(seen),
                            Err(error) => return self.failed(run, Some(step), error).await,
                        }
                        continue;
                    }
                    Ok(Hold::Taken { until }) => {
                        info!(%until, "another run holds the user");
                        return Outcome::Busy { until };
                    }
                    Err(error) => return self.failed(run, Some(step), error).await,
                }
            }
            info!(%step, "step");
            match self.perform(obs, &step, &mut fresh, now).await {
                Ok(Progress::Done) => {
                    verify_attempts = 0;
                    run.steps.push(step);
                }
                Ok(Progress::NotYet { deadline }) => {
                    // IAM has not propagated the key yet: wait and try again, within the
                    // verify timeout (past it the planner gives up on the key).
                    verify_attempts += 1;
                    let left =
                        Duration::try_from(deadline.duration_since(now)).unwrap_or(Duration::ZERO);
                    debug!(
                        attempt = verify_attempts,
                        "the key does not authenticate yet"
                    );
                    self.ports
                        .clock
                        .sleep(verify_wait(verify_attempts, left))
                        .await;
                    if verify_attempts == 1 {
                        run.steps.push(step);
                    }
                }
                Ok(Progress::Discarded(key)) => {
                    run.steps.push(step);
                    return Outcome::Discarded(key);
                }
                Err(error) if error.is_ambiguous() && reobserved < MAX_REOBSERVE => {
                    // The call may have had its effect: observe again, never repeat it blindly.
                    reobserved += 1;
                    warn!(%step, error = %error_chain(&error), "step may have had its effect; observing again");
                    match self.observe(&run.user).await {
                        Ok(seen) => obs.refresh(seen),
                        Err(_) => return self.failed(run, Some(step), error).await,
                    }
                    if let Step::Publish(key) = &step
                        && obs.stored.current() == Some(key)
                    {
                        // It did: the key is published.
                        self.published(obs, key, None).await;
                        run.steps.push(step);
                    }
                }
                Err(error) => return self.failed(run, Some(step), error).await,
            }
        }
    }

    /// Makes sure this run holds `run.user`'s lease for long enough to take a step.
    async fn hold(&self, run: &mut UserRun, now: Timestamp) -> Result<Hold, StepError> {
        let until = now + self.lease_duration;
        let lease = &self.ports.lease;
        match &mut run.lease {
            Some(held) => {
                let left = Duration::try_from(held.until.duration_since(now)).unwrap_or_default();
                if left >= self.lease_duration / 2 {
                    return Ok(Hold::Kept);
                }
                if lease.renew(&run.user, &held.token, until).await? {
                    held.until = until;
                    Ok(Hold::Kept)
                } else {
                    run.lease = None;
                    Err(StepError::LeaseLost)
                }
            }
            None => match lease.acquire(&run.user, now, until).await? {
                Claim::Granted(token) => {
                    run.lease = Some(Held { token, until });
                    Ok(Hold::Acquired)
                }
                Claim::Taken { until, .. } => Ok(Hold::Taken { until }),
            },
        }
    }

    async fn failed(&self, run: &UserRun, step: Option<Step>, error: StepError) -> Outcome {
        let message = error_chain(&error);
        let doing = step
            .as_ref()
            .map_or_else(|| "observe".to_owned(), Step::to_string);
        warn!(step = %doing, error = %message, retryable = error.is_retryable(), "step failed");
        self.notify(Notice::Failed {
            user: run.user.clone(),
            error: format!("{doing}: {message}"),
        })
        .await;
        Outcome::Failed { step, error }
    }

    /// Reads what IAM and the store say about `user`.
    pub async fn observe(&self, user: &UserName) -> Result<Observation, StepError> {
        let keys = self.ports.iam.list_keys(user).await?;
        let stored = self.ports.store.load(user).await?;
        Ok(Observation::new(user.clone(), keys, stored))
    }

    /// Plans one user without changing anything (read-only observations included).
    pub async fn plan_user(&self, user: &ManagedUser) -> UserReport {
        let request = Request {
            dry_run: true,
            ..Request::default()
        };
        self.reconcile(user.clone(), request).await
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
            Step::DeleteOrphan(key)
            | Step::MakeRoom(key)
            | Step::Delete(key)
            | Step::Unstage(key) => {
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
                // Say first that a key is coming: if its secret is lost (a lost reply, a
                // crash before it is stored), the next observation knows the key for keyrot's
                // own orphan, never adopts it and deletes it.
                let intent = Intent::new(now, &obs.keys);
                store.record_intent(&user, &intent).await?;
                obs.stored.intent = Some(intent);
                let new = iam.create_key(&user).await?;
                obs.keys.push(new.key.clone());
                let credentials = new.credentials();
                *fresh = Some(credentials.clone());
                // Stage at once: the secret exists nowhere else.
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
            }
            Step::Reactivate(key) => {
                iam.set_status(&user, key, KeyStatus::Active).await?;
                if let Some(k) = obs.keys.iter_mut().find(|k| &k.id == key) {
                    k.status = KeyStatus::Active;
                }
                obs.reactivated = Some(now);
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
                    // A re-activated key's propagation runs from its re-activation.
                    let since = obs.reactivated.filter(|_| obs.rollback).unwrap_or(created);
                    return Ok(Progress::NotYet {
                        deadline: since + self.policy.verify_timeout(),
                    });
                }
            }
            Step::Publish(key) => {
                let old = obs.stored.current().cloned();
                store.promote(&user, key).await?;
                // As Secrets Manager moves the labels.
                for v in &mut obs.stored.versions {
                    let is_new = &v.key_id == key;
                    let was_current = v.stages.current;
                    v.stages.previous = !is_new && was_current;
                    v.stages.current = is_new;
                }
                self.published(obs, key, old).await;
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

    /// What follows a publication (the observation shows it already): a forced rotation or a
    /// rollback is done, and an administrator hears of it. `old` is the key that was current
    /// (read from the observation when unknown).
    async fn published(&self, obs: &mut Observation, key: &AccessKeyId, old: Option<AccessKeyId>) {
        // The version that lost `AWSCURRENT`, or, at the first publication, the adopted key.
        let old = old
            .or_else(|| {
                obs.stored
                    .versions
                    .iter()
                    .find(|v| v.stages.previous && &v.key_id != key)
                    .map(|v| v.key_id.clone())
            })
            .or_else(|| {
                obs.keys
                    .iter()
                    .find(|k| &k.id != key && obs.stored.marks_of(&k.id).adopted.is_some())
                    .map(|k| k.id.clone())
            });
        obs.force = false;
        obs.rollback = false;
        info!(new = %key, old = ?old, "published");
        self.notify(Notice::Rotated {
            user: obs.user.clone(),
            new: key.clone(),
            old,
        })
        .await;
    }

    /// Re-activates the previous key and makes it current again (steps of the planner:
    /// re-activate, verify, publish); the key that was current is superseded from then on and
    /// goes through grace, deactivation and deletion as usual.
    pub async fn rollback(&self, user: &UserName) -> Result<AccessKeyId, RollbackError> {
        let managed = self
            .managed(user)
            .await
            .map_err(StepError::from)?
            .ok_or_else(|| RollbackError::NotManaged(user.clone()))?;
        let request = Request {
            rollback: true,
            ..Request::default()
        };
        let report = self.reconcile(managed, request).await;
        let published = report.steps.iter().find_map(|s| match s {
            Step::Publish(key) => Some(key.clone()),
            _ => None,
        });
        if let Some(key) = published {
            info!(%key, "rolled back");
            return Ok(key);
        }
        Err(match report.outcome {
            Outcome::Blocked(Blocked::NothingToRollBackTo) => RollbackError::NoPreviousKey,
            Outcome::Blocked(Blocked::RollbackDidNotAuthenticate(key)) => {
                RollbackError::DidNotAuthenticate(key)
            }
            Outcome::Blocked(blocked) => RollbackError::Blocked(blocked),
            Outcome::Busy { until } => RollbackError::Busy { until },
            Outcome::Failed { error, .. } => RollbackError::Step(error),
            // The planner's rollback ends in a publication, a block or a failure.
            other => RollbackError::Step(StepError::Unfinished(other.to_string())),
        })
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

/// One user's run as it goes: the steps taken and the lease held.
struct UserRun {
    user: UserName,
    steps: Vec<Step>,
    lease: Option<Held>,
}

/// A lease this run holds.
struct Held {
    token: LeaseToken,
    until: Timestamp,
}

enum Hold {
    /// Held already, for long enough.
    Kept,
    /// Just claimed.
    Acquired,
    /// Another run holds the user.
    Taken { until: Timestamp },
}

/// How long to wait before trying a key that does not authenticate yet again: 2 s, 4 s, then
/// 8 s, but no longer than the `left` of the verify timeout (so that one attempt falls on the
/// deadline), and at least one second (so that time moves, and the planner gives up after the
/// attempt at the deadline).
fn verify_wait(attempt: u32, left: Duration) -> Duration {
    let backoff = Duration::from_secs(1 << attempt.clamp(1, 3));
    backoff.min(left.max(Duration::from_secs(1)))
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
