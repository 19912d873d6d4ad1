//! [`SecretStore`] on aws-sdk-secretsmanager.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, SecretVersionsListEntry, Tag};
use keyrot_core::delivery::{Delivered, DestinationId};
use keyrot_core::{
    AccessKeyId, BoxError, Credentials, Intent, Mark, Marks, SecretAccessKey, SecretStore,
    SentNotice, Stages, StoreError, StoredUser, StoredVersion, Timestamp, UserName,
    key_of_request_token, request_token,
};
use serde::{Deserialize, Serialize};

use crate::error::{Kind, kind, store_error};

/// Where per-user secrets live unless configured otherwise: `keyrot/users/<UserName>`.
pub const DEFAULT_PREFIX: &str = "keyrot/users/";

/// The tag every secret keyrot creates carries, so that people and policies can find them.
pub const MANAGED_BY_TAG: (&str, &str) = ("keyrot:managed-by", "keyrot");

/// The tag recording the last notice of a standing condition sent about the user
/// ([`StoredUser::last_notice`]).
const ALERT_TAG: &str = "keyrot:last-alert";

/// The tag recording when keyrot last set out to create a key ([`StoredUser::intent`]).
const INTENT_TAG: &str = "keyrot:intent";

/// Tags whose key starts with this record deliveries ([`Delivered`]), one tag per destination:
/// `keyrot:delivered:<destination id>`.
const DELIVERED_TAG_PREFIX: &str = "keyrot:delivered:";

/// Tags whose key starts with this record [`Marks`], one tag per access key.
const MARK_TAG_PREFIX: &str = "keyrot:mark:";

/// The version a new secret is created with, so that the first `PutSecretValue` does not
/// become `AWSCURRENT` on its own: Secrets Manager attaches `AWSCURRENT` to a secret's first
/// version whatever stages the call asks for, and keyrot publishes only verified keys.
const PLACEHOLDER_VERSION: &str = "keyrot-v0-placeholder-0000000000";
const PLACEHOLDER_VALUE: &str = r#"{"keyrot":"no access key has been published yet"}"#;

const AWSCURRENT: &str = "AWSCURRENT";
const AWSPENDING: &str = "AWSPENDING";
const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// The JSON every keyrot secret version holds. Consumers that read Secrets Manager directly
/// (`GetSecretValue` with `VersionStage=AWSCURRENT`) get exactly this:
///
/// ```json
/// {"AccessKeyId": "AKIA...", "SecretAccessKey": "...", "UserName": "deployer",
///  "CreateDate": "2025-06-01T12:00:00Z"}
/// ```
///
/// `CreateDate` is the key's creation time in IAM (RFC 3339).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Payload {
    access_key_id: String,
    secret_access_key: String,
    user_name: String,
    create_date: String,
}

/// The JSON of [`Payload`] for `user`'s `credentials`, created in IAM at `created`: what
/// keyrot's secret holds, and what it delivers to SSM and Secrets Manager destinations.
pub(crate) fn payload(
    user: &UserName,
    credentials: &Credentials,
    created: Timestamp,
) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Payload {
        access_key_id: credentials.access_key_id.as_str().to_owned(),
        secret_access_key: credentials.secret_access_key.expose().to_owned(),
        user_name: user.as_str().to_owned(),
        create_date: created.to_string(),
    })
}

/// Secrets Manager through the AWS SDK: one secret per managed user.
///
/// - The secret is `<prefix><UserName>` (prefix [`DEFAULT_PREFIX`] unless set), tagged
///   [`MANAGED_BY_TAG`] and `keyrot:user`, created on first use with a placeholder version
///   (see below) and, if configured, a customer KMS key.
/// - Each access key is one version holding the JSON payload below, with
///   the version id [`request_token`] of its key, so a retried `PutSecretValue` is idempotent
///   and a different value under the same id is refused ([`StoreError::Conflict`]).
/// - New keys go in with `VersionStages=[AWSPENDING]`; promotion is
///   `UpdateSecretVersionStage(AWSCURRENT, MoveToVersionId, RemoveFromVersionId)`, after which
///   Secrets Manager moves `AWSPREVIOUS` to the version that lost `AWSCURRENT`. A promotion
///   that fails although the key is current afterwards (the SDK's retry of an attempt whose
///   reply was lost, refused) is a success (see [`crate::retries`]).
/// - Versions are listed with `ListSecretVersionIds(IncludeDeprecated=true)`, so a version that
///   lost its labels still counts as known (as in the in-memory fake).
/// - Marks (adopted, superseded, deactivated) are tags of the secret: `keyrot:mark:<key id>`
///   with a value such as `key=AKIA... superseded=2025-06-01T12:00:00Z`; the intent recorded
///   before each CreateAccessKey is the tag `keyrot:intent` (`at=<RFC 3339> keys=<ids>`), the
///   last notice of a standing condition sent the tag `keyrot:last-alert`
///   (`fp=<fingerprint> at=<RFC 3339>`), each delivery the tag
///   `keyrot:delivered:<destination id>` (`key=<id> to=<fingerprint>`).
/// - The current value is always read with `VersionStage=AWSCURRENT` explicitly.
/// - Secrets Manager attaches `AWSCURRENT` to the first version of a secret whatever the call
///   asks for; a new secret therefore starts with a placeholder version that holds no key, so
///   that a pending key never becomes current before it is verified. Readers see no current key
///   until the first one is published.
/// - Each version holds keyrot's JSON (`AccessKeyId`, `SecretAccessKey`, `UserName`, and
///   `CreateDate` in RFC 3339), which is what consumers reading Secrets Manager directly get.
#[derive(Debug, Clone)]
pub struct AwsSecretStore {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
    kms_key_id: Option<String>,
    /// Users whose secret this store last found missing. Their first write creates it with
    /// the tag it writes, instead of failing on the missing secret first (one call less for a
    /// user's first rotation). A stale entry costs that call back: CreateSecret refuses an
    /// existing secret, and the write goes on as usual.
    absent: Arc<Mutex<HashSet<UserName>>>,
}

/// What one user's secret holds.
#[derive(Debug)]
struct Secret {
    tags: Vec<Tag>,
    /// The version labelled `AWSCURRENT`, the placeholder included.
    current_version: Option<String>,
    /// The versions holding keys, newest first.
    versions: Vec<Version>,
}

/// One version of a user's secret.
#[derive(Debug)]
struct Version {
    id: String,
    key_id: AccessKeyId,
    stages: Stages,
}

impl AwsSecretStore {
    /// A store under [`DEFAULT_PREFIX`], encrypted with the account's default key.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            kms_key_id: None,
            absent: Arc::default(),
        }
    }

    /// Names secrets `<prefix><UserName>` instead.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Encrypts new secrets with this KMS key (id, ARN or alias).
    pub fn with_kms_key(mut self, kms_key_id: impl Into<String>) -> Self {
        self.kms_key_id = Some(kms_key_id.into());
        self
    }

    /// The name of `user`'s secret.
    pub fn secret_name(&self, user: &UserName) -> String {
        format!("{}{user}", self.prefix)
    }

    /// Sets one tag of `user`'s secret, creating the secret first if need be. TagResource
    /// replaces a tag's value, so a retry after a lost reply writes the same value again.
    async fn tag_secret(&self, user: &UserName, key: &str, value: &str) -> Result<(), StoreError> {
        if self.absent().remove(user) && self.create_secret(user, Some(tag(key, value))).await? {
            return Ok(());
        }
        let tag_it = || {
            self.client
                .tag_resource()
                .secret_id(self.secret_name(user))
                .tags(tag(key, value))
                .send()
        };
        match tag_it().await {
            Ok(_) => Ok(()),
            Err(e) if kind(&e) == Kind::NotFound => {
                // Created with the tag, unless another writer created it first.
                if self.create_secret(user, Some(tag(key, value))).await? {
                    return Ok(());
                }
                tag_it().await.map(drop).map_err(store_error)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Creates `user`'s secret with its placeholder version and `with` among its tags; `false`
    /// (and nothing changed) if it exists already.
    async fn create_secret(&self, user: &UserName, with: Option<Tag>) -> Result<bool, StoreError> {
        let result = self
            .client
            .create_secret()
            .name(self.secret_name(user))
            .description(format!(
                "The current IAM access key of {user}, rotated by keyrot"
            ))
            .set_kms_key_id(self.kms_key_id.clone())
            .client_request_token(PLACEHOLDER_VERSION)
            .secret_string(PLACEHOLDER_VALUE)
            .set_tags(Some(
                [
                    tag(MANAGED_BY_TAG.0, MANAGED_BY_TAG.1),
                    tag("keyrot:user", user.as_str()),
                ]
                .into_iter()
                .chain(with)
                .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if kind(&e) == Kind::Exists => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    /// The users whose secret was last found missing.
    fn absent(&self) -> MutexGuard<'_, HashSet<UserName>> {
        self.absent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The secret's description (labels and tags), or `None` if it does not exist.
    async fn describe(&self, user: &UserName) -> Result<Option<DescribeSecretOutput>, StoreError> {
        match self
            .client
            .describe_secret()
            .secret_id(self.secret_name(user))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(e) if kind(&e) == Kind::NotFound => {
                self.absent().insert(user.clone());
                Ok(None)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Refuses a secret under keyrot's name that keyrot did not create.
    fn check_ours(
        &self,
        user: &UserName,
        described: &DescribeSecretOutput,
    ) -> Result<(), StoreError> {
        let ours = described
            .tags()
            .iter()
            .any(|t| t.key() == Some(MANAGED_BY_TAG.0) && t.value() == Some(MANAGED_BY_TAG.1));
        if ours {
            return Ok(());
        }
        Err(malformed(format!(
            "secret {} exists but keyrot did not create it (it lacks the tag {}={}): \
             keyrot will not write into it; move it away, or tag it if it is keyrot's",
            self.secret_name(user),
            MANAGED_BY_TAG.0,
            MANAGED_BY_TAG.1
        )))
    }

    /// Everything stored for `user`, or `None` if there is no secret yet.
    ///
    /// `DescribeSecret` gives the tags and which version holds `AWSCURRENT` (the placeholder
    /// included); `ListSecretVersionIds(IncludeDeprecated=true)` adds the versions that lost
    /// their labels, which `VersionIdsToStages` leaves out.
    async fn read(&self, user: &UserName) -> Result<Option<Secret>, StoreError> {
        let Some(described) = self.describe(user).await? else {
            return Ok(None);
        };
        self.check_ours(user, &described)?;
        self.read_described(user, described).await.map(Some)
    }

    /// [`AwsSecretStore::read`] once `described`, keyrot's, is at hand.
    async fn read_described(
        &self,
        user: &UserName,
        described: DescribeSecretOutput,
    ) -> Result<Secret, StoreError> {
        let current_version = current_version(&described);

        let mut pages = self
            .client
            .list_secret_version_ids()
            .secret_id(self.secret_name(user))
            .include_deprecated(true)
            .into_paginator()
            .send();
        let mut listed: Vec<SecretVersionsListEntry> = Vec::new();
        while let Some(page) = pages.try_next().await.map_err(store_error)? {
            listed.extend_from_slice(page.versions());
        }
        listed.sort_by_key(|v| std::cmp::Reverse(v.created_date().map(|d| d.as_nanos())));

        let mut versions = Vec::with_capacity(listed.len());
        for entry in listed {
            let Some(id) = entry.version_id() else {
                continue;
            };
            if id == PLACEHOLDER_VERSION {
                continue;
            }
            let stages = entry.version_stages();
            let key_id = match key_of_request_token(id) {
                Some(key_id) => key_id,
                // A hashed token, or a version someone else wrote: the payload says.
                None => match self.value(user, ValueOf::Version(id)).await {
                    Ok(Some(Value::Key(c))) => c.access_key_id,
                    Ok(Some(Value::Placeholder) | None) => continue,
                    // A version without labels is history that cannot be deleted: one that is
                    // not keyrot's must not block the user forever.
                    Err(StoreError::Malformed(e)) if stages.is_empty() => {
                        tracing::warn!(
                            user = %user,
                            version = id,
                            error = %keyrot_core::driver::error_chain(e.as_ref()),
                            "ignoring an unlabelled version that holds no keyrot key"
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            versions.push(Version {
                id: id.to_owned(),
                key_id,
                stages: stages_of(stages),
            });
        }
        Ok(Secret {
            tags: described.tags().to_vec(),
            current_version,
            versions,
        })
    }

    /// The value of one version, checked to be `user`'s; `None` if there is no such version.
    async fn value(&self, user: &UserName, of: ValueOf<'_>) -> Result<Option<Value>, StoreError> {
        let request = self
            .client
            .get_secret_value()
            .secret_id(self.secret_name(user));
        let request = match of {
            ValueOf::Version(id) => request.version_id(id),
            ValueOf::Current => request.version_stage(AWSCURRENT),
        };
        let out = match request.send().await {
            Ok(out) => out,
            Err(e) if kind(&e) == Kind::NotFound => return Ok(None),
            Err(e) => return Err(store_error(e)),
        };
        if out.version_id() == Some(PLACEHOLDER_VERSION) {
            return Ok(Some(Value::Placeholder));
        }
        let text = out
            .secret_string()
            .ok_or_else(|| malformed("the secret holds binary data, not keyrot's JSON"))?;
        parse_payload(text, user).map(|c| Some(Value::Key(c)))
    }
}

enum ValueOf<'a> {
    Version(&'a str),
    Current,
}

enum Value {
    Placeholder,
    Key(Credentials),
}

#[async_trait]
impl SecretStore for AwsSecretStore {
    async fn load(&self, user: &UserName) -> Result<StoredUser, StoreError> {
        let Some(secret) = self.read(user).await? else {
            return Ok(StoredUser::default());
        };
        Ok(stored_user(secret))
    }

    /// DescribeSecret alone when its labelled versions name their keys and, with the adopted
    /// marks, account for every key of `keys` ([`StoredUser::accounts_for`]): the versions
    /// that lost their labels, which only ListSecretVersionIds gives, then hold keys gone from
    /// IAM.
    async fn load_for(
        &self,
        user: &UserName,
        keys: &[AccessKeyId],
    ) -> Result<StoredUser, StoreError> {
        let Some(described) = self.describe(user).await? else {
            return Ok(StoredUser::default());
        };
        self.check_ours(user, &described)?;
        if let Some(versions) = labelled_versions(described.version_ids_to_stages()) {
            let labelled = recorded(versions, described.tags());
            if labelled.accounts_for(keys) {
                return Ok(labelled);
            }
        }
        let secret = self.read_described(user, described).await?;
        Ok(stored_user(secret))
    }

    async fn list_stored(&self) -> Result<Option<BTreeMap<UserName, StoredUser>>, StoreError> {
        let filter = |key, value: &str| Filter::builder().key(key).values(value.to_owned()).build();
        let mut pages = self
            .client
            .list_secrets()
            .filters(filter(FilterNameStringType::TagKey, MANAGED_BY_TAG.0))
            .filters(filter(FilterNameStringType::Name, &self.prefix))
            .max_results(100)
            .into_paginator()
            .send();
        let mut listed = BTreeMap::new();
        while let Some(page) = pages.try_next().await.map_err(store_error)? {
            for secret in page.secret_list() {
                // The name filter is a prefix match that ignores case.
                let user = secret
                    .name()
                    .and_then(|name| name.strip_prefix(self.prefix.as_str()))
                    .and_then(|name| UserName::new(name).ok());
                let ours = secret.tags().iter().any(|t| {
                    t.key() == Some(MANAGED_BY_TAG.0) && t.value() == Some(MANAGED_BY_TAG.1)
                });
                let (Some(user), true) = (user, ours) else {
                    continue;
                };
                // Only labelled versions are listed. One whose id does not name its key (a
                // hashed id, or a version someone else wrote) would need its value read: the
                // user is left out, and so observed one by one.
                let Some(versions) = labelled_versions(secret.secret_versions_to_stages()) else {
                    continue;
                };
                listed.insert(user, recorded(versions, secret.tags()));
            }
        }
        Ok(Some(listed))
    }

    async fn record_intent(&self, user: &UserName, intent: &Intent) -> Result<(), StoreError> {
        self.tag_secret(user, INTENT_TAG, &intent.encode()).await
    }

    async fn record_notice(&self, user: &UserName, sent: &SentNotice) -> Result<(), StoreError> {
        self.tag_secret(user, ALERT_TAG, &sent.encode()).await
    }

    async fn record_delivered(
        &self,
        user: &UserName,
        destination: &DestinationId,
        delivered: &Delivered,
    ) -> Result<(), StoreError> {
        let key = format!("{DELIVERED_TAG_PREFIX}{destination}");
        self.tag_secret(user, &key, &delivered.encode()).await
    }

    async fn put_pending(
        &self,
        user: &UserName,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), StoreError> {
        let payload =
            payload(user, credentials, created).map_err(|e| StoreError::Other(e.into()))?;
        let put = || {
            self.client
                .put_secret_value()
                .secret_id(self.secret_name(user))
                .client_request_token(request_token(&credentials.access_key_id))
                .secret_string(payload.as_str())
                .version_stages(AWSPENDING)
                .send()
        };
        match put().await {
            Ok(_) => Ok(()),
            Err(e) if kind(&e) == Kind::NotFound => {
                self.create_secret(user, None).await?;
                put().await.map(drop).map_err(store_error)
            }
            Err(e) => Err(store_error(e)),
        }
    }

    async fn promote(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        seen_current: Option<AccessKeyId>,
    ) -> Result<(), StoreError> {
        // The versions keyrot writes carry their key's request token and a new secret starts
        // with the placeholder current, so the hint names both versions. Secrets Manager
        // refuses a RemoveFromVersionId that does not hold AWSCURRENT (InvalidParameter
        // Exception): a stale hint, a version someone else wrote or a lost reply end in the
        // refusal, and the look below decides.
        if seen_current.as_ref() != Some(key) {
            let from = seen_current
                .as_ref()
                .map_or_else(|| PLACEHOLDER_VERSION.to_owned(), request_token);
            let moved = self
                .client
                .update_secret_version_stage()
                .secret_id(self.secret_name(user))
                .version_stage(AWSCURRENT)
                .move_to_version_id(request_token(key))
                .remove_from_version_id(from)
                .send()
                .await;
            match moved {
                Ok(_) => return Ok(()),
                Err(e) => tracing::debug!(
                    user = %user,
                    key = %key,
                    error = %keyrot_core::driver::error_chain(&store_error(e)),
                    "moving AWSCURRENT from the version last seen failed; looking where it is"
                ),
            }
        }
        // The version to promote is labelled (pending, or previous for a rollback) and was
        // stored by `put_pending` under its key's request token, so DescribeSecret alone finds
        // it and the current one; only a version someone else wrote needs the full read.
        let described = self
            .describe(user)
            .await?
            .ok_or(StoreError::NoSuchVersion)?;
        self.check_ours(user, &described)?;
        let token = request_token(key);
        let labelled = described
            .version_ids_to_stages()
            .is_some_and(|m| m.contains_key(&token));
        let (target_id, current) = if labelled {
            (token, current_version(&described))
        } else {
            let secret = self.read(user).await?.ok_or(StoreError::NoSuchVersion)?;
            let target = secret
                .versions
                .iter()
                .find(|v| &v.key_id == key)
                .ok_or(StoreError::NoSuchVersion)?;
            (target.id.clone(), secret.current_version)
        };
        if current.as_deref() == Some(target_id.as_str()) {
            return Ok(());
        }
        let target_id = target_id.as_str();
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(self.secret_name(user))
            .version_stage(AWSCURRENT)
            .move_to_version_id(target_id)
            .set_remove_from_version_id(current)
            .send()
            .await;
        let Err(e) = moved else { return Ok(()) };
        // The SDK retries a call whose reply was lost; if the lost attempt moved AWSCURRENT,
        // the retry names a RemoveFromVersionId that no longer holds it and Secrets Manager
        // refuses it. What counts is where AWSCURRENT is now (see crate::retries).
        let error = store_error(e);
        match self.read(user).await {
            Ok(Some(now)) if now.current_version.as_deref() == Some(target_id) => {
                tracing::debug!(
                    user = %user,
                    key = %key,
                    error = %keyrot_core::driver::error_chain(&error),
                    "UpdateSecretVersionStage failed, but the key is current: an earlier \
                     attempt whose reply was lost moved it"
                );
                Ok(())
            }
            _ => Err(error),
        }
    }

    async fn record_marks(
        &self,
        user: &UserName,
        key: &AccessKeyId,
        marks: &Marks,
    ) -> Result<(), StoreError> {
        self.tag_secret(user, &mark_tag_key(key), &format_marks(key, marks))
            .await
    }

    async fn clear_marks(&self, user: &UserName, key: &AccessKeyId) -> Result<(), StoreError> {
        match self
            .client
            .untag_resource()
            .secret_id(self.secret_name(user))
            .tag_keys(mark_tag_key(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if kind(&e) == Kind::NotFound => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn credentials(
        &self,
        user: &UserName,
        key: &AccessKeyId,
    ) -> Result<Option<Credentials>, StoreError> {
        let Some(secret) = self.read(user).await? else {
            return Ok(None);
        };
        let Some(version) = secret.versions.iter().find(|v| &v.key_id == key) else {
            return Ok(None);
        };
        match self.value(user, ValueOf::Version(&version.id)).await? {
            Some(Value::Key(c)) if &c.access_key_id == key => Ok(Some(c)),
            Some(Value::Key(_)) => Err(malformed("a version holds another key than its id says")),
            Some(Value::Placeholder) | None => Ok(None),
        }
    }

    async fn current(&self, user: &UserName) -> Result<Option<Credentials>, StoreError> {
        match self.value(user, ValueOf::Current).await? {
            Some(Value::Key(c)) => Ok(Some(c)),
            Some(Value::Placeholder) | None => Ok(None),
        }
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// The tag key holding `key`'s marks. Tag keys hold at most 128 characters; the longest key
/// ids (128) do not fit after the prefix, so those are named by a digest (the value names the
/// key in full either way).
fn mark_tag_key(key: &AccessKeyId) -> String {
    const MAX: usize = 128;
    let id = key.as_str();
    if MARK_TAG_PREFIX.len() + id.len() <= MAX {
        format!("{MARK_TAG_PREFIX}{id}")
    } else {
        let token = request_token(key);
        format!("{MARK_TAG_PREFIX}{token}")
    }
}

/// `key=<id> adopted=<rfc3339> superseded=<rfc3339> deactivated=<rfc3339>`: only characters
/// tag values allow, at most 256 of them.
fn format_marks(key: &AccessKeyId, marks: &Marks) -> String {
    let mut value = format!("key={key}");
    for mark in [Mark::Adopted, Mark::Superseded, Mark::Deactivated] {
        if let Some(at) = marks.get(mark) {
            value.push_str(&format!(" {}={at}", mark.as_str()));
        }
    }
    value
}

/// The version holding `AWSCURRENT` (the placeholder included).
fn current_version(described: &DescribeSecretOutput) -> Option<String> {
    described
        .version_ids_to_stages()?
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == AWSCURRENT))
        .map(|(id, _)| id.clone())
}

/// The versions of `secret` as its reader holds them.
fn stored_user(secret: Secret) -> StoredUser {
    let versions = secret
        .versions
        .into_iter()
        .map(|v| StoredVersion {
            key_id: v.key_id,
            stages: v.stages,
        })
        .collect();
    recorded(versions, &secret.tags)
}

/// The labelled versions of a description or a listing (`VersionIdsToStages`,
/// `SecretVersionsToStages`) but the placeholder, or `None` if one of them has an id that does
/// not name its key (a hashed id, or a version someone else wrote): its value must be read.
fn labelled_versions(
    labelled: Option<&std::collections::HashMap<String, Vec<String>>>,
) -> Option<Vec<StoredVersion>> {
    labelled
        .into_iter()
        .flatten()
        .filter(|(id, _)| id.as_str() != PLACEHOLDER_VERSION)
        .map(|(id, stages)| {
            Some(StoredVersion {
                key_id: key_of_request_token(id)?,
                stages: stages_of(stages),
            })
        })
        .collect()
}

/// The labels keyrot reads among a version's staging labels.
fn stages_of(labels: &[String]) -> Stages {
    Stages {
        current: labels.iter().any(|s| s == AWSCURRENT),
        pending: labels.iter().any(|s| s == AWSPENDING),
        previous: labels.iter().any(|s| s == AWSPREVIOUS),
    }
}

/// A user's stored versions with what its tags record: the marks and the last intent.
fn recorded(versions: Vec<StoredVersion>, tags: &[Tag]) -> StoredUser {
    let marks = tags
        .iter()
        .filter(|t| t.key().is_some_and(|k| k.starts_with(MARK_TAG_PREFIX)))
        .filter_map(|t| parse_marks(t.value()?))
        .filter(|(_, marks)| !marks.is_empty())
        .collect();
    let intent = tags
        .iter()
        .find(|t| t.key() == Some(INTENT_TAG))
        .and_then(|t| Intent::decode(t.value()?));
    let last_notice = tags
        .iter()
        .find(|t| t.key() == Some(ALERT_TAG))
        .and_then(|t| SentNotice::decode(t.value()?));
    let delivered = tags
        .iter()
        .filter_map(|t| {
            let id = t.key()?.strip_prefix(DELIVERED_TAG_PREFIX)?;
            Some((DestinationId::new(id).ok()?, Delivered::decode(t.value()?)?))
        })
        .collect();
    StoredUser {
        versions,
        marks,
        intent,
        last_notice,
        delivered,
    }
}

/// Reads [`format_marks`]'s output; `None` for a value keyrot did not write. Unknown fields
/// are ignored, so a later version may add some.
fn parse_marks(value: &str) -> Option<(AccessKeyId, Marks)> {
    let mut key = None;
    let mut marks = Marks::default();
    for field in value.split_whitespace() {
        let (name, value) = field.split_once('=')?;
        if name == "key" {
            key = Some(AccessKeyId::new(value).ok()?);
            continue;
        }
        let mark = [Mark::Adopted, Mark::Superseded, Mark::Deactivated]
            .into_iter()
            .find(|m| m.as_str() == name);
        if let Some(mark) = mark {
            marks.set(mark, value.parse().ok()?);
        }
    }
    Some((key?, marks))
}

/// Reads a version's JSON. Errors never quote the input: it holds a secret.
fn parse_payload(text: &str, user: &UserName) -> Result<Credentials, StoreError> {
    let payload: Payload = serde_json::from_str(text).map_err(|e| {
        malformed(format!(
            "the secret is not keyrot's JSON payload ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    if payload.user_name != user.as_str() {
        return Err(malformed(format!(
            "the secret names user {:?}, not {user}",
            payload.user_name
        )));
    }
    Ok(Credentials {
        access_key_id: AccessKeyId::new(payload.access_key_id)
            .map_err(|e| StoreError::Malformed(Box::new(e)))?,
        secret_access_key: SecretAccessKey::new(payload.secret_access_key),
    })
}

fn malformed(what: impl Into<String>) -> StoreError {
    StoreError::Malformed(BoxError::from(what.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKeyId {
        AccessKeyId::new("AKIAIOSFODNN7EXAMPLE").unwrap()
    }

    #[test]
    fn marks_round_trip_through_a_tag_value() {
        let mut marks = Marks::default();
        marks.set(Mark::Adopted, "2025-01-01T00:00:00Z".parse().unwrap());
        marks.set(Mark::Deactivated, "2025-03-04T05:06:07.5Z".parse().unwrap());
        let value = format_marks(&key(), &marks);
        assert_eq!(
            value,
            "key=AKIAIOSFODNN7EXAMPLE adopted=2025-01-01T00:00:00Z deactivated=2025-03-04T05:06:07.5Z"
        );
        assert!(value.len() <= 256);
        assert!(
            value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c))
        );
        assert_eq!(parse_marks(&value), Some((key(), marks)));
    }

    #[test]
    fn the_longest_key_still_fits_in_a_tag() {
        let long = AccessKeyId::new("A".repeat(128)).unwrap();
        let mut marks = Marks::default();
        for mark in [Mark::Adopted, Mark::Superseded, Mark::Deactivated] {
            marks.set(mark, "2025-03-04T05:06:07.123456789Z".parse().unwrap());
        }
        assert!(mark_tag_key(&long).len() <= 128);
        assert!(format_marks(&long, &marks).len() <= 256);
        assert_eq!(
            parse_marks(&format_marks(&long, &marks)),
            Some((long, marks))
        );
    }

    #[test]
    fn foreign_tag_values_are_not_marks() {
        assert_eq!(parse_marks("hello"), None);
        assert_eq!(parse_marks("adopted=2025-01-01T00:00:00Z"), None);
        assert_eq!(parse_marks("key=lowercase"), None);
        assert_eq!(
            parse_marks("key=AKIAIOSFODNN7EXAMPLE adopted=yesterday"),
            None
        );
    }

    #[test]
    fn payload_errors_never_quote_the_secret() {
        let user = UserName::new("deployer").unwrap();
        let text = r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":12345678,"UserName":"deployer","CreateDate":"x"}"#;
        let err = parse_payload(text, &user).unwrap_err();
        let chain = keyrot_core::driver::error_chain(&err);
        assert!(!chain.contains("12345678"), "{chain}");

        let other = r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"s3cr3t","UserName":"mallory","CreateDate":"x"}"#;
        let err = parse_payload(other, &user).unwrap_err();
        let chain = keyrot_core::driver::error_chain(&err);
        assert!(
            chain.contains("mallory") && !chain.contains("s3cr3t"),
            "{chain}"
        );
    }

    #[test]
    fn payload_is_the_documented_json() {
        let payload = Payload {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI".into(),
            user_name: "deployer".into(),
            create_date: "2025-06-01T12:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_string(&payload).unwrap(),
            r#"{"AccessKeyId":"AKIAIOSFODNN7EXAMPLE","SecretAccessKey":"wJalrXUtnFEMI","UserName":"deployer","CreateDate":"2025-06-01T12:00:00Z"}"#
        );
        let user = UserName::new("deployer").unwrap();
        let c = parse_payload(&serde_json::to_string(&payload).unwrap(), &user).unwrap();
        assert_eq!(c.secret_access_key.expose(), "wJalrXUtnFEMI");
    }
}
