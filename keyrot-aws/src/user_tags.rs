//! The users' `keyrot:deliver` tags as the last listing of users saw them: read once per run,
//! in bulk, and shared by [`AwsIam`](crate::AwsIam) (which lists the users) and
//! [`AwsDelivery`](crate::AwsDelivery) (which needs each user's tag).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use keyrot_core::UserName;

/// Each user's [`DELIVER_TAG`](keyrot_core::delivery::DELIVER_TAG) value (`None`: the user has
/// none), as seen since the run's listing of users.
///
/// - A listing by tag (GetAccountAuthorizationDetails, which returns every user's tags) fills
///   it for every listed user: the tags then cost no call of their own.
/// - A listing of named users (no IAM call) empties it: each user's tag is then read with one
///   `ListUserTags`, once per run, when delivery first asks for it.
///
/// Clones share the same record. A tag changed during a run is seen by the next run.
#[derive(Debug, Clone, Default)]
pub struct UserTags(Arc<Mutex<BTreeMap<UserName, Option<String>>>>);

impl UserTags {
    /// The tag `user` was seen with in this run, if the user was seen at all.
    pub fn get(&self, user: &UserName) -> Option<Option<String>> {
        self.lock().get(user).cloned()
    }

    /// Records `user`'s tag as seen.
    pub fn insert(&self, user: UserName, tag: Option<String>) {
        self.lock().insert(user, tag);
    }

    /// A new run's listing: forgets every tag seen before, then records `seen`.
    pub fn replace(&self, seen: BTreeMap<UserName, Option<String>>) {
        *self.lock() = seen;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<UserName, Option<String>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
