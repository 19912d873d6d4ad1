#!/usr/bin/env bash
# The Lambda bootstraps' size, init time and peak RSS, against a hello world built the same way.
#
# Builds the release zips of keyrot-api and keyrot-rotate and of benches/lambda-hello (aws-config
# and the IAM, Secrets Manager and STS clients built at init, nothing else) in one
# `scripts/build-lambda.sh --release --with-hello` (Cargo's `lambda` profile), starts moto's
# server on 127.0.0.1 (the venv's moto_server, as the tests do) with the API's two secrets and the
# rotator's lease table, and runs each bootstrap, unpacked from its zip, under a fake Lambda
# Runtime API on 127.0.0.1 (benches/lambda_bench.py): init is the time from process start to its
# first `GET /2018-06-01/runtime/invocation/next` (median of the runs, after one warm-up round;
# the binaries take turns), peak RSS the process's VmHWM after one invocation (the API answers a
# `GET /health`, which reads both secrets from moto; the rotator runs over an account without
# users; the hello world echoes). Nothing leaves 127.0.0.1. Prints a Markdown table.
#
# Usage: benches/lambda.sh [--runs N] [--skip-build | --zips DIR] [--cert-file F]
#   --runs N      runs per binary (default 21)
#   --skip-build  take the zips of an earlier build from $CARGO_TARGET_DIR/lambda/release-x86_64
#   --zips DIR    take the zips from DIR/<binary>/bootstrap.zip (another build to compare with)
#   --cert-file F run every binary with SSL_CERT_FILE=F: rustls-native-certs then reads that one
#                 bundle instead of the bundle and every file of the system's certificate folder
# Environment: CARGO_TARGET_DIR (default ~/.cache/keyrot/target). x86_64 only: the bootstraps
# run on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=21
build=true
out=""
cert_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
    --skip-build) build=false; shift ;;
    --cert-file) cert_file="${2:?--cert-file needs a file}"; shift 2 ;;
    --zips) build=false; out="${2:?--zips needs a directory}"; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--skip-build | --zips DIR] [--cert-file F]" >&2; exit 2 ;;
  esac
done

venv="$(./scripts/venv.sh)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/keyrot/target}"
if $build; then
  out="$(./scripts/build-lambda.sh --release --with-hello)"
elif [ -z "$out" ]; then
  out="$CARGO_TARGET_DIR/lambda/release-x86_64"
fi
zips=()
for bin in keyrot-api keyrot-rotate lambda-hello; do
  zip="$out/$bin/bootstrap.zip"
  [ -f "$zip" ] || { echo "no $zip: run without --skip-build" >&2; exit 1; }
  zips+=("$bin=$zip")
done

port="$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
moto_log="$(mktemp -t keyrot-bench-moto.XXXXXX)"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$moto_pid" 2>/dev/null || { echo "moto_server failed: see $moto_log" >&2; exit 1; }
  sleep 0.1
done

echo "$(uname -m), $(nproc) cores, $runs runs per binary, zips from $out, TLS roots from ${cert_file:-the system (bundle and folder)}" >&2
SSL_CERT_FILE="$cert_file" "$venv/bin/python" benches/lambda_bench.py "$runs" "http://127.0.0.1:$port" "${zips[@]}"
