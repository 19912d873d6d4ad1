//! The embedded backend: keyrot-core's in-memory IAM, Secrets Manager and STS, seeded with demo
//! users, following the wall clock. Nothing leaves the process; everything is lost on exit.

use std::sync::Arc;
use std::time::Duration;

use keyrot_aws::{LogNotifier, SystemClock};
use keyrot_core::fake::{AuthFailure, FakeAws, FaultRates};
use keyrot_core::settings::PolicySettings;
use keyrot_core::{Credentials, KeyStatus, Ports, Timestamp, UserName};

/// The demo's users: managed (tagged `keyrot:managed=true`), each with one key that predates
/// keyrot and is already due for rotation.
pub const DEMO_USERS: [&str; 3] = ["ci-deployer", "etl-nightly", "backup-agent"];

/// How often the in-memory services' clock catches up with the wall clock.
const CLOCK_SYNC: Duration = Duration::from_millis(100);

/// The demo policy: a whole rotation cycle in minutes, so it can be watched.
pub fn demo_policy_settings() -> PolicySettings {
    let minutes = |m: u64| Some(Duration::from_secs(m * 60));
    let seconds = |s: u64| Some(Duration::from_secs(s));
    PolicySettings {
        rotation_period: minutes(5),
        grace: minutes(1),
        max_grace: minutes(2),
        recovery_window: minutes(1),
        quiet_period: seconds(30),
        // The in-memory IAM reports uses at once.
        last_used_lag: seconds(0),
        verify_timeout: seconds(30),
        schedule_interval: seconds(10),
        ..PolicySettings::default()
    }
}

/// The in-memory AWS and the task that keeps its clock on time.
#[derive(Debug)]
pub struct Embedded {
    aws: FakeAws,
    sync: tokio::task::JoinHandle<()>,
}

impl Embedded {
    /// Fresh services at `now`, seeded with [`DEMO_USERS`] and their legacy keys (created a
    /// day ago), plus one unmanaged user keyrot must never touch.
    pub fn start(now: Timestamp, seed: u64) -> Self {
        let aws = FakeAws::new(now, seed, FaultRates::none());
        aws.iam.set_propagation_delay(Duration::ZERO);
        aws.iam.set_last_used_lag(Duration::ZERO);
        let day_ago = now
            .checked_sub(jiff::SignedDuration::from_hours(24))
            .unwrap_or(now);
        for name in DEMO_USERS {
            if let Ok(user) = UserName::new(name) {
                aws.iam.add_managed_user(user.clone());
                let _ = aws.iam.add_key(&user, KeyStatus::Active, day_ago);
            }
        }
        if let Ok(user) = UserName::new("human-admin") {
            aws.iam.add_user(user.clone(), [("team", "platform")]);
            let _ = aws.iam.add_key(&user, KeyStatus::Active, day_ago);
        }
        let clock = aws.clock.clone();
        let sync = tokio::spawn(async move {
            let mut tick = tokio::time::interval(CLOCK_SYNC);
            loop {
                tick.tick().await;
                let wall = keyrot_core::Clock::now(&SystemClock);
                if wall > clock.now() {
                    clock.set(wall);
                }
            }
        });
        Self { aws, sync }
    }

    /// The ports: the in-memory services, alerts to the log, the system clock.
    pub fn ports(&self) -> Ports {
        Ports {
            notifier: Arc::new(LogNotifier),
            clock: Arc::new(SystemClock),
            ..self.aws.ports()
        }
    }

    /// Whose key `credentials` are, if a request signed with them would be accepted now (what
    /// `sts:GetCallerIdentity` answers); records the use, as AWS does.
    pub fn authenticate(&self, credentials: &Credentials) -> Result<UserName, AuthFailure> {
        self.aws.iam.authenticate(credentials, self.aws.clock.now())
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.sync.abort();
    }
}
