//! Table-driven tests: one per planner branch, in the form
//! `check("OLD active 101d current; NEW active 1m pending", expect!["verify AKIANEW000000000"])`.
//!
//! Each `;`-separated entry is a key: `NAME STATUS AGE FLAGS...`, where STATUS is `active`,
//! `inactive`, or `gone` (a stored version or marks for a key IAM no longer lists), and the flags
//! are `current`, `pending`, `previous`, `stored` (a version with no label), `adopted=AGO`,
//! `superseded=AGO`, `deactivated=AGO`, `used=AGO|never|unknown`, `verified` and `unverified`
//! (tried in this run and refused). An entry `force` forces rotation, `rollback` asks for one,
//! `intent=AGO` is the intent keyrot recorded before creating a key (the keys created before it
//! existed then), and `reactivated=AGO` is
//! when this run re-activated a key. Ages are `30s`, `5m`, `2h` or `90d` before now.

use std::time::Duration;

use expect_test::{Expect, expect};

use super::*;
use crate::model::{Stages, StoredVersion};

const DAY: u64 = 86_400;

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn policy() -> Policy {
    Policy::builder()
        .rotation_period(Duration::from_secs(90 * DAY))
        .grace(Duration::from_secs(7 * DAY))
        .max_grace(Duration::from_secs(14 * DAY))
        .recovery_window(Duration::from_secs(7 * DAY))
        .quiet_period(Duration::from_secs(DAY))
        .verify_timeout(Duration::from_secs(300))
        .schedule_interval(Duration::from_secs(3600))
        .build()
        .unwrap()
}

fn key_id(name: &str) -> AccessKeyId {
    AccessKeyId::new(format!("AKIA{name:0<12}")).unwrap()
}

fn ago(text: &str) -> Timestamp {
    let (n, unit) = text.split_at(text.len() - 1);
    let n: u64 = n.parse().unwrap();
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * DAY,
        _ => panic!("bad age {text}"),
    };
    now() - Duration::from_secs(secs)
}

fn observation(input: &str) -> Observation {
    let mut obs = Observation::new(
        UserName::new("ci").unwrap(),
        Vec::new(),
        StoredUser::default(),
    );
    let mut intent = None;
    for entry in input.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once('=') {
            _ if entry == "force" => {
                obs.force = true;
                continue;
            }
            _ if entry == "rollback" => {
                obs.rollback = true;
                continue;
            }
            Some(("intent", age)) => {
                intent = Some(ago(age));
                continue;
            }
            Some(("reactivated", age)) => {
                obs.reactivated = Some(ago(age));
                continue;
            }
            _ => {}
        }
        let mut words = entry.split_whitespace();
        let id = key_id(words.next().unwrap());
        let status = words.next().unwrap();
        let created = ago(words.next().unwrap());
        match status {
            "active" | "inactive" => obs.keys.push(AccessKey {
                id: id.clone(),
                status: if status == "active" {
                    KeyStatus::Active
                } else {
                    KeyStatus::Inactive
                },
                created,
            }),
            "gone" => {}
            other => panic!("bad status {other}"),
        }
        let mut stages = Stages::default();
        let mut stored = false;
        for flag in words {
            let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
            match name {
                "current" => (stages.current, stored) = (true, true),
                "pending" => (stages.pending, stored) = (true, true),
                "previous" => (stages.previous, stored) = (true, true),
                "stored" => stored = true,
                "verified" => {
                    obs.verified.insert(id.clone());
                }
                "unverified" => {
                    obs.unverified.insert(id.clone());
                }
                "used" => {
                    let answer = match value {
                        "never" => LastUsed::Never,
                        "unknown" => LastUsed::Unknown,
                        age => LastUsed::At(ago(age)),
                    };
                    obs.last_used.insert(id.clone(), answer);
                }
                mark => {
                    let mark = match mark {
                        "adopted" => Mark::Adopted,
                        "superseded" => Mark::Superseded,
                        "deactivated" => Mark::Deactivated,
                        other => panic!("bad flag {other}"),
                    };
                    obs.stored
                        .marks
                        .entry(id.clone())
                        .or_default()
                        .set(mark, ago(value));
                }
            }
        }
        if stored {
            obs.stored
                .versions
                .push(StoredVersion { key_id: id, stages });
        }
    }
    // The keys made before the intent existed when it was recorded.
    obs.stored.intent = intent.map(|at| {
        let before: Vec<AccessKey> = obs
            .keys
            .iter()
            .filter(|k| k.created < at)
            .cloned()
            .collect();
        crate::model::Intent::new(at, &before)
    });
    obs
}

use crate::model::Mark;

// `expect![]` reads best passed by value, as in rust-analyzer's tests.
#[allow(clippy::needless_pass_by_value)]
fn check(input: &str, expect: Expect) {
    check_with(&policy(), input, expect);
}

fn step_of(input: &str) -> String {
    plan(&observation(input), &policy(), now()).to_string()
}

#[allow(clippy::needless_pass_by_value)]
fn check_with(policy: &Policy, input: &str, expect: Expect) {
    let step = plan(&observation(input), policy, now());
    expect.assert_eq(&step.to_string());
}

#[test]
fn new_user_without_keys_gets_one() {
    check("", expect!["create and stage a new key"]);
}

#[test]
fn a_legacy_key_is_adopted_first() {
    check("OLD active 200d", expect!["adopt AKIAOLD000000000"]);
}

#[test]
fn an_old_adopted_key_is_rotated() {
    check(
        "OLD active 200d adopted=1m",
        expect!["create and stage a new key"],
    );
}

#[test]
fn a_young_adopted_key_waits() {
    check(
        "OLD active 10d adopted=1m",
        expect!["idle until rotation at 2026-03-22T00:00:00Z"],
    );
}

#[test]
fn two_active_legacy_keys_block() {
    check(
        "A active 10d; B active 5d",
        expect![
            "blocked: the user has two active keys keyrot did not create; deactivate the one not in service"
        ],
    );
}

#[test]
fn an_inactive_key_keyrot_does_not_know_makes_room_only_when_due() {
    // The operator's fallback stays until a rotation needs its slot.
    check(
        "A inactive 10d; B active 5d",
        expect!["adopt AKIAB00000000000"],
    );
    check(
        "A inactive 10d; B active 5d adopted=1m",
        expect!["idle until rotation at 2026-03-27T00:00:00Z"],
    );
    check(
        "A active 10d; B inactive 5d",
        expect!["adopt AKIAA00000000000"],
    );
    check(
        "A inactive 10d; B active 100d adopted=1m",
        expect!["make room: delete inactive AKIAA00000000000"],
    );
    check(
        "A inactive 10d; B active 10d adopted=1m; force",
        expect!["make room: delete inactive AKIAA00000000000"],
    );
    check(
        "A inactive 1d; B active 1d current",
        expect!["idle until rotation at 2026-03-31T00:00:00Z"],
    );
}

#[test]
fn keyrots_own_orphan_is_deleted_whatever_its_use() {
    // A key IAM made around the intent keyrot recorded, with no stored secret: its secret was
    // lost with a reply or a crash, so nobody can be using it.
    check(
        "CUR active 10d current; ORPH active 1m; intent=1m",
        expect!["delete orphan AKIAORPH00000000"],
    );
    check(
        "CUR active 10d current; ORPH active 1m used=5s; intent=2m",
        expect!["delete orphan AKIAORPH00000000"],
    );
    check(
        "OLD active 200d adopted=1h; ORPH active 1m; intent=1m",
        expect!["delete orphan AKIAORPH00000000"],
    );
}

#[test]
fn an_orphan_is_never_adopted() {
    // A user with no key: CreateAccessKey succeeded, storing failed.
    check(
        "ORPH active 1m; intent=1m",
        expect!["delete orphan AKIAORPH00000000"],
    );
    // Far from any intent, a lone unknown key is the key in service.
    check(
        "KEY active 1d; intent=2d",
        expect!["adopt AKIAKEY000000000"],
    );
    check(
        "KEY active 20m; intent=1m",
        expect!["adopt AKIAKEY000000000"],
    );
}

#[test]
fn an_unknown_key_is_someones_and_blocks() {
    // Never used or not: IAM reports uses hours late, and an operator's key made minutes ago
    // may be in use by a job right now.
    for used in ["", " used=never", " used=5s", " used=unknown"] {
        check(
            &format!("CUR active 10d current; OTHER active 1m{used}"),
            expect![
                "blocked: AKIAOTHER0000000 is not managed by keyrot and may be in use; delete it or deactivate it"
            ],
        );
    }
    // Made right after keyrot's last intent, whose key was stored: the intent is spent.
    check(
        "CUR active 2m current; OTHER active 1m; intent=2m",
        expect![
            "blocked: AKIAOTHER0000000 is not managed by keyrot and may be in use; delete it or deactivate it"
        ],
    );
    // Made long after keyrot's last intent: not keyrot's.
    check(
        "CUR active 10d current; OTHER active 1h; intent=1d",
        expect![
            "blocked: AKIAOTHER0000000 is not managed by keyrot and may be in use; delete it or deactivate it"
        ],
    );
}

#[test]
fn access_taken_away_outside_keyrot_is_not_given_back() {
    let blocked = "blocked: every key of the user was made inactive outside keyrot; keyrot gives \
                   no access back, with --force or not: re-activate the key in service (or \
                   delete the keys) to let keyrot rotate again";
    for input in [
        "OLD inactive 200d",
        "OLD inactive 200d; force",
        "OLD inactive 200d adopted=10d",
        "CUR inactive 10d current",
        "CUR inactive 10d current; force",
        "CUR inactive 10d current; OLD inactive 100d previous superseded=10d deactivated=3d",
        "A inactive 10d; B inactive 50d",
    ] {
        assert_eq!(step_of(input), blocked, "{input}");
    }
}

#[test]
fn an_unusable_current_key_blocks_and_force_replaces_only_a_deleted_one() {
    check(
        "CUR gone 10d current",
        expect![
            "blocked: the current key AKIACUR000000000 was deleted or deactivated outside keyrot; roll back, or rotate with --force if it was deleted"
        ],
    );
    check(
        "CUR gone 10d current; force",
        expect!["create and stage a new key"],
    );
    // Deactivated beside a key keyrot staged: force does not publish around the person.
    check(
        "CUR inactive 10d current; NEW active 1m pending; force",
        expect![
            "blocked: the current key AKIACUR000000000 was deleted or deactivated outside keyrot; roll back, or rotate with --force if it was deleted"
        ],
    );
}

#[test]
fn a_rollback_reactivates_verifies_and_publishes_the_previous_key() {
    let before = "NEW active 1d current; OLD inactive 98d previous superseded=1d deactivated=1h";
    check(
        &format!("{before}; rollback"),
        expect!["re-activate AKIAOLD000000000"],
    );
    // Without a person asking, an inactive key is never re-activated.
    check(
        before,
        expect!["AKIAOLD000000000 inactive; deleted at 2026-01-07T23:00:00Z"],
    );
    let back = "NEW active 1d current; OLD active 98d previous superseded=1d deactivated=1h";
    check(
        &format!("{back}; rollback; reactivated=1m"),
        expect!["verify AKIAOLD000000000"],
    );
    check(
        &format!("{back} unverified; rollback; reactivated=1m"),
        expect!["verify AKIAOLD000000000"],
    );
    check(
        &format!("{back} verified; rollback; reactivated=1m"),
        expect!["publish AKIAOLD000000000"],
    );
    check(
        &format!("{back} unverified; rollback; reactivated=6m"),
        expect![
            "blocked: AKIAOLD000000000 was re-activated for a rollback but did not authenticate within the verify timeout; the current key stays current"
        ],
    );
    // Active all along (still in grace): it should authenticate at once.
    check(
        "NEW active 1d current; OLD active 98d previous superseded=1d unverified; rollback",
        expect![
            "blocked: AKIAOLD000000000 was re-activated for a rollback but did not authenticate within the verify timeout; the current key stays current"
        ],
    );
    // A person may roll back a user whose current key someone deactivated.
    check(
        "NEW inactive 1d current; OLD inactive 98d previous superseded=1d deactivated=1h; rollback",
        expect!["re-activate AKIAOLD000000000"],
    );
}

#[test]
fn a_rollback_abandons_a_rotation_in_progress() {
    // The current key was deleted outside keyrot, a forced rotation staged a new key and
    // failed before publishing it: going back to the previous key first deletes the staged one,
    // which would otherwise be published right after the rollback.
    check(
        "CUR gone 1d current; OLD active 98d previous superseded=1d; NEW active 1m pending; rollback",
        expect!["unstage AKIANEW000000000: the rollback goes back past it"],
    );
    check(
        "CUR gone 1d current; OLD active 98d previous superseded=1d verified; rollback",
        expect!["publish AKIAOLD000000000"],
    );
    // Without a rollback the staged key goes on to be verified.
    check(
        "CUR active 1d current; NEW active 1m pending",
        expect!["verify AKIANEW000000000"],
    );
}

#[test]
fn a_rollback_needs_a_previous_key() {
    let nothing = "blocked: no previous key to roll back to";
    assert_eq!(step_of("NEW active 1d current; rollback"), nothing);
    assert_eq!(
        step_of("NEW active 1d current; OLD gone 98d previous; rollback"),
        nothing
    );
    // A key keyrot does not know is no rollback target.
    assert_eq!(
        step_of("NEW active 1d current; OTHER inactive 9d; rollback"),
        nothing
    );
}

#[test]
fn a_pending_key_is_verified_then_published() {
    check(
        "CUR active 91d current; NEW active 1m pending",
        expect!["verify AKIANEW000000000"],
    );
    check(
        "CUR active 91d current; NEW active 1m pending verified",
        expect!["publish AKIANEW000000000"],
    );
    check(
        "OLD active 91d adopted=1h; NEW active 1m pending verified",
        expect!["publish AKIANEW000000000"],
    );
}

#[test]
fn a_pending_key_past_the_verify_timeout_is_discarded() {
    check(
        "CUR active 91d current; NEW active 6m pending unverified",
        expect!["discard AKIANEW000000000"],
    );
    // Within the timeout a refused key is tried again; past it, an untried key is tried first
    // (the run that created it may have crashed before verifying).
    check(
        "CUR active 91d current; NEW active 1m pending unverified",
        expect!["verify AKIANEW000000000"],
    );
    check(
        "CUR active 91d current; NEW active 6h pending",
        expect!["verify AKIANEW000000000"],
    );
    check(
        "CUR active 91d current; NEW active 6h pending verified",
        expect!["publish AKIANEW000000000"],
    );
    check(
        "CUR active 91d current; NEW inactive 1m pending",
        expect!["discard AKIANEW000000000"],
    );
}

#[test]
fn a_superseded_key_is_marked_then_waits_for_grace() {
    check(
        "NEW active 1d current pending; OLD active 91d previous",
        expect!["record AKIAOLD000000000 superseded"],
    );
    check(
        "NEW active 1d current pending; OLD active 91d previous superseded=1d",
        expect!["grace of AKIAOLD000000000 until 2026-01-07T00:00:00Z"],
    );
}

#[test]
fn after_grace_last_use_decides() {
    let old = "NEW active 8d current; OLD active 98d previous superseded=8d";
    check(old, expect!["check last use of AKIAOLD000000000"]);
    check(
        &format!("{old} used=9d"),
        expect!["deactivate AKIAOLD000000000"],
    );
    check(
        &format!("{old} used=never"),
        expect!["deactivate AKIAOLD000000000"],
    );
    check(
        &format!("{old} used=1h"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-07T00:00:00Z"],
    );
    // Used after it was superseded, but not for a whole quiet period: consumers have moved on.
    check(
        &format!("{old} used=1d"),
        expect!["deactivate AKIAOLD000000000"],
    );
    check(
        &format!("{old} used=unknown"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-07T00:00:00Z"],
    );
}

/// A policy with an hour of grace, two days at most, IAM's lag of 4 hours and `quiet_period`.
fn hour_of_grace(quiet_period: Duration) -> Policy {
    let hour = Duration::from_secs(3600);
    Policy::builder()
        .rotation_period(Duration::from_secs(30 * DAY))
        .grace(hour)
        .max_grace(Duration::from_secs(2 * DAY))
        .recovery_window(Duration::from_secs(DAY))
        .quiet_period(quiet_period)
        .last_used_lag(4 * hour)
        .build()
        .unwrap()
}

/// A key superseded `superseded` ago, of which IAM says it was last used `used` ago.
fn old(superseded: &str, used: &str) -> String {
    format!("NEW active 1d current; OLD active 98d previous superseded={superseded} used={used}")
}

#[test]
fn last_used_answers_prove_nothing_about_the_lag_before_them() {
    // Grace shorter than IAM's lag: "not used since superseded" needs an answer a lag after.
    let p = hour_of_grace(Duration::from_secs(4 * 3600));
    check_with(
        &p,
        &old("2h", "never"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-02T22:00:00Z"],
    );
    check_with(
        &p,
        &old("2h", "3h"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-02T22:00:00Z"],
    );
    check_with(
        &p,
        &old("5h", "never"),
        expect!["deactivate AKIAOLD000000000"],
    );
    check_with(&p, &old("5h", "6h"), expect!["deactivate AKIAOLD000000000"]);
    // Used after it was superseded: idle only once a whole quiet period (at least the lag) passed.
    check_with(
        &p,
        &old("5h", "3h"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-02T19:00:00Z"],
    );
    check_with(&p, &old("9h", "4h"), expect!["deactivate AKIAOLD000000000"]);
}

#[test]
fn at_max_grace_a_key_in_use_is_forced_off() {
    check(
        "NEW active 15d current; OLD active 98d previous superseded=14d used=1h",
        expect!["force deactivate AKIAOLD000000000"],
    );
    check(
        "NEW active 15d current; OLD active 98d previous superseded=14d used=unknown",
        expect!["force deactivate AKIAOLD000000000"],
    );
}

#[test]
fn an_inactive_key_waits_out_the_recovery_window_then_goes() {
    check(
        "NEW active 9d current; OLD inactive 98d previous superseded=9d",
        expect!["record AKIAOLD000000000 deactivated"],
    );
    check(
        "NEW active 9d current; OLD inactive 98d previous superseded=9d deactivated=1d",
        expect!["AKIAOLD000000000 inactive; deleted at 2026-01-07T00:00:00Z"],
    );
    check(
        "NEW active 16d current; OLD inactive 98d previous superseded=16d deactivated=7d",
        expect!["delete AKIAOLD000000000"],
    );
}

#[test]
fn marks_of_gone_and_current_keys_are_forgotten() {
    check(
        "NEW active 20d current; OLD gone 0d superseded=20d deactivated=13d",
        expect!["forget marks of AKIAOLD000000000"],
    );
    // After a rollback the old key is current again and its marks are stale.
    check(
        "OLD active 98d current superseded=20d deactivated=13d",
        expect!["forget marks of AKIAOLD000000000"],
    );
}

#[test]
fn a_young_current_key_waits_for_its_rotation() {
    check(
        "CUR active 10d current",
        expect!["idle until rotation at 2026-03-22T00:00:00Z"],
    );
    check(
        "CUR active 10d current pending",
        expect!["idle until rotation at 2026-03-22T00:00:00Z"],
    );
    check(
        "CUR active 10d current; force",
        expect!["create and stage a new key"],
    );
    check(
        "CUR active 90d current",
        expect!["create and stage a new key"],
    );
}

#[test]
fn the_earliest_wait_is_reported() {
    check(
        "NEW active 1d current; OLD active 91d previous superseded=1d",
        expect!["grace of AKIAOLD000000000 until 2026-01-07T00:00:00Z"],
    );
}

#[test]
fn a_due_rotation_waits_for_the_old_key_to_go() {
    check(
        "CUR active 10d current; OLD active 100d previous superseded=10d used=1h; force",
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-05T00:00:00Z"],
    );
    check(
        "A active 100d adopted=1d; B active 100d adopted=1d",
        expect![
            "blocked: rotation is due but AKIAB00000000000 must be kept for now; wait or delete it by hand"
        ],
    );
}

#[test]
fn more_than_two_keys_block() {
    check(
        "A active 1d current; B active 1d; C active 1d",
        expect!["blocked: IAM lists 3 keys; at most two are possible"],
    );
}

#[test]
fn a_warning_goes_out_one_interval_before_forced_deactivation() {
    let p = policy();
    let key = key_id("OLD");
    let forced_at = now() + Duration::from_secs(1800);
    let step = Step::Wait(Wait::AwaitingDisuse {
        key: key.clone(),
        forced_at,
    });
    assert_eq!(warning_ahead(&step, &p, now()), Some((key, forced_at)));
    let later = Step::Wait(Wait::AwaitingDisuse {
        key: key_id("OLD"),
        forced_at: now() + Duration::from_secs(7200),
    });
    assert_eq!(warning_ahead(&later, &p, now()), None);
}

#[test]
fn a_pending_key_is_tried_again_up_to_the_verify_timeout_itself() {
    // Refused exactly at the timeout: not past it yet.
    check(
        "CUR active 91d current; NEW active 5m pending unverified",
        expect!["verify AKIANEW000000000"],
    );
}

#[test]
fn a_rollback_target_is_verified_until_it_was_refused_past_the_timeout() {
    // Active all along and long past the timeout, but not tried yet in this run: try it.
    check(
        "NEW active 1d current; OLD active 98d previous superseded=1d; rollback",
        expect!["verify AKIAOLD000000000"],
    );
    // Refused exactly at the timeout since its re-activation: not past it yet.
    check(
        "NEW active 1d current; OLD active 98d previous superseded=1d deactivated=1h unverified; \
         rollback; reactivated=5m",
        expect!["verify AKIAOLD000000000"],
    );
}

#[test]
fn only_the_previous_version_is_a_rollback_target() {
    // A stored version without the previous label (an older key kept for its secret) is not
    // what the user had before.
    assert_eq!(
        step_of("NEW active 1d current; OTHER inactive 9d stored; rollback"),
        "blocked: no previous key to roll back to"
    );
}

#[test]
fn grace_ends_at_its_very_end() {
    check(
        "NEW active 7d current; OLD active 98d previous superseded=7d",
        expect!["check last use of AKIAOLD000000000"],
    );
}

#[test]
fn a_use_before_the_supersession_is_judged_by_the_lag_and_one_after_by_the_quiet_period() {
    // A quiet period much longer than IAM's lag tells the two rules apart.
    let p = hour_of_grace(Duration::from_secs(DAY));
    // Last used an hour before it was superseded, and the answer covers the lag since then:
    // not used since, idle, though it was used within the quiet period.
    check_with(&p, &old("5h", "6h"), expect!["deactivate AKIAOLD000000000"]);
    // Used at the very moment it was superseded: that is a use after, and the quiet period
    // has not passed since.
    check_with(
        &p,
        &old("5h", "5h"),
        expect!["AKIAOLD000000000 still in use; forced off at 2026-01-02T19:00:00Z"],
    );
}

#[test]
fn the_rotation_wait_is_reported_when_it_ends_first() {
    // Rolled back to an old key: its rotation comes before the end of the other key's grace.
    check(
        "CUR active 85d current; NEW active 1d previous superseded=1d",
        expect!["idle until rotation at 2026-01-06T00:00:00Z"],
    );
    // On a tie, the old key's wait wins.
    check(
        "CUR active 84d current; NEW active 1d previous superseded=1d",
        expect!["grace of AKIANEW000000000 until 2026-01-07T00:00:00Z"],
    );
}

#[test]
fn no_warning_at_the_forced_deactivation_itself() {
    let p = policy();
    let key = key_id("OLD");
    let at = |forced_at| {
        Step::Wait(Wait::AwaitingDisuse {
            key: key.clone(),
            forced_at,
        })
    };
    // The window is one schedule interval long, its start included, its end not.
    let start = now() + Duration::from_secs(3600);
    assert_eq!(
        warning_ahead(&at(start), &p, now()),
        Some((key.clone(), start))
    );
    assert_eq!(warning_ahead(&at(now()), &p, now()), None);
}

#[test]
fn only_waits_and_blocks_end_a_run_and_only_observations_change_nothing() {
    let k = key_id("K");
    let wait = Step::Wait(Wait::AwaitingRotation { due: now() });
    let blocked = Step::Blocked(Blocked::AccessRemoved);
    let acting = [
        Step::Adopt(k.clone()),
        Step::DeleteOrphan(k.clone()),
        Step::Reactivate(k.clone()),
        Step::MakeRoom(k.clone()),
        Step::CreateAndStage,
        Step::Publish(k.clone()),
        Step::Discard(k.clone()),
        Step::RecordSuperseded(k.clone()),
        Step::Deactivate {
            key: k.clone(),
            forced: false,
        },
        Step::RecordDeactivated(k.clone()),
        Step::Delete(k.clone()),
        Step::Forget(k.clone()),
    ];
    for step in &acting {
        assert!(!step.is_final(), "{step}");
        assert!(!step.is_read_only(), "{step}");
    }
    for step in [Step::CheckLastUsed(k.clone()), Step::Verify(k)] {
        assert!(!step.is_final(), "{step}");
        assert!(step.is_read_only(), "{step}");
    }
    for step in [wait, blocked] {
        assert!(step.is_final(), "{step}");
        assert!(step.is_read_only(), "{step}");
    }
}

#[test]
fn the_current_key_is_the_stored_current_one_while_iam_lists_it() {
    let obs = observation("NEW active 1d current; OLD active 98d previous");
    assert_eq!(obs.current_key().map(|k| &k.id), Some(&key_id("NEW")));
    let obs = observation("NEW gone 1d current; OLD active 98d previous");
    assert_eq!(obs.current_key(), None);
}

mod delivery;
mod properties;
