//! [`Notifier`] on aws-sdk-sesv2.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use keyrot_core::{Notice, Notifier, NotifyError};

use crate::error::boxed;
use crate::owners::{Owner, Owners, concerns_owner};

/// Emails each notice to the administrators through SES v2 `SendEmail`, from a verified sender
/// identity. The subject names the user and what happened; the body is the notice's text. No
/// notice carries secret material.
///
/// With [`SesNotifier::with_owners`], a notice the user's owner should hear of
/// ([`crate::owners::concerns_owner`]) is first mailed to the address in the user's
/// [`crate::OWNER_TAG`] too, in a mail of its own (so that an owner SES refuses, an
/// unverified recipient while SES is in its sandbox, never costs the administrators theirs);
/// the administrators' mail then says whether the owner was told, or why not (no tag is
/// silence; a tag that is not an address, or could not be read, is said).
///
/// It only sends: whether a repeated notice is held back is the rotator's decision
/// ([`keyrot_core::driver::held_back`]), made before it asks.
#[derive(Debug, Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
    from: String,
    to: Vec<String>,
    owners: Option<Owners>,
}

impl SesNotifier {
    /// A notifier sending from `from` (an SES-verified identity) to every address in `to`.
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>, to: Vec<String>) -> Self {
        Self {
            client,
            from: from.into(),
            to,
            owners: None,
        }
    }

    /// Also mails each user's owner ([`crate::OWNER_TAG`], read through `owners`).
    #[must_use]
    pub fn with_owners(mut self, owners: Owners) -> Self {
        self.owners = Some(owners);
        self
    }

    /// The owner's mail, when the notice concerns an owner, then the administrators'.
    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let owner = match &self.owners {
            Some(owners) if concerns_owner(notice) => owners.of(notice.user()).await,
            _ => Owner::None,
        };
        let sent = match &owner {
            Owner::Address(address) => self
                .send_to(notice, vec![address.clone()], None)
                .await
                .map_err(|e| keyrot_core::driver::error_chain(&e)),
            _ => Ok(()),
        };
        if let Err(error) = &sent {
            tracing::warn!(%error, user = %notice.user(), "could not mail the user's owner");
        }
        let remark = owner.remark(sent.as_ref().map(|_| ()).map_err(String::as_str));
        self.send_to(notice, self.to.clone(), remark).await
    }

    async fn send_to(
        &self,
        notice: &Notice,
        to: Vec<String>,
        remark: Option<String>,
    ) -> Result<(), NotifyError> {
        let text = |data: String| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| NotifyError(Box::new(e)))
        };
        let message = Message::builder()
            .subject(text(subject(notice))?)
            .body(Body::builder().text(text(body(notice, remark))?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().set_to_addresses(Some(to)).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| NotifyError(boxed(e)))?;
        Ok(())
    }
}

/// The text of a notice's email, with a remark on a line of its own.
fn body(notice: &Notice, remark: Option<String>) -> String {
    match remark {
        Some(remark) => format!("{notice}\n\n{remark}\n"),
        None => format!("{notice}\n"),
    }
}

/// The subject line of a notice's email.
pub fn subject(notice: &Notice) -> String {
    let what = match notice {
        Notice::InAccount { account, notice } => {
            return subject(notice).replacen("[keyrot] ", &format!("[keyrot] {account}/"), 1);
        }
        Notice::Rotated { .. } => "access key rotated",
        Notice::WillForceDeactivate { .. } => "old key still in use, will be deactivated",
        Notice::ForcedDeactivation { .. } => "old key deactivated while maybe in use",
        Notice::Discarded { .. } => "new key discarded",
        Notice::Undelivered { .. } => "new key not delivered, old key kept",
        Notice::ForcedUndelivered { .. } => "old key deactivated before delivery",
        Notice::Blocked { .. } => "rotation blocked, action needed",
        Notice::Failed { .. } => "rotation failed",
    };
    format!("[keyrot] {}: {what}", notice.user())
}

#[async_trait]
impl Notifier for SesNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        self.send(notice).await
    }
}
