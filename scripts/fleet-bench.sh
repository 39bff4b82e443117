#!/usr/bin/env bash
# Fleet benchmark: what a fleet of bench_server instances delivers through a broker, next to
# one instance, in one run.
#
#   scripts/fleet-bench.sh                 # full run (about 6 minutes on 2 cores)
#   DUR=3 scripts/fleet-bench.sh           # quicker
#
# 1. One room spread over 1, 2 and 4 instances: the load client (examples/loadgen, release)
#    opens CONNS connections spread round-robin over the instances' ports, all in one room;
#    SENDERS of them send, and every message reaches every member on every instance (closed
#    loop, WINDOW rounds in flight). Deliveries/s for: one instance alone (no broker), and
#    2 and 4 instances through NATS (rooms routed by interest) and through Redis (one channel).
# 2. Rooms partitioned across instances: 4 instances, each with its own PART_ROOMS rooms
#    (/bench/rooms/i-k; all members of a room on one instance), PART_CONNS sockets each, every
#    socket sending. What each instance received from the broker (its
#    asena_transport_received_total, from /metrics, and the envelope bytes that makes) for:
#    NATS routing by interest, NATS on one subject (BENCH_NATS_SINGLE=1), Redis routing by
#    interest (BENCH_REDIS_INTEREST=1) and Redis on one channel. With interest routing an
#    instance receives only its own rooms' traffic.
# 3. The same on a 3-node Redis Cluster: sharded pub/sub (BENCH_REDIS_CLUSTER=1) against
#    classic pub/sub by interest, with the messages the nodes passed each other over the
#    cluster bus (cluster_stats_messages_publish_sent, summed over the nodes); and one room
#    over 4 instances through it.
# Private brokers on free loopback ports: a nats-server, a redis-server and a 3-node Redis
# Cluster started here and stopped at the end. Everything is bounded in time; processes are stopped by PID.
# Never run from CI (it is a benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."

DUR=${DUR:-5}
CONNS=${CONNS:-1000}
SENDERS=${SENDERS:-100}
WINDOW=${WINDOW:-2}
PART_ROOMS=${PART_ROOMS:-4}
PART_CONNS=${PART_CONNS:-25}
OUT=${OUT:-target/fleet-bench}
mkdir -p "$OUT"

log() { printf '[fleet-bench] %s\n' "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

log "building release bench_server and loadgen"
timeout 1200 cargo build --release --quiet --example bench_server --example loadgen
FW=target/release/examples/bench_server
LG=target/release/examples/loadgen
NATS_BIN=$(command -v nats-server || echo /usr/sbin/nats-server)
REDIS_BIN=$(command -v redis-server || echo /usr/sbin/redis-server)
[ -x "$NATS_BIN" ] || fail "nats-server is not installed (bash scripts/services.sh installs it)"
[ -x "$REDIS_BIN" ] || fail "redis-server is not installed (bash scripts/services.sh installs it)"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

PIDS=()
BROKERS=()
cleanup() {
    for pid in "${PIDS[@]}" "${BROKERS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" "${BROKERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n ${CLUSTER_DIR:-} ]]; then rm -rf "$CLUSTER_DIR"; fi
}
trap cleanup EXIT

NATS_PORT=$(free_port)
"$NATS_BIN" -a 127.0.0.1 -p "$NATS_PORT" >"$OUT/nats.log" 2>&1 &
BROKERS+=($!)
REDIS_PORT=$(free_port)
"$REDIS_BIN" --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
BROKERS+=($!)
wait_port "$NATS_PORT" || fail "nats-server did not start (see $OUT/nats.log)"
wait_port "$REDIS_PORT" || fail "redis-server did not start (see $OUT/redis.log)"
NATS_URL=nats://127.0.0.1:$NATS_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT

CLUSTER_PORTS=()
CLUSTER_DIR=$(mktemp -d)
for _ in 1 2 3; do
    port=$(free_port)
    # An explicit bus port: the default (port + 10000) can be past 65535.
    "$REDIS_BIN" --bind 127.0.0.1 --port "$port" --cluster-enabled yes --cluster-port "$(free_port)" \
        --cluster-config-file "nodes-$port.conf" --dir "$CLUSTER_DIR" --save "" --appendonly no \
        >"$OUT/redis-cluster-$port.log" 2>&1 &
    BROKERS+=($!)
    CLUSTER_PORTS+=("$port")
done
for port in "${CLUSTER_PORTS[@]}"; do
    wait_port "$port" || fail "redis-server $port (cluster) did not start (see $OUT/redis-cluster-$port.log)"
done
timeout 60 redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") \
    --cluster-replicas 0 --cluster-yes >"$OUT/redis-cluster-create.log" 2>&1 ||
    fail "redis-cli --cluster create failed (see $OUT/redis-cluster-create.log)"
for port in "${CLUSTER_PORTS[@]}"; do
    for _ in $(seq 300); do
        redis-cli -p "$port" cluster info 2>/dev/null | grep -q cluster_state:ok && break
        sleep 0.05
    done
    redis-cli -p "$port" cluster info | grep -q cluster_state:ok || fail "Redis Cluster node $port is not ok"
done
CLUSTER_URL=redis://127.0.0.1:${CLUSTER_PORTS[0]}
# Messages the cluster's nodes have passed each other for classic pub/sub so far.
bus_publishes() {
    local total=0 port n
    for port in "${CLUSTER_PORTS[@]}"; do
        n=$(redis-cli -p "$port" cluster info | tr -d '\r' | awk -F: '$1 == "cluster_stats_messages_publish_sent" {print $2}')
        total=$((total + ${n:-0}))
    done
    echo "$total"
}

# start_fleet N URL [ENV=VALUE...]: N instances; sets PORTS (array).
start_fleet() {
    local n=$1 url=$2
    shift 2
    PORTS=()
    for i in $(seq "$n"); do
        local port
        port=$(free_port)
        env "$@" ASENA_TRANSPORT="$url" PORT="$port" RUST_LOG=warn "$FW" >"$OUT/server-$i.log" 2>&1 &
        PIDS+=($!)
        wait_port "$port" || fail "bench_server $i did not start (see $OUT/server-$i.log)"
        PORTS+=("$port")
    done
}
stop_fleet() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
csv() { local IFS=,; echo "$*"; }
field() { grep -o "$1=[0-9.]*" | tail -1 | cut -d= -f2; }
received() { curl -s "http://127.0.0.1:$1/metrics" | awk '$1 == "asena_transport_received_total" {print $2}'; }
fmt_m() { awk -v v="$1" 'BEGIN { if (v == "" || v == "nan") print "–"; else printf "%.2f M", v / 1e6 }'; }

# ---- 1. one room over 1, 2, 4 instances -----------------------------------------------------
declare -A RATE
one_room() {
    local label=$1 n=$2 url=$3
    shift 3
    start_fleet "$n" "$url" "$@"
    local line
    line=$(timeout $((DUR + 90)) "$LG" chat "$(csv "${PORTS[@]}")" "$CONNS" -s "$SENDERS" -w "$WINDOW" \
        -d "$DUR" -u /bench | tee "$OUT/one-room-$label-$n.log" | grep '^SUMMARY' || true)
    RATE[$label,$n]=$(field mean_deliveries/s <<<"$line" || true)
    log "one room, $label, $n instance(s): ${RATE[$label,$n]:-failed} deliveries/s"
    stop_fleet
}
one_room single 1 local
for n in 2 4; do
    one_room nats "$n" "$NATS_URL"
    one_room redis "$n" "$REDIS_URL"
done

# ---- 2. rooms partitioned across 4 instances --------------------------------------------------
declare -A GOT SENT
declare -A BUS
partitioned() {
    local label=$1 url=$2
    shift 2
    local bus_before=0
    if [[ $url == "$CLUSTER_URL" ]]; then bus_before=$(bus_publishes); fi
    start_fleet 4 "$url" "$@"
    local pids=() i k
    for i in 1 2 3 4; do
        for k in $(seq "$PART_ROOMS"); do
            timeout $((DUR + 90)) "$LG" chat "${PORTS[$((i - 1))]}" "$PART_CONNS" -s "$PART_CONNS" -w "$WINDOW" \
                -d "$DUR" -u "/bench/rooms/i$i-r$k" >"$OUT/part-$label-$i-$k.log" 2>&1 &
            pids+=($!)
        done
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done
    local total=0
    for i in 1 2 3 4; do
        GOT[$label,$i]=$(received "${PORTS[$((i - 1))]}")
        total=$((total + ${GOT[$label,$i]:-0}))
    done
    # What the fleet sent through the broker: each instance's published messages.
    SENT[$label]=0
    for i in 1 2 3 4; do
        local p
        p=$(curl -s "http://127.0.0.1:${PORTS[$((i - 1))]}/metrics" | awk '$1 == "asena_transport_published_total" {print $2}')
        SENT[$label]=$((SENT[$label] + ${p:-0}))
    done
    if [[ $url == "$CLUSTER_URL" ]]; then BUS[$label]=$(($(bus_publishes) - bus_before)); fi
    log "partitioned, $label: published ${SENT[$label]}, received per instance: ${GOT[$label,1]} ${GOT[$label,2]} ${GOT[$label,3]} ${GOT[$label,4]}${BUS[$label]:+, cluster bus: ${BUS[$label]}}"
    stop_fleet
}
partitioned nats-interest "$NATS_URL"
partitioned nats-one-subject "$NATS_URL" BENCH_NATS_SINGLE=1
partitioned redis-interest "$REDIS_URL" BENCH_REDIS_INTEREST=1
partitioned redis-one-channel "$REDIS_URL"
partitioned cluster-sharded "$CLUSTER_URL" BENCH_REDIS_CLUSTER=1
partitioned cluster-classic-interest "$CLUSTER_URL" BENCH_REDIS_INTEREST=1

# ---- 3. one room over 4 instances through the Redis Cluster ---------------------------------
one_room cluster-sharded 4 "$CLUSTER_URL" BENCH_REDIS_CLUSTER=1

# ---- report ---------------------------------------------------------------------------------
# A loadgen message is 16 bytes; its envelope ({"d","t","o"}) about 100 bytes with the topic.
ENVELOPE_BYTES=${ENVELOPE_BYTES:-110}
echo
echo "One room, $CONNS sockets spread over the instances, $SENDERS senders, window $WINDOW, ${DUR} s (deliveries/s):"
echo
echo "| instances | NATS (by interest) | Redis | vs one instance |"
echo "|---|---|---|---|"
echo "| 1 (no broker) | $(fmt_m "${RATE[single,1]:-}") | | 1.00× |"
for n in 2 4; do
    ratio_n=$(awk -v a="${RATE[nats,$n]:-0}" -v b="${RATE[single,1]:-0}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }')
    ratio_r=$(awk -v a="${RATE[redis,$n]:-0}" -v b="${RATE[single,1]:-0}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }')
    echo "| $n | $(fmt_m "${RATE[nats,$n]:-}") | $(fmt_m "${RATE[redis,$n]:-}") | NATS $ratio_n, Redis $ratio_r |"
done
ratio_c=$(awk -v a="${RATE[cluster-sharded,4]:-0}" -v b="${RATE[single,1]:-0}" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "–" }')
echo
echo "One room over 4 instances on the 3-node Redis Cluster, sharded: $(fmt_m "${RATE[cluster-sharded,4]:-}") deliveries/s ($ratio_c)"

echo
echo "Rooms partitioned over 4 instances ($PART_ROOMS rooms each, $PART_CONNS sockets a room, every one sending), ${DUR} s:"
echo "broker messages each instance received (and about $ENVELOPE_BYTES bytes each):"
echo
echo "| layout | published by the fleet | received: instance 1 | 2 | 3 | 4 | received / published | cluster bus messages |"
echo "|---|---|---|---|---|---|---|---|"
for label in nats-interest nats-one-subject redis-interest redis-one-channel cluster-sharded cluster-classic-interest; do
    total=0
    for i in 1 2 3 4; do total=$((total + ${GOT[$label,$i]:-0})); done
    share=$(awk -v a="$total" -v b="${SENT[$label]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }')
    echo "| $label | ${SENT[$label]} | ${GOT[$label,1]} | ${GOT[$label,2]} | ${GOT[$label,3]} | ${GOT[$label,4]} | $share | ${BUS[$label]:-} |"
done
