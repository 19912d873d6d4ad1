#!/usr/bin/env bash
# The full fault matrix of the real `keyrot rotate` against moto (keyrot-cli/tests/faults.rs):
# the lifecycle of two users (rotation, deactivation after grace, deletion after the recovery
# window, on a policy of seconds), and for each of its AWS calls each of four faults: the call
# fails before moto sees it (500), fails after moto performed it (500, the SDK's retries on),
# keyrot is SIGKILLed as the call arrives, or right after moto performed it. Later runs carry
# on; the test checks that keyrot never asked IAM for a third key, left no key it created
# unstored after a successful run, kept every served key Active, and deactivated none within
# its grace period. scripts/test.sh runs a subset (one user, fail-after and crash-after).
#
# Usage: scripts/faults.sh
# Environment:
#   CARGO_TARGET_DIR    where to build (default: ~/.cache/keyrot/target)
#   KEYROT_FAULT_JOBS   cases run side by side (default 6; one moto server serves them all)
#   KEYROT_FAULT_CASES  only the cases whose name contains this, e.g. "iam:CreateAccessKey #2"
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
./scripts/venv.sh >/dev/null
cargo test -p keyrot-cli --test faults --locked -- --ignored --nocapture \
  every_call_of_a_lifecycle_survives_every_fault
