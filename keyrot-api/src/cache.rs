//! The cache of current keys: (account, user) -> (credentials, or none stored, when they were
//! fetched). The hub's users are under no account; a member account's users under its id, so
//! the same name in two accounts is two entries.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keyrot_core::accounts::AccountId;
use keyrot_core::model::{Credentials, Timestamp, UserName};

/// The most users the cache holds, found or not: this bounds memory whatever names callers
/// ask for.
const MAX_ENTRIES: usize = 10_000;

/// Whose key an entry is: a member account's user, or the hub's (`None`).
type Whose = (Option<AccountId>, UserName);

/// Current keys by account and user, each served for `ttl` after it was fetched; a user the store has no
/// key for is remembered as such for as long (negative caching: asking for unknown users again
/// and again does not reach the store). A zero `ttl` caches nothing.
pub(super) struct KeyCache {
    ttl: Duration,
    entries: Mutex<BTreeMap<Whose, Entry>>,
}

struct Entry {
    /// `None`: the store had no key for the user.
    credentials: Option<Credentials>,
    fetched_at: Timestamp,
}

impl KeyCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<Whose, Entry>> {
        // Nothing panics while holding the lock; if something did, the map is still whole.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a key fetched at `fetched_at` may still be served at `now`. A `now` before
    /// `fetched_at` (the adapter's clock stepped back) counts as stale.
    fn is_fresh(&self, fetched_at: Timestamp, now: Timestamp) -> bool {
        let until = fetched_at
            .saturating_add(self.ttl)
            .unwrap_or(Timestamp::MAX);
        fetched_at <= now && now < until
    }

    /// The cached key of `user` of `account` (`None`: the hub's; none: none is stored) and
    /// when it was fetched, if still fresh at `now`.
    pub(super) fn get(
        &self,
        account: Option<&AccountId>,
        user: &UserName,
        now: Timestamp,
    ) -> Option<(Option<Credentials>, Timestamp)> {
        let entries = self.entries();
        let entry = entries.get(&(account.cloned(), user.clone()))?;
        self.is_fresh(entry.fetched_at, now)
            .then(|| (entry.credentials.clone(), entry.fetched_at))
    }

    /// Remembers `credentials` as the key of `user` of `account` (`None`: the hub's; none: the
    /// store has none), fetched at `now`.
    pub(super) fn put(
        &self,
        account: Option<&AccountId>,
        user: &UserName,
        credentials: Option<&Credentials>,
        now: Timestamp,
    ) {
        if self.ttl.is_zero() {
            return;
        }
        let whose = (account.cloned(), user.clone());
        let mut entries = self.entries();
        if !entries.contains_key(&whose) && entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| self.is_fresh(e.fetched_at, now));
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(
            whose,
            Entry {
                credentials: credentials.cloned(),
                fetched_at: now,
            },
        );
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("ttl", &self.ttl)
            .field("entries", &self.entries().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::model::{AccessKeyId, SecretAccessKey};

    fn creds(id: &str) -> Credentials {
        Credentials {
            access_key_id: AccessKeyId::new(id).unwrap(),
            secret_access_key: SecretAccessKey::new("s".repeat(40)),
        }
    }

    #[test]
    fn entries_live_for_the_ttl() {
        let t0: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let user = UserName::new("alice").unwrap();
        let cache = KeyCache::new(Duration::from_secs(30));
        assert!(cache.get(None, &user, t0).is_none());
        cache.put(None, &user, Some(&creds("AKIA0000000000000001")), t0);
        let hit = |at: Timestamp| {
            cache
                .get(None, &user, at)
                .map(|(c, t)| (c.map(|c| c.access_key_id), t))
        };
        let id = AccessKeyId::new("AKIA0000000000000001").unwrap();
        assert_eq!(hit(t0), Some((Some(id.clone()), t0)));
        assert_eq!(hit(t0 + Duration::from_secs(29)), Some((Some(id), t0)));
        assert_eq!(hit(t0 + Duration::from_secs(30)), None);
        assert_eq!(hit(t0 - Duration::from_secs(1)), None);
        // A user without a key is remembered as such, as long.
        cache.put(None, &user, None, t0);
        assert_eq!(hit(t0 + Duration::from_secs(29)), Some((None, t0)));
        assert_eq!(hit(t0 + Duration::from_secs(30)), None);
        assert!(format!("{cache:?}").contains("entries: 1"));
    }

    #[test]
    fn the_same_name_in_two_accounts_is_two_entries() {
        let t0: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let user = UserName::new("ci").unwrap();
        let one = AccountId::new("111111111111").unwrap();
        let two = AccountId::new("222222222222").unwrap();
        let cache = KeyCache::new(Duration::from_secs(30));
        cache.put(Some(&one), &user, Some(&creds("AKIA0000000000000001")), t0);
        cache.put(None, &user, Some(&creds("AKIA0000000000000002")), t0);
        let id = |account: Option<&AccountId>| {
            cache
                .get(account, &user, t0)
                .map(|(c, _)| c.map(|c| c.access_key_id.to_string()))
        };
        assert_eq!(
            id(Some(&one)),
            Some(Some("AKIA0000000000000001".to_owned()))
        );
        assert_eq!(id(None), Some(Some("AKIA0000000000000002".to_owned())));
        assert_eq!(id(Some(&two)), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let t0: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let user = UserName::new("alice").unwrap();
        let cache = KeyCache::new(Duration::ZERO);
        cache.put(None, &user, Some(&creds("AKIA0000000000000001")), t0);
        cache.put(None, &user, None, t0);
        assert!(cache.get(None, &user, t0).is_none());
    }
}
