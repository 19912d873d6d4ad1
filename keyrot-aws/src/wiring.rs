//! The AWS backend assembled: every port of keyrot-core, from one set of SDK clients.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyrot_core::{Clock, Notice, Notifier, NotifyError, Policy, Ports, Rotator, Timestamp};

use crate::{
    AwsClients, AwsIam, AwsSecretStore, AwsVerifier, DEFAULT_LEASE_TABLE, DEFAULT_PREFIX,
    DeliverySettings, DynamoLease, Notifiers, Owners, SesNotifier, WebhookNotifier,
};

/// The wall clock and tokio's timer: what the rotator runs on outside tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place production code reads the clock
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A notifier that only logs: for deployments without an alert address.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        match notice.event() {
            Notice::Rotated { .. } => {
                tracing::info!(target: "keyrot::notice", user = %notice.user(), "{notice}");
            }
            _ => tracing::warn!(target: "keyrot::notice", user = %notice.user(), "{notice}"),
        }
        Ok(())
    }
}

/// Where the AWS backend keeps secrets and sends alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// Per-user secrets are `<prefix><UserName>`. Default [`DEFAULT_PREFIX`].
    pub secret_prefix: String,
    /// The DynamoDB table of the runs' claims on users ([`DynamoLease`]). Default
    /// [`DEFAULT_LEASE_TABLE`], the table of a stack named `keyrot`.
    pub lease_table: String,
    /// A customer KMS key for new secrets.
    pub kms_key_id: Option<String>,
    /// SES sender identity for alerts; with `alert_to`, alerts are emailed, otherwise logged.
    pub alert_from: Option<String>,
    /// Administrators' addresses.
    pub alert_to: Vec<String>,
    /// The Secrets Manager secret (name or ARN) holding a Slack-compatible incoming
    /// webhook's URL: notices are posted there too ([`WebhookNotifier`]).
    pub alert_webhook_secret: Option<String>,
    /// A standing condition (a blocked or failing user, a key still in use) is mailed again
    /// only after this long. Default one day.
    pub alert_repeat_after: Duration,
    /// Where new keys are delivered (nothing by default).
    pub delivery: DeliverySettings,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            secret_prefix: DEFAULT_PREFIX.to_owned(),
            lease_table: DEFAULT_LEASE_TABLE.to_owned(),
            kms_key_id: None,
            alert_from: None,
            alert_to: Vec::new(),
            alert_webhook_secret: None,
            alert_repeat_after: keyrot_core::driver::DEFAULT_ALERT_REPEAT_AFTER,
            delivery: DeliverySettings::default(),
        }
    }
}

impl BackendSettings {
    /// The secret store these settings describe.
    pub fn store(&self, clients: &AwsClients) -> AwsSecretStore {
        let store = AwsSecretStore::new(clients.secrets.clone()).with_prefix(&self.secret_prefix);
        match &self.kms_key_id {
            Some(key) => store.with_kms_key(key),
            None => store,
        }
    }

    /// The lease table these settings name.
    pub fn lease(&self, clients: &AwsClients) -> DynamoLease {
        DynamoLease::new(clients.dynamodb.clone(), &self.lease_table)
    }

    /// Every port, on AWS: IAM, Secrets Manager, STS, DynamoDB (the lease), the notifiers
    /// ([`BackendSettings::notifier`], owners read in the clients' account), and the system
    /// clock.
    pub fn ports(&self, clients: &AwsClients) -> Ports {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        Ports {
            iam: Arc::new(
                AwsIam::new(clients.iam.clone()).with_user_tags(clients.user_tags.clone()),
            ),
            store: Arc::new(self.store(clients)),
            verifier: Arc::new(AwsVerifier::new(clients.config.clone())),
            lease: Arc::new(self.lease(clients)),
            notifier: self.notifier(
                clients,
                Some(Owners::new(clients.iam.clone(), clock.clone())),
            ),
            clock,
        }
    }

    /// The notifiers these settings name: SES to the administrators (and, with `owners`, to
    /// each user's owner) when an alert address is set, the webhook when its secret is set,
    /// both when both are; the log when neither is.
    pub fn notifier(&self, clients: &AwsClients, owners: Option<Owners>) -> Arc<dyn Notifier> {
        let mut notifiers: Vec<Arc<dyn Notifier>> = Vec::new();
        if let (Some(from), false) = (&self.alert_from, self.alert_to.is_empty()) {
            let ses = SesNotifier::new(clients.ses.clone(), from, self.alert_to.clone());
            notifiers.push(Arc::new(match owners {
                Some(owners) => ses.with_owners(owners),
                None => ses,
            }));
        }
        if let Some(secret) = &self.alert_webhook_secret {
            notifiers.push(Arc::new(WebhookNotifier::new(
                clients.secrets.clone(),
                secret,
            )));
        }
        match notifiers.len() {
            0 => Arc::new(LogNotifier),
            1 => notifiers.remove(0),
            _ => Arc::new(Notifiers::new(notifiers)),
        }
    }

    /// A rotator on [`BackendSettings::ports`] under `policy`, holding back a repeated alert
    /// for [`BackendSettings::alert_repeat_after`], its concurrency following the clients'
    /// throttling ([`AwsClients::pressure`]), delivering as [`BackendSettings::delivery`] says.
    pub fn rotator(&self, clients: &AwsClients, policy: Policy) -> Rotator {
        let rotator = Rotator::new(self.ports(clients), policy)
            .with_pressure(Arc::new(clients.pressure.clone()));
        self.with_delivery(self.with_alert_settings(rotator), clients)
    }

    /// `rotator`, on [`BackendSettings::ports`] of `clients`, delivering as
    /// [`BackendSettings::delivery`] says (unchanged when nothing is configured).
    pub fn with_delivery(&self, rotator: Rotator, clients: &AwsClients) -> Rotator {
        self.delivery
            .attach(rotator, &clients.config, &clients.iam, &clients.user_tags)
    }

    /// `rotator` with these settings' alert repeat period (for a rotator on other ports).
    pub fn with_alert_settings(&self, rotator: Rotator) -> Rotator {
        rotator.with_alert_repeat_after(self.alert_repeat_after)
    }
}
