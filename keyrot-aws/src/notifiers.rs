//! Several notifiers as one: SES and a webhook, say.

use std::sync::Arc;

use async_trait::async_trait;
use keyrot_core::{Notice, Notifier, NotifyError};

/// Sends each notice through every notifier it holds, in order, whatever became of the
/// others. It succeeds when one of them did (each failure is logged here, naming the
/// notifier's place): the rotator then records a standing condition as told, so that one
/// channel that is down does not make the others repeat the notice every run. It fails, with
/// the first error, only when every one failed (or it holds none).
#[derive(Clone, Default)]
pub struct Notifiers(Vec<Arc<dyn Notifier>>);

impl std::fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notifiers").field(&self.0.len()).finish()
    }
}

impl Notifiers {
    /// Every one of `notifiers`.
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Self(notifiers)
    }
}

#[async_trait]
impl Notifier for Notifiers {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let mut first_error = None;
        let mut sent = false;
        for (i, notifier) in self.0.iter().enumerate() {
            match notifier.notify(notice).await {
                Ok(()) => sent = true,
                Err(error) => {
                    let chain = keyrot_core::driver::error_chain(&error);
                    tracing::warn!(notifier = i, error = %chain, "could not send notification");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) if !sent => Err(error),
            None if !sent => Err(NotifyError("no notifier".into())),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyrot_core::UserName;
    use keyrot_core::fake::RecordingNotifier;

    fn notice() -> Notice {
        Notice::Blocked {
            user: UserName::new("ci").unwrap(),
            reason: "two keys".into(),
        }
    }

    #[tokio::test]
    async fn every_notifier_is_told_and_one_is_enough() {
        let (a, b) = (RecordingNotifier::new(), RecordingNotifier::new());
        let both = Notifiers::new(vec![Arc::new(a.clone()), Arc::new(b.clone())]);
        both.notify(&notice()).await.unwrap();
        assert_eq!((a.take().len(), b.take().len()), (1, 1));

        a.set_failing(true);
        both.notify(&notice()).await.unwrap();
        assert_eq!((a.take().len(), b.take().len()), (0, 1), "b is told anyway");

        b.set_failing(true);
        let err = both.notify(&notice()).await.unwrap_err();
        assert!(
            keyrot_core::driver::error_chain(&err).contains("injected"),
            "{err:?}"
        );
        assert!(Notifiers::default().notify(&notice()).await.is_err());
    }
}
