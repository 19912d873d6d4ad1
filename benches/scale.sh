#!/usr/bin/env bash
# The scale run at 1,000 / 5,000 / 20,000 users and 50 ms / 500 ms / 1 s a call, with the
# concurrency the deployed rotator uses (adaptive), against a token bucket of 20 calls/s with
# bursts of 20 that throttles calls over it as AWS does. Prints one Markdown row a run.
#
#   benches/scale.sh [USERS...]
set -euo pipefail
cd "$(dirname "$0")/.."
users=("$@")
[ ${#users[@]} -gt 0 ] || users=(1000 5000 20000)
cargo build -q -p benches --release --bin scale
bin="${CARGO_TARGET_DIR:-target}/release/scale"
echo "| users | latency | virtual run time | rate-limit bound | ratio | throttled attempts | rotated | failed |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${users[@]}"; do
  for ms in 50 500 1000; do
    out=$("$bin" "$n" "$ms" 20 20 | sed -n '1,9p')
    field() { grep "^$1" <<<"$out" | head -1; }
    time=$(field "virtual run time" | awk '{print $4}')
    bound=$(field "rate lower bound" | awk '{print $4}')
    ratio=$(field "ratio" | awk '{print $2}')
    throttled=$(field "network" | sed -E 's/.*, ([0-9]+) attempts throttled.*/\1/')
    rotated=$(field "users" | sed -E 's/.* ([0-9]+) rotated.*/\1/')
    failed=$(field "users" | sed -E 's/.*rotated, ([0-9]+) failed.*/\1/')
    echo "| $n | $ms ms | $time s | $bound s | $ratio | $throttled | $rotated | $failed |"
  done
done
