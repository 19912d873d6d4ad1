//! What a seed's run adds up to: how much of the lifecycle and of the hostility it met.

use super::*;

#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) rotations: u64,
    pub(crate) deletions: u64,
    pub(crate) orphans_deleted: u64,
    pub(crate) forced: u64,
    pub(crate) injected: BTreeMap<FaultKind, u64>,
    pub(crate) sdk_retries: u64,
    pub(crate) crashes: u64,
    pub(crate) runs: u64,
    pub(crate) concurrent_runs: u64,
    pub(crate) busy: u64,
    pub(crate) operator_keys: u64,
    pub(crate) disabled: u64,
    pub(crate) rollbacks: u64,
    pub(crate) rollbacks_refused: u64,
    pub(crate) consumer_uses: u64,
    pub(crate) job_uses: u64,
    pub(crate) notices_held_back: u64,
    pub(crate) notices_repeated: u64,
    pub(crate) deliveries: u64,
    pub(crate) destination_uses: u64,
    pub(crate) outages: u64,
    pub(crate) forced_past_delivery: u64,
}

impl Totals {
    pub(crate) fn add(&mut self, t: &Self) {
        self.rotations += t.rotations;
        self.deletions += t.deletions;
        self.orphans_deleted += t.orphans_deleted;
        self.forced += t.forced;
        for (kind, n) in &t.injected {
            *self.injected.entry(*kind).or_insert(0) += n;
        }
        self.sdk_retries += t.sdk_retries;
        self.crashes += t.crashes;
        self.runs += t.runs;
        self.concurrent_runs += t.concurrent_runs;
        self.busy += t.busy;
        self.operator_keys += t.operator_keys;
        self.disabled += t.disabled;
        self.rollbacks += t.rollbacks;
        self.rollbacks_refused += t.rollbacks_refused;
        self.consumer_uses += t.consumer_uses;
        self.job_uses += t.job_uses;
        self.notices_held_back += t.notices_held_back;
        self.notices_repeated += t.notices_repeated;
        self.deliveries += t.deliveries;
        self.destination_uses += t.destination_uses;
        self.outages += t.outages;
        self.forced_past_delivery += t.forced_past_delivery;
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  runs {} ({} of two processes at once, {} users found busy), crashes {}",
            self.runs, self.concurrent_runs, self.busy, self.crashes
        )?;
        writeln!(
            f,
            "  rotations {}, deletions {}, orphans deleted {}, forced deactivations {}",
            self.rotations, self.deletions, self.orphans_deleted, self.forced
        )?;
        write!(f, "  faults injected:")?;
        for kind in FaultKind::ALL {
            write!(
                f,
                " {kind} {}",
                self.injected.get(&kind).copied().unwrap_or(0)
            )?;
        }
        writeln!(f, "; SDK retries of lost replies {}", self.sdk_retries)?;
        writeln!(
            f,
            "  operator keys {}, users disabled by an admin {}, rollbacks {} ({} refused)",
            self.operator_keys, self.disabled, self.rollbacks, self.rollbacks_refused
        )?;
        write!(
            f,
            "  consumer uses {}, uses of operators' keys {}",
            self.consumer_uses, self.job_uses
        )?;
        write!(
            f,
            "\n  standing notices held back {}, sent again after the repeat period {}",
            self.notices_held_back, self.notices_repeated
        )?;
        write!(
            f,
            "\n  writes to destinations {}, destination outages {}, uses of delivered keys {}, \
             forced off before delivery {}",
            self.deliveries, self.outages, self.destination_uses, self.forced_past_delivery
        )
    }
}
