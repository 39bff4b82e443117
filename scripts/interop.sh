#!/usr/bin/env bash
# Installs the real systems the interop tests run against (pinned in
# scripts/interop/package-lock.json) into scripts/interop/node_modules: the Ignis 0.0.7
# WebSocket component (@venizia/ignis, @venizia/ignis-helpers, with ioredis and pg, which its
# imports load) and Bun (the npm package `bun`, whose install script unpacks the binary), which
# runs scripts/interop/ignis-server.ts for tests/interop_ignis.rs. Runs `npm ci` only when
# node_modules is missing or the lock file changed since the last install; exits non-zero with
# a clear message when node or npm is missing or the install fails (the tests never skip).
set -euo pipefail
cd "$(dirname "$0")/interop"

log() { echo "interop.sh: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "error: \`$tool\` is not installed; the interop tests need Node.js 18+ and npm"
        log "(e.g. \`apt-get install nodejs npm\`, or https://nodejs.org)"
        exit 1
    fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
    log "error: Node.js $(node --version) is too old; the bun package needs 18 or newer"
    exit 1
fi

bun=node_modules/bun/bin/bun.exe
stamp=node_modules/.asena-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -x "$bun" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
log "installing Ignis 0.0.7 and Bun (npm ci) into scripts/interop/node_modules"
if ! npm ci --no-audit --no-fund --loglevel=error; then
    log "error: \`npm ci\` failed in scripts/interop (is the npm registry reachable?)"
    exit 1
fi
# The bun package's install script puts the binary in place; when scripts were skipped
# (npm's ignore-scripts setting), run it by hand.
if ! "$bun" --version >/dev/null 2>&1; then
    (cd node_modules/bun && node install.js) || true
fi
if ! "$bun" --version >/dev/null 2>&1; then
    log "error: no working Bun binary at scripts/interop/$bun after the install"
    exit 1
fi
echo "$want" >"$stamp"
