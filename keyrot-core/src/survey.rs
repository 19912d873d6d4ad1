//! The survey: which users need a closer look, decided from a few account-wide reads.
//!
//! Observing one user costs a ListAccessKeys and a read of its secret. Over thousands of users,
//! almost all of whom are only waiting for their next rotation or for a grace period to end,
//! that is almost all of a run's calls. So a run may start with bulk reads: IAM's credential
//! report ([`CredentialReport`]: every user's keys, whether each is active and when it was
//! created, but no key ids) and a listing of keyrot's secrets (each user's [`StoredUser`]:
//! versions with their labels, the marks and the last intent). [`triage`] then tells for each
//! user whether those reads prove that the [planner](mod@crate::plan) would only wait; only the
//! other users are observed one by one.
//!
//! # What a survey may and may not decide
//!
//! A survey only ever lets a run *skip* a user. Every step, above all a deactivation or a
//! deletion, is still planned from a fresh observation of that one user. The worst a stale
//! survey can do is to notice a change made outside keyrot later:
//!
//! - IAM makes a new credential report at most every four hours (GenerateCredentialReport
//!   hands back the last one while it is younger), so a key someone else added, deleted or
//!   deactivated after the report was made is seen by the first run after the next report.
//!   A report older than [`MAX_REPORT_AGE`] proves nothing.
//! - The report names no key ids, so the user's keys are recognised by their creation times:
//!   the keys the user had when keyrot last set out to create one (the [`Intent`] records
//!   them, with their creation times) and the key keyrot made then, created within
//!   [`CREATED_WITHIN`] after the intent. A key created at any other time is someone else's,
//!   and the user is observed. A key made after the report was taken is not in it; the current
//!   key keyrot made under an intent younger than the report is taken as it was made.
//! - A key that someone put in place of keyrot's new one within [`CREATED_WITHIN`] of its
//!   creation would look the same in every report; [`full_look_due`] observes every user in
//!   full about once every [`FULL_LOOK_EVERY`] all the same, so no such change goes unseen for
//!   longer.
//!
//! [`Intent`]: crate::model::Intent

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::model::{AccessKey, KeyStatus, StoredUser, Timestamp, UserName, whole_seconds};
use crate::plan::{Observation, Step, Wait, plan};
use crate::policy::Policy;

/// How old a credential report may be and still count. IAM makes a new report only when the
/// last one is older than four hours ("If a credential report was generated in the last four
/// hours, GenerateCredentialReport does not generate a new one", IAM User Guide, "Getting
/// credential reports"); a few minutes more allow for the call that asks for the new one.
pub const MAX_REPORT_AGE: Duration = Duration::from_secs(4 * 3600 + 10 * 60);

/// How soon after its intent IAM's creation time of the key keyrot made must fall for the
/// survey to take a reported key for that key: CreateAccessKey follows the intent at once and
/// is never retried, so its effect lands within one call timeout (a minute by default), plus
/// the clock skew between keyrot and IAM; [`CLOCK_SKEW`] bounds it the other way. Much tighter than the orphan rule's
/// [`INTENT_WINDOW`](crate::model::INTENT_WINDOW), which errs the other way.
pub const CREATED_WITHIN: Duration = Duration::from_secs(2 * 60);

/// How far keyrot's clock may run ahead of IAM's for the survey to take a key IAM dates before
/// the intent for the key made under it. A key made by someone else within this time before
/// the intent cannot be told from it, and the user is observed instead.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How often every user is observed in full whatever the survey says (see
/// [`full_look_due`]).
pub const FULL_LOOK_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// One key in the credential report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportedKey {
    /// `access_key_N_active`.
    pub active: bool,
    /// `access_key_N_last_rotated`: when the key was created, in whole seconds.
    pub created: Timestamp,
}

/// IAM's credential report, as far as keyrot reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialReport {
    /// When IAM made the report.
    pub generated: Timestamp,
    /// Each user's keys (none for a user without keys); a user created after the report is
    /// missing.
    pub users: BTreeMap<UserName, Vec<ReportedKey>>,
}

/// What the survey says about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Triage {
    /// The bulk reads prove the planner would only wait: skip the user this run.
    Idle {
        /// What the user waits for.
        wait: Wait,
        /// The user's keys as the survey sees them.
        keys: Vec<AccessKey>,
    },
    /// Observe the user one by one.
    Look(LookReason),
}

/// Why the survey cannot skip a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookReason {
    /// The report is older than [`MAX_REPORT_AGE`] (or from the future).
    ReportTooOld,
    /// The user is not in the report (created after it was made).
    NotInReport,
    /// keyrot has not created a key for the user yet, or recorded its intent before it kept
    /// the keys' creation times.
    NoIntent,
    /// A reported key is none of the keys keyrot knows for the user, or could be more than one
    /// of them (made in the same second).
    UnknownKey,
    /// The planner has something to do, or to ask, for the user as the survey sees it.
    Planned(Step),
    /// The user is due for its periodic full look ([`full_look_due`]).
    FullLookDue,
}

impl fmt::Display for LookReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReportTooOld => f.write_str("the credential report is too old"),
            Self::NotInReport => f.write_str("the user is not in the credential report"),
            Self::NoIntent => f.write_str("no recorded intent names the user's keys"),
            Self::UnknownKey => f.write_str("a reported key is not exactly one keyrot knows"),
            Self::Planned(step) => write!(f, "next step: {step}"),
            Self::FullLookDue => f.write_str("due for its periodic full look"),
        }
    }
}

/// Whether the credential report and the listed secret prove that the planner would only wait
/// for `user`, and for what. `stored` is the user's secret as the listing gives it (only
/// labelled versions; empty when the user has no secret).
///
/// `Idle` only when every reported key is recognised (see the [module docs](self)) and
/// [`plan`] on the observation they make is a [`Step::Wait`].
pub fn triage(
    user: &UserName,
    report: &CredentialReport,
    stored: &StoredUser,
    policy: &Policy,
    now: Timestamp,
) -> Triage {
    let age = now.duration_since(report.generated);
    if age.is_negative() || age.unsigned_abs() > MAX_REPORT_AGE {
        return Triage::Look(LookReason::ReportTooOld);
    }
    let Some(reported) = report.users.get(user) else {
        return Triage::Look(LookReason::NotInReport);
    };
    let Some(intent) = stored.intent.as_ref() else {
        return Triage::Look(LookReason::NoIntent);
    };
    if intent.created.len() != intent.existing.len() {
        return Triage::Look(LookReason::NoIntent);
    }
    // The key keyrot made under the intent: the current one, unless it is older.
    let made = stored
        .current()
        .filter(|current| !intent.existing.contains(*current));
    let made_from = whole_seconds(intent.at) - CLOCK_SKEW;
    let made_until = intent.at + CREATED_WITHIN;

    let mut keys: Vec<AccessKey> = Vec::with_capacity(reported.len() + 1);
    for key in reported {
        let status = if key.active {
            KeyStatus::Active
        } else {
            KeyStatus::Inactive
        };
        // Every key this one may be: made in the same second as a key the intent names, or in
        // keyrot's window after it. Exactly one, not taken by another reported key, or the
        // report cannot tell them apart.
        let mut candidates = intent
            .created
            .iter()
            .filter(|(_, created)| **created == key.created)
            .map(|(id, _)| id)
            .chain(made.filter(|_| made_from <= key.created && key.created <= made_until))
            .filter(|id| keys.iter().all(|k| &k.id != *id));
        let (Some(id), None) = (candidates.next(), candidates.next()) else {
            return Triage::Look(LookReason::UnknownKey);
        };
        keys.push(AccessKey {
            id: id.clone(),
            status,
            created: key.created,
        });
    }
    // Made after the report was: not in it yet, and as keyrot made it (active).
    if let Some(made) = made
        && intent.at >= report.generated
        && keys.iter().all(|k| &k.id != made)
    {
        keys.push(AccessKey {
            id: made.clone(),
            status: KeyStatus::Active,
            created: intent.at,
        });
    }

    let observation = Observation::new(user.clone(), keys, stored.clone());
    match plan(&observation, policy, now) {
        Step::Wait(wait) => Triage::Idle {
            wait,
            keys: observation.keys,
        },
        step => Triage::Look(LookReason::Planned(step)),
    }
}

/// Whether the report shows `user` whose newest active key is older than the rotation period
/// (an old key in its grace period beside a young one is no rotation), counting a key keyrot
/// made after the report by `stored`'s intent: a rotation is likely, whatever else the survey could not tell (a user keyrot never rotated
/// has no intent to recognise its keys by). Only a hint, for claiming the user before looking
/// at it; never a reason to act.
pub fn rotation_likely(
    user: &UserName,
    report: &CredentialReport,
    stored: &StoredUser,
    policy: &Policy,
    now: Timestamp,
) -> bool {
    // The report gives whole seconds: the key was made up to a second later.
    let due = |created: Timestamp| created + policy.rotation_period() + Duration::from_secs(1);
    let newest_active = report
        .users
        .get(user)
        .and_then(|keys| keys.iter().filter(|k| k.active).map(|k| k.created).max());
    // A key keyrot made after the report was taken is not in it.
    let made = stored.intent.as_ref().map(|i| i.at);
    newest_active.is_some_and(|created| due(created.max(made.unwrap_or(created))) <= now)
}

/// Whether `user` is due for its full look in the run at `now`: each user has a slot, spread
/// by its name, of one schedule interval in every [`FULL_LOOK_EVERY`], so that a run observes
/// about `interval / FULL_LOOK_EVERY` of the users in full whatever the survey says, and every
/// user about once in that time if runs keep to the schedule.
pub fn full_look_due(user: &UserName, interval: Duration, now: Timestamp) -> bool {
    let interval = interval.as_secs().max(1);
    let slots = (FULL_LOOK_EVERY.as_secs() / interval).max(1);
    let run = now.as_second().unsigned_abs() / interval;
    (run % slots + spread(user) % slots).is_multiple_of(slots)
}

/// A stable spread of user names (FNV-1a), the same on every machine and in every release.
fn spread(user: &UserName) -> u64 {
    user.as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests;
