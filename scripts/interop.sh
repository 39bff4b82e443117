#!/usr/bin/env bash
# Installs the real systems the interop tests run against (pinned in
# scripts/interop/package-lock.json) into scripts/interop/node_modules: the Ignis 0.0.7
# WebSocket component (@venizia/ignis, @venizia/ignis-helpers, with ioredis and pg, which its
# imports load) and Bun (the npm package `bun`, whose install script unpacks the binary), which
# runs scripts/interop/ignis-server.ts for tests/interop_ignis.rs. Runs `npm ci` only when
# node_modules is missing or the lock file changed since the last install; exits non-zero with
# a clear message when node or npm is missing or the install fails (the tests never skip).
set -euo pipefail
# shellcheck source=scripts/npm-lib.sh
source "$(dirname "$0")/npm-lib.sh"
npm_folder interop

require_node "the interop tests" "the bun package"
bun=node_modules/bun/bin/bun.exe
if [ -x "$bun" ] && lock_unchanged; then
    exit 0
fi
log "installing Ignis 0.0.7 and Bun (npm ci) into scripts/interop/node_modules"
npm_ci
# The bun package's install script puts the binary in place; when scripts were skipped
# (npm's ignore-scripts setting), run it by hand.
if ! "$bun" --version >/dev/null 2>&1; then
    (cd node_modules/bun && node install.js) || true
fi
if ! "$bun" --version >/dev/null 2>&1; then
    log "error: no working Bun binary at scripts/interop/$bun after the install"
    exit 1
fi
mark_installed
