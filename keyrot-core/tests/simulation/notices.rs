//! The alert-repeat rule, checked: a standing condition (a block, a failure, an old key still
//! in use) is notified once, held back within the repeat period and sent again after it; a
//! notice is never lost because of the rule. The rotator decides ([`held_back`]); the checker
//! sees every notice that goes out and every run's outcome.

use keyrot_core::driver::{error_chain, held_back};
use keyrot_core::{Notice, Notifier, NotifyError};

use super::*;

/// The repeat period of the simulation's rotators (the default).
pub(crate) const REPEAT_AFTER: Duration = keyrot_core::driver::DEFAULT_ALERT_REPEAT_AFTER;

/// The last standing condition notified about a user, and what the world was like then.
#[derive(Clone)]
pub(crate) struct Delivered {
    pub(crate) fingerprint: String,
    pub(crate) at: Timestamp,
    /// [`faults`] then: a fault since (a failed record, a failed load, a crash) excuses a repeat.
    pub(crate) faults: (u64, u64, bool),
    /// Whether two processes were running at once: both may send.
    pub(crate) concurrent: bool,
}

/// The notifier as the rotators see it: checks each standing notice against the last one
/// sent about its user, then hands it to the fake's recording notifier.
pub(crate) struct CheckedNotifier(pub(crate) Arc<World>);

#[async_trait]
impl Notifier for CheckedNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        futures_yield().await;
        let world = &self.0;
        if notice.is_standing() {
            let now = world.aws.clock.now();
            let delivered = Delivered {
                fingerprint: notice.fingerprint(),
                at: now,
                faults: faults(&world.aws),
                concurrent: world.seen().concurrent,
            };
            let mut seen = world.seen();
            let user = notice.user().clone();
            if let Some(last) = seen.last_delivered.get(&user).cloned()
                && last.fingerprint == delivered.fingerprint
            {
                if now < last.at + REPEAT_AFTER {
                    // A crashed process fails every call, the record of the notice included.
                    let excused = last.faults != delivered.faults
                        || delivered.faults.2
                        || delivered.concurrent;
                    if !excused {
                        seen.violations.push(format!(
                            "{user}: \"{notice}\" sent again {} after the same notice, within \
                             the repeat period",
                            now.duration_since(last.at)
                        ));
                    }
                } else {
                    seen.repeats_sent += 1;
                }
            }
            seen.delivered_at
                .insert((user.clone(), delivered.fingerprint.clone()), now);
            seen.last_delivered.insert(user, delivered);
        }
        world.aws.notifier.notify(notice).await
    }
}

/// The standing condition a user's run ended in, as the rotator notifies it, if any.
pub(crate) fn standing_notice(user: &UserReport) -> Option<Notice> {
    match &user.outcome {
        Outcome::Blocked(Blocked::NothingToRollBackTo) => None,
        Outcome::Blocked(blocked) => Some(Notice::Blocked {
            user: user.user.clone(),
            reason: blocked.to_string(),
        }),
        Outcome::Failed { step, error } => {
            let doing = step
                .as_ref()
                .map_or_else(|| "observe".to_owned(), Step::to_string);
            Some(Notice::Failed {
                user: user.user.clone(),
                error: format!("{doing}: {}", error_chain(error)),
            })
        }
        _ => None,
    }
}

impl World {
    /// After a run of one process: a user that ended in a standing condition was notified of
    /// it, in this run or (held back) within the repeat period before. Returns whether it was
    /// held back.
    pub(crate) fn notified(&self, report: &RunReport, user: &UserReport) -> bool {
        let Some(notice) = standing_notice(user) else {
            return false;
        };
        let now = self.aws.clock.now();
        let mut seen = self.seen();
        // The same notice went out lately: in this run, or, held back, within the period before
        // (another one may have gone out since, if its record failed). A run takes minutes of
        // simulated time (verify waits): an hour's slack.
        let last = seen
            .delivered_at
            .get(&(user.user.clone(), notice.fingerprint()))
            .copied();
        let recent = last.is_some_and(|at| now < at + REPEAT_AFTER + HOUR);
        if !recent {
            seen.violations.push(format!(
                "{}: ended {} but \"{notice}\" was not notified",
                user.user, user.outcome
            ));
        }
        recent && last.is_some_and(|at| at < report.started)
    }
}

/// The rule itself, on the rotator's pure function: the same standing notice is held back
/// within the period and goes out after it; another condition, another user, an event, or an
/// unknown last notice always go out.
#[test]
fn the_repeat_rule_holds_back_only_the_same_standing_notice_within_the_period() {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let blocked = |name: &str, reason: &str| Notice::Blocked {
        user: user(name),
        reason: reason.to_owned(),
    };
    let notice = blocked("alice", "two keys, both in use");
    let sent = SentNotice {
        fingerprint: notice.fingerprint(),
        at: start,
    };
    let at = |d: Duration| start + d;
    assert!(held_back(&notice, Some(&sent), at(Duration::ZERO), DAY));
    assert!(held_back(
        &notice,
        Some(&sent),
        at(DAY - Duration::from_secs(1)),
        DAY
    ));
    assert!(!held_back(&notice, Some(&sent), at(DAY), DAY));
    assert!(!held_back(&notice, None, at(HOUR), DAY));
    assert!(!held_back(
        &blocked("alice", "another reason"),
        Some(&sent),
        at(HOUR),
        DAY
    ));
    assert!(!held_back(
        &blocked("bob", "two keys, both in use"),
        Some(&sent),
        at(HOUR),
        DAY
    ));
    assert!(!held_back(&notice, Some(&sent), at(HOUR), Duration::ZERO));
    let event = Notice::Rotated {
        user: user("alice"),
        new: AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap(),
        old: None,
    };
    let sent_event = SentNotice {
        fingerprint: event.fingerprint(),
        at: start,
    };
    assert!(!held_back(&event, Some(&sent_event), at(HOUR), DAY));
}

/// A rotator on fault-free fakes with a schedule of an hour and the default repeat period.
fn scenario() -> (FakeAws, Rotator) {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let aws = FakeAws::new(start, 11, FaultRates::none());
    let policy = Policy::builder()
        .rotation_period(30 * DAY)
        .grace(DAY)
        .max_grace(2 * DAY)
        .recovery_window(DAY)
        .quiet_period(6 * HOUR)
        .last_used_lag(Duration::ZERO)
        .verify_timeout(Duration::from_secs(300))
        .schedule_interval(HOUR)
        .build()
        .unwrap();
    let rotator = Rotator::new(aws.ports(), policy).with_concurrency(1);
    (aws, rotator)
}

/// Runs every `every` for `hours`, returning each notice with the hour it went out.
fn notices_over(
    aws: &FakeAws,
    rotator: &Rotator,
    every: Duration,
    runs: u32,
) -> Vec<(u64, Notice)> {
    let start = aws.clock.now();
    let mut out = Vec::new();
    for _ in 0..runs {
        block_on(rotator.run(&RunOptions::default())).unwrap();
        let hour = aws.clock.now().duration_since(start).as_secs() as u64 / 3600;
        out.extend(aws.notifier.take().into_iter().map(|n| (hour, n)));
        aws.clock.advance(every);
    }
    out
}

#[test]
fn a_block_is_notified_once_held_back_within_the_period_and_sent_again_after_it() {
    let (aws, rotator) = scenario();
    let bob = user("bob");
    aws.iam.add_managed_user(bob.clone());
    let start = aws.clock.now();
    aws.iam.add_key(&bob, KeyStatus::Active, start).unwrap();
    aws.iam.add_key(&bob, KeyStatus::Active, start).unwrap();
    let blocked = Notice::Blocked {
        user: bob.clone(),
        reason: Blocked::TwoKeysInService.to_string(),
    };
    // Every six hours for two days and a half: at 0h, then at 24h and 48h, and never between.
    let sent = notices_over(&aws, &rotator, 6 * HOUR, 11);
    assert_eq!(
        sent,
        [
            (0, blocked.clone()),
            (24, blocked.clone()),
            (48, blocked.clone())
        ]
    );
    let stored = aws.store.snapshot(&bob).last_notice.unwrap();
    assert_eq!(stored.fingerprint, blocked.fingerprint());
    assert_eq!(stored.at, start + 2 * DAY);

    // A new, different condition goes out at once, within the period of the block...
    aws.clock.advance(HOUR);
    aws.plan.fail_at(op::IAM_LIST_KEYS, FaultKind::Throttle);
    let failed = notices_over(&aws, &rotator, HOUR, 1);
    assert!(
        matches!(failed.as_slice(), [(_, Notice::Failed { user, error })] if user == &bob && error.starts_with("observe: ")),
        "{failed:?}"
    );
    // ... and the block, standing again after it, is not lost either.
    let again = notices_over(&aws, &rotator, HOUR, 2);
    assert_eq!(again.iter().map(|(_, n)| n).collect::<Vec<_>>(), [&blocked]);
}

#[test]
fn a_forced_deactivation_warning_is_sent_once_whatever_the_runs() {
    let (aws, rotator) = scenario();
    let alice = user("alice");
    aws.iam.add_managed_user(alice.clone());
    let start = aws.clock.now();
    let legacy = aws
        .iam
        .add_key(&alice, KeyStatus::Active, start - 40 * DAY)
        .unwrap();
    block_on(rotator.run(&RunOptions::default())).unwrap();
    aws.notifier.take();
    // A consumer keeps using the old key; runs every ten minutes (two schedulers, say).
    let creds = legacy.credentials();
    let mut warnings = Vec::new();
    for _ in 0..(2 * 24 * 6) {
        aws.clock.advance(Duration::from_secs(600));
        aws.iam.authenticate(&creds, aws.clock.now()).unwrap();
        block_on(rotator.run(&RunOptions::default())).unwrap();
        warnings.extend(
            aws.notifier
                .take()
                .into_iter()
                .filter(|n| matches!(n, Notice::WillForceDeactivate { .. })),
        );
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn the_record_of_a_notice_is_written_only_by_a_run_that_may_write() {
    let (aws, rotator) = scenario();
    let bob = user("bob");
    aws.iam.add_managed_user(bob.clone());
    let start = aws.clock.now();
    aws.iam.add_key(&bob, KeyStatus::Active, start).unwrap();
    aws.iam.add_key(&bob, KeyStatus::Active, start).unwrap();
    let dry = RunOptions {
        dry_run: true,
        ..RunOptions::default()
    };
    block_on(rotator.run(&dry)).unwrap();
    assert_eq!(aws.notifier.take().len(), 1, "a dry run still tells");
    assert_eq!(aws.store.snapshot(&bob).last_notice, None);
    assert_eq!(aws.plan.calls(op::STORE_RECORD_NOTICE), 0);
    // A failed record is a repeat next run, never a lost alert.
    aws.plan
        .fail_at(op::STORE_RECORD_NOTICE, FaultKind::FailBefore);
    block_on(rotator.run(&RunOptions::default())).unwrap();
    block_on(rotator.run(&RunOptions::default())).unwrap();
    assert_eq!(aws.notifier.take().len(), 2);
    block_on(rotator.run(&RunOptions::default())).unwrap();
    assert_eq!(aws.notifier.take().len(), 0);
}
