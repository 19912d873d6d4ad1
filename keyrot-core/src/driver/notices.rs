//! Telling an administrator: events go out as they happen; a standing condition (a block, a
//! failure, an old key still in use), which every run would report again, goes out once and
//! then again only after the repeat period ([`held_back`]). The last one sent is a fact of the
//! user read and recorded through the [`SecretStore`](crate::ports::SecretStore) port, like
//! the marks.

use std::time::Duration;

use tracing::{debug, warn};

use super::{Rotator, UserRun, error_chain};
use crate::model::{SentNotice, Timestamp};
use crate::ports::Notice;

/// Whether `notice` is held back at `now`: it reports a standing condition
/// ([`Notice::is_standing`]) and `last`, the last one sent about the user, is the same notice
/// (same fingerprint) sent less than `period` before. Everything else goes out: an event, a
/// new or different condition, the same one once the period has passed, and any notice when
/// nothing is known of the last one (a store that cannot answer never silences an alert).
///
/// ```
/// use std::time::Duration;
/// use keyrot_core::driver::held_back;
/// use keyrot_core::{Notice, SentNotice, Timestamp, UserName};
///
/// let notice = Notice::Blocked { user: UserName::new("ci")?, reason: "two keys".into() };
/// let at: Timestamp = "2025-06-01T12:00:00Z".parse()?;
/// let day = Duration::from_secs(24 * 3600);
/// let sent = SentNotice { fingerprint: notice.fingerprint(), at };
/// assert!(held_back(&notice, Some(&sent), at + Duration::from_secs(3600), day));
/// assert!(!held_back(&notice, Some(&sent), at + day, day));
/// assert!(!held_back(&notice, None, at, day));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn held_back(
    notice: &Notice,
    last: Option<&SentNotice>,
    now: Timestamp,
    period: Duration,
) -> bool {
    notice.is_standing()
        && last.is_some_and(|last| {
            // A record from the future (another caller's clock ahead) counts as just sent.
            let since = Duration::try_from(now.duration_since(last.at)).unwrap_or_default();
            last.fingerprint == notice.fingerprint() && since < period
        })
}

impl Rotator {
    /// Sends an event's notice. A failure is logged and never stops a rotation.
    pub(super) async fn notify(&self, notice: Notice) -> bool {
        match self.ports.notifier.notify(&notice).await {
            Ok(()) => true,
            Err(error) => {
                warn!(error = %error_chain(&error), "could not send notification");
                false
            }
        }
    }

    /// Sends `notice` about `run`'s user unless it is [`held_back`] given `last`, the last
    /// standing condition sent about the user; once a standing condition went out, records it
    /// (except in a dry run, which writes nothing).
    pub(super) async fn alert(&self, run: &UserRun<'_>, notice: Notice, last: Option<&SentNotice>) {
        let now = self.ports.clock.now();
        if held_back(&notice, last, now, self.alert_repeat_after) {
            debug!(%notice, "repeated notice held back");
            return;
        }
        if !self.notify(notice.clone()).await || !notice.is_standing() || run.dry_run {
            return;
        }
        let sent = SentNotice {
            fingerprint: notice.fingerprint(),
            at: now,
        };
        if let Err(error) = self.ports.store.record_notice(&run.user, &sent).await {
            // The next run sends it again: a repeat, never a lost alert.
            warn!(error = %error_chain(&error), "could not record the notice sent");
        }
    }
}
