//! [`Notifier`] on aws-sdk-sesv2.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use keyrot_core::{Clock, Notice, Notifier, NotifyError};
use sha2::{Digest, Sha256};

use crate::AwsSecretStore;
use crate::error::boxed;

/// Emails each notice to the administrators through SES v2 `SendEmail`, from a verified sender
/// identity. The subject names the user and what happened; the body is the notice's text. No
/// notice carries secret material.
///
/// A blocked or failing user, or an old key still in use, is reported again by every run until
/// someone acts. [`SesNotifier::with_repeat_filter`] holds back such a notice when the same one
/// (same user, same text) already went out within a period, remembering the last one as a tag
/// of the user's secret; notices of events (rotated, deactivated, discarded) always go out.
#[derive(Debug, Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
    from: String,
    to: Vec<String>,
    repeats: Option<RepeatFilter>,
}

#[derive(Clone)]
struct RepeatFilter {
    store: AwsSecretStore,
    clock: Arc<dyn Clock>,
    period: Duration,
}

impl std::fmt::Debug for RepeatFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepeatFilter")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl SesNotifier {
    /// A notifier sending from `from` (an SES-verified identity) to every address in `to`.
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>, to: Vec<String>) -> Self {
        Self {
            client,
            from: from.into(),
            to,
            repeats: None,
        }
    }

    /// Holds back a repeated notice sent less than `period` ago (as `clock` tells), remembered
    /// in `store`'s secret of the user.
    pub fn with_repeat_filter(
        mut self,
        store: AwsSecretStore,
        clock: Arc<dyn Clock>,
        period: Duration,
    ) -> Self {
        self.repeats = Some(RepeatFilter {
            store,
            clock,
            period,
        });
        self
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

/// Whether a notice reports a standing condition that every run would report again.
fn repeats(notice: &Notice) -> bool {
    matches!(
        notice,
        Notice::Blocked { .. } | Notice::Failed { .. } | Notice::WillForceDeactivate { .. }
    )
}

/// A short digest of the notice's text: the same condition gives the same fingerprint.
fn fingerprint(notice: &Notice) -> String {
    let digest = Sha256::digest(notice.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The subject line of a notice's email.
pub fn subject(notice: &Notice) -> String {
    let what = match notice {
        Notice::Rotated { .. } => "access key rotated",
        Notice::WillForceDeactivate { .. } => "old key still in use, will be deactivated",
        Notice::ForcedDeactivation { .. } => "old key deactivated while maybe in use",
        Notice::Discarded { .. } => "new key discarded",
        Notice::Blocked { .. } => "rotation blocked, action needed",
        Notice::Failed { .. } => "rotation failed",
    };
    format!("[keyrot] {}: {what}", notice.user())
}

#[async_trait]
impl Notifier for SesNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let Some(filter) = self.repeats.as_ref().filter(|_| repeats(notice)) else {
            return self.send(notice).await;
        };
        let user = notice.user();
        let now = filter.clock.now();
        let print = fingerprint(notice);
        // A store that cannot answer must not silence an alert: send it.
        match filter.store.last_alert(user).await {
            Ok(Some((last, at)))
                if last == print && now < at.saturating_add(filter.period).unwrap_or(at) =>
            {
                tracing::debug!(user = %user, "repeated notice held back: {notice}");
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(user = %user, error = %keyrot_core::driver::error_chain(&e), "could not read the last alert");
            }
        }
        self.send(notice).await?;
        if let Err(e) = filter.store.record_alert(user, &print, now).await {
            tracing::warn!(user = %user, error = %keyrot_core::driver::error_chain(&e), "could not record the alert");
        }
        Ok(())
    }
}
