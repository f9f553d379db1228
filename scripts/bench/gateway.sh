#!/usr/bin/env bash
# Benchmark the mesh gateway against HAProxy, nginx and sniproxy with the shared SNI-proxy harness
# (/work/shared/bench, see its README). Not run in CI. Usage:
#   npm run build && scripts/bench/gateway.sh [--workers N] [harness options, e.g. --quick]
# The harness folder is read-only, so it is copied to a temp folder; results land in
# $BENCH_OUT (default /tmp/meshfed-bench-gateway) under results/<timestamp>/report.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
harness="${BENCH_HARNESS:-/work/shared/bench}"
out="${BENCH_OUT:-/tmp/meshfed-bench-gateway}"
workers=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
main="$root/packages/gateway/dist/src/main.js"
[ -f "$main" ] || { echo "build first: npm run build" >&2; exit 2; }
mkdir -p "$out"
cp -r "$harness"/. "$out"/
chmod -R u+w "$out"
cd "$out"
exec ./run-peers.sh --peers "${PEERS:-direct,haproxy,nginx,sniproxy,naive-node}" \
  --target "gateway-w${workers}=127.0.0.1:19300" \
  --target-cmd "exec node $main --listen \"\$BENCH_LISTEN\" --admin off --workers $workers --drain-timeout 2s \
    --static-route \"\$BENCH_SNI_A=\$BENCH_BACKEND_A\" --static-route \"\$BENCH_SNI_B=\$BENCH_BACKEND_B\"" \
  "${args[@]}"
