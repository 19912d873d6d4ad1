//! The driver: observes a user, asks the [planner](mod@crate::plan), performs the one step, records
//! its effect and asks again, until the user is waiting or blocked. Runs all managed users with
//! bounded concurrency; one user's failure never stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::model::{
    AccessKey, AccessKeyId, Credentials, SentNotice, StoredUser, Timestamp, UserName,
};
use crate::plan::{Blocked, Observation, Step, Wait, plan, warning_ahead};
use crate::policy::Policy;
use crate::ports::{
    Clock, Iam, IamError, Lease, Notice, Notifier, Pressure, SecretStore, Verifier,
};
use crate::survey::{self, LookReason, Triage};

/// What a survey says of a run's users (see [`Rotator::survey`]).
#[derive(Debug, Default)]
struct Survey {
    /// Skipped this run: what each waits for, and its keys as the survey sees them.
    idle: BTreeMap<UserName, (Wait, Vec<AccessKey>)>,
    /// About to change: claimed before they are observed.
    act: BTreeSet<UserName>,
}

mod claims;
mod concurrency;
mod delivery;
mod errors;
mod notices;
mod observer;
mod perform;
mod report;

use claims::{Held, Hold, RunClaims};
pub use concurrency::Concurrency;
use concurrency::Gate;
pub use errors::{RollbackError, RunError, StepError};
pub use notices::held_back;
pub use observer::{RunObserver, Unobserved};
use perform::{Progress, verify_wait};
pub use report::{Outcome, RunReport, UserReport, error_chain};

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
/// How long a standing condition's notice is held back by default (see
/// [`Rotator::with_alert_repeat_after`]).
pub const DEFAULT_ALERT_REPEAT_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Reconciles managed users' keys with the policy.
#[derive(Debug, Clone)]
pub struct Rotator {
    ports: Ports,
    policy: Policy,
    concurrency: Concurrency,
    pressure: Option<Arc<dyn Pressure>>,
    lease_duration: Duration,
    alert_repeat_after: Duration,
    delivery: delivery::DeliveryPort,
}

impl Rotator {
    /// A rotator working through `ports` under `policy`, [`Concurrency::DEFAULT`] users at a
    /// time, holding each user it acts on for 15 minutes at a time (at least three verify
    /// timeouts).
    pub fn new(ports: Ports, policy: Policy) -> Self {
        let lease_duration = MIN_LEASE.max(policy.verify_timeout() * 3);
        Self {
            ports,
            policy,
            concurrency: Concurrency::DEFAULT,
            pressure: None,
            lease_duration,
            alert_repeat_after: DEFAULT_ALERT_REPEAT_AFTER,
            delivery: delivery::DeliveryPort::default(),
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

    /// A standing condition (a blocked or failing user, an old key still in use) is notified
    /// once, then held back until `period` has passed since ([`held_back`]); events always go
    /// out. Default [`DEFAULT_ALERT_REPEAT_AFTER`]; zero sends every repeat.
    #[must_use]
    pub fn with_alert_repeat_after(mut self, period: Duration) -> Self {
        self.alert_repeat_after = period;
        self
    }

    /// How many users are reconciled at once: always `concurrency` (at least one).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = Concurrency::Fixed(concurrency.max(1));
        self
    }

    /// How many users are reconciled at once, fixed or adaptive ([`Concurrency`]).
    #[must_use]
    pub fn with_concurrency_limit(mut self, concurrency: Concurrency) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Where the adaptive concurrency learns of throttling the adapters absorbed (without it,
    /// only the port calls that fail on throttling count).
    #[must_use]
    pub fn with_pressure(mut self, pressure: Arc<dyn Pressure>) -> Self {
        self.pressure = Some(pressure);
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
        self.run_observed(options, &Unobserved).await
    }

    /// [`Rotator::run`], telling `observer` of each user as it is done.
    pub async fn run_observed(
        &self,
        options: &RunOptions,
        observer: &dyn RunObserver,
    ) -> Result<RunReport, RunError> {
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
        let Survey { mut idle, act } = if options.force || !options.users.is_empty() {
            Survey::default()
        } else {
            self.survey(&users, started).await
        };
        observer.started(reports.len() + users.len());
        let (skipped, users): (Vec<ManagedUser>, Vec<ManagedUser>) =
            users.into_iter().partition(|u| idle.contains_key(&u.0));
        // A user about to change is claimed before it is observed (observing it first would
        // have to be done again once it is held), with the next ones, in batches.
        let claim_first =
            |user: &UserName| !request.dry_run && (request.force || act.contains(user));
        let claims = RunClaims::new(
            self.ports.lease.clone(),
            self.ports.clock.clone(),
            self.lease_duration,
            users
                .iter()
                .map(|u| u.0.clone())
                .filter(|u| claim_first(u))
                .collect(),
        );
        let gate = Gate::new(self.concurrency, self.pressure.clone());
        let (claims, claim_first, gate) = (&claims, &claim_first, &gate);
        reports.extend(skipped.into_iter().filter_map(|user| {
            let (wait, keys) = idle.remove(&user.0)?;
            Some(UserReport {
                user: user.0,
                steps: Vec::new(),
                outcome: Outcome::Waiting(wait),
                keys,
            })
        }));
        reports.iter().for_each(|r| observer.user_done(r));
        let done: Vec<UserReport> = futures::stream::iter(users)
            .map(|user| async move {
                // Waiting for a place counts against the deadline.
                let mut pass = gate.enter().await;
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
                let first = claim_first(&user.0);
                let report = self
                    .reconcile_claimed(user, request, first, Some(claims))
                    .instrument(span)
                    .await;
                if report.throttled() {
                    pass.throttled();
                }
                report
            })
            .buffer_unordered(self.concurrency.max())
            .inspect(|report| observer.user_done(report))
            .collect()
            .await;
        claims.finish().await;
        debug!(
            concurrency = gate.limit(),
            "concurrency at the end of the run"
        );
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

    /// What a [survey](crate::survey) says of `users`: who is idle, with what each waits for
    /// and its keys as the survey sees them, and who is about to change. Nothing when the ports
    /// offer no bulk reads or one fails (the run then observes every user, as without a
    /// survey). Users due for their periodic full look are neither.
    async fn survey(&self, users: &[ManagedUser], now: Timestamp) -> Survey {
        let (report, stored) = futures::join!(
            self.ports.iam.credential_report(),
            self.ports.store.list_stored()
        );
        let (report, stored) = match (report, stored) {
            (Ok(Some(report)), Ok(Some(stored))) => (report, stored),
            (Ok(_), Ok(_)) => return Survey::default(),
            (Err(error), _) => {
                warn!(error = %error_chain(&error), "no credential report: observing every user");
                return Survey::default();
            }
            (_, Err(error)) => {
                warn!(error = %error_chain(&error), "no listing of the secrets: observing every user");
                return Survey::default();
            }
        };
        let interval = self.policy.schedule_interval();
        let undelivered = self.undelivered(users, &stored).await;
        let empty = StoredUser::default();
        let mut survey = Survey::default();
        for user in users {
            let listed = stored.get(&user.0).unwrap_or(&empty);
            let likely = survey::rotation_likely(&user.0, &report, listed, &self.policy, now);
            if survey::full_look_due(&user.0, interval, now) {
                if likely {
                    survey.act.insert(user.0.clone());
                }
                continue;
            }
            match survey::triage(&user.0, &report, listed, &self.policy, now) {
                // A warning is due before a forced deactivation: the step loop sends it.
                Triage::Idle { wait, .. }
                    if warning_ahead(&Step::Wait(wait.clone()), &self.policy, now).is_some() => {}
                // A destination lacks the current key: the step loop delivers it.
                Triage::Idle { .. } if undelivered.contains(&user.0) => {}
                Triage::Idle { wait, keys } => {
                    survey.idle.insert(user.0.clone(), (wait, keys));
                }
                Triage::Look(why) => {
                    debug!(user = %user.0, "observing: {why}");
                    // A rotation is foreseen by `likely` alone: the report's times are whole
                    // seconds, and the plan made from them may see a key due a second early.
                    let planned = matches!(&why, LookReason::Planned(step)
                        if !step.is_read_only()
                            && !matches!(step, Step::CreateAndStage | Step::MakeRoom(_)));
                    if planned || likely {
                        survey.act.insert(user.0.clone());
                    }
                }
            }
        }
        info!(
            users = users.len(),
            idle = survey.idle.len(),
            to_change = survey.act.len(),
            report_generated = %report.generated,
            "survey"
        );
        survey
    }

    /// Reconciles one user: steps until it waits, is blocked, or a step fails. Before its first
    /// change it claims the user's lease (and observes again, as another run may have acted
    /// meanwhile); a dry run changes nothing and claims nothing.
    pub async fn reconcile(&self, user: ManagedUser, request: Request) -> UserReport {
        self.reconcile_claimed(user, request, false, None).await
    }

    /// [`Rotator::reconcile`], claiming the user before observing it when `claim_first` (a
    /// change is expected: the observation made before a claim would be made again after it),
    /// with the claims of the run it is part of, if any.
    async fn reconcile_claimed(
        &self,
        user: ManagedUser,
        request: Request,
        claim_first: bool,
        claims: Option<&RunClaims>,
    ) -> UserReport {
        let mut run = UserRun {
            user: user.0,
            steps: Vec::new(),
            lease: None,
            claims,
            dry_run: request.dry_run,
        };
        if claim_first && !request.dry_run {
            let claimed = match self.hold(&mut run, self.ports.clock.now()).await {
                Ok(Hold::Acquired | Hold::Kept) => None,
                Ok(Hold::Taken { until }) => {
                    info!(%until, "another run holds the user");
                    Some(Outcome::Busy { until })
                }
                Err(error) => Some(self.failed(&run, None, error, None).await),
            };
            if let Some(outcome) = claimed {
                return UserReport {
                    user: run.user,
                    steps: run.steps,
                    outcome,
                    keys: Vec::new(),
                };
            }
        }
        let (outcome, keys) = match self.observe(&run.user).await {
            Ok(mut obs) => {
                obs.force = request.force;
                obs.rollback = request.rollback;
                let outcome = self.drive(&mut run, &mut obs, request.dry_run).await;
                (outcome, obs.keys)
            }
            Err(error) => {
                // The last notice sent, if the store can tell, so that a standing failure to
                // observe is not mailed every run.
                let stored = self.ports.store.load(&run.user).await.ok();
                let last = stored.and_then(|s| s.last_notice);
                (
                    self.failed(&run, None, error, last.as_ref()).await,
                    Vec::new(),
                )
            }
        };
        if let Some(held) = run.lease.take() {
            match run.claims {
                Some(claims) => claims.give_back(run.user.clone(), held.token).await,
                None => {
                    if let Err(error) = self.ports.lease.release(&run.user, &held.token).await {
                        // It expires by itself.
                        warn!(error = %error_chain(&error), "could not release the lease");
                    }
                }
            }
        }
        UserReport {
            user: run.user,
            steps: run.steps,
            outcome,
            keys,
        }
    }

    /// The step loop of [`Rotator::reconcile`].
    async fn drive(&self, run: &mut UserRun<'_>, obs: &mut Observation, dry_run: bool) -> Outcome {
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
                return self
                    .failed(run, Some(step), error, obs.stored.last_notice.as_ref())
                    .await;
            }
            match &step {
                Step::Wait(wait) => {
                    if let Some((key, at)) = warning_ahead(&step, &self.policy, now) {
                        let notice = Notice::WillForceDeactivate {
                            user: run.user.clone(),
                            key,
                            at,
                        };
                        self.alert(run, notice, obs.stored.last_notice.as_ref())
                            .await;
                    }
                    if let Some(notice) = Self::undelivered_notice(obs) {
                        self.alert(run, notice, obs.stored.last_notice.as_ref())
                            .await;
                    }
                    debug!(%step, "settled");
                    return Outcome::Waiting(wait.clone());
                }
                Step::Blocked(blocked) => {
                    warn!(reason = %blocked, "blocked");
                    // A rollback with nothing to go back to is the asker's error, not an alert.
                    if *blocked != Blocked::NothingToRollBackTo {
                        let notice = Notice::Blocked {
                            user: run.user.clone(),
                            reason: blocked.to_string(),
                        };
                        self.alert(run, notice, obs.stored.last_notice.as_ref())
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
                            Err(error) => {
                                return self
                                    .failed(run, Some(step), error, obs.stored.last_notice.as_ref())
                                    .await;
                            }
                        }
                        continue;
                    }
                    Ok(Hold::Taken { until }) => {
                        info!(%until, "another run holds the user");
                        return Outcome::Busy { until };
                    }
                    Err(error) => {
                        return self
                            .failed(run, Some(step), error, obs.stored.last_notice.as_ref())
                            .await;
                    }
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
                        Err(_) => {
                            return self
                                .failed(run, Some(step), error, obs.stored.last_notice.as_ref())
                                .await;
                        }
                    }
                    if let Step::Publish(key) = &step
                        && obs.stored.current() == Some(key)
                    {
                        // It did: the key is published.
                        self.published(obs, key, None).await;
                        run.steps.push(step);
                    }
                }
                Err(error) => {
                    return self
                        .failed(run, Some(step), error, obs.stored.last_notice.as_ref())
                        .await;
                }
            }
        }
    }

    /// Ends `run` with a failure: logs it and alerts (`last` is the last notice sent about
    /// the user, as far as known).
    async fn failed(
        &self,
        run: &UserRun<'_>,
        step: Option<Step>,
        error: StepError,
        last: Option<&SentNotice>,
    ) -> Outcome {
        let message = error_chain(&error);
        let doing = step
            .as_ref()
            .map_or_else(|| "observe".to_owned(), Step::to_string);
        warn!(step = %doing, error = %message, ambiguous = error.is_ambiguous(), "step failed");
        let notice = Notice::Failed {
            user: run.user.clone(),
            error: format!("{doing}: {message}"),
        };
        self.alert(run, notice, last).await;
        Outcome::Failed { step, error }
    }

    /// Reads what IAM and the store say about `user`.
    pub async fn observe(&self, user: &UserName) -> Result<Observation, StepError> {
        let keys = self.ports.iam.list_keys(user).await?;
        let ids: Vec<AccessKeyId> = keys.iter().map(|k| k.id.clone()).collect();
        let stored = self.ports.store.load_for(user, &ids).await?;
        let mut obs = Observation::new(user.clone(), keys, stored);
        obs.destinations = self.delivery.destinations(user).await?;
        Ok(obs)
    }

    /// Plans one user without changing anything (read-only observations included).
    pub async fn plan_user(&self, user: &ManagedUser) -> UserReport {
        let request = Request {
            dry_run: true,
            ..Request::default()
        };
        self.reconcile(user.clone(), request).await
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
}

/// One user's run as it goes: the steps taken and the lease held.
struct UserRun<'c> {
    user: UserName,
    steps: Vec<Step>,
    lease: Option<Held>,
    /// The claims of the run over many users this is part of.
    claims: Option<&'c RunClaims>,
    /// A dry run writes nothing, not even the record of a notice sent.
    dry_run: bool,
}
