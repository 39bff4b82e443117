#!/usr/bin/env bash
# Installs the official AsyncAPI parser (@asyncapi/parser, pinned in
# scripts/asyncapi/package-lock.json) into scripts/asyncapi/node_modules, which
# scripts/asyncapi/validate.mjs and the `asyncapi` integration test use to validate the
# documents Asena generates. Runs `npm ci` only when node_modules is missing or the lock file
# changed since the last install; exits non-zero with a clear message when node or npm is
# missing (the tests never skip).
set -euo pipefail
cd "$(dirname "$0")/asyncapi"

log() { echo "asyncapi.sh: $*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "error: \`$tool\` is not installed; the AsyncAPI check needs Node.js 18+ and npm"
        log "(e.g. \`apt-get install nodejs npm\`, or https://nodejs.org)"
        exit 1
    fi
done
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
    log "error: Node.js $(node --version) is too old; @asyncapi/parser needs 18 or newer"
    exit 1
fi

stamp=node_modules/.asena-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -d node_modules/@asyncapi/parser ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
log "installing @asyncapi/parser (npm ci) into scripts/asyncapi/node_modules"
# --ignore-scripts: the parser needs no install scripts (one dependency's would only send
# install analytics).
if ! SCARF_ANALYTICS=false npm ci --no-audit --no-fund --ignore-scripts --loglevel=error; then
    log "error: \`npm ci\` failed in scripts/asyncapi (is the npm registry reachable?)"
    exit 1
fi
echo "$want" >"$stamp"
