#!/usr/bin/env bash
# Makes sure the brokers the multi-instance tests need are running on loopback:
#   redis-server on 127.0.0.1:6379 and nats-server on 127.0.0.1:4222.
# Starts whichever is not running. When a binary is missing it tries
# `apt-get install -y redis-server nats-server`; if that fails it exits non-zero with a clear
# message (the tests never skip). Waits at most 10 s for both ports to accept connections.
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${ASENA_REDIS_PORT:-6379}
NATS_PORT=${ASENA_NATS_PORT:-4222}
WAIT_SECONDS=10

log() { echo "services.sh: $*" >&2; }

port_open() {
    # bash's /dev/tcp: succeeds when something accepts on the port.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

find_binary() {
    command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

ensure_binaries() {
    local missing=()
    [ -n "$(find_binary redis-server)" ] || missing+=(redis-server)
    [ -n "$(find_binary nats-server)" ] || missing+=(nats-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "missing ${missing[*]}; trying apt-get install"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    if command -v apt-get >/dev/null 2>&1 \
        && $sudo apt-get update -qq >&2 \
        && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2; then
        :
    fi
    local still=()
    [ -n "$(find_binary redis-server)" ] || still+=(redis-server)
    [ -n "$(find_binary nats-server)" ] || still+=(nats-server)
    if [ ${#still[@]} -gt 0 ]; then
        log "ERROR: ${still[*]} not installed and could not be installed."
        log "Install them (e.g. 'apt-get install redis-server nats-server') and run again."
        exit 1
    fi
}

start_redis() {
    log "starting redis-server on 127.0.0.1:$REDIS_PORT"
    "$(find_binary redis-server)" --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save "" --appendonly no >&2
}

start_nats() {
    mkdir -p target
    log "starting nats-server on 127.0.0.1:$NATS_PORT (log: target/nats.log)"
    setsid nohup "$(find_binary nats-server)" -a 127.0.0.1 -p "$NATS_PORT" \
        >target/nats.log 2>&1 </dev/null &
}

need_redis=0
need_nats=0
port_open "$REDIS_PORT" || need_redis=1
port_open "$NATS_PORT" || need_nats=1

if [ $need_redis -eq 1 ] || [ $need_nats -eq 1 ]; then
    ensure_binaries
fi
if [ $need_redis -eq 1 ]; then start_redis; fi
if [ $need_nats -eq 1 ]; then start_nats; fi

deadline=$((SECONDS + WAIT_SECONDS))
until port_open "$REDIS_PORT" && port_open "$NATS_PORT"; do
    if [ $SECONDS -ge $deadline ]; then
        port_open "$REDIS_PORT" || log "ERROR: redis-server is not accepting on 127.0.0.1:$REDIS_PORT"
        port_open "$NATS_PORT" || log "ERROR: nats-server is not accepting on 127.0.0.1:$NATS_PORT (see target/nats.log)"
        exit 1
    fi
    sleep 0.1
done
# The tests also start private redis-server / nats-server instances on free ports.
ensure_binaries
log "redis 127.0.0.1:$REDIS_PORT and nats 127.0.0.1:$NATS_PORT are up"
