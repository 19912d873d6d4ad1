//! Delivery: pushed copies of a user's current key, written to where its consumers read it (an
//! SSM parameter, another Secrets Manager secret, a GitHub Actions secret), and the rule that
//! comes with them: a superseded key is deactivated only once every destination of the user
//! holds its successor, unless the maximum grace forces it (with an alert that names the
//! destinations that failed).
//!
//! This module performs no IO. It defines what a destination is ([`Destination`], parsed and
//! checked from the one text form that both configuration and the user tag [`DELIVER_TAG`]
//! use), the record of a delivery that the secret store keeps ([`Delivered`]) and the
//! [`Delivery`] port that adapters implement.
//!
//! # The text form
//!
//! Destinations are written as space-separated entries `ID=KIND:...` (spaces separate, as AWS
//! tag values allow no `,` or `;`):
//!
//! - `ID=ssm:REGION:NAME` or `ID=ssm:REGION:NAME@KMS_KEY`: an SSM Parameter Store
//!   `SecureString` named `NAME` in `REGION`, encrypted with `KMS_KEY` (an id, alias or ARN;
//!   the account's `alias/aws/ssm` when left out);
//! - `ID=sm:REGION:SECRET`: a Secrets Manager secret (a name, or an ARN for a secret in another
//!   account) in `REGION`, holding the same JSON as keyrot's own secret;
//! - `ID=gh-repo:OWNER/REPO:PREFIX`, `ID=gh-env:OWNER/REPO/ENVIRONMENT:PREFIX`,
//!   `ID=gh-org:ORG:PREFIX`: GitHub Actions secrets `PREFIX_ACCESS_KEY_ID` and
//!   `PREFIX_SECRET_ACCESS_KEY` of a repository, an environment or an organization.
//!
//! `ID` names the destination in records and alerts: 1 to 32 lower-case letters, digits and
//! `-`, starting with a letter.
//!
//! ```
//! use keyrot_core::delivery::{Target, parse_destinations};
//!
//! let found = parse_destinations("ci=ssm:eu-west-1:/ci/aws-key prod=sm:us-east-2:consumer/aws")?;
//! assert_eq!(found[0].id.as_str(), "ci");
//! assert!(matches!(found[1].target, Target::SecretsManager { .. }));
//! assert!(parse_destinations("ci=ftp:somewhere").is_err());
//! # Ok::<(), keyrot_core::delivery::DestinationError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::model::{AccessKeyId, Credentials, StoredUser, Timestamp, UserName};
use crate::ports::BoxError;

/// The IAM user tag that declares a user's destinations, in the [text form](self#the-text-form).
pub const DELIVER_TAG: &str = "keyrot:deliver";

/// Why a destination's text is not a destination. Each message names the entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// An entry lacks the `ID=` before its kind.
    #[error("destination {0:?} must be written ID=KIND:...")]
    NoId(String),
    /// The id breaks the id rules.
    #[error(
        "destination id {0:?} must be 1 to 32 lower-case letters, digits and -, starting with a \
         letter"
    )]
    BadId(String),
    /// Two entries share an id.
    #[error("destination id {0:?} is used twice")]
    DuplicateId(String),
    /// The kind is none keyrot knows.
    #[error(
        "destination {id}: unknown kind {kind:?} (expected ssm, sm, gh-repo, gh-env or gh-org)"
    )]
    UnknownKind {
        /// The entry's id.
        id: String,
        /// The kind as written.
        kind: String,
    },
    /// A part of the entry is missing or malformed.
    #[error("destination {id}: {what}")]
    Malformed {
        /// The entry's id.
        id: String,
        /// What is wrong, in words.
        what: String,
    },
}

/// A destination's name in records and alerts (see the [module docs](self#the-text-form)).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DestinationId(String);

impl DestinationId {
    /// Checks `id` against the id rules.
    pub fn new(id: impl Into<String>) -> Result<Self, DestinationError> {
        let id = id.into();
        let ok = (1..=32).contains(&id.len())
            && id.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(id))
        } else {
            Err(DestinationError::BadId(id))
        }
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which GitHub Actions secrets a GitHub destination writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GitHubScope {
    /// A repository's secrets.
    Repository {
        /// The owner (user or organization).
        owner: String,
        /// The repository.
        repo: String,
    },
    /// An environment's secrets.
    Environment {
        /// The owner (user or organization).
        owner: String,
        /// The repository.
        repo: String,
        /// The environment.
        environment: String,
    },
    /// An organization's secrets.
    Organization {
        /// The organization.
        org: String,
    },
}

/// Where a destination is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An SSM Parameter Store `SecureString`.
    Ssm {
        /// The parameter's region.
        region: String,
        /// The parameter's name.
        name: String,
        /// The KMS key that encrypts it; the account's default for SSM when `None`.
        kms_key: Option<String>,
    },
    /// A Secrets Manager secret of the consumer's choosing.
    SecretsManager {
        /// The secret's region.
        region: String,
        /// The secret's name or ARN.
        secret: String,
    },
    /// GitHub Actions secrets `PREFIX_ACCESS_KEY_ID` and `PREFIX_SECRET_ACCESS_KEY`.
    GitHub {
        /// Whose secrets.
        scope: GitHubScope,
        /// The secrets' name prefix.
        prefix: String,
    },
}

impl Target {
    /// The kind's short name in alerts: `SSM`, `Secrets Manager`, `GitHub`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ssm { .. } => "SSM",
            Self::SecretsManager { .. } => "Secrets Manager",
            Self::GitHub { .. } => "GitHub",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ssm {
                region,
                name,
                kms_key,
            } => {
                write!(f, "ssm:{region}:{name}")?;
                match kms_key {
                    Some(key) => write!(f, "@{key}"),
                    None => Ok(()),
                }
            }
            Self::SecretsManager { region, secret } => write!(f, "sm:{region}:{secret}"),
            Self::GitHub { scope, prefix } => match scope {
                GitHubScope::Repository { owner, repo } => {
                    write!(f, "gh-repo:{owner}/{repo}:{prefix}")
                }
                GitHubScope::Environment {
                    owner,
                    repo,
                    environment,
                } => write!(f, "gh-env:{owner}/{repo}/{environment}:{prefix}"),
                GitHubScope::Organization { org } => write!(f, "gh-org:{org}:{prefix}"),
            },
        }
    }
}

/// One delivery destination of a user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    /// Its name in records and alerts.
    pub id: DestinationId,
    /// Where it is.
    pub target: Target,
}

impl Destination {
    /// A short digest of the target (16 hex digits): a record made for another target under
    /// the same id (the configuration changed) does not count.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.target.to_string().as_bytes());
        hex::encode(&digest[..8])
    }

    /// Whether `stored` records that this destination holds `key` (seen there, not only
    /// being written).
    pub fn holds(&self, stored: &StoredUser, key: &AccessKeyId) -> bool {
        stored
            .delivered
            .get(&self.id)
            .is_some_and(|d| d.landed && &d.key == key && d.target == self.fingerprint())
    }
}

impl fmt::Display for Destination {
    /// `ID (KIND TARGET)`, as alerts name it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.id, self.target.kind(), self.target)
    }
}

/// Parses the [text form](self#the-text-form): every entry checked, ids unique.
pub fn parse_destinations(text: &str) -> Result<Vec<Destination>, DestinationError> {
    let mut found: Vec<Destination> = Vec::new();
    for entry in text.split_whitespace() {
        let (id, spec) = entry
            .split_once('=')
            .ok_or_else(|| DestinationError::NoId(entry.to_owned()))?;
        let id = DestinationId::new(id)?;
        if found.iter().any(|d| d.id == id) {
            return Err(DestinationError::DuplicateId(id.0));
        }
        let target = parse_target(&id, spec)?;
        found.push(Destination { id, target });
    }
    Ok(found)
}

fn parse_target(id: &DestinationId, spec: &str) -> Result<Target, DestinationError> {
    let bad = |what: &str| DestinationError::Malformed {
        id: id.0.clone(),
        what: what.to_owned(),
    };
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "ssm" | "sm" => {
            let (region, name) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected KIND:REGION:NAME"))?;
            if !valid_region(region) {
                return Err(bad(&format!("{region:?} is not an AWS region")));
            }
            let region = region.to_owned();
            if kind == "sm" {
                if !valid_secret_id(name) {
                    return Err(bad(&format!(
                        "{name:?} is not a Secrets Manager secret name or ARN"
                    )));
                }
                return Ok(Target::SecretsManager {
                    region,
                    secret: name.to_owned(),
                });
            }
            let (name, kms_key) = match name.split_once('@') {
                Some((name, key)) if valid_kms_key(key) => (name, Some(key.to_owned())),
                Some((_, key)) => return Err(bad(&format!("{key:?} is not a KMS key"))),
                None => (name, None),
            };
            if !valid_parameter_name(name) {
                return Err(bad(&format!(
                    "{name:?} is not an SSM parameter name (letters, digits, _.-/, a path \
                     starting with /, not starting with aws or ssm)"
                )));
            }
            Ok(Target::Ssm {
                region,
                name: name.to_owned(),
                kms_key,
            })
        }
        "gh-repo" | "gh-env" | "gh-org" => {
            let (path, prefix) = rest
                .split_once(':')
                .ok_or_else(|| bad("expected KIND:PATH:PREFIX"))?;
            if !valid_github_secret_prefix(prefix) {
                return Err(bad(&format!(
                    "{prefix:?} is not a GitHub secret name prefix (letters, digits and _, not \
                     starting with a digit or GITHUB_)"
                )));
            }
            let parts: Vec<&str> = path.split('/').collect();
            if !parts.iter().all(|p| valid_github_name(p)) {
                return Err(bad(&format!(
                    "{path:?} names no GitHub owner or repository"
                )));
            }
            let scope = match (kind, parts.as_slice()) {
                ("gh-repo", [owner, repo]) => GitHubScope::Repository {
                    owner: (*owner).to_owned(),
                    repo: (*repo).to_owned(),
                },
                ("gh-env", [owner, repo, environment]) => GitHubScope::Environment {
                    owner: (*owner).to_owned(),
                    repo: (*repo).to_owned(),
                    environment: (*environment).to_owned(),
                },
                ("gh-org", [org]) => GitHubScope::Organization {
                    org: (*org).to_owned(),
                },
                _ => {
                    return Err(bad(&format!(
                        "{kind} takes {}",
                        match kind {
                            "gh-repo" => "OWNER/REPO",
                            "gh-env" => "OWNER/REPO/ENVIRONMENT",
                            _ => "ORG",
                        }
                    )));
                }
            };
            Ok(Target::GitHub {
                scope,
                prefix: prefix.to_owned(),
            })
        }
        other => Err(DestinationError::UnknownKind {
            id: id.0.clone(),
            kind: other.to_owned(),
        }),
    }
}

/// `xx-name-N` (`eu-west-1`, `us-gov-east-1`, `ap-southeast-5`).
fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

/// SSM's rules (PutParameter): letters, digits, `_.-/`, at most 1011 characters; a
/// hierarchy starts with `/`; no name starts with `aws` or `ssm`.
fn valid_parameter_name(name: &str) -> bool {
    let lower = name.trim_start_matches('/').to_ascii_lowercase();
    (1..=1011).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
        && (!name.contains('/') || name.starts_with('/'))
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
        && !lower.is_empty()
}

/// Secrets Manager's name rules (letters, digits, `/_+=.@-`, at most 512), or an ARN.
fn valid_secret_id(secret: &str) -> bool {
    if let Some(arn) = secret.strip_prefix("arn:") {
        return arn.split(':').count() >= 6
            && arn.contains(":secretsmanager:")
            && arn
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ":/_+=.@-".contains(c));
    }
    (1..=512).contains(&secret.len())
        && secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c))
}

/// A KMS key id, alias or ARN: letters, digits and `:/_-`.
fn valid_kms_key(key: &str) -> bool {
    (1..=2048).contains(&key.len())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":/_-".contains(c))
}

/// GitHub owners, repositories and environments as keyrot accepts them: letters, digits and
/// `._-`, at most 100 characters, not `.` or `..` (a path's parts in the REST API's URLs).
fn valid_github_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && !name.chars().all(|c| c == '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// GitHub's secret name rules: letters, digits and `_`, not starting with a digit or
/// `GITHUB_`; the prefix leaves room for `_SECRET_ACCESS_KEY`.
fn valid_github_secret_prefix(prefix: &str) -> bool {
    (1..=64).contains(&prefix.len())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !prefix.starts_with(|c: char| c.is_ascii_digit())
        && !prefix.to_ascii_uppercase().starts_with("GITHUB_")
}

/// What the secret store records of a delivery: the destination was seen to hold `key`
/// (`landed`), or `key` is being written to it; written to the target with this fingerprint
/// ([`Destination::fingerprint`]).
///
/// A write is recorded before it is made: a write may land although its reply is lost, so
/// once one is under way the record no longer says that the destination holds the key it held
/// before (which a rollback could make current again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The key the destination was seen to hold, or is being written.
    pub key: AccessKeyId,
    /// The fingerprint of the target.
    pub target: String,
    /// Seen there (read back); otherwise only being written.
    pub landed: bool,
}

impl Delivered {
    /// The record of `destination` holding `key`.
    pub fn new(destination: &Destination, key: AccessKeyId) -> Self {
        Self {
            key,
            target: destination.fingerprint(),
            landed: true,
        }
    }

    /// The record of `key` being written to `destination`.
    pub fn writing(destination: &Destination, key: AccessKeyId) -> Self {
        Self {
            landed: false,
            ..Self::new(destination, key)
        }
    }

    /// The stored form: `key=<id> to=<fingerprint>`, and ` writing` while not seen there.
    pub fn encode(&self) -> String {
        let writing = if self.landed { "" } else { " writing" };
        format!("key={} to={}{writing}", self.key, self.target)
    }

    /// Reads [`Delivered::encode`]'s form; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (text, landed) = match text.strip_suffix(" writing") {
            Some(text) => (text, false),
            None => (text, true),
        };
        let (key, target) = text.split_once(' ')?;
        let key = AccessKeyId::new(key.strip_prefix("key=")?).ok()?;
        let target = target.strip_prefix("to=")?;
        let hex16 = target.len() == 16 && target.chars().all(|c| c.is_ascii_hexdigit());
        hex16.then(|| Self {
            key,
            target: target.to_owned(),
            landed,
        })
    }
}

/// The destinations among `destinations` that `stored` does not record holding `key`.
pub fn missing<'a>(
    destinations: &'a [Destination],
    stored: &StoredUser,
    key: &AccessKeyId,
) -> Vec<&'a Destination> {
    destinations
        .iter()
        .filter(|d| !d.holds(stored, key))
        .collect()
}

/// The deliveries recorded for a user, by destination (see [`StoredUser::delivered`]).
pub type DeliveryRecords = BTreeMap<DestinationId, Delivered>;

/// Why a delivery call failed. A failure keeps the old key active (up to the maximum grace)
/// and is tried again on the next run.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The destination refused keyrot's credentials (GitHub's 401: a bad or expired token).
    #[error("the destination refused keyrot's credentials")]
    Unauthorized(#[source] BoxError),
    /// keyrot's role or token lacks a permission (AWS's AccessDenied, GitHub's 403).
    #[error("access denied by the destination")]
    AccessDenied(#[source] BoxError),
    /// The destination (its repository, environment, KMS key or secret) does not exist
    /// (GitHub's 404, AWS's not-found errors).
    #[error("the destination does not exist")]
    NotFound(#[source] BoxError),
    /// The destination refused the value or the request (GitHub's 422, AWS's validation
    /// errors).
    #[error("the destination refused the request")]
    Rejected(#[source] BoxError),
    /// The destination asked us to slow down (after the adapter's own retries).
    #[error("throttled by the destination")]
    Throttled(#[source] BoxError),
    /// A user's [`DELIVER_TAG`] is not in the text form.
    #[error("the user's {DELIVER_TAG} tag is malformed")]
    BadTag(#[source] DestinationError),
    /// Any other failure: a network error, a 5xx, a lost reply.
    #[error("delivery call failed")]
    Other(#[source] BoxError),
}

/// Pushed copies of a user's key, in keyrot's words. Every method is idempotent when retried:
/// writing the same key again leaves the destination as one write would.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Delivery: Send + Sync {
    /// The user's destinations: the configured ones and those of the user's [`DELIVER_TAG`].
    /// Called by every observation of a user and by a survey for each user: an adapter
    /// answers from configuration and from tags it read in bulk where it can.
    async fn destinations(&self, user: &UserName) -> Result<Vec<Destination>, DeliveryError>;

    /// Whether `destination` holds `key` now, as far as it can tell: read back where the
    /// destination allows it; for one that cannot be read (GitHub), whether this adapter's
    /// own write of `key` was accepted and the secret's `updated_at` shows it.
    async fn holds(
        &self,
        user: &UserName,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, DeliveryError>;

    /// Writes `credentials` to `destination`, replacing what it held; `created` is the key's
    /// creation time in IAM (keyrot's own secret holds it too).
    async fn write(
        &self,
        user: &UserName,
        destination: &Destination,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), DeliveryError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        parse_destinations(text).unwrap_err().to_string()
    }

    #[test]
    fn every_kind_parses_and_prints_back() {
        let text = "a=ssm:eu-west-1:/ci/key b=ssm:us-east-1:plain@alias/ci c=sm:eu-central-1:x/y \
                    d=sm:us-west-2:arn:aws:secretsmanager:us-west-2:123456789012:secret:x-AbCdEf \
                    e=gh-repo:acme/app:AWS f=gh-env:acme/app/prod:DEPLOY g=gh-org:acme:CI_AWS";
        let found = parse_destinations(text).unwrap();
        let printed: Vec<String> = found
            .iter()
            .map(|d| format!("{}={}", d.id, d.target))
            .collect();
        assert_eq!(
            printed.join(" "),
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(found[0].to_string(), "a (SSM ssm:eu-west-1:/ci/key)");
        assert_eq!(
            found[1].target,
            Target::Ssm {
                region: "us-east-1".into(),
                name: "plain".into(),
                kms_key: Some("alias/ci".into())
            }
        );
        assert_eq!(parse_destinations("  ").unwrap(), []);
    }

    #[test]
    fn bad_text_is_refused_with_the_entry_named() {
        for (text, message) in [
            (
                "ssm:eu-west-1:/x",
                "destination \"ssm:eu-west-1:/x\" must be written ID=KIND:...",
            ),
            (
                "Ci=ssm:eu-west-1:/x",
                "destination id \"Ci\" must be 1 to 32 lower-case letters, digits and -, starting with a letter",
            ),
            (
                "a=ssm:eu-west-1:/x a=sm:eu-west-1:y",
                "destination id \"a\" is used twice",
            ),
            (
                "a=ftp:x",
                "destination a: unknown kind \"ftp\" (expected ssm, sm, gh-repo, gh-env or gh-org)",
            ),
            ("a=ssm:/x", "destination a: expected KIND:REGION:NAME"),
            (
                "a=ssm:mars:/x",
                "destination a: \"mars\" is not an AWS region",
            ),
            (
                "a=ssm:eu-west-1:ci/x",
                "destination a: \"ci/x\" is not an SSM parameter name (letters, digits, _.-/, a path starting with /, not starting with aws or ssm)",
            ),
            (
                "a=ssm:eu-west-1:/aws/x",
                "destination a: \"/aws/x\" is not an SSM parameter name (letters, digits, _.-/, a path starting with /, not starting with aws or ssm)",
            ),
            (
                "a=ssm:eu-west-1:/x@",
                "destination a: \"\" is not a KMS key",
            ),
            (
                "a=sm:eu-west-1:a*b",
                "destination a: \"a*b\" is not a Secrets Manager secret name or ARN",
            ),
            (
                "a=gh-repo:acme:AWS",
                "destination a: gh-repo takes OWNER/REPO",
            ),
            (
                "a=gh-org:acme:GITHUB_X",
                "destination a: \"GITHUB_X\" is not a GitHub secret name prefix (letters, digits and _, not starting with a digit or GITHUB_)",
            ),
            (
                "a=gh-env:acme/x:AWS",
                "destination a: gh-env takes OWNER/REPO/ENVIRONMENT",
            ),
            (
                "a=gh-env:acme/../x:AWS",
                "destination a: \"acme/../x\" names no GitHub owner or repository",
            ),
            (
                "a=gh-repo:ac<me/x:AWS",
                "destination a: \"ac<me/x\" names no GitHub owner or repository",
            ),
        ] {
            assert_eq!(refused(text), message, "{text}");
        }
    }

    #[test]
    fn records_round_trip_and_count_only_for_the_same_target() {
        let key = AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap();
        let [ssm, moved] = ["ci=ssm:eu-west-1:/ci/key", "ci=ssm:eu-west-1:/ci/other"]
            .map(|t| parse_destinations(t).unwrap().remove(0));
        let record = Delivered::new(&ssm, key.clone());
        assert_eq!(Delivered::decode(&record.encode()), Some(record.clone()));
        let writing = Delivered::writing(&ssm, key.clone());
        assert!(writing.encode().ends_with(" writing"));
        assert_eq!(Delivered::decode(&writing.encode()), Some(writing.clone()));
        for bad in [
            "",
            "key=AKIAIOSFODNN7EXAMPLE",
            "key=x to=0123456789abcdef",
            "key=AKIAIOSFODNN7EXAMPLE to=xyz",
        ] {
            assert_eq!(Delivered::decode(bad), None, "{bad}");
        }
        let mut stored = StoredUser::default();
        stored.delivered.insert(ssm.id.clone(), writing);
        assert!(!ssm.holds(&stored, &key), "being written is not held");
        stored.delivered.insert(ssm.id.clone(), record);
        assert!(ssm.holds(&stored, &key));
        // The configuration moved the destination: the record is for another target.
        assert!(!moved.holds(&stored, &key));
        let other = AccessKeyId::new("AKIAI44QH8DHBEXAMPLE").unwrap();
        assert_eq!(missing(std::slice::from_ref(&ssm), &stored, &other), [&ssm]);
    }
}
