//! A user's owner: the person named by the user's [`OWNER_TAG`], who is mailed the notices
//! about that user's keys besides the administrators ([`crate::SesNotifier::with_owners`]).
//!
//! The tag is read when a notice about the user goes out (`ListUserTags`), not when the user
//! is observed: notices are rare (a rotation every period, a warning, a block held back for a
//! day), so a run's observations cost what they cost without owners (README, "What one
//! rotation costs"), and a tag changed by a person counts from the next notice. One answer is
//! kept for [`OWNER_TTL`], so that the notices about one user in one run read the tag once.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keyrot_core::{Clock, Notice, Timestamp, UserName};

use crate::error::iam_error;

/// The IAM user tag naming the user's owner: one email address.
pub const OWNER_TAG: &str = "keyrot:owner";

/// How long an owner read from the tag is used before the tag is read again: longer than the
/// notices of one user's run take, shorter than a schedule interval.
pub const OWNER_TTL: Duration = Duration::from_secs(10 * 60);

/// What a user's [`OWNER_TAG`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// No tag: the administrators alone are told.
    None,
    /// The tag holds this address.
    Address(String),
    /// The tag holds this, which is not an email address: nobody is mailed for it, and the
    /// administrators are told.
    Malformed(String),
    /// The tag could not be read (the error chain, without secrets): the administrators are
    /// told.
    Unreadable(String),
}

impl Owner {
    /// What `tag` (the tag's value) names.
    pub fn from_tag(tag: &str) -> Self {
        let tag = tag.trim();
        if is_email_address(tag) {
            Self::Address(tag.to_owned())
        } else {
            Self::Malformed(tag.to_owned())
        }
    }

    /// The line the administrators' mail gains about the owner, if any; `sent` is what
    /// became of the owner's own mail (an error chain, without secrets).
    pub fn remark(&self, sent: Result<(), &str>) -> Option<String> {
        match self {
            Self::None => None,
            Self::Address(address) => Some(match sent {
                Ok(()) => format!("Also sent to the user's owner ({OWNER_TAG}), {address}."),
                Err(error) => format!(
                    "Could not be sent to the user's owner ({OWNER_TAG}), {address}: {error}."
                ),
            }),
            Self::Malformed(value) => Some(format!(
                "The user's {OWNER_TAG} tag ({value:?}) is not an email address: the owner was \
                 not told."
            )),
            Self::Unreadable(error) => Some(format!(
                "The user's {OWNER_TAG} tag could not be read ({error}): the owner, if any, was \
                 not told."
            )),
        }
    }
}

/// Whether the owner hears of `notice`: the user's rotations, the warning before a forced
/// deactivation, the forced deactivation itself, blocks, and delivery's notices. A key
/// discarded or a step failing are keyrot's business (the administrators'); a notice not about
/// one user is never the owner's (every notice so far is about one: a new kind must be placed
/// here).
pub fn concerns_owner(notice: &Notice) -> bool {
    match notice {
        Notice::Rotated { .. }
        | Notice::WillForceDeactivate { .. }
        | Notice::ForcedDeactivation { .. }
        | Notice::Undelivered { .. }
        | Notice::ForcedUndelivered { .. }
        | Notice::Blocked { .. } => true,
        // A member account's user (`InAccount`): its owner is not read through the member
        // role, and a hub user of the same name is someone else.
        Notice::Discarded { .. } | Notice::Failed { .. } | Notice::InAccount { .. } => false,
    }
}

/// Whether `text` is one plain email address SES can send to: `local@domain`, the local part
/// a dot-atom of printable ASCII (no quoting, no comments, no display name, no list), the
/// domain dotted labels of letters, digits and hyphens, within the lengths RFC 5321 allows.
/// Anything else is refused rather than guessed at.
pub fn is_email_address(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok && text.len() <= 254
}

/// Reads users' [`OWNER_TAG`] through IAM, each answer kept for [`OWNER_TTL`] by `clock`.
#[derive(Clone)]
pub struct Owners {
    iam: aws_sdk_iam::Client,
    clock: Arc<dyn Clock>,
    read: Arc<Mutex<BTreeMap<UserName, (Owner, Timestamp)>>>,
}

impl fmt::Debug for Owners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Owners").finish_non_exhaustive()
    }
}

impl Owners {
    /// Owners read with `iam` (the account the users are in), kept by `clock`'s time.
    pub fn new(iam: aws_sdk_iam::Client, clock: Arc<dyn Clock>) -> Self {
        Self {
            iam,
            clock,
            read: Arc::default(),
        }
    }

    /// `user`'s owner: from the tag, or as read less than [`OWNER_TTL`] ago. A failed read is
    /// not kept.
    pub async fn of(&self, user: &UserName) -> Owner {
        let now = self.clock.now();
        let fresh = |at: Timestamp| {
            Duration::try_from(now.duration_since(at)).is_ok_and(|age| age < OWNER_TTL)
        };
        {
            let read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((owner, at)) = read.get(user)
                && fresh(*at)
            {
                return owner.clone();
            }
        }
        let owner = match self
            .iam
            .list_user_tags()
            .user_name(user.as_str())
            .send()
            .await
        {
            Ok(out) => out
                .tags()
                .iter()
                .find(|t| t.key() == OWNER_TAG)
                .map_or(Owner::None, |t| Owner::from_tag(t.value())),
            Err(e) => {
                let error = keyrot_core::driver::error_chain(&iam_error(e));
                return Owner::Unreadable(error);
            }
        };
        let mut read = self.read.lock().unwrap_or_else(PoisonError::into_inner);
        read.retain(|_, (_, at)| fresh(*at));
        read.insert(user.clone(), (owner.clone(), now));
        owner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_are_addresses() {
        for ok in [
            "ana@example.com",
            "ana.silva+ci@mail.example.co.uk",
            "o'brien@example.io",
            "x@a-b.example",
        ] {
            assert!(is_email_address(ok), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_not() {
        let long = format!("{}@example.com", "a".repeat(65));
        for bad in [
            "",
            "ana",
            "@example.com",
            "ana@",
            "ana@localhost",
            "ana@@example.com",
            "ana@example..com",
            "ana@-example.com",
            "ana@example.123",
            ".ana@example.com",
            "ana.@example.com",
            "a..b@example.com",
            "ana silva@example.com",
            "ana@example.com bob@example.com",
            "ana@example.com,bob@example.com",
            "Ana <ana@example.com>",
            "\"ana\"@example.com",
            "ana@[127.0.0.1]",
            "ana@exämple.com",
            "ána@example.com",
            "ana@example.com\r\nBcc: x@example.com",
            long.as_str(),
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_tag_is_an_address_or_malformed() {
        assert_eq!(
            Owner::from_tag(" ana@example.com "),
            Owner::Address("ana@example.com".into())
        );
        assert_eq!(
            Owner::from_tag("ana at example"),
            Owner::Malformed("ana at example".into())
        );
        assert!(
            Owner::from_tag("ana at example")
                .remark(Ok(()))
                .unwrap()
                .contains("keyrot:owner tag (\"ana at example\") is not an email address")
        );
        assert_eq!(Owner::None.remark(Ok(())), None);
    }
}
