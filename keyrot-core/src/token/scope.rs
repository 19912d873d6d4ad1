//! Client ids and scopes: who a token is for and which users' keys it may fetch.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::MAX_SCOPE_LEN;
use crate::accounts::AccountId;
use crate::model::{NameError, UserName};

/// An input that is not a valid client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    /// Client ids are 1 to 64 characters.
    #[error("client id must be 1 to 64 characters, got {0}")]
    Length(usize),
    /// Client ids use lower-case letters, digits and `._-` only.
    #[error("client id may contain only a-z, 0-9 and . _ - (found {0:?})")]
    Character(char),
}

/// The id of an API client, such as `ci` or `billing-batch`: 1 to 64 characters from
/// `a-z 0-9 . _ -`. Not secret: it is the token's `sub` and safe to log.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId(String);

impl ClientId {
    /// Validates `id` as a client id.
    pub fn new(id: impl Into<String>) -> Result<Self, ClientIdError> {
        let id = id.into();
        let len = id.chars().count();
        if !(1..=64).contains(&len) {
            return Err(ClientIdError::Length(len));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
        {
            return Err(ClientIdError::Character(bad));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClientId {
    type Err = ClientIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ClientId {
    type Error = ClientIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<ClientId> for String {
    fn from(id: ClientId) -> Self {
        id.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// An input that is not a valid scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A scope names at least one user, or is `*`.
    #[error("scope is empty; list IAM user names, or * for every managed user")]
    Empty,
    /// An entry is empty: a doubled, leading or trailing space.
    #[error("scope has an empty entry (check for doubled, leading or trailing spaces)")]
    EmptyEntry,
    /// `*` already means every managed user; it cannot be combined with names.
    #[error("scope * cannot be combined with user names")]
    WildcardWithNames,
    /// An entry is not a valid IAM user name.
    #[error("scope entry {name:?} is not a valid IAM user name")]
    UserName {
        /// The entry, cut to 64 characters.
        name: String,
        /// Why it is not a user name.
        #[source]
        source: NameError,
    },
    /// Written out, the scope would be longer than [`MAX_SCOPE_LEN`] bytes.
    #[error("scope is {0} bytes when written out, more than 2048; list fewer users or use *")]
    TooLong(usize),
}

/// The IAM users a client may fetch the current key of: a set of user names, or every managed
/// user (`*`). With many accounts, an entry may also name a member account's user
/// (`111122223333/deployer`) or every managed user of a member account (`111122223333/*`); a
/// plain user name is a user of the hub's own account, and `*` is every user of every account.
/// And whether it holds the [`ADMIN`] right (the status of every user, no secret).
///
/// Written as a space-separated string in tokens (`"deployer ci-bot"`, `"*"`,
/// `"* keyrot:admin"`) and as a list of strings in the client registry (`["deployer",
/// "ci-bot"]`, `["*"]`, `["keyrot:admin"]`). Never empty. `*` never implies the admin right:
/// only the entry `keyrot:admin` grants it (a `:` is in no IAM user name, so it cannot be
/// mistaken for a user called `admin`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(ScopeInner, bool);

/// The scope entry of the admin right: reading every user's status (never a secret) through
/// the API's admin routes.
pub const ADMIN: &str = "keyrot:admin";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ScopeInner {
    All,
    Listed(Listed),
}

/// A scope's entries, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Listed {
    /// Users of the hub's own account.
    users: BTreeSet<UserName>,
    /// Users of member accounts.
    members: BTreeSet<(AccountId, UserName)>,
    /// Member accounts, every managed user.
    accounts: BTreeSet<AccountId>,
}

impl Listed {
    fn is_empty(&self) -> bool {
        self.users.is_empty() && self.members.is_empty() && self.accounts.is_empty()
    }

    fn entries(&self) -> Vec<String> {
        let users = self.users.iter().map(|u| u.as_str().to_owned());
        let members = self.members.iter().map(|(a, u)| format!("{a}/{u}"));
        let accounts = self.accounts.iter().map(|a| format!("{a}/*"));
        users.chain(members).chain(accounts).collect()
    }

    fn checked(self) -> Result<Scope, ScopeError> {
        if self.is_empty() {
            return Err(ScopeError::Empty);
        }
        let len = self.entries().iter().map(|e| e.len() + 1).sum::<usize>() - 1;
        if len > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong(len));
        }
        Ok(Scope(ScopeInner::Listed(self), false))
    }
}

impl Scope {
    /// Every managed user. Whether a user is managed is for the caller to check.
    pub fn all() -> Self {
        Self(ScopeInner::All, false)
    }

    /// The same scope with the admin right.
    pub fn with_admin(self) -> Self {
        Self(self.0, true)
    }

    /// Exactly these users (duplicates are merged). Fails if there are none or the scope would
    /// be too long.
    pub fn users(users: impl IntoIterator<Item = UserName>) -> Result<Self, ScopeError> {
        Listed {
            users: users.into_iter().collect(),
            ..Listed::default()
        }
        .checked()
    }

    /// Parses a list of entries: either `*` or user entries, and [`ADMIN`] for the admin
    /// right. The admin right alone is a scope that allows no user's key.
    pub fn from_entries<S: AsRef<str>>(
        entries: impl IntoIterator<Item = S>,
    ) -> Result<Self, ScopeError> {
        let mut wildcard = false;
        let mut admin = false;
        let mut listed = Listed::default();
        let user = |name: &str| {
            UserName::new(name).map_err(|source| ScopeError::UserName {
                name: name.chars().take(64).collect(),
                source,
            })
        };
        for entry in entries {
            let entry = entry.as_ref();
            if entry.is_empty() {
                return Err(ScopeError::EmptyEntry);
            }
            if entry == ADMIN {
                admin = true;
            } else if entry == "*" {
                wildcard = true;
            } else if let Some((account, name)) = entry
                .split_once('/')
                .and_then(|(a, name)| Some((AccountId::new(a).ok()?, name)))
            {
                // Anything else with a `/` is refused below as a user name, which it is not.
                if name == "*" {
                    listed.accounts.insert(account);
                } else {
                    listed.members.insert((account, user(name)?));
                }
            } else {
                listed.users.insert(user(entry)?);
            }
        }
        match (wildcard, listed.is_empty()) {
            (true, true) => Ok(Self(ScopeInner::All, admin)),
            (true, false) => Err(ScopeError::WildcardWithNames),
            (false, true) if admin => Ok(Self(ScopeInner::Listed(listed), true)),
            (false, _) => listed.checked().map(|scope| Self(scope.0, admin)),
        }
    }

    /// Whether the scope holds the admin right ([`ADMIN`]; never implied by `*`).
    pub fn is_admin(&self) -> bool {
        self.1
    }

    /// Whether the scope allows fetching `user`'s key (a user of the hub's own account).
    pub fn allows(&self, user: &UserName) -> bool {
        match &self.0 {
            ScopeInner::All => true,
            ScopeInner::Listed(listed) => listed.users.contains(user),
        }
    }

    /// Whether the scope allows fetching the key of `user` of the member account `account`.
    pub fn allows_in(&self, account: &AccountId, user: &UserName) -> bool {
        match &self.0 {
            ScopeInner::All => true,
            ScopeInner::Listed(listed) => {
                listed.accounts.contains(account)
                    || listed.members.contains(&(account.clone(), user.clone()))
            }
        }
    }

    /// Whether the scope is `*`.
    pub fn is_all(&self) -> bool {
        matches!(self.0, ScopeInner::All)
    }

    /// The users of the hub's own account listed, or `None` for `*`.
    pub fn user_names(&self) -> Option<&BTreeSet<UserName>> {
        match &self.0 {
            ScopeInner::All => None,
            ScopeInner::Listed(listed) => Some(&listed.users),
        }
    }

    fn entries(&self) -> Vec<String> {
        let mut entries = match &self.0 {
            ScopeInner::All => vec!["*".to_owned()],
            ScopeInner::Listed(listed) => listed.entries(),
        };
        if self.1 {
            entries.push(ADMIN.to_owned());
        }
        entries
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    /// Parses the space-separated form, such as `"deployer ci-bot"` or `"*"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        if s.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong(s.len()));
        }
        Self::from_entries(s.split(' '))
    }
}

impl fmt::Display for Scope {
    /// Writes the space-separated form: the hub's users, then member accounts' users, then
    /// member accounts, each sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.entries().join(" "))
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.entries().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::from_entries(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let user = |s: &str| UserName::new(s).unwrap();
        let scope: Scope = "deployer ci-bot deployer".parse().unwrap();
        assert!(scope.allows(&user("deployer")));
        assert!(scope.allows(&user("ci-bot")));
        assert!(!scope.allows(&user("admin")));
        assert!(!scope.is_all());
        assert_eq!(scope.to_string(), "ci-bot deployer");
        assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        let all: Scope = "*".parse().unwrap();
        assert!(all.is_all() && all.allows(&user("anyone")) && all.user_names().is_none());
        assert_eq!(all.to_string(), "*");
        assert_eq!("".parse::<Scope>(), Err(ScopeError::Empty));
        assert_eq!("a  b".parse::<Scope>(), Err(ScopeError::EmptyEntry));
        assert_eq!(" a".parse::<Scope>(), Err(ScopeError::EmptyEntry));
        assert_eq!("* a".parse::<Scope>(), Err(ScopeError::WildcardWithNames));
        assert!(matches!(
            "a ../b".parse::<Scope>(),
            Err(ScopeError::UserName { .. })
        ));
        assert!(matches!(
            "x".repeat(MAX_SCOPE_LEN + 1).parse::<Scope>(),
            Err(ScopeError::TooLong(_))
        ));
        assert_eq!(Scope::users([]), Err(ScopeError::Empty));
        assert_eq!(
            serde_json::to_string(&scope).unwrap(),
            r#"["ci-bot","deployer"]"#
        );
        assert_eq!(
            serde_json::from_str::<Scope>(r#"["*"]"#).unwrap(),
            Scope::all()
        );
    }

    #[test]
    fn a_scope_can_name_member_accounts_and_their_users() {
        let user = |s: &str| UserName::new(s).unwrap();
        let account = |s: &str| AccountId::new(s).unwrap();
        let scope: Scope = "222222222222/* deployer 111111111111/ci".parse().unwrap();
        assert_eq!(scope.to_string(), "deployer 111111111111/ci 222222222222/*");
        assert_eq!(scope.to_string().parse::<Scope>().unwrap(), scope);
        assert!(scope.allows(&user("deployer")));
        // A plain name is the hub's user only; an account's user is that account's only.
        assert!(!scope.allows(&user("ci")));
        assert!(!scope.allows_in(&account("111111111111"), &user("deployer")));
        assert!(scope.allows_in(&account("111111111111"), &user("ci")));
        assert!(!scope.allows_in(&account("333333333333"), &user("ci")));
        assert!(scope.allows_in(&account("222222222222"), &user("anyone")));
        assert!(Scope::all().allows_in(&account("333333333333"), &user("ci")));
        assert_eq!(
            serde_json::to_string(&scope).unwrap(),
            r#"["deployer","111111111111/ci","222222222222/*"]"#
        );
        assert!(matches!(
            "12345/ci".parse::<Scope>(),
            Err(ScopeError::UserName { .. })
        ));
        assert!(matches!(
            "111111111111/../x".parse::<Scope>(),
            Err(ScopeError::UserName { .. })
        ));
        assert_eq!(
            "* 111111111111/*".parse::<Scope>(),
            Err(ScopeError::WildcardWithNames)
        );
        let only_accounts: Scope = "111111111111/*".parse().unwrap();
        assert_eq!(only_accounts.user_names().map(BTreeSet::len), Some(0));
    }

    #[test]
    fn the_admin_right_is_explicit_and_never_implied_by_the_wildcard() {
        let user = |s: &str| UserName::new(s).unwrap();
        let all: Scope = "*".parse().unwrap();
        assert!(!all.is_admin());
        // "admin" is an IAM user name, not the right.
        let named: Scope = "admin".parse().unwrap();
        assert!(!named.is_admin() && named.allows(&user("admin")));
        let both: Scope = "* keyrot:admin".parse().unwrap();
        assert!(both.is_admin() && both.is_all());
        assert_eq!(both, Scope::all().with_admin());
        assert_eq!(both.to_string(), "* keyrot:admin");
        assert_eq!(both.to_string().parse::<Scope>().unwrap(), both);
        let only: Scope = "keyrot:admin".parse().unwrap();
        assert!(only.is_admin() && !only.allows(&user("anyone")) && !only.is_all());
        assert_eq!(only.to_string(), "keyrot:admin");
        let mixed: Scope = "ci keyrot:admin".parse().unwrap();
        assert!(mixed.is_admin() && mixed.allows(&user("ci")));
        assert_eq!(
            serde_json::to_string(&mixed).unwrap(),
            r#"["ci","keyrot:admin"]"#
        );
        assert_eq!(
            serde_json::from_str::<Scope>(r#"["keyrot:admin"]"#).unwrap(),
            only
        );
        assert!(matches!(
            "keyrot:admins".parse::<Scope>(),
            Err(ScopeError::UserName { .. })
        ));
    }
}
