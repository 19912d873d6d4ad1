//! Domain types: users, access keys, secrets and what the store knows about them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A point in time. keyrot-core never reads the clock: every `Timestamp` comes from the caller.
pub use jiff::Timestamp;

/// An input that does not name a valid IAM user or access key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// IAM user names are 1 to 64 characters.
    #[error("user name must be 1 to 64 characters, got {0}")]
    UserNameLength(usize),
    /// IAM user names use letters, digits and `+=,.@_-` only.
    #[error("user name may contain only letters, digits and +=,.@_- (found {0:?})")]
    UserNameCharacter(char),
    /// Access key ids are 16 to 128 characters.
    #[error("access key id must be 16 to 128 characters, got {0}")]
    KeyIdLength(usize),
    /// Access key ids are upper-case letters and digits.
    #[error("access key id may contain only upper-case letters and digits (found {0:?})")]
    KeyIdCharacter(char),
}

/// The name of an IAM user, validated against IAM's rules.
///
/// Validation here is what keeps hostile input (`../`, `*`, control characters, very long
/// strings) out of every adapter and log line.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl UserName {
    /// Validates `name` as an IAM user name.
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        let len = name.chars().count();
        if !(1..=64).contains(&len) {
            return Err(NameError::UserNameLength(len));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
        {
            return Err(NameError::UserNameCharacter(bad));
        }
        Ok(Self(name))
    }

    /// The name as IAM spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UserName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for UserName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<UserName> for String {
    fn from(name: UserName) -> Self {
        name.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// An access key id such as `AKIAIOSFODNN7EXAMPLE`. Not secret: it is safe to log.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccessKeyId(String);

impl AccessKeyId {
    /// Validates `id` as an access key id.
    pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
        let id = id.into();
        let len = id.chars().count();
        if !(16..=128).contains(&len) {
            return Err(NameError::KeyIdLength(len));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit()))
        {
            return Err(NameError::KeyIdCharacter(bad));
        }
        Ok(Self(id))
    }

    /// The id as IAM spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccessKeyId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for AccessKeyId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<AccessKeyId> for String {
    fn from(id: AccessKeyId) -> Self {
        id.0
    }
}

impl fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Whether IAM accepts requests signed with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    /// The key authenticates.
    Active,
    /// The key is kept but does not authenticate; it can be re-activated.
    Inactive,
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "active",
            Self::Inactive => "inactive",
        })
    }
}

/// An access key as IAM lists it: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// The key's id.
    pub id: AccessKeyId,
    /// Active or inactive.
    pub status: KeyStatus,
    /// When IAM created the key.
    pub created: Timestamp,
}

/// The secret half of an access key.
///
/// Its `Debug` prints `[redacted]`, it has no `Display`, and its memory is zeroized on drop.
/// The only way to the bytes is [`SecretAccessKey::expose`], which is easy to find in review.
#[derive(Clone)]
pub struct SecretAccessKey(SecretString);

impl SecretAccessKey {
    /// Wraps secret key material.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(SecretString::from(secret.into()))
    }

    /// The secret itself, for signing requests or handing to an authorised caller.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretAccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl PartialEq for SecretAccessKey {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.expose()
            .as_bytes()
            .ct_eq(other.expose().as_bytes())
            .into()
    }
}

impl Eq for SecretAccessKey {}

/// A complete access key: the id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The public half.
    pub access_key_id: AccessKeyId,
    /// The secret half.
    pub secret_access_key: SecretAccessKey,
}

/// A key IAM has just created: what it lists, and the secret it shows only this once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The key as [`crate::Iam::list_keys`] would list it.
    pub key: AccessKey,
    /// The secret; lose it and the key is an orphan.
    pub secret: SecretAccessKey,
}

impl NewKey {
    /// The key's credentials.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            access_key_id: self.key.id.clone(),
            secret_access_key: self.secret.clone(),
        }
    }
}

/// What IAM says about when a key was last used.
///
/// Only [`LastUsed::Never`] and [`LastUsed::At`] are answers; anything else, an error included,
/// is [`LastUsed::Unknown`], which keyrot treats as "maybe in use", never as "unused".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastUsed {
    /// IAM answered that the key has never been used.
    Never,
    /// IAM answered with the last time the key was used.
    At(Timestamp),
    /// No answer: an error, a throttle, or a reply keyrot could not read.
    Unknown,
}

/// The staging labels keyrot uses on a stored version (Secrets Manager's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// `AWSCURRENT`: the version callers are given.
    pub current: bool,
    /// `AWSPENDING`: a staged key not yet proven to work.
    pub pending: bool,
    /// `AWSPREVIOUS`: the version that was current before.
    pub previous: bool,
}

impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.current, "current"),
            (self.pending, "pending"),
            (self.previous, "previous"),
        ];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str("+")?;
            }
            f.write_str(name)?;
            first = false;
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// One stored version of a user's secret: which key it holds and its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The key whose secret this version holds.
    pub key_id: AccessKeyId,
    /// Its staging labels.
    pub stages: Stages,
}

/// A fact keyrot records about a key, with the time it became true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    /// The key existed before keyrot managed the user; keyrot never had its secret.
    Adopted,
    /// Another key was published in its place: the grace period runs from here.
    Superseded,
    /// The key was deactivated: the recovery window runs from here.
    Deactivated,
}

impl Mark {
    /// A stable lower-case name, used in storage and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adopted => "adopted",
            Self::Superseded => "superseded",
            Self::Deactivated => "deactivated",
        }
    }
}

/// The recorded marks of one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// When the key was adopted.
    pub adopted: Option<Timestamp>,
    /// When the key stopped being current.
    pub superseded: Option<Timestamp>,
    /// When keyrot deactivated the key.
    pub deactivated: Option<Timestamp>,
}

impl Marks {
    /// The time recorded for `mark`, if any.
    pub fn get(&self, mark: Mark) -> Option<Timestamp> {
        match mark {
            Mark::Adopted => self.adopted,
            Mark::Superseded => self.superseded,
            Mark::Deactivated => self.deactivated,
        }
    }

    /// Records `mark` at `at`.
    pub fn set(&mut self, mark: Mark, at: Timestamp) {
        let slot = match mark {
            Mark::Adopted => &mut self.adopted,
            Mark::Superseded => &mut self.superseded,
            Mark::Deactivated => &mut self.deactivated,
        };
        *slot = Some(at);
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Everything the secret store holds about one user, without secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredUser {
    /// The stored versions, newest first where the store knows the order.
    pub versions: Vec<StoredVersion>,
    /// Recorded marks, by key.
    pub marks: BTreeMap<AccessKeyId, Marks>,
    /// What keyrot recorded when it last set out to create a key for the user, before it called
    /// CreateAccessKey: by it keyrot knows its own orphans (see [`StoredUser::intended`]).
    pub intent: Option<Intent>,
    /// The last notice of a standing condition sent about the user, recorded by the driver
    /// after it went out: by it a repeat within the repeat period is held back.
    pub last_notice: Option<SentNotice>,
    /// Which key each delivery destination was last seen to hold (see
    /// [`crate::delivery`]), recorded through
    /// [`crate::ports::SecretStore::record_delivered`].
    pub delivered: crate::delivery::DeliveryRecords,
}

/// A notice of a standing condition that went out about a user: which one (by fingerprint)
/// and when. Recorded through [`crate::ports::SecretStore::record_notice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotice {
    /// A short digest of the notice's text (see [`crate::ports::Notice::fingerprint`]).
    pub fingerprint: String,
    /// When it was sent, by keyrot's clock.
    pub at: Timestamp,
}

impl SentNotice {
    /// The stored form: `fp=<fingerprint> at=<RFC 3339>`.
    pub fn encode(&self) -> String {
        format!("fp={} at={}", self.fingerprint, self.at)
    }

    /// Reads [`SentNotice::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (fingerprint, at) = text.split_once(' ')?;
        let fingerprint = fingerprint.strip_prefix("fp=")?;
        if fingerprint.is_empty() || fingerprint.contains(char::is_whitespace) {
            return None;
        }
        Some(Self {
            fingerprint: fingerprint.to_owned(),
            at: at.strip_prefix("at=")?.parse().ok()?,
        })
    }
}

/// keyrot is about to create a key: when, and which keys the user had then. Recorded before
/// every CreateAccessKey, so that a key whose secret was lost (with a reply, or in a crash) is
/// known for keyrot's own orphan and never adopted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intent {
    /// When the intent was recorded, by keyrot's clock.
    pub at: Timestamp,
    /// The keys IAM listed for the user then: none of them is the new key.
    pub existing: BTreeSet<AccessKeyId>,
    /// When IAM created each of the `existing` keys, in whole seconds (as IAM's credential
    /// report gives them). Lets a [survey](crate::survey) recognise the user's keys in the
    /// report, which names no key ids. Empty in intents recorded before keyrot kept it.
    pub created: BTreeMap<AccessKeyId, Timestamp>,
}

impl Intent {
    /// An intent recorded at `at`, before creating a key for a user who has `keys`.
    pub fn new(at: Timestamp, keys: &[AccessKey]) -> Self {
        Self {
            at,
            existing: keys.iter().map(|k| k.id.clone()).collect(),
            created: keys
                .iter()
                .map(|k| (k.id.clone(), whole_seconds(k.created)))
                .collect(),
        }
    }

    /// The stored form: `at=<RFC 3339> keys=<id>@<unix seconds>,...` (at most two keys; the
    /// `@<seconds>` is left out for a key whose creation time is not known).
    pub fn encode(&self) -> String {
        let keys: Vec<String> = self
            .existing
            .iter()
            .map(|id| match self.created.get(id) {
                Some(created) => format!("{id}@{}", created.as_second()),
                None => id.as_str().to_owned(),
            })
            .collect();
        format!("at={} keys={}", self.at, keys.join(","))
    }

    /// Reads [`Intent::encode`]'s form, and the older one without creation times; `None` for
    /// anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (at, keys) = text.split_once(' ')?;
        let at = at.strip_prefix("at=")?.parse().ok()?;
        let keys = keys.strip_prefix("keys=")?;
        let mut intent = Self {
            at,
            ..Self::default()
        };
        for key in keys.split(',').filter(|k| !k.is_empty()) {
            let (id, created) = match key.split_once('@') {
                Some((id, secs)) => {
                    let secs = secs.parse().ok()?;
                    (id, Some(Timestamp::from_second(secs).ok()?))
                }
                None => (key, None),
            };
            let id = AccessKeyId::new(id).ok()?;
            if let Some(created) = created {
                intent.created.insert(id.clone(), created);
            }
            intent.existing.insert(id);
        }
        Some(intent)
    }
}

/// `at` truncated to the whole second, as IAM's credential report writes times.
pub fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

impl StoredUser {
    /// The key named by the current version.
    pub fn current(&self) -> Option<&AccessKeyId> {
        self.versions
            .iter()
            .find(|v| v.stages.current)
            .map(|v| &v.key_id)
    }

    /// The key named by the pending version, unless that version is or was current: Secrets
    /// Manager leaves `AWSPENDING` on a version it promotes, so after a rollback the key rolled
    /// back from is labelled `AWSPREVIOUS` and still `AWSPENDING`, and must not be published
    /// again.
    pub fn pending(&self) -> Option<&AccessKeyId> {
        self.versions
            .iter()
            .find(|v| v.stages.pending && !v.stages.current && !v.stages.previous)
            .map(|v| &v.key_id)
    }

    /// Whether a stored version holds `key`'s secret.
    pub fn has_version(&self, key: &AccessKeyId) -> bool {
        self.versions.iter().any(|v| &v.key_id == key)
    }

    /// Whether every key of `keys` (what IAM lists) has a labelled version here or was adopted:
    /// then versions that lost their labels, which hold only keys gone from IAM, add nothing
    /// an observation needs (see [`crate::SecretStore::load_for`]).
    pub fn accounts_for(&self, keys: &[AccessKeyId]) -> bool {
        keys.iter().all(|key| {
            self.marks_of(key).adopted.is_some()
                || self
                    .versions
                    .iter()
                    .any(|v| &v.key_id == key && v.stages != Stages::default())
        })
    }

    /// Whether keyrot knows `key`: it stored its secret or adopted it.
    pub fn knows(&self, key: &AccessKeyId) -> bool {
        self.has_version(key) || self.marks_of(key).adopted.is_some()
    }

    /// The marks recorded for `key` (empty when none).
    pub fn marks_of(&self, key: &AccessKeyId) -> Marks {
        self.marks.get(key).copied().unwrap_or_default()
    }

    /// Whether `key` may be the one keyrot set out to create under its last intent: not among
    /// the keys the user had then, and created within [`INTENT_WINDOW`] of it (either side, for
    /// clock skew between keyrot and IAM).
    pub fn intended(&self, key: &AccessKey) -> bool {
        self.intent.as_ref().is_some_and(|intent| {
            let window = jiff::SignedDuration::try_from(INTENT_WINDOW).unwrap_or_default();
            !intent.existing.contains(&key.id)
                && key.created.duration_since(intent.at).abs() <= window
        })
    }
}

/// How close to a recorded intent IAM's creation time of a key must be for the key to count as
/// keyrot's own. CreateAccessKey is called right after the intent is recorded, and is never
/// retried, so its effect lands within one call timeout (a minute) plus the clock skew between
/// the caller and IAM. Once the key made under an intent is stored the intent is spent; only an
/// operator's key made this close to an intent whose key was lost would be taken for keyrot's
/// orphan.
pub const INTENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The Secrets Manager `ClientRequestToken` (and so the version id) of the version that holds
/// `key`'s secret: 32 to 64 characters, derived from the key id alone, so that a retried
/// `PutSecretValue` for the same key is idempotent.
///
/// Usual key ids (20 characters) give `keyrot-v1-` + the id, padded with `-` to 32 characters.
/// Ids too long for that (over 54 characters) give `keyrot-v1h-` + the first 53 hex digits of
/// the id's SHA-256. Both forms are injective in practice: ids are upper-case letters and
/// digits, so neither form can produce the other. [`key_of_request_token`] reverses the first.
///
/// ```
/// use keyrot_core::AccessKeyId;
/// use keyrot_core::request_token;
///
/// let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE")?;
/// assert_eq!(request_token(&key), "keyrot-v1-AKIAIOSFODNN7EXAMPLE--");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn request_token(key: &AccessKeyId) -> String {
    const PREFIX: &str = "keyrot-v1-";
    const MIN: usize = 32;
    const MAX: usize = 64;
    let id = key.as_str();
    if PREFIX.len() + id.len() <= MAX {
        let mut token = format!("{PREFIX}{id}");
        while token.len() < MIN {
            token.push('-');
        }
        token
    } else {
        let digest = Sha256::digest(id.as_bytes());
        let mut token = format!("keyrot-v1h-{}", hex::encode(digest));
        token.truncate(MAX);
        token
    }
}

/// The key id a [`request_token`] of the first form names, or `None` for any other version id
/// (a hashed token, or a version keyrot did not write).
///
/// ```
/// use keyrot_core::{AccessKeyId, key_of_request_token, request_token};
///
/// let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE")?;
/// assert_eq!(key_of_request_token(&request_token(&key)), Some(key));
/// assert_eq!(key_of_request_token("3f9c2a5e-1d7b-4c8e-9a0f-6b2d4e8c1a7f"), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn key_of_request_token(token: &str) -> Option<AccessKeyId> {
    let id = token.strip_prefix("keyrot-v1-")?.trim_end_matches('-');
    AccessKeyId::new(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_key_id_gives_the_lower_case_hex_of_its_digest() {
        // "keyrot-v1h-" and the first 53 hex digits of SHA-256("A" * 55), as `sha256sum` writes
        // them: the version ids written before the hex crate did this must stay the same.
        let key = AccessKeyId::new("A".repeat(55)).unwrap();
        assert_eq!(
            request_token(&key),
            "keyrot-v1h-8963cc0afd622cc7574ac2011f93a3059b3d65548a77542a1559e"
        );
    }

    #[test]
    fn user_names_follow_iam_rules() {
        assert!(UserName::new("ci-deployer.prod@example+1=a,b_c").is_ok());
        assert_eq!(UserName::new(""), Err(NameError::UserNameLength(0)));
        assert_eq!(
            UserName::new("x".repeat(65)),
            Err(NameError::UserNameLength(65))
        );
        assert_eq!(
            UserName::new("../etc"),
            Err(NameError::UserNameCharacter('/'))
        );
        assert_eq!(UserName::new("a*"), Err(NameError::UserNameCharacter('*')));
        assert_eq!(
            UserName::new("jos\u{e9}"),
            Err(NameError::UserNameCharacter('\u{e9}'))
        );
    }

    #[test]
    fn key_ids_follow_iam_rules() {
        assert!(AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert_eq!(AccessKeyId::new("AKIA"), Err(NameError::KeyIdLength(4)));
        assert_eq!(
            AccessKeyId::new("akiaiosfodnn7example"),
            Err(NameError::KeyIdCharacter('a'))
        );
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let creds = Credentials {
            access_key_id: AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap(),
            secret_access_key: SecretAccessKey::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        };
        let shown = format!("{creds:?} {creds:#?}");
        assert!(!shown.contains("wJalr"), "{shown}");
        assert!(shown.contains("[redacted]"));
        assert!(shown.contains("AKIAIOSFODNN7EXAMPLE"));
    }

    #[test]
    fn sent_notices_round_trip_and_refuse_other_text() {
        let sent = SentNotice {
            fingerprint: "0123456789abcdef".into(),
            at: "2025-06-01T12:00:00Z".parse().unwrap(),
        };
        assert_eq!(sent.encode(), "fp=0123456789abcdef at=2025-06-01T12:00:00Z");
        assert_eq!(SentNotice::decode(&sent.encode()), Some(sent));
        for bad in [
            "",
            "fp= at=2025-06-01T12:00:00Z",
            "fp=ab",
            "fp=ab at=yesterday",
            "x=ab at=2025-06-01T12:00:00Z",
        ] {
            assert_eq!(SentNotice::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn intents_round_trip_and_refuse_other_text() {
        let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap();
        let at: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let made: Timestamp = "2025-10-01T08:30:15.25Z".parse().unwrap();
        let known = AccessKey {
            id: key.clone(),
            status: KeyStatus::Active,
            created: made,
        };
        for intent in [
            Intent::new(at, &[]),
            Intent::new(at, std::slice::from_ref(&known)),
            // Recorded before keyrot kept creation times.
            Intent {
                at,
                existing: BTreeSet::from([key.clone()]),
                created: BTreeMap::new(),
            },
        ] {
            assert_eq!(Intent::decode(&intent.encode()), Some(intent));
        }
        // Creation times are kept to the second, as the credential report gives them.
        let intent = Intent::decode(&Intent::new(at, &[known]).encode()).unwrap();
        assert_eq!(
            intent.created[&key],
            "2025-10-01T08:30:15Z".parse().unwrap()
        );
        assert_eq!(
            Intent::decode("at=2026-01-01T00:00:00Z keys=AKIAIOSFODNN7EXAMPLE"),
            Some(Intent {
                at,
                existing: BTreeSet::from([key]),
                created: BTreeMap::new(),
            })
        );
        for bad in [
            "",
            "2026-01-01T00:00:00Z",
            "at=yesterday keys=",
            "at=2026-01-01T00:00:00Z keys=a*",
            "at=2026-01-01T00:00:00Z keys=AKIAIOSFODNN7EXAMPLE@soon",
            "at=2026-01-01T00:00:00Z keys=AKIAIOSFODNN7EXAMPLE@99999999999999999",
        ] {
            assert_eq!(Intent::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn stages_print_compactly() {
        let s = Stages {
            current: true,
            pending: true,
            previous: false,
        };
        assert_eq!(s.to_string(), "current+pending");
        assert_eq!(Stages::default().to_string(), "-");
    }
}
