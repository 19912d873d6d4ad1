#!/usr/bin/env bash
# keyrot's one test command: formatting, lints, every test (unit, simulation, contract, end to
# end) and the docs. CI runs exactly this (.ci/run); so should you before pushing.
#
# Environment:
#   CARGO_TARGET_DIR   where to build (default: ~/.cache/keyrot/target, shared by clones and
#                      reused between runs, so CI on the same machine builds incrementally)
#   KEYROT_SIM_SEEDS   how many seeds the simulation runs (default 500)
#   KEYROT_SIM_DAYS    how many simulated days per seed (default 200)
#   KEYROT_VENV        the Python venv with moto and cfn-lint (default: ~/.cache/keyrot/venv,
#                      created by scripts/venv.sh when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental artefacts only cost disk and time in a run that is not repeated by hand.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi

step() { printf '\n==> %s\n' "$*"; }

step "Python tools (moto, cfn-lint, cargo-lambda; pinned in scripts/requirements.txt)"
# The contract suite starts moto's server from this venv on 127.0.0.1 (keyrot_aws::moto).
./scripts/venv.sh >/dev/null

step "Chromium for the status page's browser test (keyrot-cli/tests/e2e.rs)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "keyrot-core is only the engine: no AWS, tokio, Lambda, HTTP or randomness crate"
# With its default features keyrot-core is what an embedder compiles: the engine and the token
# policy. The HTTP API lives in keyrot-api, the fakes (and their seeded randomness) behind the
# `fake` feature, the mocks behind `mock`. aws-lc-rs is jsonwebtoken's crypto backend (a
# cryptography library, not the AWS SDK), so the check names the SDK's and runtimes' families.
if cargo tree -p keyrot-core -e normal --prefix none --locked \
    | grep -E '^(aws-(config|sdk-|smithy|types|runtime|sigv4|credential)|tokio |hyper |lambda_|http |rand |rand_chacha |rand_core |mockall )'; then
  echo "keyrot-core must stay pure: the crates above leaked into its dependencies" >&2
  exit 1
fi

step "no source file over 800 lines before its test module"
# A file that grows past this is doing two things: split it by concern (ARCHITECTURE.md).
long=$(git ls-files '*.rs' | while read -r f; do
  awk -v f="$f" '/^#\[cfg\(test\)\]/ { n = NR - 1; exit } END { if (!n) n = NR; if (n > 800) print n, f }' "$f"
done)
if [ -n "$long" ]; then
  echo "$long" >&2
  echo "files above are over 800 lines before their #[cfg(test)] module" >&2
  exit 1
fi

step "Lambda binaries built for provided.al2023 (cargo-lambda, zig), glibc 2.34 at most"
./scripts/build-lambda.sh >/dev/null

step "CloudFormation: cfn-lint, cfn-guard rules and bad templates, moto rehearsal"
./cfn/check.sh

step "all checks passed"
