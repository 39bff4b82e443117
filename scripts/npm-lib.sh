# What scripts/asyncapi.sh and scripts/interop.sh share, sourced by both: each installs the
# pinned package-lock.json of one folder under scripts/ into that folder's node_modules, only
# when node_modules is missing or the lock file changed since the last install, and exits
# non-zero with a clear message when node or npm is missing or the install fails.

# npm_folder NAME: moves into scripts/NAME; `log` prefixes its lines with NAME.sh.
npm_folder() {
    NPM_FOLDER=$1
    cd "$(dirname "${BASH_SOURCE[0]}")/$NPM_FOLDER"
}

log() { echo "$NPM_FOLDER.sh: $*" >&2; }

# require_node WHO WHAT: exits 1 unless node 18+ and npm are installed; WHO is what needs
# them (e.g. "the interop tests"), WHAT the package that needs Node.js 18.
require_node() {
    local tool major
    for tool in node npm; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            log "error: \`$tool\` is not installed; $1 need Node.js 18+ and npm"
            log "(e.g. \`apt-get install nodejs npm\`, or https://nodejs.org)"
            exit 1
        fi
    done
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 18 ]; then
        log "error: Node.js $(node --version) is too old; $2 needs 18 or newer"
        exit 1
    fi
}

# The hash of the lock file the last install was of.
NPM_STAMP=node_modules/.asena-lock.sha256

lock_hash() { sha256sum package-lock.json | cut -d' ' -f1; }

# lock_unchanged: true when the last install was of the current package-lock.json.
lock_unchanged() { [ "$(cat "$NPM_STAMP" 2>/dev/null)" = "$(lock_hash)" ]; }

# npm_ci [ARGS...]: `npm ci` with ARGS, or exits 1 saying it failed.
npm_ci() {
    if ! npm ci --no-audit --no-fund --loglevel=error "$@"; then
        log "error: \`npm ci\` failed in scripts/$NPM_FOLDER (is the npm registry reachable?)"
        exit 1
    fi
}

# mark_installed: records that node_modules holds the current package-lock.json.
mark_installed() { lock_hash >"$NPM_STAMP"; }
