//! Notifiers for tests: one that records, one that drops.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::faults::{FaultKind, InjectedFault, op};
use crate::ports::{Notice, Notifier, NotifyError};

/// Keeps every notice for inspection. Clones share the list.
#[derive(Clone, Default)]
pub struct RecordingNotifier {
    state: Arc<Mutex<Recorded>>,
}

#[derive(Default)]
struct Recorded {
    notices: Vec<Notice>,
    failing: bool,
}

impl RecordingNotifier {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The notices sent so far, oldest first.
    pub fn notices(&self) -> Vec<Notice> {
        self.lock().notices.clone()
    }

    /// Returns and forgets the notices sent so far.
    pub fn take(&self) -> Vec<Notice> {
        std::mem::take(&mut self.lock().notices)
    }

    /// While `failing`, every `notify` fails (and records nothing), like SES being down.
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let mut state = self.lock();
        if state.failing {
            return Err(NotifyError(Box::new(InjectedFault {
                kind: FaultKind::FailBefore,
                op: op::NOTIFY,
            })));
        }
        state.notices.push(notice.clone());
        Ok(())
    }
}

impl fmt::Debug for RecordingNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RecordingNotifier")
            .field("notices", &state.notices)
            .field("failing", &state.failing)
            .finish()
    }
}

/// Drops every notice.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullNotifier;

#[async_trait]
impl Notifier for NullNotifier {
    async fn notify(&self, _notice: &Notice) -> Result<(), NotifyError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;
    use crate::model::UserName;

    #[test]
    fn records_notices_and_fails_on_demand() {
        let notifier = RecordingNotifier::new();
        let shared = notifier.clone();
        let notice = Notice::Blocked {
            user: UserName::new("alice").unwrap(),
            reason: "two keys, both in use".into(),
        };
        block_on(notifier.notify(&notice)).unwrap();
        notifier.set_failing(true);
        assert!(block_on(notifier.notify(&notice)).is_err());
        notifier.set_failing(false);
        assert_eq!(shared.notices(), std::slice::from_ref(&notice));
        assert_eq!(notifier.take(), std::slice::from_ref(&notice));
        assert!(notifier.notices().is_empty());
        block_on(NullNotifier.notify(&notice)).unwrap();
    }
}
