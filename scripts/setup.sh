#!/usr/bin/env bash
# One-time setup on Debian with Node 20: the Debian tools the tests use as independent judges
# (openssl, curl, serf), then the npm dependencies and a build. Safe to run again: it installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v serf >/dev/null || need+=(serf)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<20||(a===20&&b<19)) { console.error("setup: Node >= 20.19 is needed, found "+process.version); process.exit(1) }'
echo "setup: npm ci (better-sqlite3 compiles SQLite; about a minute)"
npm ci --no-audit --no-fund --loglevel=error
npm run build --silent
echo "setup: done"
