//! [`Notifier`] on aws-sdk-sesv2.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use keyrot_core::{Notice, Notifier, NotifyError};

use crate::error::boxed;

/// Emails each notice to the administrators through SES v2 `SendEmail`, from a verified sender
/// identity. The subject names the user and what happened; the body is the notice's text. No
/// notice carries secret material.
///
/// It only sends: whether a repeated notice is held back is the rotator's decision
/// ([`keyrot_core::driver::held_back`]), made before it asks.
#[derive(Debug, Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
    from: String,
    to: Vec<String>,
}

impl SesNotifier {
    /// A notifier sending from `from` (an SES-verified identity) to every address in `to`.
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>, to: Vec<String>) -> Self {
        Self {
            client,
            from: from.into(),
            to,
        }
    }

    async fn send(&self, notice: &Notice) -> Result<(), NotifyError> {
        let text = |data: String| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| NotifyError(Box::new(e)))
        };
        let message = Message::builder()
            .subject(text(subject(notice))?)
            .body(Body::builder().text(text(format!("{notice}\n"))?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(self.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| NotifyError(boxed(e)))?;
        Ok(())
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
