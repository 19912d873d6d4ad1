//! The planner's safety rules as properties over arbitrary observations.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::model::{Mark, Stages, StoredVersion};

// Property: whatever was observed, the step the planner picks never breaks a safety rule.

fn arb_observation() -> impl Strategy<Value = Observation> {
    let key = (
        0..4usize,                                                                // name
        any::<bool>(),                                                            // active
        0..200u64,                      // age in days (or minutes when < 10)
        proptest::option::of(0..4u8),   // stage: current/pending/previous/stored
        proptest::option::of(0..30u64), // adopted days ago
        proptest::option::of(0..30u64), // superseded days ago
        proptest::option::of(0..30u64), // deactivated days ago
        proptest::option::of(prop_oneof![Just(None), (0..30u64).prop_map(Some)]), // used
        0..3u8,                         // verified, unverified, untried
        proptest::option::of(any::<bool>()), // in IAM (false: gone)
    );
    let flags = (
        any::<bool>(),                       // force
        any::<bool>(),                       // rollback
        proptest::option::of(0..30 * 60u64), // intent, seconds ago
        proptest::option::of(0..30 * 60u64), // re-activated, seconds ago
    );
    (proptest::collection::vec(key, 0..4), flags).prop_map(
        |(keys, (force, rollback, intent, reactivated))| {
            let mut obs = Observation::new(
                UserName::new("prop").unwrap(),
                Vec::new(),
                StoredUser::default(),
            );
            obs.force = force;
            obs.rollback = rollback;
            obs.stored.intent = intent.map(|s| crate::model::Intent {
                at: now() - Duration::from_secs(s),
                ..Default::default()
            });
            obs.reactivated = reactivated.map(|s| now() - Duration::from_secs(s));
            let mut seen = BTreeMap::new();
            for (
                name,
                active,
                age,
                stage,
                adopted,
                superseded,
                deactivated,
                used,
                verified,
                in_iam,
            ) in keys
            {
                let id = key_id(["A", "B", "C", "D"][name]);
                if seen.insert(id.clone(), ()).is_some() {
                    continue;
                }
                let created = if age < 10 {
                    now() - Duration::from_secs(age * 60)
                } else {
                    now() - Duration::from_secs(age * DAY)
                };
                if in_iam != Some(false) {
                    obs.keys.push(AccessKey {
                        id: id.clone(),
                        status: if active {
                            KeyStatus::Active
                        } else {
                            KeyStatus::Inactive
                        },
                        created,
                    });
                }
                if let Some(stage) = stage {
                    let has_current = obs.stored.versions.iter().any(|v| v.stages.current);
                    let has_pending = obs.stored.versions.iter().any(|v| v.stages.pending);
                    let stages = Stages {
                        current: stage == 0 && !has_current,
                        pending: stage == 1 && !has_pending,
                        previous: stage == 2,
                    };
                    obs.stored.versions.push(StoredVersion {
                        key_id: id.clone(),
                        stages,
                    });
                }
                let marks = [
                    (Mark::Adopted, adopted),
                    (Mark::Superseded, superseded),
                    (Mark::Deactivated, deactivated),
                ];
                for (mark, days) in marks {
                    if let Some(days) = days {
                        let at = now() - Duration::from_secs(days * DAY);
                        obs.stored
                            .marks
                            .entry(id.clone())
                            .or_default()
                            .set(mark, at);
                    }
                }
                if let Some(used) = used {
                    let answer = match used {
                        None => LastUsed::Unknown,
                        Some(0) => LastUsed::Never,
                        Some(days) => LastUsed::At(now() - Duration::from_secs(days * 3600)),
                    };
                    obs.last_used.insert(id.clone(), answer);
                }
                match verified {
                    0 => {
                        obs.verified.insert(id);
                    }
                    1 => {
                        obs.unverified.insert(id);
                    }
                    _ => {}
                }
            }
            obs
        },
    )
}

proptest! {
    #[test]
    fn planner_never_breaks_a_safety_rule(obs in arb_observation()) {
        let p = policy();
        let step = plan(&obs, &p, now());
        prop_assert_eq!(&step, &plan(&obs, &p, now()), "the planner is deterministic");
        let current = obs.stored.current();
        let touched = match &step {
            Step::DeleteOrphan(k) | Step::MakeRoom(k) | Step::Delete(k) | Step::Discard(k)
            | Step::Unstage(k)
            | Step::Deactivate { key: k, .. } => Some(k),
            _ => None,
        };
        if let Some(k) = touched {
            prop_assert!(Some(k) != current, "{step} touches the current key");
            prop_assert!(obs.key(k).is_some(), "{step} names a key IAM does not list");
        }
        let none_active = !obs.keys.is_empty()
            && obs.keys.iter().all(|k| k.status == KeyStatus::Inactive);
        match &step {
            Step::CreateAndStage => {
                prop_assert!(obs.keys.len() < 2, "asked for a third key");
                prop_assert!(!none_active, "gave a key to a user whose access was taken away");
                prop_assert!(!obs.rollback, "a rollback creates no key");
            }
            Step::Adopt(k) => {
                prop_assert!(!obs.stored.intended(obs.key(k).unwrap()), "adopted an orphan");
            }
            Step::DeleteOrphan(k) => {
                prop_assert!(!obs.stored.knows(k));
                prop_assert!(obs.stored.intended(obs.key(k).unwrap()), "deleted a key keyrot did not make");
                prop_assert!(
                    !obs.keys.iter().any(|x| obs.stored.has_version(&x.id) && obs.stored.intended(x)),
                    "deleted a key although the intent's key is stored"
                );
            }
            Step::MakeRoom(k) => {
                prop_assert!(!obs.stored.knows(k));
                prop_assert_eq!(obs.key(k).unwrap().status, KeyStatus::Inactive);
                let in_service = obs.keys.iter().find(|x| &x.id != k).unwrap();
                prop_assert!(
                    obs.force || now() >= in_service.created + p.rotation_period(),
                    "made room before a rotation was due"
                );
            }
            Step::Unstage(k) => {
                prop_assert!(obs.rollback, "unstaged {k} without a rollback");
                prop_assert_eq!(obs.stored.pending(), Some(k), "unstaged a key that is not staged");
            }
            Step::Reactivate(k) => {
                prop_assert!(obs.rollback, "re-activated {k} without a rollback");
                prop_assert!(obs.stored.has_version(k), "re-activated a key with no stored secret");
            }
            Step::Publish(k) => {
                let key = obs.key(k).unwrap();
                prop_assert!(obs.verified.contains(k));
                prop_assert_eq!(key.status, KeyStatus::Active);
                prop_assert!(obs.stored.has_version(k), "published a key with no stored secret");
            }
            Step::Deactivate { key, forced } => {
                let since = obs.stored.marks_of(key).superseded.unwrap();
                prop_assert!(now() >= since + p.grace(), "deactivated within grace");
                if *forced {
                    prop_assert!(now() >= since + p.max_grace());
                } else {
                    match obs.last_used.get(key) {
                        Some(LastUsed::Never) => prop_assert!(now() >= since + p.last_used_lag()),
                        Some(LastUsed::At(at)) if *at < since => {
                            prop_assert!(now() >= since + p.last_used_lag(), "trusted an answer younger than the lag");
                        }
                        Some(LastUsed::At(at)) => prop_assert!(
                            *at + p.quiet_period() <= now(),
                            "deactivated a key used {at} within the quiet period"
                        ),
                        other => prop_assert!(false, "deactivated on {other:?}"),
                    }
                }
            }
            Step::Delete(k) => {
                let key = obs.key(k).unwrap();
                prop_assert_eq!(key.status, KeyStatus::Inactive);
                let since = obs.stored.marks_of(k).deactivated.unwrap();
                prop_assert!(now() >= since + p.recovery_window());
            }
            _ => {}
        }
    }
}
