//! A member account's notices: the hub's notifier, each notice saying which account it is
//! about.

use std::sync::Arc;

use async_trait::async_trait;

use super::AccountId;
use crate::ports::{Notice, Notifier, NotifyError};

/// Sends each notice of a member account's run through the hub's `inner` notifier as
/// [`Notice::InAccount`], so that its text and subject name the account: the same user name
/// may be managed in many accounts, and the administrators read one mailbox.
#[derive(Clone)]
pub struct AccountNotifier {
    account: AccountId,
    inner: Arc<dyn Notifier>,
}

impl AccountNotifier {
    /// Notices about `account`'s users, sent through `inner`.
    pub fn new(account: AccountId, inner: Arc<dyn Notifier>) -> Self {
        Self { account, inner }
    }
}

impl std::fmt::Debug for AccountNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountNotifier")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Notifier for AccountNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let notice = match notice {
            // Already about an account: not wrapped twice.
            Notice::InAccount { .. } => notice.clone(),
            _ => Notice::InAccount {
                account: self.account.clone(),
                notice: Box::new(notice.clone()),
            },
        };
        self.inner.notify(&notice).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::RecordingNotifier;
    use crate::model::{AccessKeyId, UserName};

    #[test]
    fn each_notice_names_its_account_and_keeps_its_user_and_kind() {
        let inner = RecordingNotifier::new();
        let account = AccountId::new("111122223333").unwrap();
        let notifier = AccountNotifier::new(account.clone(), Arc::new(inner.clone()));
        let failed = Notice::Failed {
            user: UserName::new("ci").unwrap(),
            error: "throttled".into(),
        };
        let rotated = Notice::Rotated {
            user: UserName::new("ci").unwrap(),
            new: AccessKeyId::new("AKIA0000000000000002").unwrap(),
            old: None,
        };
        futures::executor::block_on(async {
            notifier.notify(&failed).await.unwrap();
            notifier.notify(&rotated).await.unwrap();
            let again = inner.notices()[0].clone();
            notifier.notify(&again).await.unwrap();
        });
        let sent = inner.notices();
        assert_eq!(
            sent[0].to_string(),
            "account 111122223333: ci: failed: throttled"
        );
        assert_eq!(sent[0].account(), Some(&account));
        assert_eq!(sent[0].user().as_str(), "ci");
        assert!(sent[0].is_standing() && !sent[1].is_standing());
        assert_eq!(sent[1].event(), &rotated);
        assert_eq!(sent[2], sent[0], "not wrapped twice");
        assert_ne!(sent[0].fingerprint(), failed.fingerprint());
    }
}
