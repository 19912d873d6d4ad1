#!/usr/bin/env bash
# Mutation testing of the engine: cargo-mutants breaks keyrot-core's planner and driver one
# change at a time (a `!` deleted, a match arm removed, a function returning a constant...) and
# runs keyrot-core's own tests against each mutant. A mutant no test catches is a rule no test
# proves. Not part of the test command (it takes about twelve minutes on two cores); its latest
# figures are in the README ("Mutation testing"), with every missed mutant that is equivalent
# to the original and why.
#
# Usage: scripts/mutants.sh [cargo-mutants options...]   e.g. --re 'plan.rs:550:32', or
#        --iterate to test only the mutants the last run did not catch
#
# Environment:
#   KEYROT_MUTANTS_TARGET  the target directory the mutants build in (default:
#                       ~/.cache/keyrot/target-mutants-scratch). cargo-mutants copies the source
#                       tree (without target/) into a scratch directory and builds there; with
#                       CARGO_TARGET_DIR pointing at a kept directory, only the first run builds
#                       the dependencies and each mutant rebuilds keyrot-core alone. It is not
#                       the directory you build in by hand: the copy has the same relative paths,
#                       so the two builds would take turns invalidating keyrot-core and wait on
#                       each other's lock.
#   KEYROT_SIM_SEEDS    seeds of the simulation per mutant (default 40; the test command: 500)
#   KEYROT_SIM_DAYS     simulated days per seed (default 60; the test command: 200)
#   KEYROT_MUTANTS_OUT  where cargo-mutants writes its results (default: target/mutants)
#
# Exit status: 0 when every mutant is caught, timed out, unviable, or listed in the README;
# 1 otherwise (the missed ones are printed).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_MUTANTS_VERSION=27.1.0
tools="${KEYROT_TOOLS:-$HOME/.cache/keyrot/tools}"
mutants="$tools/bin/cargo-mutants"
if ! "$mutants" mutants --version 2>/dev/null | grep -q "$CARGO_MUTANTS_VERSION"; then
  echo "==> installing cargo-mutants $CARGO_MUTANTS_VERSION into $tools (a few minutes, once)"
  CARGO_TARGET_DIR="${KEYROT_TOOLS_TARGET:-$HOME/.cache/keyrot/tools-target}" \
    cargo install cargo-mutants --version "$CARGO_MUTANTS_VERSION" --locked --root "$tools"
fi

export KEYROT_SIM_SEEDS="${KEYROT_SIM_SEEDS:-40}"
export KEYROT_SIM_DAYS="${KEYROT_SIM_DAYS:-60}"
out="${KEYROT_MUTANTS_OUT:-target/mutants}"
mkdir -p "$out"
export CARGO_TARGET_DIR="${KEYROT_MUTANTS_TARGET:-$HOME/.cache/keyrot/target-mutants-scratch}"

# The tests that exercise the engine: the planner's table and properties, the simulation, the
# driver's own scenarios and the log capture. (The API's security suite tests another module.)
# They are cargo arguments, not test arguments after `--`, so that cargo-mutants' build of each
# mutant (`cargo test --no-run`) builds only these targets too. One job: the machine has two
# cores, and a mutant's build already uses both.
# keyrot-core is built unoptimised here (the workspace builds it at opt-level 2 for the full
# simulation): each mutant is a rebuild of keyrot-core and of the four test binaries, which
# dominates, while the reduced simulation stays a few seconds even unoptimised. Overflow checks
# and debug assertions are the same either way.
cargo_args=(--lib --test=simulation --test=driver --test=no_secrets_in_logs
  --config=profile.dev.package.keyrot-core.opt-level=0)
status=0
"$mutants" mutants --package keyrot-core \
  --file keyrot-core/src/plan.rs --file keyrot-core/src/driver.rs \
  --output "$out" --jobs 1 --timeout-multiplier 3 \
  "${cargo_args[@]/#/--cargo-arg=}" "$@" || status=$?
# 0: all caught; 2: some missed; 3: some timed out (a timeout counts as caught: the mutant
# hangs the tests). Anything else is a failure of the tool itself.
case $status in 0 | 2 | 3) ;; *) exit "$status" ;; esac

results="$out/mutants.out"
count() { if [ -f "$results/$1" ]; then grep -c . "$results/$1" || true; else echo 0; fi; }
echo
echo "caught $(count caught.txt), missed $(count missed.txt), timeout $(count timeout.txt), unviable $(count unviable.txt)"

# The README lists each equivalent mutant as a line "- `<file>:<line>:<col>: <description>`: why".
equivalent=$(sed -n '/<!-- mutants-equivalent -->/,/<!-- \/mutants-equivalent -->/p' README.md \
  | sed -n 's/^- `\(.*\)`: .*/\1/p')
unexplained=0
if [ -f "$results/missed.txt" ]; then
  while IFS= read -r mutant; do
    if ! grep -qxF "$mutant" <<<"$equivalent"; then
      echo "missed, and not listed as equivalent in README.md: $mutant"
      unexplained=$((unexplained + 1))
    fi
  done <"$results/missed.txt"
fi
if [ "$unexplained" -gt 0 ]; then
  echo "$unexplained missed mutants need a test (or, if equivalent, a line in README.md)" >&2
  exit 1
fi
echo "every missed mutant is listed as equivalent in README.md"
