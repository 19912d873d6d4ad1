//! `keyrot status`: per managed user, the keys with their ages and stages, and what keyrot
//! will do next and when. Read-only; the data is [`keyrot_core::report::gather`]'s.

use std::fmt::Write as _;
use std::time::Duration;

use keyrot_core::duration::format_duration;
use keyrot_core::report::{GatherObserver, GatherOptions, UserState, gather};
use keyrot_core::{Rotator, Timestamp, UserName};
use serde::{Deserialize, Serialize};

/// One user's status.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyStatus {
    /// The access key id.
    pub id: String,
    /// `Active` or `Inactive`.
    pub status: String,
    /// Its age in whole seconds.
    pub age_seconds: u64,
    /// The store's label: `current`, `pending`, `previous`, `stored`, `adopted`, or `unknown`
    /// (keyrot does not know it).
    pub stage: String,
    /// Where it is in the lifecycle: `pending`, `current`, `grace`, `awaiting disuse`,
    /// `recovery window`, or `unknown`.
    pub lifecycle: String,
}

/// The status of every managed user (or of `only`, if not empty), at `now`, telling
/// `observer` of each user as it is read.
pub async fn collect(
    rotator: &Rotator,
    only: &[UserName],
    now: Timestamp,
    observer: &dyn GatherObserver,
) -> Result<Vec<UserStatus>, keyrot_core::IamError> {
    let states = gather(rotator, only, GatherOptions::default(), now, observer).await?;
    Ok(states.iter().map(|s| from_state(s, now)).collect())
}

/// The status shown of one user's state at `now` (keys IAM no longer has are left out).
pub fn from_state(state: &UserState, now: Timestamp) -> UserStatus {
    let keys = state
        .keys
        .iter()
        .filter_map(|k| {
            let (status, created) = (k.status?, k.created?);
            let age = Duration::try_from(now.duration_since(created)).unwrap_or_default();
            Some(KeyStatus {
                id: k.id.to_string(),
                status: format!("{status:?}"),
                age_seconds: age.as_secs(),
                stage: k.label.clone(),
                lifecycle: k.stage.as_str().to_owned(),
            })
        })
        .collect();
    UserStatus {
        user: state.user.to_string(),
        keys,
        next: state.next.clone(),
        at: state.at.map(|at| at.to_string()),
        attention: state.attention,
    }
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
                "  {:<24} {:<8} {:>10} old  {:<8} {}",
                k.id,
                k.status,
                format_duration(Duration::from_secs(k.age_seconds)),
                k.stage,
                k.lifecycle,
            );
        }
        let _ = writeln!(out, "  next: {}", s.next);
    }
    if statuses.is_empty() {
        out.push_str("no managed users\n");
    }
    out
}
