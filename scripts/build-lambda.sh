#!/usr/bin/env bash
# Builds the two Lambda functions (keyrot-rotate, keyrot-api) for provided.al2023 with
# cargo-lambda (zig links against glibc 2.34, the runtime's), packs each as a zip with its
# `bootstrap`, and checks that no binary needs a newer glibc than the runtime has.
#
# Usage: scripts/build-lambda.sh [--release] [--arch x86_64|arm64] [--with-hello]
# --release builds with Cargo's `lambda` profile (the root Cargo.toml: release, tuned for size and
# start-up), not cargo-lambda's release defaults; without it, the dev profile (what the test
# command builds: fast to compile). --with-hello also builds benches/lambda-hello (the SDK hello
# world benches/lambda.sh compares with) in the same build, so with the same profile and features.
# Prints the directory holding keyrot-rotate/bootstrap.zip and keyrot-api/bootstrap.zip:
# $CARGO_TARGET_DIR/lambda/<profile>-<arch>/ (release-x86_64, dev-arm64, ...), one per build, so
# that scripts/test.sh's dev zips never stand in for deploy.sh's release zips.
# Environment: CARGO_TARGET_DIR (default ~/.cache/keyrot/target).
set -euo pipefail
cd "$(dirname "$0")/.."

# provided.al2023's glibc.
readonly MAX_GLIBC=2.34

profile=dev
arch=x86_64
bins=(keyrot-rotate keyrot-api)
packages=(-p keyrot-lambda)
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release; shift ;;
    --arch) arch="${2:?--arch needs x86_64 or arm64}"; shift 2 ;;
    --with-hello) bins+=(lambda-hello); packages+=(-p lambda-hello); shift ;;
    *) echo "usage: $0 [--release] [--arch x86_64|arm64] [--with-hello]" >&2; exit 2 ;;
  esac
done
case "$arch" in
  x86_64) flag=--x86-64 triple=x86_64-unknown-linux-gnu ;;
  arm64) flag=--arm64 triple=aarch64-unknown-linux-gnu ;;
  *) echo "--arch must be x86_64 or arm64" >&2; exit 2 ;;
esac

venv="$(./scripts/venv.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
out="$CARGO_TARGET_DIR/lambda/$profile-$arch"
# The release zips' profile: its own, so cargo-lambda's release defaults (which apply only to
# `--release`) never decide what is deployed.
cargo_profile=dev dir=debug
[ "$profile" = release ] && cargo_profile=lambda dir=lambda
bin_args=()
for bin in "${bins[@]}"; do bin_args+=(--bin "$bin"); done

echo "building ${bins[*]} ($profile, profile $cargo_profile, $arch, glibc $MAX_GLIBC)" >&2
PATH="$venv/bin:$PATH" cargo lambda build --profile "$cargo_profile" "$flag" --locked \
  "${packages[@]}" "${bin_args[@]}" --output-format zip --lambda-dir "$out" >&2

for bin in "${bins[@]}"; do
  path="$CARGO_TARGET_DIR/$triple/$dir/$bin"
  [ -f "$out/$bin/bootstrap.zip" ] || { echo "no $out/$bin/bootstrap.zip" >&2; exit 1; }
  # The highest GLIBC_x.y symbol version the binary asks the dynamic linker for.
  needed="$(objdump -T "$path" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
  if [ -z "$needed" ]; then
    echo "$bin: no GLIBC symbol versions found in $path; is it dynamically linked?" >&2
    exit 1
  fi
  if [ "$(printf '%s\n%s\n' "$needed" "$MAX_GLIBC" | sort -V | tail -n 1)" != "$MAX_GLIBC" ]; then
    echo "$bin needs GLIBC_$needed, newer than provided.al2023's $MAX_GLIBC" >&2
    exit 1
  fi
  echo "$bin: needs at most GLIBC_$needed (runtime has $MAX_GLIBC)" >&2
done
echo "$out"
