//! Performing one step the planner asked for, and recording its effect in the observation.

use std::time::Duration;

use super::{Rotator, StepError};
use crate::model::{
    AccessKeyId, Credentials, Intent, KeyStatus, Mark, StoredVersion, Timestamp, UserName,
};
use crate::plan::{Observation, Step};
use crate::ports::{Iam, IamError, Notice, SecretStore};

impl Rotator {
    pub(super) async fn perform(
        &self,
        obs: &mut Observation,
        step: &Step,
        fresh: &mut Option<Credentials>,
        now: Timestamp,
    ) -> Result<Progress, StepError> {
        let user = obs.user.clone();
        let (iam, store) = (&self.ports.iam, &self.ports.store);
        match step {
            Step::Adopt(key) => {
                record(store.as_ref(), obs, key, Mark::Adopted, now).await?;
            }
            Step::CheckLastUsed(key) => {
                let answer = iam.last_used(key).await;
                obs.last_used.insert(key.clone(), answer);
            }
            Step::DeleteOrphan(key)
            | Step::MakeRoom(key)
            | Step::Delete(key)
            | Step::Unstage(key) => {
                delete(iam.as_ref(), &user, key).await?;
                obs.keys.retain(|k| &k.id != key);
            }
            Step::Discard(key) => {
                delete(iam.as_ref(), &user, key).await?;
                obs.keys.retain(|k| &k.id != key);
                self.notify(Notice::Discarded {
                    user: user.clone(),
                    key: key.clone(),
                })
                .await;
                // Try again next run, not in a loop now.
                return Ok(Progress::Discarded(key.clone()));
            }
            Step::CreateAndStage => {
                debug_assert!(obs.keys.len() < 2, "the planner never asks for a third key");
                // Say first that a key is coming: if its secret is lost (a lost reply, a
                // crash before it is stored), the next observation knows the key for keyrot's
                // own orphan, never adopts it and deletes it.
                let intent = Intent::new(now, &obs.keys);
                store.record_intent(&user, &intent).await?;
                obs.stored.intent = Some(intent);
                let new = iam.create_key(&user).await?;
                obs.keys.push(new.key.clone());
                let credentials = new.credentials();
                *fresh = Some(credentials.clone());
                // Stage at once: the secret exists nowhere else.
                store
                    .put_pending(&user, &credentials, new.key.created)
                    .await?;
                for v in &mut obs.stored.versions {
                    v.stages.pending = false;
                }
                obs.stored.versions.insert(
                    0,
                    StoredVersion {
                        key_id: new.key.id.clone(),
                        stages: crate::model::Stages {
                            pending: true,
                            ..Default::default()
                        },
                    },
                );
            }
            Step::Reactivate(key) => {
                iam.set_status(&user, key, KeyStatus::Active).await?;
                if let Some(k) = obs.keys.iter_mut().find(|k| &k.id == key) {
                    k.status = KeyStatus::Active;
                }
                obs.reactivated = Some(now);
            }
            Step::Verify(key) => {
                let credentials = match fresh.as_ref().filter(|c| &c.access_key_id == key) {
                    Some(c) => c.clone(),
                    None => store
                        .credentials(&user, key)
                        .await?
                        .ok_or_else(|| StepError::MissingSecret(key.clone()))?,
                };
                if self
                    .ports
                    .verifier
                    .authenticates(&user, &credentials)
                    .await?
                {
                    obs.verified.insert(key.clone());
                    *fresh = Some(credentials);
                } else {
                    obs.unverified.insert(key.clone());
                    let created = obs.key(key).map_or(now, |k| k.created);
                    // A re-activated key's propagation runs from its re-activation.
                    let since = obs.reactivated.filter(|_| obs.rollback).unwrap_or(created);
                    return Ok(Progress::NotYet {
                        deadline: since + self.policy.verify_timeout(),
                    });
                }
            }
            Step::Publish(key) => {
                let old = obs.stored.current().cloned();
                store.promote(&user, key, old.clone()).await?;
                // A new current key: each destination gets a try at it in this run.
                obs.undelivered.clear();
                // As Secrets Manager moves the labels.
                for v in &mut obs.stored.versions {
                    let is_new = &v.key_id == key;
                    let was_current = v.stages.current;
                    v.stages.previous = !is_new && was_current;
                    v.stages.current = is_new;
                }
                self.published(obs, key, old).await;
            }
            Step::RecordSuperseded(key) => {
                record(store.as_ref(), obs, key, Mark::Superseded, now).await?;
            }
            Step::Deactivate { key, forced } => {
                iam.set_status(&user, key, KeyStatus::Inactive).await?;
                if let Some(k) = obs.keys.iter_mut().find(|k| &k.id == key) {
                    k.status = KeyStatus::Inactive;
                }
                if *forced {
                    self.notify(Self::forced_notice(obs, key)).await;
                }
            }
            Step::Deliver(destination) => self.deliver(obs, destination, fresh).await?,
            Step::RecordDeactivated(key) => {
                record(store.as_ref(), obs, key, Mark::Deactivated, now).await?;
            }
            Step::Forget(key) => {
                store.clear_marks(&user, key).await?;
                obs.stored.marks.remove(key);
            }
            Step::Wait(_) | Step::Blocked(_) => {}
        }
        Ok(Progress::Done)
    }
}

pub(super) enum Progress {
    Done,
    NotYet { deadline: Timestamp },
    Discarded(AccessKeyId),
}

/// How long to wait before trying a key that does not authenticate yet again: 2 s, 4 s, then
/// 8 s, but no longer than the `left` of the verify timeout (so that one attempt falls on the
/// deadline), and at least one second (so that time moves, and the planner gives up after the
/// attempt at the deadline).
pub(super) fn verify_wait(attempt: u32, left: Duration) -> Duration {
    let backoff = Duration::from_secs(1 << attempt.clamp(1, 3));
    backoff.min(left.max(Duration::from_secs(1)))
}

async fn delete(iam: &dyn Iam, user: &UserName, key: &AccessKeyId) -> Result<(), StepError> {
    match iam.delete_key(user, key).await {
        // Already gone (a lost response last time): the effect we wanted.
        Ok(()) | Err(IamError::NoSuchEntity) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Records `mark` at `now` for `key`, with the key's other marks as `obs` holds them (the run
/// holds the lease and observed them), in one write; and in `obs`.
async fn record(
    store: &dyn SecretStore,
    obs: &mut Observation,
    key: &AccessKeyId,
    mark: Mark,
    now: Timestamp,
) -> Result<(), StepError> {
    let mut marks = obs.stored.marks_of(key);
    marks.set(mark, now);
    store.record_marks(&obs.user, key, &marks).await?;
    obs.stored.marks.insert(key.clone(), marks);
    Ok(())
}
