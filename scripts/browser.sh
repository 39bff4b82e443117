#!/usr/bin/env bash
# The browser tests: drives the chat and realtime example pages and the chat's inspector in
# headless Chromium.
#   bash scripts/browser.sh [chat|realtime|inspector]...     (no argument: all three)
# Installs what they need when it is missing, and fails loudly when it cannot (never skips):
# - Debian's `chromium` (apt-get, non-interactive); CHROMIUM=/path overrides /usr/bin/chromium.
# - playwright-core, pinned in scripts/browser/package-lock.json, into
#   scripts/browser/node_modules (`npm ci` only when it is missing or the lock changed).
#   playwright-core downloads no browser; it drives Debian's.
# Builds the examples with the flags of the test command's `cargo test` (so after it nothing
# is rebuilt), then runs each test against freshly started servers on free loopback ports:
# - chat: scripts/browser/chat.js against the chat example, its rooms keeping history in the
#   Redis on 127.0.0.1:6379 (ASENA_HISTORY) and its inspector on (to drop a socket).
# - inspector: scripts/browser/inspector.js against the chat example's inspector (/_asena),
#   with a token set through ASENA_INSPECTOR_TOKEN, signing in through its login form.
# - realtime: scripts/browser/realtime.js against two realtime instances sharing Redis on
#   127.0.0.1:6379 (scripts/services.sh starts it), with `emit --user alice` in between; who
#   is online comes from the runtime's presence, which the instances share through Redis.
#   REALTIME_CHECK_LOCAL=1 runs one instance without Redis and without the notification step.
# Server logs, screenshots (chat.png, realtime.png, inspector.png) and failure screenshots
# (<test>-failure-<tab>.png) go to target/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
OUT=target/browser
TEST_TIMEOUT=120

log() { echo "browser.sh: $*" >&2; }
fail() {
    log "ERROR: $*"
    exit 1
}

tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(chat realtime inspector)
for name in "${tests[@]}"; do
    case $name in
    chat | realtime | inspector) ;;
    *) fail "unknown test '$name' (expected chat, realtime or inspector)" ;;
    esac
done
started=$SECONDS

ensure_chromium() {
    if [ ! -x "$CHROMIUM" ]; then
        [ "$CHROMIUM" = /usr/bin/chromium ] || fail "CHROMIUM=$CHROMIUM is not an executable"
        log "chromium is missing; installing the Debian package with apt-get"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
        command -v apt-get >/dev/null 2>&1 || fail "chromium is missing and there is no apt-get to install it"
        if ! { $sudo apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >&2; }; then
            fail "could not install chromium with apt-get (run 'apt-get install chromium' as root and run again)"
        fi
        [ -x "$CHROMIUM" ] || fail "apt-get installed chromium but $CHROMIUM is not there"
    fi
    # Debian's launcher script prints shell noise on stderr on some machines: keep stdout only.
    local version
    if ! version=$("$CHROMIUM" --version 2>"$OUT/chromium-version.err"); then
        cat "$OUT/chromium-version.err" >&2
        fail "$CHROMIUM does not run (\`$CHROMIUM --version\` failed, output above)"
    fi
    log "using $version ($CHROMIUM)"
}

ensure_playwright() {
    for tool in node npm; do
        command -v "$tool" >/dev/null 2>&1 ||
            fail "\`$tool\` is not installed; the browser tests need Node.js 20+ and npm (e.g. 'apt-get install nodejs npm')"
    done
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 20 ] || fail "Node.js $(node --version) is too old; playwright-core needs 20 or newer"
    local dir=scripts/browser
    local stamp=$dir/node_modules/.asena-lock.sha256
    local want
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ -d "$dir/node_modules/playwright-core" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    log "installing playwright-core (npm ci) into $dir/node_modules"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2); then
        fail "\`npm ci\` failed in $dir (is the npm registry reachable?)"
    fi
    echo "$want" >"$stamp"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pids=()
stop_servers() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap stop_servers EXIT

# serve NAME EXAMPLE PORT [ENV=VALUE...]: runs an example in the background, logging to
# target/browser/NAME.log, and waits (at most 10 s) until it listens on PORT.
serve() {
    local name=$1 example=$2 port=$3
    shift 3
    env "$@" PORT="$port" "target/debug/examples/$example" >"$OUT/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$OUT/$name.log" >&2
            fail "$name exited before listening on 127.0.0.1:$port (log above)"
        fi
        sleep 0.05
    done
    fail "$name did not listen on 127.0.0.1:$port within 10 s (see $OUT/$name.log)"
}

# node_test SCRIPT ARGS...: runs one test script, bounded by TEST_TIMEOUT seconds.
node_test() {
    local script=$1
    shift
    CHROMIUM=$CHROMIUM timeout --kill-after=5 "$TEST_TIMEOUT" node "scripts/browser/$script" "$@"
}

run_chat() {
    local port token=browser-chat-token
    port=$(free_port)
    serve chat chat "$port" ASENA_HISTORY=redis://127.0.0.1:${ASENA_REDIS_PORT:-6379} ASENA_INSPECTOR_TOKEN=$token
    node_test chat.js "http://127.0.0.1:$port/" "$OUT" "$token"
}

run_inspector() {
    local port token=browser-test-token
    port=$(free_port)
    serve inspector chat "$port" ASENA_INSPECTOR_TOKEN=$token
    node_test inspector.js "http://127.0.0.1:$port/" "$token" "$OUT"
}

run_realtime() {
    if [ "${REALTIME_CHECK_LOCAL:-}" = 1 ]; then
        local port
        port=$(free_port)
        serve realtime realtime "$port" ASENA_TRANSPORT=local
        REALTIME_LOCAL=1 node_test realtime.js "http://127.0.0.1:$port/" "http://127.0.0.1:$port/" "$OUT"
        return
    fi
    bash scripts/services.sh || fail "Redis is not running on 127.0.0.1:6379 (scripts/services.sh failed)"
    local redis=redis://127.0.0.1:6379
    local port1 port2
    port1=$(free_port)
    serve realtime-1 realtime "$port1" ASENA_TRANSPORT=$redis
    port2=$(free_port)
    serve realtime-2 realtime "$port2" ASENA_TRANSPORT=$redis
    ASENA_TRANSPORT=$redis EMIT=target/debug/examples/emit \
        node_test realtime.js "http://127.0.0.1:$port1/" "http://127.0.0.1:$port2/" "$OUT"
}

mkdir -p "$OUT"
ensure_chromium
ensure_playwright
# The same packages and features as scripts/test.sh's `cargo test --workspace --all-features`,
# whose debug build this reuses.
log "building the examples (chat, realtime, emit)"
cargo build --quiet --workspace --all-features --example chat --example realtime --example emit

failed=()
for name in "${tests[@]}"; do
    t0=$SECONDS
    log "running $name"
    if "run_$name"; then
        log "$name passed in $((SECONDS - t0)) s"
    else
        log "$name FAILED after $((SECONDS - t0)) s; server logs and screenshots are in $OUT/:"
        for f in "$OUT/$name"*.log; do
            [ -e "$f" ] || continue
            log "--- last lines of $f"
            tail -n 20 "$f" >&2
        done
        failed+=("$name")
    fi
    stop_servers
done
if [ ${#failed[@]} -gt 0 ]; then
    fail "browser tests failed: ${failed[*]}"
fi
log "all browser tests passed (${tests[*]}) in $((SECONDS - started)) s"
