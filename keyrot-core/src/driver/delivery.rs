//! Delivering the current key to a user's destinations (see [`crate::delivery`]): the port a
//! rotator may be given, the step that writes and checks, and what a survey must not skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use tracing::{info, warn};

use super::{ManagedUser, Rotator, StepError, error_chain};
use crate::delivery::{Delivered, Delivery, DeliveryError, Destination, DestinationId, missing};
use crate::model::{Credentials, StoredUser, UserName};
use crate::plan::Observation;
use crate::ports::Notice;

/// What failed in a delivery: the destination (left for the next run), or the record of the
/// write in the store (a step error).
enum Failed {
    Delivery(DeliveryError),
    Store(StepError),
}

impl From<DeliveryError> for Failed {
    fn from(error: DeliveryError) -> Self {
        Self::Delivery(error)
    }
}

impl From<StepError> for Failed {
    fn from(error: StepError) -> Self {
        Self::Store(error)
    }
}

/// The delivery port of a rotator, if it has one (none: no user has destinations).
#[derive(Clone, Default)]
pub(super) struct DeliveryPort(Option<Arc<dyn Delivery>>);

impl fmt::Debug for DeliveryPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Some(..)" } else { "None" })
    }
}

impl DeliveryPort {
    /// The user's destinations; none without a port.
    pub(super) async fn destinations(
        &self,
        user: &UserName,
    ) -> Result<Vec<Destination>, DeliveryError> {
        match &self.0 {
            Some(port) => port.destinations(user).await,
            None => Ok(Vec::new()),
        }
    }
}

impl Rotator {
    /// Pushes each new key to the users' delivery destinations (see [`crate::delivery`]),
    /// through `delivery`, and keeps a superseded key active until every destination holds
    /// its successor (or the maximum grace forces it, with an alert that names the
    /// destinations that failed).
    #[must_use]
    pub fn with_delivery(mut self, delivery: Arc<dyn Delivery>) -> Self {
        self.delivery = DeliveryPort(Some(delivery));
        self
    }

    /// The users among `users` whose listed secret does not record every destination holding
    /// the current key (or whose destinations cannot be learned): a survey must not skip them.
    pub(super) async fn undelivered(
        &self,
        users: &[ManagedUser],
        stored: &BTreeMap<UserName, StoredUser>,
    ) -> BTreeSet<UserName> {
        let mut found = BTreeSet::new();
        if self.delivery.0.is_none() {
            return found;
        }
        for user in users {
            let Some(listed) = stored.get(&user.0) else {
                continue;
            };
            let Some(current) = listed.current() else {
                continue;
            };
            match self.delivery.destinations(&user.0).await {
                Ok(destinations) if missing(&destinations, listed, current).is_empty() => {}
                _ => {
                    found.insert(user.0.clone());
                }
            }
        }
        found
    }

    /// [`Step::Deliver`](crate::plan::Step::Deliver): unless the destination holds the
    /// current key already (a write whose reply was lost), writes it and reads it back; once
    /// it is seen there, records the delivery. A failure is no step error: the destination is
    /// left for the next run, and the run's end notifies it ([`Rotator::undelivered_notice`]).
    pub(super) async fn deliver(
        &self,
        obs: &mut Observation,
        id: &DestinationId,
        fresh: &mut Option<Credentials>,
    ) -> Result<(), StepError> {
        let Some(port) = &self.delivery.0 else {
            return Ok(());
        };
        let destination = obs.destinations.iter().find(|d| &d.id == id).cloned();
        let (Some(destination), Some(current)) = (destination, obs.stored.current().cloned())
        else {
            return Ok(());
        };
        let user = obs.user.clone();
        let credentials = match fresh.as_ref().filter(|c| c.access_key_id == current) {
            Some(c) => c.clone(),
            None => self
                .ports
                .store
                .credentials(&user, &current)
                .await?
                .ok_or_else(|| StepError::MissingSecret(current.clone()))?,
        };
        let writing = Delivered::writing(&destination, current.clone());
        let landed = async {
            if port.holds(&user, &destination, &current).await? {
                return Ok(true);
            }
            // Say first that this key is being written: once the write may have landed, the
            // record must no longer name the key the destination held before.
            if obs.stored.delivered.get(id) != Some(&writing) {
                self.ports
                    .store
                    .record_delivered(&user, id, &writing)
                    .await
                    .map_err(StepError::from)?;
                obs.stored.delivered.insert(id.clone(), writing.clone());
            }
            let created = obs
                .key(&current)
                .map_or(self.ports.clock.now(), |k| k.created);
            port.write(&user, &destination, &credentials, created)
                .await?;
            Ok(port.holds(&user, &destination, &current).await?)
        }
        .await;
        let error = match landed {
            Err(Failed::Store(error)) => return Err(error),
            Ok(true) => {
                let record = Delivered::new(&destination, current.clone());
                self.ports
                    .store
                    .record_delivered(&user, id, &record)
                    .await?;
                obs.stored.delivered.insert(id.clone(), record);
                info!(destination = %destination, key = %current, "delivered");
                return Ok(());
            }
            Ok(false) => "written, but not seen there yet".to_owned(),
            Err(Failed::Delivery(error)) => error_chain(&error),
        };
        warn!(destination = %destination, error = %error, "not delivered");
        obs.undelivered
            .insert(id.clone(), format!("{destination}: {error}"));
        Ok(())
    }

    /// The one notice of the destinations whose delivery of the current key failed in this
    /// run, if any (a standing condition: repeats are held back).
    pub(super) fn undelivered_notice(obs: &Observation) -> Option<Notice> {
        let current = obs.stored.current()?;
        let failures: Vec<String> = obs.undelivered.values().cloned().collect();
        (!failures.is_empty()).then(|| Notice::Undelivered {
            user: obs.user.clone(),
            key: current.clone(),
            failures,
        })
    }

    /// The notice of a forced deactivation of `key`: it names the destinations that do not
    /// hold the current key, if any.
    pub(super) fn forced_notice(obs: &Observation, key: &crate::AccessKeyId) -> Notice {
        let undelivered: Vec<String> = obs
            .stored
            .current()
            .map(|c| missing(&obs.destinations, &obs.stored, c))
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        if undelivered.is_empty() {
            Notice::ForcedDeactivation {
                user: obs.user.clone(),
                key: key.clone(),
            }
        } else {
            Notice::ForcedUndelivered {
                user: obs.user.clone(),
                key: key.clone(),
                destinations: undelivered,
            }
        }
    }
}
