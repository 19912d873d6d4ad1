//! A hook on a run's progress, for a progress bar: [`RunObserver`].

use super::UserReport;

/// Told of a run's progress (see [`super::Rotator::run_observed`]): how many users it covers,
/// then each user as it is done, in the order they finish. Called from the run's task; keep it
/// cheap (a counter, a progress bar). Every method does nothing by default.
pub trait RunObserver: Send + Sync {
    /// The run covers `users` users (the managed ones, or those named, refused ones included).
    fn started(&self, users: usize) {
        let _ = users;
    }

    /// One user is done (skipped by the survey, reconciled, or refused).
    fn user_done(&self, report: &UserReport) {
        let _ = report;
    }
}

/// The observer of a run nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl RunObserver for Unobserved {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use futures::executor::block_on;

    use super::*;
    use crate::fake::{FakeAws, FaultRates};
    use crate::{KeyStatus, Policy, Rotator, RunOptions, Timestamp, UserName};

    /// What an observer was told: the total, then the users in the order they were done.
    #[derive(Default)]
    struct Told(Mutex<(Option<usize>, Vec<String>)>);

    impl RunObserver for Told {
        fn started(&self, users: usize) {
            self.0.lock().unwrap().0 = Some(users);
        }

        fn user_done(&self, report: &UserReport) {
            self.0.lock().unwrap().1.push(report.user.to_string());
        }
    }

    #[test]
    fn the_observer_hears_the_total_and_every_user_once() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let aws = FakeAws::new(now, 3, FaultRates::none());
        for name in ["a", "b", "c"] {
            let user = UserName::new(name).unwrap();
            aws.iam.add_managed_user(user.clone());
            aws.iam
                .add_key(&user, KeyStatus::Active, now - Duration::from_secs(86_400))
                .unwrap();
        }
        let rotator = Rotator::new(aws.ports(), Policy::builder().build().unwrap());
        let told = Told::default();
        let options = RunOptions {
            users: vec![
                UserName::new("a").unwrap(),
                UserName::new("nobody").unwrap(),
            ],
            ..RunOptions::default()
        };
        let report = block_on(rotator.run_observed(&options, &told)).unwrap();
        let (total, mut done) = told.0.into_inner().unwrap();
        done.sort();
        assert_eq!(total, Some(2));
        assert_eq!(done, ["a", "nobody"]);
        assert_eq!(report.failures(), 1, "nobody is not managed: {report}");

        let told = Told::default();
        block_on(rotator.run_observed(&RunOptions::default(), &told)).unwrap();
        let (total, mut done) = told.0.into_inner().unwrap();
        done.sort();
        assert_eq!(
            (total, done),
            (Some(3), vec!["a".into(), "b".into(), "c".into()])
        );
    }
}
