//! The delivery rules, in the table form of the other planner tests: each input is
//! `DESTINATIONS | KEYS`, where DESTINATIONS is the text form of [`crate::delivery`] with a
//! `+` after an id that holds the current key, a `!` after one that failed in this run.

use expect_test::{Expect, expect};

use super::{now, observation, policy};
use crate::delivery::{Delivered, parse_destinations};
use crate::plan::{Step, plan, warning_ahead};

fn observe(input: &str) -> crate::plan::Observation {
    let (destinations, keys) = input.split_once('|').unwrap();
    let mut obs = observation(keys);
    let mut text = String::new();
    let mut marks = Vec::new();
    for entry in destinations.split_whitespace() {
        let (id, rest) = entry.split_once('=').unwrap();
        let plain = id.trim_end_matches(['+', '!']);
        marks.push((plain.to_owned(), id.ends_with('+'), id.ends_with('!')));
        text.push_str(&format!("{plain}={rest} "));
    }
    obs.destinations = parse_destinations(&text).unwrap();
    let current = obs.stored.current().cloned();
    for (d, (_, holds, failed)) in obs.destinations.iter().zip(&marks) {
        if *holds {
            let record = Delivered::new(d, current.clone().unwrap());
            obs.stored.delivered.insert(d.id.clone(), record);
        }
        if *failed {
            obs.undelivered.insert(d.id.clone(), "refused".into());
        }
    }
    obs
}

#[allow(clippy::needless_pass_by_value)]
fn check(input: &str, expect: Expect) {
    expect.assert_eq(&plan(&observe(input), &policy(), now()).to_string());
}

#[test]
fn the_current_key_goes_to_each_destination_that_lacks_it() {
    check(
        "ssm+=ssm:eu-west-1:/ci sm=sm:us-west-2:ci | NEW active 1h current",
        expect!["deliver the current key to sm"],
    );
    // Nothing left to deliver: the user waits for its rotation.
    check(
        "ssm+=ssm:eu-west-1:/ci | NEW active 1h current",
        expect!["idle until rotation at 2026-03-31T23:00:00Z"],
    );
}

#[test]
fn a_pending_key_is_published_before_anything_is_delivered() {
    check(
        "ssm=ssm:eu-west-1:/ci | OLD active 100d current; NEW active 1m pending verified",
        expect!["publish AKIANEW000000000"],
    );
}

#[test]
fn a_failed_destination_waits_for_the_next_run_and_keeps_the_old_key_past_grace() {
    check(
        "ssm!=ssm:eu-west-1:/ci sm+=sm:us-west-2:ci | NEW active 8d current; \
         OLD active 100d previous superseded=8d used=never",
        expect![
            "AKIAOLD000000000 kept until ssm holds its successor; forced off at 2026-01-07T00:00:00Z"
        ],
    );
    // Within the grace period, the grace is what it waits for.
    check(
        "ssm!=ssm:eu-west-1:/ci | NEW active 1d current; OLD active 100d previous superseded=1d",
        expect!["grace of AKIAOLD000000000 until 2026-01-07T00:00:00Z"],
    );
}

#[test]
fn the_maximum_grace_forces_the_old_key_off_whatever_a_destination_holds() {
    check(
        "ssm!=ssm:eu-west-1:/ci | NEW active 15d current; OLD active 100d previous superseded=14d used=1h",
        expect!["force deactivate AKIAOLD000000000"],
    );
}

#[test]
fn once_every_destination_holds_the_successor_the_usual_rules_apply() {
    check(
        "ssm+=ssm:eu-west-1:/ci sm+=sm:us-west-2:ci | NEW active 8d current; \
         OLD active 100d previous superseded=8d used=never",
        expect!["deactivate AKIAOLD000000000"],
    );
    check(
        "ssm+=ssm:eu-west-1:/ci | NEW active 8d current; OLD active 100d previous superseded=8d",
        expect!["check last use of AKIAOLD000000000"],
    );
}

#[test]
fn a_record_made_for_another_target_does_not_count() {
    let mut obs = observe("ssm+=ssm:eu-west-1:/ci | NEW active 1h current");
    obs.destinations = parse_destinations("ssm=ssm:eu-west-1:/ci/moved").unwrap();
    assert_eq!(
        plan(&obs, &policy(), now()).to_string(),
        "deliver the current key to ssm"
    );
}

#[test]
fn a_warning_goes_out_in_the_last_interval_before_a_forced_deactivation() {
    let obs = observe(
        "ssm!=ssm:eu-west-1:/ci | NEW active 14d current; \
         OLD active 100d previous superseded=14d used=never",
    );
    // One interval (an hour) later than the maximum grace of 14 days: forced at once.
    let step = plan(&obs, &policy(), now());
    assert_eq!(step.to_string(), "force deactivate AKIAOLD000000000");
    let earlier = now() - std::time::Duration::from_secs(1800);
    let step = plan(&obs, &policy(), earlier);
    assert!(matches!(step, Step::Wait(_)), "{step}");
    assert!(warning_ahead(&step, &policy(), earlier).is_some());
}
