#!/usr/bin/env bash
# Manual check of the realtime page in a real browser across two instances (not part of CI):
# installs Debian's chromium and playwright-core (into target/) when missing, makes sure Redis
# runs on 127.0.0.1:6379 (scripts/services.sh), starts two realtime instances on free loopback
# ports sharing it (ASENA_TRANSPORT=redis://127.0.0.1:6379), drives three tabs (alice on both
# instances, bob on the second) through sign-in, presence, join, chat and an
# `emit --user alice --event notification`, and saves a screenshot to target/realtime.png.
#
# It clears the presence keys (realtime:online, realtime:online:version) first, so a run
# killed earlier leaves no stale sessions behind: do not point it at a Redis a real fleet uses.
# REALTIME_CHECK_LOCAL=1 checks the page alone: one instance, no Redis, no notification.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
mkdir -p target/browser
if [ ! -d target/browser/node_modules/playwright-core ]; then
    (cd target/browser && npm init -y >/dev/null && npm install --silent playwright-core@1)
fi
cargo build --quiet --example realtime --example emit

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# start NAME PORT [ENV=VALUE...]: one instance, logging to target/browser/NAME.log.
start() {
    local name=$1 port=$2
    shift 2
    env "$@" PORT="$port" target/debug/examples/realtime >"target/browser/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 200); do
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited before listening:" >&2
            cat "target/browser/$name.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "$name did not listen on $port" >&2
    exit 1
}

if [ "${REALTIME_CHECK_LOCAL:-}" = 1 ]; then
    port=$(free_port)
    start realtime "$port" ASENA_TRANSPORT=local
    NODE_PATH=target/browser/node_modules timeout 90 \
        node scripts/browser/realtime.js "http://127.0.0.1:$port/" "http://127.0.0.1:$port/" target/realtime.png
else
    bash scripts/services.sh
    redis=redis://127.0.0.1:6379
    if command -v redis-cli >/dev/null; then
        redis-cli -h 127.0.0.1 -p 6379 DEL realtime:online realtime:online:version >/dev/null
    fi
    port1=$(free_port)
    start realtime-1 "$port1" ASENA_TRANSPORT=$redis
    port2=$(free_port)
    start realtime-2 "$port2" ASENA_TRANSPORT=$redis
    ASENA_TRANSPORT=$redis EMIT=target/debug/examples/emit NODE_PATH=target/browser/node_modules timeout 90 \
        node scripts/browser/realtime.js "http://127.0.0.1:$port1/" "http://127.0.0.1:$port2/" target/realtime.png
fi
echo "screenshot: target/realtime.png"
