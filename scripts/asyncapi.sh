#!/usr/bin/env bash
# Installs the official AsyncAPI parser (@asyncapi/parser, pinned in
# scripts/asyncapi/package-lock.json) into scripts/asyncapi/node_modules, which
# scripts/asyncapi/validate.mjs and the `asyncapi` integration test use to validate the
# documents Asena generates. Runs `npm ci` only when node_modules is missing or the lock file
# changed since the last install; exits non-zero with a clear message when node or npm is
# missing (the tests never skip).
set -euo pipefail
# shellcheck source=scripts/npm-lib.sh
source "$(dirname "$0")/npm-lib.sh"
npm_folder asyncapi

require_node "the AsyncAPI check" "@asyncapi/parser"
if [ -d node_modules/@asyncapi/parser ] && lock_unchanged; then
    exit 0
fi
log "installing @asyncapi/parser (npm ci) into scripts/asyncapi/node_modules"
# --ignore-scripts: the parser needs no install scripts (one dependency's would only send
# install analytics).
SCARF_ANALYTICS=false npm_ci --ignore-scripts
mark_installed
