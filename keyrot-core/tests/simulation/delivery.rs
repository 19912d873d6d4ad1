//! Delivery in the simulation: destinations that fail, lose replies, lag on read-back and go
//! down for hours or days; consumers that read their key from a destination; and DESIGN.md's
//! delivery invariant, checked before every deactivation: a key is deactivated only after
//! every destination of the user holds its successor, unless the maximum grace forces it.

use keyrot_core::delivery::{Delivery, DeliveryError, Destination, parse_destinations};
use keyrot_core::fake::{DeliveryFaults, FakeDestinations};

use super::*;

/// The destinations of the simulated users: alice pushes to SSM and to a Secrets Manager
/// secret in another region, bob to a GitHub repository, carol to an SSM parameter with its own
/// KMS key; frank has none.
pub(crate) fn configure(destinations: &FakeDestinations, rng: &mut ChaCha8Rng) {
    for (name, text) in [
        (
            "alice",
            "ssm=ssm:eu-west-1:/ci/alice sm=sm:us-west-2:consumer/alice",
        ),
        ("bob", "gh=gh-repo:acme/deploy:AWS"),
        ("carol", "ssm=ssm:ap-southeast-2:/carol@alias/carol"),
    ] {
        destinations.set_destinations(&user(name), parse_destinations(text).unwrap());
    }
    destinations.set_faults(DeliveryFaults {
        fail: 0.01 + rng.random::<f64>() * 0.03,
        lost_reply: 0.01 + rng.random::<f64>() * 0.03,
        throttle: 0.01,
    });
    destinations.set_read_lag(Duration::from_secs(rng.random_range(0..=120)));
}

/// Every configured destination, with its user.
pub(crate) fn all(destinations: &FakeDestinations) -> Vec<(UserName, Destination)> {
    ["alice", "bob", "carol", "frank"]
        .into_iter()
        .flat_map(|name| {
            destinations
                .configured(&user(name))
                .into_iter()
                .map(move |d| (user(name), d))
        })
        .collect()
}

/// The destinations as one process sees them: a write changes what a consumer reads, so it
/// is made only under the user's lease. With `trusting` the read-back is skipped (every
/// destination is taken to hold every key): a weakened rule, for the test that shows the
/// checker notices.
pub(crate) struct CheckedDelivery(pub(crate) Arc<World>, pub(crate) Proc, pub(crate) bool);

#[async_trait]
impl Delivery for CheckedDelivery {
    async fn destinations(&self, user: &UserName) -> Result<Vec<Destination>, DeliveryError> {
        futures_yield().await;
        self.0.destinations.destinations(user).await
    }

    async fn holds(
        &self,
        user: &UserName,
        destination: &Destination,
        key: &AccessKeyId,
    ) -> Result<bool, DeliveryError> {
        futures_yield().await;
        if self.2 {
            return Ok(true);
        }
        self.0.destinations.holds(user, destination, key).await
    }

    async fn write(
        &self,
        user: &UserName,
        destination: &Destination,
        credentials: &Credentials,
        created: Timestamp,
    ) -> Result<(), DeliveryError> {
        futures_yield().await;
        self.0.before_touch(self.1, user, "deliver a key");
        self.0.seen().deliveries += 1;
        let r = self
            .0
            .destinations
            .write(user, destination, credentials, created)
            .await;
        self.0.check();
        r
    }
}

impl World {
    /// Before keyrot deactivates `key`: every destination of the user holds the current key
    /// (its successor), or the key was superseded at least the maximum grace ago (forced; the
    /// consumers of the destinations that lack it are excused from then on).
    pub(crate) fn before_deactivate(&self, user: &UserName, key: &AccessKeyId) {
        let current = self.aws.store.current_key(user);
        let configured = self.destinations.configured(user);
        let lacking: Vec<String> = configured
            .iter()
            .filter(|d| self.destinations.held(d).map(|c| c.access_key_id) != current)
            .map(|d| d.id.to_string())
            .collect();
        if lacking.is_empty() {
            return;
        }
        let now = self.aws.clock.now();
        let superseded = self.seen().served.get(key).copied().flatten();
        let forced = superseded.is_some_and(|at| now >= at + self.policy.max_grace());
        if forced {
            let mut seen = self.seen();
            seen.forced_off.insert(key.clone());
            seen.forced_past_delivery += 1;
        } else {
            self.violation(format!(
                "{user}: keyrot asked to deactivate {key} while {} lack its successor {current:?}, \
                 before the maximum grace (superseded at {superseded:?})",
                lacking.join(", ")
            ));
        }
    }
}

impl Sim {
    /// Now and then a destination goes down (a deleted parameter, a revoked token, a denied
    /// role) for an hour to four days, longer than the maximum grace at times.
    pub(crate) fn destination_outages(&mut self) {
        let now = self.aws.clock.now();
        let destinations = self.world.destinations.clone();
        self.outages.retain(|(d, until)| {
            let over = now >= *until;
            if over {
                destinations.set_down(d, false);
            }
            !over
        });
        if !self.rng.random_bool(0.01) {
            return;
        }
        let all = all(&destinations);
        let (_, destination) = &all[self.rng.random_range(0..all.len())];
        if self.outages.iter().any(|(d, _)| d == destination) {
            return;
        }
        destinations.set_down(destination, true);
        let until = now + HOUR * self.rng.random_range(1..=96);
        self.outages.push((destination.clone(), until));
        self.world.seen().outages += 1;
    }

    /// The consumers that read their key from a destination use it every hour: it must
    /// authenticate, unless keyrot had to force it off at the maximum grace because the
    /// destination failed (and said so).
    pub(crate) fn consume_destinations(&mut self) -> Result<(), String> {
        let now = self.aws.clock.now();
        let disabled: BTreeSet<UserName> = {
            let seen = self.world.seen();
            seen.disabled.union(&seen.settling).cloned().collect()
        };
        for (user, destination) in all(&self.world.destinations) {
            if disabled.contains(&user) {
                continue;
            }
            let Some(credentials) = self.world.destinations.held(&destination) else {
                continue;
            };
            if self
                .world
                .seen()
                .forced_off
                .contains(&credentials.access_key_id)
            {
                continue;
            }
            self.world.seen().destination_uses += 1;
            if let Err(failure) = self.aws.iam.authenticate(&credentials, now) {
                return Err(format!(
                    "{user}'s consumer reading {destination} was refused with {}: {failure} \
                     (keys {:?}, current {:?})",
                    credentials.access_key_id,
                    self.aws.iam.keys(&user),
                    self.aws.store.current_key(&user),
                ));
            }
        }
        Ok(())
    }
}
