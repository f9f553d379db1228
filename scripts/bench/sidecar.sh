#!/usr/bin/env bash
# Sidecar benchmark: app→app direct vs the meshfed sidecar pair vs the HAProxy pair, one interleaved
# run of /work/shared/bench/sidecar (its README). The harness is copied to a scratch folder (it
# writes certs and results next to itself) and run from there; the report lands in
# $OUT (default: a temp dir) and is printed. Extra arguments go to the harness (e.g. --quick).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HARNESS="${SIDECAR_BENCH:-/work/shared/bench/sidecar}"
WORK="$(mktemp -d /tmp/meshfed-sidecar-bench.XXXXXX)"
# the harness requires ../../lib (the shared bench library): copy both, side by side
cp -r "$HARNESS/../lib" "$WORK/lib"
cp -r "$HARNESS" "$WORK/sidecar"
rm -rf "$WORK/sidecar/.run" "$WORK/sidecar/results" "$WORK/sidecar/certs"
TARGET="exec node $ROOT/scripts/bench/sidecar-target.mjs"
cd "$WORK/sidecar"
./run.sh --pairs "${PAIRS:-direct,haproxy}" --target-name meshfed \
  --base-port "${BASE_PORT:-19600}" \
  --target-cmd-a "BENCH_ROLE=out $TARGET" \
  --target-cmd-b "BENCH_ROLE=in $TARGET" \
  "$@"
echo "harness copy and results: $WORK"
