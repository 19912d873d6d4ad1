#!/usr/bin/env bash
# Builds the two Lambda functions (keyrot-rotate, keyrot-api) for provided.al2023 with
# cargo-lambda (zig links against glibc 2.34, the runtime's), packs each as a zip with its
# `bootstrap`, and checks that no binary needs a newer glibc than the runtime has.
#
# Usage: scripts/build-lambda.sh [--release] [--arch x86_64|arm64]
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
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release; shift ;;
    --arch) arch="${2:?--arch needs x86_64 or arm64}"; shift 2 ;;
    *) echo "usage: $0 [--release] [--arch x86_64|arm64]" >&2; exit 2 ;;
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
release=()
[ "$profile" = release ] && release=(--release)

echo "building keyrot-rotate and keyrot-api ($profile, $arch, glibc $MAX_GLIBC)" >&2
PATH="$venv/bin:$PATH" cargo lambda build ${release[@]+"${release[@]}"} "$flag" --locked \
  -p keyrot-lambda --bin keyrot-rotate --bin keyrot-api --output-format zip --lambda-dir "$out" >&2

dir=debug
[ "$profile" = release ] && dir=release
for bin in keyrot-rotate keyrot-api; do
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
