//! `keyrot status`: per managed user, the keys with their ages and stages, and what keyrot
//! will do next and when. Read-only.

use std::fmt::Write as _;
use std::time::Duration;

use keyrot_core::driver::ManagedUser;
use keyrot_core::duration::format_duration;
use keyrot_core::{Outcome, Rotator, Timestamp, UserName};
use serde::Serialize;

/// One user's status.
#[derive(Debug, Serialize)]
pub struct UserStatus {
    /// The user.
    pub user: String,
    /// Its keys, as IAM lists them, with what the store knows.
    pub keys: Vec<KeyStatus>,
    /// What keyrot does next, in words.
    pub next: String,
    /// When, if keyrot is waiting for a time.
    pub at: Option<String>,
    /// Whether a person must act or the last observation failed.
    pub attention: bool,
}

/// One key's status.
#[derive(Debug, Serialize)]
pub struct KeyStatus {
    /// The access key id.
    pub id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Its age in whole seconds.
    pub age_seconds: u64,
    /// `current`, `pending`, `previous`, `adopted`, or `unknown` (keyrot does not know it).
    pub stage: String,
}

/// The status of every managed user (or of `only`, if not empty), at `now`.
pub async fn collect(
    rotator: &Rotator,
    only: &[UserName],
    now: Timestamp,
) -> Result<Vec<UserStatus>, keyrot_core::IamError> {
    let managed = rotator.managed_users().await?;
    let users: Vec<(UserName, Option<&ManagedUser>)> = if only.is_empty() {
        managed
            .iter()
            .map(|m| (m.name().clone(), Some(m)))
            .collect()
    } else {
        only.iter()
            .map(|u| (u.clone(), managed.iter().find(|m| m.name() == u)))
            .collect()
    };
    let mut statuses = Vec::with_capacity(users.len());
    for (user, managed) in users {
        let Some(managed) = managed else {
            // keyrot never plans, let alone touches, a user it does not manage.
            statuses.push(UserStatus {
                user: user.to_string(),
                keys: Vec::new(),
                next: Outcome::NotManaged.to_string(),
                at: None,
                attention: true,
            });
            continue;
        };
        let report = rotator.plan_user(managed).await;
        let mut keys = Vec::new();
        if let Ok(obs) = rotator.observe(&user).await {
            for key in &obs.keys {
                // Secrets Manager leaves AWSPENDING on a version it promotes: the most
                // telling label wins.
                let labelled = obs
                    .stored
                    .versions
                    .iter()
                    .filter(|v| v.key_id == key.id)
                    .find_map(|v| {
                        [
                            (v.stages.current, "current"),
                            (v.stages.pending, "pending"),
                            (v.stages.previous, "previous"),
                        ]
                        .into_iter()
                        .find_map(|(set, name)| set.then_some(name))
                    });
                let stage = match labelled {
                    Some(label) => label,
                    None if obs.stored.has_version(&key.id) => "stored",
                    None if obs.stored.knows(&key.id) => "adopted",
                    None => "unknown",
                }
                .to_owned();
                let age = Duration::try_from(now.duration_since(key.created)).unwrap_or_default();
                keys.push(KeyStatus {
                    id: key.id.to_string(),
                    status: format!("{:?}", key.status),
                    age_seconds: age.as_secs(),
                    stage,
                });
            }
        }
        let at = match &report.outcome {
            Outcome::Waiting(wait) => Some(wait.until().to_string()),
            _ => None,
        };
        statuses.push(UserStatus {
            user: user.to_string(),
            keys,
            next: match &report.outcome {
                // A dry run's outcome says "next: <step>" itself.
                Outcome::Planned(step) => step.to_string(),
                other => other.to_string(),
            },
            at,
            attention: report.outcome.is_failure(),
        });
    }
    Ok(statuses)
}

/// The statuses as a table for people.
pub fn table(statuses: &[UserStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = writeln!(
            out,
            "{}{}",
            s.user,
            if s.attention {
                "  (needs attention)"
            } else {
                ""
            }
        );
        if s.keys.is_empty() {
            let _ = writeln!(out, "  no keys");
        }
        for k in &s.keys {
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {:>10} old  {}",
                k.id,
                k.status,
                format_duration(Duration::from_secs(k.age_seconds)),
                k.stage
            );
        }
        let _ = writeln!(out, "  next: {}", s.next);
    }
    if statuses.is_empty() {
        out.push_str("no managed users\n");
    }
    out
}
